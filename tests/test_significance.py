import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

import srm_jax

EPSILONS = np.array([-0.9, -0.6, -0.3, 0.0, 0.2, 0.45, 0.7, 0.85, 0.95])


def test_isotropic_expectation_closed_forms_n2_n3():
    eps = np.linspace(-1, 1, 41)
    got2 = np.asarray(srm_jax.isotropic_expectation(2, eps))
    got3 = np.asarray(srm_jax.isotropic_expectation(3, eps))
    np.testing.assert_allclose(got2, np.arccos(eps) / np.pi, atol=2e-6)
    np.testing.assert_allclose(got3, (1 - eps) / 2, atol=2e-6)


def test_isotropic_expectation_is_half_the_literal_eqn18():
    # App. F, Eqn. 18 transcribed literally (unnormalised incomplete beta, ball volumes). The
    # printed formula is twice the probability (it gives 1, not 1/2, at eps = 0); SPEC §6's
    # regularised form is half of it.
    def ball(k):
        return np.pi ** (k / 2) / scipy.special.gamma(k / 2 + 1)

    for n in (2, 3, 7, 24):
        phi = np.arccos(np.linspace(0.0, 0.99, 12))
        b = scipy.special.beta(0.5, (n + 1) / 2)
        b_inc = scipy.special.betainc(0.5, (n + 1) / 2, np.cos(phi) ** 2) * b
        eqn18 = ball(n - 1) / ball(n) * (2 / n * np.sin(phi) ** (n - 1) * np.cos(phi) + b - b_inc)
        got = np.asarray(srm_jax.isotropic_expectation(n, np.cos(phi)))
        np.testing.assert_allclose(got, eqn18 / 2, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("n", [2, 3, 5, 16, 64, 128])
def test_isotropic_expectation_matches_monte_carlo(rng, n):
    num = 40_000
    d = rng.standard_normal((num, n))
    s = rng.standard_normal(n)
    cos = (d @ s) / (np.linalg.norm(d, axis=1) * np.linalg.norm(s))
    empirical = np.mean(cos[:, None] >= EPSILONS[None, :], axis=0)
    p = np.asarray(srm_jax.isotropic_expectation(n, EPSILONS), np.float64)
    standard_error = np.sqrt(p * (1 - p) / num)
    assert np.all(np.abs(empirical - p) <= 3 * standard_error + 1e-6), (empirical, p)


def test_isotropic_expectation_vectorises_and_jits():
    eps = jnp.linspace(-1, 1, 7)
    ns = jnp.array([2.0, 10.0, 100.0])
    table = jax.jit(srm_jax.isotropic_expectation)(ns[:, None], eps[None, :])
    assert table.shape == (3, 7)
    row = jax.vmap(lambda e: srm_jax.isotropic_expectation(10, e))(eps)
    np.testing.assert_allclose(np.asarray(table[1]), np.asarray(row), atol=1e-6)
    # Monotone in epsilon, 1 at -1 and 0 at 1.
    assert np.all(np.diff(np.asarray(table), axis=1) <= 1e-7)
    np.testing.assert_allclose(np.asarray(table[:, 0]), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(table[:, -1]), 0.0, atol=1e-6)


def test_null_band_matches_binomial_marginals(rng):
    n, m, num_samples, eps, draws = 6, 5, 150, 0.5, 200
    basis = rng.standard_normal((m, n))
    basis[1] += 0.9 * basis[0]  # non-orthogonal
    angles = np.linspace(0, 2 * np.pi, 12)
    band = srm_jax.null_band(
        jax.random.key(int(rng.integers(1 << 30))), num_samples, jnp.asarray(basis, jnp.float32),
        epsilon=eps, angles=angles, num_resamples=draws, levels=(0.05, 0.5, 0.95), method="direct",
    )
    p = float(scipy.special.betainc((n - 1) / 2, 0.5, 1 - eps**2) / 2)
    assert band.mean.shape == (10, 12) and band.quantiles.shape == (3, 10, 12)
    np.testing.assert_allclose(float(band.expectation), p, rtol=1e-5)
    sd = np.sqrt(p * (1 - p) / num_samples)
    # Every (plane, angle) count is Binomial(N, p): check its mean, spread and quantiles.
    assert abs(float(np.mean(band.mean)) - p) < 4 * sd / np.sqrt(draws)
    np.testing.assert_allclose(np.mean(np.asarray(band.std)), sd, rtol=0.08)
    want = scipy.stats.binom.ppf([0.05, 0.5, 0.95], num_samples, p) / num_samples
    got = np.asarray(band.quantiles).mean(axis=(1, 2))
    np.testing.assert_allclose(got, want, atol=2.5 / num_samples)
    # The mean curve averages correlated planes: centred on p, narrower than one plane.
    assert abs(float(np.mean(band.curve_mean)) - p) < 4 * sd / np.sqrt(draws)
    assert np.all(np.asarray(band.curve_std) < np.asarray(band.std).mean(0))
    sup = np.asarray(band.curve_sup_quantiles)
    assert np.all(np.diff(sup) >= 0) and sup[0] >= 0


def test_null_band_signed_is_centred_on_zero(rng):
    n, num_samples, eps, draws = 4, 200, 0.6, 150
    basis = rng.standard_normal((4, n))
    band = srm_jax.null_band(
        jax.random.key(3), num_samples, basis, epsilon=eps, signed=True, num_resamples=draws,
        angles=np.linspace(0, 2 * np.pi, 8), method="direct",
    )
    p = float(srm_jax.isotropic_expectation(n, eps))
    assert float(band.expectation) == 0.0
    # (#pos - #neg)/N with P(pos) = P(neg) = p, exclusive for eps > 0: variance 2p/N.
    sd = np.sqrt(2 * p / num_samples)
    assert abs(float(np.mean(band.mean))) < 4 * sd / np.sqrt(draws)
    np.testing.assert_allclose(np.mean(np.asarray(band.std)), sd, rtol=0.1)


def test_permutation_p_value_conventions(rng):
    null = rng.normal(size=(50, 3))
    observed = np.array([0.3, -1.2, np.nan])
    for alternative, extreme in (
        ("greater", null >= observed),
        ("less", null <= observed),
        ("two-sided", np.abs(null) >= np.abs(observed)),
    ):
        got = np.asarray(srm_jax.permutation_p_value(observed, null, alternative))
        want = (1 + extreme.sum(0)) / 51
        np.testing.assert_allclose(got[:2], want[:2], rtol=1e-6)
        assert np.isnan(got[2])
    with pytest.raises(ValueError, match="alternative"):
        srm_jax.permutation_p_value(0.0, null, "both")


def _planted(rng, basis, num, noise, sign=1.0):
    unit = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    picks = rng.integers(0, basis.shape[0], num)
    return sign * unit[picks] + noise * rng.standard_normal((num, basis.shape[1]))


def test_alignment_test_detects_planted_alignment_and_anti_alignment(rng):
    n, m = 6, 7  # same shapes as the simplex below: one compilation serves both
    basis = rng.standard_normal((m, n))
    basis[2] += 0.7 * basis[1]  # non-orthogonal
    angles = np.linspace(0, 2 * np.pi, 48)
    key = jax.random.key(int(rng.integers(1 << 30)))
    aligned = _planted(rng, basis, 300, 0.15)
    test = srm_jax.alignment_test(key, aligned, basis, epsilon=0.9, num_resamples=199,
                                  angles=angles, statistic="correlation", method="direct")
    assert float(test.score) > 0.8
    assert float(test.p_value) < 0.01
    assert test.null_scores.shape == (199,)
    # The p-value counts the null scores at least as large as the observed one.
    want = (1 + np.sum(np.asarray(test.null_scores) >= float(test.score))) / 200
    np.testing.assert_allclose(float(test.p_value), want)
    # Samples at -b_i of a simplex basis are anti-aligned (App. B.4): the "less" alternative.
    simplex = np.eye(n + 1)[:, :] - 1.0 / (n + 1)
    q, _ = np.linalg.qr(simplex.T)  # an orthonormal basis of the sum-zero subspace
    simplex_basis = simplex @ q[:, :n]
    anti = _planted(rng, simplex_basis, 300, 0.1, sign=-1.0)
    test = srm_jax.alignment_test(key, anti, simplex_basis, epsilon=0.8, num_resamples=199,
                                  angles=angles, alternative="less", statistic="projection",
                                  method="direct")
    assert float(test.score) < 0
    assert float(test.p_value) < 0.01


def test_alignment_statistic_matches_numpy(rng):
    f, g = rng.normal(size=(2, 40))
    np.testing.assert_allclose(
        float(srm_jax.alignment_statistic(f, g, "correlation")), np.corrcoef(f, g)[0, 1],
        rtol=1e-5,
    )
    fc, gc = f - f.mean(), g - g.mean()
    np.testing.assert_allclose(
        float(srm_jax.alignment_statistic(f, g)),  # the default statistic
        np.mean(fc * gc) / np.sqrt(np.mean(gc**2)), rtol=1e-5,
    )
    # Scaling the curve scales the projection but not the correlation.
    np.testing.assert_allclose(float(srm_jax.alignment_statistic(3 * f, g, "correlation")),
                               np.corrcoef(f, g)[0, 1], rtol=1e-5)
    assert np.isnan(float(srm_jax.alignment_statistic(f, np.ones(40), "projection")))


def test_alignment_test_p_values_are_uniform_for_isotropic_data():
    n, m, num, rotations, seeds = 4, 6, 64, 19, 40
    basis = jnp.asarray(np.random.default_rng(7).standard_normal((m, n)), jnp.float32)
    angles = jnp.linspace(0, 2 * jnp.pi, 24)

    def one(seed_key):
        data_key, rotation_key = jax.random.split(seed_key)
        data = jax.random.normal(data_key, (num, n))
        return srm_jax.alignment_test(rotation_key, data, basis, epsilon=0.6,
                                      num_resamples=rotations, angles=angles,
                                      statistic="correlation", method="direct").p_value

    one = jax.jit(one)
    p = np.array([float(one(k)) for k in jax.random.split(jax.random.key(11), seeds)])
    assert p.shape == (seeds,) and np.all((p > 0) & (p <= 1))
    # p is discrete-uniform on {1..20}/20: a 4-bin histogram must look flat.
    hist, _ = np.histogram(p, bins=[0, 0.25, 0.5, 0.75, 1.0])
    assert scipy.stats.chisquare(hist).pvalue > 0.01, hist
    assert np.mean(p <= 0.05) <= 0.15


def test_null_band_of_the_mean_curve_only_equals_the_full_band(rng):
    """``per_plane=False`` (the band of a wide layer: summaries, never (P, T)) gives the same
    mean-curve band as the full band from the same key, and no per-plane arrays."""
    n = 12
    basis = jnp.asarray(np.concatenate([np.eye(n), -np.eye(n)]), jnp.float32)
    key = jax.random.key(int(rng.integers(1 << 30)))
    kw = {"epsilon": 0.5, "num_resamples": 12, "method": "sample_major"}
    full = srm_jax.null_band(key, 300, basis, **kw)  # (P, T) counts per draw
    curve = srm_jax.null_band(key, 300, basis, per_plane=False, **kw)  # summaries per draw
    assert curve.mean is None and curve.std is None and curve.quantiles is None
    for field in ("curve_mean", "curve_std", "curve_quantiles", "curve_sup_quantiles"):
        np.testing.assert_allclose(np.asarray(getattr(curve, field)),
                                   np.asarray(getattr(full, field)), rtol=1e-5, atol=1e-7,
                                   err_msg=field)
    assert float(np.max(curve.curve_std)) > 0
