"""Seed ensembles (issue 11): vmapped training reproduces single runs seed for seed, frozen
seeds, ensemble checkpoints/resume, per-seed summaries; and the NaN guard of issue 12."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest
from flax import nnx

from train import input_pipeline
from train import train as train_lib
from train.configs import get_config

EPOCHS = 3


@pytest.fixture(scope="module")
def data():
    return input_pipeline.subsample(input_pipeline.load_dataset("digits"), 192, 48)


@pytest.fixture(scope="module")
def config():
    return get_config("fig1").replace(
        dataset="digits", latent_dim=3, num_basis=6, hidden_widths=(6,), epochs=EPOCHS,
        measure_every=1, num_angles=16, epsilon=0.6, epsilon_sweep=(0.6,), srm_method="direct",
        num_rotations=9,
    )


def leaves(model):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory, config, data):
    workdir = tmp_path_factory.mktemp("ensemble")
    summary = train_lib.train_and_evaluate(config, workdir, seeds=[0, 5], dataset=data,
                                           progress=False)
    return workdir, summary


def test_ensemble_reproduces_single_runs_seed_for_seed(ensemble, config, data, tmp_path):
    workdir, summary = ensemble
    for seed in (0, 5):
        single = tmp_path / f"single{seed}"
        single_summary = train_lib.train_and_evaluate(
            config.replace(seed=seed), single, dataset=data, progress=False)
        a, _, epoch_a = train_lib.load_run(workdir, seed=seed)
        b, _, epoch_b = train_lib.load_run(single)
        assert epoch_a == epoch_b == EPOCHS
        for x, y in zip(leaves(a), leaves(b), strict=True):
            np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)
        np.testing.assert_array_equal(np.asarray(a.latent_basis), np.asarray(b.latent_basis))
        per_seed = summary["per_seed"][[0, 5].index(seed)]
        assert per_seed["seed"] == seed
        np.testing.assert_allclose(per_seed["final_test_loss"], single_summary["final_test_loss"],
                                   rtol=1e-4)
        np.testing.assert_allclose(per_seed["train_loss_per_epoch"],
                                   single_summary["train_loss_per_epoch"], rtol=1e-4)
        # The vmapped measurement gives the single run's SRM (counts: within one sample).
        with np.load(workdir / "srm.npz") as f, np.load(single / "srm.npz") as g:
            k = [0, 5].index(seed)
            np.testing.assert_allclose(f["srm_after"][k], g["srm_after"], atol=1.5 / 48)
            np.testing.assert_array_equal(f["planes"][k], g["planes"])
        assert single_summary["rotation_test"]["num_rotations"] == 9


def test_ensemble_summary_has_aggregates_and_per_seed(ensemble):
    workdir, summary = ensemble
    saved = json.loads((workdir / "summary.json").read_text())
    assert saved["seeds"] == [0, 5] and len(saved["per_seed"]) == 2
    losses = [s["final_test_loss"] for s in saved["per_seed"]]
    assert saved["final_test_loss"] == pytest.approx(np.mean(losses))
    iv = saved["intervals"]["final_test_loss"]
    assert iv["low"] < iv["mean"] < iv["high"]
    for s in saved["per_seed"]:
        for key in ("alignment_before", "alignment_after", "srm_mean_after", "rotation_test",
                    "claim", "median_max_abs_cos"):
            assert key in s
    assert (workdir / "seeds.png").exists()
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows[-1]["test_loss"]) == 2


def test_rerun_of_a_finished_ensemble_returns_at_once(ensemble, config, data):
    workdir, _ = ensemble
    again = train_lib.train_and_evaluate(config, workdir, seeds=[0, 5], dataset=data,
                                         progress=False)
    assert again["already_complete"] is True
    with pytest.raises(train_lib.IncompatibleRunError, match="seeds"):
        train_lib.train_and_evaluate(config, workdir, seeds=[0, 6], dataset=data,
                                     progress=False)


def test_ensemble_resume_gives_identical_parameters(ensemble, config, data, tmp_path,
                                                    monkeypatch):
    workdir, _ = ensemble
    real_append = train_lib.append_metrics

    def interrupt(path, record):
        real_append(path, record)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_lib, "append_metrics", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_lib.train_and_evaluate(config, tmp_path, seeds=[0, 5], dataset=data,
                                     progress=False)
    monkeypatch.setattr(train_lib, "append_metrics", real_append)
    train_lib.train_and_evaluate(config, tmp_path, seeds=[0, 5], dataset=data, progress=False)
    for seed in (0, 5):
        a = leaves(train_lib.load_run(tmp_path, seed=seed)[0])
        b = leaves(train_lib.load_run(workdir, seed=seed)[0])
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_ensemble_epoch_freezes_a_seed_whose_parameters_turn_non_finite(config, data):
    """A seed whose parameters are NaN gives non-finite losses: the compiled epoch keeps its
    state (frozen) and reports it, while the other seed trains."""
    state, _ = train_lib.create_ensemble_state(config, data.num_features, [0, 1])
    tx = train_lib.create_optimizer(config)
    params = jax.tree.map(lambda a: a.at[1].set(np.nan) if a.ndim > 1 else a, state.params)
    keys = jax.random.split(jax.random.key(0), 2)
    alive = np.array([True, True])
    new_params, _, losses, finite = train_lib.ensemble_epoch(
        params, state.opt_state, state.rest, alive, data.train_x, keys,
        graphdef=state.graphdef, tx=tx, batch_size=24)
    assert finite.tolist() == [True, False]
    for new, old in zip(jax.tree.leaves(new_params), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(np.asarray(new[1]), np.asarray(old[1]))  # frozen
        assert not np.array_equal(np.asarray(new[0]), np.asarray(old[0]))  # trained


def test_a_frozen_seed_keeps_its_last_good_state_and_is_reported(config, data, tmp_path,
                                                                   monkeypatch):
    """Seed 5 fails in epoch 2 (emulated as ensemble_epoch reports it: losses non-finite,
    parameters kept); it must end with its epoch-1 parameters, be reported, and seed 0 must
    train on to the end exactly as alone."""
    real = train_lib.ensemble_epoch
    calls = []

    def failing_second_epoch(params, opt_state, rest, alive, x, keys, **kw):
        new_params, new_opt, losses, finite = real(params, opt_state, rest, alive, x, keys, **kw)
        calls.append(1)
        if len(calls) == 2:
            keep = np.array([True, False])

            def pick(new, old):
                return np.where(keep.reshape(-1, *([1] * (new.ndim - 1))), new, old)

            new_params = jax.tree.map(pick, new_params, params)
            new_opt = jax.tree.map(pick, new_opt, opt_state)
            losses = np.asarray(losses).copy()
            losses[1, 3] = np.nan
            finite = np.array([True, False])
        return new_params, new_opt, losses, finite

    monkeypatch.setattr(train_lib, "ensemble_epoch", failing_second_epoch)
    summary = train_lib.train_and_evaluate(config, tmp_path / "ens", seeds=[0, 5], dataset=data,
                                           progress=False)
    monkeypatch.setattr(train_lib, "ensemble_epoch", real)
    assert summary["frozen_seeds"] == [5] and "1 of 2 seeds frozen" in summary["status"]
    frozen = summary["per_seed"][1]
    assert frozen["status"].startswith("frozen at epoch 1: non-finite training loss (nan) at "
                                       "epoch 2, step 4")
    assert frozen["train_loss_per_epoch"][1:] == [None, None]
    one_epoch = train_lib.train_and_evaluate(config.replace(seed=5, epochs=1), tmp_path / "s5",
                                             dataset=data, progress=False)
    assert one_epoch["epochs_completed"] == 1
    a = leaves(train_lib.load_run(tmp_path / "ens", seed=5)[0])
    b = leaves(train_lib.load_run(tmp_path / "s5")[0])
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)
    assert summary["per_seed"][0]["status"] == "completed"
    assert summary["per_seed"][0]["epochs_completed"] == EPOCHS


def test_every_seed_failing_stops_the_ensemble_like_a_single_run(config, data, tmp_path):
    bad_x = data.train_x.copy()
    bad_x[5, 2] = np.nan
    bad = dataclasses.replace(data, train_x=bad_x)
    with pytest.raises(train_lib.NonFiniteLossError, match="last good checkpoint \\(epoch 0\\)"):
        train_lib.train_and_evaluate(config, tmp_path, seeds=[0, 1], dataset=bad,
                                     progress=False)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["status"].startswith("stopped") and len(saved["per_seed"]) == 2


def test_update_that_breaks_params_at_the_last_step_is_caught(config, data, tmp_path):
    """Issue 12: the loss is computed before each update, so an update that makes the
    parameters non-finite at the end of an epoch left every loss finite; the epoch used to be
    checkpointed as good. One batch per epoch and an overflowing learning rate do exactly that."""
    one_batch = input_pipeline.subsample(data, 24, 48)
    cfg = config.replace(learning_rate=1e38, momentum=0.0, epochs=1, num_rotations=0)
    with pytest.raises(train_lib.NonFiniteLossError) as info:
        train_lib.train_and_evaluate(cfg, tmp_path, dataset=one_batch, progress=False)
    assert "last good checkpoint (epoch 0)" in str(info.value)
    assert "non-finite" in str(info.value)
    _, _, epoch = train_lib.load_run(tmp_path)
    assert epoch == 0


def test_ensemble_of_thompson_bases_with_unequal_correction_pair_lists(data, tmp_path):
    """Overcomplete Thompson bases have seed-dependent numbers of positive-cosine pairs (fig9):
    the ensemble pads them with weight-0 pairs and every seed's model computes what it computes
    when built alone."""
    from train.models import build_model
    from train.train import seed_keys

    cfg = get_config("fig9").replace(
        dataset="digits", latent_dim=4, num_basis=16, hidden_widths=(6,), thompson_steps=200,
        epochs=1, measure_every=1, num_angles=16, epsilon_sweep=(0.6,), srm_method="direct",
        num_rotations=9,
    )
    seeds = [0, 3, 5]
    singles = [build_model(cfg, data.num_features, seed_keys(s)[0]) for s in seeds]
    lengths = {int(m.latent_activation.correction_pairs[...].shape[0]) for m in singles}
    assert len(lengths) > 1  # the case under test: pair lists of different lengths
    x = np.asarray(data.test_x[:32])
    train_lib.train_and_evaluate(cfg, tmp_path, seeds=seeds, dataset=data, progress=False)
    for seed, single in zip(seeds, singles, strict=True):
        model, _, epoch = train_lib.load_run(tmp_path, 0, seed=seed)
        assert epoch == 0
        np.testing.assert_array_equal(np.asarray(model.latent_basis),
                                      np.asarray(single.latent_basis))
        np.testing.assert_allclose(np.asarray(model(x)), np.asarray(single(x)),
                                   rtol=1e-6, atol=1e-6)
