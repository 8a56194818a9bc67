"""The ε sweep stage: the alignment score at every ε, and its best."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from srm_jax.report.defaults import SWEEP_PLANES
from srm_jax.report.planes import subset_indices
from srm_jax.spectrum import EpsilonSweep, alignment_sweep


def sweep_planes(key: jax.Array, pairs: jax.Array, summaries: bool) -> jax.Array:
    """The planes of the ε sweep: every plane measured, or with summaries a random subset of
    :data:`SWEEP_PLANES` of them (drawn from ``fold_in(key, 1)``: the sweep only locates the
    best ε)."""
    num_planes = int(pairs.shape[0])
    if summaries and num_planes > SWEEP_PLANES:
        return pairs[subset_indices(num_planes, SWEEP_PLANES, jax.random.fold_in(key, 1))]
    return pairs


def sweep_epsilon(x: jax.Array, basis: jax.Array, pairs: jax.Array, epsilons) -> EpsilonSweep:
    """The alignment score of ``x`` about ``pairs`` at every ε of ``epsilons``
    (:func:`srm_jax.alignment_sweep`), every ε at once (``map_batch_size=None``): the sweep's
    planes are bounded (:data:`SWEEP_PLANES`), so its memory is too."""
    return alignment_sweep(x, basis, jnp.asarray(epsilons, jnp.float32), planes=pairs,
                           map_batch_size=None)
