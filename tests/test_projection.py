import jax
import numpy as np
import pytest
import scipy.integrate

import srm_jax


def _numpy_coordinates(data, basis, pairs):
    """Gram–Schmidt frame coordinates in float64: x = d̂·b̂_α, y = d̂·û (SPEC §3)."""
    b = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    norms = np.linalg.norm(data, axis=1, keepdims=True)
    d = data / np.where(norms == 0, 1, norms)
    a, bb = b[pairs[:, 0]], b[pairs[:, 1]]
    u = bb - np.sum(a * bb, axis=1, keepdims=True) * a
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return d @ a.T, d @ u.T


def test_plane_projection_matches_numpy(rng):
    n, m, num = 7, 5, 300
    basis = rng.standard_normal((m, n))
    basis[1] += 1.2 * basis[0]  # strongly non-orthogonal
    data = rng.standard_normal((num, n))
    data[:40, :2] *= 6.0  # some samples close to a plane
    data[5] = 0.0
    data[6, 3] = np.nan
    pairs = np.array([[0, 1], [2, 4], [1, 3]])
    eps = 0.5
    x, y, mask = srm_jax.plane_projection(data, basis, pairs, min_radius=eps)
    assert x.shape == y.shape == mask.shape == (num, 3)
    wx, wy = _numpy_coordinates(np.nan_to_num(data), basis, pairs)
    usable = np.all(np.isfinite(data), axis=1) & np.any(data != 0, axis=1)
    np.testing.assert_allclose(np.asarray(x)[usable], wx[usable], atol=2e-6)
    np.testing.assert_allclose(np.asarray(y)[usable], wy[usable], atol=2e-6)
    r = np.hypot(wx, wy)
    clear = np.abs(r - eps) > 1e-5
    np.testing.assert_array_equal(np.asarray(mask)[clear], (usable[:, None] & (r >= eps))[clear])
    # One pair gives 1-D outputs equal to the matching column.
    x1, y1, mask1 = srm_jax.plane_projection(data, basis, np.array([2, 4]), min_radius=eps)
    assert x1.shape == (num,)
    np.testing.assert_array_equal(np.asarray(mask1), np.asarray(mask[:, 1]))
    np.testing.assert_allclose(np.asarray(x1), np.asarray(x[:, 1]))


def test_projection_density_counts_match_histogram2d(rng):
    n, m, num, bins = 5, 4, 2000, 12
    basis = rng.standard_normal((m, n))
    basis[3] += 0.7 * basis[2]
    data = rng.standard_normal((num, n))
    pairs = np.array([[0, 1], [2, 3]])
    eps = 0.3
    density = srm_jax.projection_density(jax.random.key(0), data, basis, pairs, min_radius=eps,
                                         bins=bins, num_reference=1 << 16)
    assert density.counts.shape == (2, bins, bins) and density.expected.shape == (bins, bins)
    wx, wy = _numpy_coordinates(data, basis, pairs)
    edges = np.linspace(-1, 1, bins + 1)
    for p in range(2):
        keep = np.hypot(wx[:, p], wy[:, p]) >= eps
        want, _, _ = np.histogram2d(wy[keep, p], wx[keep, p], bins=[edges, edges])
        # float32 vs float64 coordinates may move a sample across an edge: allow a couple.
        assert np.abs(np.asarray(density.counts[p]) - want).sum() <= 4
    assert int(density.num_samples) == num
    b = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(density.cosines), np.sum(b[[0, 2]] * b[[1, 3]], 1),
                               atol=1e-6)


def test_isotropic_reference_matches_analytic_density(rng):
    n, bins, eps = 6, 8, 0.25
    num = 5000
    data = rng.standard_normal((num, n))  # isotropic
    basis = rng.standard_normal((3, n))
    density = srm_jax.projection_density(jax.random.key(1), data, basis, np.array([0, 1]),
                                         min_radius=eps, bins=bins, num_reference=1 << 20)
    expected = np.asarray(density.expected, np.float64)
    # Fraction of isotropic directions with r >= eps: P(r² >= eps²) = (1 - eps²)^((n-2)/2).
    np.testing.assert_allclose(expected.sum() / num, (1 - eps**2) ** ((n - 2) / 2), rtol=5e-3)
    # Bin-integrated analytic density (n = 6: smooth, (1 - r²) on the disc) on inner bins
    # that do not meet the eps circle.
    edges = np.linspace(-1, 1, bins + 1)
    for iy, ix in ((4, 5), (5, 6), (2, 3), (6, 6), (0, 3)):
        # Midpoint rule on a 400 x 400 sub-grid of the bin; SPEC-independent transcription of
        # the density, (n - 2)/(2π) (1 - r²)^((n-4)/2) on the disc, cut at r >= eps.
        sub = (np.arange(400) + 0.5) / 400
        xs = edges[ix] + (edges[ix + 1] - edges[ix]) * sub
        ys = edges[iy] + (edges[iy + 1] - edges[iy]) * sub
        r2 = xs[None, :] ** 2 + ys[:, None] ** 2
        keep = (r2 >= eps**2) & (r2 < 1)
        p = (n - 2) / (2 * np.pi) * np.where(keep, 1 - r2, 0) ** ((n - 4) / 2)
        mass = p.mean() * (edges[1] - edges[0]) ** 2
        want = num * mass
        reference_count = mass * (1 << 20)
        assert abs(expected[iy, ix] - want) <= 4 * want / np.sqrt(reference_count) + 1e-3
    # Isotropic data: counts / expected ≈ 1 where the expectation is large.
    ratio = np.asarray(density.ratio)[0]
    big = expected > 100
    assert abs(np.mean(ratio[big]) - 1) < 0.05


def test_isotropic_plane_density_formula(rng):
    # Radial law r² ~ Beta(1, (n-2)/2) against full Gaussian samples, and unit mass.
    for n in (3, 4, 9):
        g = rng.standard_normal((100_000, n))
        r2 = (g[:, 0] ** 2 + g[:, 1] ** 2) / np.sum(g * g, axis=1)
        t = np.array([0.05, 0.2, 0.5, 0.8])
        np.testing.assert_allclose(np.mean(r2[:, None] <= t, 0), 1 - (1 - t) ** ((n - 2) / 2),
                                   atol=0.005)
        # Unit mass: ∫ 2π r p(r) dr with r = sin t (smooth even for n = 3).
        t = np.linspace(0, np.pi / 2, 4001)[:-1]
        r = np.sin(t)
        p = np.asarray(srm_jax.isotropic_plane_density(n, r, np.zeros_like(r)), np.float64)
        mass = scipy.integrate.simpson(2 * np.pi * r * p * np.cos(t), x=t)
        assert mass == pytest.approx(1.0, abs=2e-3)
    with pytest.raises(ValueError):
        srm_jax.isotropic_plane_density(2, 0.0, 0.0)
