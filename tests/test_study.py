"""`python -m train.study` (issue 11): variants × seeds with the paired isotropic control, at toy
size (digits, 2 seeds, 2 epochs), checked against the per-run summaries it is built from."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import scipy.stats
from flax import nnx

from train import study
from train import train as train_lib
from train.configs import get_config

TOY = ["--dataset", "digits", "--epochs", "2", "--seeds", "2", "--no-progress",
       "--set", "latent_dim=3", "--set", "num_basis=6", "--set", "hidden_widths=6",
       "--set", "num_train=120", "--set", "num_test=40", "--set", "num_angles=16",
       "--set", "srm_method=direct", "--set", "epsilon=0.6", "--set", "epsilon_sweep=0.5,0.6",
       "--set", "checkpoints_to_keep=3"]


@pytest.fixture(scope="module")
def toy_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    assert study.main(["fig1", *TOY, "--out", str(out)]) == 0
    return out, json.loads((out / "study.json").read_text())


def test_study_writes_its_files_and_pairs_the_control(toy_study):
    out, result = toy_study
    for name in ("study.json", "study.md", "study.png"):
        assert (out / name).exists(), name
    assert result["seeds"] == [0, 1] and [v["name"] for v in result["variants"]] == ["base"]
    model_cfg = json.loads((out / "base" / "model" / "config.json").read_text())
    control_cfg = json.loads((out / "base" / "control" / "config.json").read_text())
    assert model_cfg["seeds"] == control_cfg["seeds"] == [0, 1]
    assert model_cfg["config"]["activation"] == "generalised_tanh"
    assert control_cfg["config"]["activation"] == "isotropic_tanh"
    diff = {k for k in model_cfg["config"] if model_cfg["config"][k] != control_cfg["config"][k]}
    assert diff == {"activation"}
    # Same seeds: the same initial weights and the same (reference) latent basis.
    for seed in (0, 1):
        a, _, _ = train_lib.load_run(out / "base" / "model", 0, seed=seed)
        b, _, _ = train_lib.load_run(out / "base" / "control", 0, seed=seed)
        # (GeneralisedTanh stores unit rows: equal up to the rounding of that normalisation)
        np.testing.assert_allclose(np.asarray(a.latent_basis), np.asarray(b.latent_basis),
                                   rtol=1e-6, atol=1e-7)
        for x, y in zip(jax.tree.leaves(nnx.state(a, nnx.Param)),
                        jax.tree.leaves(nnx.state(b, nnx.Param)), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    text = (out / "study.md").read_text()
    assert "| base | model |" in text and "| base | control |" in text


def test_study_statistics_match_the_per_seed_summaries(toy_study):
    out, result = toy_study
    entry = result["variants"][0]
    for arm in study.ARMS:
        per_seed = json.loads((out / "base" / arm / "summary.json").read_text())["per_seed"]
        losses = np.array([s["final_test_loss"] for s in per_seed])
        half = scipy.stats.t.ppf(0.975, 1) * losses.std(ddof=1) / np.sqrt(2)
        stat = entry[arm]["final_test_loss"]
        np.testing.assert_allclose([stat["mean"], stat["low"], stat["high"]],
                                   [losses.mean(), losses.mean() - half, losses.mean() + half])
        p = [s["rotation_test"]["p_value"] for s in per_seed]
        assert all(s["rotation_test"]["num_rotations"] >= 99 for s in per_seed)
        assert all(s["rotation_test"]["statistic"] == "projection" for s in per_seed)
        expected = np.mean([v is not None and v <= 0.05 for v in p])
        assert entry[arm]["rotation_test"]["fraction_significant"] == expected
        assert len(entry[arm]["epsilon_sweep"]["alignment_after"]) == 2
    model = json.loads((out / "base" / "model" / "summary.json").read_text())["per_seed"]
    control = json.loads((out / "base" / "control" / "summary.json").read_text())["per_seed"]
    d = [a["srm_mean_after"] - b["srm_mean_after"] for a, b in zip(model, control, strict=True)]
    np.testing.assert_allclose(entry["paired_difference"]["srm_mean_after"]["mean"], np.mean(d))


def test_rerunning_a_study_reuses_its_runs(toy_study):
    import time

    out, result = toy_study
    start = time.time()
    assert study.main(["fig1", *TOY, "--out", str(out)]) == 0
    assert time.time() - start < 15
    again = json.loads((out / "study.json").read_text())
    assert again["variants"] == result["variants"]


def test_vary_axes_parse_the_open_choices():
    axes = study.parse_vary(["hidden_widths=none;128;256,128;512", "bias_init=zero,torch"])
    grid = study.variants(get_config("fig1"), axes)
    assert len(grid) == 8
    widths = sorted({cfg.hidden_widths for _, _, cfg in grid})
    assert widths == [(), (128,), (256, 128), (512,)]
    assert {cfg.bias_init for _, _, cfg in grid} == {"zero", "torch"}
    assert len({name for name, _, _ in grid}) == 8
    for choice in ("train_steps=2000", "measure_tensor=z,sigma_z", "measure_split=test,train",
                   "antipodal_planes=drop,zero"):
        assert len(study.variants(get_config("fig1"), study.parse_vary([choice]))) >= 1
    with pytest.raises(ValueError, match="unknown setting"):
        study.parse_vary(["widths=1,2"])
