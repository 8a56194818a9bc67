"""Training and evaluation loop for the paper's autoencoder experiments (SPEC §9; App. E, G).

* Optimiser: ``optax.sgd(0.08, momentum=0.9)`` (isotropic: no Adam, App. G), batch 24, MSE.
* One epoch is ONE compiled computation: a ``jax.lax.scan`` over the minibatches of a
  permutation of the train split (the model is split into pure ``nnx.State`` pytrees with
  ``nnx.split`` and merged back inside the loss). The permutation of epoch ``e`` comes from
  ``fold_in(shuffle_key, e)``, so a resumed run replays exactly the epochs an uninterrupted one
  would. The ragged last batch (``N mod 24`` samples) is dropped; a fresh permutation each epoch
  lets every sample take part.
* After every epoch: an orbax checkpoint (``DIR/checkpoints/<epoch>``; epoch 0 is the untrained
  model), a line of ``metrics.jsonl``, and — on the measurement schedule — SRM of the latent
  layer on the test split (``DIR/measurements/epoch_XXXX.npz``).
* A non-finite training loss stops the run before that epoch is checkpointed: the newest
  checkpoint is the last good one, and :class:`NonFiniteLossError` says where it is.
* Rerunning into the same ``DIR`` resumes from the newest checkpoint (same settings required;
  ``epochs`` may grow) and ends with bit-identical parameters to an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from tqdm.auto import tqdm

from srm_jax import bases as srm_bases
from train import input_pipeline, plots
from train.configs import Config
from train.measure import Measurer, json_float
from train.models import build_model, mse

# Settings that may differ between an interrupted run and the run that resumes it.
RESUMABLE_CHANGES = ("epochs", "measure_every", "data_dir", "description", "checkpoints_to_keep")
NAN_MESSAGE = "non-finite training loss"


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/Inf loss; the run stopped and kept its last good checkpoint."""


class IncompatibleRunError(ValueError):
    """The output directory holds a run with different settings."""


@dataclasses.dataclass
class TrainState:
    """The pure state of a run: ``nnx.split`` pieces plus the optax state."""

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
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = create_optimizer(config).init(params)
    return TrainState(graphdef, params, rest, opt_state), model


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


def _chunked(fn, x, chunk: int):
    """``fn`` mapped over ``chunk``-row blocks of ``x`` (zero-padded), results concatenated."""
    n = x.shape[0]
    chunk = max(1, min(chunk, n))
    blocks = -(-n // chunk)
    padded = jnp.pad(x, ((0, blocks * chunk - n), (0, 0)))
    out = jax.lax.map(fn, padded.reshape(blocks, chunk, x.shape[1]))
    return jax.tree.map(lambda a: a.reshape(blocks * chunk, *a.shape[2:])[:n], out)


@functools.partial(jax.jit, static_argnames=("graphdef", "chunk"))
def evaluate(params, rest, x, *, graphdef, chunk: int):
    """``(mse, latents)`` of the whole split ``x``, in ``chunk``-sample blocks."""
    model = nnx.merge(graphdef, params, rest)

    def block(xb):
        return jnp.sum(jnp.square(model(xb) - xb), axis=1), model.encode(xb)

    sq_err, latents = _chunked(block, x, chunk)
    return jnp.sum(sq_err) / x.size, latents


def make_evaluate(graphdef, chunk: int):
    """``evaluate(params, rest, x) -> (mse, latents)`` bound to a model."""
    return functools.partial(evaluate, graphdef=graphdef, chunk=chunk)


def measured_epochs(config: Config) -> list[int]:
    """The SRM schedule: before training (0), every ``measure_every`` epochs, and the last."""
    every = range(0, config.epochs + 1, config.measure_every)
    return sorted({0, config.epochs, *every})


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_manager(workdir: Path, config: Config) -> ocp.CheckpointManager:
    """Synchronous orbax manager keeping the newest ``checkpoints_to_keep`` epochs."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.checkpoints_to_keep,
        enable_async_checkpointing=False,
        create=True,
    )
    return ocp.CheckpointManager((workdir / "checkpoints").absolute(), options=options)


def _fixed_leaves(rest) -> dict:
    """The non-empty non-trainable leaves (privileged bases, correction pairs) by position.

    They are rebuilt from the seed on every start; checkpoints keep a copy to verify that the
    rebuilt bases are the ones the parameters were trained with (orbax cannot store the empty
    pair lists of exact bases, hence "non-empty").
    """
    return {str(i): leaf for i, leaf in enumerate(jax.tree.leaves(rest)) if leaf.size > 0}


def _state_tree(state: TrainState) -> dict:
    return {
        "params": state.params,
        "opt_state": state.opt_state,
        "fixed": _fixed_leaves(state.rest),
    }


def save_checkpoint(mngr, epoch: int, state: TrainState, history: list[dict]) -> None:
    """Save epoch ``epoch``: parameters, optimiser state, bases, and the metrics history."""
    mngr.save(
        epoch,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(_state_tree(state)),
            meta=ocp.args.JsonSave({"epoch": epoch, "history": history}),
        ),
        force=True,
    )
    mngr.wait_until_finished()


def restore_checkpoint(mngr, epoch: int, state: TrainState) -> tuple[TrainState, list[dict]]:
    """Restore epoch ``epoch`` into the structure of ``state`` (whose bases must match)."""
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _state_tree(state))
    restored = mngr.restore(
        epoch,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
        ),
    )
    tree = restored["state"]
    current = _fixed_leaves(state.rest)
    for name, leaf in tree["fixed"].items():
        if not np.array_equal(np.asarray(leaf), np.asarray(current[name])):
            raise IncompatibleRunError(
                f"checkpoint {epoch} in {mngr.directory} was trained with other privileged "
                "bases than this seed now builds (did srm_jax.bases change?); start afresh "
                "with --overwrite."
            )
    new_state = dataclasses.replace(state, params=tree["params"], opt_state=tree["opt_state"])
    return new_state, list(restored["meta"]["history"])


def load_run(workdir: str | Path, epoch: int | None = None):
    """The trained model of the run in ``workdir`` (newest checkpoint, or ``epoch``).

    Rebuilds the model from ``config.json`` and restores its parameters and bases; returns
    ``(model, config, epoch)``. Use it to inspect a finished run (e.g. ``model.encode``,
    ``model.latent_basis``).
    """
    workdir = Path(workdir)
    saved = json.loads((workdir / "config.json").read_text())
    config = Config.from_dict(saved["config"])
    in_features = int(saved["dataset"]["num_features"])
    model_key = jax.random.split(jax.random.key(config.seed), 3)[0]
    state, _ = create_train_state(config, in_features, model_key)
    mngr = checkpoint_manager(workdir, config)
    try:
        epoch = mngr.latest_step() if epoch is None else epoch
        if epoch is None:
            raise FileNotFoundError(f"no checkpoint in {workdir / 'checkpoints'}.")
        state, _ = restore_checkpoint(mngr, epoch, state)
    finally:
        mngr.close()
    return nnx.merge(state.graphdef, state.params, state.rest), config, epoch


# ----------------------------------------------------------------------------- outputs


def _json_clean(x):
    """Make ``x`` strict-JSON: NaN/Inf become ``None``, NumPy scalars Python numbers."""
    if isinstance(x, dict):
        return {str(k): _json_clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_clean(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return json_float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def write_json(path: Path, data) -> None:
    """Write strict JSON (no NaN tokens)."""
    path.write_text(json.dumps(_json_clean(data), indent=2, allow_nan=False) + "\n")


def write_metrics(path: Path, history: list[dict]) -> None:
    """(Re)write ``metrics.jsonl`` from the history: one JSON object per line."""
    with path.open("w") as f:
        for record in history:
            f.write(json.dumps(_json_clean(record), allow_nan=False) + "\n")


def append_metrics(path: Path, record: dict) -> None:
    """Append one record to ``metrics.jsonl``."""
    with path.open("a") as f:
        f.write(json.dumps(_json_clean(record), allow_nan=False) + "\n")


def _check_compatible(path: Path, config: Config) -> None:
    saved = json.loads(path.read_text())["config"]
    current = config.to_dict()
    diff = [k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k]]
    if diff:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in diff)
        raise IncompatibleRunError(
            f"{path.parent} holds a run with different settings ({details}); use another --out, "
            "or --overwrite to start afresh."
        )


# ----------------------------------------------------------------------------- the run


class _Measurements:
    """SRM measurements of a run: the latent basis and, for Fig. 2, random and standard bases."""

    def __init__(self, config: Config, latent_basis, key: jax.Array):
        plane_key, random_key = jax.random.split(key)
        common = dict(
            epsilon=config.epsilon,
            planes=config.planes,
            num_angles=config.num_angles,
            max_planes=config.max_planes,
            key=plane_key,
            method=config.srm_method,
        )
        self.bases = {"privileged": Measurer(latent_basis, **common)}
        if config.compare_bases:
            m, n = config.num_basis, config.latent_dim
            self.bases["random"] = Measurer(srm_bases.random_basis(random_key, m, n), **common)
            self.bases["standard"] = Measurer(srm_bases.standard_basis(n), **common)
        # The same planes of the latent basis at other spotlight sizes (a diagnostic).
        self.sweep_epsilon = np.asarray(config.epsilon_sweep, np.float64)
        self.sweep = [
            Measurer(latent_basis, **{**common, "epsilon": float(e)}) for e in self.sweep_epsilon
        ]

    def measure(self, latents) -> dict:
        results = {name: measurer(latents) for name, measurer in self.bases.items()}
        sweep = [measurer(latents) for measurer in self.sweep]
        return results, sweep

    def save(self, path: Path, epoch: int, measured) -> None:
        results, sweep = measured
        arrays = {"epoch": np.asarray(epoch)}
        for name, r in results.items():
            arrays[f"{name}_values"] = r.values.astype(np.float32)
            arrays[f"{name}_alignment"] = np.asarray(r.alignment, np.float64)
            arrays[f"{name}_num_samples"] = np.asarray(r.num_samples)
        arrays["sweep_epsilon"] = self.sweep_epsilon
        arrays["sweep_alignment"] = np.asarray([r.alignment for r in sweep], np.float64)
        arrays["sweep_srm_mean"] = np.asarray([r.values.mean() for r in sweep], np.float64)
        np.savez_compressed(path, **arrays)


def _measurement_path(workdir: Path, epoch: int) -> Path:
    return workdir / "measurements" / f"epoch_{epoch:04d}.npz"


def train_and_evaluate(
    config: Config,
    workdir: str | Path,
    *,
    dataset: input_pipeline.Dataset | None = None,
    progress: bool = True,
) -> dict:
    """Train (or resume) the run ``config`` describes in ``workdir`` and write its outputs.

    Writes ``config.json``, ``metrics.jsonl``, ``srm.npz``, ``summary.json`` and ``srm.png``
    (and ``bases.png`` when ``config.compare_bases``) into ``workdir``. Returns the summary.

    Args:
      config: the run's settings.
      workdir: output directory (created; an existing run there is resumed).
      dataset: data to use instead of loading ``config.dataset`` (tests inject data this way).
      progress: show a tqdm progress bar over epochs.

    Raises:
      NonFiniteLossError: a training loss was NaN/Inf (the message names the epoch and step and
        the checkpoint kept).
      IncompatibleRunError: ``workdir`` holds a run with other settings.
    """
    start_time = time.time()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "measurements").mkdir(exist_ok=True)
    config_path = workdir / "config.json"
    if config_path.exists():
        _check_compatible(config_path, config)

    data = dataset or input_pipeline.load_dataset(config.dataset, data_dir=config.data_dir)
    data = input_pipeline.subsample(data, config.num_train, config.num_test)
    if data.train_x.shape[0] < config.batch_size:
        raise ValueError(
            f"the train split has {data.train_x.shape[0]} samples, fewer than one batch "
            f"({config.batch_size})."
        )
    write_json(config_path, {"config": config.to_dict(), "dataset": data.describe()})

    root = jax.random.key(config.seed)
    model_key, shuffle_key, measure_key = jax.random.split(root, 3)
    state, model = create_train_state(config, data.num_features, model_key)
    latent_basis = np.asarray(model.latent_basis)
    tx = create_optimizer(config)
    run_epoch = make_train_epoch(state.graphdef, tx, config.batch_size)
    run_evaluate = make_evaluate(state.graphdef, config.eval_chunk)
    measurements = _Measurements(config, latent_basis, measure_key)
    schedule = set(measured_epochs(config))
    train_x, test_x = jnp.asarray(data.train_x), jnp.asarray(data.test_x)

    def evaluate_and_measure(epoch: int, record: dict, force: bool = False) -> None:
        test_loss, latents = run_evaluate(state.params, state.rest, test_x)
        record["test_loss"] = float(test_loss)
        if force or epoch in schedule:
            measured = measurements.measure(latents)
            measurements.save(_measurement_path(workdir, epoch), epoch, measured)
            results = measured[0]
            record["alignment"] = results["privileged"].alignment
            record["srm_mean"] = float(results["privileged"].values.mean())
            for name, r in results.items():
                if name != "privileged":
                    record[f"alignment_{name}"] = r.alignment

    mngr = checkpoint_manager(workdir, config)
    metrics_path = workdir / "metrics.jsonl"
    latest = mngr.latest_step()
    if latest is None:
        history = []
        record = {"epoch": 0, "train_loss": None}
        evaluate_and_measure(0, record)
        history.append(record)
        save_checkpoint(mngr, 0, state, history)
        start_epoch = 0
    else:
        state, history = restore_checkpoint(mngr, latest, state)
        history = [r for r in history if r["epoch"] <= latest]
        start_epoch = latest
    write_metrics(metrics_path, history)

    bar = tqdm(
        total=config.epochs,
        initial=min(start_epoch, config.epochs),
        desc=f"{config.preset} on {data.name}",
        unit="epoch",
        disable=not progress,
        dynamic_ncols=True,
    )
    status = "completed"
    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            tick = time.time()
            key = jax.random.fold_in(shuffle_key, epoch)
            params, opt_state, losses = run_epoch(
                state.params, state.opt_state, state.rest, train_x, key
            )
            losses = np.asarray(losses)
            if not np.all(np.isfinite(losses)):
                step = int(np.flatnonzero(~np.isfinite(losses))[0])
                status = f"stopped: {NAN_MESSAGE} at epoch {epoch}"
                raise NonFiniteLossError(
                    f"{NAN_MESSAGE} ({losses[step]}) at epoch {epoch}, step {step + 1} of "
                    f"{len(losses)}: training stopped. The last good checkpoint (epoch "
                    f"{epoch - 1}) is kept in {workdir / 'checkpoints'}. Check the data for "
                    "NaN/Inf values, or lower the learning rate."
                )
            state = dataclasses.replace(state, params=params, opt_state=opt_state)
            record = {
                "epoch": epoch,
                "train_loss": float(losses.mean()),
                "train_loss_last": float(losses[-1]),
            }
            evaluate_and_measure(epoch, record)
            record["epoch_time_s"] = round(time.time() - tick, 3)
            history.append(record)
            save_checkpoint(mngr, epoch, state, history)
            append_metrics(metrics_path, record)
            postfix = {"train": f"{record['train_loss']:.4f}", "test": f"{record['test_loss']:.4f}"}
            if "alignment" in record:
                postfix["align"] = plots.fmt_alignment(record["alignment"])
            bar.set_postfix(postfix)
            bar.update(1)
    finally:
        bar.close()
        mngr.close()
        if status != "completed":
            write_json(workdir / "summary.json", _summary(config, data, history, status, {}))

    final_epoch = max(start_epoch, config.epochs)
    if not _measurement_path(workdir, final_epoch).exists():  # e.g. resumed a finished run
        evaluate_and_measure(final_epoch, {"epoch": final_epoch}, force=True)
    return finalise(config, data, workdir, history, measurements, final_epoch, start_time)


def _load_measurements(workdir: Path, epochs: list[int]) -> dict[int, dict]:
    out = {}
    for epoch in epochs:
        path = _measurement_path(workdir, epoch)
        if path.exists():
            with np.load(path) as f:
                out[epoch] = {k: f[k] for k in f.files}
    return out


def _summary(config, data, history, status, extra) -> dict:
    train_losses = [r.get("train_loss") for r in history if r["epoch"] > 0]
    test_losses = [r.get("test_loss") for r in history]
    alignment = {str(r["epoch"]): r.get("alignment") for r in history if "alignment" in r}
    summary = {
        "preset": config.preset,
        "dataset": data.name,
        "status": status,
        "epochs": config.epochs,
        "epochs_completed": history[-1]["epoch"] if history else 0,
        "initial_test_loss": test_losses[0] if test_losses else None,
        "final_train_loss": train_losses[-1] if train_losses else None,
        "final_test_loss": test_losses[-1] if test_losses else None,
        "train_loss_per_epoch": train_losses,
        "test_loss_per_epoch": test_losses,
        "alignment_per_measurement": alignment,
        "alignment_definition": (
            "Pearson correlation over theta between the mean SRM curve and the mean self-SRM "
            "curve (srm_jax.alignment_score); +1 in phase (aligned), -1 in anti-phase "
            "(anti-aligned), null when either curve is flat (undefined)."
        ),
    }
    summary.update(extra)
    return summary


def finalise(config, data, workdir: Path, history, measurements, final_epoch, start_time) -> dict:
    """Collect the measurements into ``srm.npz``, ``summary.json`` and the PNG figure(s)."""
    epochs = [e for e in measured_epochs(config.replace(epochs=final_epoch))]
    loaded = _load_measurements(workdir, epochs)
    epochs = sorted(loaded)
    priv = measurements.bases["privileged"]
    arrays = {
        "angles": priv.angles,
        "planes": priv.planes,
        "epsilon": np.asarray(config.epsilon),
        "basis": priv.basis,
        "self_srm": priv.self_values,
        "measured_epochs": np.asarray(epochs, np.int32),
    }
    extra: dict[str, Any] = {
        "basis": {"kind": config.basis_kind, "m": config.num_basis, "n": config.latent_dim},
        "num_planes": int(len(priv.planes)),
        "num_test_samples": int(data.test_x.shape[0]),
        "epsilon": config.epsilon,
        "planes": config.planes,
    }
    for name, measurer in measurements.bases.items():
        prefix = "" if name == "privileged" else f"{name}_"
        stack = np.stack([loaded[e][f"{name}_values"] for e in epochs])
        align = np.asarray([float(loaded[e][f"{name}_alignment"]) for e in epochs])
        arrays[f"{prefix}srm_during"] = stack
        arrays[f"{prefix}srm_before"] = stack[0]
        arrays[f"{prefix}srm_after"] = stack[-1]
        arrays[f"{prefix}alignment"] = align
        if name != "privileged":
            arrays[f"{prefix}basis"] = measurer.basis
            arrays[f"{prefix}planes"] = measurer.planes
            arrays[f"{prefix}self_srm"] = measurer.self_values
        extra[f"{prefix}alignment_before"] = json_float(align[0])
        extra[f"{prefix}alignment_after"] = json_float(align[-1])
        extra[f"{prefix}srm_mean_before"] = float(stack[0].mean())
        extra[f"{prefix}srm_mean_after"] = float(stack[-1].mean())
        extra[f"{prefix}self_srm_mean"] = float(measurer.self_values.mean())
    if len(measurements.sweep_epsilon):
        first, last = loaded[epochs[0]], loaded[epochs[-1]]
        arrays["sweep_epsilon"] = measurements.sweep_epsilon
        arrays["sweep_alignment_before"] = first["sweep_alignment"]
        arrays["sweep_alignment_after"] = last["sweep_alignment"]
        extra["epsilon_sweep"] = {
            "epsilon": measurements.sweep_epsilon.tolist(),
            "alignment_before": [json_float(a) for a in first["sweep_alignment"]],
            "alignment_after": [json_float(a) for a in last["sweep_alignment"]],
            "srm_mean_before": first["sweep_srm_mean"].tolist(),
            "srm_mean_after": last["sweep_srm_mean"].tolist(),
        }
    np.savez_compressed(workdir / "srm.npz", **arrays)

    title = (
        f"{config.preset} ({config.size} {config.activation}, n={config.latent_dim}, "
        f"m={config.num_basis} {config.basis_kind}, eps={config.epsilon}) on {data.name}, "
        f"epoch {epochs[-1]}"
    )
    plots.save_srm_figure(
        workdir / "srm.png",
        priv.angles,
        [
            (f"untrained (align {plots.fmt_alignment(arrays['alignment'][0])})",
             arrays["srm_before"]),
            ("self-SRM", priv.self_values),
            (f"trained (align {plots.fmt_alignment(arrays['alignment'][-1])})",
             arrays["srm_after"]),
        ],
        suptitle=title,
    )
    figures = ["srm.png"]
    if config.compare_bases:
        plots.save_srm_figure(
            workdir / "bases.png",
            priv.angles,
            [
                (f"random basis (align {plots.fmt_alignment(arrays['random_alignment'][-1])})",
                 arrays["random_srm_after"]),
                (f"standard basis (align "
                 f"{plots.fmt_alignment(arrays['standard_alignment'][-1])})",
                 arrays["standard_srm_after"]),
                (f"privileged basis (align {plots.fmt_alignment(arrays['alignment'][-1])})",
                 arrays["srm_after"]),
            ],
            suptitle=f"trained {config.preset} model on {data.name}: SRM on three bases",
        )
        figures.append("bases.png")
    extra["figures"] = figures
    extra["wall_time_s"] = round(time.time() - start_time, 2)
    summary = _summary(config, data, history, "completed", extra)
    write_json(workdir / "summary.json", summary)
    return summary


__all__ = [
    "NAN_MESSAGE",
    "IncompatibleRunError",
    "NonFiniteLossError",
    "TrainState",
    "create_optimizer",
    "create_train_state",
    "make_evaluate",
    "load_run",
    "make_train_epoch",
    "measured_epochs",
    "train_and_evaluate",
]
