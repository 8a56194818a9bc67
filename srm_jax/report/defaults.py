"""The report's settings: defaults, sizes and the names of its outputs."""

from __future__ import annotations

import os

from srm_jax import basis_measures as _measures
from srm_jax.significance import DEFAULT_STATISTIC

__all__ = ["DEFAULT_STATISTIC"]

#: Default spotlight ``ε`` (the paper's Fig. 1).
DEFAULT_EPSILON = 0.9
#: Default number of random rotations (and label shuffles): two-sided ``p`` down to 0.01.
DEFAULT_RESAMPLES = 199
#: The ε values of the sweep.
DEFAULT_SWEEP = tuple(round(0.1 + 0.05 * i, 2) for i in range(18))  # 0.1, 0.15, ..., 0.95
#: The ε of the verdict's rotation test without ``epsilon``: one family (min-p, math §6.2). Its
#: least ε is the least the sample-major sweep affords at width (benchmarks/RESULTS.md).
DEFAULT_TEST_SWEEP = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: A row is *massive* when its cosine with one basis vector is at least this (it then lights
#: every plane of that vector at ε ≤ this; Sun et al. 2024's massive activations).
MASSIVE_COS = 0.9
#: ``carriers``: the share of the lit counts carried by this top share of the rows.
TOP_ROW_SHARE = 0.01
#: The bulk rule: when the massive rows are at most ``BULK_MAX_ROW_SHARE`` of the rows and
#: carry at least ``BULK_MIN_LIT_SHARE`` of the lit counts at the headline ε, the report also
#: analyses the other rows (``bulk``).
BULK_MAX_ROW_SHARE = 0.05
BULK_MIN_LIT_SHARE = 0.5
#: Neurons of the neuron map (the top ones by credit), and tokens and vectors listed.
MAP_NEURONS = 64
TOP_TOKENS = 10
#: Significance level of the verdict.
SIGNIFICANCE_LEVEL = 0.05
#: The null band is simulated with N' = min(rows analysed, this) samples, scaled by √(N'/N).
NULL_BAND_SAMPLES = 20_000
#: Isotropic data sets drawn for the null band.
NULL_BAND_DRAWS = 40
#: Samples of each null-band draw when every plane is measured through summaries (the band of
#: the mean curve only; scaled to the report's N like any band).
SUMMARY_NULL_BAND_SAMPLES = 2_000
#: Planes measured when the sample-major kernel does not apply and the basis has more (a random
#: subset; ``max_planes``).
DEFAULT_SAMPLED_PLANES = 1_000
#: Planes whose exact curves a report of every plane measures: the best by lit counts
#: (:func:`srm_jax.report.candidate_planes`); ``top_planes`` and ``max_srm`` come from them.
PEAK_CANDIDATES = 1_000
#: Planes of the ε sweep when every plane is measured through summaries (a random subset: the
#: sweep only locates the best ε).
SWEEP_PLANES = 1_000
#: Multiply-adds of the rotation tests' products that the default analysis subset is sized for
#: at width (:func:`srm_jax.report.default_max_samples`): about 15 s on 2 CPU cores.
ROTATION_TEST_WORK = 6e11
#: Direction tests of the rotation tests' sample-major enumerations that the default analysis
#: subset is sized for (:func:`srm_jax.report.default_max_samples`): about 10 s on 2 CPU cores
#: (about 18 ns a test, benchmarks/RESULTS.md). A copy tests each sample's ``K`` directions at
#: the test's least ε, and each leading direction against its ``K`` partners.
ROTATION_TEST_ENUMERATION = 5e8
#: The analysis subset's default size, and its floor at width.
DEFAULT_MAX_SAMPLES = 20_000
MIN_MAX_SAMPLES = 2_000
#: Bins per axis of the projection density of the top plane (every sample, the whole disc).
PROJECTION_BINS = 32
#: Planes and basis vectors listed in the class-selectivity table.
TOP_ITEMS = 5
#: Basis vectors and planes listed in ``top_basis_vectors`` / ``top_planes`` (``top``).
DEFAULT_TOP = 20
#: Neurons shown in the per-neuron share chart, and labelled on the neuron map.
CHART_NEURONS = 50
MAP_LABELS = 10
#: A report of several layers draws the rotations of each width once and holds them for all its
#: layers (:func:`srm_jax.report.report_rotations`) when they take at most this share of the
#: memory budget; otherwise every rotation test draws its own in its loop (the same rotations, up
#: to float32 rounding).
HELD_ROTATIONS_SHARE = 0.25
#: Rotations drawn at once by :func:`srm_jax.report.report_rotations`, one a thread (each a QR
#: on one BLAS thread): the machine's cores, at most 8.
ROTATION_DRAW_THREADS = max(1, min(8, os.cpu_count() or 1))
#: Memory budget of the report's rotation batches, in GiB (``memory_budget``).
DEFAULT_MEMORY_BUDGET_GIB = _measures.DEFAULT_MEMORY_BUDGET_GIB
#: Figure file names.
FIGURES = {
    "srm": "srm.png",
    "epsilon_sweep": "epsilon_sweep.png",
    "rotation_test": "rotation_test.png",
    "per_class": "per_class_top_plane.png",
    "projection": "projection_top_plane.png",
    "neuron_map": "neuron_map.png",
    "neuron_shares": "neuron_shares.png",
    "carrier_tokens": "carrier_tokens.png",
}
#: Cosines of the rows with the basis vectors held at once while each row's largest ``|cos|``
#: is found (``rows × m`` float32 values; :func:`srm_jax.report.rows.row_facts_batch`).
ROW_FACTS_ELEMENTS = 1 << 22
