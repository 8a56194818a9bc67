"""The paper's activation functions: generalised tanh and isotropic tanh (App. C; math §7.5).

All functions act on the last axis of ``x`` (any batch shape), are pure, and work under
``jit``, ``vmap`` and ``grad``; values and gradients are finite everywhere, ``x = 0`` included.

Generalised tanh (Eqn. 14) — design
-----------------------------------
Eqn. 14 is ``σ(x) = Σ_i [tanh(max(0, x·b̂_i)) + max(0, x̂·b̂_i) N(‖x‖)] b̂_i`` with the
correction (Eqn. 13)

    N(a) = −(1/m) Σ_j [Σ_{i≠j} tanh(a·max(0, b̂_j·b̂_i)) (b̂_i·b̂_j)] / [Σ_i max(0, b̂_j·b̂_i)²].

* **Only positive-cosine pairs count.** A pair with ``b̂_i·b̂_j ≤ 0`` adds ``tanh(0)·c = 0`` to
  the numerator and ``0`` to the denominator, so ``N`` is a sum over the *unordered* pairs
  ``{i, j}`` with positive cosine ``c``: ``N(a) = −Σ_p w_p tanh(a c_p)`` with
  ``w_p = c_p (1/den_i + 1/den_j)/m`` and ``den_j = 1 + Σ_{i≠j} max(0, c_ij)²`` (the ``i = j``
  term of the denominator is 1: rows are unit). The per-sample cost of ``N`` is one ``tanh``
  per positive pair — zero for the exact bases with ``m ≤ 2n`` (orthoplex, simplex,
  ``±e_i``), where ``N ≡ 0`` and the correction is skipped altogether.
* **The pair list is static structure.** :func:`positive_cosine_pairs` computes it once,
  on the host, from a concrete basis (``(P, 2)`` int32 with ``P`` known, so shapes are static
  under ``jit``); the cosines and weights are then recomputed from the (possibly traced)
  basis on each call, so gradients with respect to the basis stay exact. If no ``pairs`` are
  given, :func:`generalised_tanh` builds them itself when the basis is concrete (eagerly, or a
  constant closed over by ``jit``), and falls back to all ``m(m−1)/2`` pairs, masked, when the
  basis is traced: exact, but ``O(m²)`` per sample. The Flax module
  :class:`srm_jax.nn.GeneralisedTanh` stores the pair list next to its basis, so it always
  takes the sparse path.
* **Float tolerance.** A cosine ``≤ tolerance`` (default ``1e-4``) counts as non-positive, so
  an exact orthoplex or a converged Thompson basis built in float32 (off-diagonal cosines of
  order ``1e-7`` of either sign) has no pairs. A dropped pair of cosine ``c ≤ tolerance``
  changes ``N(a)`` by ``2c·tanh(ac)/m ≤ 2a·tolerance²/m`` at most (``2e-8·a/m`` by default);
  pass ``tolerance=0.0`` for the literal formula.
* **No division by ‖x‖.** ``max(0, x̂·b̂_i) N(‖x‖) = max(0, x·b̂_i) M(‖x‖)`` with
  ``M(a) = N(a)/a``, an even analytic function of ``a``; below ``a = 0.05`` it is evaluated by
  its Taylor series in ``a² = ‖x‖²`` (``M(a) = −Σ_p w_p c_p (1 − (a c_p)²/3 + 2(a c_p)⁴/15)``,
  truncation error ``< 1e-9``), so neither ``x̂`` nor ``1/‖x‖`` is ever formed.
* **Memory-light derivative.** ``N`` has a hand-written JVP (``custom_jvp``), so reverse mode
  keeps the per-sample ``dN/da`` as its residual rather than the ``(batch, P)`` tanh values,
  and skips the basis terms when the basis is not differentiated.
* **Gradient at kinks.** ``max(0, ·)`` is ``jnp.maximum``, whose derivative at 0 is ``½``.
  For ``±`` pairs the two halves add up, so on the orthoplex or ``±e_i`` basis the Jacobian at
  ``x = 0`` (or wherever ``x·q_k = 0``) is that of elementwise tanh exactly.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from srm_jax._validation import UNSET, check_basis, host_unit_rows, is_concrete, renamed
from srm_jax.rotation import normalise_rows

__all__ = [
    "DEFAULT_PAIR_TOLERANCE",
    "DEFAULT_RADIUS",
    "generalised_tanh",
    "generalised_tanh_correction",
    "isotropic_tanh",
    "normalised_isotropic_tanh",
    "positive_cosine_pairs",
]

#: Cosines at or below this count as non-positive in the correction ``N`` of Eqn. 14.
DEFAULT_PAIR_TOLERANCE = 1e-4
#: Radius of the ball inside which the isotropic tanh is the identity (math §7.5).
DEFAULT_RADIUS = 1e-2
#: Below this ``‖x‖`` the correction ``N(a)/a`` is evaluated by its Taylor series.
_SERIES_RADIUS = 0.05


def _check_inputs(x: jax.Array, basis: jax.Array) -> None:
    check_basis(basis, min_vectors=1)
    if x.shape[-1:] != basis.shape[-1:]:
        raise ValueError(
            f"the feature (last) axis of x has size {x.shape[-1:]} but the basis vectors have "
            f"n = {basis.shape[-1]}."
        )


def _sum_squares(x: jax.Array) -> jax.Array:
    return jnp.sum(x * x, axis=-1)


def _safe_norm(sq: jax.Array) -> jax.Array:
    """``√sq`` with a zero (not NaN) gradient at ``sq = 0``."""
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def positive_cosine_pairs(
    basis: jax.Array, *, tolerance: float = DEFAULT_PAIR_TOLERANCE
) -> np.ndarray:
    """The unordered pairs ``(i, j)``, ``i < j``, with ``b̂_i·b̂_j > tolerance`` (Eqn. 14's ``N``).

    Only these pairs contribute to the correction ``N(‖x‖)`` of the generalised tanh; the list
    is the static structure of the correction, computed once per basis on the host (float64).

    Args:
      basis: concrete ``(m, n)`` basis (rows normalised here).
      tolerance: cosines at or below it count as non-positive.

    Returns:
      ``(P, 2)`` int32 NumPy array, in ``itertools.combinations`` order; ``P = 0`` for the
      exact orthoplex, simplex and standard bases.

    Raises:
      TypeError: if ``basis`` is a tracer (inside ``jit``): call it outside, or pass a
        constant.
    """
    if not is_concrete(basis):
        raise TypeError(
            "positive_cosine_pairs needs a concrete basis (it decides the static number of "
            "pairs); call it outside jit and pass the result as `correction_pairs=`."
        )
    b = host_unit_rows(basis)
    i, j = np.triu_indices(b.shape[0], k=1)
    keep = np.sum(b[i] * b[j], axis=1) > tolerance
    return np.stack([i[keep], j[keep]], axis=1).astype(np.int32)


def _correction_terms(
    unit_basis: jax.Array, pairs: jax.Array | np.ndarray, tolerance: float
) -> tuple[jax.Array, jax.Array]:
    """Cosines ``c_p`` and weights ``w_p`` with ``N(a) = −Σ_p w_p tanh(a c_p)`` (Eqn. 13)."""
    m = unit_basis.shape[0]
    i, j = pairs[:, 0], pairs[:, 1]
    c = jnp.sum(unit_basis[i] * unit_basis[j], axis=-1)
    c = jnp.where(c > tolerance, c, 0.0)
    den = jnp.ones((m,), unit_basis.dtype).at[i].add(c * c).at[j].add(c * c)
    weights = c * (1.0 / den[i] + 1.0 / den[j]) / m
    return c, weights


def _resolve_pairs(basis: jax.Array, correction_pairs, tolerance: float) -> jax.Array:
    """The int32 ``(P, 2)`` pair list of the correction: ``correction_pairs`` when given, else
    :func:`positive_cosine_pairs` of a concrete basis, else (a traced basis) every pair, masked
    by the tolerance inside the correction: exact, but ``O(m²)`` per sample."""
    if correction_pairs is None and is_concrete(basis):
        correction_pairs = positive_cosine_pairs(basis, tolerance=tolerance)
    elif correction_pairs is None:
        correction_pairs = np.stack(np.triu_indices(basis.shape[0], k=1), axis=1)
    return jnp.asarray(correction_pairs, jnp.int32)


@jax.custom_jvp
def _n_sum(a: jax.Array, c: jax.Array, w: jax.Array) -> jax.Array:
    """``N(a) = −Σ_p w_p tanh(a c_p)`` for every entry of ``a`` (a fused reduction over p)."""
    return -jnp.sum(w * jnp.tanh(a[..., None] * c), axis=-1)


def _n_sum_jvp(primals, tangents):
    # A hand-written JVP so that reverse mode keeps only the per-sample derivative
    # dN/da = −Σ_p w_p c_p sech²(a c_p) (shape of a) as its residual, not the (batch, P)
    # array of tanh values that autodiff of the sum would store; tangents of c and w (the basis)
    # are handled when present and skipped when symbolically zero (a fixed basis).
    a, c, w = primals
    da, dc, dw = tangents
    t = jnp.tanh(a[..., None] * c)
    value = -jnp.sum(w * t, axis=-1)
    sech2 = w * (1.0 - t * t)
    tangent = jnp.zeros_like(value)
    if not isinstance(da, SymbolicZero):
        tangent = tangent - da * jnp.sum(sech2 * c, axis=-1)
    if not isinstance(dc, SymbolicZero):
        tangent = tangent - jnp.sum(sech2 * a[..., None] * dc, axis=-1)
    if not isinstance(dw, SymbolicZero):
        tangent = tangent - jnp.sum(dw * t, axis=-1)
    return value, tangent


_n_sum.defjvp(_n_sum_jvp, symbolic_zeros=True)


def _n_over_a(sq: jax.Array, c: jax.Array, w: jax.Array) -> jax.Array:
    """``M(a) = N(a)/a`` at ``a² = sq`` (any shape), smooth at ``a = 0`` (series below 0.05)."""
    small = sq < _SERIES_RADIUS**2
    wc = w * c
    s1, s3, s5 = jnp.sum(wc), jnp.sum(wc * c**2), jnp.sum(wc * c**4)
    series = -(s1 - sq * s3 / 3.0 + 2.0 * sq * sq * s5 / 15.0)
    a = jnp.sqrt(jnp.where(small, _SERIES_RADIUS**2, sq))
    direct = _n_sum(a, c, w) / a
    return jnp.where(small, series, direct)


def generalised_tanh_correction(norm: jax.Array, basis: jax.Array, *,
                                correction_pairs: jax.Array | np.ndarray | None = None,
                                tolerance: float = DEFAULT_PAIR_TOLERANCE,
                                pairs=UNSET) -> jax.Array:
    """The correction ``N(a)`` of Eqn. 13 (the ``j``-averaged form of Eqn. 12).

    ``N(a) = −(1/m) Σ_j [Σ_{i≠j} tanh(a max(0, b̂_j·b̂_i)) b̂_i·b̂_j] / Σ_i max(0, b̂_j·b̂_i)²``,
    evaluated as a sum over the positive-cosine pairs only (see the module docstring).

    Args:
      norm: ``a = ‖x‖``, any shape.
      basis: ``(m, n)`` basis (rows normalised here).
      correction_pairs: ``(P, 2)`` output of :func:`positive_cosine_pairs`; built here if
        omitted.
      tolerance: cosines at or below it count as non-positive.
      pairs: deprecated name of ``correction_pairs``.

    Returns:
      ``N(a)``, the shape of ``norm``; identically 0 when there are no positive pairs.
    """
    correction_pairs = renamed(
        "generalised_tanh_correction", "pairs", pairs, "correction_pairs", correction_pairs, None
    )
    basis = jnp.asarray(basis)
    pairs = _resolve_pairs(basis, correction_pairs, tolerance)
    return _correction(jnp.asarray(norm, basis.dtype), basis, pairs, tolerance)


@partial(jax.jit, static_argnames=("tolerance",))
def _correction(norm: jax.Array, basis: jax.Array, pairs: jax.Array, tolerance: float):
    if pairs.shape[0] == 0:
        return jnp.zeros(norm.shape, norm.dtype)
    c, w = _correction_terms(normalise_rows(basis), pairs, tolerance)
    return _n_sum(norm, c, w)


def generalised_tanh(
    x: jax.Array,
    basis: jax.Array,
    *,
    correction_pairs: jax.Array | np.ndarray | None = None,
    tolerance: float = DEFAULT_PAIR_TOLERANCE,
    pairs=UNSET,
) -> jax.Array:
    """The generalised tanh of App. C, Eqn. 14, on a privileged basis of any size ``m``.

    ``σ(x) = Σ_i [tanh(max(0, x·b̂_i)) + max(0, x̂·b̂_i) N(‖x‖)] b̂_i`` with ``N`` of Eqn. 13
    (:func:`generalised_tanh_correction`). Properties (math §7.2): ``σ(0) = 0``; for an
    orthoplex ``{±q_k}`` it is ``Σ_k tanh(x·q_k) q_k`` (elementwise tanh in a rotated basis,
    Eqn. 6; for :func:`~srm_jax.bases.standard_basis` exactly ``jnp.tanh``); for the regular
    simplex ``σ(a b̂_j)·b̂_j = tanh(a)``; ``σ_{BQ}(xQ) = σ_B(x) Q`` for orthogonal ``Q``. For
    ``m ≤ n`` the output lies in the span of the basis.

    The correction costs one ``tanh`` per sample and positive-cosine pair; see the module
    docstring for the pair structure, the ``tolerance`` and the handling of ``x = 0``.

    Args:
      x: ``(..., n)`` inputs, feature axis last.
      basis: ``(m, n)`` privileged basis, one vector a row (normalised here).
      correction_pairs: ``(P, 2)`` result of :func:`positive_cosine_pairs` for this basis
        (pass it when the basis is traced to keep the sparse path); built here if omitted.
      tolerance: cosines at or below it count as non-positive (ignored pairs).
      pairs: deprecated name of ``correction_pairs``.

    Returns:
      ``(..., n)`` activations.
    """
    correction_pairs = renamed(
        "generalised_tanh", "pairs", pairs, "correction_pairs", correction_pairs, None
    )
    x = jnp.asarray(x)
    basis = jnp.asarray(basis)
    _check_inputs(x, basis)
    pairs = _resolve_pairs(basis, correction_pairs, tolerance)
    return _generalised_tanh(x, basis, pairs, tolerance)


@partial(jax.jit, static_argnames=("tolerance",))
def _generalised_tanh(
    x: jax.Array, basis: jax.Array, pairs: jax.Array, tolerance: float
) -> jax.Array:
    b = normalise_rows(basis).astype(jnp.result_type(x, basis))
    z = x @ b.T
    positive = jnp.maximum(z, 0.0)
    coeff = jnp.tanh(positive)
    if pairs.shape[0] > 0:
        c, w = _correction_terms(b, pairs, tolerance)
        coeff = coeff + positive * _n_over_a(_sum_squares(x), c, w)[..., None]
    return coeff @ b


@partial(jax.jit, static_argnames=("radius",))
def isotropic_tanh(x: jax.Array, *, radius: float = DEFAULT_RADIUS) -> jax.Array:
    """Isotropic tanh (Eqn. 15's numerator; the position paper): ``tanh(‖x‖) x̂``.

    Inside the ball ``‖x‖ ≤ radius`` (default ``1e-2``, math §7.5) it is the identity ``x`` — the
    two differ there by at most ``radius³/3``. It commutes with every orthogonal map and keeps
    the direction of ``x``; the Jacobian at ``x = 0`` is the identity.

    Args:
      x: ``(..., n)`` inputs, feature axis last.
      radius: the identity ball's radius (``0`` gives the bare formula, still finite at 0).

    Returns:
      ``(..., n)`` activations.
    """
    x = jnp.asarray(x)
    norm = _safe_norm(_sum_squares(x))[..., None]
    inside = norm <= radius
    safe = jnp.where(inside, 1.0, norm)
    return jnp.where(inside, x, jnp.tanh(safe) * x / safe)


def normalised_isotropic_tanh(
    x: jax.Array,
    basis: jax.Array,
    *,
    radius: float = DEFAULT_RADIUS,
    min_cosine: float | None = None,
) -> jax.Array:
    """The basis-normalised isotropic tanh of Eqn. 15: ``tanh(‖x‖) x̂ / max_i(b̂_i·x̂)``.

    Along a basis vector it is the tanh (``σ(a b̂_j) = tanh(a) b̂_j``, ``a > radius``); between
    basis vectors the output is stretched, so the sphere ``‖x‖ = r`` maps onto the boundary of
    the polytope ``{y : max_i b̂_i·y ≤ tanh(r)}``. The numerator is :func:`isotropic_tanh`
    (identity inside the ball ``‖x‖ ≤ radius``).

    Where the basis does not surround ``x̂`` (an undercomplete basis, or a direction far from
    every basis vector) ``max_i(b̂_i·x̂)`` is small, zero or negative. The denominator is
    therefore ``max(max_i(b̂_i·x̂), min_cosine)``, default ``min_cosine = 1/n``: this is the
    smallest value the maximum takes for the regular simplex (at ``x̂ = −b̂_j``), so the floor
    never acts on an exact simplex, orthoplex or better-spread Thompson basis, and it bounds
    the gain by ``1/min_cosine`` elsewhere (continuous, finite). At ``x = 0`` the denominator
    is taken as 1 (output 0, Jacobian the identity).

    Args:
      x: ``(..., n)`` inputs, feature axis last.
      basis: ``(m, n)`` basis (rows normalised here).
      radius: identity-ball radius of the numerator.
      min_cosine: floor of the denominator (``> 0``); ``None`` means ``1/n``.

    Returns:
      ``(..., n)`` activations.
    """
    x = jnp.asarray(x)
    basis = jnp.asarray(basis)
    _check_inputs(x, basis)
    floor = 1.0 / x.shape[-1] if min_cosine is None else float(min_cosine)
    if not floor > 0:
        raise ValueError(f"min_cosine must be positive, got {min_cosine!r}.")
    return _normalised_isotropic_tanh(x, basis, radius=radius, floor=floor)


@partial(jax.jit, static_argnames=("radius", "floor"))
def _normalised_isotropic_tanh(
    x: jax.Array, basis: jax.Array, *, radius: float, floor: float
) -> jax.Array:
    b = normalise_rows(basis).astype(jnp.result_type(x, basis))
    norm = _safe_norm(_sum_squares(x))[..., None]
    nonzero = norm > 0
    direction = x / jnp.where(nonzero, norm, 1.0)
    nearest = jnp.max(direction @ b.T, axis=-1, keepdims=True)
    denominator = jnp.where(nonzero, jnp.maximum(nearest, floor), 1.0)
    return isotropic_tanh(x, radius=radius) / denominator
