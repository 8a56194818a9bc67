"""Training and evaluation loop for the paper's autoencoder experiments (SPEC §9; App. E, G).

* Optimiser: ``optax.sgd(0.08, momentum=0.9)`` (isotropic: no Adam, App. G), batch 24, MSE.
* One epoch is ONE compiled computation: a ``jax.lax.scan`` over the minibatches of a
  permutation of the train split (the model is split into pure ``nnx.State`` pytrees with
  ``nnx.split`` and merged back inside the loss). The permutation of epoch ``e`` comes from
  ``fold_in(shuffle_key, e)``, so a resumed run replays exactly the epochs an uninterrupted one
  would. The ragged last batch (``N mod 24`` samples) is dropped; a fresh permutation each epoch
  lets every sample take part.
* **Seed ensembles**: a run trains one model per seed (``seeds``; a single run is the ensemble
  of its one seed). Parameters, optimiser states and bases are stacked along a leading seed
  axis and the epoch is ``jax.vmap``-ed over it: K models train in one compiled computation.
  Seed ``s`` draws its weights, bases, data order and measurement keys from ``key(s)`` exactly
  as a run of that seed alone, so it reproduces the single run (up to float32 rounding of the
  batched matrix products).
* After every epoch: an orbax checkpoint (``DIR/checkpoints/<epoch>``; epoch 0 is the untrained
  model), a line of ``metrics.jsonl``, and — on the measurement schedule — SRM of the latent
  layer (``DIR/measurements/epoch_XXXX.npz``), vmapped over the seeds.
* A seed whose training loss, parameters or test loss turn non-finite in an epoch keeps its
  state from before that epoch (frozen, reported in ``summary.json``); the others go on. A
  single run (or an ensemble whose every seed is frozen) stops instead: the newest checkpoint is
  the last good one, and :class:`NonFiniteLossError` says where it is.
* Rerunning into the same ``DIR`` resumes from the newest checkpoint (same settings required;
  ``epochs`` may grow) and ends with bit-identical parameters to an uninterrupted run; rerunning
  a finished run returns its summary at once.

This module holds the state, the steps and the loop, as in the Flax examples; the rest of a run
lives next to it: :mod:`train.checkpoints` (save, restore, :func:`load_run`, the compatibility
of a resumed run), :mod:`train.run_files` (``config.json``, ``metrics.jsonl``, measurement
files), :mod:`train.measure` (the SRM measurements and their schedule) and :mod:`train.summary`
(``summary.json``: the aggregation over seeds, the claims and their verdicts).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from train import input_pipeline, plots
from train.checkpoints import (
    IncompatibleRunError,
    check_compatible,
    checkpoint_manager,
    load_run,
    restore_checkpoint,
    save_checkpoint,
)
from train.configs import Config
from train.finished import finished_summary
from train.guard import NAN_MESSAGE, NonFiniteLossError, all_finite, keep_where, nonfinite_reason
from train.measure import RunMeasurements, measured_epochs
from train.models import build_model, equalise_correction_pairs, mse
from train.run_files import (
    append_metrics,
    measurement_path,
    output_history,
    output_record,
    write_json,
    write_metrics,
)
from train.summary import finalise, mean_interval, stopped_summary


@dataclasses.dataclass
class TrainState:
    """The pure state of a run: ``nnx.split`` pieces plus the optax state.

    In an ensemble every leaf of ``params``, ``rest`` and ``opt_state`` has a leading seed axis.
    """

    graphdef: Any
    params: Any  # nnx.State of nnx.Param
    rest: Any  # nnx.State of everything else (the privileged bases)
    opt_state: Any


@functools.cache
def _sgd(learning_rate: float, momentum: float) -> optax.GradientTransformation:
    return optax.sgd(learning_rate, momentum=momentum)


def create_optimizer(config: Config) -> optax.GradientTransformation:
    """Minibatch SGD with momentum (paper App. E/G: learning rate 0.08, momentum 0.9).

    Cached per setting, so the compiled epoch (which takes the optimiser as a static argument)
    is reused across runs in one process.
    """
    return _sgd(float(config.learning_rate), float(config.momentum))


def create_train_state(config: Config, in_features: int, key: jax.Array):
    """A fresh model and optimiser state; returns ``(state, model)``."""
    model = build_model(config, in_features, key)
    return _state_of(config, model), model


def _state_of(config: Config, model) -> TrainState:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = create_optimizer(config).init(params)
    return TrainState(graphdef, params, rest, opt_state)


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(model_key, shuffle_key, measure_key)``: one ``split`` of ``key(seed)`` into three."""
    model_key, shuffle_key, measure_key = jax.random.split(jax.random.key(int(seed)), 3)
    return model_key, shuffle_key, measure_key


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def create_ensemble_state(config: Config, in_features: int, seeds: Sequence[int]):
    """The stacked :class:`TrainState` of one model per seed, and their latent bases ``(K, m, n)``.

    Each seed's model is built from :func:`seed_keys` exactly as a single run of that seed
    (where the seeds' generalised tanhs store positive-cosine pair lists of different lengths,
    the shorter ones are padded with pairs of weight 0:
    :func:`train.models.equalise_correction_pairs`).
    """
    models = [build_model(config, in_features, seed_keys(seed)[0]) for seed in seeds]
    equalise_correction_pairs(models)
    states = [_state_of(config, model) for model in models]
    latent_bases = [np.asarray(model.latent_basis) for model in models]
    stacked = TrainState(
        states[0].graphdef,
        _stack([s.params for s in states]),
        _stack([s.rest for s in states]),
        _stack([s.opt_state for s in states]),
    )
    return stacked, np.stack(latent_bases)


def make_loss_fn(graphdef):
    """``loss(params, rest, x)``: MSE of the reconstruction of the batch ``x``."""

    def loss_fn(params, rest, x):
        model = nnx.merge(graphdef, params, rest)
        return mse(model(x), x)

    return loss_fn


@functools.partial(jax.jit, static_argnames=("graphdef", "tx", "batch_size"))
def train_epoch(params, opt_state, rest, x, key, *, graphdef, tx, batch_size: int):
    """One epoch as ONE compiled computation; returns ``(params, opt_state, losses)``.

    Permute the ``N`` samples with ``key``, drop the last ``N mod batch_size``, and
    ``lax.scan`` SGD steps over the ``N // batch_size`` minibatches; ``losses`` holds every
    step's minibatch MSE. Pure: the model enters as ``nnx.split`` state and is merged inside.
    """
    loss_fn = make_loss_fn(graphdef)
    num_batches = x.shape[0] // batch_size
    order = jax.random.permutation(key, x.shape[0])
    order = order[: num_batches * batch_size].reshape(num_batches, batch_size)

    def step(carry, idx):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, rest, jnp.take(x, idx, axis=0))
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), order)
    return params, opt_state, losses


def make_train_epoch(graphdef, tx: optax.GradientTransformation, batch_size: int):
    """``epoch(params, opt_state, rest, x, key)``: :func:`train_epoch` bound to a model."""
    return functools.partial(train_epoch, graphdef=graphdef, tx=tx, batch_size=batch_size)


@functools.partial(jax.jit, static_argnames=("graphdef", "tx", "batch_size"))
def ensemble_epoch(params, opt_state, rest, alive, x, keys, *, graphdef, tx, batch_size: int):
    """One epoch of K models at once: :func:`train_epoch` vmapped over the seed axis.

    ``keys`` ``(K,)`` are the seeds' epoch keys and ``alive`` ``(K,)`` which seeds still train.
    A seed that is not alive, or whose losses or new parameters are not all finite, keeps its
    parameters and optimiser state (frozen). Returns ``(params, opt_state, losses (K, S),
    finite (K,))``; ``finite`` says whether the epoch's losses and parameters were finite.
    """
    epoch = functools.partial(train_epoch, graphdef=graphdef, tx=tx, batch_size=batch_size)
    new_params, new_opt, losses = jax.vmap(epoch, in_axes=(0, 0, 0, None, 0))(
        params, opt_state, rest, x, keys
    )
    finite = jnp.all(jnp.isfinite(losses), axis=1) & all_finite(new_params)
    keep = alive & finite
    new_params, new_opt = keep_where(keep, new_params, params), keep_where(keep, new_opt, opt_state)
    return new_params, new_opt, losses, finite


def _chunked(fn, x, chunk: int):
    """``fn`` mapped over ``chunk``-row blocks of ``x`` (zero-padded), results concatenated."""
    n = x.shape[0]
    chunk = max(1, min(chunk, n))
    blocks = -(-n // chunk)
    padded = jnp.pad(x, ((0, blocks * chunk - n), (0, 0)))
    out = jax.lax.map(fn, padded.reshape(blocks, chunk, x.shape[1]))
    return jax.tree.map(lambda a: a.reshape(blocks * chunk, *a.shape[2:])[:n], out)


@functools.partial(jax.jit, static_argnames=("graphdef", "chunk", "tensor"))
def evaluate(params, rest, x, *, graphdef, chunk: int, tensor: str = "z"):
    """``(mse, latents)`` of the whole split ``x``, in ``chunk``-sample blocks.

    ``latents`` is the measured tensor (:meth:`train.models.Autoencoder.measured`: ``z`` or
    σ_z(z)).
    """
    model = nnx.merge(graphdef, params, rest)

    def block(xb):
        return jnp.sum(jnp.square(model(xb) - xb), axis=1), model.measured(xb, tensor)

    sq_err, latents = _chunked(block, x, chunk)
    return jnp.sum(sq_err) / x.size, latents


def make_evaluate(graphdef, chunk: int, tensor: str = "z"):
    """``evaluate(params, rest, x) -> (mse, latents)`` bound to a model."""
    return functools.partial(evaluate, graphdef=graphdef, chunk=chunk, tensor=tensor)


@functools.partial(jax.jit, static_argnames=("graphdef", "chunk", "tensor"))
def ensemble_evaluate(params, rest, x, *, graphdef, chunk: int, tensor: str = "z"):
    """:func:`evaluate` vmapped over the seed axis: ``(mse (K,), latents (K, N, n))``."""
    fn = functools.partial(evaluate, graphdef=graphdef, chunk=chunk, tensor=tensor)
    return jax.vmap(fn, in_axes=(0, 0, None))(params, rest, x)


def steps_per_epoch(config: Config, num_train: int) -> int:
    """Optimiser steps in one epoch: ``num_train // batch_size`` (the ragged batch is dropped)."""
    return num_train // config.batch_size


def resolve_budget(config: Config, num_train: int) -> Config:
    """``config`` with ``epochs = ceil(train_steps / steps_per_epoch)`` (if ``train_steps``)."""
    if config.train_steps is None:
        return config
    per_epoch = steps_per_epoch(config, num_train)
    return config.replace(epochs=max(1, math.ceil(config.train_steps / per_epoch)))


def _say(log: Callable[[str], None] | None, message: str) -> None:
    if log is not None:
        log(message)


def train_and_evaluate(
    config: Config,
    workdir: str | Path,
    *,
    seeds: Sequence[int] | None = None,
    dataset: input_pipeline.Dataset | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Train (or resume) the run ``config`` describes in ``workdir`` and write its outputs.

    Writes ``config.json``, ``metrics.jsonl``, ``srm.npz``, ``summary.json`` and ``srm.png``
    (and ``bases.png`` when ``config.compare_bases``) into ``workdir``. Returns the summary.
    Nothing is written before the data are loaded. A finished run of the same settings in
    ``workdir`` is returned at once (its summary, with ``"already_complete": True``).

    Args:
      config: the run's settings.
      workdir: output directory (created; an existing run there is resumed).
      seeds: train one model per seed, vmapped (an ensemble run: every output gets a seed
        axis and ``summary.json`` a ``per_seed`` list). ``None``: a single run of
        ``config.seed``.
      dataset: data to use instead of loading ``config.dataset`` (tests inject data this way).
      progress: show a tqdm progress bar over epochs.
      log: called with a one-line message at each stage (loading data, compiling, measuring).

    Raises:
      NonFiniteLossError: a training loss, the parameters or the test loss became NaN/Inf
        (every seed's, in an ensemble; the message names the epoch and the checkpoint kept).
      IncompatibleRunError: ``workdir`` holds a run with other settings.
    """
    start_time = time.time()
    workdir = Path(workdir)
    ensemble = seeds is not None
    seed_list = [int(s) for s in seeds] if ensemble else [int(config.seed)]
    if ensemble and (not seed_list or len(set(seed_list)) != len(seed_list)):
        raise ValueError(f"seeds must be distinct and non-empty, got {seed_list}.")
    if ensemble:
        config = config.replace(seed=seed_list[0])
    done = finished_summary(workdir, config, seed_list if ensemble else None)
    if done is not None:
        return {**done, "already_complete": True}

    _say(log, f"loading data set {config.dataset} ...")
    data = dataset or input_pipeline.load_dataset(config.dataset, data_dir=config.data_dir)
    data = input_pipeline.subsample(data, config.num_train, config.num_test)
    if data.train_x.shape[0] < config.batch_size:
        raise ValueError(
            f"the train split has {data.train_x.shape[0]} samples, fewer than one batch "
            f"({config.batch_size})."
        )
    config = resolve_budget(config, data.train_x.shape[0])
    config_path = workdir / "config.json"
    if config_path.exists():
        check_compatible(config_path, config, seed_list if ensemble else None)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "measurements").mkdir(exist_ok=True)
    saved_config = {"config": config.to_dict(), "dataset": data.describe()}
    if ensemble:
        saved_config["seeds"] = seed_list
    write_json(config_path, saved_config)

    num = len(seed_list)
    _say(log, f"building {num} model{'s' if num > 1 else ''} and measuring the untrained "
              f"model{'s' if num > 1 else ''} (first call compiles) ...")
    state, latent_bases = create_ensemble_state(config, data.num_features, seed_list)
    keys = [seed_keys(s) for s in seed_list]
    shuffle_keys = jnp.stack([k[1] for k in keys])
    measure_keys = jnp.stack([k[2] for k in keys])
    tx = create_optimizer(config)
    run_epoch = functools.partial(ensemble_epoch, graphdef=state.graphdef, tx=tx,
                                  batch_size=config.batch_size)
    run_evaluate = functools.partial(ensemble_evaluate, graphdef=state.graphdef,
                                     chunk=config.eval_chunk, tensor=config.measure_tensor)
    measurements = RunMeasurements(config, latent_bases, measure_keys)
    schedule = set(measured_epochs(config))
    train_x, test_x = jnp.asarray(data.train_x), jnp.asarray(data.test_x)
    measure_x = train_x if config.measure_split == "train" else test_x
    per_epoch = steps_per_epoch(config, data.train_x.shape[0])

    def evaluate_and_measure(state: TrainState, epoch: int, record: dict,
                             force: bool = False) -> np.ndarray:
        test_loss, latents = run_evaluate(state.params, state.rest, test_x)
        if measure_x is not test_x:
            latents = run_evaluate(state.params, state.rest, measure_x)[1]
        test_loss = np.asarray(test_loss, np.float64)
        record["test_loss"] = test_loss.tolist()
        if force or epoch in schedule:
            measured = measurements.measure(latents)
            measurements.save(measurement_path(workdir, epoch), epoch, measured)
            results = measured[0]
            record["alignment"] = np.asarray(results["privileged"].alignment).tolist()
            record["srm_mean"] = results["privileged"].values.mean(axis=(1, 2)).tolist()
            for name, r in results.items():
                if name != "privileged":
                    record[f"alignment_{name}"] = np.asarray(r.alignment).tolist()
        return test_loss

    mngr = checkpoint_manager(workdir, config)
    metrics_path = workdir / "metrics.jsonl"
    latest = mngr.latest_step()
    seeds_state = {"alive": [True] * num, "stopped": [None] * num}
    if latest is None:
        history = []
        record = {"epoch": 0, "train_loss": [None] * num}
        evaluate_and_measure(state, 0, record)
        history.append(record)
        save_checkpoint(mngr, 0, state, history, seeds_state)
        start_epoch = 0
    else:
        state, history, restored_seeds = restore_checkpoint(mngr, latest, state)
        seeds_state.update(restored_seeds)
        history = [r for r in history if r["epoch"] <= latest]
        start_epoch = latest
    write_metrics(metrics_path, output_history(history, ensemble))

    _say(log, f"training {num} model{'s' if num > 1 else ''} for {config.epochs} epochs of "
              f"{per_epoch} steps (the first epoch compiles) ...")
    bar = tqdm(
        total=config.epochs,
        initial=min(start_epoch, config.epochs),
        desc=f"{config.preset} on {data.name}" + (f", {num} seeds" if ensemble else ""),
        unit="epoch",
        disable=not progress,
        dynamic_ncols=True,
    )
    status = "completed"
    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            tick = time.time()
            alive = np.asarray(seeds_state["alive"], bool)
            epoch_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(shuffle_keys, epoch)
            params, opt_state, losses, finite = run_epoch(
                state.params, state.opt_state, state.rest, jnp.asarray(alive), train_x,
                epoch_keys,
            )
            losses, finite = np.asarray(losses), np.asarray(finite)
            new_state = dataclasses.replace(state, params=params, opt_state=opt_state)
            record = {
                "epoch": epoch,
                "train_loss": [float(losses[k].mean()) if alive[k] else None
                               for k in range(num)],
                "train_loss_last": [float(losses[k, -1]) if alive[k] else None
                                    for k in range(num)],
            }
            test_loss = evaluate_and_measure(new_state, epoch, record)
            bad = alive & ~(finite & np.isfinite(test_loss))
            if bad.any():
                reasons = {k: nonfinite_reason(losses[k], finite[k], test_loss[k], epoch)
                           for k in np.flatnonzero(bad)}
                if bad.sum() == alive.sum():  # every live seed failed: stop the run
                    k = int(np.flatnonzero(bad)[0])
                    status = f"stopped: {reasons[k][0]} at epoch {epoch}"
                    raise NonFiniteLossError(
                        f"{reasons[k][1]}: training stopped. The last good checkpoint (epoch "
                        f"{epoch - 1}) is kept in {workdir / 'checkpoints'}. Check the data for "
                        "NaN/Inf values, or lower the learning rate."
                    )
                # Freeze the failed seeds at their state before this epoch and re-measure.
                keep = jnp.asarray(~bad)
                new_state = dataclasses.replace(
                    state,
                    params=keep_where(keep, new_state.params, state.params),
                    opt_state=keep_where(keep, new_state.opt_state, state.opt_state),
                )
                for k, (_, message) in reasons.items():
                    seeds_state["alive"][k] = False
                    seeds_state["stopped"][k] = {"epoch": epoch, "reason": message}
                    record["train_loss"][k] = record["train_loss_last"][k] = None
                evaluate_and_measure(new_state, epoch, record)
                tqdm.write(f"seeds {[seed_list[k] for k in reasons]} frozen at epoch "
                           f"{epoch - 1}: {'; '.join(m for _, m in reasons.values())}")
            state = new_state
            record["epoch_time_s"] = round(time.time() - tick, 3)
            history.append(record)
            save_checkpoint(mngr, epoch, state, history, seeds_state)
            append_metrics(metrics_path, output_record(record, ensemble))
            live = [v for v in record["train_loss"] if v is not None]
            postfix = {"train": f"{np.mean(live):.4f}",
                       "test": f"{np.nanmean(record['test_loss']):.4f}"}
            if "alignment" in record:
                defined = [a for a in record["alignment"] if a is not None and np.isfinite(a)]
                postfix["align"] = plots.fmt_alignment(np.mean(defined) if defined else None)
            bar.set_postfix(postfix)
            bar.update(1)
    finally:
        bar.close()
        mngr.close()
        if status != "completed":
            write_json(workdir / "summary.json", stopped_summary(
                config, data, history, status, seed_list, ensemble))

    final_epoch = max(start_epoch, config.epochs)
    _say(log, "measuring the trained model" + ("s" if num > 1 else "")
         + (f" (rotation test, {config.num_rotations} rotations)" if config.num_rotations
            else "") + " and writing figures ...")
    final_latents = run_evaluate(state.params, state.rest, measure_x)[1]
    if not measurement_path(workdir, final_epoch).exists():  # e.g. resumed a finished run
        evaluate_and_measure(state, final_epoch, {"epoch": final_epoch}, force=True)
    return finalise(config, data, workdir, history, measurements, final_epoch, start_time,
                    final_latents=final_latents, seeds=seed_list, seeds_state=seeds_state,
                    ensemble=ensemble, steps_per_epoch=per_epoch)


__all__ = [
    "NAN_MESSAGE",
    "IncompatibleRunError",
    "NonFiniteLossError",
    "TrainState",
    "create_ensemble_state",
    "create_optimizer",
    "create_train_state",
    "ensemble_epoch",
    "ensemble_evaluate",
    "finished_summary",
    "load_run",
    "make_evaluate",
    "make_train_epoch",
    "mean_interval",
    "measured_epochs",
    "seed_keys",
    "train_and_evaluate",
]
