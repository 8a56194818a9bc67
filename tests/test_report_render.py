"""The report's rendering of the carriers, the bulk and the evidence per ε: ``report.md`` from
hand-built summaries, and the figures from a small real report with the new fields replaced."""

import matplotlib

matplotlib.use("Agg")

import dataclasses  # noqa: E402
import itertools  # noqa: E402
import re  # noqa: E402
import struct  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import srm_jax  # noqa: E402
from srm_jax import neurons as neurons_lib  # noqa: E402
from srm_jax.report import figures, markdown  # noqa: E402
from srm_jax.report.carriers import GroupCurve  # noqa: E402
from srm_jax.report.compose import srm_report  # noqa: E402
from srm_jax.report.defaults import FIGURES, MAP_NEURONS  # noqa: E402

# A ± basis wide enough for the 64-neuron map: e_0 … e_79 and −e_0 … −e_39 (80 neurons).
WIDTH, NEGATED, T = 80, 40, 8


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def base():
    """A small real report (n = 6, 200 rows): valid objects for the fields not replaced."""
    x = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32)
    return srm_report(x, np.eye(6, dtype=np.float32), key=jax.random.PRNGKey(0),
                      num_resamples=9, epsilons=(0.5, 0.9), test_epsilons=(0.3, 0.9))


def _ranking(neurons, scores, shares=True):
    """Credit-ranking entries as the schema has them; equal scores share the best rank."""
    entries = []
    for i, (neuron, score) in enumerate(zip(neurons, scores, strict=True)):
        entry = {"neuron": neuron, "vector": 2 * neuron, "score": score,
                 "rank": 1 + sum(s > score for s in scores), "tied": scores.count(score) > 1}
        if shares:
            entry["share"] = score / sum(scores)
        entries.append(entry)
        assert i == 0 or scores[i - 1] >= score
    return entries


def _epsilon_tests(rng, epsilons):
    return [{"epsilon": e, "statistic": float(rng.normal()), "p_value": float(rng.uniform()),
             "p_value_aligned": float(rng.uniform()), "p_value_anti_aligned": float(rng.uniform()),
             "lit_share": float(rng.uniform())} for e in epsilons]


SCORES = [5.0, 3.0, 3.0, 3.0, 1.0, 0.5, 0.5]
NEURONS = [201, 131, 133, 136, 7, 40, 41]


def _summary(base_summary: dict, rng) -> dict:
    """The base summary with the new keys built by hand (the schema's forms)."""
    s = dict(base_summary)
    s.update({
        "verdict": "aligned", "p_value": 0.01, "family_wise_p_value": 0.01,
        "verdict_sentence": "aligned with the basis at ε = 0.9, family-wise p = 0.01 over 3 ε",
        "test_epsilons": [0.3, 0.6, 0.9], "headline_epsilon": 0.9,
        "epsilon_tests": _epsilon_tests(rng, [0.3, 0.6, 0.9]),
        "neuron_scores": _ranking(NEURONS, SCORES),
        "mean": {"share_of_squared_norm": 0.095, "max_abs_cos": 0.47, "vector": 402,
                 "neuron": 201, "centered": True, "verdict_uncentered": "no evidence",
                 "p_value_uncentered": 0.4},
        "carriers": {
            "epsilon": 0.9, "num_rows": 2000, "num_lit_rows": 40, "lit_row_share": 0.02,
            "top_rows": 20, "top_rows_share": 0.8,
            "massive": {"threshold": 0.9, "num_rows": 928, "row_share": 0.012,
                        "lit_share": 0.9, "num_subset_rows": 29,
                        "vectors": [{"vector": 402, "neuron": 201, "rows": 900}],
                        "tokens": [{"token": 50256, "text": "<|endoftext|>", "rows": 900}]},
            "tokens": [{"token": 50256, "text": "<|endoftext|>", "rows": 25, "share": 0.7},
                       {"token": 13, "text": ".\n", "rows": 3, "share": 0.2},
                       {"token": 99, "text": None, "rows": 1, "share": 0.1}],
            "top_neurons": _ranking([201, 12, 13], [9.0, 2.0, 2.0], shares=False),
            "bulk_analysed": True, "rule": "the bulk rule in words",
            "sentence": "the signal is carried by 29 massive rows"},
        "bulk": {"num_rows": 1971, "verdict": "anti-aligned", "p_value": 0.01,
                 "verdict_sentence": "anti-aligned with the basis at ε = 0.3",
                 "family_wise_p_value": 0.01, "headline_epsilon": 0.3,
                 "epsilon_tests": _epsilon_tests(rng, [0.3, 0.6, 0.9]),
                 "neuron_scores": _ranking([1, 2, 3], [4.0, 4.0, 1.0]),
                 "measures": base_summary["measures"], "mean_curve_epsilon": 0.3},
    })
    return s


def _table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of the rows of the first table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))])
    return rows


def test_markdown_headline_gives_both_answers_in_one_sentence(base, rng):
    s = _summary(base.summary, rng)
    text = markdown.report_markdown(s, {})
    verdict = next(line for line in text.splitlines() if line.startswith("**Verdict:"))
    assert verdict == ("**Verdict: Aligned with the basis at ε = 0.9, family-wise p = 0.01 over "
                       "3 ε; without the 928 massive rows, the bulk (1,971 rows) is "
                       "anti-aligned at ε = 0.3 (family-wise p = 0.01).**")
    lines = text.splitlines()
    after = lines[lines.index(verdict) + 2]
    assert after == "The signal is carried by 29 massive rows."
    assert ("The mean activation holds 9.5 % of the squared norm; its largest |cos| with a "
            "basis vector is 0.47 (neuron 201).") in text
    assert "Centred: aligned (p = 0.01); uncentred: no evidence (p = 0.4) — centring changes " \
           "the verdict." in text
    s["mean"]["verdict_uncentered"] = "aligned"
    assert "centring does not change the verdict" in markdown.report_markdown(s, {})
    # Without a bulk the headline is the verdict alone.
    s["bulk"] = None
    text = markdown.report_markdown(s, {})
    assert "**Verdict: Aligned with the basis at ε = 0.9, family-wise p = 0.01 over 3 ε.**" in text
    assert "## Bulk" not in text


def test_markdown_writes_ties_never_as_an_order(base, rng):
    text = markdown.report_markdown(_summary(base.summary, rng), {})
    rows = _table_rows(text.split("## Neurons by credit")[1], "| rank | neuron |")
    # One row per distinct score, in decreasing order; equal scores share one row.
    distinct = sorted(set(SCORES), reverse=True)
    assert [float(r[3].split()[0]) for r in rows] == distinct
    for row, score in zip(rows, distinct, strict=True):
        group = [n for n, s in zip(NEURONS, SCORES, strict=True) if s == score]
        names = ", ".join(map(str, group))
        assert row[1] == (f"tied: {names}" if len(group) > 1 else names)
        assert int(row[0]) == 1 + sum(s > score for s in SCORES)
    assert "tied: 131, 133, 136" in text and "tied: 40, 41" in text
    # No tied neuron is listed on a row of its own anywhere.
    for neuron in (131, 133, 136, 40, 41):
        assert not re.search(rf"\| {neuron} \|", text)
    carriers = _table_rows(text.split("The carriers' neurons")[1], "| rank | neuron |")
    assert [r[1] for r in carriers] == ["201", "tied: 12, 13"]
    bulk = _table_rows(text.split("The bulk's neurons by credit")[1], "| rank | neuron |")
    assert [r[1] for r in bulk] == ["tied: 1, 2", "3"]


def test_markdown_evidence_per_epsilon_table(base, rng):
    s = _summary(base.summary, rng)
    text = markdown.report_markdown(s, {})
    for section, source in ((text.split("## Evidence per ε")[1], s),
                            (text.split("## Bulk")[1], s["bulk"])):
        rows = _table_rows(section, "| ε | statistic |")
        assert len(rows) == len(source["epsilon_tests"])
        marked = [r for r in rows if "(headline)" in r[0]]
        assert len(marked) == 1
        assert float(marked[0][0].split("**")[1]) == source["headline_epsilon"]
        for row, t in zip(rows, source["epsilon_tests"], strict=True):
            assert float(row[0].strip("*").split("*")[0]) == t["epsilon"]
            for cell, key in zip(row[1:5], ("statistic", "p_value", "p_value_aligned",
                                            "p_value_anti_aligned"), strict=True):
                assert float(cell) == pytest.approx(t[key], rel=1e-2)
            assert float(row[5].split()[0]) == pytest.approx(100 * t["lit_share"], rel=1e-1)
    # The bulk's measures reuse the layer's table.
    assert "### The field's measures on the bulk" in text
    assert text.count("| measure | basis |") == 2


def test_markdown_tokens_table_and_old_summaries(base, rng):
    s = _summary(base.summary, rng)
    text = markdown.report_markdown(s, {"carrier_tokens": "carrier_tokens.png"})
    rows = _table_rows(text, "| token | text |")
    tokens = s["carriers"]["tokens"]
    assert [int(r[0]) for r in rows] == [t["token"] for t in tokens]
    assert rows[0][1] == "`'<\\|endoftext\\|>'`" and rows[1][1] == "`'.\\n'`" and rows[2][1] == "–"
    assert "](carrier_tokens.png)" in text
    # A summary without the new keys renders as before.
    old = {k: v for k, v in base.summary.items()
           if k not in ("epsilon_tests", "neuron_scores", "carriers", "bulk", "mean",
                        "test_epsilons", "headline_epsilon", "family_wise_p_value")}
    text = markdown.report_markdown(old, {})
    assert text.startswith("# SRM report")
    assert "## Evidence per ε" not in text and "## Neurons by credit" not in text
    assert "## Which neurons and planes" in text and "## The field's measures beside SRM" in text


def test_layer_table_gains_headline_carriers_and_bulk(base, rng):
    new = _summary(base.summary, rng)
    old = {k: v for k, v in base.summary.items() if k not in ("carriers", "bulk",
                                                                "headline_epsilon")}
    layers = []
    for key, s in (("a", new), ("b", old)):
        layers.append({**s, "input": {"key": key}})
    table = markdown.layer_table(layers)
    assert table[0]["headline_epsilon"] == 0.9 and table[0]["massive_row_share"] == 0.012
    assert table[0]["bulk_verdict"] == "anti-aligned" and table[0]["bulk_p_value"] == 0.01
    assert table[1]["headline_epsilon"] is None and table[1]["bulk_verdict"] is None
    text = markdown.layers_markdown(layers, [{}, {}])
    assert "| layer | verdict | p | top neurons | kurtosis (p) | measures agree |" in text
    rows = _table_rows(text, "| layer |")
    assert rows[0][6:] == ["0.9", "1.2 %", "anti-aligned (0.01)"]
    assert rows[1][6:] == ["–", "–", "–"]
    # A layer's subsections sit below its heading.
    assert "## Layer `a`" in text and "#### The carriers' neurons (massive rows)" in text


def _wide(base, rng):
    """``base`` with a wide ± basis: result, neurons, plane totals and vector scores replaced."""
    basis = np.concatenate([np.eye(WIDTH), -np.eye(WIDTH)[:NEGATED]]).astype(np.float32)
    neurons = neurons_lib.signed_neurons(jnp.asarray(basis))
    m = basis.shape[0]
    pairs = np.array([(a, b) for a, b in itertools.combinations(range(m), 2)
                      if b != a + WIDTH], np.int32)  # no plane of a vector and its negation
    counts = rng.integers(0, 50, (pairs.shape[0], T))
    result = srm_jax.SRMResult(
        counts=jnp.asarray(counts, jnp.int32), negative_counts=None,
        num_samples=jnp.asarray(100, jnp.int32),
        angles=jnp.linspace(0, 2 * np.pi, T, dtype=jnp.float32), planes=jnp.asarray(pairs),
        epsilon=jnp.asarray(0.9, jnp.float32))
    scores = rng.permutation(m).astype(np.float32) + 1.0
    # No map summary: the map then reads the plane totals and vector scores given here.
    return dataclasses.replace(
        base, result=result, neurons=neurons, vector_scores=scores, map_summary=None,
        map_scores=None,
        plane_summaries=neurons_lib.plane_summaries(result.counts, result.angles)), counts, pairs


def _reference_map(counts, pairs, scores):
    """The top neurons (±e_k is neuron k) by summed score, and their map, in NumPy."""
    per_neuron = np.zeros(WIDTH)
    np.add.at(per_neuron, np.arange(len(scores)) % WIDTH, np.asarray(scores, np.float64))
    top = np.argsort(-per_neuron, kind="stable")[:MAP_NEURONS]
    mean = counts.sum(1) / (T * 100)
    cells: dict = {}
    for (a, b), value in zip(pairs % WIDTH, mean, strict=True):
        cells.setdefault(frozenset((a, b)), []).append(value)
    image = np.full((len(top), len(top)), np.nan)
    for i, j in itertools.product(range(len(top)), repeat=2):
        if i != j and frozenset((top[i], top[j])) in cells:
            image[i, j] = np.mean(cells[frozenset((top[i], top[j]))])
    return image, top


def _capture():
    drawn = {}

    def save(name, fig):
        drawn[name] = fig

    return drawn, save


def test_neuron_map_is_the_top_neurons_by_credit(base, rng):
    report, counts, pairs = _wide(base, rng)
    image, labels = figures.map_neurons(report)
    expected, top = _reference_map(counts, pairs, report.vector_scores)
    assert image.shape == (MAP_NEURONS, MAP_NEURONS)
    np.testing.assert_array_equal(labels, top)
    np.testing.assert_allclose(image, expected, rtol=1e-5)
    drawn, save = _capture()
    figures._neuron_figures(plt, report, save)
    ax = drawn["neuron_map"].axes[0]
    assert ax.images[0].get_array().shape == (MAP_NEURONS, MAP_NEURONS)
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(k) for k in top]
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(k) for k in top]
    # Without credits the map ranks the neurons by their shares of the lit counts.
    image, labels = figures.map_neurons(dataclasses.replace(report, vector_scores=None))
    totals = counts.sum(1).astype(np.float64)
    per_vector = np.zeros(len(report.neurons.direction))
    np.add.at(per_vector, pairs[:, 0], totals)
    np.add.at(per_vector, pairs[:, 1], totals)
    per_neuron = np.zeros(WIDTH)
    np.add.at(per_neuron, np.arange(len(per_vector)) % WIDTH, per_vector)
    assert set(labels.tolist()) == set(np.argsort(-per_neuron)[:MAP_NEURONS].tolist())


def test_group_curves_and_headline_test_figures(base, rng):
    angles = np.linspace(0, 2 * np.pi, T)
    groups = {"carriers": GroupCurve(0.9, angles, rng.uniform(0, 1, T), 29, 0.05),
              "bulk": GroupCurve(0.3, angles, rng.uniform(0, 1, T), 1971, 0.2)}
    report = dataclasses.replace(base, group_curves=groups)
    drawn, save = _capture()
    figures._srm_figure(plt, report, save)
    axes = drawn["srm"].axes
    assert [ax.get_title() for ax in axes] == ["carriers: 29 rows, ε = 0.9",
                                               "bulk: 1,971 rows, ε = 0.3"]
    for ax, group in zip(axes, groups.values(), strict=True):
        curve, expectation = ax.lines
        np.testing.assert_allclose(curve.get_ydata(), group.mean_curve)
        assert expectation.get_linestyle() == "--"
        np.testing.assert_allclose(expectation.get_ydata(), group.expectation)
    drawn, save = _capture()
    figures._rotation_test_figure(plt, base, save)
    ax = drawn["rotation_test"].axes[0]
    assert f"ε = {base.summary['headline_epsilon']:g} (headline" in ax.get_title()
    assert ax.lines[0].get_xdata()[0] == pytest.approx(float(base.headline_test.score))


def _png_size(path) -> tuple[int, int]:
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_write_figures_draws_every_figure(base, rng, tmp_path):
    report, _, _ = _wide(base, rng)
    angles = np.linspace(0, 2 * np.pi, T)
    report = dataclasses.replace(
        report, summary=_summary(base.summary, rng),
        group_curves={"carriers": GroupCurve(0.9, angles, rng.uniform(0, 1, T), 29, 0.05),
                      "bulk": GroupCurve(0.3, angles, rng.uniform(0, 1, T), 1971, 0.2)})
    written = figures.write_figures(report, str(tmp_path))
    assert set(written) == {"srm", "epsilon_sweep", "rotation_test", "projection",
                            "neuron_map", "neuron_shares", "carrier_tokens"}
    for name, file in written.items():
        assert file == FIGURES[name]
        width, height = _png_size(tmp_path / file)
        assert 300 <= width <= 1500 and 200 <= height <= 1200, (name, width, height)
        assert (tmp_path / file).stat().st_size > 5000
    # Without tokens there is no token chart.
    report.summary["carriers"]["tokens"] = None
    (tmp_path / "none").mkdir()
    assert "carrier_tokens" not in figures.write_figures(report, str(tmp_path / "none"))
