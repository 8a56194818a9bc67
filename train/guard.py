"""The non-finite guard of training: which seeds went NaN/Inf, and freezing them.

A seed whose training loss, parameters or test loss turn non-finite in an epoch keeps its state
from before that epoch (frozen, reported in ``summary.json``); the others go on. A single run
(or an ensemble whose every seed is frozen) stops with :class:`NonFiniteLossError` instead.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

NAN_MESSAGE = "non-finite training loss"


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/Inf loss; the run stopped and kept its last good checkpoint.

    ``status`` is the run's status line in its ``summary.json`` (``"stopped: … at epoch E"``).
    """

    def __init__(self, message: str, status: str = "stopped"):
        super().__init__(message)
        self.status = status


def all_finite(tree) -> jax.Array:
    """Per seed (leading axis): every entry of every leaf is finite."""
    leaves = [jnp.all(jnp.isfinite(leaf.reshape(leaf.shape[0], -1)), axis=1)
              for leaf in jax.tree.leaves(tree)]
    return functools.reduce(jnp.logical_and, leaves)


def keep_where(keep: jax.Array, new_tree, old_tree):
    """Per seed (leading axis): the leaves of ``new_tree`` where ``keep``, else ``old_tree``'s."""

    def select(new, old):
        return jnp.where(keep.reshape(-1, *([1] * (new.ndim - 1))), new, old)

    return jax.tree.map(select, new_tree, old_tree)


def nonfinite_reason(losses: np.ndarray, finite: bool, test_loss: float,
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
