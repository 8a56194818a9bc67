"""The arc kernel (math §5): each sample lights a plane on one arc of angles, histogrammed.

``d̂·s(θ) = r cos(θ + φ)``, so a sample lights the spotlight of plane ``(α, β)`` on one arc of
angles; the arcs of all samples are histogrammed onto the grid with a difference array. Work is
organised in (plane, block of samples) tiles, skipped by a bound on ``r`` (see
:func:`arc_counts`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from srm_jax._precision import exact_matmul
from srm_jax.kernel_ops import (
    _arc_bins,
    _atan2,
    _compact,
    grid_bins,
    pad_samples,
    portable_kernel,
)
from srm_jax.rotation import _cosine_and_sine

# Arc kernel work units (tuned on CPU; see benchmarks/RESULTS.md): samples per block (the unit of
# work the kernel skips or evaluates), (plane, block) tiles per chunk of samples (the per-chunk
# temporaries are a few arrays of this many elements), and sample-plane pairs per step of the
# exact screening of tiles and of the arc histogram.
ARC_BLOCK = 64
ARC_CHUNK_TILES = 1 << 21
ARC_SCREEN_PAIRS = 1 << 17
ARC_STEP_PAIRS = 1 << 16


@dataclasses.dataclass(frozen=True)
class _ArcLayout:
    """The arc kernel's static work units for one problem (sizes known before tracing).

    A chunk of ``chunk`` samples is cut into ``num_blocks`` blocks of ``ARC_BLOCK``; a tile is a
    (plane, block) pair, ``num_tiles = P · num_blocks`` per chunk. Tiles are screened
    ``tiles_per_screen`` and histogrammed ``tiles_per_step`` at a time. The difference array
    holds, per group and per copy (the second copy is signed SRM's negative arcs), one row of
    ``width = 2T + 1`` extended bins per plane.
    """

    num_planes: int
    num_angles: int
    m: int
    chunk: int
    num_groups: int
    copies: int
    portable: bool

    @property
    def num_blocks(self) -> int:
        return self.chunk // ARC_BLOCK

    @property
    def num_tiles(self) -> int:
        return self.num_planes * self.num_blocks

    @property
    def tiles_per_step(self) -> int:
        return max(1, min(self.num_tiles, ARC_STEP_PAIRS // ARC_BLOCK))

    @property
    def tiles_per_screen(self) -> int:
        return max(1, min(self.num_tiles, ARC_SCREEN_PAIRS // ARC_BLOCK))

    @property
    def queue_size(self) -> int:
        return self.num_tiles + max(self.tiles_per_screen, self.tiles_per_step)

    @property
    def width(self) -> int:
        return 2 * self.num_angles + 1

    @property
    def group_stride(self) -> int:
        return self.copies * self.num_planes * self.width


class _PlaneGeometry(NamedTuple):
    """Per-plane constants of the arc form (math §5) and the threshold."""

    alpha: jax.Array  # (P,) int32
    beta: jax.Array  # (P,) int32
    c: jax.Array  # (P,) b̂_α·b̂_β
    inv_sine: jax.Array  # (P,) 1/√(1 − c²)
    bound_scale: jax.Array  # (P,) inflated 1/(1 − c²) of the tile bound
    eps: jax.Array  # scalar ε
    eps2: jax.Array  # scalar ε²


class _SortedChunk(NamedTuple):
    """One chunk after :func:`_arc_sort_and_bound`: projections in sorted blocks, live tiles."""

    proj: jax.Array  # (m · num_blocks, ARC_BLOCK) d̂·b̂_k, rows k · num_blocks + block
    valid_blocks: jax.Array  # (num_blocks, ARC_BLOCK) bool
    group_blocks: jax.Array  # (num_blocks, ARC_BLOCK) int32
    live_tiles: jax.Array  # (num_tiles + tiles_per_screen,) tile ids the bound kept, in order
    num_live: jax.Array  # scalar int32
    order: jax.Array  # (chunk,) the chunk's samples in sorted order (block b: b·ARC_BLOCK...)


def _plane_geometry(unit_basis, pairs, epsilon, dtype) -> _PlaneGeometry:
    alpha, beta = pairs[:, 0], pairs[:, 1]
    c, sine = _cosine_and_sine(unit_basis[alpha], unit_basis[beta])
    inv_sine = 1 / sine
    eps = jnp.asarray(epsilon, dtype)
    # r² = (x_α² + x_β² − 2c x_α x_β)/(1 − c²) ≤ (A² + B² + 2|c|AB)/(1 − c²) for |x_α| ≤ A,
    # |x_β| ≤ B; inflated so that rounding never rules out a pair the exact test would keep.
    return _PlaneGeometry(alpha, beta, c, inv_sine, (1 + 1e-4) * inv_sine * inv_sine, eps,
                          eps * eps)


def _arc_sort_and_bound(layout: _ArcLayout, geometry: _PlaneGeometry, unit_basis, unit_chunk,
                        valid_chunk, group_chunk) -> _SortedChunk:
    """Stage 1: sort a chunk's samples by nearest basis vector; keep the tiles the bound allows.

    Samples near the same basis vector side by side, so that lit pairs fill few tiles. A tile
    (plane, block) is live when the bound on ``r`` over the block (from the block's largest
    ``|d̂·b̂_α|`` and ``|d̂·b̂_β|``) reaches ε (every tile when ε ≤ 0) and the block holds a
    valid sample.
    """
    m, chunk, num_blocks = layout.m, layout.chunk, layout.num_blocks
    dtype = unit_chunk.dtype
    proj = exact_matmul(unit_basis, unit_chunk.T)  # (m, chunk); left-out rows are zero
    # The key is the index of the largest |d̂·b̂_k|; on CPU by a matmul (XLA:CPU's argmax is
    # several times slower), where ties (zero rows) give a sum of indices, clipped. The key
    # only orders the samples: any key gives the same counts.
    magnitude = jnp.abs(proj)
    if layout.portable:
        key = jnp.argmax(magnitude, axis=0).astype(jnp.int32)
    else:
        is_top = (magnitude == jnp.max(magnitude, axis=0)).astype(dtype)
        key = exact_matmul(jnp.arange(m, dtype=dtype), is_top)
        key = jnp.minimum(key, m - 1).astype(jnp.int32)
    if m * chunk < 2**31:  # one int32 sort of (key, index) packed: faster than argsort
        order = jnp.sort(key * chunk + jnp.arange(chunk, dtype=jnp.int32)) % chunk
    else:
        order = jnp.argsort(key)
    proj = exact_matmul(unit_basis, unit_chunk[order].T).reshape(m * num_blocks, ARC_BLOCK)
    valid_blocks = valid_chunk[order].reshape(num_blocks, ARC_BLOCK)
    group_blocks = group_chunk[order].reshape(num_blocks, ARC_BLOCK).astype(jnp.int32)
    top = jnp.max(jnp.abs(proj), axis=1).reshape(m, num_blocks)
    top_a, top_b = top[geometry.alpha], top[geometry.beta]
    bound = top_a * top_a + top_b * top_b + 2 * jnp.abs(geometry.c)[:, None] * top_a * top_b
    live = (bound * geometry.bound_scale[:, None] >= geometry.eps2) | (geometry.eps <= 0)
    live = (live & jnp.any(valid_blocks, axis=1)[None, :]).ravel()
    live_tiles, num_live = _compact(live, layout.num_tiles + layout.tiles_per_screen,
                                    layout.portable)
    return _SortedChunk(proj, valid_blocks, group_blocks, live_tiles, num_live, order)


def _tile_coordinates(layout: _ArcLayout, geometry: _PlaneGeometry, sorted_chunk: _SortedChunk,
                      tiles):
    """Plane, block and every sample's in-plane ``(x, y)`` (math §5) of ``tiles``."""
    num_blocks = layout.num_blocks
    plane, block = tiles // num_blocks, tiles % num_blocks
    rows_a = geometry.alpha[plane] * num_blocks + block
    rows_b = geometry.beta[plane] * num_blocks + block
    x = sorted_chunk.proj.at[rows_a].get(mode="promise_in_bounds")
    y = sorted_chunk.proj.at[rows_b].get(mode="promise_in_bounds")
    y = (y - geometry.c[plane][:, None] * x) * geometry.inv_sine[plane][:, None]
    return plane, block, x, y


def _lights(geometry: _PlaneGeometry, x, y, live):
    """Every angle lit when r ≤ −ε (ε ≤ 0); none when r < ε; otherwise one arc."""
    eps, eps2 = geometry.eps, geometry.eps2
    r2 = x * x + y * y
    full = live & (eps <= 0) & (r2 <= eps2)
    partial = live & ~full & ((eps <= 0) | (r2 >= eps2))
    return r2, full, partial


def _arc_screen(layout: _ArcLayout, geometry: _PlaneGeometry, sorted_chunk: _SortedChunk):
    """Stage 2: the exact test on the live tiles; returns the queue of lit tiles and its length.

    A tile is lit when one of its valid samples lights its plane on some angle.
    """
    per = layout.tiles_per_screen

    def screen(state):
        i, queue, queued = state
        tiles = jax.lax.dynamic_slice(sorted_chunk.live_tiles, (i * per,), (per,))
        in_range = i * per + jnp.arange(per) < sorted_chunk.num_live
        _, block, x, y = _tile_coordinates(layout, geometry, sorted_chunk, tiles)
        live = sorted_chunk.valid_blocks[block] & in_range[:, None]
        _, full, partial = _lights(geometry, x, y, live)
        lit, num_lit = _compact(jnp.any(full | partial, axis=1), per + 1, layout.portable)
        queue = jax.lax.dynamic_update_slice(queue, tiles[lit[:per]], (queued,))
        return i + 1, queue, queued + num_lit

    screen_steps = -(-sorted_chunk.num_live // per)
    _, queue, queued = jax.lax.while_loop(
        lambda s: s[0] < screen_steps, screen,
        (jnp.int32(0), jnp.zeros(layout.queue_size, jnp.int32), jnp.int32(0)),
    )
    return queue, queued


def _arc_histogram(layout: _ArcLayout, geometry: _PlaneGeometry, sorted_chunk: _SortedChunk,
                   queue, queued, grid, period, diff):
    """Stage 3: the arcs of the queued tiles' samples, +1/−1 into the difference array ``diff``.

    ``diff`` is int32 ``(G · copies · P · width,)`` over two turns of extended bins
    (:func:`_arc_bins`); :func:`_fold_histogram` turns it into counts.
    """
    per, width = layout.tiles_per_step, layout.width
    eps, eps2 = geometry.eps, geometry.eps2

    def step(state):
        i, diff = state
        tiles = jax.lax.dynamic_slice(queue, (i * per,), (per,))
        in_range = i * per + jnp.arange(per) < queued
        plane, block, x, y = _tile_coordinates(layout, geometry, sorted_chunk, tiles)
        live = sorted_chunk.valid_blocks[block] & in_range[:, None]
        r2, full, partial = _lights(geometry, x, y, live)
        phi = _atan2(y, x, layout.portable)
        half_width = _atan2(
            jnp.sqrt(jnp.maximum(r2 - eps2, 0)), jnp.broadcast_to(eps, x.shape), layout.portable
        )
        lo = -phi - half_width
        base = plane[:, None] * width
        if layout.num_groups > 1:
            base = base + sorted_chunk.group_blocks[block] * layout.group_stride
        starts, stops = [], []
        # d̂·s ≤ −ε  ⟺  (−d̂)·s ≥ ε: the negative arcs are the same arcs shifted by π.
        for copy, shift in enumerate((0.0, math.pi)[:layout.copies]):
            start, stop = _arc_bins(lo, half_width, shift, grid)
            start = jnp.where(partial, start, 0)
            stop = jnp.where(partial, stop, jnp.where(full, period, 0))
            offset = base + copy * layout.num_planes * width
            starts.append((offset + start).ravel())
            stops.append((offset + stop).ravel())
        diff = diff.at[jnp.concatenate(starts)].add(1, mode="promise_in_bounds")
        diff = diff.at[jnp.concatenate(stops)].add(-1, mode="promise_in_bounds")
        return i + 1, diff

    num_steps = -(-queued // per)
    _, diff = jax.lax.while_loop(lambda s: s[0] < num_steps, step, (jnp.int32(0), diff))
    return diff


def _fold_histogram(layout: _ArcLayout, diff, period, out_index):
    """Stage 4: prefix sums of the difference array, two turns folded, bins to grid angles.

    Returns int32 ``(G, copies, P, T)`` counts.
    """
    extended = jnp.cumsum(
        diff.reshape(layout.num_groups, layout.copies, layout.num_planes, layout.width), axis=-1
    )
    # Lattice position j collects extended bins j and j + period.
    folded = extended[..., :layout.num_angles] + jax.lax.dynamic_slice_in_dim(
        extended, period, layout.num_angles, axis=-1
    )
    return folded[..., out_index]


def arc_counts(
    unit, valid, groups, num_groups, unit_basis, pairs, angles, epsilon, signed, chunk, grid=None,
    backend="cpu",
):
    """Counts by the arc form (math §5): a histogram of each sample's arc of lit angles.

    Sample ``d`` lights plane ``(α, β)`` on the arc ``θ ∈ [−φ − w, −φ + w]`` (mod 2π) when
    ``r ≥ ε``, at every angle when ``r ≤ −ε``, else nowhere (``x = d̂·b̂_α``, ``y = d̂·û``,
    ``r = √(x² + y²)``, ``φ = atan2(y, x)``, ``w = arccos(ε/r)``). Each arc adds +1 at its first
    grid angle and −1 past its last in a difference array, whose prefix sum is the count.

    The work is organised around sparsity: a sample lights a plane only if its projection onto
    the plane reaches ε, so for ε > 0 most (sample, plane) pairs light nothing. Per chunk of
    samples, four named stages: :func:`_arc_sort_and_bound` (sort by nearest basis vector, cut
    into blocks of ``ARC_BLOCK``, rule out (plane, block) tiles by a bound on ``r``),
    :func:`_arc_screen` (the exact test on the remaining tiles), :func:`_arc_histogram` (the
    lit tiles' arcs into the difference array, ``ARC_STEP_PAIRS`` pairs at a time) and, once at
    the end, :func:`_fold_histogram`. For ε ≤ 0 every tile is evaluated.

    ``groups`` (int ``(N,)`` in ``[0, num_groups)``) splits the samples into disjoint groups whose
    counts are kept apart in the same pass; the returned counts are ``(num_groups, P, T)``.
    ``grid`` is the static :class:`_Grid` of the angles, or ``None`` to decide it when traced.
    ``backend`` picks the kernel's ops (:func:`portable_kernel`); every choice is exact.
    """
    num_angles = angles.shape[0]
    layout = _ArcLayout(
        num_planes=pairs.shape[0], num_angles=num_angles, m=unit_basis.shape[0],
        chunk=-(-chunk // ARC_BLOCK) * ARC_BLOCK, num_groups=num_groups,
        copies=2 if signed else 1, portable=portable_kernel(backend),
    )
    geometry = _plane_geometry(unit_basis, pairs, epsilon, unit.dtype)
    grid, period, out_index = grid_bins(grid, angles)

    def body(diff, chunk_data):
        sorted_chunk = _arc_sort_and_bound(layout, geometry, unit_basis, *chunk_data)
        queue, queued = _arc_screen(layout, geometry, sorted_chunk)
        return _arc_histogram(layout, geometry, sorted_chunk, queue, queued, grid, period,
                              diff), None

    diff = jnp.zeros(num_groups * layout.group_stride, jnp.int32)
    diff, _ = jax.lax.scan(body, diff, pad_samples(unit, valid, groups, layout.chunk))
    counts = _fold_histogram(layout, diff, period, out_index)
    return counts[:, 0], (counts[:, 1] if signed else None)

