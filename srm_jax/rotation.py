"""Plane rotations and the rotating spotlight (paper Sec. 2.1.1, Eqn. 1; math §3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import expm

from srm_jax import _validation
from srm_jax._precision import exact_matmul


def normalise_rows(x: jax.Array) -> jax.Array:
    """Rows scaled to unit length; a zero row stays zero (math §1.1, as the published code does)."""
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x / jnp.where(norm == 0, 1, norm)


def rotation_matrix(b_alpha: jax.Array, b_beta: jax.Array, theta: jax.Array) -> jax.Array:
    """The rotation ``R_αβ(θ) = expm(θ G)`` in the plane of two basis vectors (Eqn. 1).

    ``G = B_αβ / λ`` is the bivector ``B_αβ = ½(b̂_α b̂_βᵀ − b̂_β b̂_αᵀ)`` normalised so that its
    non-zero eigenvalues are ``±i`` (``λ = ½√(1 − c²)``, ``c = b̂_α·b̂_β``), hence
    ``R(0) = R(2π) = I``. This is the reference the closed-form :func:`spotlight` is tested
    against; it costs a matrix exponential per angle.

    Args:
      b_alpha, b_beta: ``(n,)`` basis vectors (normalised here); they must not be parallel.
      theta: a scalar angle, or a 1-D array of angles.

    Returns:
      ``(n, n)`` (scalar ``theta``) or ``(T, n, n)`` rotation matrices.
    """
    a = normalise_rows(b_alpha)
    b = normalise_rows(b_beta)
    bivector = 0.5 * (jnp.outer(a, b) - jnp.outer(b, a))
    # ‖B‖_F = √2 λ for the rank-2 bivector; more accurate than ½√(1 − c²) when a ≈ ±b.
    generator = bivector * (jnp.sqrt(2.0) / jnp.linalg.norm(bivector))
    theta = jnp.asarray(theta, dtype=generator.dtype)
    if theta.ndim == 0:
        return expm(theta * generator)
    return jax.vmap(lambda t: expm(t * generator))(theta)


def plane_frame(basis: jax.Array, planes: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The orthonormal frame ``(b̂_α, û)`` of each plane and the cosine ``c = b̂_α·b̂_β`` (math §3.1).

    ``û = (b̂_β − c b̂_α)/√(1 − c²)`` is the Gram–Schmidt completion of ``b̂_α`` within the plane.

    Args:
      basis: ``(m, n)`` privileged basis, one vector a row (normalised here).
      planes: int ``(P, 2)`` pairs ``(α, β)``.

    Returns:
      ``b_alpha (P, n)``, ``u (P, n)``, ``c (P,)``.
    """
    unit = normalise_rows(basis)
    b_alpha = unit[planes[:, 0]]
    b_beta = unit[planes[:, 1]]
    c, sine = _cosine_and_sine(b_alpha, b_beta)
    u = (b_beta - c[:, None] * b_alpha) / sine[:, None]
    return b_alpha, u, c


def _cosine_and_sine(b_alpha, b_beta):
    """``c = b̂_α·b̂_β`` and ``‖b̂_β − c b̂_α‖ = √(1 − c²)``.

    The norm of the Gram-Schmidt residual is computed directly rather than as ``√(1 − c²)``: its
    relative rounding error is ``eps/√(1−c²)`` instead of ``eps/(1−c²)`` for nearly parallel pairs.
    """
    c = jnp.sum(b_alpha * b_beta, axis=-1)
    residual = b_beta - c[..., None] * b_alpha
    sine = jnp.linalg.norm(residual, axis=-1)
    return c, jnp.maximum(sine, jnp.finfo(b_alpha.dtype).tiny)


def plane_coordinates(
    activations: jax.Array, basis: jax.Array, planes: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """In-plane coordinates ``x = d̂·b̂_α`` and ``y = d̂·û`` of every normalised sample (math §5).

    Both come from one matrix product ``D̂ B̂ᵀ``: ``y = (d̂·b̂_β − c x)/√(1 − c²)``. Then
    ``d̂·s_αβ(θ) = x cos θ − y sin θ``.

    Args:
      activations: ``(N, n)`` samples (normalised here; a zero row stays zero).
      basis: ``(m, n)``.
      planes: int ``(P, 2)``.

    Returns:
      ``x, y``, each ``(N, P)``.
    """
    unit_basis = normalise_rows(basis)
    projections = exact_matmul(normalise_rows(activations), unit_basis.T)
    return _coordinates_from_projections(projections, unit_basis, planes)


def _coordinates_from_projections(projections, unit_basis, planes):
    c, sine = _cosine_and_sine(unit_basis[planes[:, 0]], unit_basis[planes[:, 1]])
    x = projections[:, planes[:, 0]]
    y = (projections[:, planes[:, 1]] - c * x) / sine
    return x, y


def spotlight(basis: jax.Array, planes: jax.Array, angles: jax.Array) -> jax.Array:
    """The spotlight ``s_αβ(θ) = R_αβ(θ) b̂_α`` of every plane at every angle, in closed form.

    ``s_αβ(θ) = cos θ · b̂_α − sin θ · û`` (math §3.3): equal to ``expm(θG) b̂_α`` of Eqn. 1 for any
    non-parallel pair, orthogonal or not.

    Args:
      basis: ``(m, n)``.
      planes: int ``(P, 2)``.
      angles: ``(T,)``.

    Returns:
      ``(P, T, n)`` unit vectors.
    """
    _validation.check_basis(basis)
    b_alpha, u, _ = plane_frame(basis, planes)
    angles = jnp.asarray(angles, dtype=b_alpha.dtype)
    cos = jnp.cos(angles)[None, :, None]
    sin = jnp.sin(angles)[None, :, None]
    return cos * b_alpha[:, None, :] - sin * u[:, None, :]
