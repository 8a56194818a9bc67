import jax
import jax.numpy as jnp
import numpy as np
import pytest

import srm_jax
from tests.conftest import pearson, reference_dots


def _data(rng, n=5, m=4, num=40):
    basis = rng.standard_normal((m, n))
    basis[1] += 0.8 * basis[0]  # non-orthogonal pairs
    unit = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    data = rng.standard_normal((num, n))
    half = num // 2
    data[:half] = unit[rng.integers(0, m, half)] + 0.25 * rng.standard_normal((half, n))
    return basis, data


def test_alignment_sweep_matches_direct_numpy(rng):
    basis, data = _data(rng, n=6, m=5, num=60)
    angles = np.linspace(0, 2 * np.pi, 40)
    epsilons = np.array([-0.3, 0.2, 0.5, 0.75, 0.9])
    sweep = srm_jax.alignment_sweep(data, basis, epsilons, angles=angles)
    assert sweep.scores.shape == (5,) and sweep.mean_curves.shape == (5, 40)
    pairs = np.array([(a, b) for a in range(5) for b in range(a + 1, 5)])
    dots = reference_dots(data, basis, pairs, angles)
    self_dots = reference_dots(basis, basis, pairs, angles)
    for i, eps in enumerate(epsilons):
        curve = np.mean(dots >= eps, axis=0).mean(0)
        self_curve = np.mean(self_dots >= eps, axis=0).mean(0)
        # Counts may differ only for cosines within rounding of eps: one sample of one plane.
        np.testing.assert_allclose(np.asarray(sweep.mean_curves[i]), curve, atol=1.01 / 60 / 10)
        np.testing.assert_allclose(np.asarray(sweep.self_mean_curves[i]), self_curve,
                                   atol=1.01 / 5 / 10)
        np.testing.assert_allclose(float(sweep.scores[i]), pearson(curve, self_curve), atol=2e-3)
    best = float(sweep.best_epsilon)
    assert best == pytest.approx(float(epsilons[np.nanargmax(np.asarray(sweep.scores))]))


def test_alignment_sweep_is_one_jittable_call(rng):
    basis, data = _data(rng)
    angles = jnp.linspace(0, 2 * jnp.pi, 16)
    eps = jnp.array([0.3, 0.6, 0.8])
    sweep = jax.jit(
        lambda e: srm_jax.alignment_sweep(data, basis, e, angles=angles, method="direct")
    )(eps)
    for i in range(3):
        single = srm_jax.alignment_sweep(data, basis, eps[i : i + 1], angles=angles,
                                         method="direct")
        np.testing.assert_allclose(np.asarray(sweep.mean_curves[i]),
                                   np.asarray(single.mean_curves[0]))
    with pytest.raises(ValueError, match="epsilon"):
        srm_jax.alignment_sweep(data, basis, np.array([0.5, 1.5]))


def _closed_form_dots(data, basis, pairs, angles):
    """``d̂·(cos θ b̂_α − sin θ û)`` in float64 (SPEC §3 closed form; checked against expm by the
    engine's tests)."""
    b = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    d = data / np.linalg.norm(data, axis=1, keepdims=True)
    a, bb = b[pairs[:, 0]], b[pairs[:, 1]]
    c = np.sum(a * bb, axis=1, keepdims=True)
    u = (bb - c * a) / np.sqrt(1 - c**2)
    x, y = d @ a.T, d @ u.T
    return x[..., None] * np.cos(angles) - y[..., None] * np.sin(angles)


def test_spectrum_matches_fft_of_direct_definition(rng):
    basis, data = _data(rng)
    data[3] = np.nan  # left out
    pairs = np.array([[0, 1], [1, 2], [3, 0]])
    num_angles, order = 1024, 8
    angles = 2 * np.pi * np.arange(num_angles) / num_angles
    dots = reference_dots(data, basis, pairs, angles)[np.all(np.isfinite(data), axis=1)]
    # -0.95: most samples light every angle (full arcs); 0.97: most light none (empty arcs).
    for epsilon in (-0.95, -0.4, 0.0, 0.6, 0.97):
        direct = np.mean(dots >= epsilon, axis=0)  # (P, T)
        signed_direct = direct - np.mean(dots <= -epsilon, axis=0)
        for signed, values in ((False, direct), (True, signed_direct)):
            want = np.fft.fft(values, axis=-1)[:, : order + 1] / num_angles
            spectrum = srm_jax.srm_spectrum(data, basis, epsilon=epsilon, order=order,
                                            planes=pairs, signed=signed)
            assert int(spectrum.num_samples) == 39
            # The grid sum approximates the integral to ~2 jumps per sample of 1/num_angles.
            np.testing.assert_allclose(np.asarray(spectrum.coefficients), want, atol=4e-4)
            np.testing.assert_allclose(np.asarray(spectrum.mean), values.mean(-1), atol=4e-4)


def test_spectrum_series_reconstructs_curves_and_alignment(rng):
    basis, data = _data(rng, num=60)
    order, num_angles = 128, 2048
    angles = 2 * np.pi * np.arange(num_angles) / num_angles
    pairs = np.array([(a, b) for a in range(4) for b in range(a + 1, 4)])
    spectrum = srm_jax.srm_spectrum(data, basis, epsilon=0.7, order=order)
    reference = srm_jax.srm_spectrum(basis, basis, epsilon=0.7, order=order)
    direct = np.mean(_closed_form_dots(data, basis, pairs, angles) >= 0.7, axis=0)
    self_direct = np.mean(_closed_form_dots(basis, basis, pairs, angles) >= 0.7, axis=0)
    series = np.asarray(srm_jax.evaluate_spectrum(spectrum, angles))
    # A truncated series of a step function: small on average (Gibbs at the jumps).
    assert np.mean(np.abs(series - direct)) < 0.01
    # a_k, b_k form agrees with the complex form.
    k = np.arange(order + 1)
    real_form = (np.asarray(spectrum.cosine) @ np.cos(np.outer(k, angles))
                 + np.asarray(spectrum.sine) @ np.sin(np.outer(k, angles)))
    np.testing.assert_allclose(real_form, series, atol=1e-4)
    score = float(srm_jax.spectral_alignment_score(spectrum, reference))
    assert score == pytest.approx(pearson(direct.mean(0), self_direct.mean(0)), abs=0.02)


def test_spectrum_is_additive_over_batches(rng):
    basis, data = _data(rng)
    pairs = np.array([[0, 1], [1, 2], [3, 0]])  # shapes as above: compilations are reused
    kwargs = dict(epsilon=0.5, order=8, planes=pairs, signed=True)
    a = srm_jax.srm_spectrum(data[:20], basis, **kwargs)
    b = srm_jax.srm_spectrum(data[20:], basis, **kwargs)
    whole = srm_jax.srm_spectrum(data, basis, **kwargs)
    np.testing.assert_allclose(np.asarray((a + b).coefficients), np.asarray(whole.coefficients),
                               atol=1e-5)
    # Signed SRM has no even harmonics (its arcs come in antipodal pairs).
    np.testing.assert_allclose(np.asarray(whole.coefficients)[:, ::2], 0, atol=1e-6)
