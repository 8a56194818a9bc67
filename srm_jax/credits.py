"""Who carries SRM's lit counts: per sample, its lit (plane, angle) pairs and each basis vector's
share of them (math §11).

SRM (Eqn. 2) counts, per plane and angle, the samples inside the spotlight. Summed the other way
round, per sample over every plane and angle, the same lit pairs say which samples light the
spotlights; splitting each lit pair between the plane's two vectors, in proportion to the
sample's squared coordinates on them, says which basis vectors (neurons) those samples sit on.
Both are exact refinements of SRM's counts: ``counts.sum()`` equals the sum of
:func:`srm_jax.spotlight_resonance`'s counts at the same settings, and each row of ``credits``
sums to its count.

Two paths, chosen by the measurement's plan (:func:`srm_jax.resonance.plan_measurement`): the
sample-major enumeration (:func:`srm_jax.sample_major.sample_major_credits`) where the plan holds
its settings (a wide ``±`` basis at ε > 0), else the direct definition, blocked over planes and
samples exactly as :func:`srm_jax.direct_kernel.direct_counts` (the same spotlights, products
and lit test).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from srm_jax._precision import exact_matmul
from srm_jax.direct_kernel import DIRECT_CHUNK_ELEMENTS
from srm_jax.kernel_ops import credit_share, pad_samples
from srm_jax.resonance import CountPlan, PreparedSamples, _prepare, plan_measurement
from srm_jax.rotation import normalise_rows, spotlight
from srm_jax.sample_major import sample_major_credits


class LitCredits(NamedTuple):
    """What :func:`lit_credits` returns (math §11).

    Attributes:
      counts: int32 ``(N,)``: per sample, its lit ``(plane, angle)`` pairs, summed over every
        measured plane and grid angle (0 for a row with NaN/Inf).
      credits: ``(N, m)`` float (the working dtype, float32 for float32 inputs): per sample,
        each basis vector's credit; a row sums to its count (up to float rounding). ``+b`` and
        ``−b`` are separate vectors: a neuron's credit is the sum of its ``±`` vectors.
      num_planes: ``P``, the planes measured (a Python int; an array under ``jax.jit``).
      num_angles: ``T``, the grid angles (likewise): a count lies in ``[0, P·T]``.
    """

    counts: jax.Array
    credits: jax.Array
    num_planes: int
    num_angles: int


def lit_credits(
    activations: jax.Array,
    basis: jax.Array,
    *,
    epsilon: float | jax.Array,
    planes: str | jax.Array = "comb",
    angles: jax.Array | None = None,
    method: str = "auto",
    chunk_size: int | None = None,
) -> LitCredits:
    """Per sample, its lit ``(plane, angle)`` pairs and each basis vector's credit (math §11).

    Sample ``d`` (unit-normalised, ``d̂``) lights plane ``(α, β)`` at angle θ when
    ``d̂·s_αβ(θ) ≥ ε``: SRM's own test (Eqn. 2), on the same planes and angle grid as
    :func:`srm_jax.spotlight_resonance` with the same arguments. ``counts[d]`` is the number of
    lit pairs of ``d``, so ``counts.sum()`` equals the sum of SRM's counts. Each lit pair is
    split between the plane's two vectors: ``x_α² / (x_α² + x_β²)`` to ``α`` and the rest to
    ``β``, with ``x_α = d̂·b̂_α`` (half each where both are 0). Rows with NaN or Inf count 0 and
    get no credit.

    The sample-major enumeration counts where ``method`` (``"auto"``, ``"sample_major"``) takes
    it for SRM (a wide ``±`` basis at ε > 0; its counts are the kernel's own); every other plan
    evaluates the definition as the ``"direct"`` method does (ε ≤ 0 included). Pure; under
    ``jax.jit`` keep ``epsilon``, ``planes``, ``method`` and ``chunk_size`` static and close
    over a ``±`` basis (as for :func:`srm_jax.spotlight_resonance`).

    Args:
      activations: ``(N, n)`` samples, one a row.
      basis: ``(m, n)`` basis, one vector a row (rows are normalised).
      epsilon: ``ε ∈ [−1, 1]``; the sample-major path needs ε > 0.
      planes: ``"comb"``, ``"perm"`` or explicit int ``(P, 2)`` pairs, as SRM's.
      angles: 1-D angles; default :func:`srm_jax.angle_grid`.
      method: as :func:`srm_jax.spotlight_resonance`; ``"sample_major"`` with ε < 0 raises,
        ``"arc"`` counts by the definition.
      chunk_size: samples per working chunk (``None``: the path's default).

    Returns:
      :class:`LitCredits`.
    """
    plan, pairs, angles = plan_measurement(
        activations, basis, epsilon=epsilon, angles=angles, planes=planes, method=method,
        chunk_size=chunk_size,
    )
    if plan.major is not None and plan.major.complement:
        if method == "sample_major":
            raise ValueError("lit_credits: the sample-major path needs epsilon > 0.")
        # ε < 0 counts through the complement in the kernel; the definition needs none.
        plan = dataclasses.replace(plan, method="direct", sample_major=None, gather=False)
    counts, credits = _lit_credits_jit(activations, basis, pairs, angles, epsilon,
                                       plan=plan.resolved())
    return LitCredits(counts, credits, int(pairs.shape[0]), int(angles.shape[0]))


def credit_path(plan: CountPlan) -> str:
    """The path of :func:`lit_credits` for ``plan``: ``"sample_major"`` or ``"direct"``."""
    return "sample_major" if plan.major is not None else "direct"


def _lit_credits(activations, basis, pairs, angles, epsilon, *, plan: CountPlan):
    """``(counts, credits)`` of :func:`lit_credits` (``plan`` resolved, static)."""
    samples = _prepare(activations, basis, angles, None, 1)
    if credit_path(plan) == "sample_major":
        return sample_major_credits(
            samples.unit, samples.valid, normalise_rows(samples.basis), pairs, samples.angles,
            epsilon, plan=plan.major, grid=plan.grid, backend=plan.backend,
            chunk=plan.chunk_size, gather=plan.gather,
        )
    return _direct_credits(samples, pairs, epsilon, plan.chunk_size)


_lit_credits_jit = jax.jit(_lit_credits, static_argnames=("plan",))


def _direct_credits(samples: PreparedSamples, pairs, epsilon, chunk_size: int | None):
    """Counts and credits by the definition, blocked over planes and samples with the blocks of
    :func:`srm_jax.resonance._direct_kernel` (so the products, hence the lit tests, are the
    direct kernel's own)."""
    unit, valid, basis, angles = samples.unit, samples.valid, samples.basis, samples.angles
    num_samples, num_planes, num_angles = unit.shape[0], pairs.shape[0], angles.shape[0]
    plane_block = max(1, min(num_planes, DIRECT_CHUNK_ELEMENTS // (num_angles * 256)))
    chunk = chunk_size or max(1, DIRECT_CHUNK_ELEMENTS // (plane_block * num_angles))
    chunk = min(chunk, max(num_samples, 1))
    num_blocks = -(-num_planes // plane_block)
    pad = num_blocks * plane_block - num_planes
    padded = jnp.concatenate([pairs, jnp.broadcast_to(pairs[:1], (pad, 2))])
    real = jnp.arange(num_blocks * plane_block) < num_planes
    chunks = pad_samples(unit, valid, jnp.zeros(num_samples, jnp.int32), chunk)[:2]
    eps = jnp.asarray(epsilon, unit.dtype)
    unit_basis = normalise_rows(basis)

    def block_credits(carry, block):
        block_pairs, block_real = block
        spot = spotlight(basis, block_pairs, angles).reshape(plane_block * num_angles, -1)

        def chunk_lit(_, chunk_data):
            unit_chunk, valid_chunk = chunk_data
            dots = exact_matmul(unit_chunk, spot.T)
            lit = (dots >= eps) & valid_chunk[:, None]
            lit = jnp.sum(lit.reshape(chunk, plane_block, num_angles), axis=2, dtype=jnp.int32)
            x = exact_matmul(unit_chunk, unit_basis.T)  # (C, m): d̂·b̂
            return None, (jnp.where(block_real, lit, 0), _alpha_share(x, block_pairs))

        _, (lit, share) = jax.lax.scan(chunk_lit, None, chunks)
        lit, share = lit.reshape(-1, plane_block), share.reshape(-1, plane_block)
        weight = lit.astype(unit.dtype)
        counts, credits = carry
        credits = credits.at[:, block_pairs[:, 0]].add(weight * share)
        credits = credits.at[:, block_pairs[:, 1]].add(weight * (1 - share))
        return (counts + jnp.sum(lit, axis=1), credits), None

    padded_rows = chunks[0].shape[0] * chunk
    init = (jnp.zeros(padded_rows, jnp.int32),
            jnp.zeros((padded_rows, basis.shape[0]), unit.dtype))
    blocks = (padded.reshape(num_blocks, plane_block, 2), real.reshape(num_blocks, plane_block))
    (counts, credits), _ = jax.lax.scan(block_credits, init, blocks)
    return counts[:num_samples], credits[:num_samples]


def _alpha_share(x, block_pairs):
    """``x_α² / (x_α² + x_β²)`` of every row of ``x`` (coordinates ``d̂·b̂``) and plane of
    ``block_pairs``; ½ where both are 0."""
    return credit_share(jnp.square(x[:, block_pairs[:, 0]]), jnp.square(x[:, block_pairs[:, 1]]))
