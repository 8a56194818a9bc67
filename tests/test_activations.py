"""Tests of the generalised and isotropic tanh (SPEC §7; paper App. C, Eqns. 13–15)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srm_jax.activations import (
    generalised_tanh,
    generalised_tanh_correction,
    isotropic_tanh,
    normalised_isotropic_tanh,
    positive_cosine_pairs,
)
from srm_jax.bases import orthoplex_basis, simplex_basis, standard_basis
from tests.conftest import random_orthogonal

# ---------------------------------------------------------------------------------------------
# float64 NumPy transcriptions of the paper's equations, written from the text (loops on purpose)


def reference_n(a: float, basis: np.ndarray) -> float:
    """Eqn. 13:
    N(a) = −(1/m) Σ_j [Σ_{i≠j} tanh(a max(0, b̂_j·b̂_i)) b̂_i·b̂_j] / Σ_i max(0, b̂_j·b̂_i)²."""
    b = np.asarray(basis, np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    m = len(b)
    total = 0.0
    for j in range(m):
        numerator = 0.0
        for i in range(m):
            if i != j:
                numerator += np.tanh(a * max(0.0, b[j] @ b[i])) * (b[i] @ b[j])
        denominator = 0.0
        for i in range(m):
            denominator += max(0.0, b[j] @ b[i]) ** 2
        total += numerator / denominator
    return -total / m


def reference_generalised_tanh(x: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Eqn. 14 for one sample: Σ_i [tanh(max(0, x·b̂_i)) + max(0, x̂·b̂_i) N(‖x‖)] b̂_i."""
    x = np.asarray(x, np.float64)
    b = np.asarray(basis, np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    norm = np.linalg.norm(x)
    if norm == 0:
        return np.zeros_like(x)  # every term is 0 at x = 0 (tanh(0) = 0, N(0) = 0)
    x_hat = x / norm
    n_term = reference_n(norm, b)
    out = np.zeros_like(x)
    for i in range(len(b)):
        out += (np.tanh(max(0.0, x @ b[i])) + max(0.0, x_hat @ b[i]) * n_term) * b[i]
    return out


def reference_batch(xs: np.ndarray, basis: np.ndarray) -> np.ndarray:
    return np.stack([reference_generalised_tanh(x, basis) for x in xs])


def reference_normalised_isotropic(x: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Eqn. 15: tanh(‖x‖) x̂ / max_i(b̂_i·x̂)."""
    x = np.asarray(x, np.float64)
    b = np.asarray(basis, np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    norm = np.linalg.norm(x)
    x_hat = x / norm
    return np.tanh(norm) * x_hat / max(b[i] @ x_hat for i in range(len(b)))


def sample_inputs(rng, count: int, n: int) -> np.ndarray:
    """Random directions with norms spread over [1e-3, 4], incl. both sides of 0.05 (the switch
    to the Taylor series inside the implementation)."""
    d = rng.standard_normal((count, n))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    norms = np.concatenate([[1e-3, 0.03, 0.0499, 0.0501, 0.2], rng.uniform(0.0, 4.0, count - 5)])
    return d * norms[:, None]


def f32(x):
    return jnp.asarray(x, jnp.float32)


# ---------------------------------------------------------------------------------------------
# generalised tanh against the literal Eqn. 14


@pytest.mark.parametrize("n, factor", [(2, 4), (3, 4), (6, 4), (4, 1.5), (5, 0.6)])
def test_generalised_tanh_matches_eqn14(rng, n, factor):
    """Random non-orthogonal bases: overcomplete m = 4n, between, and undercomplete m < n."""
    m = max(1, int(round(factor * n)))
    basis = rng.standard_normal((m, n)) * rng.uniform(0.3, 3.0, (m, 1))  # rows not unit
    xs = sample_inputs(rng, 24, n)
    expected = reference_batch(xs, basis)
    for tolerance in (0.0, 1e-4):
        got = np.asarray(generalised_tanh(f32(xs), f32(basis), tolerance=tolerance))
        np.testing.assert_allclose(got, expected, atol=3e-6 * max(1, m / 8), rtol=1e-5)


def test_correction_matches_eqn13(rng):
    basis = rng.standard_normal((16, 4))
    pairs = positive_cosine_pairs(basis)
    assert 0 < len(pairs) < 16 * 15 // 2
    for a in [0.0, 1e-3, 0.3, 1.0, 5.0]:
        expected = reference_n(a, basis)
        for p in (None, pairs):
            got = float(generalised_tanh_correction(a, f32(basis), correction_pairs=p))
            np.testing.assert_allclose(got, expected, atol=1e-6)
    # the exact bases with m ≤ 2n have no positive pair: N ≡ 0
    for b in (orthoplex_basis(jax.random.key(0), 5), simplex_basis(jax.random.key(0), 5)):
        assert positive_cosine_pairs(b).shape == (0, 2)
        assert float(generalised_tanh_correction(2.0, b)) == 0.0
        np.testing.assert_allclose(reference_n(2.0, np.asarray(b)), 0.0, atol=1e-6)


def test_positive_cosine_pairs_is_the_brute_force_list(rng):
    basis = rng.standard_normal((9, 3))
    unit = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    expected = [(i, j) for i, j in itertools.combinations(range(9), 2) if unit[i] @ unit[j] > 0.2]
    got = positive_cosine_pairs(basis, tolerance=0.2)
    assert got.dtype == np.int32
    assert [tuple(p) for p in got] == expected
    with pytest.raises(TypeError):
        jax.jit(lambda b: jnp.asarray(positive_cosine_pairs(b)))(f32(basis))


# ---------------------------------------------------------------------------------------------
# the properties of SPEC §7


def test_orthoplex_is_rotated_elementwise_tanh(rng):
    for n in (3, 10):
        basis = orthoplex_basis(jax.random.key(n), n)
        q = np.asarray(basis[:n], np.float64)
        xs = rng.standard_normal((32, n)) * 2.0
        expected = np.tanh(xs @ q.T) @ q  # Σ_k tanh(x·q_k) q_k
        np.testing.assert_allclose(generalised_tanh(f32(xs), basis), expected, atol=2e-6)
    xs = rng.standard_normal((8, 5)) * 3.0
    np.testing.assert_allclose(generalised_tanh(f32(xs), standard_basis(5)), np.tanh(xs), atol=1e-6)


@pytest.mark.parametrize("n", [2, 3, 10, 24])
def test_simplex_along_its_vectors(n):
    basis = np.asarray(simplex_basis(jax.random.key(n), n))
    a = np.array([1e-3, 0.05, 0.3, 1.0, 2.5, 8.0])
    for j in range(n + 1):
        x = a[:, None] * basis[j][None, :]
        out = np.asarray(generalised_tanh(f32(x), basis))
        np.testing.assert_allclose(out @ basis[j], np.tanh(a), atol=2e-6)


def regular_polygon(m: int, phase: float) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(m) / m
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def icosahedron() -> np.ndarray:
    g = (1 + np.sqrt(5)) / 2
    v = []
    for s1, s2 in itertools.product((1, -1), repeat=2):
        v += [(0, s1, s2 * g), (s1, s2 * g, 0), (s2 * g, 0, s1)]
    v = np.array(v, np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_correction_restores_tanh_along_basis_vectors(rng):
    """Eqn. 9, σ(a b̂_j)·b̂_j = tanh(a), holds exactly when every b̂_j sees the same cosines
    (vertex-transitive bases); here m > 2n, so N ≠ 0 and the correction is what makes it hold."""
    q = random_orthogonal(rng, 3)
    for basis in (regular_polygon(8, 0.3), regular_polygon(12, 1.1), icosahedron() @ q):
        assert len(positive_cosine_pairs(basis)) > 0
        a = np.array([1e-3, 0.04, 0.3, 1.0, 3.0])
        for j in range(len(basis)):
            out = np.asarray(generalised_tanh(f32(a[:, None] * basis[j]), f32(basis)))
            np.testing.assert_allclose(out @ basis[j], np.tanh(a), atol=3e-6)
            # without the correction (Eqn. 7) it would not hold
            plain = np.tanh(np.maximum(0, (a[:, None] * basis[j]) @ basis.T)) @ basis
            assert np.abs(plain @ basis[j] - np.tanh(a)).max() > 1e-2


def test_equivariance(rng):
    """σ_{BQ}(xQ) = σ_B(x) Q for orthogonal Q, on a random non-orthogonal overcomplete basis."""
    n, m = 5, 20
    basis = rng.standard_normal((m, n))
    q = random_orthogonal(rng, n)
    xs = sample_inputs(rng, 16, n)
    left = np.asarray(generalised_tanh(f32(xs @ q), f32(basis @ q)))
    right = np.asarray(generalised_tanh(f32(xs), f32(basis))) @ q
    np.testing.assert_allclose(left, right, atol=5e-6)


def test_finite_values_and_gradients_at_and_near_zero(rng):
    n = 4
    bases = {
        "random m=4n": f32(rng.standard_normal((4 * n, n))),
        "undercomplete": f32(rng.standard_normal((2, n))),
        "orthoplex": orthoplex_basis(jax.random.key(1), n),
        "standard": standard_basis(n),
    }
    direction = rng.standard_normal(n)
    direction /= np.linalg.norm(direction)
    points = [np.zeros(n), np.array([0.0, 1.0, 0.0, 0.0]) * 1e-3]
    points += [direction * s for s in (1e-30, 1e-12, 1e-6, 1e-3, 0.0499, 0.05, 0.0501)]
    for name, basis in bases.items():
        f = lambda x, b=basis: generalised_tanh(x, b)  # noqa: E731
        for p in points:
            x = f32(p)
            assert np.all(np.isfinite(f(x))), name
            for jac in (jax.jacfwd(f)(x), jax.jacrev(f)(x)):
                assert np.all(np.isfinite(jac)), name
        np.testing.assert_array_equal(f(jnp.zeros(n)), np.zeros(n))
        # the gradient of a scalar loss through a batch containing 0
        g = jax.grad(lambda x, b=basis: jnp.sum(generalised_tanh(x, b) ** 2))(
            jnp.stack([jnp.zeros(n), f32(direction)])
        )
        assert np.all(np.isfinite(g)), name
    # on ±-bases the Jacobian at 0 is that of elementwise tanh: the identity
    for name in ("orthoplex", "standard"):
        jac = jax.jacrev(lambda x, b=bases[name]: generalised_tanh(x, b))(jnp.zeros(n))
        np.testing.assert_allclose(jac, np.eye(n), atol=1e-6)


def test_gradient_matches_finite_differences_of_eqn14(rng):
    """The Jacobian (incl. the series branch below ‖x‖ = 0.05) equals central differences of
    the float64 reference."""
    n, m = 3, 12
    basis = rng.standard_normal((m, n))
    f = lambda x: generalised_tanh(x, f32(basis))  # noqa: E731
    for x in sample_inputs(rng, 10, n):
        h = 1e-6 * max(np.linalg.norm(x), 1e-2)
        ref = lambda y: reference_generalised_tanh(y, basis)  # noqa: E731
        numeric = np.stack([(ref(x + h * e) - ref(x - h * e)) / (2 * h) for e in np.eye(n)], axis=1)
        np.testing.assert_allclose(jax.jacfwd(f)(f32(x)), numeric, atol=2e-4)


def test_batch_shapes_jit_vmap_and_traced_basis(rng):
    n, m = 4, 16
    basis = f32(rng.standard_normal((m, n)))
    xs = f32(rng.standard_normal((2, 3, n)))
    flat = generalised_tanh(xs.reshape(-1, n), basis).reshape(2, 3, n)
    np.testing.assert_allclose(generalised_tanh(xs, basis), flat, atol=1e-6)
    np.testing.assert_allclose(generalised_tanh(xs[0, 0], basis), flat[0, 0], atol=1e-6)
    np.testing.assert_allclose(jax.vmap(lambda x: generalised_tanh(x, basis))(xs[0]), flat[0],
                               atol=1e-6)
    # closed-over (concrete) basis under jit: sparse pairs; traced basis: the dense fallback;
    # traced basis with precomputed pairs: sparse again — all the same values
    np.testing.assert_allclose(jax.jit(lambda x: generalised_tanh(x, basis))(xs), flat, atol=1e-6)
    np.testing.assert_allclose(jax.jit(generalised_tanh)(xs, basis), flat, atol=1e-6)
    pairs = positive_cosine_pairs(basis)
    np.testing.assert_allclose(
        jax.jit(lambda x, b: generalised_tanh(x, b, correction_pairs=pairs))(xs, basis), flat,
        atol=1e-6,
    )
    # gradient with respect to the basis agrees between the sparse and the dense path
    loss = lambda b, p: jnp.sum(generalised_tanh(xs, b, correction_pairs=p) ** 2)  # noqa: E731
    dense_pairs = np.stack(np.triu_indices(m, k=1), axis=1)
    np.testing.assert_allclose(jax.grad(loss)(basis, pairs), jax.grad(loss)(basis, dense_pairs),
                               atol=1e-5)
    with pytest.raises(ValueError):
        generalised_tanh(xs, basis[:, :3])
    with pytest.raises(ValueError):
        generalised_tanh(xs, basis.at[2].set(0.0))


# ---------------------------------------------------------------------------------------------
# isotropic tanh


def test_isotropic_tanh_definition_and_ball(rng):
    xs = rng.standard_normal((50, 6)) * rng.uniform(0, 3, (50, 1))
    xs[0] *= 0.0
    xs[1] *= 1e-3 / np.linalg.norm(xs[1])  # inside the default ball
    out = np.asarray(isotropic_tanh(f32(xs)))
    norms = np.linalg.norm(xs, axis=1, keepdims=True)
    outside = norms[:, 0] > 1e-2
    expected = np.where(outside[:, None], np.tanh(norms) * xs / np.where(norms > 0, norms, 1), xs)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_array_equal(out[1], np.asarray(f32(xs[1])))  # identity in the ball
    # the radius is a setting
    x = f32(xs[2] / np.linalg.norm(xs[2]) * 0.5)
    np.testing.assert_allclose(isotropic_tanh(x, radius=1.0), x, atol=0)
    np.testing.assert_allclose(isotropic_tanh(x, radius=0.0), np.tanh(0.5) * x / 0.5, atol=1e-6)


def test_isotropic_tanh_commutes_with_rotations_and_keeps_direction(rng):
    n = 7
    xs = rng.standard_normal((40, n)) * rng.uniform(0, 3, (40, 1))
    out = np.asarray(isotropic_tanh(f32(xs)), np.float64)
    for _ in range(3):
        q = random_orthogonal(rng, n)
        np.testing.assert_allclose(isotropic_tanh(f32(xs @ q)), out @ q, atol=2e-6)
    # σ(x) = λ x with λ > 0 (parallel, same orientation)
    cos = np.sum(out * xs, axis=1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(xs, axis=1))
    np.testing.assert_allclose(cos, 1.0, atol=1e-6)


def test_isotropic_tanh_gradients_finite(rng):
    n = 5
    d = rng.standard_normal(n)
    d /= np.linalg.norm(d)
    for radius in (1e-2, 0.0):
        f = lambda x, r=radius: isotropic_tanh(x, radius=r)  # noqa: E731
        for s in (0.0, 1e-30, 1e-6, 1e-2, 0.0101, 1.0):
            jac = jax.jacrev(f)(f32(d * s))
            assert np.all(np.isfinite(jac))
        np.testing.assert_allclose(jax.jacfwd(f)(jnp.zeros(n)), np.eye(n), atol=1e-6)
    # outside the ball: the Jacobian of tanh(r) x̂ by finite differences
    x = d * 0.7
    h = 1e-6
    ref = lambda y: np.tanh(np.linalg.norm(y)) * y / np.linalg.norm(y)  # noqa: E731
    numeric = np.stack([(ref(x + h * e) - ref(x - h * e)) / (2 * h) for e in np.eye(n)], axis=1)
    np.testing.assert_allclose(jax.jacfwd(isotropic_tanh)(f32(x)), numeric, atol=1e-5)


def test_normalised_isotropic_tanh(rng):
    n = 4
    basis = np.asarray(simplex_basis(jax.random.key(0), n), np.float64)
    xs = rng.standard_normal((30, n)) * rng.uniform(0.05, 3, (30, 1))
    expected = np.stack([reference_normalised_isotropic(x, basis) for x in xs])
    got = np.asarray(normalised_isotropic_tanh(f32(xs), f32(basis)))
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)
    # along a basis vector it is the tanh
    for j in range(n + 1):
        out = np.asarray(normalised_isotropic_tanh(f32(1.3 * basis[j]), f32(basis)))
        np.testing.assert_allclose(out, np.tanh(1.3) * basis[j], atol=2e-6)
    # undercomplete: where every b̂_i·x̂ ≤ 1/n the denominator is the floor (finite)
    under = np.eye(n)[:2]
    x = np.array([0.0, 0.0, 1.0, -2.0])  # orthogonal to both basis vectors: max = 0
    out = np.asarray(normalised_isotropic_tanh(f32(x), f32(under)))
    np.testing.assert_allclose(out, np.tanh(np.sqrt(5)) * x / np.sqrt(5) * n, rtol=1e-5)
    out = np.asarray(normalised_isotropic_tanh(f32(x), f32(under), min_cosine=0.5))
    np.testing.assert_allclose(out, np.tanh(np.sqrt(5)) * x / np.sqrt(5) / 0.5, rtol=1e-5)
    # finite at and near 0, with an identity Jacobian at 0
    for b in (f32(basis), f32(under)):
        f = lambda y, b=b: normalised_isotropic_tanh(y, b)  # noqa: E731
        np.testing.assert_array_equal(f(jnp.zeros(n)), np.zeros(n))
        np.testing.assert_allclose(jax.jacrev(f)(jnp.zeros(n)), np.eye(n), atol=1e-6)
        for s in (1e-30, 1e-6, 0.5):
            assert np.all(np.isfinite(jax.jacrev(f)(f32(xs[0] * s))))


def test_gradient_with_respect_to_the_basis(rng):
    """d/dB of a loss through Eqn. 14 (the correction's hand-written JVP included) equals
    central differences of the float64 reference, in reverse and forward mode."""
    n, m = 3, 10
    basis = rng.standard_normal((m, n))
    xs = sample_inputs(rng, 6, n)
    pairs = positive_cosine_pairs(basis)

    def loss(b):
        return jnp.sum(generalised_tanh(f32(xs), b, correction_pairs=pairs) ** 2)

    def ref_loss(b):
        return np.sum(reference_batch(xs, b) ** 2)

    h = 1e-6
    numeric = np.zeros_like(basis)
    for idx in np.ndindex(*basis.shape):
        e = np.zeros_like(basis)
        e[idx] = h
        numeric[idx] = (ref_loss(basis + e) - ref_loss(basis - e)) / (2 * h)
    np.testing.assert_allclose(jax.grad(loss)(f32(basis)), numeric, atol=2e-4)
    np.testing.assert_allclose(jax.jacfwd(loss)(f32(basis)), numeric, atol=2e-4)
