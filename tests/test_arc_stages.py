"""The arc kernel's stages (sort and bound, screen, histogram), each against float64 (SPEC §5)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srm_jax import arc_kernel, kernel_ops, resonance
from srm_jax.planes import angle_grid, plane_pairs
from srm_jax.rotation import normalise_rows


def _problem(rng, m=10, n=6, num=256, spread=0.4):
    basis = rng.standard_normal((m, n))
    idx = rng.integers(0, m, num)
    x = basis[idx] / np.linalg.norm(basis[idx], axis=1, keepdims=True)
    x = x + spread * rng.standard_normal((num, n))
    x[:2] = 0.0
    return x.astype(np.float32), basis.astype(np.float32)


def _reference_r(x, basis, pairs):
    """Float64 ``r = √(x² + y²)`` of every (sample, plane): the norm of d̂'s projection."""
    d = x.astype(np.float64)
    norms = np.linalg.norm(d, axis=1, keepdims=True)
    d = np.where(norms == 0, 0, d / np.where(norms == 0, 1, norms))
    b = basis.astype(np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    a, bb = b[pairs[:, 0]], b[pairs[:, 1]]
    c = np.sum(a * bb, axis=1)
    u = (bb - c[:, None] * a) / np.sqrt(1 - c * c)[:, None]
    return np.hypot(d @ a.T, d @ u.T)  # (N, P)


@functools.partial(jax.jit, static_argnames=("layout",))
def _stages(layout, unit_basis, pairs, unit, valid, groups, epsilon):
    geometry = arc_kernel._plane_geometry(unit_basis, pairs, epsilon, unit.dtype)
    sorted_chunk = arc_kernel._arc_sort_and_bound(layout, geometry, unit_basis, unit, valid,
                                                 groups)
    queue, queued = arc_kernel._arc_screen(layout, geometry, sorted_chunk)
    return sorted_chunk, queue, queued


def _run(x, basis, epsilon, backend="cpu"):
    pairs = plane_pairs(basis.shape[0])
    layout = arc_kernel._ArcLayout(
        num_planes=pairs.shape[0], num_angles=100, m=basis.shape[0], chunk=x.shape[0],
        num_groups=1, copies=1, portable=kernel_ops.portable_kernel(backend))
    unit = normalise_rows(jnp.asarray(x))
    valid = jnp.ones(x.shape[0], bool)
    out = _stages(layout, normalise_rows(jnp.asarray(basis)), pairs, unit, valid,
                  jnp.zeros(x.shape[0], jnp.int32), epsilon)
    return layout, np.asarray(pairs), jax.tree.map(np.asarray, out)


def _tiles_with(r, order, layout, predicate):
    """Tile ids (plane · num_blocks + block) holding a sample for which ``predicate(r)``."""
    hit = predicate(r[order])  # (chunk, P), rows in sorted order
    per_block = hit.reshape(layout.num_blocks, arc_kernel.ARC_BLOCK, -1).any(axis=1)  # (B, P)
    block, plane = np.nonzero(per_block)
    return set((plane * layout.num_blocks + block).tolist())


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
@pytest.mark.parametrize("epsilon", [0.55, 0.8, 0.95])
def test_bound_keeps_every_lit_tile_and_screen_queues_exactly_the_lit_ones(rng, epsilon,
                                                                           backend):
    x, basis = _problem(rng, m=10, n=16, num=640, spread=0.15)
    layout, pairs, (sorted_chunk, queue, queued) = _run(x, basis, epsilon, backend)
    order = sorted_chunk.order
    assert sorted(order.tolist()) == list(range(x.shape[0]))  # a permutation
    r = _reference_r(x, basis, pairs)
    live = set(sorted_chunk.live_tiles[: int(sorted_chunk.num_live)].tolist())
    tol = 1e-5
    surely_lit = _tiles_with(r, order, layout, lambda r: r >= epsilon + tol)
    maybe_lit = _tiles_with(r, order, layout, lambda r: r >= epsilon - tol)
    assert surely_lit and surely_lit <= live  # the bound never rules out a lit tile
    if epsilon >= 0.8:
        assert len(live) < layout.num_tiles  # and it rules something out
    queued_tiles = queue[: int(queued)].tolist()
    assert len(queued_tiles) == len(set(queued_tiles))
    assert surely_lit <= set(queued_tiles) <= maybe_lit  # the screen is the exact test
    assert queued_tiles == sorted(queued_tiles)  # in tile order


def test_histogram_and_fold_count_the_queued_arcs(rng):
    """Stages 3-4 on the screen's queue give the float64 counts of Eqn. 2 (SPEC §5 bounds)."""
    from conftest import reference_count_bounds, reference_dots, reference_pairs

    x, basis = _problem(rng, m=7, n=5, num=192)
    eps = 0.7
    angles = np.asarray(angle_grid(), np.float32)
    pairs = plane_pairs(7)
    layout = arc_kernel._ArcLayout(num_planes=21, num_angles=100, m=7, chunk=192, num_groups=1,
                                  copies=1, portable=False)
    grid = resonance.angle_layout(angles, np.float32)
    unit_basis = normalise_rows(jnp.asarray(basis))
    unit = normalise_rows(jnp.asarray(x))

    @jax.jit
    def counts(unit):
        geometry = arc_kernel._plane_geometry(unit_basis, pairs, eps, unit.dtype)
        chunk = arc_kernel._arc_sort_and_bound(layout, geometry, unit_basis, unit,
                                              jnp.ones(192, bool), jnp.zeros(192, jnp.int32))
        queue, queued = arc_kernel._arc_screen(layout, geometry, chunk)
        diff = arc_kernel._arc_histogram(layout, geometry, chunk, queue, queued, grid,
                                        grid.period, jnp.zeros(layout.group_stride, jnp.int32))
        return arc_kernel._fold_histogram(layout, diff, grid.period,
                                         np.arange(100) % grid.period)[0, 0]

    got = np.asarray(counts(unit))
    low, high, _ = reference_count_bounds(
        reference_dots(x, basis, reference_pairs(7, "comb"), angles), eps, 1e-5)
    assert got.sum() > 0
    assert np.all((low <= got) & (got <= high))
