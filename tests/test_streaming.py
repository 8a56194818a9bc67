"""Streaming SRM (SPEC §4: counts are additive): exact equality with the in-memory result."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from conftest import (
    SRM,
    CompileCounter,
    away_from_threshold,
    reference_count_bounds,
    reference_dots,
    reference_pairs,
)

import srm_jax
from srm_jax.streaming import accumulate_srm, add_batch_jit, fixed_size_batches, streaming_srm

# The tests share shapes (n=5, m=7, N=240, T=16, batches of 64) so that the compilations of the
# shared reference `SRM` (conftest) are reused; most streams use its "direct" method too, and the
# first test streams with the default method.
DIRECT = {"method": "direct"}
ANGLES = np.linspace(0, 2 * np.pi, 16)
EPSILONS = (0.45, 0.3, 0.2, 0.5, 0.4)  # every threshold the tests use


def _data(rng, n=5, m=7, num=240, nan_rows=5):
    basis = rng.standard_normal((m, n)).astype(np.float32)  # not orthogonal
    x = rng.standard_normal((num, n)).astype(np.float32)
    x = away_from_threshold(rng, x, basis, ANGLES, EPSILONS)
    x[rng.choice(num, nan_rows, replace=False), rng.integers(0, n)] = np.nan
    return basis, x


def _split(x, sizes):
    out, start = [], 0
    for size in sizes:
        out.append(x[start : start + size])
        start += size
    assert start == len(x)
    return out


def test_stream_equals_in_memory_and_reference(rng):
    signed = True
    basis, x = _data(rng)
    angles = ANGLES
    eps = 0.45
    batches = _split(x, [64, 64, 64, 48])  # ragged last batch
    result = accumulate_srm(iter(batches), basis, epsilon=eps, angles=angles, signed=signed)
    full = SRM(x, basis, epsilon=eps, angles=angles, signed=signed)
    np.testing.assert_array_equal(result.counts, full.counts)
    assert int(result.num_samples) == int(full.num_samples) == int(np.isfinite(x).all(1).sum())
    np.testing.assert_array_equal(result.planes, full.planes)
    # Independent float64 definition (Eqns. 2 and 4), up to rounding at the threshold.
    dots = reference_dots(x, basis, reference_pairs(basis.shape[0], "comb"), angles)
    low, high, _ = reference_count_bounds(dots, eps, 1e-5)
    assert np.all((low <= result.counts) & (result.counts <= high))
    if signed:
        np.testing.assert_array_equal(result.negative_counts, full.negative_counts)
        low, high, _ = reference_count_bounds(dots, eps, 1e-5, sign=-1)
        assert np.all((low <= result.negative_counts) & (result.negative_counts <= high))
        np.testing.assert_allclose(result.values, full.values)
    else:
        assert result.negative_counts is None


def test_update_compiles_once_for_ragged_and_oversized_batches(rng):
    basis, x = _data(rng)
    acc = streaming_srm(basis, epsilon=0.3, angles=ANGLES, **DIRECT)
    update = jax.jit(acc.update)
    # Batches of varying sizes: oversized ones are split, small ones padded + masked.
    batches = _split(x, [64, 30, 100, 9, 37])
    pieces = list(fixed_size_batches(batches, 64))
    assert [int(mask.sum()) for _, mask in pieces] == [64, 30, 64, 36, 9, 37]
    assert all(piece.shape == (64, 5) for piece, _ in pieces)
    state = update(acc.init(), *pieces[0])
    with CompileCounter() as counter:
        for piece, mask in pieces[1:]:
            state = update(state, piece, mask)
        jax.block_until_ready(state)
    assert counter.count == 0
    full = SRM(x, basis, epsilon=0.3, angles=ANGLES)
    np.testing.assert_array_equal(state.counts, full.counts)
    assert int(state.num_samples) == int(full.num_samples)


def test_mask_equals_nan_padding(rng):
    basis, x = _data(rng, num=40, nan_rows=0)
    acc = streaming_srm(basis, epsilon=0.2, angles=ANGLES)
    # compiled once for all accumulators of these shapes
    update = functools.partial(add_batch_jit, basis=basis, **DIRECT)
    padded = np.concatenate([x, rng.standard_normal((24, 5)).astype(np.float32)])
    mask = np.arange(64) < 40
    by_mask = update(acc.init(), padded, mask)
    nan_padded = np.where(mask[:, None], padded, np.nan)
    by_nan = update(acc.init(), nan_padded, np.ones(64, bool))
    np.testing.assert_array_equal(by_mask.counts, by_nan.counts)
    assert int(by_mask.num_samples) == int(by_nan.num_samples) == 40


def test_dict_batches_and_selectors(rng):
    basis, x = _data(rng, nan_rows=0)
    labels = rng.integers(0, 10, len(x))
    sizes = [64, 64, 64, 48]
    pairs = zip(_split(x, sizes), _split(labels, sizes), strict=True)
    batches = [{"image": b, "label": y} for b, y in pairs]
    angles = ANGLES
    by_key = accumulate_srm(
        iter(batches), basis, epsilon=0.5, angles=angles, select="image", **DIRECT
    )
    by_fn = accumulate_srm(
        iter(batches), basis, epsilon=0.5, angles=angles, select=lambda b: b["image"] * 2.0,
        **DIRECT,
    )
    full = SRM(x, basis, epsilon=0.5, angles=angles)
    np.testing.assert_array_equal(by_key.counts, full.counts)
    np.testing.assert_array_equal(by_fn.counts, full.counts)  # SRM ignores the scale
    # The padding of a dict batch pads every field.
    (piece, mask), *_ = fixed_size_batches([batches[3]], 64)
    assert piece["image"].shape == (64, 5) and piece["label"].shape == (64,)
    assert int(mask.sum()) == 48


def test_random_planes_fixed_once_and_state_size_constant(rng):
    basis, x = _data(rng, nan_rows=0)
    key = jax.random.key(3)
    angles = ANGLES
    acc = streaming_srm(basis, epsilon=0.4, angles=angles, max_planes=6, key=key)
    update = functools.partial(add_batch_jit, basis=basis, **DIRECT)
    state = acc.init()
    shapes = jax.tree.map(np.shape, state)
    for batch in _split(x, [64, 64, 64, 48]):
        state = update(state, batch)
    assert jax.tree.map(np.shape, state) == shapes  # memory does not grow with samples
    chosen = np.asarray(srm_jax.plane_pairs(7, max_planes=6, key=key))
    np.testing.assert_array_equal(state.planes, chosen)
    full = SRM(x, basis, epsilon=0.4, angles=angles)  # every plane, in canonical order
    rows = [list(map(tuple, np.asarray(full.planes))).index(tuple(p)) for p in chosen]
    np.testing.assert_array_equal(state.counts, np.asarray(full.counts)[rows])


def test_errors(rng):
    basis, x = _data(rng, num=10, nan_rows=0)
    acc = streaming_srm(basis, epsilon=0.4)
    with pytest.raises(ValueError, match="features"):
        acc.update(acc.init(), x[:, :3])
    with pytest.raises(ValueError, match="epsilon"):
        streaming_srm(basis, epsilon=1.5)
    with pytest.raises(ValueError, match="leading"):
        list(fixed_size_batches([{"a": x, "b": x[:3]}]))


@pytest.mark.parametrize("method", ["sample_major", "arc"])
def test_accumulate_summary_equals_the_in_memory_summary(rng, method):
    """Summaries streamed in ragged batches (and none) equal the summary of all samples."""
    from srm_jax.streaming import accumulate_summary

    n = 12
    x = rng.standard_t(3, size=(230, n)).astype(np.float32)
    x[rng.random(230) < 0.3, 4] *= 6.0  # an outlier channel: planes are lit
    x[7] = np.nan  # left out and not counted
    basis = np.concatenate([np.eye(n), -np.eye(n)]).astype(np.float32)
    kw = {"epsilon": 0.8, "method": method, "signed": method == "arc"}
    whole = srm_jax.resonance_summary(x, basis, **kw)
    streamed = accumulate_summary((x[i:i + 61] for i in range(0, 230, 61)), basis,
                                  batch_size=50, **kw)
    for field in ("curve_counts", "plane_totals", "negative_curve_counts", "num_samples"):
        a, b = getattr(whole, field), getattr(streamed, field)
        assert (a is None) == (b is None), field
        if a is not None:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=field)
    assert int(streamed.num_samples) == 229
    empty = accumulate_summary(iter([]), basis, **kw)
    assert int(empty.num_samples) == 0 and not np.any(np.asarray(empty.plane_totals))
    with pytest.raises(ValueError, match="features"):
        accumulate_summary([x[:, :5]], basis, **kw)
