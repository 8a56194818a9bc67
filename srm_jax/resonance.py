"""Spotlight resonance: SRM (Eqn. 2), signed SRM (Eqn. 4) and self-SRM (SPEC §4-5).

Two exact methods compute the same integer counts:

* ``"direct"`` evaluates the definition: ``d̂·s_αβ(θ) ≥ ε`` for every sample, plane and angle,
  with ``s`` from the closed form of :func:`srm_jax.spotlight`. Work ``O(N·P·T·n)``.
* ``"arc"`` uses the equivalent form of SPEC §5: ``d̂·s(θ) = r cos(θ + φ)``, so each sample lights
  the spotlight on one arc of angles; the arcs of all samples are histogrammed onto the angles
  with a difference array. Work ``O(N·m + N·P·log T + P·T)``.

Both stream over chunks of samples, so memory grows as ``N·n + P·T`` plus one bounded working
chunk; no ``N × P × T`` array is ever held. They agree on every angle except where ``d̂·s(θ)``
lies within floating-point rounding of ``±ε``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from srm_jax import _validation
from srm_jax.planes import angle_grid
from srm_jax.planes import planes as make_planes
from srm_jax.rotation import _coordinates_from_projections, normalise_rows, spotlight

METHODS = ("auto", "arc", "direct")
# Working-set budgets (elements of the largest per-chunk temporary). 2**20 float32 elements are
# 4 MiB per temporary; the arc method holds about a dozen such temporaries per chunk.
ARC_CHUNK_ELEMENTS = 1 << 20
DIRECT_CHUNK_ELEMENTS = 1 << 22

TWO_PI = 2.0 * math.pi


@struct.dataclass
class SRMResult:
    """Spotlight-resonance counts for every plane and angle (a pytree; additive over batches).

    Attributes:
      counts: int32 ``(P, T)``: the number of samples with ``d̂·s_αβ(θ) ≥ ε``.
      negative_counts: int32 ``(P, T)``: the number with ``d̂·s_αβ(θ) ≤ −ε`` (signed SRM only,
        else ``None``).
      num_samples: int32 scalar: the samples that counted (rows with NaN/Inf are left out).
      angles: ``(T,)`` rotation angles θ.
      planes: int32 ``(P, 2)`` the ``(α, β)`` pairs, in the order of the rows of ``counts``.
      epsilon: scalar ε (cosine of the spotlight half-angle).
      signed: whether this is signed SRM (Eqn. 4); static.
    """

    counts: jax.Array
    negative_counts: jax.Array | None
    num_samples: jax.Array
    angles: jax.Array
    planes: jax.Array
    epsilon: jax.Array
    signed: bool = struct.field(pytree_node=False, default=False)

    @property
    def values(self) -> jax.Array:
        """SRM fractions ``(P, T)``: Eqn. 2, or Eqn. 4 when ``signed`` (counts over samples).

        With no counted samples the values are NaN (0/0): there is nothing to measure.
        """
        count = self.counts
        if self.signed:
            count = count - self.negative_counts
        denominator = jnp.asarray(self.num_samples)[..., None, None]
        dtype = jnp.result_type(self.angles.dtype, jnp.float32)
        return count.astype(dtype) / denominator.astype(dtype)

    @property
    def mean_curve(self) -> jax.Array:
        """The mean SRM curve over planes, ``(T,)`` (the dashed line of the paper's figures)."""
        return jnp.mean(self.values, axis=-2)

    def __add__(self, other: SRMResult) -> SRMResult:
        return combine_results(self, other)


def combine_results(first: SRMResult, second: SRMResult) -> SRMResult:
    """The result of the union of two disjoint sample sets (SPEC §4: counts are additive).

    Both results must share planes, angles, ε and ``signed``; this is checked whenever the values
    are concrete.
    """
    if first.signed != second.signed:
        raise ValueError("cannot combine a signed SRM result with an unsigned one.")
    if first.counts.shape != second.counts.shape:
        raise ValueError(
            f"cannot combine results of shapes {first.counts.shape} and {second.counts.shape}: "
            "they must be measured on the same planes and angles."
        )
    for name in ("angles", "planes", "epsilon"):
        a, b = getattr(first, name), getattr(second, name)
        if _validation.is_concrete(a) and _validation.is_concrete(b):
            if not np.array_equal(np.asarray(a), np.asarray(b)):
                raise ValueError(f"cannot combine results measured with different {name}.")
    negative = None
    if first.signed:
        negative = first.negative_counts + second.negative_counts
    return first.replace(
        counts=first.counts + second.counts,
        negative_counts=negative,
        num_samples=first.num_samples + second.num_samples,
    )


def _resolve_planes(planes, m: int, max_planes, key) -> jax.Array:
    if isinstance(planes, str):
        return make_planes(m, planes, max_planes=max_planes, key=key)
    if max_planes is not None:
        raise ValueError("max_planes applies to planes='comb' or 'perm', not to explicit pairs.")
    return jnp.asarray(planes, dtype=jnp.int32)


def _float_dtype(*arrays):
    dtype = jnp.result_type(*arrays)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return dtype


def _pad_samples(unit, valid, groups, chunk: int):
    n_samples = unit.shape[0]
    num_chunks = max(1, -(-n_samples // chunk))
    pad = num_chunks * chunk - n_samples
    if pad:
        unit = jnp.pad(unit, ((0, pad), (0, 0)))
        valid = jnp.pad(valid, (0, pad))
        groups = jnp.pad(groups, (0, pad))
    return (
        unit.reshape(num_chunks, chunk, -1),
        valid.reshape(num_chunks, chunk),
        groups.reshape(num_chunks, chunk),
    )


def _arc_counts(unit, valid, groups, num_groups, unit_basis, pairs, angles, epsilon, signed, chunk):
    """Counts by the arc form (SPEC §5): a difference array over the sorted angles.

    ``groups`` (int ``(N,)`` in ``[0, num_groups)``) splits the samples into disjoint groups whose
    counts are kept apart in the same pass; the returned counts are ``(num_groups, P, T)``.
    """
    num_planes = pairs.shape[0]
    num_angles = angles.shape[0]
    dtype = unit.dtype
    # Angles reduced to [0, 2π) and sorted; the doubled copy handles arcs that wrap past 2π.
    reduced = jnp.mod(angles.astype(dtype), TWO_PI)
    order = jnp.argsort(reduced)
    sorted_angles = reduced[order]
    extended = jnp.concatenate([sorted_angles, sorted_angles + TWO_PI])
    width = 2 * num_angles + 1
    row_offset = (jnp.arange(num_planes, dtype=jnp.int32) * width)[None, :]
    eps = jnp.asarray(epsilon, dtype)

    def arc_updates(lo, half_width, partial):
        start = jnp.searchsorted(extended, lo, side="left").astype(jnp.int32)
        stop = jnp.searchsorted(extended, lo + 2 * half_width, side="right").astype(jnp.int32)
        weight = partial.astype(jnp.int32)
        index = jnp.concatenate([(start + row_offset).ravel(), (stop + row_offset).ravel()])
        update = jnp.concatenate([weight.ravel(), -weight.ravel()])
        return index, update

    copies = 2 if signed else 1
    group_stride = copies * num_planes * width

    def body(carry, chunk_data):
        unit_chunk, valid_chunk, group_chunk = chunk_data
        projections = unit_chunk @ unit_basis.T
        x, y = _coordinates_from_projections(projections, unit_basis, pairs)
        r = jnp.sqrt(x * x + y * y)
        phi = jnp.arctan2(y, x)
        live = valid_chunk[:, None]
        # Every angle lit when r ≤ −ε (ε ≤ 0); none when r < ε; otherwise one arc of half-width w.
        full = (r <= -eps) & live
        partial = (r >= eps) & ~full & live
        safe_r = jnp.where(r > 0, r, 1)
        half_width = jnp.arccos(jnp.clip(eps / safe_r, -1.0, 1.0))
        lo = jnp.mod(-phi - half_width, TWO_PI)
        index, update = arc_updates(lo, half_width, partial)
        if signed:
            # d̂·s ≤ −ε  ⟺  (−d̂)·s ≥ ε: the same arcs shifted by π.
            lo_neg = jnp.mod(lo + jnp.pi, TWO_PI)
            index_neg, update_neg = arc_updates(lo_neg, half_width, partial)
            index = jnp.concatenate([index, index_neg + num_planes * width])
            update = jnp.concatenate([update, update_neg])
        diff, full_total = carry
        if num_groups > 1:
            offset = (group_chunk.astype(jnp.int32) * group_stride)[:, None]
            index = index + jnp.tile(jnp.broadcast_to(offset, partial.shape).ravel(), 2 * copies)
            full_count = jax.ops.segment_sum(
                full.astype(jnp.int32), group_chunk, num_segments=num_groups
            )
        else:
            full_count = jnp.sum(full, axis=0, dtype=jnp.int32)[None]
        diff = diff.at[index].add(update, mode="promise_in_bounds")
        return (diff, full_total + full_count), None

    init = (
        jnp.zeros(num_groups * group_stride, jnp.int32),
        jnp.zeros((num_groups, num_planes), jnp.int32),
    )
    chunks = _pad_samples(unit, valid, groups, chunk)
    (diff, full_total), _ = jax.lax.scan(body, init, chunks)
    extended_counts = jnp.cumsum(diff.reshape(num_groups, copies, num_planes, width), axis=-1)
    sorted_counts = extended_counts[..., :num_angles] + extended_counts[..., num_angles:-1]
    # A sample lit at every angle (r ≤ −ε) satisfies both "≥ ε" and "≤ −ε" at every angle.
    sorted_counts = sorted_counts + full_total[:, None, :, None]
    counts = jnp.zeros_like(sorted_counts).at[..., order].set(sorted_counts)
    return counts[:, 0], (counts[:, 1] if signed else None)


def _direct_counts(
    unit, valid, groups, num_groups, basis, pairs, angles, epsilon, signed, chunk, plane_block
):
    """Counts by the direct definition, Eqns. 2 and 4, blocked over planes and samples.

    Returns counts of shape ``(num_groups, P, T)`` (see :func:`_arc_counts`).
    """
    num_planes = pairs.shape[0]
    num_angles = angles.shape[0]
    num_blocks = -(-num_planes // plane_block)
    padded_pairs = jnp.concatenate(
        [pairs, jnp.broadcast_to(pairs[:1], (num_blocks * plane_block - num_planes, 2))]
    ).reshape(num_blocks, plane_block, 2)
    eps = jnp.asarray(epsilon, unit.dtype)
    chunks = _pad_samples(unit, valid, groups, chunk)

    def group_sum(mask, group_chunk):
        mask = mask.astype(jnp.int32)
        if num_groups == 1:
            return jnp.sum(mask, axis=0, dtype=jnp.int32)[None]
        return jax.ops.segment_sum(mask, group_chunk, num_segments=num_groups)

    def block_counts(block_pairs):
        spot = spotlight(basis, block_pairs, angles).reshape(plane_block * num_angles, -1)

        def body(carry, chunk_data):
            unit_chunk, valid_chunk, group_chunk = chunk_data
            dots = unit_chunk @ spot.T
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


def spotlight_resonance(
    activations: jax.Array,
    basis: jax.Array,
    *,
    epsilon: float | jax.Array,
    angles: jax.Array | None = None,
    planes: str | jax.Array = "comb",
    signed: bool = False,
    method: str = "auto",
    max_planes: int | None = None,
    key: jax.Array | None = None,
    chunk_size: int | None = None,
) -> SRMResult:
    """Spotlight resonance of ``activations`` about the planes of ``basis`` (Eqns. 2 and 4).

    ``f(θ; α, β) = |{d : d̂·s_αβ(θ) ≥ ε}| / N`` with the spotlight ``s_αβ(θ) = R_αβ(θ) b̂_α``
    (Eqn. 1); signed SRM (Eqn. 4) subtracts ``|{d : d̂·s_αβ(θ) ≤ −ε}|``. Every plane and angle is
    computed in one compiled computation; the function is pure and safe under ``jax.jit``
    (with ``planes``, ``signed``, ``method``, ``max_planes`` and ``chunk_size`` static) and
    ``jax.vmap``. Rows of ``activations`` containing NaN or Inf are left out of numerator and
    denominator alike (``num_samples`` says how many counted); a zero row has cosine 0 with every
    spotlight (SPEC §1).

    Args:
      activations: ``(N, n)`` samples, one a row.
      basis: ``(m, n)`` privileged basis, one vector a row (rows are normalised).
      epsilon: ``ε ∈ [−1, 1]``, the cosine of the spotlight's half-angle.
      angles: 1-D rotation angles; default :func:`angle_grid` (100 angles, 0 to 2π inclusive).
      planes: ``"comb"`` (Combination-SRM), ``"perm"`` (Permutation-SRM), or explicit int
        ``(P, 2)`` pairs.
      signed: signed SRM (Eqn. 4); fills ``negative_counts``.
      method: ``"direct"`` (the definition), ``"arc"`` (exact arc histogram, SPEC §5) or
        ``"auto"`` (currently ``"arc"``, the faster on every backend measured; see
        ``benchmarks/RESULTS.md``).
      max_planes: draw this many planes at random (needs ``key``), as the paper's ``max_planes``.
      key: PRNG key for ``max_planes``.
      chunk_size: samples per working chunk; default keeps each temporary near 4 MiB.

    Returns:
      :class:`SRMResult` with integer counts, ``num_samples``, ``angles``, ``planes``, ``epsilon``.
    """
    _validation.check_matrix(activations, "activations")
    _validation.check_basis(basis)
    if activations.shape[1] != basis.shape[1]:
        raise ValueError(
            f"activations have n={activations.shape[1]} features but the basis vectors have "
            f"n={basis.shape[1]}: the basis must live in the activations' space (SPEC §1)."
        )
    _validation.check_epsilon(epsilon)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    pairs = _resolve_planes(planes, basis.shape[0], max_planes, key)
    _validation.check_planes(basis, pairs)
    if angles is None:
        angles = angle_grid()
    angles = jnp.asarray(angles)
    if angles.ndim != 1 or angles.shape[0] == 0:
        raise ValueError(f"angles must be a non-empty 1-D array, got shape {angles.shape}.")

    counts, negative, num_samples, angles = _grouped_counts_jit(
        activations, basis, pairs, angles, epsilon,
        groups=None, num_groups=1, signed=signed, method=method, chunk_size=chunk_size,
    )
    return SRMResult(
        counts=counts[0],
        negative_counts=None if negative is None else negative[0],
        num_samples=num_samples[0],
        angles=angles,
        planes=pairs,
        epsilon=jnp.asarray(epsilon, angles.dtype),
        signed=signed,
    )


def grouped_counts(
    activations: jax.Array,
    basis: jax.Array,
    pairs: jax.Array,
    angles: jax.Array,
    epsilon: float | jax.Array,
    *,
    groups: jax.Array | None,
    num_groups: int,
    signed: bool,
    method: str = "auto",
    chunk_size: int | None = None,
):
    """SRM counts of disjoint sample groups in one pass (the kernel behind the public API).

    Inputs are assumed validated (see :func:`spotlight_resonance`). ``groups`` is an int ``(N,)``
    array in ``[0, num_groups)`` (``None`` puts every sample in group 0); samples outside that
    range are left out.

    Returns:
      ``counts (G, P, T)``, ``negative_counts (G, P, T)`` or ``None``, ``num_samples (G,)`` and
      the angles cast to the working float dtype.
    """
    dtype = _float_dtype(activations, basis)
    activations = jnp.asarray(activations, dtype)
    basis = jnp.asarray(basis, dtype)
    angles = jnp.asarray(angles).astype(dtype)
    n_samples = activations.shape[0]
    valid = jnp.all(jnp.isfinite(activations), axis=1)
    if groups is None:
        groups = jnp.zeros(n_samples, jnp.int32)
    else:
        groups = jnp.asarray(groups, jnp.int32)
        valid = valid & (groups >= 0) & (groups < num_groups)
        groups = jnp.where(valid, groups, 0)
    unit = normalise_rows(jnp.where(valid[:, None], activations, 0))
    num_samples = jax.ops.segment_sum(valid.astype(jnp.int32), groups, num_segments=num_groups)
    num_planes, num_angles = pairs.shape[0], angles.shape[0]

    if method in ("auto", "arc"):
        chunk = chunk_size or max(1, ARC_CHUNK_ELEMENTS // num_planes)
        counts, negative = _arc_counts(
            unit, valid, groups, num_groups, normalise_rows(basis), pairs, angles, epsilon,
            signed, min(chunk, max(n_samples, 1)),
        )
    else:
        plane_block = max(1, min(num_planes, DIRECT_CHUNK_ELEMENTS // (num_angles * 256)))
        chunk = chunk_size or max(1, DIRECT_CHUNK_ELEMENTS // (plane_block * num_angles))
        counts, negative = _direct_counts(
            unit, valid, groups, num_groups, basis, pairs, angles, epsilon, signed,
            min(chunk, max(n_samples, 1)), plane_block,
        )
    return counts, negative, num_samples, angles


# Eager calls compile once per shape and setting (epsilon stays a traced argument).
_grouped_counts_jit = jax.jit(
    grouped_counts, static_argnames=("num_groups", "signed", "method", "chunk_size")
)


def self_srm(
    basis: jax.Array,
    *,
    epsilon: float | jax.Array,
    angles: jax.Array | None = None,
    planes: str | jax.Array = "comb",
    signed: bool = False,
    **kwargs,
) -> SRMResult:
    """Self-SRM: SRM with the basis itself as the data (``D = B``), same planes, angles and ε.

    The reference oscillation of a perfectly axis-aligned (local-coding) representation
    (paper Sec. 3, Fig. 1 centre; SPEC §4). Keyword arguments go to :func:`spotlight_resonance`.
    """
    return spotlight_resonance(
        basis, basis, epsilon=epsilon, angles=angles, planes=planes, signed=signed, **kwargs
    )
