"""Who carries the signal, the bulk, the verdict over a sweep of ε and ties in the neuron ranking
(``srm_jax.report.carriers``, ``.bulk``, ``.significance.sweep_evidence``).

References are independent: the p-values are recomputed here from the definitions (counts of
null statistics), the lit counts' shares from :func:`srm_jax.spotlight_resonance`, the massive
rows and tokens with NumPy, and the bulk's neurons against the squared coordinates of the real
all-MiniLM-L6-v2 fixture.
"""

from __future__ import annotations

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

from srm_jax import bases, neurons, spotlight_resonance
from srm_jax.credits import lit_credits
from srm_jax.report import srm_report
from srm_jax.report.carriers import bulk_rule, find_carriers, ranked_scores
from srm_jax.report.defaults import BULK_MAX_ROW_SHARE, BULK_MIN_LIT_SHARE, MASSIVE_COS
from srm_jax.report.rows import RowFacts, row_facts_batch
from srm_jax.report.significance import headline_index, sweep_evidence, verdict
from srm_jax.significance import AlignmentTest

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "minilm"
CLS = 101


def _test_of(score, null, lit=None):
    """An :class:`AlignmentTest` of ``score`` (E,) against ``null`` (K, E), p by definition."""
    score, null = np.asarray(score, np.float32), np.asarray(null, np.float32)
    p = (1 + np.sum(null >= score, axis=0)) / (1 + null.shape[0])
    return AlignmentTest(score=jnp.asarray(score), null_scores=jnp.asarray(null),
                         p_value=jnp.asarray(p, jnp.float32),
                         family_wise_p_value=jnp.asarray(_min_p(score, null, "greater")),
                         lit_share=None if lit is None else jnp.asarray(lit, jnp.float32))


def _min_p(score, null, alternative):
    """Westfall & Young's min-p by its definition, a loop over the K + 1 members."""
    members = np.concatenate([score[None], null]).astype(np.float64)
    size = members.shape[0]
    min_p = []
    for i in range(size):
        if alternative == "greater":
            extreme = members >= members[i]
        else:
            extreme = members <= members[i]
        min_p.append(np.min(np.sum(extreme, axis=0) / size))
    return (1 + sum(m <= min_p[0] for m in min_p[1:])) / size


def test_sweep_evidence_matches_the_definitions():
    rng = np.random.default_rng(1)
    null = rng.normal(size=(199, 4))
    score = np.array([0.1, -9.0, 0.3, 0.0])  # the most extreme member at the second ε
    evidence = sweep_evidence(_test_of(score, null, lit=[0.3, 0.5, 0.2, 0.1]),
                              (0.2, 0.4, 0.6, 0.8))
    p_less = (1 + np.sum(null.astype(np.float32) <= score.astype(np.float32), axis=0)) / 200
    fw_less = _min_p(score.astype(np.float32), null.astype(np.float32), "less")
    assert evidence["p_less"] == pytest.approx(fw_less)
    assert evidence["verdict"] == "anti-aligned"
    assert evidence["p_value"] == pytest.approx(min(1, 2 * min(evidence["p_greater"], fw_less)))
    assert evidence["headline_epsilon"] == 0.4
    rows = evidence["epsilon_tests"]
    assert [r["epsilon"] for r in rows] == [0.2, 0.4, 0.6, 0.8]
    np.testing.assert_allclose([r["p_value_anti_aligned"] for r in rows], p_less, rtol=1e-6)
    assert rows[1]["lit_share"] == 0.5
    assert "anti-aligned with the basis at ε = 0.4" in evidence["sentence"]
    assert float(evidence["headline_test"].score) == pytest.approx(-9.0)


def test_one_epsilon_is_the_plain_verdict():
    rng = np.random.default_rng(2)
    null = rng.normal(size=(19, 1))
    test = _test_of([2.5], null)
    evidence = sweep_evidence(test, (0.9,))
    p_greater = float(test.p_value[0])
    p_less = (1 + np.sum(null.astype(np.float32) <= np.float32(2.5))) / 20
    kind, p_value, sentence = verdict(p_greater, p_less)
    assert (evidence["verdict"], evidence["sentence"]) == (kind, sentence)
    assert evidence["p_value"] == pytest.approx(p_value)


def test_headline_ties_go_to_the_most_lit_then_the_larger_standardised_statistic():
    null = np.array([[0.0, 0.0], [1.0, 10.0], [2.0, 20.0]])
    # Equal p-values; the first ε's statistic is 3 sd above its null, the second's 0.3.
    assert headline_index(np.array([0.25, 0.25]), np.array([4.0, 13.0]), null) == 0
    assert headline_index(np.array([0.25, 0.25]), np.array([4.0, 13.0]), null,
                          np.array([0.1, 0.6])) == 1
    assert headline_index(np.array([0.5, 0.25]), np.array([4.0, 13.0]), null,
                          np.array([0.9, 0.1])) == 1
    assert headline_index(np.array([np.nan, 0.5]), np.array([np.nan, 1.0]), null) == 1


def test_equal_scores_are_ties_never_an_order():
    basis = bases.standard_basis(6)
    signed = neurons.signed_neurons(basis)
    scores = np.zeros(12, np.float32)
    scores[[0, 1, 2]] = 5.0  # neurons 0, 1, 2 tied (each + vector only)
    scores[3 + 6] = 3.0  # −e_3
    scores[3] = 4.0  # +e_3: neuron 3 sums both, 7
    ranked = ranked_scores(scores, signed, top=10)
    assert [r["neuron"] for r in ranked][0] == 3 and ranked[0]["score"] == 7.0
    assert not ranked[0]["tied"] and ranked[0]["rank"] == 1
    tied = ranked[1:4]
    assert sorted(r["neuron"] for r in tied) == [0, 1, 2]
    assert all(r["tied"] and r["rank"] == 2 for r in tied)
    assert len(ranked) == 4  # zero scores are not listed
    assert sum(r["share"] for r in ranked) == pytest.approx(1.0)


def test_bulk_rule_thresholds():
    assert bulk_rule(BULK_MAX_ROW_SHARE, BULK_MIN_LIT_SHARE)
    assert not bulk_rule(BULK_MAX_ROW_SHARE * 1.01, 0.99)
    assert not bulk_rule(0.01, BULK_MIN_LIT_SHARE * 0.99)
    assert not bulk_rule(0.01, math.nan)


def _planted(rng, n=12, rows=300, massive=6, neuron=3):
    x = rng.normal(size=(rows, n)).astype(np.float32)
    x[:massive] *= 0.01
    x[:massive, neuron] = 5.0
    tokens = np.where(np.arange(rows) < massive, CLS, rng.integers(1000, 1020, rows))
    return x, tokens


def test_massive_rows_carry_the_lit_counts_of_a_planted_layer():
    rng = np.random.default_rng(3)
    x, tokens = _planted(rng)
    basis = bases.standard_basis(12)
    signed = neurons.signed_neurons(basis)
    pairs = jnp.asarray(np.asarray(spotlight_resonance(x[:2], basis, epsilon=0.9).planes))
    unit = np.asarray(basis)
    facts = RowFacts(*(np.asarray(a) for a in row_facts_batch(x, unit)))
    found = find_carriers(x, basis, pairs, epsilon=0.9, facts=facts, subset_facts=facts,
                          neurons=signed, tokens=tokens, all_tokens=tokens,
                          vocab={CLS: "[CLS]"})
    table = found.table
    norms = np.linalg.norm(x, axis=1)
    expected_massive = np.max(np.abs(x), axis=1) / norms >= MASSIVE_COS
    assert table["massive"]["num_rows"] == int(expected_massive.sum()) >= 6
    np.testing.assert_array_equal(found.massive, expected_massive)
    # The lit counts, from SRM itself, and the massive rows' share of them.
    total = int(np.sum(spotlight_resonance(x, basis, epsilon=0.9, planes=pairs).counts))
    assert int(found.counts.sum()) == total
    lit_massive = int(np.sum(spotlight_resonance(
        x[expected_massive], basis, epsilon=0.9, planes=pairs).counts))
    assert table["massive"]["lit_share"] == pytest.approx(lit_massive / total, rel=1e-6)
    assert table["massive"]["tokens"][0] == {"token": CLS, "text": "[CLS]", "rows": 6}
    assert table["tokens"][0]["token"] == CLS and table["tokens"][0]["text"] == "[CLS]"
    assert table["top_neurons"][0]["neuron"] == 3
    assert table["top_neurons"][0]["share"] >= 0.99
    assert "[CLS]" in table["sentence"] and "neuron 3" in table["sentence"]
    assert table["bulk_analysed"]


def test_report_analyses_the_bulk_without_the_massive_rows():
    rng = np.random.default_rng(4)
    x, tokens = _planted(rng, rows=240)
    # At ε ≥ 0.8 only the massive rows light planes (Gaussian rows in 12 dimensions rarely do).
    report = srm_report(x, bases.standard_basis(12), key=jax.random.key(0), num_resamples=9,
                        tokens=tokens, vocab={CLS: "[CLS]"}, test_epsilons=(0.8, 0.9))
    s = report.summary
    massive = s["carriers"]["massive"]["num_rows"]
    assert s["carriers"]["bulk_analysed"]
    assert s["bulk"]["num_rows"] == 240 - massive
    assert len(s["epsilon_tests"]) == len(s["test_epsilons"]) > 1
    assert s["headline_epsilon"] in s["test_epsilons"]
    assert s["bulk"]["headline_epsilon"] in s["test_epsilons"]
    assert set(report.group_curves) == {"carriers", "bulk"}
    assert report.group_curves["bulk"].num_rows == 240 - massive
    # The neuron map shows the bulk, at its headline ε, ranked by its credits.
    assert s["neuron_map"] == {"rows": "bulk", "epsilon": s["bulk"]["headline_epsilon"]}
    assert int(report.map_summary.num_samples) == 240 - massive
    assert s["mean"]["share_of_squared_norm"] == pytest.approx(
        np.sum(x.mean(0, dtype=np.float64) ** 2) / np.mean(np.sum(x.astype(np.float64) ** 2, 1)),
        rel=1e-4)


@pytest.fixture(scope="module")
def fixture_rows() -> dict[str, np.ndarray]:
    shards = [load_file(p) for p in sorted(FIXTURE.glob("shard-*.safetensors"))]
    return {k: np.concatenate([s[k] for s in shards]) for k in shards[0]}


def test_bulk_top_neurons_hold_the_bulk_energy_of_the_real_fixture(fixture_rows):
    """On all-MiniLM-L6-v2's residual stream the non-massive rows' credits at ε = 0.3 rank the
    dimensions that carry the most of their energy (squared unit coordinates, NumPy) first."""
    x = fixture_rows["resid3"].astype(np.float32)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    bulk = unit[np.max(np.abs(unit), axis=1) < MASSIVE_COS]
    assert 0.9 * len(x) < len(bulk) < len(x)  # the [CLS] rows are massive
    basis = bases.standard_basis(384)
    credits = lit_credits(jnp.asarray(bulk), basis, epsilon=0.3)
    per_neuron = np.asarray(neurons.neuron_shares(
        jnp.asarray(credits.credits).sum(0), neurons.signed_neurons(basis).direction, 384))
    energy = np.sum(bulk.astype(np.float64) ** 2, axis=0)
    top_credit = set(np.argsort(-per_neuron)[:5])
    top_energy = list(np.argsort(-energy)[:3])
    assert set(top_energy) <= top_credit
    assert per_neuron[top_energy[0]] > 0


def test_centred_report_tests_the_uncentred_rows_too():
    """With ``centered`` the report also tests the raw rows, on the same rotations: the raw rows'
    verdict and p-value are those of a report of the raw rows with the same key."""
    rng = np.random.default_rng(5)
    raw = rng.normal(size=(300, 6)).astype(np.float32)
    raw[:, 0] += 2.0 * np.sign(rng.normal(size=300))  # planted on ±e_0: aligned when raw
    raw[:, 1] += 1.5
    centred = raw - raw.mean(axis=0)
    kwargs = dict(key=jax.random.key(1), num_resamples=19, epsilon=0.9)
    report = srm_report(centred, bases.standard_basis(6), centered=True, uncentered=raw,
                        **kwargs)
    direct = srm_report(raw, bases.standard_basis(6), **kwargs).summary
    mean = report.summary["mean"]
    assert mean["centered"]
    assert (mean["verdict_uncentered"], mean["p_value_uncentered"]) == (direct["verdict"],
                                                                       direct["p_value"])
    raw64 = raw.astype(np.float64)
    assert mean["share_of_squared_norm"] == pytest.approx(
        np.sum(raw64.mean(axis=0) ** 2) / np.mean(np.sum(raw64**2, axis=1)), rel=1e-5)
    assert mean == {**mean, **{k: direct["mean"][k] for k in ("share_of_squared_norm",
                                                              "max_abs_cos", "vector")}}
