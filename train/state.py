"""The train state of a run: the model split into pure pytrees, the optimiser and the seeds' keys.

A model enters the compiled steps as ``nnx.split`` pieces (``graphdef``, parameters, the rest)
plus its optax state: :class:`TrainState`. An ensemble stacks one such state per seed along a
leading axis (:func:`create_ensemble_state`); seed ``s`` builds its model from ``key(s)``
(:func:`seed_keys`) exactly as a single run of that seed. Both the training loop
(:mod:`train.train`) and :func:`train.checkpoints.load_run` build their states here.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from train.configs import Config
from train.models import Autoencoder, build_model, equalise_correction_pairs


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


def create_train_state(
    config: Config, in_features: int, key: jax.Array
) -> tuple[TrainState, Autoencoder]:
    """A fresh model and optimiser state; returns ``(state, model)``."""
    model = build_model(config, in_features, key)
    return _state_of(config, model), model


def _state_of(config: Config, model: Autoencoder) -> TrainState:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = create_optimizer(config).init(params)
    return TrainState(graphdef, params, rest, opt_state)


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(model_key, shuffle_key, measure_key)``: one ``split`` of ``key(seed)`` into three."""
    model_key, shuffle_key, measure_key = jax.random.split(jax.random.key(int(seed)), 3)
    return model_key, shuffle_key, measure_key


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def create_ensemble_state(
    config: Config, in_features: int, seeds: Sequence[int]
) -> tuple[TrainState, np.ndarray]:
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


__all__ = [
    "TrainState",
    "create_ensemble_state",
    "create_optimizer",
    "create_train_state",
    "seed_keys",
]
