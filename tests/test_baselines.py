"""The benchmark baselines count what srm-jax counts, so that timings compare like with like."""

import jax
import numpy as np
import pytest

import srm_jax
from benchmarks.baselines import published_counts, published_rotations, vectorised_counts
from tests.conftest import (
    reference_count_bounds,
    reference_dots,
    reference_pairs,
    reference_spotlights,
)


def make_data(rng, num, n, m):
    """Activations clustered around a non-orthogonal basis, with a zero row and a NaN row."""
    basis = rng.standard_normal((m, n))
    basis[1:] += 0.5 * basis[:-1]
    unit = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    data = 3 * unit[rng.integers(0, m, num)] + 0.7 * rng.standard_normal((num, n))
    data[0] = 0.0
    data[1, 2] = np.nan
    return data.astype(np.float32), basis.astype(np.float32)


def within_reference(counts, data, basis, pairs, angles, epsilon, tol):
    dots = reference_dots(data, basis, pairs, angles)
    low, high, _ = reference_count_bounds(dots, epsilon, tol)
    return np.all(counts >= low) and np.all(counts <= high)


def test_published_spotlight_is_the_rotated_basis_vector(rng):
    # R(θ) from np.linalg.eig is not orthogonal for n > 3 (the (n−2)-fold zero eigenspace gets a
    # non-orthonormal basis), but R(θ) b̂_α, all the algorithm uses, is exact.
    n = 9
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    angles = np.linspace(0, 2 * np.pi, 13)
    got = published_rotations(a, b, angles) @ (a / np.linalg.norm(a))
    want = reference_spotlights(np.stack([a, b]), np.array([[0, 1]]), angles)[0]
    np.testing.assert_allclose(got, want, atol=1e-9)


@pytest.mark.parametrize("kind", ["comb", "perm"])
def test_baselines_match_the_float64_definition(rng, kind):
    data, basis = make_data(rng, 250, 6, 5)
    pairs = reference_pairs(5, kind)
    angles = np.asarray(srm_jax.angle_grid(37), np.float64)
    dots = reference_dots(data, basis, pairs, angles)
    for epsilon in (-0.4, 0.0, 0.6, 0.9):
        published = published_counts(data, basis, pairs, angles, epsilon)
        two_step = published_counts(data, basis, pairs, angles, epsilon, form="two-step")
        vectorised = vectorised_counts(data, basis, pairs, angles, epsilon, chunk_elements=500)
        for counts, tol in ((published, 1e-9), (two_step, 1e-9), (vectorised, 5e-5)):
            low, high, _ = reference_count_bounds(dots, epsilon, tol)
            assert np.all(counts >= low) and np.all(counts <= high), epsilon


def test_vectorised_baseline_handles_arbitrary_angles(rng):
    data, basis = make_data(rng, 300, 7, 4)
    pairs = reference_pairs(4, "perm")
    angles = rng.uniform(-9, 9, 29).astype(np.float32)
    counts = vectorised_counts(data, basis, pairs, angles, 0.7)
    assert within_reference(counts, data, basis, pairs, angles.astype(np.float64), 0.7, 5e-5)


def test_baselines_agree_with_the_engine(rng):
    data, basis = make_data(rng, 1500, 10, 8)
    angles = srm_jax.angle_grid(64)
    engine = srm_jax.spotlight_resonance(data, basis, epsilon=0.8, angles=angles, planes="comb")
    counts = np.asarray(engine.counts)
    pairs = np.asarray(engine.planes)
    vectorised = vectorised_counts(data, basis, pairs, np.asarray(angles), 0.8)
    published = published_counts(data, basis, pairs[:6], np.asarray(angles, np.float64), 0.8)
    # They may differ only for samples within rounding of ε: a handful of 1,499.
    for baseline, want in ((vectorised, counts), (published, counts[:6])):
        assert np.abs(baseline - want).max() <= 2
        assert np.mean(baseline == want) > 0.98
    assert counts.sum() > 0


@pytest.mark.parametrize("layout", ["endpoint", "no-endpoint", "offset", "arbitrary"])
def test_engine_agrees_with_the_baseline_for_every_angle_layout(rng, layout):
    # The arc kernel bins uniform full-turn grids by arithmetic and others by binary search,
    # decided before tracing for concrete angles and inside the program for traced ones.
    data, basis = make_data(rng, 700, 6, 7)
    angles = {
        "endpoint": np.linspace(0, 2 * np.pi, 45),
        "no-endpoint": np.linspace(0, 2 * np.pi, 45, endpoint=False),
        "offset": np.linspace(-1.0, 2 * np.pi - 1.0, 45),
        "arbitrary": rng.uniform(-7, 7, 45),
    }[layout].astype(np.float32)
    kwargs = dict(epsilon=0.6, planes="perm", signed=True, method="arc", chunk_size=200)
    concrete = srm_jax.spotlight_resonance(data, basis, angles=angles, **kwargs)
    traced = jax.jit(
        lambda a: srm_jax.spotlight_resonance(data, basis, angles=a, **kwargs)
    )(angles)
    np.testing.assert_array_equal(concrete.counts, traced.counts)
    np.testing.assert_array_equal(concrete.negative_counts, traced.negative_counts)
    want = vectorised_counts(data, basis, np.asarray(concrete.planes), angles, 0.6)
    assert np.abs(np.asarray(concrete.counts) - want).max() <= 2
    assert np.mean(np.asarray(concrete.counts) == want) > 0.98
    # Negative counts: the data reflected through the origin lights the same arcs.
    negative = vectorised_counts(-data, basis, np.asarray(concrete.planes), angles, 0.6)
    assert np.abs(np.asarray(concrete.negative_counts) - negative).max() <= 2
