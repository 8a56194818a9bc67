"""Checkpoints of a run and the compatibility of a resumed run (math §9).

After every epoch the loop saves an orbax checkpoint (``DIR/checkpoints/<epoch>``; epoch 0 is the
untrained model) holding the parameters, the optimiser states, a copy of the fixed bases (to
verify that the bases rebuilt from the seed are the ones the parameters were trained with), the
metrics history and the seeds' status. A rerun into the same ``DIR`` must have the same settings
(:func:`check_compatible`; only :data:`RESUMABLE_CHANGES` may differ). :func:`load_run` rebuilds
a trained model from a run directory.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from train.configs import Config
from train.models import Autoencoder
from train.run_files import json_clean
from train.state import TrainState, create_ensemble_state

# Settings that may differ between an interrupted run and the run that resumes it.
RESUMABLE_CHANGES = ("epochs", "measure_every", "data_dir", "description", "checkpoints_to_keep")


class IncompatibleRunError(ValueError):
    """The output directory holds a run with different settings."""


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


def save_checkpoint(mngr: ocp.CheckpointManager, epoch: int, state: TrainState, history: list[dict],
                    seeds_state: dict | None = None) -> None:
    """Save epoch ``epoch``: parameters, optimiser states, bases, the metrics history and the
    seeds' status (``seeds_state``: which are alive, where the frozen ones stopped)."""
    mngr.save(
        epoch,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(_state_tree(state)),
            meta=ocp.args.JsonSave(
                {"epoch": epoch, "history": json_clean(history), "seeds": seeds_state or {}}
            ),
        ),
        force=True,
    )
    mngr.wait_until_finished()


def restore_checkpoint(
    mngr: ocp.CheckpointManager, epoch: int, state: TrainState
) -> tuple[TrainState, list[dict], dict]:
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


def load_run(
    workdir: str | Path, epoch: int | None = None, *, seed: int | None = None
) -> tuple[Autoencoder, Config, int]:
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


def _config_diff(saved: dict, current: dict, ignore: Sequence[str] = ()) -> list[str]:
    skip = set(RESUMABLE_CHANGES) | set(ignore)
    return [k for k in current if k not in skip and saved.get(k) != current[k]]


def check_compatible(path: Path, config: Config, seeds: list[int] | None) -> None:
    """Raise :class:`IncompatibleRunError` when the run saved in ``path`` (its ``config.json``)
    has other settings or seeds than this one (:data:`RESUMABLE_CHANGES` aside)."""
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
