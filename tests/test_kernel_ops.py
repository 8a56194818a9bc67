"""The exact kernels' shared operations (``srm_jax.kernel_ops``), each against a direct NumPy
evaluation in float64 or int64 on random inputs: sample chunks, prefix sums, compaction (also
under emulated TF32/bfloat16 products), ``atan2`` and the angle bins of an arc."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.precision import emulate_reduced_precision
from srm_jax import kernel_ops
from srm_jax.kernel_ops import angle_layout, grid_bins, pad_samples

TWO_PI = 2 * math.pi


# --- sample chunks ------------------------------------------------------------------------------


@pytest.mark.parametrize("num", [0, 1, 7, 8, 9, 23])
def test_pad_samples_chunks_rows_in_order_and_pads_with_invalid_rows(rng, num):
    chunk, n = 8, 3
    unit = rng.standard_normal((num, n)).astype(np.float32)
    valid = rng.random(num) < 0.7
    groups = rng.integers(0, 4, num).astype(np.int32)
    u, v, g = pad_samples(jnp.asarray(unit), jnp.asarray(valid), jnp.asarray(groups), chunk)
    num_chunks = max(1, -(-num // chunk))
    assert u.shape == (num_chunks, chunk, n)
    assert v.shape == g.shape == (num_chunks, chunk)
    rows = num_chunks * chunk
    expect_u = np.zeros((rows, n), np.float32)
    expect_u[:num] = unit
    expect_v = np.zeros(rows, bool)
    expect_v[:num] = valid
    expect_g = np.zeros(rows, np.int32)
    expect_g[:num] = groups
    np.testing.assert_array_equal(np.asarray(u).reshape(rows, n), expect_u)
    np.testing.assert_array_equal(np.asarray(v).ravel(), expect_v)
    np.testing.assert_array_equal(np.asarray(g).ravel(), expect_g)


# --- prefix sums and compaction -----------------------------------------------------------------


def _check_compact(flags, compact, count):
    expect = np.flatnonzero(flags)
    assert int(count) == expect.size
    np.testing.assert_array_equal(np.asarray(compact)[:expect.size], expect)


@functools.partial(jax.jit, static_argnums=1)
def _prefix_and_compact(x, portable):
    sums = kernel_ops._prefix_sums_2d(x, portable)
    compact = kernel_ops._compact(x > 0, x.shape[0] + 1, portable)
    return sums, compact, (None if portable else kernel_ops._prefix_sum(x))


@pytest.mark.parametrize("portable", [False, True])
@pytest.mark.parametrize("size", [1, 129, 20_000])  # one block, two, 157 (offsets past 2**11)
def test_prefix_sums_and_compaction_match_int64_numpy(rng, size, portable):
    density = rng.choice([0.05, 0.5]) if size > 1 else 1.0
    x = (rng.random(size) < density) * rng.integers(1, 3, size)
    (inclusive, exclusive), (compact, count), flat = _prefix_and_compact(
        jnp.asarray(x, jnp.int32), portable)
    expect = np.cumsum(x.astype(np.int64))
    width = inclusive.shape[1]
    assert inclusive.shape[0] == -(-size // width)
    np.testing.assert_array_equal(np.asarray(inclusive).ravel()[:size], expect)
    np.testing.assert_array_equal(np.asarray(exclusive).ravel()[:size], expect - x)
    # The zero padding past the end carries the total along.
    np.testing.assert_array_equal(np.asarray(inclusive).ravel()[size:], expect[-1])
    if flat is not None:
        np.testing.assert_array_equal(np.asarray(flat), expect)
    assert compact.shape == (size + 1,)
    _check_compact(x > 0, compact, count)


@pytest.mark.parametrize("mode", ["bf16", "tf32"])
def test_compact_and_prefix_sums_stay_exact_under_reduced_precision_products(rng, mode):
    # 20,000 entries: block offsets reach 2**14, past the 8 (bfloat16) and 11 (TF32) mantissa
    # bits, so a product that does not ask for HIGHEST would round them.
    size = 20_000
    flags = rng.random(size) < 0.6
    x = jnp.asarray(flags)
    with emulate_reduced_precision(mode):
        compact, count = jax.jit(kernel_ops._compact, static_argnums=(1, 2))(x, size + 1, False)
        inclusive, _ = jax.jit(kernel_ops._prefix_sums_2d)(x)
        # Control: the same triangular product at the default precision, on block values past
        # 2**11, must come out rounded (the emulation is active in this test).
        width = inclusive.shape[1]
        blocks = np.pad(flags.astype(np.float32), (0, inclusive.size - size)).reshape(-1, width)
        blocks = blocks + (np.arange(len(blocks)) * width)[:, None].astype(np.float32)
        upper = np.triu(np.ones((width, width), np.float32))
        naive = jax.jit(jnp.matmul)(jnp.asarray(blocks), jnp.asarray(upper))
    _check_compact(flags, compact, count)
    expect = np.cumsum(flags.astype(np.int64))
    np.testing.assert_array_equal(np.asarray(inclusive).ravel()[:size], expect)
    assert np.any(np.asarray(naive, np.float64) != blocks.astype(np.float64) @ upper)


# --- atan2 --------------------------------------------------------------------------------------


def _atan2_inputs(rng, num=20_000):
    scale = 10.0 ** rng.uniform(-6, 3, (2, num))
    y, x = rng.standard_normal((2, num)) * scale
    special = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [1.0, 1.0],
                        [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [0.41421356, 1.0],
                        [1.0, 0.41421356], [1e-30, -1.0], [-1e-30, -1.0]])
    y = np.concatenate([y, special[:, 0]]).astype(np.float32)
    x = np.concatenate([x, special[:, 1]]).astype(np.float32)
    return y, x


def test_atan2_cpu_form_is_within_4e7_radians_of_float64(rng):
    y, x = _atan2_inputs(rng)
    got = np.asarray(jax.jit(kernel_ops._atan2)(jnp.asarray(y), jnp.asarray(x)), np.float64)
    expect = np.arctan2(y.astype(np.float64), x.astype(np.float64))
    assert np.max(np.abs(got - expect)) < 4e-7
    assert np.all(np.abs(got) <= np.float32(math.pi))


def test_atan2_portable_form_and_float64_are_arctan2(rng):
    y, x = _atan2_inputs(rng, 1000)
    portable = jax.jit(kernel_ops._atan2, static_argnums=2)(jnp.asarray(y), jnp.asarray(x), True)
    np.testing.assert_array_equal(np.asarray(portable), np.asarray(jnp.arctan2(y, x)))
    with jax.enable_x64(True):
        y64, x64 = y.astype(np.float64), x.astype(np.float64)
        got = kernel_ops._atan2(jnp.asarray(y64), jnp.asarray(x64))
        np.testing.assert_allclose(np.asarray(got), np.arctan2(y64, x64), rtol=0, atol=1e-15)


# --- angle layouts and arc bins -----------------------------------------------------------------


def _grids(rng):
    """Uniform grids with and without the endpoint (any start), and non-uniform grids."""
    t = 37
    uniform_start = float(rng.uniform(-4.0, 4.0))
    return {
        "endpoint": (np.linspace(0, TWO_PI, t), t - 1),
        "no_endpoint": (np.linspace(0, TWO_PI, t, endpoint=False), t),
        "shifted": (uniform_start + np.linspace(0, TWO_PI, t), t - 1),
        "sorted": (np.sort(rng.uniform(0, TWO_PI, t)), None),
        "unsorted": (rng.uniform(-TWO_PI, 2 * TWO_PI, t), None),
        "partial_turn": (np.linspace(0, math.pi, t), None),
    }


GRID_NAMES = ["endpoint", "no_endpoint", "shifted", "sorted", "unsorted", "partial_turn"]


def _layout(rng, name):
    """Grid ``name`` in float32, its expected period (``None``: general), its static layout
    and :func:`grid_bins` of that layout."""
    angles, period = _grids(rng)[name]
    angles32 = jnp.asarray(angles, jnp.float32)
    layout = angle_layout(angles32)
    return angles32, period, layout, grid_bins(layout, angles32)


@pytest.mark.parametrize("name", GRID_NAMES)
def test_angle_layout_and_grid_bins_against_a_direct_reading(rng, name):
    angles32, period, layout, (_, got_period, out_index) = _layout(rng, name)
    reduced = np.mod(np.asarray(angles32, np.float64), TWO_PI)
    if period is not None:  # uniform: a lattice of `period` positions a turn, angle t at t mod P
        assert layout.theta0 is not None and layout.sorted_angles is None
        assert got_period == layout.period == period
        assert layout.theta0 == pytest.approx(float(angles32[0]), abs=0)
        assert layout.step * period == pytest.approx(TWO_PI, rel=1e-6)
        np.testing.assert_array_equal(out_index, np.arange(len(angles32)) % period)
    else:  # general: bins are ranks in the angles sorted mod 2π
        assert layout.theta0 is None
        assert got_period == len(angles32)
        order = np.argsort(np.mod(np.asarray(angles32), np.float32(TWO_PI)), kind="stable")
        np.testing.assert_allclose(layout.sorted_angles, reduced[order], atol=2e-6)
        np.testing.assert_array_equal(np.asarray(layout.sorted_angles)[out_index],
                                      np.asarray(layout.sorted_angles)[np.argsort(order)])
        np.testing.assert_allclose(np.asarray(layout.sorted_angles)[out_index], reduced,
                                   atol=2e-6)
    # Traced angles: the layout is decided inside the kernel, with the same period and bins.
    seen = {}

    def traced(a):
        seen["layout"] = angle_layout(a)
        g, p, index = grid_bins(None, a)
        return g["uniform"], p, index

    uniform, traced_period, traced_index = jax.jit(traced)(angles32)
    assert seen["layout"] is None
    assert bool(uniform) == (period is not None)
    assert int(traced_period) == got_period
    np.testing.assert_array_equal(np.asarray(traced_index), np.asarray(out_index))


def _lattice_angles(layout, period):
    if layout.theta0 is not None:
        return layout.theta0 + layout.step * np.arange(period)
    return np.asarray(layout.sorted_angles, np.float64)


def _arcs_away_from_grid(rng, lattice, shift, num, margin=1e-4):
    """Arcs ``[lo, lo + 2w] + shift`` (``w < π``) with no grid angle within ``margin`` of an end."""
    lo = rng.uniform(-3 * math.pi, 2 * math.pi, num)
    half = rng.uniform(0, 0.999 * math.pi, num)
    half[: num // 8] = rng.uniform(0, 0.05, num // 8)  # short arcs, often between two angles
    for _ in range(100):
        start = lo + shift
        d0 = np.mod(lattice[None, :] - start[:, None], TWO_PI)
        d1 = np.mod(lattice[None, :] - start[:, None] - 2 * half[:, None], TWO_PI)
        near = np.any((np.minimum(d0, TWO_PI - d0) < margin)
                      | (np.minimum(d1, TWO_PI - d1) < margin), axis=1)
        if not near.any():
            return lo.astype(np.float32), half.astype(np.float32)
        lo[near] = rng.uniform(-3 * math.pi, 2 * math.pi, near.sum())
    raise AssertionError("could not draw arcs away from the grid")


@pytest.mark.parametrize("name", GRID_NAMES)
def test_arc_bins_light_exactly_the_grid_angles_on_each_arc(rng, name):
    angles32, _, layout, (_, period, out_index) = _layout(rng, name)
    lattice = _lattice_angles(layout, period)
    shifts = (0.0, math.pi)  # the positive arcs, and the negative ones (shifted by π)
    arcs = [_arcs_away_from_grid(rng, lattice, shift, 300) for shift in shifts]

    @jax.jit
    def bins(arcs, a):
        traced, _, _ = grid_bins(None, a)  # the layout decided inside the kernel
        return [[kernel_ops._arc_bins(lo, half, shift, grid) for grid in (layout, traced)]
                for (lo, half), shift in zip(arcs, shifts, strict=True)]

    for (lo, half), shift, results in zip(arcs, shifts, bins(arcs, angles32), strict=True):
        # Reference: lattice position j is on the arc when (θ_j − lo − shift) mod 2π ≤ 2w.
        offset = np.mod(lattice[None, :] - (lo.astype(np.float64) + shift)[:, None], TWO_PI)
        expect = offset <= 2 * half.astype(np.float64)[:, None]
        for start, stop in results:
            start, stop = np.asarray(start), np.asarray(stop)
            assert np.all((start >= 0) & (start <= period) & (start <= stop)
                          & (stop <= 2 * period))
            lit = np.zeros((len(lo), period), np.int64)
            for i in range(len(lo)):  # extended bins b and b + period are lattice position b
                np.add.at(lit[i], np.arange(start[i], stop[i]) % period, 1)
            np.testing.assert_array_equal(lit, expect.astype(np.int64))
        # Each grid angle reads its lattice position (the endpoint 2π shares 0's position).
        direct = np.mod(np.asarray(angles32, np.float64)[None, :]
                        - (lo.astype(np.float64) + shift)[:, None], TWO_PI)
        np.testing.assert_array_equal(expect[:, np.asarray(out_index)],
                                      direct <= 2 * half.astype(np.float64)[:, None] + 1e-9)
