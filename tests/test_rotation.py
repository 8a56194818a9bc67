import jax
import jax.numpy as jnp
import numpy as np
import pytest

import srm_jax
from tests.conftest import reference_spotlights


@pytest.mark.parametrize("n", [2, 3, 5, 16, 64])
def test_closed_form_spotlight_matches_expm_on_non_orthogonal_pairs(rng, n):
    basis = rng.standard_normal((6, n))
    # Force strongly non-orthogonal pairs: mix each vector with its neighbour.
    basis[1:] += 0.8 * basis[:-1]
    basis = basis.astype(np.float32).astype(np.float64)  # the reference sees the same inputs
    pairs = np.array([(0, 1), (1, 2), (3, 0), (4, 5), (5, 2)])
    angles = rng.uniform(-7, 7, size=13).astype(np.float32).astype(np.float64)
    got = np.asarray(srm_jax.spotlight(jnp.asarray(basis, jnp.float32), pairs, angles))
    want = reference_spotlights(basis, pairs, angles)
    # float32 rounding of the Gram-Schmidt step grows as 1/sin(angle between the pair).
    unit = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    cos = np.sum(unit[pairs[:, 0]] * unit[pairs[:, 1]], axis=1)
    tol = 2e-6 / np.sqrt(1 - cos**2) + 1e-5
    assert np.all(np.abs(got - want) <= tol[:, None, None])
    # jax.scipy.linalg.expm (the library's reference route) agrees as well.
    rot = srm_jax.rotation_matrix(basis[1], basis[2], angles)
    np.testing.assert_allclose(np.asarray(rot @ unit[1]), want[1], atol=5e-4)


X64_SCRIPT = """
import jax, jax.numpy as jnp, numpy as np
import srm_jax
rng = np.random.default_rng(SEED)
for n in (2, 3, 9, 64):
    basis = rng.standard_normal((4, n)); basis[1:] += 0.9 * basis[:-1]
    pairs = np.array([(0, 1), (1, 2), (3, 1)])
    angles = rng.uniform(-7, 7, size=11)
    got = np.asarray(srm_jax.spotlight(jnp.asarray(basis), pairs, angles))
    assert got.dtype == np.float64, got.dtype
    for p, (a, b) in enumerate(pairs):
        unit = basis[a] / np.linalg.norm(basis[a])
        want = np.asarray(srm_jax.rotation_matrix(basis[a], basis[b], angles) @ unit)
        err = np.abs(got[p] - want).max()
        assert err < 1e-10, (n, p, err)
print("ok")
"""


def test_closed_form_matches_jax_expm_in_float64(run_x64):
    assert run_x64(X64_SCRIPT).strip().endswith("ok")


def test_spotlight_sign_convention_orthonormal():
    basis = np.eye(3)
    s = np.asarray(srm_jax.spotlight(basis, np.array([[0, 1]]), np.array([np.pi / 2])))
    # cos θ b̂_α − sin θ b̂_β at θ = π/2 is −b̂_β.
    np.testing.assert_allclose(s[0, 0], [0, -1, 0], atol=1e-6)


@pytest.mark.parametrize("n", [2, 7, 32])
def test_rotation_is_special_orthogonal_with_period_two_pi(rng, n):
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    rots = np.asarray(
        srm_jax.rotation_matrix(a, b, jnp.array([0.0, 0.7, 2.0, 2 * np.pi])), np.float64
    )
    eye = np.eye(n)
    np.testing.assert_allclose(rots[0], eye, atol=1e-5)
    # jax.scipy.linalg.expm in float32 is accurate to ~1e-4 at θ = 2π (Padé approximant).
    np.testing.assert_allclose(rots[-1], eye, atol=5e-4)
    for r in rots:
        np.testing.assert_allclose(r @ r.T, eye, atol=1e-4)
        assert np.isclose(np.linalg.det(r), 1.0, atol=1e-3)


def test_plane_frame_is_orthonormal_and_coordinates_reproduce_dots(rng):
    basis = rng.standard_normal((5, 8)) + 0.5
    pairs = np.asarray(srm_jax.plane_pairs(5, "perm"))
    b_alpha, u, c = (np.asarray(x) for x in srm_jax.plane_frame(jnp.asarray(basis), pairs))
    np.testing.assert_allclose(np.sum(b_alpha * u, axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1, atol=1e-5)
    unit = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    np.testing.assert_allclose(c, np.sum(unit[pairs[:, 0]] * unit[pairs[:, 1]], 1), atol=1e-6)
    data = rng.standard_normal((40, 8))
    x, y = (np.asarray(v) for v in srm_jax.plane_coordinates(data, basis, pairs))
    angles = np.linspace(0, 2 * np.pi, 9)
    spot = reference_spotlights(basis, pairs, angles)
    dunit = data / np.linalg.norm(data, axis=1, keepdims=True)
    dots = np.einsum("nk,ptk->npt", dunit, spot)
    model = x[..., None] * np.cos(angles) - y[..., None] * np.sin(angles)
    np.testing.assert_allclose(model, dots, atol=1e-5)


def test_normalise_rows_keeps_zero_rows_zero():
    x = jnp.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(np.asarray(srm_jax.normalise_rows(x)), [[0.6, 0.8], [0, 0]])


def test_spotlight_jits():
    basis = jax.random.normal(jax.random.key(0), (4, 3))
    f = jax.jit(srm_jax.spotlight)
    np.testing.assert_allclose(
        f(basis, srm_jax.plane_pairs(4), srm_jax.angle_grid(7)),
        srm_jax.spotlight(basis, srm_jax.plane_pairs(4), srm_jax.angle_grid(7)),
        atol=1e-6,
    )
