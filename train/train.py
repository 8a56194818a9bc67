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
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import scipy.stats
from flax import nnx
from tqdm.auto import tqdm

from srm_jax import bases as srm_bases
from srm_jax import significance
from train import input_pipeline, plots
from train.configs import Config
from train.finished import finished_summary
from train.measure import Measurer, json_float
from train.models import build_model, equalise_correction_pairs, mse

# Settings that may differ between an interrupted run and the run that resumes it.
RESUMABLE_CHANGES = ("epochs", "measure_every", "data_dir", "description", "checkpoints_to_keep")
NAN_MESSAGE = "non-finite training loss"
SIGNIFICANCE_LEVEL = 0.05
CLAIM_ALTERNATIVE = {"aligned": "greater", "anti-aligned": "less", "none": "two-sided"}
CLAIM_TEXT = {
    "aligned": "the trained latents align with the privileged basis of their activation",
    "anti-aligned": "the trained latents anti-align with the privileged basis (they avoid it)",
    "none": "the latents show no alignment with the reference basis (no activation uses it)",
}


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/Inf loss; the run stopped and kept its last good checkpoint."""


class IncompatibleRunError(ValueError):
    """The output directory holds a run with different settings."""


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


def _all_finite(tree) -> jax.Array:
    """Per seed (leading axis): every entry of every leaf is finite."""
    leaves = [jnp.all(jnp.isfinite(leaf.reshape(leaf.shape[0], -1)), axis=1)
              for leaf in jax.tree.leaves(tree)]
    return functools.reduce(jnp.logical_and, leaves)


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
    finite = jnp.all(jnp.isfinite(losses), axis=1) & _all_finite(new_params)
    keep = alive & finite

    def select(new, old):
        return jnp.where(keep.reshape(-1, *([1] * (new.ndim - 1))), new, old)

    return (
        jax.tree.map(select, new_params, params),
        jax.tree.map(select, new_opt, opt_state),
        losses,
        finite,
    )


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


def measured_epochs(config: Config) -> list[int]:
    """The SRM schedule: before training (0), every ``measure_every`` epochs, and the last."""
    every = range(0, config.epochs + 1, config.measure_every)
    return sorted({0, config.epochs, *every})


def steps_per_epoch(config: Config, num_train: int) -> int:
    """Optimiser steps in one epoch: ``num_train // batch_size`` (the ragged batch is dropped)."""
    return num_train // config.batch_size


def resolve_budget(config: Config, num_train: int) -> Config:
    """``config`` with ``epochs = ceil(train_steps / steps_per_epoch)`` (if ``train_steps``)."""
    if config.train_steps is None:
        return config
    per_epoch = steps_per_epoch(config, num_train)
    return config.replace(epochs=max(1, math.ceil(config.train_steps / per_epoch)))


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


def save_checkpoint(mngr, epoch: int, state: TrainState, history: list[dict],
                    seeds_state: dict | None = None) -> None:
    """Save epoch ``epoch``: parameters, optimiser states, bases, the metrics history and the
    seeds' status (``seeds_state``: which are alive, where the frozen ones stopped)."""
    mngr.save(
        epoch,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(_state_tree(state)),
            meta=ocp.args.JsonSave(
                {"epoch": epoch, "history": _json_clean(history), "seeds": seeds_state or {}}
            ),
        ),
        force=True,
    )
    mngr.wait_until_finished()


def restore_checkpoint(mngr, epoch: int, state: TrainState):
    """Restore epoch ``epoch`` into the structure of ``state`` (whose bases must match).

    Returns ``(state, history, seeds_state)``.
    """
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
    meta = restored["meta"]
    return new_state, list(meta["history"]), dict(meta.get("seeds", {}))


def _saved_run(workdir: Path) -> tuple[Config, dict]:
    saved = json.loads((workdir / "config.json").read_text())
    return Config.from_dict(saved["config"]), saved


def load_run(workdir: str | Path, epoch: int | None = None, *, seed: int | None = None):
    """The trained model of the run in ``workdir`` (newest checkpoint, or ``epoch``).

    Rebuilds the model from ``config.json`` and restores its parameters and bases; returns
    ``(model, config, epoch)``. For an ensemble run, ``seed`` picks the model (default: the
    first seed); the returned config carries that seed. Use it to inspect a finished run (e.g.
    ``model.encode``, ``model.latent_basis``).
    """
    workdir = Path(workdir)
    config, saved = _saved_run(workdir)
    seeds = [int(s) for s in saved.get("seeds", [config.seed])]
    seed = seeds[0] if seed is None else int(seed)
    if seed not in seeds:
        raise ValueError(f"seed {seed} is not in the run's seeds {seeds}.")
    in_features = int(saved["dataset"]["num_features"])
    state, _ = create_ensemble_state(config, in_features, seeds)
    mngr = checkpoint_manager(workdir, config)
    try:
        epoch = mngr.latest_step() if epoch is None else epoch
        if epoch is None:
            raise FileNotFoundError(f"no checkpoint in {workdir / 'checkpoints'}.")
        state, _, _ = restore_checkpoint(mngr, epoch, state)
    finally:
        mngr.close()
    k = seeds.index(seed)
    pick = functools.partial(jax.tree.map, lambda a: a[k])
    model = nnx.merge(state.graphdef, pick(state.params), pick(state.rest))
    return model, config.replace(seed=seed), epoch


# ----------------------------------------------------------------------------- outputs


def _json_clean(x):
    """Make ``x`` strict-JSON: NaN/Inf become ``None``, NumPy scalars Python numbers."""
    if isinstance(x, dict):
        return {str(k): _json_clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _json_clean(x.tolist())
    if isinstance(x, (float, np.floating)):
        return json_float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
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


def _config_diff(saved: dict, current: dict, ignore: Sequence[str] = ()) -> list[str]:
    skip = set(RESUMABLE_CHANGES) | set(ignore)
    return [k for k in current if k not in skip and saved.get(k) != current[k]]


def _check_compatible(path: Path, config: Config, seeds: list[int] | None) -> None:
    saved_all = json.loads(path.read_text())
    saved = saved_all["config"]
    current = config.to_dict()
    ignore = ("seed",) if seeds is not None else ()
    diff = _config_diff(saved, current, ignore)
    details = [f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in diff]
    saved_seeds = saved_all.get("seeds")
    if seeds is not None and saved_seeds != seeds:
        details.append(f"seeds: {saved_seeds!r} -> {seeds!r}")
    if seeds is None and saved_seeds is not None and saved_seeds != [config.seed]:
        details.append(f"seeds: {saved_seeds!r} -> single seed {config.seed}")
    if details:
        raise IncompatibleRunError(
            f"{path.parent} holds a run with different settings ({', '.join(details)}); use "
            "another --out, or --overwrite to start afresh."
        )


# ----------------------------------------------------------------------------- the run


class _Measurements:
    """SRM measurements of a run, vmapped over its seeds: the latent bases and, for Fig. 2,
    random and standard bases, plus the ε sweep."""

    def __init__(self, config: Config, latent_bases: np.ndarray, measure_keys: jax.Array):
        split = jax.vmap(jax.random.split)(measure_keys)  # (K, 2)
        plane_keys, random_keys = split[:, 0], split[:, 1]
        self.test_keys = jax.vmap(lambda k: jax.random.fold_in(k, 7))(measure_keys)
        self.cosine_key = jax.random.fold_in(jax.random.key(0), 11)
        common = dict(
            epsilon=config.epsilon,
            planes=config.planes,
            num_angles=config.num_angles,
            max_planes=config.max_planes,
            key=plane_keys if config.max_planes is not None else None,
            method=config.srm_method,
            antipodal=config.antipodal_planes,
        )
        self.bases = {"privileged": Measurer(latent_bases, **common)}
        if config.compare_bases:
            m, n = config.num_basis, config.latent_dim
            random = np.stack([np.asarray(srm_bases.random_basis(k, m, n)) for k in random_keys])
            standard = np.broadcast_to(np.asarray(srm_bases.standard_basis(n)),
                                       (len(latent_bases), 2 * n, n))
            self.bases["random"] = Measurer(random, **common)
            self.bases["standard"] = Measurer(standard, **common)
        # The same planes of the latent basis at other spotlight sizes (a diagnostic).
        self.sweep_epsilon = np.asarray(config.epsilon_sweep, np.float64)
        self.sweep = [
            Measurer(latent_bases, **{**common, "epsilon": float(e)}) for e in self.sweep_epsilon
        ]

    def measure(self, latents):
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
        # (K, E): seeds first.
        arrays["sweep_alignment"] = np.asarray([r.alignment for r in sweep], np.float64).T
        arrays["sweep_srm_mean"] = np.asarray(
            [r.values.mean(axis=(1, 2)) for r in sweep], np.float64
        ).T
        np.savez_compressed(path, **arrays)


def _measurement_path(workdir: Path, epoch: int) -> Path:
    return workdir / "measurements" / f"epoch_{epoch:04d}.npz"


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
        _check_compatible(config_path, config, seed_list if ensemble else None)
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
    measurements = _Measurements(config, latent_bases, measure_keys)
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
            measurements.save(_measurement_path(workdir, epoch), epoch, measured)
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
    write_metrics(metrics_path, _output_history(history, ensemble))

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
                reasons = {k: _nonfinite_reason(losses[k], finite[k], test_loss[k], epoch)
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

                def select(new, old, keep=keep):
                    return jnp.where(keep.reshape(-1, *([1] * (new.ndim - 1))), new, old)

                new_state = dataclasses.replace(
                    state,
                    params=jax.tree.map(select, new_state.params, state.params),
                    opt_state=jax.tree.map(select, new_state.opt_state, state.opt_state),
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
            append_metrics(metrics_path, _output_record(record, ensemble))
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
            write_json(workdir / "summary.json", _stopped_summary(
                config, data, history, status, seed_list, ensemble))

    final_epoch = max(start_epoch, config.epochs)
    _say(log, "measuring the trained model" + ("s" if num > 1 else "")
         + (f" (rotation test, {config.num_rotations} rotations)" if config.num_rotations
            else "") + " and writing figures ...")
    final_latents = run_evaluate(state.params, state.rest, measure_x)[1]
    if not _measurement_path(workdir, final_epoch).exists():  # e.g. resumed a finished run
        evaluate_and_measure(state, final_epoch, {"epoch": final_epoch}, force=True)
    return finalise(config, data, workdir, history, measurements, final_epoch, start_time,
                    final_latents=final_latents, seeds=seed_list, seeds_state=seeds_state,
                    ensemble=ensemble, steps_per_epoch=per_epoch)


def _nonfinite_reason(losses: np.ndarray, finite: bool, test_loss: float,
                      epoch: int) -> tuple[str, str]:
    """``(short, message)`` naming what went non-finite in a seed's epoch."""
    bad_steps = np.flatnonzero(~np.isfinite(losses))
    if bad_steps.size:
        step = int(bad_steps[0])
        return NAN_MESSAGE, (f"{NAN_MESSAGE} ({losses[step]}) at epoch {epoch}, step "
                             f"{step + 1} of {len(losses)}")
    if not finite:
        return "non-finite parameters", (
            f"non-finite parameters after the last step of epoch {epoch} (every training "
            "loss of the epoch was finite)")
    return "non-finite test loss", f"non-finite test loss ({test_loss}) after epoch {epoch}"


def _squeeze(value):
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _output_record(record: dict, ensemble: bool) -> dict:
    """A history record as ``metrics.jsonl`` holds it: per-seed lists, or scalars (single run)."""
    if ensemble:
        return record
    return {k: _squeeze(v) if k != "epoch" else v for k, v in record.items()}


def _output_history(history: list[dict], ensemble: bool) -> list[dict]:
    return [_output_record(r, ensemble) for r in history]


def _load_measurements(workdir: Path, epochs: list[int]) -> dict[int, dict]:
    out = {}
    for epoch in epochs:
        path = _measurement_path(workdir, epoch)
        if path.exists():
            with np.load(path) as f:
                out[epoch] = {k: f[k] for k in f.files}
    return out


def _seed_history(history: list[dict], k: int) -> list[dict]:
    return [{key: (v[k] if isinstance(v, list) else v) for key, v in r.items()} for r in history]


def _base_summary(config, data, history, status) -> dict:
    """The loss and schedule fields of one seed's summary (``history`` of scalars)."""
    train_losses = [r.get("train_loss") for r in history if r["epoch"] > 0]
    test_losses = [r.get("test_loss") for r in history]
    alignment = {str(r["epoch"]): r.get("alignment") for r in history if "alignment" in r}
    return {
        "preset": config.preset,
        "dataset": data.name,
        "status": status,
        "epochs": config.epochs,
        "epochs_completed": history[-1]["epoch"] if history else 0,
        "initial_test_loss": test_losses[0] if test_losses else None,
        "final_train_loss": next((v for v in reversed(train_losses) if v is not None), None),
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


def _stopped_summary(config, data, history, status, seeds, ensemble) -> dict:
    per_seed = [{"seed": s, **_base_summary(config, data, _seed_history(history, k), status)}
                for k, s in enumerate(seeds)]
    if not ensemble:
        return per_seed[0]
    return {**_aggregate(per_seed), "preset": config.preset, "dataset": data.name,
            "status": status, "seeds": seeds, "per_seed": per_seed}


def mean_interval(values, level: float = 0.95) -> dict:
    """Mean over seeds with a Student-t ``level`` interval (``None`` entries left out).

    Returns ``{"mean", "low", "high", "n"}``; the interval is ``None`` for fewer than 2 values.
    """
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    if x.size == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = float(x.mean())
    if x.size < 2:
        return {"mean": mean, "low": None, "high": None, "n": 1}
    half = float(scipy.stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(x.size)}


AGGREGATED = (
    "initial_test_loss", "final_train_loss", "final_test_loss", "alignment_before",
    "alignment_after", "srm_mean_before", "srm_mean_after", "self_srm_mean",
    "random_alignment_after", "standard_alignment_after", "random_srm_mean_after",
    "standard_srm_mean_after", "median_max_abs_cos", "isotropic_median_max_abs_cos",
)


def _aggregate(per_seed: list[dict]) -> dict:
    """Aggregate fields of an ensemble: the mean over seeds of each scalar field, and
    ``intervals``: the mean with its 95 % interval over seeds."""
    out, intervals = {}, {}
    for name in AGGREGATED:
        if any(name in s for s in per_seed):
            stats = mean_interval([s.get(name) for s in per_seed])
            out[name] = stats["mean"]
            intervals[name] = stats
    tests = [s["rotation_test"] for s in per_seed if s.get("rotation_test")]
    if tests:
        p = [t["p_value"] for t in tests]
        out["rotation_test"] = {
            "statistic": tests[0]["statistic"],
            "alternative": tests[0]["alternative"],
            "num_rotations": tests[0]["num_rotations"],
            "fraction_significant": float(np.mean([v is not None and v <= SIGNIFICANCE_LEVEL
                                                   for v in p])),
            "p_values": p,
            "score": mean_interval([t["score"] for t in tests]),
        }
    out["intervals"] = intervals
    return out


def _claim(config: Config, test: dict | None) -> dict:
    """What the preset's paper figure claims and whether a rotation test supports it."""
    alternative = CLAIM_ALTERNATIVE[config.claim]
    claim = {"claim": config.claim, "statement": CLAIM_TEXT[config.claim],
             "test": f"rotation test, statistic projection, alternative {alternative}, "
                     f"significance level {SIGNIFICANCE_LEVEL}"}
    if test is None:
        claim["supported"] = None
        claim["verdict"] = "not tested (num_rotations = 0)"
        return claim
    p = test["p_value"]
    significant = p is not None and p <= SIGNIFICANCE_LEVEL
    supported = (not significant) if config.claim == "none" else significant
    claim["supported"] = bool(supported)
    where = {"greater": "aligned", "less": "anti-aligned", "two-sided": "aligned or anti-aligned"}
    p_text = "undefined" if p is None else f"{p:.3g}"
    claim["verdict"] = (
        f"{'supports' if supported else 'does not support'} the claim: "
        + (f"{where[alternative]} beyond chance, p = {p_text}" if significant
           else f"no evidence of being {where[alternative]}, p = {p_text}")
        + f" ({test['num_rotations']} rotations)"
    )
    return claim


def finalise(config, data, workdir: Path, history, measurements, final_epoch, start_time, *,
             final_latents, seeds, seeds_state, ensemble, steps_per_epoch) -> dict:
    """Collect the measurements into ``srm.npz``, ``summary.json`` and the PNG figure(s).

    Runs the rotation test (:func:`srm_jax.alignment_test`, statistic ``"projection"``, in the
    direction of ``config.claim``) and the largest-cosine statistic on the final latents of
    every seed, vmapped.
    """
    epochs = [e for e in measured_epochs(config.replace(epochs=final_epoch))]
    loaded = _load_measurements(workdir, epochs)
    epochs = sorted(loaded)
    priv = measurements.bases["privileged"]
    num = len(seeds)
    arrays = {
        "angles": priv.angles,
        "planes": priv.planes,
        "epsilon": np.asarray(config.epsilon),
        "basis": priv.basis,
        "self_srm": priv.self_values,
        "measured_epochs": np.asarray(epochs, np.int32),
        "seeds": np.asarray(seeds, np.int64),
    }
    n = config.latent_dim
    common = {
        "basis": {"kind": config.basis_kind, "m": config.num_basis, "n": n},
        "num_planes": int(priv.planes.shape[-2]),
        "num_spanning_planes": int(round(priv.spanning_fraction * priv.planes.shape[-2])),
        "antipodal_planes": config.antipodal_planes,
        "num_test_samples": int(data.test_x.shape[0]),
        "measured_split": config.measure_split,
        "measured_tensor": config.measure_tensor,
        "epsilon": config.epsilon,
        "planes": config.planes,
        "isotropic_expectation": float(significance.isotropic_expectation(n, config.epsilon))
        * priv.spanning_fraction,
        "steps_per_epoch": steps_per_epoch,
    }
    per_seed_extra = [dict() for _ in range(num)]
    for name, measurer in measurements.bases.items():
        prefix = "" if name == "privileged" else f"{name}_"
        stack = np.stack([loaded[e][f"{name}_values"] for e in epochs], axis=1)  # (K, E, P, T)
        align = np.stack([loaded[e][f"{name}_alignment"] for e in epochs], axis=1)  # (K, E)
        arrays[f"{prefix}srm_during"] = stack
        arrays[f"{prefix}srm_before"] = stack[:, 0]
        arrays[f"{prefix}srm_after"] = stack[:, -1]
        arrays[f"{prefix}alignment"] = align
        if name != "privileged":
            arrays[f"{prefix}basis"] = measurer.basis
            arrays[f"{prefix}planes"] = measurer.planes
            arrays[f"{prefix}self_srm"] = measurer.self_values
        for k in range(num):
            extra = per_seed_extra[k]
            extra[f"{prefix}alignment_before"] = json_float(align[k, 0])
            extra[f"{prefix}alignment_after"] = json_float(align[k, -1])
            extra[f"{prefix}srm_mean_before"] = float(stack[k, 0].mean())
            extra[f"{prefix}srm_mean_after"] = float(stack[k, -1].mean())
            extra[f"{prefix}self_srm_mean"] = float(measurer.self_values[k].mean())
    sweep_tests = []
    if config.num_rotations and len(measurements.sweep_epsilon):
        sweep_tests = [
            m.rotation_test(measurements.test_keys, final_latents,
                            num_rotations=config.num_rotations,
                            alternative=CLAIM_ALTERNATIVE[config.claim])
            for m in measurements.sweep
        ]
    if len(measurements.sweep_epsilon):
        first, last = loaded[epochs[0]], loaded[epochs[-1]]
        arrays["sweep_epsilon"] = measurements.sweep_epsilon
        arrays["sweep_alignment_before"] = first["sweep_alignment"]
        arrays["sweep_alignment_after"] = last["sweep_alignment"]
        arrays["sweep_srm_mean_after"] = last["sweep_srm_mean"]
        for k in range(num):
            per_seed_extra[k]["epsilon_sweep"] = {
                "epsilon": measurements.sweep_epsilon.tolist(),
                "alignment_before": [json_float(a) for a in first["sweep_alignment"][k]],
                "alignment_after": [json_float(a) for a in last["sweep_alignment"][k]],
                "srm_mean_before": first["sweep_srm_mean"][k].tolist(),
                "srm_mean_after": last["sweep_srm_mean"][k].tolist(),
            }
            if sweep_tests:
                per_seed_extra[k]["epsilon_sweep"]["rotation_p_value"] = [
                    json_float(t["p_value"][k]) for t in sweep_tests]
                per_seed_extra[k]["epsilon_sweep"]["rotation_score"] = [
                    json_float(t["score"][k]) for t in sweep_tests]
    cosines = priv.max_cosine(measurements.cosine_key, final_latents)
    tests = None
    if config.num_rotations:
        tests = priv.rotation_test(measurements.test_keys, final_latents,
                                   num_rotations=config.num_rotations,
                                   alternative=CLAIM_ALTERNATIVE[config.claim])
        arrays["rotation_score"] = tests["score"]
        arrays["rotation_p_value"] = tests["p_value"]
    for k in range(num):
        extra = per_seed_extra[k]
        extra["median_max_abs_cos"] = float(cosines["median_max_abs_cos"][k])
        extra["isotropic_median_max_abs_cos"] = float(
            cosines["isotropic_median_max_abs_cos"][k])
        test = None
        if tests is not None:
            test = {
                "statistic": "projection",
                "alternative": CLAIM_ALTERNATIVE[config.claim],
                "num_rotations": config.num_rotations,
                "score": json_float(tests["score"][k]),
                "p_value": json_float(tests["p_value"][k]),
                "null_quantiles_2.5_50_97.5": [json_float(q) for q in tests["null_quantiles"][k]],
            }
        extra["rotation_test"] = test
        extra["claim"] = _claim(config, test)

    if not ensemble:  # a single run's files have no seed axis
        for key in list(arrays):
            if key in ("basis", "self_srm", "planes", "random_basis", "random_planes",
                       "random_self_srm", "standard_basis", "standard_planes",
                       "standard_self_srm", "sweep_alignment_before", "sweep_alignment_after",
                       "sweep_srm_mean_after", "rotation_score", "rotation_p_value") or (
                    key.endswith(("srm_during", "srm_before", "srm_after", "alignment"))):
                arrays[key] = arrays[key][0]
        del arrays["seeds"]
    np.savez_compressed(workdir / "srm.npz", **arrays)

    per_seed = []
    for k, seed in enumerate(seeds):
        stopped = seeds_state["stopped"][k]
        status = "completed" if stopped is None else (
            f"frozen at epoch {stopped['epoch'] - 1}: {stopped['reason']}")
        seed_summary = {"seed": seed, **_base_summary(config, data, _seed_history(history, k),
                                                      status)}
        seed_summary["optimizer_steps"] = steps_per_epoch * (
            final_epoch if stopped is None else stopped["epoch"] - 1)
        seed_summary.update(common)
        seed_summary.update(per_seed_extra[k])
        per_seed.append(seed_summary)

    figures = plots.save_run_figures(workdir, config, data.name, arrays, priv, per_seed,
                                     ensemble=ensemble, num_samples=int(final_latents.shape[1]))
    if ensemble:
        frozen = [s["seed"] for s in per_seed if s["status"] != "completed"]
        summary = {
            "preset": config.preset,
            "dataset": data.name,
            "status": "completed" + (f" ({len(frozen)} of {num} seeds frozen: {frozen})"
                                     if frozen else ""),
            "epochs": config.epochs,
            "epochs_completed": final_epoch,
            "seeds": seeds,
            "frozen_seeds": frozen,
            **common,
            **_aggregate(per_seed),
            "claim": {**_claim(config, None), "supported": None, "verdict": None},
            "per_seed": per_seed,
        }
        rotation = summary.get("rotation_test")
        if rotation:
            summary["claim"]["verdict"] = (
                f"{rotation['fraction_significant']:.0%} of {num} seeds significant at "
                f"{SIGNIFICANCE_LEVEL} in the claimed direction")
            summary["claim"]["fraction_supporting"] = float(
                np.mean([bool(s["claim"]["supported"]) for s in per_seed]))
    else:
        summary = per_seed[0]
        del summary["seed"]
    summary["figures"] = figures
    summary["wall_time_s"] = round(time.time() - start_time, 2)
    write_json(workdir / "summary.json", summary)
    return summary


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
