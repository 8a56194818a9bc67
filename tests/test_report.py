"""``srm-jax report``: verdicts on planted and isotropic files, formats, and bad inputs.

The report runs in this process through :func:`srm_jax.report.cli.main` (a subprocess only for the
``python -m srm_jax`` entry point). Its numbers are checked against an independent float64
reference (scipy's matrix-exponential spotlights, ``tests/conftest.py``), the isotropic
expectation against scipy's incomplete beta function.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import scipy.special

from srm_jax.report import basis_from_spec, cli, reading, verdict
from tests.conftest import load_report as load
from tests.conftest import reference_pairs, reference_spotlights
from tests.conftest import run_report as run

N, DIM, RESAMPLES, SUBSET = 1200, 6, 39, 1000  # two-sided p down to 2/40 = 0.05
# Every run analyses a subset of the same size, so the compiled computations are shared.
# One ε, the old default: these tests pin the one-ε verdict (the sweep: test_report_carriers).
ARGS = ["--resamples", str(RESAMPLES), "--max-samples", str(SUBSET), "--epsilon", "0.9"]
EPSILON = 0.9
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAME = ("num_rows", "num_samples", "num_excluded", "mean_srm", "max_srm", "alignment_score",
        "p_value", "best_epsilon", "num_test_samples")


def standard(n: int) -> np.ndarray:
    return np.concatenate([np.eye(n), -np.eye(n)])


def planted(rng, num: int = N, n: int = DIM):
    """Activations clustered on the ±e_i (the standard basis) and the index of their vector."""
    index = rng.integers(0, 2 * n, num)
    x = 3 * standard(n)[index] + 0.5 * rng.normal(size=(num, n))
    return x.astype(np.float32), index


def assert_same(report, expected, names=SAME):
    for name in names:
        assert report[name] == pytest.approx(expected[name], rel=1e-6), name


def reference_srm(x: np.ndarray, basis: np.ndarray, epsilon: float):
    """Float64 SRM (Eqn. 2) over the spanning comb planes: ``(P, T)`` values, mean self-SRM."""
    b = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    pairs = reference_pairs(len(b), "comb")
    pairs = pairs[np.abs(np.sum(b[pairs[:, 0]] * b[pairs[:, 1]], axis=1)) < 1 - 1e-6]
    spot = reference_spotlights(b, pairs, np.linspace(0, 2 * np.pi, 100))  # expm (Eqn. 1)
    d = x[np.all(np.isfinite(x), axis=1)].astype(np.float64)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    values = np.mean(np.einsum("nk,ptk->npt", d, spot) >= epsilon, axis=0)
    self_values = np.mean(np.einsum("nk,ptk->npt", b, spot) >= epsilon, axis=0)
    return values, self_values.mean(0)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    rng = np.random.default_rng(20261130)
    root = tmp_path_factory.mktemp("inputs")
    x, index = planted(rng)
    x[[3, 50, 700]] = np.nan
    x[[10, 900], 2] = np.inf
    np.save(root / "planted.npy", x)
    np.save(root / "labels.npy", index)
    np.save(root / "isotropic.npy", rng.normal(size=(N, DIM)).astype(np.float32))
    return root, x, index


@pytest.fixture(scope="module")
def planted_report(files, tmp_path_factory):
    """The report of the planted file with labels: (output directory, report.json, stdout)."""
    root, _, _ = files
    out = tmp_path_factory.mktemp("planted") / "report"
    status = cli.main(["report", str(root / "planted.npy"), "--labels", str(root / "labels.npy"),
                       "--out", str(out), *ARGS])
    assert status == 0
    return out, load(out)


def test_planted_alignment_is_aligned(files, planted_report):
    root, x, index = files
    out, report = planted_report
    assert report["verdict"] == "aligned"
    assert report["verdict_sentence"] == "aligned with the basis, p = 0.05"
    assert report["p_value_aligned"] == pytest.approx(1 / (RESAMPLES + 1))
    assert report["p_value"] == pytest.approx(2 / (RESAMPLES + 1))
    # NaN/Inf rows are excluded and counted, never silently.
    assert report["num_rows"] == N and report["num_excluded"] == 5
    assert report["num_samples"] == N - 5
    assert (report["n"], report["m"], report["num_planes"]) == (DIM, 2 * DIM, 60)
    assert SUBSET - 5 <= report["num_test_samples"] <= SUBSET
    # The numbers against a float64 reference.
    values, self_curve = reference_srm(x, standard(DIM), EPSILON)
    assert report["mean_srm"] == pytest.approx(values.mean(), rel=1e-3)
    assert report["alignment_score"] == pytest.approx(
        np.corrcoef(values.mean(0), self_curve)[0, 1], abs=1e-3)
    exact = 0.5 * scipy.special.betainc((DIM - 1) / 2, 0.5, 1 - EPSILON**2)
    assert report["isotropic_expectation"] == pytest.approx(exact, rel=1e-5)
    assert report["mean_srm"] > 5 * exact
    # Labels: every class sits on one basis vector, so each vector is a grandmother neuron.
    classes = report["class_selectivity"]
    assert classes["num_classes"] == 2 * DIM
    assert sum(classes["class_counts"]) == report["num_test_samples"]
    top = classes["vectors"][0]
    assert top["p_family_wise"] == pytest.approx(1 / (RESAMPLES + 1))
    firing = np.abs(np.asarray(top["firing_per_class"]))
    assert np.argmax(firing) in (top["vector"], (top["vector"] + DIM) % (2 * DIM))
    # The outputs: every figure, linked from report.md with the verdict.
    markdown = (out / "report.md").read_text()
    assert "**Verdict: Aligned with the basis, p = 0.05.**" in markdown
    for name in ("srm", "epsilon_sweep", "rotation_test", "per_class", "projection"):
        assert (out / report["figures"][name]).stat().st_size > 1000
        assert f"]({report['figures'][name]})" in markdown


def test_isotropic_file_gives_no_evidence_and_replaces_a_report(
        files, planted_report, tmp_path, capsys):
    root, _, _ = files
    out = tmp_path / "out"
    shutil.copytree(planted_report[0], out)
    (out / "notes.txt").write_text("mine")
    status, stdout, err = run([root / "isotropic.npy", "--out", out, *ARGS], capsys)
    assert status == 0, err
    report = load(out)
    assert report["verdict"] == "no evidence", report["verdict_sentence"]
    assert report["p_value"] > 0.05 and report["num_excluded"] == 0
    assert stdout.startswith("No evidence of alignment (p = ")
    # Mean SRM of isotropic data is the isotropic expectation, within 4 standard errors.
    p = report["isotropic_expectation"]
    assert abs(report["mean_srm"] - p) < 4 * np.sqrt(p * (1 - p) / N)
    # A report written over another: its files replaced, the stale per-class figure removed,
    # other files left alone.
    assert not (out / "per_class_top_plane.png").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert "No evidence of alignment" in (out / "report.md").read_text()


def test_flat_curve_says_why(files, tmp_path, capsys):
    root, _, _ = files
    status, stdout, err = run([root / "planted.npy", "--out", tmp_path, *ARGS, "--epsilon", "1"],
                              capsys)
    assert status == 0, err
    report = load(tmp_path)
    assert report["verdict"] == "no evidence" and report["alignment_score"] is None
    assert report["max_srm"] == 0
    assert report["verdict_sentence"].startswith(
        "no evidence of alignment: no sample falls inside a spotlight at ε = 1 (the ε sweep's "
        "best is ")


def test_anti_alignment_with_a_simplex_basis(tmp_path, capsys, rng):
    import jax

    import srm_jax

    basis = np.asarray(srm_jax.simplex_basis(jax.random.key(3), DIM))
    x = -3 * basis[rng.integers(0, DIM + 1, N)] + 0.4 * rng.normal(size=(N, DIM))
    np.save(tmp_path / "anti.npy", x.astype(np.float32))
    status, stdout, err = run([tmp_path / "anti.npy", "--basis", "simplex:3", "--out",
                               tmp_path / "r", *ARGS], capsys)
    assert status == 0, err
    report = load(tmp_path / "r")
    assert report["verdict"] == "anti-aligned"
    assert report["p_value_anti_aligned"] == pytest.approx(1 / (RESAMPLES + 1))
    assert report["alignment_score"] < 0
    assert (report["m"], report["num_planes"]) == (DIM + 1, 21)


def test_streamed_in_small_batches_equals_one_batch(files, planted_report, tmp_path, capsys,
                                                    monkeypatch):
    root, _, _ = files
    monkeypatch.setattr(reading, "MAX_BATCH_SAMPLES", 256)  # 5 batches, the last one ragged
    status, _, err = run([root / "planted.npy", "--labels", root / "labels.npy", "--out",
                          tmp_path, *ARGS], capsys)
    assert status == 0, err
    report, expected = load(tmp_path), planted_report[1]
    assert_same(report, expected, ("num_rows", "num_samples", "num_excluded",
                                   "num_test_samples", "p_value", "best_epsilon"))
    # Counts may differ where a cosine lies within float rounding of ε (SPEC §5): a few of
    # 1195 * 60 * 100.
    for name in ("mean_srm", "max_srm", "alignment_score"):
        assert report[name] == pytest.approx(expected[name], rel=1e-4), name


def test_npz_safetensors_keys_features_and_labels(files, planted_report, tmp_path, capsys):
    from safetensors.numpy import save_file

    root, x, index = files
    expected = planted_report[1]
    np.savez(tmp_path / "acts.npz", layer=x, other=np.zeros((4, 3)), labels=index)
    save_file({"layer": x, "labels": index}, str(tmp_path / "acts.safetensors"))
    for path in (tmp_path / "acts.npz", tmp_path / "acts.safetensors"):
        status, _, err = run([path, "--key", "layer", "--labels", "labels", "--out",
                              tmp_path / path.suffix[1:], *ARGS], capsys)
        assert status == 0, err
        report = load(tmp_path / path.suffix[1:])
        assert_same(report, expected)
        assert report["class_selectivity"] == expected["class_selectivity"]
        assert report["input"]["key"] == "layer"
    # bfloat16, as PyTorch and Hugging Face models often save activations.
    import ml_dtypes

    save_file({"layer": x.astype(ml_dtypes.bfloat16)}, str(tmp_path / "bf16.safetensors"))
    status, _, err = run([tmp_path / "bf16.safetensors", "--out", tmp_path / "bf16", *ARGS],
                         capsys)
    assert status == 0, err
    report = load(tmp_path / "bf16")
    assert report["input"]["dtype"] == "bfloat16" and report["num_excluded"] == 5
    assert report["verdict"] == "aligned"
    assert report["mean_srm"] == pytest.approx(expected["mean_srm"], rel=0.05)
    # (N, 2, 3) flattened is the planted file itself.
    np.save(tmp_path / "grid.npy", x.reshape(N, 2, 3))
    status, _, err = run([tmp_path / "grid.npy", "--features", "flatten", "--out",
                          tmp_path / "flat", *ARGS], capsys)
    assert status == 0, err
    assert_same(load(tmp_path / "flat"), expected)
    # (N, 2, n) with --features last: 2N samples of n, the labels repeated per position.
    np.save(tmp_path / "conv.npy", np.stack([x, x[::-1]], axis=1))
    status, _, err = run([tmp_path / "conv.npy", "--features", "last", "--labels",
                          root / "labels.npy", "--out", tmp_path / "last", *ARGS], capsys)
    assert status == 0, err
    report = load(tmp_path / "last")
    assert (report["num_rows"], report["n"], report["num_excluded"]) == (2 * N, DIM, 10)
    assert report["mean_srm"] == pytest.approx(expected["mean_srm"], rel=1e-4)
    assert sum(report["class_selectivity"]["class_counts"]) == report["num_test_samples"]


def test_basis_from_a_file(files, planted_report, tmp_path, capsys):
    root, _, _ = files
    np.save(tmp_path / "basis.npy", standard(DIM))
    status, _, err = run([root / "planted.npy", "--labels", root / "labels.npy", "--basis",
                          tmp_path / "basis.npy", "--out", tmp_path / "file", *ARGS], capsys)
    assert status == 0, err
    report = load(tmp_path / "file")
    assert_same(report, planted_report[1])
    assert report["basis"] == str(tmp_path / "basis.npy")


def test_named_bases():
    import jax

    import srm_jax

    for spec, m in (("standard", 2 * DIM), ("orthoplex:1", 2 * DIM), ("simplex:1", DIM + 1),
                    ("thompson:9:1", 9), ("random:5:1", 5)):
        basis = np.asarray(basis_from_spec(spec, DIM))
        assert basis.shape == (m, DIM), spec
        assert np.allclose(np.linalg.norm(basis, axis=1), 1, atol=1e-5), spec
    np.testing.assert_allclose(basis_from_spec("simplex:4", DIM),
                               srm_jax.simplex_basis(jax.random.key(4), DIM))
    np.testing.assert_array_equal(basis_from_spec("standard", 3), standard(3))


def _bad_inputs(root, tmp):
    np.save(tmp / "flat.npy", np.zeros(10, np.float32))
    np.save(tmp / "rank3.npy", np.zeros((10, 2, 3), np.float32))
    np.save(tmp / "wide_basis.npy", standard(DIM + 1))
    np.save(tmp / "short_labels.npy", np.zeros(N - 1, np.int64))
    np.save(tmp / "nan.npy", np.full((50, DIM), np.nan, np.float32))
    np.savez(tmp / "two.npz", a=np.zeros((5, DIM)), b=np.zeros((5, DIM)))
    (tmp / "acts.pt").write_bytes(b"not an array")
    planted_file = root / "planted.npy"
    return {
        "missing file": ([tmp / "missing.npy"], "no such file"),
        "unknown key": ([tmp / "two.npz", "--key", "c"], "no array named 'c'"),
        "several arrays, no key": ([tmp / "two.npz"], "--key"),
        "key of a .npy": ([planted_file, "--key", "a"], "--key"),
        "wrong rank": ([tmp / "flat.npy"], "shape (10,)"),
        "rank 3 without --features": ([tmp / "rank3.npy"], "--features"),
        "file type": ([tmp / "acts.pt"], "unsupported file type"),
        "basis width": ([planted_file, "--basis", tmp / "wide_basis.npy"], "width n=7"),
        "basis spec": ([planted_file, "--basis", "banana"], "unknown basis 'banana'"),
        "basis spec arity": ([planted_file, "--basis", "thompson:4"], "thompson:M:SEED"),
        "basis spec number": ([planted_file, "--basis", "random:x:1"], "integers"),
        "missing basis file": ([planted_file, "--basis", tmp / "nope.npy"], "no such file"),
        "labels length": ([planted_file, "--labels", tmp / "short_labels.npy"], "1199"),
        "labels neither file nor key": ([planted_file, "--labels", "digits"], "--labels"),
        "epsilon": ([planted_file, "--epsilon", "1.5"], "[-1, 1]"),
        "epsilon nan": ([planted_file, "--epsilon", "nan"], "[-1, 1]"),
        "all NaN": ([tmp / "nan.npy"], "NaN or Inf"),
        "bad option value": ([planted_file, "--planes", "all"], "--planes"),
    }


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(files, tmp_path, capsys):
    root, _, _ = files
    scratch_before = {d for d in os.listdir(tempfile.gettempdir()) if d.startswith("srm-report-")}
    for name, (argv, needle) in _bad_inputs(root, tmp_path).items():
        out = tmp_path / "out" / name.replace(" ", "_")
        try:
            status = cli.main(["report", *ARGS, *map(str, argv), "--out", str(out)])
        except SystemExit as exit_:  # argparse's own errors
            status = exit_.code
        _, err = capsys.readouterr()
        assert status == 2, name
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "error" in lines[0] and needle in lines[0], (name, err)
        assert "Traceback" not in err
        assert not out.exists() and not (tmp_path / "out").exists(), name
    scratch_after = {d for d in os.listdir(tempfile.gettempdir()) if d.startswith("srm-report-")}
    assert scratch_after <= scratch_before


def test_verdict_sentences():
    assert verdict(0.005, 1.0) == ("aligned", 0.01, "aligned with the basis, p = 0.01")
    kind, p, sentence = verdict(0.9, 0.01)
    assert (kind, p, sentence) == ("anti-aligned", 0.02, "anti-aligned with the basis, p = 0.02")
    assert verdict(0.3, 0.8)[::2] == ("no evidence", "no evidence of alignment (p = 0.6)")
    assert verdict(float("nan"), float("nan"))[0] == "undefined"


def test_module_entry_point_and_console_script(tmp_path):
    with open(os.path.join(ROOT, "pyproject.toml")) as fh:  # tomllib needs Python 3.11
        pyproject = fh.read()
    scripts = pyproject.split("[project.scripts]", 1)[1].split("[", 1)[0]
    assert 'srm-jax = "srm_jax.cli:main"' in scripts
    dependencies = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert '"safetensors>=' in dependencies
    proc = subprocess.run(
        [sys.executable, "-m", "srm_jax", "report", str(tmp_path / "acts.npy"), "--out",
         str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"srm-jax report: error: no such file: {tmp_path / 'acts.npy'}"]
    assert not (tmp_path / "out").exists()
    proc = subprocess.run([sys.executable, "-m", "srm_jax", "report", "--help"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and "thompson:M:SEED" in proc.stdout
    assert proc.stdout.startswith("usage: srm-jax report")


def test_plane_subsets_are_pairs_in_canonical_order(rng):
    """A random subset of planes, decoded from indices, against itertools' full list."""
    import itertools

    import jax

    from srm_jax.report.planes import _plane_pairs

    for m in (2, 3, 7, 40, int(rng.integers(50, 300))):
        for kind, gen in (("comb", itertools.combinations), ("perm", itertools.permutations)):
            everything = [tuple(p) for p in gen(range(m), 2)]
            position = {p: i for i, p in enumerate(everything)}
            for size in (1, 5, len(everything) - 1, len(everything) + 3):
                size = max(size, 1)
                key = jax.random.key(int(rng.integers(1 << 30)))
                pairs = [tuple(p) for p in _plane_pairs(m, kind, size, key).tolist()]
                assert len(pairs) == min(size, len(everything)) == len(set(pairs))
                index = [position[p] for p in pairs]  # KeyError: not a valid pair
                assert index == sorted(index)
    pairs = _plane_pairs(6144, "comb", 1000, jax.random.key(0))  # 19 million pairs, not listed
    assert pairs.shape == (1000, 2) and np.all(pairs[:, 0] < pairs[:, 1]) and pairs.max() < 6144


def test_the_mean_curve_band_is_drawn_once_for_equal_inputs():
    """The null band of the mean curve depends on the width, planes, ε and sample count, not on
    the data: a report of several layers of one width draws it once (the same object), equal to
    a fresh draw; another ε draws another."""
    import jax

    import srm_jax
    from srm_jax.report.defaults import NULL_BAND_DRAWS
    from srm_jax.report.significance import mean_curve_band

    basis = srm_jax.standard_basis(8)
    pairs = np.array(np.triu_indices(8, 1), np.int32).T
    key = jax.random.key(4)
    first = mean_curve_band(key, 60, basis, pairs, 0.5)
    assert mean_curve_band(key, 60, basis, pairs, 0.5) is first
    fresh = srm_jax.null_band(key, 60, basis, epsilon=0.5, planes=pairs,
                              num_resamples=NULL_BAND_DRAWS, per_plane=False)
    np.testing.assert_array_equal(first.curve_quantiles, fresh.curve_quantiles)
    np.testing.assert_array_equal(first.curve_mean, fresh.curve_mean)
    other = mean_curve_band(key, 60, basis, pairs, 0.6)
    assert other is not first and float(other.epsilon) == pytest.approx(0.6)
    assert mean_curve_band(key, 61, basis, pairs, 0.6).num_samples == 61
