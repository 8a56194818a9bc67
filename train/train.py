"""Training and evaluation loop for the paper's autoencoder experiments (math §9; App. E, G).

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

This module holds the steps and the loop, as in the Flax examples: :func:`train_and_evaluate`
runs the stages (load the data, create the run, start or resume, train the epochs, finish). The
rest of a run lives next to it: :mod:`train.state` (the :class:`TrainState` of one model or of
a seed ensemble), :mod:`train.checkpoints` (save, restore, :func:`load_run`, the compatibility
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

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
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
from train.configs import Config, check_srm_method
from train.finished import finished_summary
from train.guard import NAN_MESSAGE, NonFiniteLossError, all_finite, keep_where, nonfinite_reason
from train.measure import RunMeasurements, measured_epochs
from train.models import mse
from train.run_files import (
    append_metrics,
    measurement_path,
    output_history,
    output_record,
    write_json,
    write_metrics,
)
from train.state import (
    TrainState,
    create_ensemble_state,
    create_optimizer,
    create_train_state,
    seed_keys,
)
from train.summary import RunOutcome, finalise, mean_interval, stopped_summary


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


def _plural(num: int) -> str:
    return "s" if num > 1 else ""


def resolve_seeds(config: Config, seeds: Sequence[int] | None) -> tuple[Config, list[int]]:
    """The run's seeds (``[config.seed]`` for a single run) and its config, whose ``seed`` is
    then the first of them. Raises ``ValueError`` for an empty or repeating ``seeds``."""
    if seeds is None:
        return config, [int(config.seed)]
    seed_list = [int(s) for s in seeds]
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds must be distinct and non-empty, got {seed_list}.")
    return config.replace(seed=seed_list[0]), seed_list


def load_data(
    config: Config,
    dataset: input_pipeline.Dataset | None,
    log: Callable[[str], None] | None = None,
) -> input_pipeline.Dataset:
    """``dataset`` (or ``config.dataset``, loaded) subsampled as ``config`` says.

    Raises ``ValueError`` when the train split holds fewer samples than one batch.
    """
    _say(log, f"loading data set {config.dataset} ...")
    data = dataset or input_pipeline.load_dataset(config.dataset, data_dir=config.data_dir)
    data = input_pipeline.subsample(data, config.num_train, config.num_test)
    if data.train_x.shape[0] < config.batch_size:
        raise ValueError(
            f"the train split has {data.train_x.shape[0]} samples, fewer than one batch "
            f"({config.batch_size})."
        )
    return data


def check_resumable(workdir: Path, config: Config, seeds: list[int] | None) -> None:
    """Raise :class:`IncompatibleRunError` when ``workdir`` holds a run of other settings."""
    config_path = workdir / "config.json"
    if config_path.exists():
        check_compatible(config_path, config, seeds)


def write_run_config(workdir: Path, config: Config, data: input_pipeline.Dataset,
                     seeds: list[int] | None) -> None:
    """Create ``workdir`` and write its ``config.json`` (settings, data set and, for an
    ensemble, ``seeds``)."""
    config_path = workdir / "config.json"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "measurements").mkdir(exist_ok=True)
    saved_config = {"config": config.to_dict(), "dataset": data.describe()}
    if seeds is not None:
        saved_config["seeds"] = seeds
    write_json(config_path, saved_config)


@dataclasses.dataclass(frozen=True)
class Run:
    """What every stage of a run reads: its settings, data, compiled steps and measurements.

    ``epoch_fn`` is :func:`ensemble_epoch` and ``evaluate_fn`` :func:`ensemble_evaluate`, bound
    to the run's model; ``measure_x`` is the split SRM is measured on (``train_x`` or
    ``test_x``); ``schedule`` the measured epochs (:func:`train.measure.measured_epochs`).
    """

    config: Config
    workdir: Path
    data: input_pipeline.Dataset
    seeds: list[int]
    ensemble: bool
    epoch_fn: Callable
    evaluate_fn: Callable
    train_x: jax.Array
    test_x: jax.Array
    measure_x: jax.Array
    shuffle_keys: jax.Array
    measurements: RunMeasurements
    schedule: frozenset[int]
    steps_per_epoch: int

    @property
    def num_seeds(self) -> int:
        """``K``, the number of models trained at once."""
        return len(self.seeds)


def create_run(config: Config, workdir: Path, data: input_pipeline.Dataset, seeds: list[int],
               ensemble: bool) -> tuple[Run, TrainState]:
    """The :class:`Run` of these settings and the fresh stacked state of its seeds' models."""
    state, latent_bases = create_ensemble_state(config, data.num_features, seeds)
    keys = [seed_keys(s) for s in seeds]
    train_x, test_x = jnp.asarray(data.train_x), jnp.asarray(data.test_x)
    run = Run(
        config=config,
        workdir=workdir,
        data=data,
        seeds=seeds,
        ensemble=ensemble,
        epoch_fn=functools.partial(ensemble_epoch, graphdef=state.graphdef,
                                   tx=create_optimizer(config), batch_size=config.batch_size),
        evaluate_fn=functools.partial(ensemble_evaluate, graphdef=state.graphdef,
                                      chunk=config.eval_chunk, tensor=config.measure_tensor),
        train_x=train_x,
        test_x=test_x,
        measure_x=train_x if config.measure_split == "train" else test_x,
        shuffle_keys=jnp.stack([k[1] for k in keys]),
        measurements=RunMeasurements(config, latent_bases, jnp.stack([k[2] for k in keys])),
        schedule=frozenset(measured_epochs(config)),
        steps_per_epoch=steps_per_epoch(config, data.train_x.shape[0]),
    )
    return run, state


def evaluate_and_measure(run: Run, state: TrainState, epoch: int, record: dict,
                         force: bool = False) -> np.ndarray:
    """The test loss of every seed ``(K,)``, put into ``record``; on the schedule (or with
    ``force``) also the SRM measurement, saved to ``measurements/`` and summarised in
    ``record`` (alignment, mean SRM)."""
    test_loss, latents = run.evaluate_fn(state.params, state.rest, run.test_x)
    if run.measure_x is not run.test_x:
        latents = run.evaluate_fn(state.params, state.rest, run.measure_x)[1]
    test_loss = np.asarray(test_loss, np.float64)
    record["test_loss"] = test_loss.tolist()
    if force or epoch in run.schedule:
        measured = run.measurements.measure(latents)
        run.measurements.save(measurement_path(run.workdir, epoch), epoch, measured)
        results = measured[0]
        record["alignment"] = np.asarray(results["privileged"].alignment).tolist()
        record["srm_mean"] = results["privileged"].values.mean(axis=(1, 2)).tolist()
        for name, r in results.items():
            if name != "privileged":
                record[f"alignment_{name}"] = np.asarray(r.alignment).tolist()
    return test_loss


def start_or_resume(
    run: Run, mngr: ocp.CheckpointManager, state: TrainState
) -> tuple[TrainState, list[dict], dict, int]:
    """Measure and checkpoint the untrained models (epoch 0), or restore the newest checkpoint.

    Rewrites ``metrics.jsonl`` from the history. Returns ``(state, history, seeds_state,
    start_epoch)``; ``seeds_state`` says which seeds are alive and where the frozen ones stopped.
    """
    latest = mngr.latest_step()
    seeds_state = {"alive": [True] * run.num_seeds, "stopped": [None] * run.num_seeds}
    if latest is None:
        record = {"epoch": 0, "train_loss": [None] * run.num_seeds}
        evaluate_and_measure(run, state, 0, record)
        history = [record]
        save_checkpoint(mngr, 0, state, history, seeds_state)
        start_epoch = 0
    else:
        state, history, restored_seeds = restore_checkpoint(mngr, latest, state)
        seeds_state.update(restored_seeds)
        history = [r for r in history if r["epoch"] <= latest]
        start_epoch = latest
    write_metrics(run.workdir / "metrics.jsonl", output_history(history, run.ensemble))
    return state, history, seeds_state, start_epoch


def freeze_seeds(run: Run, before: TrainState, after: TrainState, bad: np.ndarray,
                 reasons: dict, seeds_state: dict, record: dict) -> TrainState:
    """``after`` with the ``bad`` seeds set back to ``before`` (frozen), marked in
    ``seeds_state`` and ``record``; the epoch is evaluated and measured again."""
    epoch = record["epoch"]
    keep = jnp.asarray(~bad)
    frozen = dataclasses.replace(
        before,
        params=keep_where(keep, after.params, before.params),
        opt_state=keep_where(keep, after.opt_state, before.opt_state),
    )
    for k, (_, message) in reasons.items():
        seeds_state["alive"][k] = False
        seeds_state["stopped"][k] = {"epoch": epoch, "reason": message}
        record["train_loss"][k] = record["train_loss_last"][k] = None
    evaluate_and_measure(run, frozen, epoch, record)
    tqdm.write(f"seeds {[run.seeds[k] for k in reasons]} frozen at epoch "
               f"{epoch - 1}: {'; '.join(m for _, m in reasons.values())}")
    return frozen


def _stop_error(run: Run, reasons: dict, epoch: int) -> NonFiniteLossError:
    """The error that stops a run whose every live seed went non-finite in ``epoch``."""
    short, message = reasons[next(iter(reasons))]
    return NonFiniteLossError(
        f"{message}: training stopped. The last good checkpoint (epoch {epoch - 1}) is kept in "
        f"{run.workdir / 'checkpoints'}. Check the data for NaN/Inf values, or lower the "
        "learning rate.",
        status=f"stopped: {short} at epoch {epoch}",
    )


def train_one_epoch(run: Run, state: TrainState, seeds_state: dict,
                    epoch: int) -> tuple[TrainState, dict]:
    """Epoch ``epoch`` of every live seed, evaluated and (on the schedule) measured.

    Returns ``(state, record)``, ``record`` the epoch's line of ``metrics.jsonl``. Seeds whose
    epoch went non-finite are frozen (:func:`freeze_seeds`); when every live seed did, raises
    :class:`NonFiniteLossError`.
    """
    tick = time.time()
    alive = np.asarray(seeds_state["alive"], bool)
    epoch_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(run.shuffle_keys, epoch)
    params, opt_state, losses, finite = run.epoch_fn(
        state.params, state.opt_state, state.rest, jnp.asarray(alive), run.train_x, epoch_keys
    )
    losses, finite = np.asarray(losses), np.asarray(finite)
    new_state = dataclasses.replace(state, params=params, opt_state=opt_state)
    seeds = range(run.num_seeds)
    record = {
        "epoch": epoch,
        "train_loss": [float(losses[k].mean()) if alive[k] else None for k in seeds],
        "train_loss_last": [float(losses[k, -1]) if alive[k] else None for k in seeds],
    }
    test_loss = evaluate_and_measure(run, new_state, epoch, record)
    bad = alive & ~(finite & np.isfinite(test_loss))
    if bad.any():
        reasons = {k: nonfinite_reason(losses[k], finite[k], test_loss[k], epoch)
                   for k in np.flatnonzero(bad)}
        if bad.sum() == alive.sum():
            raise _stop_error(run, reasons, epoch)
        new_state = freeze_seeds(run, state, new_state, bad, reasons, seeds_state, record)
    record["epoch_time_s"] = round(time.time() - tick, 3)
    return new_state, record


def _postfix(record: dict) -> dict[str, str]:
    """The progress bar's losses (and alignment) of an epoch's record."""
    live = [v for v in record["train_loss"] if v is not None]
    postfix = {"train": f"{np.mean(live):.4f}", "test": f"{np.nanmean(record['test_loss']):.4f}"}
    if "alignment" in record:
        defined = [a for a in record["alignment"] if a is not None and np.isfinite(a)]
        postfix["align"] = plots.fmt_alignment(np.mean(defined) if defined else None)
    return postfix


def train_epochs(run: Run, mngr: ocp.CheckpointManager, state: TrainState, history: list[dict],
                 seeds_state: dict, start_epoch: int, *, progress: bool = True) -> TrainState:
    """Epochs ``start_epoch + 1 … epochs``, each checkpointed and appended to ``history`` and
    ``metrics.jsonl``; returns the final state and closes ``mngr``.

    A run that stops (:class:`NonFiniteLossError`) writes its ``summary.json`` first.
    """
    config = run.config
    bar = tqdm(
        total=config.epochs,
        initial=min(start_epoch, config.epochs),
        desc=f"{config.preset} on {run.data.name}"
        + (f", {run.num_seeds} seeds" if run.ensemble else ""),
        unit="epoch",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            state, record = train_one_epoch(run, state, seeds_state, epoch)
            history.append(record)
            save_checkpoint(mngr, epoch, state, history, seeds_state)
            append_metrics(run.workdir / "metrics.jsonl", output_record(record, run.ensemble))
            bar.set_postfix(_postfix(record))
            bar.update(1)
    except NonFiniteLossError as err:
        write_json(run.workdir / "summary.json", stopped_summary(
            config, run.data, history, err.status, run.seeds, run.ensemble))
        raise
    finally:
        bar.close()
        mngr.close()
    return state


def finish(run: Run, state: TrainState, history: list[dict], seeds_state: dict,
           final_epoch: int, start_time: float) -> dict:
    """Measure the trained models once more where needed and write the run's ``srm.npz``,
    ``summary.json`` and figures (:func:`train.summary.finalise`); returns the summary."""
    final_latents = run.evaluate_fn(state.params, state.rest, run.measure_x)[1]
    if not measurement_path(run.workdir, final_epoch).exists():  # e.g. resumed a finished run
        evaluate_and_measure(run, state, final_epoch, {"epoch": final_epoch}, force=True)
    return finalise(RunOutcome(
        config=run.config,
        data=run.data,
        workdir=run.workdir,
        history=history,
        measurements=run.measurements,
        final_epoch=final_epoch,
        final_latents=final_latents,
        seeds=run.seeds,
        seeds_state=seeds_state,
        ensemble=run.ensemble,
        steps_per_epoch=run.steps_per_epoch,
        start_time=start_time,
    ))


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
    config, seed_list = resolve_seeds(config, seeds)
    check_srm_method(config)
    saved_seeds = seed_list if ensemble else None
    done = finished_summary(workdir, config, saved_seeds)
    if done is not None:
        return {**done, "already_complete": True}
    data = load_data(config, dataset, log)
    config = resolve_budget(config, data.train_x.shape[0])
    check_resumable(workdir, config, saved_seeds)

    s = _plural(len(seed_list))
    _say(log, f"building {len(seed_list)} model{s} and measuring the untrained model{s} "
              "(first call compiles) ...")
    run, state = create_run(config, workdir, data, seed_list, ensemble)
    write_run_config(workdir, config, data, saved_seeds)
    mngr = checkpoint_manager(workdir, config)
    state, history, seeds_state, start_epoch = start_or_resume(run, mngr, state)
    _say(log, f"training {len(seed_list)} model{s} for {config.epochs} epochs of "
              f"{run.steps_per_epoch} steps (the first epoch compiles) ...")
    state = train_epochs(run, mngr, state, history, seeds_state, start_epoch, progress=progress)

    _say(log, f"measuring the trained model{s}"
         + (f" (rotation test, {config.num_rotations} rotations)" if config.num_rotations
            else "") + " and writing figures ...")
    final_epoch = max(start_epoch, config.epochs)
    return finish(run, state, history, seeds_state, final_epoch, start_time)


__all__ = [
    "NAN_MESSAGE",
    "IncompatibleRunError",
    "NonFiniteLossError",
    "Run",
    "TrainState",
    "create_ensemble_state",
    "create_optimizer",
    "create_run",
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
