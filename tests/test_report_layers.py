"""``srm-jax report`` at language-model width (issue 17): which neurons, the field's measures
beside SRM, shards and layers, the memory budget, and their bad inputs."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import load_report as load
from conftest import run_report as run

import srm_jax
from srm_jax import basis_measures as bm
from srm_jax import report as report_lib
from srm_jax.report import cli, compose

N, DIM, RESAMPLES = 400, 16, 39  # two-sided p down to 0.05
# The wide reports' width and rows: 4,512 planes, above SAMPLE_MAJOR_MIN_PLANES, so method="auto"
# takes the sample-major kernel. Both wide tests use them, so they share compiled computations.
WIDE_N, WIDE_ROWS = 48, 300
# One ε (the sweep default is pinned by test_report_carriers and the golden reports).
ARGS = ["--resamples", str(RESAMPLES), "--max-samples", str(N), "--epsilon", "0.9"]


def outlier_tokens(rng, num=N, n=DIM, channels=(3, 11)):
    """Gaussian tokens with outlier channels (magnitude 10-14 on 30 % of the tokens)."""
    x = rng.normal(size=(num, n))
    for i in channels:
        rows = rng.random(num) < 0.3
        x[rows, i] = rng.choice([-1, 1], rows.sum()) * rng.uniform(10, 14, rows.sum())
    return x.astype(np.float32)


def clustered(rng, basis, num=N, noise=0.3):
    """Samples near the rows of ``basis`` (every vector equally often)."""
    basis = np.asarray(basis)
    return (3 * basis[rng.integers(0, len(basis), num)]
            + noise * rng.normal(size=(num, basis.shape[1]))).astype(np.float32)


def test_outlier_channels_named_first_and_shards_equal_their_concatenation(
        rng, tmp_path, capsys):
    channels = sorted(int(c) for c in rng.choice(DIM, 2, replace=False))
    x = outlier_tokens(rng, channels=channels)
    np.save(tmp_path / "whole.npy", x)
    shards = tmp_path / "shards"
    shards.mkdir()
    for i, part in enumerate(np.array_split(x, [150, 151])):  # one shard of a single row
        np.save(shards / f"shard-{i:02d}.npy", part)
    status, _, err = run([tmp_path / "whole.npy", "--out", tmp_path / "whole", *ARGS], capsys)
    assert status == 0, err
    whole = load(tmp_path / "whole")
    # The planted channels are the top neurons: both signs of each, then the rest.
    top = whole["top_basis_vectors"]
    assert len(top) == 20 and all(v["neuron"] in channels for v in top[:4])
    assert {v["sign"] for v in top[:4]} == {-1, 1}
    assert sorted(t["neuron"] for t in whole["top_neurons"][:2]) == channels
    assert len(whole["top_planes"]) == 20
    measures = whole["measures"]
    for name in ("outlier_dimensions", "outlier_dimensions_relative"):
        assert sorted(d["dimension"] for d in measures[name][:2]) == channels, name
    assert measures["kurtosis"]["evidence"] == "higher than rotations"
    markdown = (tmp_path / "whole" / "report.md").read_text()
    assert "Top neurons (by credit at ε = 0.9): " in markdown
    # The credit ranking (math §11) names the planted channels first too.
    assert {t["neuron"] for t in whole["neuron_scores"][:2]} == set(channels)
    assert "## The field's measures beside SRM" in markdown and measures["agreement"] in markdown
    for name in ("neuron_map", "neuron_shares"):
        assert (tmp_path / "whole" / whole["figures"][name]).stat().st_size > 1000
    # Shards (a directory, and the same files listed) give exactly the concatenation's numbers.
    files = sorted(shards.iterdir())
    source = report_lib.ShardedSource(report_lib.shard_paths([str(shards)]), None)
    assert source.shape == x.shape and source.name.startswith("3 shards (")
    np.testing.assert_array_equal(np.concatenate(list(source.rows(64))), x)
    for i, inputs in enumerate(([shards], files)):
        status, _, err = run([*inputs, "--out", tmp_path / f"sharded{i}", *ARGS], capsys)
        assert status == 0, err
        sharded = load(tmp_path / f"sharded{i}")
        assert sharded["input"]["num_shards"] == 3
        for name in ("num_samples", "mean_srm", "max_srm", "alignment_score", "p_value",
                     "top_basis_vectors", "top_planes", "measures"):
            assert sharded[name] == whole[name], name


def test_rotated_planted_basis_is_found_in_that_basis_not_the_standard_one(
        rng, tmp_path, capsys):
    n = DIM  # the other reports' width: their compiled computations are reused
    basis = np.asarray(srm_jax.orthoplex_basis(jax.random.key(int(rng.integers(1 << 30))), n))
    np.save(tmp_path / "basis.npy", basis)
    np.save(tmp_path / "acts.npy", clustered(rng, basis[[0, 1, 2, n, n + 1, n + 2]]))
    status, _, err = run([tmp_path / "acts.npy", "--basis", tmp_path / "basis.npy", "--out",
                          tmp_path / "own", *ARGS], capsys)
    assert status == 0, err
    own = load(tmp_path / "own")
    assert own["verdict"] == "aligned" and own["basis_is_signed_orthonormal"]
    assert not own["basis_is_standard"]
    # Neurons 0, 1, 2 of the planted basis (its directions q_0, q_1, q_2) lead.
    assert sorted(t["neuron"] for t in own["top_neurons"][:3]) == [0, 1, 2]
    assert own["measures"]["coordinates"].startswith(f"the coordinates in the basis' {n}")
    assert own["measures"]["proximity"]["evidence"] == "higher than rotations"
    status, _, err = run([tmp_path / "acts.npy", "--out", tmp_path / "std", *ARGS], capsys)
    assert status == 0, err
    std = load(tmp_path / "std")
    assert std["verdict"] == "no evidence", std["verdict_sentence"]
    assert std["measures"]["proximity"]["evidence"] == "no evidence"


def test_key_all_gives_a_section_per_layer_and_the_table(rng, tmp_path, capsys):
    from safetensors.numpy import save_file

    layers = {"embed": rng.normal(size=(N, DIM)).astype(np.float32),
              "mlp": clustered(rng, np.concatenate([np.eye(DIM), -np.eye(DIM)])),
              "out": rng.normal(size=(N, DIM)).astype(np.float32)}
    save_file({**layers, "labels": np.zeros(N, np.int64)}, str(tmp_path / "acts.safetensors"))
    status, stdout, err = run([tmp_path / "acts.safetensors", "--key", "all", "--out",
                               tmp_path / "r", *ARGS], capsys)
    assert status == 0, err
    report = load(tmp_path / "r")
    assert [s["input"]["key"] for s in report["layers"]] == list(layers)  # labels: not a layer
    assert [row["key"] for row in report["layer_table"]] == list(layers)
    assert report["aligned_layers"] == ["mlp"]
    assert stdout.startswith("Of 3 layers, aligned with the basis: mlp.")
    for summary in report["layers"]:
        if summary["input"]["key"] != "mlp":  # isotropic: no evidence on every measure
            assert summary["verdict"] == "no evidence"
            for name in ("kurtosis", "outlier_share", "outlier_share_relative", "proximity"):
                assert summary["measures"][name]["evidence"] == "no evidence", name
        for file in summary["figures"].values():
            assert (tmp_path / "r" / file).exists()
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "| layer | verdict | p | top neurons | kurtosis (p) | measures agree |" in markdown
    for key in layers:
        assert f"## Layer `{key}`" in markdown
    # The same two keys given with --key, in that order, and a single-key report over it.
    status, _, err = run([tmp_path / "acts.safetensors", "--key", "out", "--key", "mlp",
                          "--out", tmp_path / "r", *ARGS], capsys)
    assert status == 0, err
    assert [s["input"]["key"] for s in load(tmp_path / "r")["layers"]] == ["out", "mlp"]
    assert not (tmp_path / "r" / "layers" / "embed").exists()


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(rng, tmp_path, capsys):
    from safetensors.numpy import save_file

    x = rng.normal(size=(50, DIM)).astype(np.float32)
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "wide.npy", rng.normal(size=(50, DIM + 1)).astype(np.float32))
    save_file({"h": x}, str(tmp_path / "h.safetensors"))
    save_file({"g": x}, str(tmp_path / "g.safetensors"))
    cases = {
        "top 0": ([tmp_path / "a.npy", "--top", "0"], "--top must be >= 1"),
        "top above planes": ([tmp_path / "a.npy", "--top", "1000"], "larger than the 480"),
        "shard width": ([tmp_path / "a.npy", tmp_path / "wide.npy"], "wide.npy"),
        "shard without the key": ([tmp_path / "h.safetensors", tmp_path / "g.safetensors",
                                   "--key", "h"], "g.safetensors"),
        "memory budget": ([tmp_path / "a.npy", "--memory-budget", "0.00001"],
                          "raise --memory-budget"),
        "memory budget sign": ([tmp_path / "a.npy", "--memory-budget", "-1"],
                               "--memory-budget"),
        "empty directory": ([tmp_path / "empty"], "no .npy"),
        "key all of a .npy": ([tmp_path / "a.npy", "--key", "all"], "--key"),
    }
    (tmp_path / "empty").mkdir()
    for name, (argv, needle) in cases.items():
        out = tmp_path / "out" / name.replace(" ", "_")
        status = cli.main(["report", *map(str, argv), "--out", str(out), *ARGS])
        _, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert status == 2, (name, err)
        assert len(lines) == 1 and "error" in lines[0] and needle in lines[0], (name, err)
        assert not (tmp_path / "out").exists(), name


@pytest.mark.parametrize("budget_gib", [0.0015])
def test_measures_rotations_are_batched_within_the_budget(rng, budget_gib):
    """At a budget that holds a few rotations, they are applied a few at a time, not all."""
    from srm_jax import basis_measures as bm

    x = rng.normal(size=(300, 32)).astype(np.float32)
    test = bm.measures_rotation_test(jax.random.key(0), x, srm_jax.standard_basis(32), 40,
                                     memory_budget=budget_gib * 2**30)
    assert 1 <= test.rotations_per_batch < 40
    assert test.null.shape == (40, 4)


def test_every_plane_of_a_wide_standard_basis_by_default(rng, tmp_path, capsys):
    """A wide ``±e_i`` basis: the report measures every plane through summaries by default
    (streamed, with a second pass for the candidates' exact curves), names the planted channels
    first, and agrees with the same report computed from the full ``(P, T)`` counts."""
    n = WIDE_N
    channels = sorted(int(c) for c in rng.choice(n, 3, replace=False))
    x = outlier_tokens(rng, num=WIDE_ROWS, n=n, channels=channels)
    np.save(tmp_path / "wide.npy", x)
    status, _, err = run([tmp_path / "wide.npy", "--out", tmp_path / "r", "--resamples", "19",
                          "--epsilon", "0.9"],
                         capsys)
    assert status == 0, err
    wide = load(tmp_path / "r")
    assert wide["measurement"] == "summaries" and wide["max_planes"] is None
    assert wide["num_planes"] == n * (2 * n - 1) - n  # every spanning pair of ±e_i
    assert sorted(t["neuron"] for t in wide["top_neurons"][:3]) == channels
    assert all(v["neuron"] in channels for v in wide["top_basis_vectors"][:6])
    assert wide["epsilon_sweep"]["num_planes"] == report_lib.SWEEP_PLANES
    # The same analysis from the (P, T) counts (same key, same rows): the same numbers.
    basis = np.asarray(srm_jax.standard_basis(n))
    counts = report_lib.srm_report(
        x, basis, key=jax.random.split(jax.random.key(0))[1], num_resamples=19, epsilon=0.9,
        result=srm_jax.spotlight_resonance(x, basis, epsilon=0.9),
    ).summary
    assert counts["measurement"] == "counts"
    for name in ("num_planes", "alignment_score", "p_value", "test_score"):
        assert wide[name] == pytest.approx(counts[name], rel=1e-5), name
    for name, fields in (("top_basis_vectors", ("index", "neuron", "sign")),
                         ("top_neurons", ("neuron",))):
        assert ([[v[f] for f in fields] for v in wide[name]]
                == [[v[f] for f in fields] for v in counts[name]]), name
        np.testing.assert_allclose([v["score" if "score" in v else "share"] for v in wide[name]],
                                   [v["score" if "score" in v else "share"]
                                    for v in counts[name]], rtol=1e-5)
    for name in ("kurtosis", "outlier_share_relative", "proximity"):
        for field in ("value", "p_value"):
            assert wide["measures"][name][field] == pytest.approx(
                counts["measures"][name][field], rel=1e-5), (name, field)
    assert wide["mean_srm"] == pytest.approx(counts["mean_srm"], rel=1e-5)
    if wide["top_planes_exact"]:
        assert wide["top_planes"] == counts["top_planes"]
    # --max-planes still samples, through the counts, and says so.
    status, _, err = run([tmp_path / "wide.npy", "--out", tmp_path / "s", "--resamples", "19",
                          "--max-planes", "300", "--epsilon", "0.9"], capsys)
    assert status == 0, err
    sampled = load(tmp_path / "s")
    assert sampled["measurement"] == "counts" and sampled["num_planes"] <= 300
    assert sampled["max_planes"] == 300


def test_wide_report_fits_its_memory_budget_by_batching_rotations(rng, tmp_path, capsys):
    """A reduced-size wide report under a budget that holds a few rotations of the measures'
    null but not all of them: it completes, applying them a few at a time."""
    n, num, resamples = WIDE_N, WIDE_ROWS, 19
    np.save(tmp_path / "t.npy", rng.standard_t(5, size=(num, n)).astype(np.float32))
    planes = n * (2 * n - 1) - n
    held = report_lib.report_bytes(num, n, n, planes, 100, summaries=True)
    one = bm.rotation_bytes(n, 2 * n, n, min(bm.ROW_CHUNK, num))
    budget = held + 2 * 4 * num * n + 3.5 * one
    assert held + 2 * 4 * num * n + resamples * one > budget  # all at once would not fit
    status, _, err = run([tmp_path / "t.npy", "--out", tmp_path / "r", "--resamples",
                          str(resamples), "--memory-budget", str(budget / 2**30)], capsys)
    assert status == 0, err
    report = load(tmp_path / "r")
    assert report["measurement"] == "summaries"
    assert 1 <= report["measures"]["rotations_per_batch"] <= 3
    # The counts of every plane would not fit that budget: refused in one line, nothing written.
    with pytest.raises(report_lib.ReportError, match="reduce max_samples= or max_planes="):
        report_lib.check_memory(num, n, 2 * n, n, planes, 100, resamples, budget)


def test_rotations_held_for_the_layers_are_each_tests_own(rng):
    from types import SimpleNamespace

    from srm_jax.report import run as run_lib

    basis = np.concatenate([np.eye(DIM), -np.eye(DIM)]).astype(np.float32)
    x = clustered(rng, basis, num=200)
    key = jax.random.key(3)
    plain = report_lib.srm_report(x, np.eye(DIM, dtype=np.float32), key=key,
                                  num_resamples=RESAMPLES)
    rotations = report_lib.report_rotations(key, DIM, RESAMPLES)
    # Drawn on threads, they are haar_rotations of the test's key, in order.
    np.testing.assert_array_equal(rotations, srm_jax.haar_rotations(
        compose.report_keys(key)[1], DIM, RESAMPLES))
    held = report_lib.srm_report(x, np.eye(DIM, dtype=np.float32), key=key,
                                 num_resamples=RESAMPLES, rotations=rotations)
    np.testing.assert_array_equal(held.test.null_scores, plain.test.null_scores)
    np.testing.assert_array_equal(held.measures.null, plain.measures.null)
    assert held.summary["epsilon_tests"] == plain.summary["epsilon_tests"]
    # Held once per width (and key), for every layer of that width; None past the budget share.
    settings = report_lib.ReportSettings(num_resamples=RESAMPLES)
    layer = SimpleNamespace(basis=np.eye(DIM), key=key)
    held_by_width: dict = {}
    first = run_lib.held_rotations(held_by_width, layer, settings, 2**30)
    assert run_lib.held_rotations(held_by_width, layer, settings, 2**30) is first
    np.testing.assert_array_equal(first, rotations)
    wide = SimpleNamespace(basis=np.eye(2 * DIM), key=key)
    assert run_lib.held_rotations(held_by_width, wide, settings, 2**30).shape == (
        RESAMPLES, 2 * DIM, 2 * DIM)
    size = RESAMPLES * DIM * DIM * 4
    assert run_lib.held_rotations({}, layer, settings,
                                  0.99 * size / report_lib.HELD_ROTATIONS_SHARE) is None
    # The rotations of a width no later layer has are dropped; the others stay.
    assert len(held_by_width) == 2
    run_lib.release_rotations(held_by_width, [wide])
    assert [name[0] for name in held_by_width] == [2 * DIM]
    run_lib.release_rotations(held_by_width, [])
    assert held_by_width == {}


def test_layers_of_one_basis_share_their_planes(rng, tmp_path):
    from safetensors.numpy import save_file

    from srm_jax.report import run as run_lib

    save_file({"a": rng.normal(size=(40, DIM)).astype(np.float32),
               "b": rng.normal(size=(40, DIM)).astype(np.float32),
               "c": rng.normal(size=(40, DIM + 2)).astype(np.float32)},
              str(tmp_path / "acts.safetensors"))
    paths = report_lib.shard_paths([str(tmp_path / "acts.safetensors")])
    settings = report_lib.ReportSettings(num_resamples=RESAMPLES)
    plans = [run_lib.plan_layer(paths, key, settings, 2**30) for key in ("a", "b", "c")]
    assert plans[0].pairs is not plans[1].pairs
    shared = run_lib.share_pairs(plans)
    assert shared[0].pairs is shared[1].pairs  # one array for the two layers of width DIM
    assert shared[2].pairs is plans[2].pairs
    for before, after in zip(plans, shared, strict=True):
        np.testing.assert_array_equal(after.pairs, before.pairs)
        assert after.source is before.source
