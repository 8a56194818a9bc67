"""An SRM report of any activations: the numbers and figures behind ``srm-jax report``.

Given a layer's activations (``(N, n)``, from any framework) and a privileged basis, the report
answers "is this layer aligned with the basis?" with the library's own analyses, composed:

* SRM (Eqn. 2) of every sample about every plane of the basis, and the alignment score: the
  Pearson correlation over θ of the mean SRM curve with the mean self-SRM curve (Sec. 3,
  :func:`srm_jax.alignment_score`). A file larger than memory is streamed through
  :func:`srm_jax.accumulate_srm` (exact integer counts, SPEC §4) by the command line.
* the rotation test (App. B.1 made a p-value, :func:`srm_jax.alignment_test`): the score of the
  real basis against the scores of Haar-randomly rotated copies of it, the data unchanged;
* the isotropic expectation (App. F, Eqn. 18, SPEC §6: :func:`srm_jax.isotropic_expectation`)
  and the isotropic null band (:func:`srm_jax.null_band`);
* an ε sweep (:func:`srm_jax.alignment_sweep`) and its best ε;
* with labels, the most class-selective planes and basis vectors with family-wise p-values
  against shuffled labels (App. B.2, :func:`srm_jax.rank_selectivity`);
* the projection density of the top plane (:func:`srm_jax.projection_density`);
* which neurons: the basis vectors ranked by the share of the lit counts their planes carry and
  the planes by SRM peak (:mod:`srm_jax.neurons`, from per-plane arrays only), with the
  neuron × neuron map and the per-neuron shares of a ``±`` orthonormal basis;
* the field's measures beside SRM: kurtosis across dimensions, outlier dimensions (absolute and
  scale-free) and proximity, each against the same random rotations as the SRM test
  (:mod:`srm_jax.basis_measures`), and whether they agree with SRM's verdict.

Memory: :func:`check_memory` sizes the rotation batches from a budget (``--memory-budget``) and
refuses, in one line naming what to reduce, an input that cannot fit.

The verdict is two-sided: with ``p_greater`` the rotation test's p-value for alignment and
``p_less`` the one for anti-alignment (the same null scores), ``p = min(1, 2 min(p_greater,
p_less))``; below the significance level (0.05) the data are "aligned" (``p_greater`` the
smaller) or "anti-aligned", otherwise there is "no evidence of alignment". With ``K`` rotations
the smallest attainable ``p`` is ``2/(K + 1)`` (0.01 for the default ``K = 199``).

Everything here is a function of arrays and settings (PRNG keys only); :func:`srm_report` returns
a :class:`Report` whose ``summary`` is the JSON-able dict of ``report.json``. :func:`write_figures`
and :func:`report_markdown` turn a report into the figures and ``report.md``.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from srm_jax import _validation
from srm_jax import bases as _bases
from srm_jax import basis_measures as _measures
from srm_jax import neurons as _neurons
from srm_jax.alignment import alignment_score
from srm_jax.per_class import Selectivity, distinct_planes, rank_selectivity
from srm_jax.planes import PLANE_KINDS
from srm_jax.planes import planes as make_planes
from srm_jax.projection import ProjectionDensity, projection_density
from srm_jax.resonance import SRMResult, plan_measurement, self_srm, spotlight_resonance
from srm_jax.significance import (
    STATISTICS,
    AlignmentTest,
    NullBand,
    alignment_test,
    isotropic_expectation,
    null_band,
    permutation_p_value,
)
from srm_jax.spectrum import EpsilonSweep, alignment_sweep
from srm_jax.summaries import SRMSummary, resonance_summary

#: Default spotlight ``ε`` (the paper's Fig. 1).
DEFAULT_EPSILON = 0.9
#: Default number of random rotations (and label shuffles): two-sided ``p`` down to 0.01.
DEFAULT_RESAMPLES = 199
#: Rotation-test statistic: the in-phase amplitude, far more powerful than the correlation
#: when the data are clustered (see srm_jax.alignment_statistic).
DEFAULT_STATISTIC = "projection"
#: The ε values of the sweep.
DEFAULT_SWEEP = tuple(round(0.1 + 0.05 * i, 2) for i in range(18))  # 0.1, 0.15, ..., 0.95
#: Significance level of the verdict.
SIGNIFICANCE_LEVEL = 0.05
#: The null band is simulated with N' = min(rows analysed, this) samples, scaled by √(N'/N).
NULL_BAND_SAMPLES = 20_000
#: Isotropic data sets drawn for the null band.
NULL_BAND_DRAWS = 40
#: Samples of each null-band draw when every plane is measured through summaries (the band of
#: the mean curve only; scaled to the report's N like any band, :func:`_scaled_band`).
SUMMARY_NULL_BAND_SAMPLES = 2_000
#: Planes measured when the sample-major kernel does not apply and the basis has more (a random
#: subset; ``--max-planes``).
DEFAULT_SAMPLED_PLANES = 1_000
#: Planes whose exact curves a report of every plane measures: the best by lit counts
#: (:func:`candidate_planes`); ``top_planes`` and ``max_srm`` come from them.
PEAK_CANDIDATES = 1_000
#: Planes of the ε sweep when every plane is measured through summaries (a random subset: the
#: sweep only locates the best ε).
SWEEP_PLANES = 1_000
#: Multiply-adds of the rotation tests' products that the default analysis subset is sized for
#: at width (:func:`default_max_samples`): about a minute on 2 CPU cores.
ROTATION_TEST_WORK = 6e11
#: The analysis subset's default size, and its floor at width.
DEFAULT_MAX_SAMPLES = 20_000
MIN_MAX_SAMPLES = 2_000
#: Bins per axis of the projection density of the top plane (every sample, the whole disc).
PROJECTION_BINS = 32
#: Planes and basis vectors listed in the class-selectivity table.
TOP_ITEMS = 5
#: Basis vectors and planes listed in ``top_basis_vectors`` / ``top_planes`` (``--top``).
DEFAULT_TOP = 20
#: Neurons shown in the per-neuron share chart, and labelled on the neuron map.
CHART_NEURONS = 50
MAP_LABELS = 10
#: Memory budget of the report's rotation batches, in GiB (``--memory-budget``).
DEFAULT_MEMORY_BUDGET_GIB = _measures.DEFAULT_MEMORY_BUDGET_GIB
#: Basis specifications of :func:`basis_from_spec` (besides a file path, read by the caller).
BASIS_SPECS = ("standard", "orthoplex:SEED", "simplex:SEED", "thompson:M:SEED", "random:M:SEED")
#: Figure file names.
FIGURES = {
    "srm": "srm.png",
    "epsilon_sweep": "epsilon_sweep.png",
    "rotation_test": "rotation_test.png",
    "per_class": "per_class_top_plane.png",
    "projection": "projection_top_plane.png",
    "neuron_map": "neuron_map.png",
    "neuron_shares": "neuron_shares.png",
}


#: The measures of each rotation of the report's rotation test (:func:`srm_jax.alignment_test`'s
#: ``measure``; one function object, so that its compilation is cached across reports).
_ROTATED_STATISTICS = _measures.rotated_statistics


class ReportError(ValueError):
    """A problem with the report's inputs, stated in one line for the user."""


class Report(NamedTuple):
    """A report: ``summary`` (the JSON-able dict of ``report.json``) and what the figures need.

    Attributes:
      summary: dict of plain Python numbers, strings and lists (NaN where undefined).
      result: SRM over all samples: :class:`srm_jax.SRMResult` (``(P, T)`` counts) or, when
        every plane of a wide basis is measured, :class:`srm_jax.SRMSummary`.
      reference: self-SRM of the basis on the same planes and angles (the same type).
      band: isotropic null band of ``result`` (:class:`srm_jax.NullBand`).
      test: the rotation test (:class:`srm_jax.AlignmentTest`, ``alternative="greater"``).
      sweep: the ε sweep (:class:`srm_jax.EpsilonSweep`).
      selectivity: class selectivity (:class:`srm_jax.Selectivity`), or ``None`` without labels.
      distinct: indices of the ranked planes with distinct spans (with labels), or ``None``.
      density: projection density of the top plane (:class:`srm_jax.ProjectionDensity`).
      signed: the basis' neurons (:class:`srm_jax.neurons.SignedBasis`).
      planes: per-plane totals, peaks and peak angles (:class:`srm_jax.neurons.PlaneSummaries`).
      measures: the field's measures against the rotations
        (:class:`srm_jax.basis_measures.MeasuresTest`).
      peaks: exact ``(C, T)`` counts over all samples of the candidate planes (every plane when
        ``result`` holds counts), whose peaks rank ``top_planes``.
    """

    summary: dict
    result: SRMResult | SRMSummary
    reference: SRMResult | SRMSummary
    band: NullBand
    test: AlignmentTest
    sweep: EpsilonSweep
    selectivity: Selectivity | None
    distinct: np.ndarray | None
    density: ProjectionDensity
    signed: _neurons.SignedBasis | None = None
    planes: _neurons.PlaneSummaries | None = None
    measures: _measures.MeasuresTest | None = None
    peaks: SRMResult | None = None


# --------------------------------------------------------------------------------- inputs


def basis_from_spec(spec: str, n: int) -> jax.Array:
    """The privileged basis named by ``spec`` in ``R^n`` (App. B.1, App. D; SPEC §8).

    ``"standard"``: ``±e_i`` (m = 2n), the privileged basis of elementwise activations;
    ``"orthoplex:SEED"``: ``±`` a Haar-random orthonormal basis; ``"simplex:SEED"``: a randomly
    rotated regular simplex (m = n + 1); ``"thompson:M:SEED"``: ``M`` vectors spread by the
    Thompson energy (Eqns. 16–17); ``"random:M:SEED"``: ``M`` random unit vectors. ``SEED`` seeds
    ``jax.random.key``. Raises :class:`ReportError` naming the problem for any other string.
    """
    parts = spec.split(":")
    kind, args = parts[0], parts[1:]
    expected = {"standard": 0, "orthoplex": 1, "simplex": 1, "thompson": 2, "random": 2}
    if kind not in expected:
        raise ReportError(
            f"unknown basis {spec!r}: use one of {', '.join(BASIS_SPECS)} or the path of an "
            "(m, n) .npy file"
        )
    if len(args) != expected[kind]:
        form = next(s for s in BASIS_SPECS if s.split(":")[0] == kind)
        raise ReportError(f"basis {spec!r} is malformed: write it as {form}")
    try:
        numbers = [int(a) for a in args]
    except ValueError:
        raise ReportError(f"basis {spec!r}: M and SEED must be integers") from None
    if n < 2:
        raise ReportError(f"the activations have n={n} feature(s): SRM needs n >= 2")
    if kind == "standard":
        return _bases.standard_basis(n)
    key = jax.random.key(numbers[-1])
    if kind == "orthoplex":
        return _bases.orthoplex_basis(key, n)
    if kind == "simplex":
        return _bases.simplex_basis(key, n)
    m = numbers[0]
    if m < 2:
        raise ReportError(f"basis {spec!r}: M must be >= 2 (a plane needs two vectors)")
    if kind == "thompson":
        return _bases.thompson_basis(key, m, n)
    return _bases.random_basis(key, m, n)


def subset_indices(total: int, size: int, key: jax.Array) -> np.ndarray:
    """``size`` distinct indices of ``range(total)``, sorted, drawn from ``key`` (host NumPy:
    the report's subsets are chosen before anything is compiled)."""
    seed = int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))
    return np.sort(np.random.default_rng(seed).choice(int(total), int(size), replace=False))


def _plane_pairs(m: int, kind: str, max_planes: int | None, key) -> np.ndarray:
    """The ``kind`` pairs of ``m`` vectors in ``itertools`` order, or a random subset of
    ``max_planes`` of them (from ``key``), decoded from pair indices without listing every pair
    (a wide layer's ``±e_i`` basis has ``m = 6144`` and 19 million pairs)."""
    total = m * (m - 1) // (2 if kind == "comb" else 1)
    if max_planes is None or max_planes >= total:
        return np.asarray(make_planes(m, kind))
    k = subset_indices(total, max_planes, key)
    if kind == "perm":
        alpha, beta = k // (m - 1), k % (m - 1)
        return np.stack([alpha, beta + (beta >= alpha)], axis=1).astype(np.int32)
    # comb: row α starts at index α(2m − α − 1)/2 and holds the pairs (α, α+1 .. m−1).
    def start(a):
        return a * (2 * m - a - 1) // 2

    alpha = np.floor(((2 * m - 1) - np.sqrt((2.0 * m - 1) ** 2 - 8.0 * k)) / 2).astype(np.int64)
    alpha = np.clip(alpha, 0, m - 2)
    alpha -= start(alpha) > k  # float rounding: step back or forward one row
    alpha += start(alpha + 1) <= k
    beta = k - start(alpha) + alpha + 1
    return np.stack([alpha, beta], axis=1).astype(np.int32)


def report_planes(
    basis: jax.Array, kind: str = "comb", *, max_planes: int | None = None,
    key: jax.Array | None = None,
) -> jax.Array:
    """The planes a report measures: ``kind`` pairs of ``basis`` (a random subset of
    ``max_planes`` of them, drawn from ``key``, when there are more) that span a plane (SPEC §2).
    """
    if kind not in PLANE_KINDS:
        raise ReportError(f"--planes must be one of {PLANE_KINDS}, got {kind!r}")
    if max_planes is not None and max_planes < 1:
        raise ReportError(f"--max-planes must be >= 1, got {max_planes}")
    key = jax.random.key(0) if key is None else key
    pairs = _plane_pairs(int(np.shape(basis)[0]), kind, max_planes, key)
    # The engine's own test of a spanning pair (SPEC §2); the pairs are drawn by index above
    # because listing every pair of a wide basis (m = 6,144: 19 million) is too much.
    pairs = jnp.asarray(pairs[_validation.spans_plane(basis, pairs)], jnp.int32)
    if pairs.shape[0] == 0:
        raise ReportError("no pair of basis vectors spans a plane: the basis has no planes")
    return pairs


def uses_summaries(basis, pairs, epsilon: float) -> bool:
    """Whether a report of ``pairs`` is measured through summaries (:class:`srm_jax.SRMSummary`)
    rather than ``(P, T)`` counts: where ``method="auto"`` takes the sample-major kernel (a wide
    ``±`` orthonormal basis: the standard basis, an orthoplex, a rotated one, a file basis that
    is one; :mod:`srm_jax.sample_major`)."""
    plan, _, _ = plan_measurement(None, jnp.asarray(basis), epsilon=float(epsilon),
                                  planes=jnp.asarray(pairs, jnp.int32))
    return plan.sample_major is not None


def choose_planes(basis, kind: str, epsilon: float, *, max_planes: int | None = None,
                  key: jax.Array | None = None) -> tuple[jax.Array, int | None, bool]:
    """The planes of a report from the command line, each pair list built and planned once.

    ``max_planes`` given: a random subset of that many (:func:`report_planes`). By default
    every plane where the report measures them through summaries (:func:`uses_summaries`) or
    where the basis has at most :data:`DEFAULT_SAMPLED_PLANES` pairs; otherwise a random subset
    of that many.

    Returns:
      ``(pairs, max_planes, summaries)``: the pairs, the ``max_planes`` used (``None``: every
      plane) and whether they are measured through summaries.
    """
    pairs = report_planes(basis, kind, max_planes=max_planes, key=key)
    summaries = uses_summaries(basis, pairs, epsilon)
    m = int(np.shape(basis)[0])
    total = m * (m - 1) // (2 if kind == "comb" else 1)
    if max_planes is None and not summaries and total > DEFAULT_SAMPLED_PLANES:
        max_planes = DEFAULT_SAMPLED_PLANES
        pairs = report_planes(basis, kind, max_planes=max_planes, key=key)
        summaries = uses_summaries(basis, pairs, epsilon)
    return pairs, max_planes, summaries


def default_max_samples(n: int, num_directions: int, num_rotations: int) -> int:
    """The report's default ``--max-samples`` (the analysis subset of the rotation tests).

    :data:`DEFAULT_MAX_SAMPLES`, or fewer at width: the rotation tests project the subset on
    every rotated basis, ``S · n · K`` multiply-adds a rotation, so ``S`` is cut to keep
    ``R · S · n · K`` under :data:`ROTATION_TEST_WORK` (about a minute on 2 CPU cores), but not
    below :data:`MIN_MAX_SAMPLES`. A setting (``--max-samples``); SRM itself, the neuron ranking
    and the measures' values count every row.
    """
    work = max(1, int(num_rotations)) * int(n) * int(num_directions)
    return int(min(DEFAULT_MAX_SAMPLES, max(MIN_MAX_SAMPLES, ROTATION_TEST_WORK // work)))


def candidate_planes(summary: SRMSummary, k: int = PEAK_CANDIDATES) -> np.ndarray:
    """Indices of the ``k`` planes with the most lit counts (Σ over θ, Eqn. 2), in plane order
    (so that ties in peak rank as over every plane: lower index first).

    A plane's peak count is at most its total, so the planes whose peaks rank highest are found
    among those with the largest totals: :func:`srm_report` measures the exact curves of these
    candidates and says whether its ``top_planes`` are provably the best by peak
    (``top_planes_exact``).
    """
    totals = np.asarray(summary.lit_plane_totals, np.float64)
    k = int(min(int(k), totals.shape[0]))
    if k < 1:
        raise ReportError("there are no planes to rank")
    best = np.argpartition(-totals, k - 1)[:k]  # O(P); a full sort of 18.9 M totals is not
    return np.sort(best).astype(np.int64)


def check_basis(basis, n: int) -> np.ndarray:
    """A basis given as an array, checked: ``(m, n)``, ``m ≥ 2``, finite, no zero row."""
    b = np.asarray(basis)
    if b.ndim != 2:
        raise ReportError(f"the basis must be an (m, n) array, got shape {b.shape}")
    if not np.issubdtype(b.dtype, np.number) or np.issubdtype(b.dtype, np.complexfloating):
        raise ReportError(f"the basis must be real numbers, got dtype {b.dtype}")
    if b.shape[1] != n:
        raise ReportError(
            f"the basis has width n={b.shape[1]} but the activations have n={n} features"
        )
    if b.shape[0] < 2:
        raise ReportError(f"the basis has {b.shape[0]} vector(s): a plane needs at least 2")
    if not np.all(np.isfinite(b)):
        raise ReportError("the basis contains NaN or Inf")
    zero = np.nonzero(~np.any(b != 0, axis=1))[0]
    if zero.size:
        raise ReportError(f"basis rows {zero.tolist()[:5]} are zero vectors")
    return b.astype(np.float32)


def check_epsilon(epsilon: float) -> float:
    """``ε`` as a float, checked to lie in ``[−1, 1]`` (the cosine of the spotlight's angle)."""
    if not (math.isfinite(epsilon) and -1.0 <= epsilon <= 1.0):
        raise ReportError(
            f"--epsilon must lie in [-1, 1] (the cosine of the spotlight's half-angle), got "
            f"{epsilon:g}"
        )
    return float(epsilon)


# ------------------------------------------------------------------------------ analysis


def _float(x) -> float:
    """A Python float; float32 values by their shortest repr (0.02, not 0.0199999995)."""
    value = np.asarray(x)
    if value.dtype == np.float32:
        return float(str(np.float32(value)))
    return float(value)


def _floats(x) -> list[float]:
    return [_float(v) for v in np.asarray(x).reshape(-1)]


def verdict(p_greater: float, p_less: float,
            level: float = SIGNIFICANCE_LEVEL) -> tuple[str, float, str]:
    """The report's verdict from the one-sided rotation-test p-values.

    Returns ``(kind, p, sentence)``: ``kind`` is ``"aligned"``, ``"anti-aligned"``,
    ``"no evidence"`` or ``"undefined"`` (NaN p-values: a flat curve), ``p = min(1, 2 min(
    p_greater, p_less))`` the two-sided p-value, and ``sentence`` the plain statement.
    """
    if not (math.isfinite(p_greater) and math.isfinite(p_less)):
        return "undefined", math.nan, "no evidence of alignment: the SRM curves are flat"
    p = min(1.0, 2.0 * min(p_greater, p_less))
    if p <= level:
        kind = "aligned" if p_greater <= p_less else "anti-aligned"
        return kind, p, f"{kind} with the basis, p = {p:.2g}"
    return "no evidence", p, f"no evidence of alignment (p = {p:.2g})"


def _scaled_band(band: NullBand, num_samples: int) -> NullBand:
    """A null band simulated with ``N'`` samples, rescaled to ``N`` by ``√(N'/N)`` (the normal
    approximation: the spread of a fraction of ``N`` samples shrinks as ``1/√N``)."""
    if band.num_samples == num_samples:
        return band
    s = math.sqrt(band.num_samples / num_samples)
    e = band.expectation

    def shrink(q):
        return None if q is None else e + (q - e) * s

    return band.replace(
        std=None if band.std is None else band.std * s, quantiles=shrink(band.quantiles),
        curve_std=band.curve_std * s,
        curve_quantiles=shrink(band.curve_quantiles),
        curve_sup_quantiles=band.curve_sup_quantiles * s, num_samples=int(num_samples),
    )


def _top_plane_without_labels(result: SRMResult, expectation: float) -> int:
    """The plane whose curve rises highest above the isotropic expectation."""
    values = np.nan_to_num(np.asarray(result.values), nan=0.0)
    return int(np.argmax(np.max(values, axis=1) - expectation))


def _selectivity_table(sel: Selectivity, distinct: np.ndarray, num_classes: int) -> dict:
    pairs = np.asarray(sel.per_class.planes)
    planes = [
        {
            "plane": [int(a) for a in pairs[p]],
            "selectivity": _float(sel.plane_scores[p]),
            "z": _float(sel.plane_z[p]),
            "p_value": _float(sel.plane_p_values[p]),
            "p_family_wise": _float(sel.plane_p_adjusted[p]),
        }
        for p in distinct[:TOP_ITEMS]
    ]
    firing = np.asarray(sel.vector_values)
    vectors = [
        {
            "vector": int(i),
            "selectivity": _float(sel.vector_scores[i]),
            "z": _float(sel.vector_z[i]),
            "p_value": _float(sel.vector_p_values[i]),
            "p_family_wise": _float(sel.vector_p_adjusted[i]),
            "firing_per_class": _floats(firing[:, i]),
        }
        for i in np.asarray(sel.vector_order)[:TOP_ITEMS]
    ]
    return {
        "num_classes": int(num_classes),
        "class_counts": [int(c) for c in np.asarray(sel.class_counts)],
        "num_shuffles": int(sel.num_shuffles),
        "signed": bool(sel.per_class.signed),
        "planes": planes,
        "vectors": vectors,
    }


def check_top(top: int | None, num_planes: int) -> int:
    """``--top K``, checked: ``1 ≤ K ≤`` the planes measured; default ``min(20, P)``."""
    if top is None:
        return min(DEFAULT_TOP, int(num_planes))
    if int(top) < 1:
        raise ReportError(f"--top must be >= 1, got {top}")
    if int(top) > int(num_planes):
        raise ReportError(f"--top {top} is larger than the {num_planes:,} planes measured")
    return int(top)


def memory_budget_bytes(gib: float) -> float:
    """``--memory-budget GiB`` in bytes, checked to be positive and finite."""
    if not (math.isfinite(gib) and gib > 0):
        raise ReportError(f"--memory-budget must be a positive number of GiB, got {gib:g}")
    return float(gib) * 2**30


def check_memory(num_samples: int, n: int, m: int, num_directions: int, num_planes: int,
                 num_angles: int, num_rotations: int, memory_budget: float, *,
                 summaries: bool = False) -> int:
    """The up-front memory check of a report; returns the measures' rotations per batch.

    Counts what the report holds at once (:func:`report_bytes`) and one batch of rotations of
    the field's measures (:func:`srm_jax.basis_measures.rotation_batch_size`). Raises
    :class:`ReportError` in one line naming what to reduce when even one rotation does not fit
    in ``memory_budget`` bytes.
    """
    held = report_bytes(num_samples, n, num_directions, num_planes, num_angles,
                        summaries=summaries)
    if held >= memory_budget:
        reduce = "--max-samples" if summaries else "--max-samples or --max-planes"
        raise ReportError(
            f"the report needs {held / 2**30:.2f} GiB before any rotation ({num_samples:,} samples "
            f"of width {n}, {num_planes:,} planes) but the memory budget is "
            f"{memory_budget / 2**30:.2f} GiB: reduce {reduce}, or raise --memory-budget"
        )
    try:
        return _measures.rotation_batch_size(num_samples, n, m, num_directions, num_rotations,
                                             memory_budget - held)
    except MemoryError as error:
        raise ReportError(str(error)) from None


def report_bytes(num_samples: int, n: int, num_directions: int, num_planes: int,
                 num_angles: int, *, summaries: bool = False) -> int:
    """Bytes a report holds beside the rotation batches (an estimate, 4-byte entries).

    The analysis subset (``S × n``), the planes (``P × 2``), the neuron map (``K × K``) and SRM:
    with counts, the ``(P, T)`` counts, the self-SRM reference and the per-plane band (three
    ``(P, T)`` arrays, one of them transient); with summaries, the per-plane totals of the data,
    the reference and a rotation (two limbs each: ``6 P``), the sample-major kernel's per-plane
    accumulator and plane table (``2 K² · 4`` for a ``±`` basis) and the candidates' ``(C, T)``
    counts, never ``(P, T)``.
    """
    k = int(num_directions)
    fixed = int(num_samples) * int(n) + 2 * int(num_planes) + k * k
    if summaries:
        srm = 6 * int(num_planes) + 8 * k * k + PEAK_CANDIDATES * int(num_angles)
    else:
        srm = 3 * int(num_planes) * int(num_angles)
    return 4 * (fixed + srm)


def _neuron_label(signed: _neurons.SignedBasis, vector: int) -> str:
    """``+3`` / ``−3`` for vector ``±q_3`` of a ``±`` basis; ``#v`` for any other basis."""
    if not signed.orthonormal:
        return f"#{vector}"
    neuron = int(signed.neuron[signed.direction[vector]])
    return f"{'+' if signed.sign[vector] > 0 else '−'}{neuron}"


def neuron_tables(signed: _neurons.SignedBasis, planes: _neurons.PlaneSummaries,
                  pairs, num_samples: int, top: int, *, peak_pairs=None) -> dict:
    """``top_basis_vectors``, ``top_planes`` and ``top_neurons`` of ``report.json``.

    Ranked by :func:`srm_jax.neurons.rank_basis_vectors` (share of the lit counts) and
    :func:`srm_jax.neurons.rank_planes` (SRM peak) from per-plane arrays only: ``planes.totals``
    of every plane in ``pairs``; ``planes.peaks`` and ``peak_angles`` of the planes in
    ``peak_pairs`` (default ``pairs``; the candidate planes of a report of summaries).
    """
    pairs = np.asarray(pairs)
    peak_pairs = pairs if peak_pairs is None else np.asarray(peak_pairs)
    m = int(signed.direction.shape[0])
    vectors = _neurons.rank_basis_vectors(planes.totals, pairs, m, min(int(top), m))
    best = _neurons.rank_planes(planes.peaks, min(int(top), peak_pairs.shape[0]))
    top_vectors = []
    for v, score in zip(np.asarray(vectors.indices), np.asarray(vectors.scores), strict=True):
        k = int(signed.direction[v])
        top_vectors.append({
            "index": int(v),
            "neuron": int(signed.neuron[k]) if signed.orthonormal else None,
            "sign": int(signed.sign[v]) if signed.orthonormal else None,
            "score": _float(score),
        })
    top_planes = [
        {"plane": [int(a) for a in peak_pairs[p]],
         "neurons": ([_neuron_label(signed, int(a)) for a in peak_pairs[p]]),
         "peak_srm": _float(np.float32(peak) / max(int(num_samples), 1)),
         "peak_angle": _float(np.asarray(planes.peak_angles)[p])}
        for p, peak in zip(np.asarray(best.indices), np.asarray(best.scores), strict=True)
    ]
    shares = np.asarray(_neurons.neuron_shares(vectors.all_scores, signed.direction,
                                               signed.num_directions))
    order = np.argsort(-np.nan_to_num(shares, nan=-1.0), kind="stable")[:int(top)]
    top_neurons = [{"neuron": int(signed.neuron[k]), "share": _float(shares[k])} for k in order]
    return {"top_basis_vectors": top_vectors, "top_planes": top_planes,
            "top_neurons": top_neurons if signed.orthonormal else None,
            "basis_is_signed_orthonormal": bool(signed.orthonormal),
            "basis_is_standard": bool(signed.standard)}


#: How each measure is named in report.md.
MEASURE_NAMES = {
    "kurtosis": "kurtosis across dimensions (mean over tokens; Gaussian: 3)",
    "outlier_share": r"largest share of tokens with \|c\| ≥ 6 in one dimension (absolute)",
    "outlier_share_relative": r"largest share of tokens with \|c\| ≥ 6 × RMS of the others "
                              "(scale-free)",
    "proximity": r"median over samples of max \|cos\| with a basis vector",
}
#: The measures whose verdicts are compared with SRM's (the scale-free outlier form).
VERDICT_MEASURES = ("kurtosis", "outlier_share_relative", "proximity")


def measures_table(test: _measures.MeasuresTest, streamed: _measures.BasisMeasures | None,
                   signed: _neurons.SignedBasis, srm_kind: str, top: int) -> dict:
    """``measures`` of ``report.json``: each measure's value, its rotation null and p-values,
    the outlier dimensions, and whether the measures agree with SRM's verdict."""
    observed = np.asarray(test.observed)
    null = np.asarray(test.null)
    values = (None if streamed is None else
              np.asarray(_measures.measure_statistics(streamed)))
    rows = {}
    for i, name in enumerate(_measures.MEASURES):
        p_greater, p_less = _float(test.p_greater[i]), _float(test.p_less[i])
        kind, p_value, _ = verdict(p_greater, p_less)
        finite = null[:, i][np.isfinite(null[:, i])]
        quantiles = (np.quantile(finite, [0.025, 0.5, 0.975]) if finite.size
                     else np.full(3, np.nan))
        rows[name] = {
            "value": _float(observed[i] if values is None else values[i]),
            "value_test_samples": _float(observed[i]),
            "null_quantiles": _floats(quantiles.astype(np.float32)),
            "null": _floats(null[:, i]),
            "p_value": p_value,
            "p_value_greater": p_greater,
            "p_value_less": p_less,
            "evidence": {"aligned": "higher than rotations", "anti-aligned":
                         "lower than rotations"}.get(kind, "no evidence"),
        }
    source = test.measures if streamed is None else streamed
    dims = {}
    for name, shares in (("outlier_dimensions", source.outlier_shares),
                         ("outlier_dimensions_relative", source.relative_outlier_shares)):
        shares = np.asarray(shares)
        hits = np.nonzero(np.asarray(_measures.outlier_dimensions(shares)))[0]
        hits = hits[np.argsort(-shares[hits], kind="stable")][:int(top)]
        dims[name] = [{"dimension": int(signed.neuron[k]), "share": _float(shares[k])}
                      for k in hits]
    wanted = {"aligned": "higher than rotations", "anti-aligned": "lower than rotations"}.get(
        srm_kind, "no evidence")
    agree = [n for n in VERDICT_MEASURES if rows[n]["evidence"] == wanted]
    differ = [n for n in VERDICT_MEASURES if n not in agree]
    words = {"kurtosis": "kurtosis", "outlier_share_relative": "outlier share (scale-free)",
             "proximity": "proximity"}
    if not differ:
        sentence = f"All three measures ({', '.join(words[n] for n in agree)}) agree with SRM."
    elif not agree:
        sentence = "None of the three measures agrees with SRM: " + "; ".join(
            f"{words[n]}: {rows[n]['evidence']}" for n in differ) + "."
    else:
        sentence = (f"{', '.join(words[n] for n in agree).capitalize()} agree"
                    f"{'s' if len(agree) == 1 else ''} with SRM; " + "; ".join(
                        f"{words[n]}: {rows[n]['evidence']}" for n in differ) + ".")
    coordinates = ("the standard basis' coordinates" if signed.standard else
                   f"the coordinates in the basis' {signed.num_directions} distinct directions"
                   if signed.orthonormal else
                   f"the {signed.num_directions} projections d·b̂_k on the basis vectors")
    return {
        **rows,
        **dims,
        "coordinates": coordinates,
        "num_samples": int(source.num_samples),
        "num_test_samples": int(test.measures.num_samples),
        "outlier_threshold": _measures.OUTLIER_THRESHOLD,
        "relative_outlier_threshold": _measures.RELATIVE_OUTLIER_THRESHOLD,
        "outlier_dimension_share": _measures.OUTLIER_SHARE,
        "proximity_bins": _measures.PROXIMITY_BINS,
        "verdict_measures": list(VERDICT_MEASURES),
        "rotations_per_batch": int(test.rotations_per_batch),
        "agreement": sentence,
        "agrees_with_srm": not differ,
    }


def srm_report(
    activations: jax.Array,
    basis: jax.Array,
    *,
    key: jax.Array,
    epsilon: float = DEFAULT_EPSILON,
    labels: jax.Array | None = None,
    planes: str | jax.Array = "comb",
    max_planes: int | None = None,
    num_resamples: int = DEFAULT_RESAMPLES,
    statistic: str = DEFAULT_STATISTIC,
    epsilons=DEFAULT_SWEEP,
    result: SRMResult | None = None,
    num_rows: int | None = None,
    top: int | None = None,
    memory_budget: float = DEFAULT_MEMORY_BUDGET_GIB * 2**30,
    measures: _measures.MeasureSums | None = None,
    peaks: SRMResult | None = None,
) -> Report:
    """The SRM report of ``activations`` on ``basis``: numbers (``Report.summary``) and figures.

    Composes SRM (Eqn. 2) and self-SRM with the alignment score (Sec. 3), the rotation test
    (App. B.1), the isotropic expectation and null band (App. F, Eqn. 18; SPEC §6), an ε sweep,
    and with labels the class-selectivity ranking (App. B.2, Eqn. 4); see the module docstring.

    Args:
      activations: ``(S, n)`` samples the statistics are computed on (all of them, or a random
        subset of a file too large for memory); rows with NaN/Inf are left out.
      basis: ``(m, n)`` privileged basis.
      key: PRNG key (rotations, null band, label shuffles, plane subset, projection reference).
      epsilon: spotlight ``ε ∈ [−1, 1]``.
      labels: optional int ``(S,)`` classes of the samples (negative: unlabelled).
      planes: ``"comb"``, ``"perm"`` or explicit int ``(P, 2)`` pairs.
      max_planes: measure a random subset of this many planes when there are more.
      num_resamples: ``K`` random rotations of the rotation test and label shuffles.
      statistic: ``"projection"`` (default: the in-phase amplitude, see
        :func:`srm_jax.alignment_statistic`) or ``"correlation"`` (the alignment score).
      epsilons: the ε sweep.
      result: SRM of *all* samples on the same planes (streamed by the caller): an
        :class:`srm_jax.SRMResult`, or an :class:`srm_jax.SRMSummary` (every plane of a wide
        basis, :func:`srm_jax.accumulate_summary`); default the SRM of ``activations``, through
        summaries where :func:`uses_summaries` says so.
      num_rows: the number of rows read, counted or not (default ``S``); ``num_excluded`` is
        ``num_rows − result.num_samples``.
      top: basis vectors and planes listed (``top_basis_vectors``, ``top_planes``); default
        ``min(20, P)``.
      memory_budget: bytes the report may hold at once (:func:`check_memory`): the rotation
        batches of the field's measures are sized from it.
      measures: :class:`srm_jax.basis_measures.MeasureSums` of *all* samples on the basis'
        directions (streamed by the caller); default those of ``activations``. The rotation
        null of the measures is computed on ``activations``, with the SRM test's key.
      peaks: with a summary ``result``, the exact SRM of *all* samples on the candidate planes
        ``pairs[candidate_planes(result)]`` (streamed by the caller); default measured on
        ``activations``.

    Summaries (``result`` an :class:`srm_jax.SRMSummary`): the mean curve, the neuron ranking and
    the rotation test use every plane; ``top_planes`` and ``max_srm`` come from the exact curves
    of the :data:`PEAK_CANDIDATES` planes with the most lit counts (exact as the best by peak
    when ``top_planes_exact``); the null band is that of the mean curve; the ε sweep and the
    class selectivity use a random subset of :data:`SWEEP_PLANES` planes and the candidates.

    Returns:
      :class:`Report`.
    """
    epsilon = check_epsilon(float(epsilon))
    if statistic not in STATISTICS:
        raise ReportError(f"--statistic must be one of {STATISTICS}, got {statistic!r}")
    if int(num_resamples) < 1:
        raise ReportError(f"--resamples must be >= 1, got {num_resamples}")
    x = jnp.asarray(activations)
    if x.ndim != 2:
        raise ReportError(f"activations must be (N, n), got shape {x.shape}")
    b = jnp.asarray(check_basis(basis, x.shape[1]))
    k_planes, k_test, k_band, k_sel, k_proj = jax.random.split(key, 5)
    pairs = (report_planes(b, planes, max_planes=max_planes, key=k_planes)
             if isinstance(planes, str) else jnp.asarray(planes, jnp.int32))
    # Rows with NaN/Inf stay (every analysis leaves them out), so the shapes, and with them the
    # compiled computations, depend only on the number of rows.
    num_finite = int(np.sum(np.asarray(jnp.all(jnp.isfinite(x), axis=1))))
    summaries = isinstance(result, SRMSummary) or (
        result is None and uses_summaries(b, pairs, epsilon))
    if result is None:
        result = (resonance_summary(x, b, epsilon=epsilon, planes=pairs) if summaries else
                  spotlight_resonance(x, b, epsilon=epsilon, planes=pairs))
    num_samples = int(result.num_samples)
    num_rows = int(x.shape[0] if num_rows is None else num_rows)
    if num_samples == 0 or num_finite == 0:
        raise ReportError("every row of the activations contains NaN or Inf: nothing to measure")
    n, m = int(b.shape[1]), int(b.shape[0])
    num_planes = int(pairs.shape[0])
    num_top = check_top(top, num_planes)
    signed = _neurons.signed_neurons(b)
    check_memory(  # the report applies one rotation at a time (SRM and measures fused)
        int(x.shape[0]), n, m, signed.num_directions, num_planes,
        int(result.angles.shape[0]), int(num_resamples), float(memory_budget),
        summaries=summaries)

    if summaries:
        candidates = candidate_planes(result, PEAK_CANDIDATES)
        if peaks is None:
            peaks = spotlight_resonance(x, b, epsilon=epsilon, planes=pairs[candidates])
        if not np.array_equal(np.asarray(peaks.planes), np.asarray(pairs[candidates])):
            raise ReportError(f"peaks must hold the {candidates.shape[0]} candidate planes, "
                              "pairs[candidate_planes(result)]")
        totals = np.asarray(result.lit_plane_totals, np.float64)
        reference = resonance_summary(b, b, epsilon=epsilon, planes=pairs)
    else:
        candidates = np.arange(num_planes)
        peaks = result
        totals = None
        reference = self_srm(b, epsilon=epsilon, planes=pairs)
    candidate_pairs = pairs[candidates]
    score = _float(alignment_score(result, reference))
    expectation = _float(isotropic_expectation(n, epsilon))
    band_samples = min(int(x.shape[0]),
                       SUMMARY_NULL_BAND_SAMPLES if summaries else NULL_BAND_SAMPLES)
    band = null_band(k_band, band_samples, b, epsilon=epsilon, planes=pairs,
                     num_draws=NULL_BAND_DRAWS, per_plane=not summaries)
    band = _scaled_band(band, num_samples)
    # One rotation loop for SRM and the field's measures: each rotation's product x q serves
    # both (a ±e_i basis then reads its coordinates by a gather).
    measure_args = _measures.direction_arguments(signed, b)
    test = alignment_test(
        k_test, x, b, epsilon=epsilon, num_rotations=int(num_resamples), statistic=statistic,
        planes=pairs, measure=_ROTATED_STATISTICS, measure_args=measure_args)
    p_greater = _float(test.p_value)
    p_less = _float(permutation_p_value(test.score, test.null_scores, "less"))
    kind, p_value, sentence = verdict(p_greater, p_less)
    sweep_pairs = pairs
    if summaries and num_planes > SWEEP_PLANES:
        chosen = subset_indices(num_planes, SWEEP_PLANES, jax.random.fold_in(k_planes, 1))
        sweep_pairs = pairs[chosen]
    sweep = alignment_sweep(x, b, jnp.asarray(epsilons, jnp.float32), planes=sweep_pairs)
    if not math.isfinite(score):  # a flat curve: no alignment can be read at this ε
        why = (f"the SRM curve is flat at ε = {epsilon:g}" if float(np.max(result.mean_curve))
               else f"no sample falls inside a spotlight at ε = {epsilon:g}")
        best = _float(sweep.best_epsilon)
        hint = f" (the ε sweep's best is {best:g})" if math.isfinite(best) else ""
        kind, sentence = "no evidence", f"no evidence of alignment: {why}{hint}"

    selectivity = distinct = None
    summary_classes = None
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64)
        if labels.shape != (x.shape[0],):
            raise ReportError(f"labels have shape {labels.shape}; one per row, ({x.shape[0]},), "
                              "is needed")
        num_classes = int(labels.max()) + 1 if np.any(labels >= 0) else 0
        if num_classes == 0:
            raise ReportError("the labels have no non-negative class")
        selectivity = rank_selectivity(
            k_sel, x, b, jnp.asarray(labels, jnp.int32), num_classes=num_classes,
            epsilon=epsilon, planes=candidate_pairs, num_shuffles=int(num_resamples),
        )
        distinct = distinct_planes(b, candidate_pairs, selectivity.plane_order)
        top = int(distinct[0])
        summary_classes = _selectivity_table(selectivity, distinct, num_classes)
    else:
        top = _top_plane_without_labels(peaks, expectation)
    top_pair = candidate_pairs[top]
    density = projection_density(k_proj, x, b, top_pair, bins=PROJECTION_BINS)

    peak_arrays = _neurons.plane_summaries(peaks.counts, peaks.angles)
    if totals is None:
        totals = np.asarray(peak_arrays.totals)
    # A plane's peak is at most its total: the candidates' top peaks are the best of every
    # plane when they reach the largest total left out.
    rest = np.delete(totals, candidates) if candidates.shape[0] < num_planes else np.zeros(0)
    bound = float(np.max(rest)) if rest.size else -math.inf
    candidate_peaks = np.sort(np.asarray(peak_arrays.peaks, np.float64))[::-1]
    top_exact = bool(candidate_peaks[min(num_top, candidate_peaks.size) - 1] >= bound)
    plane_arrays = _neurons.PlaneSummaries(jnp.asarray(totals), peak_arrays.peaks,
                                           peak_arrays.peak_angles)
    tables = neuron_tables(signed, plane_arrays, pairs, num_samples, num_top,
                           peak_pairs=candidate_pairs)
    test_measures = _measures.measures_test(
        _measures.measure_directions(x, measure_args), test.null_measured, 1)
    streamed = None if measures is None else _measures.finalise_measures(measures)
    measure_rows = measures_table(test_measures, streamed, signed, kind, num_top)

    values = np.asarray(peaks.values)
    summary: dict[str, Any] = {
        "verdict": kind,
        "verdict_sentence": sentence,
        "num_rows": num_rows,
        "num_samples": num_samples,
        "num_excluded": num_rows - num_samples,
        "num_test_samples": num_finite,
        "n": n,
        "m": m,
        "num_planes": num_planes,
        "measurement": "summaries" if summaries else "counts",
        "peak_candidates": int(candidates.shape[0]),
        "top_planes_exact": top_exact,
        "num_angles": int(result.angles.shape[0]),
        "epsilon": epsilon,
        "alignment_score": score,
        "p_value": p_value,
        "p_value_aligned": p_greater,
        "p_value_anti_aligned": p_less,
        "significance_level": SIGNIFICANCE_LEVEL,
        "statistic": statistic,
        "test_score": _float(test.score),
        "num_rotations": int(num_resamples),
        "min_p_value": min(1.0, 2.0 / (int(num_resamples) + 1)),
        "isotropic_expectation": expectation,
        "mean_srm": _float(np.mean(np.asarray(result.mean_curve))),
        "max_srm": _float(np.max(values)),
        "best_epsilon": _float(sweep.best_epsilon),
        "epsilon_sweep": {
            "num_planes": int(sweep_pairs.shape[0]),
            "epsilons": _floats(sweep.epsilons),
            "alignment_scores": _floats(sweep.scores),
        },
        "top_plane": [int(a) for a in np.asarray(top_pair)],
        "null_band_samples": band_samples,
        "class_selectivity": summary_classes,
        "top": num_top,
        **tables,
        "measures": measure_rows,
    }
    return Report(summary, result, reference, band, test, sweep, selectivity, distinct, density,
                  signed, plane_arrays, test_measures, peaks)


# ------------------------------------------------------------------------------- outputs


def write_figures(report: Report, directory: str) -> dict[str, str]:
    """Draws the report's figures into ``directory``; returns ``{name: file name}``.

    SRM curves with the isotropic null band (:func:`srm_jax.plot_srm`), the ε sweep, the
    rotation test, the per-class SRM of the top plane (with labels) and the projection density
    of the top plane.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from srm_jax import plotting

    written = {}

    def save(name, fig):
        fig.tight_layout()
        fig.savefig(os.path.join(directory, FIGURES[name]), dpi=110)
        plt.close(fig)
        written[name] = FIGURES[name]

    fig, ax = plt.subplots(figsize=(6, 4))
    summaries = isinstance(report.result, SRMSummary)
    plotting.plot_srm(
        report.result, null=report.band, ax=ax,
        curves=report.peaks if summaries else None,
        title=(f"SRM, ε = {float(report.result.epsilon):g}: mean over "
               f"{report.result.planes.shape[0]:,} planes, the {report.peaks.counts.shape[0]:,} "
               "with most lit counts drawn") if summaries else None)
    save("srm", fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    plotting.plot_alignment_sweep(report.sweep, ax=ax)
    save("epsilon_sweep", fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    p_value = report.summary["p_value"]
    plotting.plot_alignment_test(
        report.test, ax=ax, title="rotation test (legend: one-sided p for alignment)\n"
        f"two-sided p = {p_value:.2g}" if math.isfinite(p_value) else None)
    save("rotation_test", fig)
    if report.selectivity is not None:
        fig = plotting.plot_grandmother(report.selectivity, top=1,
                                        plane_indices=report.distinct)
        save("per_class", fig)
    fig, ax = plt.subplots(figsize=(5, 4.3))
    plotting.plot_projection_density(report.density, ax=ax, min_expected=0.2)
    save("projection", fig)
    if report.signed is not None and report.planes is not None:
        signed, pairs = report.signed, np.asarray(report.result.planes)
        shares = _neurons.vector_shares(report.planes.totals, pairs, signed.direction.shape[0])
        if signed.orthonormal:
            per_neuron = np.asarray(_neurons.neuron_shares(shares, signed.direction,
                                                           signed.num_directions))
            mean_srm = np.asarray(report.planes.totals, np.float64) / max(
                int(report.result.angles.shape[0]) * int(report.result.num_samples), 1)
            image = _neurons.neuron_map(mean_srm, pairs, signed.direction, signed.num_directions)
            top = np.argsort(-np.nan_to_num(per_neuron, nan=-1.0), kind="stable")[:MAP_LABELS]
            fig, ax = plt.subplots(figsize=(6, 5.2))
            plotting.plot_neuron_map(image, neurons=signed.neuron, labelled=top, ax=ax)
            save("neuron_map", fig)
            labels = signed.neuron
        else:
            per_neuron, labels = np.asarray(shares), None
        fig = plt.figure(figsize=(max(4.0, 0.16 * min(CHART_NEURONS, len(per_neuron)) + 1.5),
                                  3.4))
        plotting.plot_neuron_shares(per_neuron, neurons=labels, top=CHART_NEURONS,
                                    ax=fig.add_subplot(),
                                    title=None if signed.orthonormal else
                                    f"top {min(CHART_NEURONS, len(per_neuron))} basis vectors "
                                    "by share of SRM")
        save("neuron_shares", fig)
    return written


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "undefined"
    return f"{value:.{digits}g}"


def report_markdown(summary: dict, figures: dict[str, str], *, source: str = "") -> str:
    """``report.md``: the verdict in one sentence, the key numbers and the figures."""
    s = summary
    lines = ["# SRM report" + (f": `{source}`" if source else ""), ""]
    sentence = s["verdict_sentence"]
    lines.append(f"**Verdict: {sentence[0].upper() + sentence[1:]}.**")
    lines.append("")
    if s.get("top_neurons"):
        names = ", ".join(str(t["neuron"]) for t in s["top_neurons"][:MAP_LABELS])
        lines += [f"Top neurons (by share of the lit counts): {names}.", ""]
    elif s.get("top_basis_vectors"):
        names = ", ".join(str(t["index"]) for t in s["top_basis_vectors"][:MAP_LABELS])
        lines += [f"Top basis vectors (by share of the lit counts): {names}.", ""]
    if s.get("measures"):
        lines += [s["measures"]["agreement"], ""]
    subset = ""
    if s["num_test_samples"] < s["num_samples"]:
        subset = f" (on a random subset of {s['num_test_samples']:,} samples)"
    lines += [
        f"SRM of {s['num_samples']:,} samples ({s['num_excluded']:,} rows with NaN/Inf "
        f"excluded) in n = {s['n']} dimensions about {s['num_planes']:,} planes of a basis of "
        f"m = {s['m']} vectors, at ε = {s['epsilon']:g}. The rotation test{subset} compares the "
        f"basis with {s['num_rotations']} random rotations of it "
        f"(statistic: {s['statistic']}, two-sided).",
        "",
    ]
    if s["min_p_value"] > s["significance_level"]:
        lines += [
            f"With {s['num_rotations']} rotations the smallest attainable p-value is "
            f"{s['min_p_value']:.2g}, above the level {s['significance_level']:g}: no verdict "
            "of alignment is possible; raise --resamples.",
            "",
        ]
    lines += [
        "| quantity | value |",
        "| --- | --- |",
        f"| alignment score (corr. of mean SRM with mean self-SRM) | "
        f"{_number(s['alignment_score'])} |",
        f"| p-value (two-sided; aligned / anti-aligned one-sided) | {_number(s['p_value'])} "
        f"({_number(s['p_value_aligned'])} / {_number(s['p_value_anti_aligned'])}) |",
        f"| mean SRM (isotropic expectation) | {_number(s['mean_srm'])} "
        f"({_number(s['isotropic_expectation'])}) |",
        f"| best ε of the sweep | {_number(s['best_epsilon'])} |",
        "",
    ]
    captions = {
        "srm": "SRM of every plane (faint), their mean (dashed) and the isotropic null band",
        "epsilon_sweep": "alignment score over the ε sweep",
        "rotation_test": "the basis' score among randomly rotated bases",
        "per_class": "per-class signed SRM of the most class-selective plane",
        "projection": "density of the samples in the top plane relative to isotropic data",
        "neuron_map": "mean SRM of the planes of every pair of neurons (log scale), top neurons "
                      "labelled",
        "neuron_shares": "share of the lit counts carried by the planes of each neuron, top 50",
    }
    for name, file in figures.items():
        caption = captions[name][0].upper() + captions[name][1:]
        lines += [f"![{captions[name]}]({file})", "", f"*{caption}.*", ""]
    lines += _neurons_markdown(s) + _measures_markdown(s)
    classes = s.get("class_selectivity")
    if classes:
        lines += [
            f"## Class selectivity ({classes['num_classes']} classes, "
            f"{classes['num_shuffles']} label shuffles)",
            "",
            "| plane | selectivity S | z | p | p (family-wise) |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [f"| ({p['plane'][0]}, {p['plane'][1]}) | {_number(p['selectivity'])} | "
                  f"{_number(p['z'])} | {_number(p['p_value'])} | "
                  f"{_number(p['p_family_wise'])} |" for p in classes["planes"]]
        lines += ["", "| basis vector | selectivity S | z | p | p (family-wise) |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {v['vector']} | {_number(v['selectivity'])} | {_number(v['z'])} | "
                  f"{_number(v['p_value'])} | {_number(v['p_family_wise'])} |"
                  for v in classes["vectors"]]
        lines.append("")
    return "\n".join(lines)


def _neurons_markdown(s: dict) -> list[str]:
    """The "Which neurons" section: the top basis vectors and planes."""
    if not s.get("top_basis_vectors"):
        return []
    signed = s.get("basis_is_signed_orthonormal")
    lines = ["## Which neurons", "",
             "Basis vectors ranked by the share of the lit counts (Σ over θ of SRM counts) "
             "their planes carry" + ("; ±q_k is neuron k" if signed else "") + ".", "",
             "| rank | vector | neuron | sign | share |", "| --- | --- | --- | --- | --- |"]
    for rank, v in enumerate(s["top_basis_vectors"], 1):
        neuron = "–" if v["neuron"] is None else str(v["neuron"])
        sign = "–" if v["sign"] is None else ("+" if v["sign"] > 0 else "−")
        lines.append(f"| {rank} | {v['index']} | {neuron} | {sign} | {_number(v['score'])} |")
    lines += ["", "Planes with the highest SRM peak:", "",
              "| rank | plane | vectors | peak SRM | angle of the peak |",
              "| --- | --- | --- | --- | --- |"]
    for rank, p in enumerate(s["top_planes"], 1):
        lines.append(f"| {rank} | ({p['plane'][0]}, {p['plane'][1]}) | "
                     f"{p['neurons'][0]}, {p['neurons'][1]} | {_number(p['peak_srm'])} | "
                     f"{_number(p['peak_angle'])} |")
    return lines + [""]


def _measures_markdown(s: dict) -> list[str]:
    """The "measures beside SRM" section: one table, the agreement with SRM."""
    m = s.get("measures")
    if not m:
        return []
    lines = [
        "## The field's measures beside SRM", "",
        f"Taken on {m['coordinates']}; the value on all {m['num_samples']:,} samples, and the "
        f"basis against the same {s['num_rotations']} random rotations as the SRM test on "
        f"{m['num_test_samples']:,} samples (two-sided p as SRM's). The verdict uses the "
        "scale-free outlier share; the proximity median is read from "
        f"{m['proximity_bins']} bins on [0, 1] (within {0.5 / m['proximity_bins']:.1g}).", "",
        "| measure | basis | rotations: median [2.5 %, 97.5 %] | p | reading |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in _measures.MEASURES:
        row = m[name]
        q = row["null_quantiles"]
        lines.append(f"| {MEASURE_NAMES[name]} | {_number(row['value'])} | {_number(q[1])} "
                     f"[{_number(q[0])}, {_number(q[2])}] | {_number(row['p_value'])} | "
                     f"{row['evidence']} |")
    relative = ", ".join(f"{d['dimension']} ({d['share']:.2g})"
                         for d in m["outlier_dimensions_relative"][:MAP_LABELS])
    share = m["outlier_dimension_share"]
    lines += ["", f"Outlier dimensions (scale-free, ≥ {share:.0%} of tokens): "
              f"{relative or 'none'}.", "", m["agreement"], ""]
    return lines


def layer_table(summaries: list[dict]) -> list[dict]:
    """One row per layer: key, verdict, p, top neurons (or basis vectors) and kurtosis."""
    rows = []
    for s in summaries:
        tops = s.get("top_neurons") or [{"neuron": v["index"]} for v in s["top_basis_vectors"]]
        kurt = s["measures"]["kurtosis"]
        rows.append({
            "key": s["input"]["key"],
            "verdict": s["verdict"],
            "p_value": s["p_value"],
            "top_neurons": [t["neuron"] for t in tops[:5]],
            "kurtosis": kurt["value"],
            "kurtosis_p_value": kurt["p_value"],
            "measures_agree": s["measures"]["agrees_with_srm"],
        })
    return rows


def layers_sentence(summaries: list[dict]) -> str:
    """Which layers are aligned, in one sentence."""
    aligned = [str(s["input"]["key"]) for s in summaries if s["verdict"] == "aligned"]
    anti = [str(s["input"]["key"]) for s in summaries if s["verdict"] == "anti-aligned"]
    parts = []
    if aligned:
        parts.append(f"aligned with the basis: {', '.join(aligned)}")
    if anti:
        parts.append(f"anti-aligned: {', '.join(anti)}")
    if not parts:
        return f"no evidence of alignment in any of the {len(summaries)} layers"
    return f"of {len(summaries)} layers, " + "; ".join(parts)


def layers_summary(summaries: list[dict]) -> dict:
    """``report.json`` of a multi-layer report: one entry per layer and the table across them."""
    return {
        "layers": summaries,
        "layer_table": layer_table(summaries),
        "aligned_layers": [s["input"]["key"] for s in summaries if s["verdict"] == "aligned"],
        "sentence": layers_sentence(summaries),
    }


def layers_markdown(summaries: list[dict], figures: list[dict], *, source: str = "") -> str:
    """``report.md`` of a multi-layer report: the table across layers, then a section a layer."""
    lines = ["# SRM report" + (f": `{source}`" if source else ""), "",
             f"**{layers_sentence(summaries)[0].upper()}{layers_sentence(summaries)[1:]}.**", "",
             "| layer | verdict | p | top neurons | kurtosis (p) | measures agree |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in layer_table(summaries):
        lines.append(f"| {row['key']} | {row['verdict']} | {_number(row['p_value'])} | "
                     f"{', '.join(map(str, row['top_neurons']))} | {_number(row['kurtosis'])} "
                     f"({_number(row['kurtosis_p_value'])}) | "
                     f"{'yes' if row['measures_agree'] else 'no'} |")
    lines.append("")
    for summary, figs in zip(summaries, figures, strict=True):
        section = report_markdown(summary, figs).splitlines()
        section[0] = f"## Layer `{summary['input']['key']}`"
        lines += ["#" + line if line.startswith("## ") else line for line in section]
        lines.append("")
    return "\n".join(lines)


def json_safe(value):
    """``value`` with NaN/Inf floats as ``None`` and NumPy scalars as Python numbers (JSON)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
