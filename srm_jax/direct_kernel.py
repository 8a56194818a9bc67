"""The direct kernel: SRM by its definition (Eqns. 2 and 4), blocked over planes and samples."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from srm_jax._precision import exact_matmul
from srm_jax.kernel_ops import pad_samples
from srm_jax.rotation import spotlight

# Elements of the largest per-chunk temporary (2**22 float32 = 16 MiB).
DIRECT_CHUNK_ELEMENTS = 1 << 22


def direct_counts(
    unit, valid, groups, num_groups, basis, pairs, angles, epsilon, signed, chunk, plane_block
):
    """Counts by the direct definition, Eqns. 2 and 4, blocked over planes and samples.

    Returns counts and negative counts (``None`` unless ``signed``) of shape
    ``(num_groups, P, T)``, as :func:`srm_jax.arc_kernel.arc_counts`.
    """
    num_planes = pairs.shape[0]
    num_angles = angles.shape[0]
    num_blocks = -(-num_planes // plane_block)
    padded_pairs = jnp.concatenate(
        [pairs, jnp.broadcast_to(pairs[:1], (num_blocks * plane_block - num_planes, 2))]
    ).reshape(num_blocks, plane_block, 2)
    eps = jnp.asarray(epsilon, unit.dtype)
    chunks = pad_samples(unit, valid, groups, chunk)

    def group_sum(mask, group_chunk):
        mask = mask.astype(jnp.int32)
        if num_groups == 1:
            return jnp.sum(mask, axis=0, dtype=jnp.int32)[None]
        return jax.ops.segment_sum(mask, group_chunk, num_segments=num_groups)

    def block_counts(block_pairs):
        spot = spotlight(basis, block_pairs, angles).reshape(plane_block * num_angles, -1)

        def body(carry, chunk_data):
            unit_chunk, valid_chunk, group_chunk = chunk_data
            dots = exact_matmul(unit_chunk, spot.T)
            live = valid_chunk[:, None]
            pos = group_sum((dots >= eps) & live, group_chunk)
            neg = group_sum((dots <= -eps) & live, group_chunk)
            return (carry[0] + pos, carry[1] + neg), None

        zeros = jnp.zeros((num_groups, plane_block * num_angles), jnp.int32)
        (pos, neg), _ = jax.lax.scan(body, (zeros, zeros), chunks)
        return pos, neg

    pos, neg = jax.lax.map(block_counts, padded_pairs)  # (blocks, G, block * T)

    def unblock(x):
        x = x.reshape(num_blocks, num_groups, plane_block, num_angles)
        return jnp.moveaxis(x, 1, 0).reshape(num_groups, -1, num_angles)[:, :num_planes]

    return unblock(pos), (unblock(neg) if signed else None)

