"""Tests of the privileged bases (SPEC §8; paper App. B.1, App. D, Eqns. 16–17)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from srm_jax.bases import (
    orthoplex_basis,
    random_basis,
    random_orthogonal,
    simplex_basis,
    standard_basis,
    thompson_basis,
    thompson_energy,
)

COSINE_TOL = 1e-4  # the tolerance for the exact configurations
ANGLE_TOL = 1e-3  # radians (0.057°), for the smallest angle of the n = 3 minimisers


def reference_energy(basis: np.ndarray) -> float:
    """Eqns. 16–17 written literally: ``E = D_ij V_ki V_kj (1 − I)_ij``, V of shape (n, m) whose
    columns are the unit basis vectors, ``D_ij = 1/‖b̂_i − b̂_j‖²`` (0 on the diagonal and
    wherever the distance is 0)."""
    b = np.asarray(basis, np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    v = b.T
    m = b.shape[0]
    d = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            dist2 = np.sum((b[i] - b[j]) ** 2)
            if i != j and dist2 != 0:
                d[i, j] = 1.0 / dist2
    return float(np.einsum("ij,ki,kj,ij->", d, v, v, np.ones((m, m)) - np.eye(m)))


def off_diagonal_cosines(basis) -> np.ndarray:
    b = np.asarray(basis, np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    g = b @ b.T
    return g[~np.eye(len(b), dtype=bool)]


def smallest_angle(basis) -> float:
    return float(np.arccos(np.clip(off_diagonal_cosines(basis).max(), -1, 1)))


def assert_unit_rows(basis, shape):
    b = np.asarray(basis)
    assert b.shape == shape
    assert np.all(np.isfinite(b))
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-6)


def assert_orthoplex(basis, tol):
    """Every off-diagonal cosine is 0 or −1 within ``tol``, and each row has one antipode."""
    c = off_diagonal_cosines(basis)
    assert np.max(np.minimum(np.abs(c), np.abs(c + 1))) < tol
    g = np.asarray(basis, np.float64) @ np.asarray(basis, np.float64).T
    assert np.all(np.sum(g < -0.5, axis=1) == 1)


# ---------------------------------------------------------------------------------------------
# Thompson basis


@pytest.mark.parametrize("n", [3, 10, 24])
def test_thompson_reaches_orthoplex(n):
    basis, info = thompson_basis(jax.random.key(n), 2 * n, n, return_info=True)
    assert_unit_rows(basis, (2 * n, n))
    assert_orthoplex(basis, COSINE_TOL)
    np.testing.assert_allclose(float(info.min_angle), np.pi / 2, atol=ANGLE_TOL)
    # The orthoplex energy: each row has one antipode (c = −1, distance² 4) and the rest c = 0.
    np.testing.assert_allclose(float(info.energy), -2 * n / 4, rtol=1e-4)


@pytest.mark.parametrize("n", [3, 10, 24])
def test_thompson_reaches_simplex(n):
    basis, info = thompson_basis(jax.random.key(100 + n), n + 1, n, return_info=True)
    assert_unit_rows(basis, (n + 1, n))
    np.testing.assert_allclose(off_diagonal_cosines(basis), -1.0 / n, atol=COSINE_TOL)
    np.testing.assert_allclose(float(info.min_angle), np.arccos(-1.0 / n), atol=ANGLE_TOL)


# Minimisers of the App. D energy (up to a constant the Riesz 2-energy) for m points on S²:
# m=5 the triangular bipyramid (smallest angle 90°, also the best packing, Tammes), m=7 the
# pentagonal bipyramid (72°; the best packing reaches 77.87°, which the energy does not aim
# for), m=12 the icosahedron (arctan 2 = 63.435°, universally optimal and the best packing).
@pytest.mark.parametrize(
    "m, angle, cosines",
    [
        (5, np.pi / 2, [0.0, -0.5, -1.0]),
        (7, np.deg2rad(72.0), [0.0, np.cos(np.deg2rad(72)), np.cos(np.deg2rad(144)), -1.0]),
        (12, np.arctan(2.0), [1 / np.sqrt(5), -1 / np.sqrt(5), -1.0]),
    ],
)
def test_thompson_known_configurations_in_3d(m, angle, cosines):
    basis, info = thompson_basis(jax.random.key(m), m, 3, return_info=True)
    assert_unit_rows(basis, (m, 3))
    assert abs(smallest_angle(basis) - angle) < ANGLE_TOL
    # the whole configuration, not only its smallest angle: every cosine is one of the known set
    # (the pentagon of m = 7 is a soft mode of the energy, hence the looser 1e-2)
    c = off_diagonal_cosines(basis)
    gap = np.min(np.abs(c[:, None] - np.asarray(cosines)[None, :]), axis=1)
    assert gap.max() < 1e-2
    # what it reports is what it returned
    np.testing.assert_allclose(float(info.energy), reference_energy(basis), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(info.min_angle), smallest_angle(basis), atol=1e-5)
    np.testing.assert_allclose(float(info.max_cosine), c.max(), atol=1e-6)
    history = np.asarray(info.energy_history)
    assert history.shape == (2000,)
    # it optimised: from the random start down to (within float32) the final energy
    assert history[-1] < history[0]
    np.testing.assert_allclose(history[-1], float(info.energy), rtol=1e-5, atol=1e-5)
    # a pure function of the key: the same key gives the same basis
    again, _ = thompson_basis(jax.random.key(m), m, 3, return_info=True)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(basis))


def test_thompson_energy_matches_literal_equations(rng):
    for m, n in [(2, 2), (5, 3), (12, 4)]:
        b = rng.standard_normal((m, n)) * rng.uniform(0.5, 2.0, (m, 1))
        np.testing.assert_allclose(
            float(thompson_energy(jnp.asarray(b, jnp.float32))), reference_energy(b), rtol=1e-4
        )
    # a zero distance counts 0 (App. D's divide-by-zero rule), not inf/nan
    b = rng.standard_normal((4, 3))
    b[3] = b[1]
    e = float(thompson_energy(jnp.asarray(b)))
    assert np.isfinite(e)
    np.testing.assert_allclose(e, reference_energy(b), rtol=1e-4)


def test_thompson_vmap_and_custom_optimizer():
    keys = jax.random.split(jax.random.key(3), 2)
    opt = optax.adam(0.05)
    bases = jax.vmap(lambda k: thompson_basis(k, 4, 3, steps=300, optimizer=opt))(keys)
    assert bases.shape == (2, 4, 3)
    for b in bases:
        assert_unit_rows(b, (4, 3))
        np.testing.assert_allclose(off_diagonal_cosines(b), -1 / 3, atol=1e-3)
    single = thompson_basis(keys[1], 4, 3, steps=300, optimizer=opt)
    np.testing.assert_allclose(bases[1], single, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Exact constructions


@pytest.mark.parametrize("n", [1, 2, 5, 24])
def test_orthoplex_basis(n):
    b = orthoplex_basis(jax.random.key(n), n)
    assert_unit_rows(b, (2 * n, n))
    b = np.asarray(b, np.float64)
    np.testing.assert_allclose(b[n:], -b[:n], atol=0)  # documented order: q_0..q_{n-1}, -q_..
    np.testing.assert_allclose(b[:n] @ b[:n].T, np.eye(n), atol=1e-5)
    if n > 1:
        assert_orthoplex(b, 1e-5)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 24])
def test_simplex_basis(n):
    b = simplex_basis(jax.random.key(n), n)
    assert_unit_rows(b, (n + 1, n))
    np.testing.assert_allclose(off_diagonal_cosines(b), -1.0 / n, atol=1e-5)
    np.testing.assert_allclose(np.asarray(b, np.float64).sum(axis=0), 0.0, atol=1e-5)


def test_standard_basis():
    for n in [1, 4]:
        b = np.asarray(standard_basis(n))
        expected = np.concatenate([np.eye(n), -np.eye(n)])
        np.testing.assert_array_equal(b, expected)


def test_random_rotations_differ_and_are_isotropic():
    n = 3
    keys = jax.random.split(jax.random.key(0), 500)
    orth = jax.vmap(lambda k: orthoplex_basis(k, n))(keys)
    simp = jax.vmap(lambda k: simplex_basis(k, n))(keys)
    assert not np.allclose(orth[0], orth[1]) and not np.allclose(simp[0], simp[1])
    # A uniformly rotated vector is uniform on the sphere: mean 0, second moment I/n.
    for first_rows in (np.asarray(orth[:, 0]), np.asarray(simp[:, 0])):
        assert np.abs(first_rows.mean(axis=0)).max() < 0.1
        second_moment = first_rows.T @ first_rows / len(first_rows)
        np.testing.assert_allclose(second_moment, np.eye(n) / n, atol=0.06)
    q = np.asarray(random_orthogonal(keys[0], 6), np.float64)
    np.testing.assert_allclose(q @ q.T, np.eye(6), atol=1e-5)


def test_random_basis():
    b = random_basis(jax.random.key(1), 4000, 3)
    assert_unit_rows(b, (4000, 3))
    b = np.asarray(b, np.float64)
    assert np.abs(b.mean(axis=0)).max() < 0.05
    np.testing.assert_allclose(b.T @ b / len(b), np.eye(3) / 3, atol=0.03)
    other = random_basis(jax.random.key(3), 5, 3)
    assert not np.allclose(random_basis(jax.random.key(2), 5, 3), other)


def test_bases_are_jittable():
    key = jax.random.key(11)
    np.testing.assert_allclose(
        jax.jit(orthoplex_basis, static_argnums=1)(key, 4), orthoplex_basis(key, 4), atol=1e-6
    )
    np.testing.assert_allclose(
        jax.jit(simplex_basis, static_argnums=1)(key, 4), simplex_basis(key, 4), atol=1e-6
    )
    np.testing.assert_allclose(
        jax.jit(random_basis, static_argnums=(1, 2))(key, 6, 4), random_basis(key, 6, 4), atol=1e-6
    )
    np.testing.assert_array_equal(jax.jit(standard_basis, static_argnums=0)(3), standard_basis(3))
