"""Privileged-plane projections: what SRM summarises, shown by eye (math §3, §5).

For a plane ``(α, β)`` with orthonormal frame ``(b̂_α, û)`` (math §3.1), a sample's in-plane
coordinates are ``x = d̂·b̂_α``, ``y = d̂·û`` (:func:`srm_jax.plane_coordinates`); its in-plane
norm over its full norm is ``r = √(x² + y²)`` (``d̂`` is already normalised). SRM counts the
samples whose ``(x, y)`` fall in a rotating cone; the projection keeps the samples close to the
plane (``r ≥ min_radius``) and shows where in the plane they lie. The spotlight at angle θ points at
``(cos θ, −sin θ)`` in these coordinates, so a sample at polar angle ``φ`` is lit around
``θ = −φ``; ``b̂_α`` is at ``(1, 0)`` and ``b̂_β`` at ``(c, √(1 − c²))``, ``c = b̂_α·b̂_β``.

Isotropic reference. For directions uniform on ``S^{n−1}`` the in-plane coordinates have the
density ``p(x, y) = (n − 2)/(2π) · (1 − x² − y²)^{(n−4)/2}`` on the unit disc (``n ≥ 3``; on the
unit circle for ``n = 2``), i.e. ``r² ~ Beta(1, (n − 2)/2)`` with a uniform polar angle, the same
for every plane. The expected isotropic histogram is computed by Monte Carlo from a key (exact
in expectation for every ``n``, every bin shape and the ``r ≥ min_radius`` cut, with relative noise
``≈ 1/√(reference count of the bin)``), sampling ``(r, ψ)`` directly, so ``num_reference`` can be
large at little cost. :func:`isotropic_plane_density` gives the analytic density.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from srm_jax import _validation
from srm_jax._precision import working_dtype
from srm_jax.resonance import validate_inputs
from srm_jax.rotation import normalise_rows, plane_coordinates


def _as_pairs(planes):
    pairs = jnp.asarray(planes, jnp.int32)
    return (pairs[None, :], True) if pairs.ndim == 1 else (pairs, False)


def _check_inputs(function, activations, basis, planes, min_radius, epsilon):
    """The pairs of ``planes`` (and whether one pair was given) and ``min_radius`` (formerly
    ``epsilon``), checked: a radius fraction lies in ``[0, 1]``."""
    min_radius = _validation.renamed(function, "epsilon", epsilon, "min_radius", min_radius, 0.0)
    pairs, single = _as_pairs(planes)
    validate_inputs(activations, basis, epsilon=None, angles=None, planes=pairs)
    if _validation.is_concrete(min_radius):
        radius = np.asarray(min_radius)
        if radius.ndim != 0 or not (0.0 <= float(radius) <= 1.0):
            raise ValueError(
                "min_radius must be a scalar in [0, 1] (the in-plane norm over the full norm), "
                f"got {min_radius!r}."
            )
    return pairs, single, min_radius


def plane_projection(
    activations: jax.Array,
    basis: jax.Array,
    planes: jax.Array,
    *,
    min_radius: float | jax.Array = 0.0,
    epsilon=_validation.UNSET,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """In-plane coordinates of every sample and which lie close to each plane.

    Args:
      activations: ``(N, n)`` samples.
      basis: ``(m, n)`` privileged basis.
      planes: one pair ``(α, β)`` (shape ``(2,)``) or int ``(P, 2)`` pairs.
      min_radius: keep samples with in-plane norm over full norm ``r ≥ min_radius``
        (in ``[0, 1]``; 0 keeps every sample with a direction).
      epsilon: deprecated name of ``min_radius`` (a radius, not the spotlight's cosine).

    Returns:
      ``x, y, mask``, each ``(N, P)`` (``(N,)`` for a single pair): ``x = d̂·b̂_α``, ``y = d̂·û``
      and ``mask`` true for finite, non-zero rows with ``r ≥ min_radius``. Fixed shapes, so it
      is jit-safe; select with ``x[mask]`` outside jit.
    """
    pairs, single, min_radius = _check_inputs(
        "plane_projection", activations, basis, planes, min_radius, epsilon)
    x, y, mask = _plane_projection(activations, basis, pairs, min_radius)
    if single:
        return x[:, 0], y[:, 0], mask[:, 0]
    return x, y, mask


@jax.jit
def _plane_projection(activations, basis, pairs, min_radius):
    dtype = working_dtype(activations, basis)
    activations = jnp.asarray(activations, dtype)
    finite = jnp.all(jnp.isfinite(activations), axis=1)
    nonzero = jnp.any(activations != 0, axis=1)
    safe = jnp.where(finite[:, None], activations, 0)
    x, y = plane_coordinates(safe, jnp.asarray(basis, dtype), pairs)
    r = jnp.sqrt(x * x + y * y)
    mask = (finite & nonzero)[:, None] & (r >= jnp.asarray(min_radius, dtype))
    return x, y, mask


def isotropic_plane_density(n: int, x: jax.Array, y: jax.Array) -> jax.Array:
    """Density of the in-plane coordinates of isotropic directions (``n ≥ 3``; module docstring).

    ``p(x, y) = (n − 2)/(2π) · (1 − x² − y²)^{(n−4)/2}`` inside the unit disc, 0 outside.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    if int(n) < 3:
        raise ValueError("for n = 2 the in-plane coordinates lie on the unit circle (no density).")
    s = 1.0 - x * x - y * y
    inside = s > 0
    value = (n - 2) / (2 * math.pi) * jnp.where(inside, s, 1.0) ** ((n - 4) / 2)
    return jnp.where(inside, value, 0.0)


def isotropic_plane_samples(key: jax.Array, n: int, num: int, dtype=jnp.float32):
    """``num`` in-plane coordinates ``(x, y)`` of isotropic directions in ``R^n``, drawn directly.

    ``r² ~ Beta(1, (n − 2)/2)`` (``r = 1`` for ``n = 2``), drawn by its inverse CDF
    ``r² = 1 − U^{2/(n−2)}``, and a uniform polar angle.
    """
    radius_key, angle_key = jax.random.split(key)
    if int(n) == 2:
        r = jnp.ones((num,), dtype)
    else:
        uniform = jax.random.uniform(radius_key, (num,), dtype)
        r = jnp.sqrt(jnp.clip(1.0 - uniform ** (2.0 / (n - 2)), 0.0, 1.0))
    psi = jax.random.uniform(angle_key, (num,), dtype, 0.0, 2 * math.pi)
    return r * jnp.cos(psi), r * jnp.sin(psi)


@struct.dataclass
class ProjectionDensity:
    """Histogram of in-plane coordinates and its isotropic reference (see
    :func:`projection_density`).

    Attributes:
      counts: int32 ``(P, bins, bins)``: samples with ``r ≥ min_radius`` per bin, indexed
        ``[plane, y-bin, x-bin]`` (``imshow(..., origin="lower")`` orientation).
      expected: ``(bins, bins)`` expected counts for isotropic data of the same number of samples
        with the same ``r ≥ min_radius`` cut (the same for every plane).
      edges: ``(bins + 1,)`` bin edges, shared by x and y.
      num_samples: samples with a direction (finite, non-zero rows).
      planes: ``(P, 2)``; cosines: ``(P,)`` ``c = b̂_α·b̂_β`` (where ``b̂_β`` lies in the
        image: ``(c, √(1 − c²))``).
      epsilon: scalar, the ``min_radius`` of :func:`projection_density` (the field keeps its
        name; :attr:`min_radius` reads it).
    """

    counts: jax.Array
    expected: jax.Array
    edges: jax.Array
    num_samples: jax.Array
    planes: jax.Array
    epsilon: jax.Array
    cosines: jax.Array

    @property
    def min_radius(self) -> jax.Array:
        """The in-plane fraction threshold of the counts (the ``epsilon`` field)."""
        return self.epsilon

    @property
    def ratio(self) -> jax.Array:
        """``counts / expected``, ``(P, bins, bins)``: 1 where the data look isotropic, > 1 where
        they concentrate; NaN where isotropic data would put nothing."""
        expected = self.expected[None]
        return jnp.where(expected > 0, self.counts / jnp.where(expected > 0, expected, 1), jnp.nan)


def _histogram(x, y, weights, edges, num_planes):
    bins = edges.shape[0] - 1
    lo, hi = edges[0], edges[-1]
    scale = bins / (hi - lo)
    ix = jnp.floor((x - lo) * scale).astype(jnp.int32)
    iy = jnp.floor((y - lo) * scale).astype(jnp.int32)
    # The last edge is included in the last bin (as numpy.histogram2d).
    ix = jnp.where(x == hi, bins - 1, ix)
    iy = jnp.where(y == hi, bins - 1, iy)
    inside = (ix >= 0) & (ix < bins) & (iy >= 0) & (iy < bins) & weights
    plane = jnp.broadcast_to(jnp.arange(num_planes, dtype=jnp.int32), x.shape)
    flat = jnp.where(inside, (plane * bins + iy) * bins + ix, 0)
    counts = jnp.zeros(num_planes * bins * bins, jnp.int32).at[flat.ravel()].add(
        inside.ravel().astype(jnp.int32)
    )
    return counts.reshape(num_planes, bins, bins)


def projection_density(
    key: jax.Array,
    activations: jax.Array,
    basis: jax.Array,
    planes: jax.Array,
    *,
    min_radius: float | jax.Array = 0.0,
    bins: int = 64,
    extent: float = 1.0,
    num_reference: int = 1 << 20,
    epsilon=_validation.UNSET,
) -> ProjectionDensity:
    """A density image of the samples close to each plane, with its isotropic reference.

    Histograms the in-plane coordinates ``(x, y)`` of the samples with ``r ≥ min_radius``
    (:func:`plane_projection`) on a ``bins × bins`` grid over ``[−extent, extent]²`` and computes
    the counts isotropic data of the same number of samples would give in expectation (Monte
    Carlo from ``key`` with ``num_reference`` draws; module docstring). ``ratio = counts /
    expected`` shows where the data are enriched relative to no alignment, so the regions where
    isotropic data would already put many samples are not over-weighted. Pure and jit-compiled
    (``bins``, ``num_reference`` static).

    Args:
      key: PRNG key for the isotropic reference.
      activations: ``(N, n)``; basis: ``(m, n)``.
      planes: one pair ``(2,)`` or int ``(P, 2)``.
      min_radius: in-plane fraction threshold in ``[0, 1]`` (as :func:`plane_projection`).
      bins: bins per axis.
      extent: half-width of the square image (1 covers the whole disc).
      num_reference: isotropic draws for the reference.
      epsilon: deprecated name of ``min_radius``.

    Returns:
      :class:`ProjectionDensity` (``P = 1`` for a single pair).
    """
    pairs, _, min_radius = _check_inputs(
        "projection_density", activations, basis, planes, min_radius, epsilon)
    if int(bins) < 1 or int(num_reference) < 1:
        raise ValueError("bins and num_reference must be >= 1.")
    return _projection_density(
        key, activations, basis, pairs, min_radius, extent, bins=int(bins),
        num_reference=int(num_reference),
    )


@partial(jax.jit, static_argnames=("bins", "num_reference"))
def _projection_density(key, activations, basis, pairs, min_radius, extent, *, bins,
                        num_reference):
    dtype = working_dtype(activations, basis)
    x, y, mask = _plane_projection(activations, basis, pairs, min_radius)
    extent = jnp.asarray(extent, dtype)
    edges = jnp.linspace(-extent, extent, bins + 1, dtype=dtype)
    counts = _histogram(x, y, mask, edges, pairs.shape[0])
    activations = jnp.asarray(activations, dtype)
    usable = jnp.all(jnp.isfinite(activations), axis=1) & jnp.any(activations != 0, axis=1)
    num_samples = jnp.sum(usable, dtype=jnp.int32)
    rx, ry = isotropic_plane_samples(key, activations.shape[1], num_reference, dtype)
    keep = jnp.sqrt(rx * rx + ry * ry) >= jnp.asarray(min_radius, dtype)
    reference = _histogram(rx[:, None], ry[:, None], keep[:, None], edges, 1)[0]
    expected = reference.astype(dtype) * (num_samples.astype(dtype) / num_reference)
    basis = jnp.asarray(basis, dtype)
    unit = normalise_rows(basis)
    cosines = jnp.sum(unit[pairs[:, 0]] * unit[pairs[:, 1]], axis=-1)
    return ProjectionDensity(
        counts=counts,
        expected=expected,
        edges=edges,
        num_samples=num_samples,
        planes=pairs,
        epsilon=jnp.asarray(min_radius, dtype),
        cosines=cosines,
    )
