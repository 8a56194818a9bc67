"""The SRM report of one layer: its stages composed (:func:`srm_report`)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from srm_jax import _validation
from srm_jax import basis_measures as _measures
from srm_jax import neurons as _neurons
from srm_jax.per_class import Selectivity
from srm_jax.projection import ProjectionDensity, projection_density
from srm_jax.report.checks import check_basis, check_count, check_epsilon, check_memory, check_top
from srm_jax.report.classes import class_selectivity, top_plane
from srm_jax.report.defaults import (
    DEFAULT_EPSILON,
    DEFAULT_MEMORY_BUDGET_GIB,
    DEFAULT_RESAMPLES,
    DEFAULT_STATISTIC,
    DEFAULT_SWEEP,
    PROJECTION_BINS,
)
from srm_jax.report.errors import ReportError
from srm_jax.report.measurement import measure_srm, measurement
from srm_jax.report.measures import measures_against_rotations, measures_table
from srm_jax.report.neurons import rank_neurons
from srm_jax.report.planes import report_planes, uses_summaries
from srm_jax.report.significance import assess_alignment, flat_verdict
from srm_jax.report.summary import report_summary
from srm_jax.report.sweep import sweep_epsilon, sweep_planes
from srm_jax.resonance import SRMResult
from srm_jax.significance import AlignmentTest, NullBand, check_statistic
from srm_jax.spectrum import EpsilonSweep
from srm_jax.summaries import SRMSummary


@dataclasses.dataclass(frozen=True)
class Report:
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
      neurons: the basis' neurons (:class:`srm_jax.neurons.SignedBasis`).
      plane_summaries: per-plane totals, peaks and peak angles
        (:class:`srm_jax.neurons.PlaneSummaries`).
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
    neurons: _neurons.SignedBasis | None = None
    plane_summaries: _neurons.PlaneSummaries | None = None
    measures: _measures.MeasuresTest | None = None
    peaks: SRMResult | None = None


def _checked_inputs(activations, basis, epsilon, statistic, num_resamples):
    """The activations and basis as arrays and ε as a float, every setting checked."""
    epsilon = check_epsilon(float(epsilon))
    try:
        check_statistic(statistic)
    except ValueError as error:
        raise ReportError(str(error)) from None
    check_count("num_resamples", num_resamples)
    x = jnp.asarray(activations)
    if x.ndim != 2:
        raise ReportError(f"activations must be (N, n), got shape {x.shape}")
    return x, jnp.asarray(check_basis(basis, x.shape[1])), epsilon


def srm_report(
    activations: jax.Array,
    basis: jax.Array,
    *,
    key: jax.Array,
    epsilon: float | jax.Array = DEFAULT_EPSILON,
    labels: jax.Array | None = None,
    planes: str | jax.Array = "comb",
    max_planes: int | None = None,
    num_resamples: int = DEFAULT_RESAMPLES,
    statistic: str = DEFAULT_STATISTIC,
    epsilons=DEFAULT_SWEEP,
    result: SRMResult | SRMSummary | None = None,
    num_rows: int | None = None,
    top: int | None = None,
    memory_budget: float = DEFAULT_MEMORY_BUDGET_GIB * 2**30,
    streamed_sums: _measures.MeasureSums | None = None,
    peaks: SRMResult | None = None,
    measures=_validation.UNSET,
) -> Report:
    """The SRM report of ``activations`` on ``basis``: numbers (``Report.summary``) and figures.

    Composes SRM (Eqn. 2) and self-SRM with the alignment score (Sec. 3), the rotation test
    (App. B.1), the isotropic expectation and null band (App. F, Eqn. 18; math §6), an ε sweep,
    and with labels the class-selectivity ranking (App. B.2, Eqn. 4); see :mod:`srm_jax.report`.

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
        summaries where :func:`srm_jax.report.uses_summaries` says so.
      num_rows: the number of rows read, counted or not (default ``S``); ``num_excluded`` is
        ``num_rows − result.num_samples``.
      top: basis vectors and planes listed (``top_basis_vectors``, ``top_planes``); default
        ``min(20, P)``.
      memory_budget: bytes the report may hold at once (:func:`srm_jax.report.check_memory`):
        the rotation batches of the field's measures are sized from it.
      streamed_sums: :class:`srm_jax.basis_measures.MeasureSums` of *all* samples on the basis'
        directions (streamed by the caller); default those of ``activations``. The rotation
        null of the measures is computed on ``activations``, with the SRM test's key.
      peaks: with a summary ``result``, the exact SRM of *all* samples on the candidate planes
        ``pairs[candidate_planes(result)]`` (streamed by the caller); default measured on
        ``activations``.
      measures: deprecated name of ``streamed_sums`` (one release).

    Summaries (``result`` an :class:`srm_jax.SRMSummary`): the mean curve, the neuron ranking and
    the rotation test use every plane; ``top_planes`` and ``max_srm`` come from the exact curves
    of the ``PEAK_CANDIDATES`` planes with the most lit counts (exact as the best by peak
    when ``top_planes_exact``); the null band is that of the mean curve; the ε sweep and the
    class selectivity use a random subset of ``SWEEP_PLANES`` planes and the candidates.

    Returns:
      :class:`Report`.
    """
    streamed_sums = _validation.renamed(
        "srm_report", "measures", measures, "streamed_sums", streamed_sums, None)
    x, b, epsilon = _checked_inputs(activations, basis, epsilon, statistic, num_resamples)
    k_planes, k_test, k_band, k_sel, k_proj = jax.random.split(key, 5)
    pairs = (report_planes(b, planes, max_planes=max_planes, key=k_planes)
             if isinstance(planes, str) else jnp.asarray(planes, jnp.int32))
    summaries = isinstance(result, SRMSummary) or (
        result is None and uses_summaries(b, pairs, epsilon))
    result, num_finite = measure_srm(x, b, pairs, epsilon, summaries, result)
    num_top = check_top(top, int(pairs.shape[0]))
    neurons = _neurons.signed_neurons(b)
    check_memory(  # the report applies one rotation at a time (SRM and measures fused)
        int(x.shape[0]), int(b.shape[1]), int(b.shape[0]), neurons.num_directions,
        int(pairs.shape[0]), int(result.angles.shape[0]), int(num_resamples),
        float(memory_budget), summaries=summaries)
    measured = measurement(x, b, pairs, epsilon, result, num_finite, num_rows=num_rows,
                           peaks=peaks)
    measure_args = _measures.direction_arguments(neurons, b)
    significance = assess_alignment(
        (k_test, k_band), x, b, pairs, measured, measure_args, epsilon=epsilon,
        num_resamples=num_resamples, statistic=statistic)
    swept = sweep_planes(k_planes, pairs, measured.summaries)
    sweep = sweep_epsilon(x, b, swept, epsilons)
    significance = flat_verdict(significance, sweep, result.mean_curve, epsilon)
    candidate_pairs = pairs[measured.candidates]
    classes = None if labels is None else class_selectivity(
        k_sel, x, b, labels, candidate_pairs, epsilon=epsilon, num_resamples=num_resamples)
    top_pair = candidate_pairs[top_plane(classes, measured.peaks, significance.expectation)]
    density = projection_density(k_proj, x, b, top_pair, bins=PROJECTION_BINS)
    ranking = rank_neurons(neurons, measured, pairs, num_top)
    tested = measures_against_rotations(x, measure_args, significance.test)
    streamed = None if streamed_sums is None else _measures.finalise_measures(streamed_sums)
    table = measures_table(tested, streamed, neurons, significance.verdict, num_top)
    summary = report_summary(
        measured, significance, sweep, swept, ranking, classes, table,
        shape=(int(b.shape[1]), int(b.shape[0]), int(pairs.shape[0])), epsilon=epsilon,
        statistic=statistic, num_resamples=int(num_resamples), top_pair=top_pair, top=num_top)
    return Report(
        summary=summary, result=result, reference=measured.reference, band=significance.band,
        test=significance.test, sweep=sweep,
        selectivity=None if classes is None else classes.selectivity,
        distinct=None if classes is None else classes.distinct, density=density,
        neurons=neurons, plane_summaries=ranking.plane_summaries, measures=tested,
        peaks=measured.peaks)
