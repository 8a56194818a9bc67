"""The exact kernels' shared operations: sample chunks, prefix sums, compaction and angle bins.

Used by the arc kernel (:mod:`srm_jax.arc_kernel`) and the sample-major kernel
(:mod:`srm_jax.sample_major`); every operation is exact on every backend (math §1.4).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from srm_jax import _validation
from srm_jax._precision import exact_matmul, working_dtype

TWO_PI = 2.0 * math.pi


def pad_samples(unit, valid, groups, chunk: int):
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


def portable_kernel(backend: str) -> bool:
    """Whether the arc kernel takes its portable ops on ``backend`` (math §1.4).

    The kernel's CPU forms (prefix sums and compaction indices by triangular matmuls, the argmax
    of the sort key by a matmul, a polynomial ``atan2``) exist because XLA:CPU's ``cumsum``,
    ``argmax`` and ``atan2`` are several times slower. Those matmuls ask for ``HIGHEST`` and are
    exact on every backend; elsewhere the portable ops (int32 ``cumsum``, ``argmax``,
    ``arctan2``) are exact by construction and as fast, so every backend but ``"cpu"`` takes them.
    """
    return backend != "cpu"


def _atan2(y, x, portable: bool = False):
    """``atan2(y, x)``; on CPU in float32 by range reduction and the Cephes ``atanf`` polynomial.

    XLA:CPU lowers ``atan2`` to a scalar library call, far slower than this vectorised form,
    whose error (< 4e-7 rad) is below float32 rounding of the cosines it is compared with.
    Other dtypes (float64) and the portable kernel use :func:`jnp.arctan2`.
    """
    if portable or x.dtype != jnp.float32:
        return jnp.arctan2(y, x)
    ax, ay = jnp.abs(x), jnp.abs(y)
    big, small = jnp.maximum(ax, ay), jnp.minimum(ax, ay)
    t = small / jnp.where(big == 0, 1, big)
    reduce = t > 0.41421356  # tan(π/8): atan(t) = π/4 + atan((t − 1)/(t + 1))
    t = jnp.where(reduce, (t - 1) / (t + 1), t)
    z = t * t
    p = (((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z
         - 3.33329491539e-1) * z * t + t
    p = jnp.where(reduce, p + np.float32(math.pi / 4), p)
    p = jnp.where(ay > ax, np.float32(math.pi / 2) - p, p)
    p = jnp.where(x < 0, np.float32(math.pi) - p, p)
    return jnp.where(y < 0, -p, p)


_PREFIX_WIDTH = 128


def _prefix_sum(x):
    """Inclusive prefix sum of a 1-D int vector by triangular matmuls (exact below 2**24).

    XLA:CPU's ``cumsum`` is several times slower and slower to compile.
    """
    inclusive, _ = _prefix_sums_2d(x)
    return inclusive.ravel()[: x.shape[0]].astype(jnp.int32)


def _prefix_sums_2d(x, portable: bool = False):
    """Inclusive and exclusive prefix sums of a 1-D int or bool vector, as ``(rows, 128)`` blocks
    of the (zero-padded) vector in row-major order.

    Portable: an int32 ``cumsum``. CPU: float32 products with a triangular matrix, exact for sums
    below 2**24 because they ask for ``HIGHEST`` (an integer below 2**24 is a float32; TF32 or
    bfloat16 operands would round the block offsets, which exceed 2**11).
    """
    width = _PREFIX_WIDTH
    size = x.shape[0]
    rows = -(-size // width)
    if portable:
        values = jnp.pad(x.astype(jnp.int32), (0, rows * width - size)).reshape(rows, width)
        inclusive = jnp.cumsum(values.ravel()).reshape(rows, width)
        return inclusive, inclusive - values
    blocks = jnp.pad(x.astype(jnp.float32), (0, rows * width - size)).reshape(rows, width)
    upper = jnp.triu(jnp.ones((width, width), jnp.float32))
    # Both sums come out of the one matmul: computing the exclusive sum from ``x`` instead would
    # make XLA recompute ``x``'s producer (the bound of the arc kernel) in that consumer.
    within = exact_matmul(
        blocks, jnp.concatenate([upper, upper - jnp.eye(width, dtype=jnp.float32)], axis=1)
    )
    inclusive, exclusive = within[:, :width], within[:, width:]
    if rows > 1:
        offsets = (_prefix_sum(inclusive[:, -1]) - inclusive[:, -1]).astype(jnp.float32)
        inclusive = inclusive + offsets[:, None]
        exclusive = exclusive + offsets[:, None]
    return inclusive, exclusive


def _compact(flags, capacity: int, portable: bool = False):
    """Indices of the true entries of a 1-D bool ``flags``, in order, and their count.

    Returns an int32 ``(capacity,)`` array (``capacity > flags.shape[0]``); entries past the
    count are arbitrary.
    """
    inclusive, exclusive = _prefix_sums_2d(flags, portable)
    # A false entry goes to the last slot, past every true one (capacity exceeds their count).
    # Computed on the (rows, 128) blocks: a flat slice of them makes XLA:CPU's loop scalar.
    slot = jnp.where(inclusive > exclusive, exclusive, capacity - 1).astype(jnp.int32)
    index = jnp.arange(slot.size, dtype=jnp.int32).reshape(slot.shape)
    compact = jnp.zeros(capacity, jnp.int32).at[slot.ravel()].set(
        index.ravel(), mode="promise_in_bounds"
    )
    return compact, inclusive[-1, -1].astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class _Grid:
    """How the grid angles map onto histogram bins, known before tracing (hashable, static).

    Uniform: ``θ_k = theta0 + k·step`` with ``period·step = 2π`` (``period`` is ``T − 1`` for the
    default grid with its endpoint, ``T`` without it): bins are lattice positions, found by
    arithmetic. General: bins are ranks in the sorted angles (mod 2π), found by binary search.
    """

    period: int
    theta0: float | None = None
    step: float | None = None
    sorted_angles: tuple | None = None
    inverse: tuple | None = None


def angle_layout(angles: jax.Array, dtype=None) -> _Grid | None:
    """The static bin layout of concrete ``angles`` in ``dtype`` (default: their working dtype);
    ``None`` when they are traced (the layout is then decided inside the kernel)."""
    if not _validation.is_concrete(angles):
        return None
    dtype = working_dtype(angles) if dtype is None else dtype
    values = np.asarray(angles).astype(dtype).astype(np.float64)
    num = values.shape[0]
    if num >= 2:
        step = (values[-1] - values[0]) / (num - 1)
        tol = 8 * np.finfo(dtype).eps * max(np.max(np.abs(values)), TWO_PI)
        on_lattice = np.max(np.abs(values - (values[0] + step * np.arange(num)))) <= tol
        for period in (num - 1, num):
            if step > 0 and on_lattice and abs(period * step - TWO_PI) <= tol * num:
                return _Grid(period=period, theta0=float(values[0]), step=float(step))
    reduced = np.mod(np.asarray(angles).astype(dtype), np.asarray(TWO_PI, dtype))
    order = np.argsort(reduced, kind="stable")
    inverse = np.empty(num, np.int64)
    inverse[order] = np.arange(num)
    return _Grid(
        period=num,
        sorted_angles=tuple(float(v) for v in reduced[order]),
        inverse=tuple(int(i) for i in inverse),
    )


def _traced_grid(angles):
    """:func:`angle_layout` for traced angles, as arrays (the uniform test is a traced bool)."""
    dtype = angles.dtype
    num = angles.shape[0]
    index = jnp.arange(num, dtype=jnp.int32)
    step = (angles[-1] - angles[0]) / max(num - 1, 1)
    tol = 8 * jnp.finfo(dtype).eps * jnp.maximum(jnp.max(jnp.abs(angles)), TWO_PI)
    on_lattice = jnp.max(jnp.abs(angles - (angles[0] + index.astype(dtype) * step))) <= tol
    fits = jnp.abs(jnp.array([num - 1, num], dtype) * step - TWO_PI) <= tol * num
    uniform = (num >= 2) & (step > 0) & on_lattice & jnp.any(fits)
    lattice_period = jnp.where(fits[0], num - 1, num)
    reduced = jnp.mod(angles, TWO_PI)
    order = jnp.argsort(reduced)
    inverse = jnp.zeros(num, jnp.int32).at[order].set(index)
    return dict(
        uniform=uniform,
        theta0=angles[0],
        step=jnp.where(uniform, step, 1),
        period=jnp.where(uniform, lattice_period, num),
        sorted_angles=reduced[order],
        out_index=jnp.where(uniform, index % jnp.maximum(lattice_period, 1), inverse),
    )


def grid_bins(grid, angles):
    """The grid the kernels bin arcs on, its period and each angle's lattice position.

    ``grid`` is the static :class:`_Grid` of concrete angles, or ``None`` to decide the layout of
    traced ``angles`` inside the kernel (:func:`_traced_grid`).

    Returns:
      ``(grid, period, out_index)``: the grid to pass to :func:`_arc_bins`, the number of
      lattice bins per turn and the ``(T,)`` bin of each angle.
    """
    num_angles = angles.shape[0]
    if grid is None:
        traced = _traced_grid(angles)
        return traced, traced["period"], traced["out_index"]
    if grid.theta0 is not None:
        return grid, grid.period, np.arange(num_angles) % grid.period
    return grid, grid.period, np.asarray(grid.inverse)


def _arc_bins(lo, half_width, shift, grid):
    """Extended bins ``[start, stop)`` of the grid angles on the arcs ``[lo, lo + 2w] + shift``.

    Bins run over two turns (``2·period + 1``) so that an arc that wraps past 2π stays one
    interval; the turns are folded together after the histogram.
    """

    def uniform(lo, half_width, theta0, step, period):
        inv = 1 / step
        u = (lo + shift - theta0) * inv
        u = u - jnp.floor(u / period) * period  # mod (jnp.mod is a scalar libm call on CPU)
        start = jnp.minimum(jnp.ceil(u), period)
        stop = jnp.minimum(jnp.floor(u + 2 * half_width * inv) + 1, 2 * period)
        return start.astype(jnp.int32), stop.astype(jnp.int32)

    def general(lo, half_width, sorted_angles):
        extended = jnp.concatenate([sorted_angles, sorted_angles + TWO_PI])
        lo = lo + shift
        lo = jnp.clip(lo - jnp.floor(lo / TWO_PI) * TWO_PI, 0, TWO_PI)
        start = jnp.searchsorted(extended, lo, side="left").astype(jnp.int32)
        stop = jnp.searchsorted(extended, lo + 2 * half_width, side="right").astype(jnp.int32)
        return start, stop

    dtype = lo.dtype
    if isinstance(grid, _Grid):
        if grid.theta0 is not None:
            return uniform(lo, half_width, dtype.type(grid.theta0), dtype.type(grid.step),
                           dtype.type(grid.period))
        return general(lo, half_width, jnp.asarray(grid.sorted_angles, dtype))
    return jax.lax.cond(
        grid["uniform"],
        lambda: uniform(lo, half_width, grid["theta0"], grid["step"],
                        grid["period"].astype(dtype)),
        lambda: general(lo, half_width, grid["sorted_angles"]),
    )


def credit_share(z2_alpha: jax.Array, z2_beta: jax.Array) -> jax.Array:
    """The share of a lit ``(plane, angle)`` pair credited to the plane's vector ``α``:
    ``x_α² / (x_α² + x_β²)`` of the sample's squared coordinates on ``α`` and ``β``, ½ where both
    are 0 (math §11). Elementwise; the rest goes to ``β``."""
    norm = z2_alpha + z2_beta
    return jnp.where(norm > 0, z2_alpha / jnp.where(norm > 0, norm, 1), 0.5)
