"""Per-sample lit counts and basis-vector credits (math §11) against SRM's counts and a float64
NumPy evaluation of the definition."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import srm_jax
from srm_jax import credits as credits_module
from srm_jax.credits import credit_path, lit_credits
from srm_jax.resonance import plan_measurement
from srm_jax.sample_major import wide_value


def _rows(rng, num: int, n: int) -> np.ndarray:
    """Gaussian rows, with planted one-hot, massive-coordinate, zero and NaN rows."""
    x = rng.standard_normal((num, n)).astype(np.float32)
    x[0] = 0.0
    x[1] = np.nan
    x[2:6] = np.eye(n, dtype=np.float32)[rng.choice(n, 4, replace=False)] * [[1], [-2], [3], [5]]
    x[6:9, rng.choice(n, 3, replace=False)] += 40.0 * np.eye(3, dtype=np.float32)
    return x


def _reference(x, basis, epsilon, angles):
    """Float64 per-row lit counts and credits by the definition, every plane and angle, and
    whether each row lies within 1e-6 of the threshold somewhere (excluded from comparisons).

    In-plane coordinates (math §3.3): ``d̂·s(θ) = x cos θ − y sin θ`` with ``x = d̂·b̂_α`` and
    ``y = (d̂·b̂_β − c x)/√(1 − c²)``, ``c = b̂_α·b̂_β``."""
    b = np.asarray(basis, np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    m = b.shape[0]
    gram = b @ b.T
    pairs = np.array([(i, j) for i in range(m) for j in range(i + 1, m)
                      if abs(gram[i, j]) < 1 - 1e-6])
    d = np.asarray(x, np.float64)
    finite = np.all(np.isfinite(d), axis=1)
    d = np.where(finite[:, None], d, 0.0)
    norms = np.linalg.norm(d, axis=1, keepdims=True)
    coords = d / np.where(norms > 0, norms, 1) @ b.T  # (N, m)
    xa, xb = coords[:, pairs[:, 0]], coords[:, pairs[:, 1]]
    c = gram[pairs[:, 0], pairs[:, 1]]
    y = (xb - c * xa) / np.sqrt(1 - c * c)
    theta = np.asarray(angles, np.float64)
    dots = xa[..., None] * np.cos(theta) - y[..., None] * np.sin(theta)  # (N, P, T)
    dots[~finite] = -np.inf
    lit = np.sum(dots >= epsilon, axis=2)  # (N, P)
    near = np.any(np.abs(dots - epsilon) < 1e-6, axis=(1, 2))
    norm = xa**2 + xb**2
    share = np.where(norm > 0, xa**2 / np.where(norm > 0, norm, 1), 0.5)
    credit = np.zeros((x.shape[0], m))
    np.add.at(credit.T, pairs[:, 0], (lit * share).T)
    np.add.at(credit.T, pairs[:, 1], (lit * (1 - share)).T)
    return lit.sum(axis=1), credit, near


def _check_reference(result, x, basis, epsilon):
    """Per-row counts equal the float64 definition and credits agree with it, away from ε."""
    counts, credit, near = _reference(x, basis, epsilon, srm_jax.angle_grid())
    keep = ~near
    assert keep.mean() > 0.7
    np.testing.assert_array_equal(np.asarray(result.counts)[keep], counts[keep])
    np.testing.assert_allclose(np.asarray(result.credits)[keep], credit[keep],
                               rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(result.credits.sum(axis=1), result.counts, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("epsilon", [0.3, 0.6, 0.9])
def test_sample_major_counts_sum_to_srm_counts(rng, epsilon, monkeypatch):
    x = _rows(rng, 100, 24)
    basis = srm_jax.standard_basis(24)
    plan, _, _ = plan_measurement(x, basis, epsilon=epsilon, method="sample_major")
    assert credit_path(plan) == "sample_major"
    calls = []
    original = credits_module.sample_major_credits
    monkeypatch.setattr(credits_module, "sample_major_credits",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    # Two chunks, the second padded; a chunk size of its own also makes the plan new, so the
    # call is traced here and the spy sees the path taken.
    result = lit_credits(x, basis, epsilon=epsilon, method="sample_major", chunk_size=64)
    assert calls
    srm = srm_jax.spotlight_resonance(x, basis, epsilon=epsilon, method="sample_major")
    total = int(np.asarray(srm.counts, np.int64).sum())
    assert total > 0
    assert int(np.asarray(result.counts, np.int64).sum()) == total
    assert (result.num_planes, result.num_angles) == srm.counts.shape
    if epsilon == 0.9:
        summary = srm_jax.resonance_summary(x, basis, epsilon=epsilon, method="sample_major")
        assert int(np.asarray(wide_value(summary.plane_totals)).sum()) == total
    _check_reference(result, x, basis, epsilon)
    # One-hot rows (2-5) and rows with one massive coordinate (6-8) credit their own neuron
    # (the sum of its ± vectors) with at least 99 % of their lit pairs.
    credit = np.asarray(result.credits)[2:9]
    neuron = np.abs(x[2:9]).argmax(axis=1)
    own = credit[np.arange(7), neuron] + credit[np.arange(7), 24 + neuron]
    counts = np.asarray(result.counts)[2:9]
    assert np.all(counts > 0)
    assert np.all(own >= 0.99 * counts)


def test_auto_takes_the_sample_major_path_for_a_wide_basis(rng):
    x = _rows(rng, 120, 64)
    basis = srm_jax.standard_basis(64)
    assert credit_path(plan_measurement(x, basis, epsilon=0.9)[0]) == "sample_major"
    assert credit_path(plan_measurement(x, basis, epsilon=0.9, method="direct")[0]) == "direct"
    small = srm_jax.standard_basis(8)  # too few planes for the sample-major kernel to pay
    assert credit_path(plan_measurement(x[:, :8], small, epsilon=0.9)[0]) == "direct"


def test_direct_counts_sum_to_srm_counts(rng):
    basis = srm_jax.random_basis(jax.random.key(int(rng.integers(1 << 30))), 10, 8)
    x = _rows(rng, 80, 8)
    for epsilon in (0.3, 0.9, -0.2):
        plan, _, _ = plan_measurement(x, basis, epsilon=epsilon)
        assert credit_path(plan) == "direct"
        result = lit_credits(x, basis, epsilon=epsilon)
        srm = srm_jax.spotlight_resonance(x, basis, epsilon=epsilon, method="direct")
        assert int(result.counts.sum()) == int(srm.counts.sum())
        np.testing.assert_allclose(result.credits.sum(axis=1), result.counts, rtol=1e-5)


@pytest.mark.parametrize("epsilon", [0.3, 0.9])
def test_direct_path_matches_the_float64_definition(rng, epsilon):
    basis = rng.standard_normal((10, 8)).astype(np.float32)
    x = _rows(rng, 80, 8)
    _check_reference(lit_credits(x, basis, epsilon=epsilon), x, basis, epsilon)


def test_jit_and_nan_rows(rng):
    x = _rows(rng, 80, 8)
    x[10, 3] = np.inf
    random = srm_jax.random_basis(jax.random.key(1), 10, 8)
    jitted = jax.jit(lit_credits, static_argnames=("epsilon", "planes", "method", "chunk_size"))
    eager = lit_credits(x, random, epsilon=0.5)
    traced = jitted(x, random, epsilon=0.5)
    np.testing.assert_array_equal(np.asarray(traced.counts), np.asarray(eager.counts))
    np.testing.assert_allclose(traced.credits, eager.credits, rtol=1e-6)
    for result in (eager, lit_credits(x, random, epsilon=-0.3)):
        assert np.asarray(result.counts)[[1, 10]].tolist() == [0, 0]
        assert not np.any(np.asarray(result.credits)[[1, 10]])
    assert np.asarray(eager.counts)[0] == 0  # a zero row lights nothing at ε > 0
    # The sample-major path under jit (the ± basis closed over), NaN rows included.
    x = _rows(rng, 100, 24)
    standard = srm_jax.standard_basis(24)
    settings = dict(epsilon=0.6, method="sample_major", chunk_size=64)
    eager = lit_credits(x, standard, **settings)
    traced = jax.jit(lambda x: lit_credits(x, standard, **settings))(x)
    np.testing.assert_array_equal(np.asarray(traced.counts), np.asarray(eager.counts))
    np.testing.assert_allclose(traced.credits, eager.credits, rtol=1e-6)
    assert np.asarray(eager.counts)[1] == 0 and not np.any(np.asarray(eager.credits)[1])


def test_sample_major_path_refuses_negative_epsilon(rng):
    with pytest.raises(ValueError, match="epsilon > 0"):
        lit_credits(_rows(rng, 20, 8), srm_jax.standard_basis(8), epsilon=-0.5,
                    method="sample_major")
