"""Tests of the training loop, checkpoints/resume, outputs, figure and NaN handling (issue 4).

Runs are tiny (scikit-learn digits subset, widths of a few units, 2 epochs) so the whole file
stays well under a minute on two cores.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from train import input_pipeline, plots
from train import train as train_lib
from train.__main__ import main as cli_main
from train.configs import get_config
from train.models import mse

EPOCHS = 2


def strict_json(text: str):
    """json.loads that rejects NaN/Infinity tokens (outputs must be strict JSON)."""

    def bad(token):
        raise ValueError(f"non-strict JSON token {token}")

    return json.loads(text, parse_constant=bad)


@pytest.fixture(scope="module")
def data():
    return input_pipeline.subsample(input_pipeline.load_dataset("digits"), 240, 60)


@pytest.fixture(scope="module")
def config():
    # Fig. 2 layout (random / standard / privileged bases) on a tiny model: n=4, m=8.
    return get_config("fig2").replace(
        dataset="digits",
        latent_dim=4,
        num_basis=8,
        hidden_widths=(8,),
        epochs=EPOCHS,
        measure_every=1,
        num_angles=24,
        epsilon=0.8,
        srm_method="direct",  # compiles faster than "arc" at this size; same counts
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory, config, data):
    workdir = tmp_path_factory.mktemp("run")
    summary = train_lib.train_and_evaluate(config, workdir, dataset=data, progress=False)
    return workdir, summary


def params_of(workdir):
    model, _, epoch = train_lib.load_run(workdir)
    return jax.tree.map(np.asarray, nnx.state(model)), epoch


def test_loss_falls(run):
    workdir, summary = run
    assert summary["status"] == "completed"
    assert summary["final_test_loss"] < summary["initial_test_loss"]
    losses = summary["train_loss_per_epoch"]
    assert len(losses) == EPOCHS and losses[-1] < losses[0]


def test_every_output_file_is_written_and_loads(run, config, data):
    workdir, summary = run
    saved = strict_json((workdir / "config.json").read_text())
    assert saved["config"] == config.to_dict()
    assert saved["dataset"]["num_train"] == 240

    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    records = [strict_json(line) for line in lines]
    assert [r["epoch"] for r in records] == list(range(EPOCHS + 1))
    assert all("test_loss" in r and "alignment" in r for r in records)

    assert strict_json((workdir / "summary.json").read_text()) == json.loads(
        json.dumps(summary)
    )
    for key in ("alignment_before", "alignment_after", "random_alignment_after",
                "standard_alignment_after"):
        assert key in summary and (summary[key] is None or -1 <= summary[key] <= 1)
    sweep = summary["epsilon_sweep"]
    assert sweep["epsilon"] == list(config.epsilon_sweep)
    assert len(sweep["alignment_after"]) == len(config.epsilon_sweep)
    # The sweep entry at the run's own epsilon repeats the main measurement.
    at_eps = config.epsilon_sweep.index(config.epsilon)
    assert sweep["alignment_after"][at_eps] == summary["alignment_after"]

    with np.load(workdir / "srm.npz") as f:
        arrays = {k: f[k] for k in f.files}
    num_planes = 8 * 7 // 2 - 4  # comb pairs minus the 4 antipodal (b, -b) pairs of an orthoplex
    assert arrays["planes"].shape == (num_planes, 2)
    assert arrays["angles"].shape == (24,)
    for key in ("self_srm", "srm_before", "srm_after", "standard_srm_after"):
        assert arrays[key].shape == (num_planes, 24), key
    assert arrays["random_srm_after"].shape == (8 * 7 // 2, 24)  # random basis: all pairs span
    assert arrays["srm_during"].shape == (EPOCHS + 1, num_planes, 24)
    np.testing.assert_array_equal(arrays["measured_epochs"], np.arange(EPOCHS + 1))
    np.testing.assert_array_equal(arrays["srm_during"][-1], arrays["srm_after"])
    assert np.all((arrays["srm_after"] >= 0) & (arrays["srm_after"] <= 1))


def test_srm_matches_a_direct_numpy_evaluation(run, data):
    """The stored trained-model SRM equals Eqn. 2 evaluated directly on the model's latents."""
    workdir, _ = run
    model, config, _ = train_lib.load_run(workdir)
    with np.load(workdir / "srm.npz") as f:
        planes, angles, after = f["planes"], f["angles"], f["srm_after"]
        basis = f["basis"]
    np.testing.assert_allclose(basis, np.asarray(model.latent_basis))
    z = np.asarray(model.encode(jnp.asarray(data.test_x)), np.float64)
    zhat = z / np.linalg.norm(z, axis=1, keepdims=True)
    b = basis.astype(np.float64)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    for p, (i, j) in enumerate(planes[:6]):
        c = b[i] @ b[j]
        u = (b[j] - c * b[i]) / np.sqrt(1 - c * c)
        spot = np.cos(angles)[:, None] * b[i] - np.sin(angles)[:, None] * u  # SPEC §3
        dots = zhat @ spot.T
        ref = np.mean(dots >= config.epsilon, axis=0)
        near = np.any(np.abs(dots - config.epsilon) < 1e-5, axis=0)
        np.testing.assert_allclose(after[p][~near], ref[~near], atol=1e-7)


def test_figure_has_three_panels_with_pi_ticks(run):
    workdir, summary = run
    image = plots.plt.imread(workdir / "srm.png")
    assert image.ndim == 3 and image.shape[0] > 100
    assert (workdir / "bases.png").exists() and "bases.png" in summary["figures"]
    with np.load(workdir / "srm.npz") as f:
        arrays = {k: f[k] for k in f.files}
    fig = plots.srm_figure(
        arrays["angles"],
        [("untrained", arrays["srm_before"]), ("self-SRM", arrays["self_srm"]),
         ("trained", arrays["srm_after"])],
    )
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 3
    values = [arrays["srm_before"], arrays["self_srm"], arrays["srm_after"]]
    for ax, v in zip(panels, values, strict=True):
        np.testing.assert_allclose(ax.get_xticks(), np.arange(5) * np.pi / 2)
        np.testing.assert_allclose(ax.get_xlim(), (0.0, 2 * np.pi), rtol=1e-6)
        segments = ax.collections[0].get_segments()
        np.testing.assert_allclose(np.stack([seg[:, 1] for seg in segments]), v)
        assert ax.collections[0].get_alpha() >= 0.45  # visible on white (issue 11, item 6)
        assert ax.lines[0].get_linestyle() == "--"
        np.testing.assert_allclose(ax.lines[0].get_ydata(), v.mean(axis=0), rtol=1e-6)
        assert ax.get_legend() is not None
    plots.plt.close(fig)


def test_resume_after_interruption_gives_identical_parameters(
    run, config, data, tmp_path, monkeypatch
):
    workdir, _ = run
    calls = []
    real_append = train_lib.append_metrics

    def interrupt_after_first_epoch(path, record):
        real_append(path, record)
        calls.append(record["epoch"])
        raise KeyboardInterrupt  # after epoch 1 was checkpointed

    monkeypatch.setattr(train_lib, "append_metrics", interrupt_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_lib.train_and_evaluate(config, tmp_path, dataset=data, progress=False)
    assert calls == [1]
    monkeypatch.setattr(train_lib, "append_metrics", real_append)
    train_lib.train_and_evaluate(config, tmp_path, dataset=data, progress=False)

    resumed, epoch_a = params_of(tmp_path)
    straight, epoch_b = params_of(workdir)
    assert epoch_a == epoch_b == EPOCHS
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight), strict=True):
        np.testing.assert_array_equal(a, b)
    drop = ("epoch_time_s",)
    clean = lambda d: [{k: v for k, v in r.items() if k not in drop} for r in d]  # noqa: E731
    read = lambda w: [strict_json(x) for x in (w / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert clean(read(tmp_path)) == clean(read(workdir))
    with np.load(tmp_path / "srm.npz") as f, np.load(workdir / "srm.npz") as g:
        np.testing.assert_array_equal(f["srm_during"], g["srm_during"])


def test_resume_refuses_other_settings(run, config, data):
    workdir, _ = run
    with pytest.raises(train_lib.IncompatibleRunError, match="latent_dim"):
        train_lib.train_and_evaluate(
            config.replace(latent_dim=5, num_basis=10), workdir, dataset=data, progress=False
        )


def test_nan_in_data_stops_with_message_and_keeps_last_good_checkpoint(config, data, tmp_path):
    train_x = data.train_x.copy()
    train_x[17, 3] = np.nan
    bad = dataclasses.replace(data, train_x=train_x)
    with pytest.raises(train_lib.NonFiniteLossError) as info:
        train_lib.train_and_evaluate(config, tmp_path, dataset=bad, progress=False)
    message = str(info.value)
    assert message.startswith(f"{train_lib.NAN_MESSAGE} (nan) at epoch 1, step ")
    assert "last good checkpoint (epoch 0)" in message
    _, epoch = params_of(tmp_path)
    assert epoch == 0
    summary = strict_json((tmp_path / "summary.json").read_text())
    assert summary["status"].startswith("stopped: non-finite training loss")


def test_epoch_is_one_scan_and_equals_manual_sgd_momentum(config, data):
    """The compiled epoch equals an explicit per-step loop of SGD with momentum (App. E)."""
    state, _ = train_lib.create_train_state(config, data.num_features, jax.random.key(3))
    tx = train_lib.create_optimizer(config)
    epoch_fn = train_lib.make_train_epoch(state.graphdef, tx, config.batch_size)
    x = jnp.asarray(data.train_x[:100])  # 4 batches of 24; the last 4 samples are dropped
    key = jax.random.key(11)
    jaxpr = str(jax.make_jaxpr(epoch_fn)(state.params, state.opt_state, state.rest, x, key))
    assert "scan" in jaxpr
    params, _, losses = epoch_fn(state.params, state.opt_state, state.rest, x, key)
    assert losses.shape == (4,)

    # Reference: explicit loop, v <- 0.9 v + g, p <- p - 0.08 v, on the same permutation.
    order = np.asarray(jax.random.permutation(key, 100))[:96].reshape(4, 24)

    @jax.jit
    def value_and_grad(p, xb):
        return jax.value_and_grad(
            lambda q: mse(nnx.merge(state.graphdef, q, state.rest)(xb), xb)
        )(p)

    p = state.params
    velocity = jax.tree.map(jnp.zeros_like, p)
    ref_losses = []
    for idx in order:
        value, grads = value_and_grad(p, x[idx])
        ref_losses.append(float(value))
        velocity = jax.tree.map(lambda v, g: 0.9 * v + g, velocity, grads)
        p = jax.tree.map(lambda w, v: w - 0.08 * v, p, velocity)
    np.testing.assert_allclose(np.asarray(losses), ref_losses, rtol=1e-4)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(p), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_config_accepts_every_library_method():
    """``srm_method`` takes every kernel of the library's one list of methods (a kernel added
    there needs no edit in train/), and only those."""
    from srm_jax.resonance import METHODS
    from train.configs import check_srm_method, override

    for method in METHODS:
        config = override(get_config("fig1"), [f"srm_method={method}"])
        check_srm_method(config)
        assert type(config).from_dict(config.to_dict()).srm_method == method
    with pytest.raises(ValueError, match="srm_method must be one of"):
        check_srm_method(get_config("fig1").replace(srm_method="bogus"))


def test_unknown_method_stops_a_run_before_anything_is_written(config, data, tmp_path):
    with pytest.raises(ValueError, match="srm_method must be one of"):
        train_lib.train_and_evaluate(config.replace(srm_method="bogus"), tmp_path / "run",
                                     dataset=data, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_sample_major_run_writes_the_srm_of_an_arc_run(config, data, tmp_path):
    """``srm_method="sample_major"`` (planned from concrete bases, so measured seed by seed, not
    vmapped) runs an ensemble end to end and writes the curves, counts and alignments of an
    ``"arc"`` run: the kernels are exact. The rotation test's statistic is a float the library
    sums from the sample-major kernel's summaries (another rounding), so it is compared to
    float32 rounding."""
    from train.measure import needs_concrete_basis

    assert needs_concrete_basis("sample_major") and not needs_concrete_basis("arc")
    small = config.replace(epochs=1, compare_bases=False, epsilon_sweep=(config.epsilon,),
                           num_rotations=9)
    summaries = {
        method: train_lib.train_and_evaluate(small.replace(srm_method=method), tmp_path / method,
                                             seeds=[0, 1], dataset=data, progress=False)
        for method in ("arc", "sample_major")
    }
    arc, major = tmp_path / "arc", tmp_path / "sample_major"
    written = [path.relative_to(arc) for path in sorted(arc.glob("measurements/*.npz"))]
    assert written and (major / written[0]).exists()
    for name in ["srm.npz", *written]:
        with np.load(arc / name) as a, np.load(major / name) as b:
            assert a.files == b.files
            for key in set(a.files) - {"rotation_score"}:
                np.testing.assert_array_equal(b[key], a[key], err_msg=f"{name}: {key}")
            if "rotation_score" in a.files:
                np.testing.assert_allclose(b["rotation_score"], a["rotation_score"], rtol=1e-5)
    for a, b in zip(summaries["arc"]["per_seed"], summaries["sample_major"]["per_seed"],
                    strict=True):
        for key in ("alignment_per_measurement", "srm_mean_after", "self_srm_mean"):
            assert a[key] == b[key], key
        np.testing.assert_allclose(b["rotation_test"]["p_value"], a["rotation_test"]["p_value"],
                                   rtol=1e-6)

def test_checkpoints_do_not_import_the_training_loop():
    """``load_run`` builds its state from :mod:`train.state`: no import cycle with the loop."""
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, train.checkpoints; print('train.train' in sys.modules)"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert probe.stdout.strip() == "False", probe.stderr


def test_measured_epochs_schedule():
    cfg = get_config("fig1").replace(epochs=25, measure_every=10)
    assert train_lib.measured_epochs(cfg) == [0, 10, 20, 25]


@pytest.mark.parametrize("preset", ["isotropic"])
def test_cli_runs_a_preset_end_to_end(preset, tmp_path, capsys):
    out = tmp_path / "cli"
    args = [
        preset, "--dataset", "digits", "--epochs", "1", "--out", str(out), "--seed", "3",
        "--no-progress", "--set", "latent_dim=3", "--set", "num_basis=6",
        "--set", "hidden_widths=", "--set", "num_train=96", "--set", "num_test=40",
        "--set", "num_angles=16", "--set", "srm_method=direct",
    ]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert "alignment with self-SRM" in printed
    for name in ("config.json", "metrics.jsonl", "srm.npz", "summary.json", "srm.png"):
        assert (out / name).exists(), name
    saved = strict_json((out / "config.json").read_text())["config"]
    assert saved["activation"] == "isotropic_tanh" and saved["seed"] == 3
    assert saved["hidden_widths"] == []


def test_cli_reports_bad_settings(capsys):
    with pytest.raises(SystemExit):
        cli_main(["fig1", "--set", "num_basis=7"])  # orthoplex needs m = 2n
    assert "num_basis = 2 * latent_dim" in capsys.readouterr().err


def test_grandmother_names_figures_after_the_data_set(tmp_path, capsys):
    """Issue 12: train.grandmother wrote *_mnist5k.png whatever the data set."""
    from srm_jax import bases
    from train import grandmother

    rng = np.random.default_rng(0)
    basis = np.asarray(bases.orthoplex_basis(jax.random.key(1), 4))
    labels = np.repeat(np.arange(10), 8).astype(np.int32)
    latents = rng.normal(size=(80, 4)).astype(np.float32)
    latents[labels == 3] += 3 * basis[0]  # a planted class-selective direction
    config = get_config("fig6").replace(dataset="digits", latent_dim=4, num_basis=8)
    np.savez(tmp_path / "latents.npz", latents=latents, basis=basis, labels=labels, epoch=2,
             config=json.dumps(config.to_dict()))
    out = tmp_path / "out"
    assert grandmother.main(["--latents", str(tmp_path / "latents.npz"), "--out", str(out),
                             "--shuffles", "9", "--rotations", "9", "--top", "2"]) == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["grandmother_digits.png", "projection_digits.png", "srm_null_digits.png"]
    assert "grandmother_digits.png" in capsys.readouterr().out


def test_help_lists_every_preset_with_what_it_reproduces(capsys):
    from train.__main__ import PRESET_HELP
    from train.configs import PRESETS

    with pytest.raises(SystemExit):
        cli_main(["--help"])
    text = capsys.readouterr().out
    lines = text.splitlines()
    for preset in PRESETS:
        line = next(x for x in lines if x.strip().startswith(preset + " "))
        assert PRESET_HELP[preset].split(",")[0] in line
    assert "--seeds" in text and "issue" not in text.lower()


def test_first_message_comes_before_jax_is_imported():
    """Issue 13: `python -m train fig1` printed nothing for ~26 s. The first line now comes
    before JAX is imported (the slow part of start-up), and names what is happening."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    start = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from train.__main__ import main; "
         "main(['fig1', '--print-config']) ; "
         "assert 'jax' not in sys.modules, 'jax imported before the first message'"],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert time.time() - start < 20
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, train.__main__, train.configs, "
         "train.input_pipeline; print('jax' in sys.modules)"],
        cwd=root, capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "False"  # the CLI can speak before the heavy imports


def test_cli_says_what_it_does_and_a_rerun_returns_at_once(tmp_path, capsys):
    import time

    out = tmp_path / "run"
    args = ["fig1", "--dataset", "digits", "--epochs", "1", "--out", str(out), "--seeds",
            "0,2", "--no-progress", "--set", "latent_dim=3", "--set", "num_basis=6",
            "--set", "hidden_widths=", "--set", "num_train=96", "--set", "num_test=40",
            "--set", "num_angles=16", "--set", "srm_method=direct", "--set",
            "num_rotations=9", "--set", "epsilon_sweep=0.5"]
    assert cli_main(args) == 0
    captured = capsys.readouterr()
    stages = ["starting", "loading data set digits", "building 2 models", "training 2 models",
              "measuring the trained models"]
    positions = [captured.err.find(s) for s in stages]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), captured.err
    assert "claim tested" in captured.out and "2 seeds" in captured.out
    summary = strict_json((out / "summary.json").read_text())
    assert [s["seed"] for s in summary["per_seed"]] == [0, 2]
    start = time.time()
    assert cli_main(args) == 0
    assert time.time() - start < 5
    again = capsys.readouterr().out
    assert "already complete" in again and str(out) in again
    # The check needs no JAX: a fresh process answers before importing it.
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; from train.__main__ import main; rc = main(sys.argv[1:]); "
            "print('jax' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "already complete" in proc.stdout and proc.stdout.strip().endswith("False")


def test_failed_data_load_creates_nothing_in_out(tmp_path, monkeypatch, capsys):
    """Issue 13: a failed data load left an empty measurements/ in --out."""
    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(input_pipeline, "network_available", lambda *a, **k: False)
    out = tmp_path / "run"
    status = cli_main(["fig1", "--dataset", "mnist", "--data-dir", str(tmp_path / "tfds"),
                       "--out", str(out), "--no-progress"])
    assert status == 1
    assert "no network connection" in capsys.readouterr().err
    assert not out.exists()
    assert not (tmp_path / "tfds").exists()


def test_an_empty_panel_says_why_and_summary_states_the_claim(run):
    fig = plots.srm_figure(np.linspace(0, 2 * np.pi, 8), [("untrained", np.zeros((5, 8)))],
                           expectation=1e-3, empty_note="no test sample inside any cone")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["no test sample inside any cone"]
    assert fig.axes[0].get_ylim()[1] > 1e-3  # the axis shows the isotropic expectation
    plots.plt.close(fig)
    _, summary = run
    claim = summary["claim"]
    assert claim["claim"] == "aligned" and claim["supported"] in (True, False)
    p = summary["rotation_test"]["p_value"]
    assert f"p = {p:.3g}" in claim["verdict"]
    assert claim["supported"] == (p <= 0.05)


def test_bias_init_torch_draws_pytorch_default_and_keeps_the_weights():
    import scipy.stats

    from train.models import build_model

    cfg = get_config("fig1").replace(hidden_widths=(32,), latent_dim=8, num_basis=16)
    key = jax.random.key(4)
    zero = build_model(cfg, 64, key)
    torch_like = build_model(cfg.replace(bias_init="torch"), 64, key)
    layers = [*torch_like.encoder, *torch_like.decoder]
    for a, b in zip([*zero.encoder, *zero.decoder], layers, strict=True):
        np.testing.assert_array_equal(np.asarray(a.kernel[...]), np.asarray(b.kernel[...]))
        assert not np.any(np.asarray(a.bias[...]))
        fan_in = b.kernel[...].shape[0]
        bound = 1 / np.sqrt(fan_in)
        bias = np.asarray(b.bias[...], np.float64)
        assert np.all(np.abs(bias) <= bound)
        if bias.size >= 32:  # U(-bound, bound) (Kolmogorov-Smirnov)
            assert scipy.stats.kstest(bias, "uniform", args=(-bound, 2 * bound)).pvalue > 1e-3


def test_measured_tensor_sigma_z_and_train_steps_budget(data):
    from train.models import build_model

    cfg = get_config("fig1").replace(hidden_widths=(8,), latent_dim=4, num_basis=8,
                                     measure_tensor="sigma_z")
    model = build_model(cfg, data.num_features, jax.random.key(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x = jnp.asarray(data.test_x[:10])
    _, latents = train_lib.make_evaluate(graphdef, 4, "sigma_z")(params, rest, x)
    expected = model.latent_activation(model.encode(x))
    np.testing.assert_allclose(np.asarray(latents), np.asarray(expected), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="small models"):
        get_config("fig6").replace(measure_tensor="sigma_z")
    # Budget in optimiser steps: 240 samples, batch 24 -> 10 steps an epoch.
    budget = train_lib.resolve_budget(cfg.replace(train_steps=25), 240)
    assert budget.epochs == 3
    assert train_lib.resolve_budget(cfg.replace(train_steps=20), 240).epochs == 2


def test_antipodal_planes_counted_as_zero_curves():
    from srm_jax import bases
    from train.measure import Measurer

    basis = np.asarray(bases.orthoplex_basis(jax.random.key(2), 4))
    x = np.asarray(jax.random.normal(jax.random.key(3), (200, 4)))
    drop = Measurer(basis, epsilon=0.6, num_angles=16, method="direct")
    zero = Measurer(basis, epsilon=0.6, num_angles=16, method="direct", antipodal="zero")
    a, b = drop(x), zero(x)
    assert zero.planes.shape == (28, 2) and drop.planes.shape == (24, 2)
    b_hat = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    cos = np.abs(np.sum(b_hat[zero.planes[:, 0]] * b_hat[zero.planes[:, 1]], axis=1))
    antipodal = cos > 1 - 1e-4
    assert antipodal.sum() == 4
    assert not np.any(b.values[antipodal])
    np.testing.assert_array_equal(b.values[~antipodal], a.values)
    np.testing.assert_allclose(b.values.mean(), a.values.mean() * 24 / 28, rtol=1e-6)
    np.testing.assert_allclose(b.alignment, a.alignment, rtol=1e-6)  # correlation: scale-free
