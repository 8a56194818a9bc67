"""The bulk: the rows that are not massive, analysed on their own when a few massive rows carry
most of the lit counts (:func:`srm_jax.report.carriers.bulk_rule`).

The bulk's rotation test uses the layer test's key, so its rotations are the layer's: the two
answers differ only by the rows. Its verdict, ε with the strongest evidence, neuron credits and
the field's measures are read as the layer's are (:mod:`srm_jax.report.significance`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from srm_jax import basis_measures as _measures
from srm_jax import neurons as _neurons
from srm_jax.credits import lit_credits
from srm_jax.report.carriers import GroupCurve, ranked_scores
from srm_jax.report.jsonable import to_float
from srm_jax.report.measures import measures_against_rotations, measures_table
from srm_jax.report.significance import rotation_test, sweep_evidence
from srm_jax.significance import AlignmentTest, isotropic_expectation
from srm_jax.summaries import SRMSummary, resonance_summary


@dataclasses.dataclass(frozen=True)
class Bulk:
    """The bulk's analysis.

    Attributes:
      table: ``bulk`` of ``report.json``.
      test: its rotation test at every tested ε (the layer's rotations).
      measures: the field's measures of its rows against the same rotations.
      vector_scores: ``(m,)`` credit of each basis vector at the bulk's headline ε.
      summary: its SRM at its headline ε (the neuron map's planes).
      curve: its mean SRM curve at its headline ε.
    """

    table: dict
    test: AlignmentTest
    measures: _measures.MeasuresTest
    vector_scores: np.ndarray
    summary: SRMSummary
    curve: GroupCurve


def group_summary(x, basis, pairs, epsilon: float) -> SRMSummary:
    """SRM (Eqn. 2) of the rows ``x`` about ``pairs`` at ``epsilon``, through summaries."""
    return resonance_summary(jnp.asarray(x), jnp.asarray(basis), epsilon=float(epsilon),
                             planes=jnp.asarray(pairs, jnp.int32))


def group_curve(summary: SRMSummary, n: int) -> GroupCurve:
    """The mean SRM curve of a group's ``summary``, with the isotropic expectation (Eqn. 18) in
    ``n`` dimensions."""
    epsilon = float(summary.epsilon)
    return GroupCurve(epsilon, np.asarray(summary.angles), np.asarray(summary.mean_curve),
                      int(summary.num_samples), to_float(isotropic_expectation(n, epsilon)))


def analyse_bulk(key: jax.Array, x, basis, pairs, measure_args: dict,
                 neurons: _neurons.SignedBasis, *, test_epsilons: tuple[float, ...],
                 num_resamples: int, statistic: str, top: int,
                 rotations: jax.Array | None = None, test: AlignmentTest | None = None) -> Bulk:
    """The bulk rows ``x``: rotation test at every ε of ``test_epsilons`` (``key``: the layer
    test's), verdict and headline ε (:func:`srm_jax.report.sweep_evidence`), the field's
    measures, the neuron credits (:func:`srm_jax.lit_credits`) and the mean curve at the
    headline ε. ``rotations``: the layer test's, drawn beforehand (or ``None``). ``test``: the
    bulk's rotation test when the layer's test already made it (its ``subset_test``: one loop
    for both), else made here."""
    x = jnp.asarray(x)
    if test is None:
        test = rotation_test(key, x, basis, pairs, measure_args, tuple(test_epsilons),
                             num_resamples=num_resamples, statistic=statistic,
                             rotations=rotations)
    evidence = sweep_evidence(test, tuple(test_epsilons))
    tested = measures_against_rotations(x, measure_args, test)
    headline = evidence["headline_epsilon"]
    credits = lit_credits(x, jnp.asarray(basis), epsilon=headline,
                          planes=jnp.asarray(pairs, jnp.int32))
    scores = np.asarray(credits.credits, np.float64).sum(axis=0).astype(np.float32)
    table = {
        "num_rows": int(x.shape[0]),
        "verdict": evidence["verdict"],
        "verdict_sentence": evidence["sentence"],
        "p_value": evidence["p_value"],
        "family_wise_p_value": evidence["p_value"],
        "headline_epsilon": headline,
        "epsilon_tests": list(evidence["epsilon_tests"]),
        "neuron_scores": ranked_scores(scores, neurons, top),
        "measures": measures_table(tested, None, neurons, evidence["verdict"], top),
        "mean_curve_epsilon": headline,
    }
    summary = group_summary(x, basis, pairs, headline)
    return Bulk(table, test, tested, scores, summary,
                group_curve(summary, int(np.shape(basis)[1])))
