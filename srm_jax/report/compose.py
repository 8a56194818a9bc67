"""The SRM report of one layer: its stages composed (:func:`srm_report`)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from srm_jax import _validation
from srm_jax import basis_measures as _measures
from srm_jax import neurons as _neurons
from srm_jax.per_class import Selectivity
from srm_jax.projection import ProjectionDensity, projection_density
from srm_jax.report.bulk import analyse_bulk, group_curve, group_summary
from srm_jax.report.carriers import (
    GroupCurve,
    find_carriers,
    massive_rows,
    may_analyse_bulk,
    ranked_scores,
)
from srm_jax.report.checks import check_basis, check_count, check_epsilon, check_memory, check_top
from srm_jax.report.classes import ClassSelectivity, class_selectivity, top_plane
from srm_jax.report.defaults import (
    DEFAULT_EPSILON,
    DEFAULT_MEMORY_BUDGET_GIB,
    DEFAULT_RESAMPLES,
    DEFAULT_STATISTIC,
    DEFAULT_SWEEP,
    DEFAULT_TEST_SWEEP,
    PROJECTION_BINS,
    ROTATION_DRAW_THREADS,
)
from srm_jax.report.errors import ReportError
from srm_jax.report.jsonable import to_float
from srm_jax.report.measurement import measure_srm, measurement
from srm_jax.report.measures import measures_against_rotations, measures_table
from srm_jax.report.neurons import NeuronRanking, rank_neurons
from srm_jax.report.planes import report_planes, uses_summaries
from srm_jax.report.rows import MeanFacts, RowFacts, mean_facts, row_facts_batch, row_sums_batch
from srm_jax.report.significance import (
    assess_alignment,
    flat_verdict,
    rotation_test,
    sweep_evidence,
)
from srm_jax.report.summary import report_summary
from srm_jax.report.sweep import sweep_epsilon, sweep_planes
from srm_jax.resonance import SRMResult
from srm_jax.rotation import normalise_rows
from srm_jax.significance import (
    AlignmentTest,
    NullBand,
    check_statistic,
    haar_rotations_of,
    isotropic_expectation,
)
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
      headline_test: the rotation test at the headline ε alone (``test`` holds every tested ε).
      vector_scores: ``(m,)`` credit of each basis vector over the analysed rows at the
        headline ε (:func:`srm_jax.lit_credits`): the neuron ranking's score.
      group_curves: with a bulk analysed, the mean SRM curves of ``"carriers"`` and ``"bulk"``
        (:class:`srm_jax.report.carriers.GroupCurve`); else ``None``.
      map_summary, map_scores: the neuron map's rows (the bulk when it is analysed, else every
        analysed row) at their headline ε: their SRM (an :class:`srm_jax.SRMSummary`, per-plane
        totals) and ``(m,)`` credits (the map's ranking); ``summary["neuron_map"]`` says which.
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
    headline_test: AlignmentTest | None = None
    vector_scores: np.ndarray | None = None
    group_curves: dict[str, GroupCurve] | None = None
    map_summary: SRMSummary | None = None
    map_scores: np.ndarray | None = None


def report_keys(key: jax.Array) -> tuple[jax.Array, ...]:
    """The keys :func:`srm_report` splits ``key`` into: planes, rotation test, null band, label
    shuffles, projection reference."""
    return tuple(jax.random.split(key, 5))


def report_rotations(key: jax.Array, n: int, num_resamples: int) -> jax.Array:
    """``(num_resamples, n, n)``: the rotations of :func:`srm_report`'s rotation tests with
    ``key`` (:func:`srm_jax.haar_rotations` of its test key), to draw once and pass as
    ``rotations=`` to every report of width ``n`` with that key (a multi-layer report).

    Drawn in :data:`ROTATION_DRAW_THREADS` runs of consecutive rotations side by side, one a
    thread: each rotation is a QR on one BLAS thread (:func:`srm_jax.report.cli.one_blas_thread`),
    so one run leaves the other cores idle (0.49 → 0.27 s a rotation at 1,536 units on 2 cores).
    The runs are joined at the end: twice the result's memory for a moment."""
    total = int(num_resamples)
    keys = jax.random.split(report_keys(key)[1], total)
    # Runs of one length, the last one's tail drawn and dropped: one compilation for every run,
    # and no longer than the longest of unequal runs.
    size = -(-total // min(ROTATION_DRAW_THREADS, total))
    padded = jnp.concatenate([keys, jnp.repeat(keys[-1:], -total % size, axis=0)])

    def draw(start: int) -> jax.Array:
        return jax.block_until_ready(_draw_rotations(padded[start:start + size], n=int(n)))

    starts = range(0, total, size)
    with concurrent.futures.ThreadPoolExecutor(len(starts)) as pool:
        drawn = list(pool.map(draw, starts))
    return (drawn[0] if len(drawn) == 1 else jnp.concatenate(drawn))[:total]


_draw_rotations = jax.jit(haar_rotations_of, static_argnames=("n", "dtype", "map_batch_size"))


def test_epsilons_of(epsilon: float | None,
                     test_epsilons: tuple[float, ...] | None = None) -> tuple[float, ...]:
    """The ε of the verdict's rotation test: ``test_epsilons`` when given, else ``(epsilon,)``
    for a given ``epsilon`` and :data:`DEFAULT_TEST_SWEEP` without one (every one checked)."""
    if test_epsilons is None:
        test_epsilons = DEFAULT_TEST_SWEEP if epsilon is None else (epsilon,)
    test_epsilons = tuple(check_epsilon(float(e)) for e in test_epsilons)
    if not test_epsilons:
        raise ReportError("test_epsilons= is empty: give at least one ε")
    if len(test_epsilons) > 1 and min(test_epsilons) <= 0:
        raise ReportError(f"test_epsilons= of a sweep must be positive, got {test_epsilons}")
    return test_epsilons


def _checked_inputs(activations, basis, epsilon, statistic, num_resamples):
    """The activations and basis as arrays and ε as a float (the measurement's: ``None`` is
    :data:`DEFAULT_EPSILON`), every setting checked."""
    epsilon = check_epsilon(float(DEFAULT_EPSILON if epsilon is None else epsilon))
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
    epsilon: float | jax.Array | None = None,
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
    test_epsilons: tuple[float, ...] | None = None,
    tokens=None,
    row_facts: RowFacts | None = None,
    all_tokens=None,
    vocab: dict[int, str] | None = None,
    mean: MeanFacts | None = None,
    centered: bool = False,
    uncentered=None,
    measures=_validation.UNSET,
    rotations: jax.Array | None = None,
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
      epsilon: spotlight ``ε ∈ [−1, 1]`` of the measurement (curves, figures, planes) and of
        the verdict's test; ``None`` (default): the measurement at :data:`DEFAULT_EPSILON` and
        the verdict over the sweep :data:`DEFAULT_TEST_SWEEP` (one family, min-p, math §6.2).
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
      test_epsilons: the ε of the verdict's test (overrides the default of ``epsilon``).
      tokens: ``(S,)`` integer token of each sample (names the carriers' tokens).
      row_facts: :class:`srm_jax.report.rows.RowFacts` of *every* row read (streamed by the
        caller; default those of ``activations``), ``all_tokens`` their tokens.
      vocab: token id → text.
      mean: :class:`srm_jax.report.rows.MeanFacts` of every raw row (default of
        ``activations``); ``centered``: ``activations`` are rows minus that mean, and
        ``uncentered`` the same samples before centring (tested too: does centring change the
        verdict?).
      measures: deprecated name of ``streamed_sums`` (one release).
      rotations: the rotation tests' rotations drawn beforehand, :func:`report_rotations` of
        ``key`` (the same rotations, up to float32 rounding, without a QR per rotation per
        test: the layer, its bulk and its uncentred rows, and every layer of one width, share
        them); default drawn from ``key`` in each test's loop.

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
    test_epsilons = test_epsilons_of(epsilon, test_epsilons)
    x, b, epsilon = _checked_inputs(activations, basis, epsilon, statistic, num_resamples)
    k_planes, k_test, k_band, k_sel, k_proj = report_keys(key)
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
    subset_facts = RowFacts(*(np.asarray(a) for a in row_facts_batch(x, normalise_rows(b))))
    bulk_rows = _bulk_rows(subset_facts, row_facts)
    with concurrent.futures.ThreadPoolExecutor(1) as beside:
        # What does not need the rotation test runs beside it: its compilations and host work
        # then overlap the test's computation instead of following it.
        side = beside.submit(
            _untested, (k_planes, k_sel, k_proj), x, b, pairs, measured, neurons,
            epsilon=epsilon, epsilons=epsilons, labels=labels, num_resamples=num_resamples,
            num_top=num_top)
        significance = assess_alignment(
            (k_test, k_band), x, b, pairs, measured, measure_args, epsilon=epsilon,
            num_resamples=num_resamples, statistic=statistic, test_epsilons=test_epsilons,
            rotations=rotations, subset=bulk_rows)
        untested = side.result()
    swept, sweep, classes = untested.swept, untested.sweep, untested.classes
    density, ranking = untested.density, untested.ranking
    significance = flat_verdict(significance, sweep, result.mean_curve, epsilon)
    tested = measures_against_rotations(x, measure_args, significance.test)
    streamed = None if streamed_sums is None else _measures.finalise_measures(streamed_sums)
    table = measures_table(tested, streamed, neurons, significance.verdict, num_top)
    summary = report_summary(
        measured, significance, sweep, swept, ranking, classes, table,
        shape=(int(b.shape[1]), int(b.shape[0]), int(pairs.shape[0])), epsilon=epsilon,
        statistic=statistic, num_resamples=int(num_resamples), top_pair=untested.top_pair,
        top=num_top)
    found = _findings(
        k_test, x, b, pairs, measure_args, neurons, significance, top=num_top,
        settings=(test_epsilons, int(num_resamples), statistic),
        rows=(tokens, row_facts, all_tokens, vocab, subset_facts),
        mean=(mean, centered, uncentered), rotations=rotations)
    summary.update(found.summary)
    return Report(
        summary=summary, result=result, reference=measured.reference, band=significance.band,
        test=significance.test, sweep=sweep,
        selectivity=None if classes is None else classes.selectivity,
        distinct=None if classes is None else classes.distinct, density=density,
        neurons=neurons, plane_summaries=ranking.plane_summaries, measures=tested,
        peaks=measured.peaks, headline_test=significance.headline_test,
        vector_scores=found.vector_scores, group_curves=found.group_curves,
        map_summary=found.map_summary, map_scores=found.map_scores)


class _Untested(NamedTuple):
    """What :func:`_untested` gives: the ε sweep's planes and the sweep, the class selectivity
    (``None`` without labels), the top plane and its projection density, the neuron ranking."""

    swept: jax.Array
    sweep: EpsilonSweep
    classes: ClassSelectivity | None
    top_pair: jax.Array
    density: ProjectionDensity
    ranking: NeuronRanking


def _untested(keys, x, b, pairs, measured, neurons, *, epsilon: float, epsilons, labels,
              num_resamples: int, num_top: int) -> _Untested:
    """The stages of :func:`srm_report` that do not read the rotation test (``keys``: planes,
    label shuffles, projection): the ε sweep and its planes, the class selectivity, the top
    plane and its projection density, and the neuron ranking."""
    k_planes, k_sel, k_proj = keys
    swept = sweep_planes(k_planes, pairs, measured.summaries)
    sweep = sweep_epsilon(x, b, swept, epsilons)
    candidate_pairs = pairs[measured.candidates]
    classes = None if labels is None else class_selectivity(
        k_sel, x, b, labels, candidate_pairs, epsilon=epsilon, num_resamples=num_resamples)
    expectation = to_float(isotropic_expectation(int(b.shape[1]), epsilon))
    top_pair = candidate_pairs[top_plane(classes, measured.peaks, expectation)]
    density = projection_density(k_proj, x, b, top_pair, bins=PROJECTION_BINS)
    ranking = rank_neurons(neurons, measured, pairs, num_top)
    return _Untested(swept, sweep, classes, top_pair, density, ranking)


@dataclasses.dataclass(frozen=True)
class _Findings:
    """What the report adds to ``summary`` about who carries the signal, the bulk and the mean,
    and what their figures need."""

    summary: dict
    vector_scores: np.ndarray
    group_curves: dict[str, GroupCurve] | None
    map_summary: SRMSummary
    map_scores: np.ndarray


def _mean_table(x, b, mean: MeanFacts | None, neurons, centered: bool,
                uncentered_verdict: dict | None) -> dict:
    """``mean`` of ``report.json``: the raw rows' mean (``x``: those rows), its share of the
    squared norm and direction."""
    if mean is None:
        sum_x, sum_sq, count = row_sums_batch(x)
        mean = mean_facts(sum_x, sum_sq, count, b)
    v = int(mean.vector)
    return {
        "share_of_squared_norm": to_float(mean.share_of_squared_norm),
        "max_abs_cos": to_float(mean.max_abs_cos),
        "vector": v,
        "neuron": (int(neurons.neuron[neurons.direction[v]])
                   if neurons.orthonormal and v >= 0 else None),
        "centered": bool(centered),
        "verdict_uncentered": None if uncentered_verdict is None else uncentered_verdict["verdict"],
        "p_value_uncentered": (None if uncentered_verdict is None
                               else uncentered_verdict["p_value"]),
    }


def _bulk_rows(subset_facts: RowFacts, row_facts: RowFacts | None) -> np.ndarray | None:
    """The analysed rows that are not massive, when the bulk may be analysed
    (:func:`srm_jax.report.carriers.may_analyse_bulk`): the layer's rotation test tests them
    too, on the same rotations (:func:`srm_jax.alignment_test`'s ``subset``); else ``None``."""
    massive = massive_rows(subset_facts)
    if not may_analyse_bulk(subset_facts if row_facts is None else row_facts, massive):
        return None
    return np.flatnonzero(~massive)


def _findings(key, x, b, pairs, measure_args, neurons, significance, *, top: int,
              settings: tuple, rows: tuple, mean: tuple,
              rotations: jax.Array | None = None) -> _Findings:
    """Who carries the signal at the headline ε (:func:`srm_jax.report.carriers.find_carriers`),
    the bulk when :func:`srm_jax.report.carriers.bulk_rule` holds
    (:func:`srm_jax.report.bulk.analyse_bulk`, the same rotations: its test is the layer
    test's ``subset_test`` when that test made one) and the mean (with ``centered``, the
    uncentred samples' verdict on the same rotations)."""
    test_epsilons, num_resamples, statistic = settings
    tokens, row_facts, all_tokens, vocab, subset_facts = rows
    mean_facts_, centered, uncentered = mean
    if row_facts is None:
        row_facts, all_tokens = subset_facts, tokens
    headline = significance.headline_epsilon
    carriers = find_carriers(x, b, pairs, epsilon=headline, facts=row_facts,
                             subset_facts=subset_facts, neurons=neurons, tokens=tokens,
                             all_tokens=all_tokens, vocab=vocab, top=top)
    bulk, curves = None, None
    if carriers.analyse_bulk and int(np.sum(~carriers.massive)) > 1:
        bulk = analyse_bulk(key, x[jnp.asarray(~carriers.massive)], b, pairs, measure_args,
                            neurons, test_epsilons=test_epsilons, num_resamples=num_resamples,
                            statistic=statistic, top=top, rotations=rotations,
                            test=significance.test.subset_test)
        carrier_rows = group_summary(x[jnp.asarray(carriers.massive)], b, pairs, headline)
        curves = {"carriers": group_curve(carrier_rows, int(b.shape[1])), "bulk": bulk.curve}
    uncentered_verdict = None
    if centered and uncentered is not None:
        raw = jnp.asarray(uncentered, x.dtype)
        uncentered_verdict = sweep_evidence(rotation_test(
            key, raw, b, pairs, measure_args, test_epsilons, num_resamples=num_resamples,
            statistic=statistic, rotations=rotations), test_epsilons)
    summary = {
        "test_epsilons": list(significance.test_epsilons),
        "headline_epsilon": headline,
        "family_wise_p_value": significance.p_value,
        "epsilon_tests": list(significance.epsilon_tests),
        "neuron_scores": ranked_scores(carriers.vector_scores, neurons, top),
        "carriers": carriers.table,
        "bulk": None if bulk is None else bulk.table,
        "mean": _mean_table(x if uncentered is None else jnp.asarray(uncentered, x.dtype), b,
                            mean_facts_, neurons, centered, uncentered_verdict),
    }
    if bulk is None:
        map_summary, map_scores = group_summary(x, b, pairs, headline), carriers.vector_scores
        summary["neuron_map"] = {"rows": "analysed", "epsilon": headline}
    else:
        map_summary, map_scores = bulk.summary, bulk.vector_scores
        summary["neuron_map"] = {"rows": "bulk", "epsilon": bulk.table["headline_epsilon"]}
    return _Findings(summary, carriers.vector_scores, curves, map_summary, map_scores)
