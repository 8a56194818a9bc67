"""An SRM report of any activations: the numbers and figures behind ``srm-jax report``.

Given a layer's activations (``(N, n)``, from any framework) and a privileged basis, the report
answers "is this layer aligned with the basis?" with the library's own analyses, composed:

* SRM (Eqn. 2) of every sample about every plane of the basis, and the alignment score: the
  Pearson correlation over θ of the mean SRM curve with the mean self-SRM curve (Sec. 3,
  :func:`srm_jax.alignment_score`). A file larger than memory is streamed through
  :func:`srm_jax.accumulate_srm` (exact integer counts, math §4.4) by :mod:`.stream`.
* the rotation test (App. B.1 made a p-value, :func:`srm_jax.alignment_test`): the score of the
  real basis against the scores of Haar-randomly rotated copies of it, the data unchanged;
* the isotropic expectation (App. F, Eqn. 18, math §6: :func:`srm_jax.isotropic_expectation`)
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
  (:mod:`srm_jax.basis_measures`), and whether they agree with SRM's verdict;
* without ``epsilon``, the verdict over a sweep of ε (:data:`DEFAULT_TEST_SWEEP`, one family:
  min-p, math §6.2), naming the ε with the strongest evidence (:func:`sweep_evidence`);
* who carries the signal at that ε (:mod:`.carriers`: the rows that light the planes, the
  massive rows, their tokens, neurons ranked by credit with ties marked,
  :func:`srm_jax.lit_credits`, math §11), and the bulk, the other rows, analysed on their own
  when the massive rows carry most of the lit counts (:mod:`.bulk`, :func:`bulk_rule`);
* the mean activation's share of the squared norm and direction, and with ``centered`` the
  verdict of the uncentred rows (:mod:`.rows`).

Memory: :func:`check_memory` sizes the rotation batches from a budget (``memory_budget``) and
refuses, in one line naming what to reduce, an input that cannot fit.

The verdict is two-sided: with ``p_greater`` the rotation test's p-value for alignment and
``p_less`` the one for anti-alignment (the same null scores), ``p = min(1, 2 min(p_greater,
p_less))``; below the significance level (0.05) the data are "aligned" (``p_greater`` the
smaller) or "anti-aligned", otherwise there is "no evidence of alignment". With ``K`` rotations
the smallest attainable ``p`` is ``2/(K + 1)`` (0.01 for the default ``K = 199``).

The package, one concept a module:

* reading the inputs: :mod:`.reading` (arrays, shards, samples, labels, a basis file),
  :mod:`.bases` (named bases), :mod:`.planes` (which planes), :mod:`.checks` (settings, memory);
* the analysis, stages each returning a typed record: :mod:`.measurement`,
  :mod:`.significance`, :mod:`.sweep`, :mod:`.classes`, :mod:`.neurons`, :mod:`.measures`,
  composed by :func:`srm_report` (:mod:`.compose`) into a :class:`Report` whose ``summary``
  (:mod:`.summary`) is the JSON-able dict of ``report.json``;
* rendering: :mod:`.figures`, :mod:`.markdown`, :mod:`.output` (the files, all or nothing);
* files end to end: :mod:`.stream` and :func:`run_report` (:mod:`.run`); the command line,
  :mod:`.cli`, only parses flags.

Everything here is a function of arrays and settings (PRNG keys only).
"""

from srm_jax.report.bases import BASIS_SPECS, basis_from_spec
from srm_jax.report.bulk import Bulk, analyse_bulk
from srm_jax.report.carriers import Carriers, GroupCurve, bulk_rule, find_carriers, ranked_scores
from srm_jax.report.checks import (
    check_basis,
    check_epsilon,
    check_memory,
    check_top,
    default_max_samples,
    memory_budget_bytes,
    report_bytes,
)
from srm_jax.report.classes import ClassSelectivity, selectivity_table
from srm_jax.report.compose import Report, report_rotations, srm_report
from srm_jax.report.defaults import (
    CHART_NEURONS,
    DEFAULT_EPSILON,
    DEFAULT_MAX_SAMPLES,
    DEFAULT_MEMORY_BUDGET_GIB,
    DEFAULT_RESAMPLES,
    DEFAULT_SAMPLED_PLANES,
    DEFAULT_STATISTIC,
    DEFAULT_SWEEP,
    DEFAULT_TEST_SWEEP,
    DEFAULT_TOP,
    FIGURES,
    HELD_ROTATIONS_SHARE,
    MAP_LABELS,
    MASSIVE_COS,
    MIN_MAX_SAMPLES,
    NULL_BAND_DRAWS,
    NULL_BAND_SAMPLES,
    PEAK_CANDIDATES,
    PROJECTION_BINS,
    ROTATION_DRAW_THREADS,
    ROTATION_TEST_ENUMERATION,
    ROTATION_TEST_WORK,
    SIGNIFICANCE_LEVEL,
    SUMMARY_NULL_BAND_SAMPLES,
    SWEEP_PLANES,
    TOP_ITEMS,
)
from srm_jax.report.errors import ReportError
from srm_jax.report.figures import write_figures
from srm_jax.report.jsonable import json_safe
from srm_jax.report.markdown import (
    layer_table,
    layers_markdown,
    layers_sentence,
    layers_summary,
    report_markdown,
)
from srm_jax.report.measurement import Measurement
from srm_jax.report.measures import MEASURE_NAMES, VERDICT_MEASURES, measures_table
from srm_jax.report.neurons import NeuronRanking, neuron_tables
from srm_jax.report.planes import (
    candidate_planes,
    choose_planes,
    report_planes,
    subset_indices,
    uses_summaries,
)
from srm_jax.report.reading import (
    ArraySource,
    Samples,
    ShardedSource,
    load_basis,
    load_labels,
    load_tokens,
    load_vocab,
    shard_paths,
)
from srm_jax.report.rows import MeanFacts, RowFacts
from srm_jax.report.run import ReportSettings, run_report
from srm_jax.report.significance import Significance, sweep_evidence, verdict
from srm_jax.report.summary import report_summary

__all__ = [
    "ArraySource", "BASIS_SPECS", "Bulk", "CHART_NEURONS", "Carriers", "ClassSelectivity",
    "DEFAULT_EPSILON", "DEFAULT_TEST_SWEEP", "GroupCurve", "MASSIVE_COS", "MeanFacts",
    "RowFacts", "analyse_bulk", "bulk_rule", "find_carriers", "load_tokens", "load_vocab",
    "ranked_scores", "sweep_evidence",
    "DEFAULT_MAX_SAMPLES", "DEFAULT_MEMORY_BUDGET_GIB", "DEFAULT_RESAMPLES",
    "DEFAULT_SAMPLED_PLANES", "DEFAULT_STATISTIC", "DEFAULT_SWEEP", "DEFAULT_TOP", "FIGURES",
    "MAP_LABELS", "MEASURE_NAMES", "MIN_MAX_SAMPLES", "Measurement", "NULL_BAND_DRAWS",
    "NULL_BAND_SAMPLES", "NeuronRanking", "PEAK_CANDIDATES", "PROJECTION_BINS",
    "ROTATION_DRAW_THREADS", "ROTATION_TEST_ENUMERATION", "ROTATION_TEST_WORK",
    "HELD_ROTATIONS_SHARE", "report_rotations",
    "Report", "ReportError", "ReportSettings", "SIGNIFICANCE_LEVEL", "SUMMARY_NULL_BAND_SAMPLES",
    "SWEEP_PLANES", "Samples", "ShardedSource", "Significance", "TOP_ITEMS", "VERDICT_MEASURES",
    "basis_from_spec", "candidate_planes", "check_basis", "check_epsilon", "check_memory",
    "check_top", "choose_planes", "default_max_samples", "json_safe", "layer_table",
    "layers_markdown", "layers_sentence", "layers_summary", "load_basis", "load_labels",
    "measures_table", "memory_budget_bytes", "neuron_tables", "report_bytes", "report_markdown",
    "report_planes", "report_summary", "run_report", "selectivity_table", "shard_paths",
    "srm_report", "subset_indices", "uses_summaries", "verdict", "write_figures",
]
