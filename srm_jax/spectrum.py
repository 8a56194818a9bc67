"""SRM at scale: the alignment score over an ε sweep, and the exact Fourier spectrum (math §5.4).

* :func:`alignment_sweep` measures :func:`srm_jax.alignment_score` (mean SRM against mean self-SRM)
  for many ε in one compiled call (the engine accepts a traced ε, so the sweep is a ``vmap``). The
  paper chose ε by hand per network (0.9, 0.8, 0.6); the sweep shows the whole curve.
* :func:`srm_spectrum` gives the SRM curve of every plane as its exact Fourier series, computed
  from the arc form of math §5 with no angle grid: sample ``d`` lights the spotlight on the arc
  ``θ ∈ [−φ − w, −φ + w]``, ``w = arccos(ε/r)`` (``w = π`` for a full circle, ``r ≤ −ε``; ``w = 0``
  for none, ``r < ε``), whose indicator has the Fourier coefficients
  ``(1/2π)∫ 1[θ ∈ arc] e^{−ikθ} dθ = e^{ikφ} sin(kw)/(πk)`` (``w/π`` for ``k = 0``). The SRM of
  a plane is the mean of these over samples, so its spectrum is exact up to the chosen order.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from srm_jax import _validation
from srm_jax._precision import HIGHEST, working_dtype
from srm_jax.alignment import alignment_score
from srm_jax.resonance import check_same_settings, plan_measurement, validate_inputs
from srm_jax.rotation import normalise_rows, plane_coordinates
from srm_jax.significance import _srm_mean_curve, batched_map

# Largest per-chunk temporary of the spectrum kernel (elements): chunk × P × (order + 1).
SPECTRUM_CHUNK_ELEMENTS = 1 << 21


@struct.dataclass
class EpsilonSweep:
    """Alignment over a sweep of ε (a pytree; see :func:`alignment_sweep`).

    Attributes:
      epsilons: ``(E,)`` the ε values.
      scores: ``(E,)`` alignment score at each ε (NaN where a curve is flat).
      mean_curves: ``(E, T)`` the mean SRM curve at each ε.
      self_mean_curves: ``(E, T)`` the mean self-SRM curve at each ε.
      angles: ``(T,)``; planes: ``(P, 2)``.
    """

    epsilons: jax.Array
    scores: jax.Array
    mean_curves: jax.Array
    self_mean_curves: jax.Array
    angles: jax.Array
    planes: jax.Array

    @property
    def best_epsilon(self) -> jax.Array:
        """The ε of the highest (non-NaN) alignment score (NaN if every score is NaN)."""
        scores = jnp.where(jnp.isnan(self.scores), -jnp.inf, self.scores)
        best = self.epsilons[jnp.argmax(scores)]
        return jnp.where(jnp.all(jnp.isnan(self.scores)), jnp.nan, best)


def alignment_sweep(
    activations: jax.Array,
    basis: jax.Array,
    epsilons: jax.Array,
    *,
    angles: jax.Array | None = None,
    planes: str | jax.Array = "comb",
    method: str = "auto",
    max_planes: int | None = None,
    key: jax.Array | None = None,
    chunk_size: int | None = None,
    map_batch_size: int | None = 1,
    batch_size=_validation.UNSET,
) -> EpsilonSweep:
    """The alignment score (mean SRM vs mean self-SRM, Sec. 3) at every ε of a sweep, in one call.

    For each ε the SRM (Eqn. 2) of ``activations`` and the self-SRM of ``basis`` are measured on
    the same planes and angles and compared by :func:`srm_jax.alignment_score` (Pearson
    correlation over θ of the mean curves). All ε are computed by one ``vmap``-ed, jit-compiled
    computation.

    Args:
      activations: ``(N, n)`` samples.
      basis: ``(m, n)`` privileged basis.
      epsilons: 1-D array of ``ε ∈ [−1, 1]``.
      angles, planes, method, max_planes, key, chunk_size: as
        :func:`srm_jax.spotlight_resonance`.
      map_batch_size: ε values evaluated together (:func:`srm_jax.significance.batched_map`);
        default 1, one at a time (least memory); ``None`` evaluates all at once (``vmap``).
      batch_size: deprecated name of ``map_batch_size`` (same meaning; ``None``, its default,
        evaluated all at once).

    Returns:
      :class:`EpsilonSweep`.
    """
    map_batch_size = _validation.renamed(
        "alignment_sweep", "batch_size", batch_size, "map_batch_size", map_batch_size, 1
    )
    plan, pairs, angles = plan_measurement(
        activations, basis, epsilon=None, angles=angles, planes=planes, method=method,
        max_planes=max_planes, key=key, chunk_size=chunk_size,
    )
    epsilons = jnp.asarray(epsilons)
    if epsilons.ndim != 1 or epsilons.shape[0] == 0:
        raise ValueError(f"epsilons must be a non-empty 1-D array, got shape {epsilons.shape}.")
    if _validation.is_concrete(epsilons):
        e = np.asarray(epsilons, np.float64)
        if not (np.all(np.isfinite(e)) and np.all(np.abs(e) <= 1.0)):
            raise ValueError(f"every epsilon must lie in [-1, 1], got {e.tolist()}.")
    return _alignment_sweep(
        activations, basis, pairs, angles, epsilons, plan=plan, map_batch_size=map_batch_size,
    )


@partial(jax.jit, static_argnames=("plan", "map_batch_size"))
def _alignment_sweep(activations, basis, pairs, angles, epsilons, *, plan, map_batch_size):
    dtype = working_dtype(activations, basis)
    activations = jnp.asarray(activations, dtype)
    basis = jnp.asarray(basis, dtype)
    epsilons = jnp.asarray(epsilons, dtype)

    def one(eps):
        curve = _srm_mean_curve(plan, activations, basis, pairs, angles, eps)
        reference = _srm_mean_curve(plan, basis, basis, pairs, angles, eps)
        return alignment_score(curve, reference), curve, reference

    scores, curves, references = batched_map(one, epsilons, map_batch_size)
    return EpsilonSweep(
        epsilons=epsilons,
        scores=scores,
        mean_curves=curves,
        self_mean_curves=references,
        angles=jnp.asarray(angles).astype(dtype),
        planes=pairs,
    )


@struct.dataclass
class SRMSpectrum:
    """Exact Fourier series of SRM curves (a pytree, additive over batches; see
    :func:`srm_spectrum`).

    ``f(θ) = Σ_{k=−K..K} c_k e^{ikθ}`` with ``c_{−k} = conj(c_k)`` and
    ``c_k = (1/2π) ∫_0^{2π} f(θ) e^{−ikθ} dθ``.

    Attributes:
      sums: complex ``(P, K+1)``: ``N·c_k`` for ``k = 0..K`` (sums over samples; additive).
      num_samples: the samples that counted.
      planes: ``(P, 2)``; epsilon: scalar.
      signed: spectrum of signed SRM (Eqn. 4); static.
    """

    sums: jax.Array
    num_samples: jax.Array
    planes: jax.Array
    epsilon: jax.Array
    signed: bool = struct.field(pytree_node=False, default=False)

    @property
    def coefficients(self) -> jax.Array:
        """Complex ``c_k``, ``(P, K+1)``, ``k = 0..K``."""
        return self.sums / jnp.asarray(self.num_samples).astype(self.sums.real.dtype)

    @property
    def mean_coefficients(self) -> jax.Array:
        """``c_k`` of the mean curve over planes, ``(K+1,)``."""
        return jnp.mean(self.coefficients, axis=-2)

    @property
    def mean(self) -> jax.Array:
        """The exact mean over θ of each plane's curve, ``c_0``, ``(P,)``."""
        return self.coefficients[..., 0].real

    @property
    def cosine(self) -> jax.Array:
        """``a_k`` of ``f(θ) = a_0 + Σ_{k≥1} a_k cos kθ + b_k sin kθ``: ``a_0 = c_0``,
        ``a_k = 2 Re c_k``."""
        c = self.coefficients
        scale = jnp.where(jnp.arange(c.shape[-1]) == 0, 1.0, 2.0)
        return c.real * scale

    @property
    def sine(self) -> jax.Array:
        """``b_k = −2 Im c_k`` (``b_0 = 0``)."""
        return -2.0 * self.coefficients.imag

    @property
    def power(self) -> jax.Array:
        """``|c_k|²``, ``(P, K+1)``: the resonance as a power spectrum."""
        c = self.coefficients
        return c.real**2 + c.imag**2

    def __add__(self, other: SRMSpectrum) -> SRMSpectrum:
        """The spectrum of the union of two disjoint sample sets (sums are additive, math §4.4).

        Both must share planes, order, ε and ``signed``, as :func:`srm_jax.combine_results`.
        """
        if self.signed != other.signed or self.sums.shape != other.sums.shape:
            raise ValueError("cannot combine spectra of different planes, orders or signedness.")
        check_same_settings(self, other, ("planes", "epsilon"))
        return self.replace(
            sums=self.sums + other.sums, num_samples=self.num_samples + other.num_samples
        )


def srm_spectrum(
    activations: jax.Array,
    basis: jax.Array,
    *,
    epsilon: float | jax.Array,
    order: int = 16,
    planes: str | jax.Array = "comb",
    signed: bool = False,
    max_planes: int | None = None,
    key: jax.Array | None = None,
    chunk_size: int | None = None,
) -> SRMSpectrum:
    """Exact Fourier coefficients ``c_0..c_K`` of each plane's SRM curve (math §5.4; Eqns. 2, 4).

    With ``x = d̂·b̂_α``, ``y = d̂·û``, ``r = √(x² + y²)``, ``φ = atan2(y, x)`` each sample lights
    the arc ``[−φ − w, −φ + w]`` with ``w = arccos(ε/r)`` when ``r ≥ ε``, the whole circle
    (``w = π``) when ``r ≤ −ε``, and nothing (``w = 0``) when ``r < ε``. The arc's indicator has
    ``c_0 = w/π`` and ``c_k = e^{ikφ} sin(kw)/(πk)``; SRM is the mean over samples. Signed SRM
    subtracts the same arcs shifted by π, so its ``c_k`` is ``(1 − (−1)^k)`` times the unsigned
    one (even orders vanish, ``c_0 = 0``). Independent of any angle grid; ``c_0`` is the exact
    mean of the curve over θ. Rows with NaN/Inf are left out; pure and jit/vmap safe (``order``,
    ``planes`` when a string, ``signed``, ``max_planes`` and ``chunk_size`` static).

    Args:
      activations: ``(N, n)``.
      basis: ``(m, n)``.
      epsilon: ``ε ∈ [−1, 1]``.
      order: ``K``, the highest harmonic returned.
      planes: ``"comb"``, ``"perm"`` or int ``(P, 2)``.
      signed: spectrum of signed SRM.
      max_planes, key: as :func:`srm_jax.spotlight_resonance`.
      chunk_size: samples per working chunk (default bounds the temporaries near 8 MiB).

    Returns:
      :class:`SRMSpectrum`.
    """
    pairs, _ = validate_inputs(activations, basis, epsilon=epsilon, angles=None, planes=planes,
                               max_planes=max_planes, key=key)
    if int(order) < 0:
        raise ValueError(f"order must be >= 0, got {order}.")
    return _srm_spectrum(
        activations, basis, pairs, epsilon, order=int(order), signed=bool(signed),
        chunk_size=chunk_size,
    )


@partial(jax.jit, static_argnames=("order", "signed", "chunk_size"))
def _srm_spectrum(activations, basis, pairs, epsilon, *, order, signed, chunk_size):
    dtype = working_dtype(activations, basis)
    activations = jnp.asarray(activations, dtype)
    basis = normalise_rows(jnp.asarray(basis, dtype))
    valid = jnp.all(jnp.isfinite(activations), axis=1)
    unit = normalise_rows(jnp.where(valid[:, None], activations, 0))
    n_samples, num_planes = unit.shape[0], pairs.shape[0]
    chunk = chunk_size or max(1, SPECTRUM_CHUNK_ELEMENTS // (num_planes * (order + 1)))
    chunk = min(chunk, max(n_samples, 1))
    num_chunks = max(1, -(-n_samples // chunk))
    pad = num_chunks * chunk - n_samples
    unit_chunks = jnp.pad(unit, ((0, pad), (0, 0))).reshape(num_chunks, chunk, -1)
    valid_chunks = jnp.pad(valid, (0, pad)).reshape(num_chunks, chunk)
    eps = jnp.asarray(epsilon, dtype)
    k = jnp.arange(order + 1, dtype=dtype)
    pi = jnp.asarray(math.pi, dtype)

    def body(carry, chunk_data):
        unit_chunk, valid_chunk = chunk_data
        x, y = plane_coordinates(unit_chunk, basis, pairs)
        r = jnp.sqrt(x * x + y * y)
        phi = jnp.arctan2(y, x)
        full = r <= -eps
        partial_arc = (r >= eps) & ~full
        safe_r = jnp.where(r > 0, r, 1)
        w = jnp.arccos(jnp.clip(eps / safe_r, -1.0, 1.0))
        w = jnp.where(full, pi, jnp.where(partial_arc, w, 0.0))
        w = jnp.where(valid_chunk[:, None], w, 0.0)
        kw = w[..., None] * k  # (chunk, P, K+1)
        # sin(kw)/(πk), and w/π at k = 0.
        amplitude = jnp.where(k == 0, w[..., None], jnp.sin(kw) / jnp.where(k == 0, 1, k)) / pi
        kphi = phi[..., None] * k
        real = jnp.sum(amplitude * jnp.cos(kphi), axis=0)
        imag = jnp.sum(amplitude * jnp.sin(kphi), axis=0)
        return (carry[0] + real, carry[1] + imag), None

    zeros = jnp.zeros((num_planes, order + 1), dtype)
    (real, imag), _ = jax.lax.scan(body, (zeros, zeros), (unit_chunks, valid_chunks))
    sums = jax.lax.complex(real, imag)
    if signed:
        sign = 1.0 - jnp.where(jnp.arange(order + 1) % 2 == 0, 1.0, -1.0)
        sums = sums * sign.astype(dtype)
    return SRMSpectrum(
        sums=sums,
        num_samples=jnp.sum(valid, dtype=jnp.int32),
        planes=pairs,
        epsilon=eps,
        signed=signed,
    )


def _coefficients(spectrum) -> jax.Array:
    return spectrum.coefficients if isinstance(spectrum, SRMSpectrum) else jnp.asarray(spectrum)


def evaluate_spectrum(spectrum: SRMSpectrum | jax.Array, angles: jax.Array) -> jax.Array:
    """The truncated series ``Σ_{|k|≤K} c_k e^{ikθ}`` at ``angles``: ``(..., T)`` real curves.

    Args:
      spectrum: an :class:`SRMSpectrum` or complex coefficients ``(..., K+1)``, ``k = 0..K``.
      angles: ``(T,)``.
    """
    c = _coefficients(spectrum)
    angles = jnp.asarray(angles, c.real.dtype)
    k = jnp.arange(c.shape[-1], dtype=angles.dtype)
    phase = k[:, None] * angles[None, :]  # (K+1, T)
    scale = jnp.where(k == 0, 1.0, 2.0)[:, None]
    return jnp.einsum(
        "...k,kt->...t", c.real, scale * jnp.cos(phase), precision=HIGHEST
    ) - jnp.einsum("...k,kt->...t", c.imag, scale * jnp.sin(phase), precision=HIGHEST)


def spectral_alignment_score(
    spectrum: SRMSpectrum | jax.Array,
    reference: SRMSpectrum | jax.Array,
    *,
    flat_tolerance: float = 1e-12,
) -> jax.Array:
    """Grid-free alignment score: Pearson correlation over continuous θ ∈ [0, 2π) of the mean
    curves, from their spectra (Parseval), truncated at order ``K``.

    ``Σ_{k=1..K} Re(c_k conj(d_k)) / √(Σ|c_k|² Σ|d_k|²)`` of the mean-over-planes coefficients
    ``c`` (SRM) and ``d`` (self-SRM). It approaches :func:`srm_jax.alignment_score` on a fine
    uniform grid as ``K`` grows. NaN when either curve is flat: its variance over θ
    (``2 Σ_{k≥1} |c_k|²``) is at most ``flat_tolerance`` times its squared mean ``|c_0|²``, or
    exactly zero (relative, as :func:`srm_jax.alignment_score`: scaling a curve or measuring
    more samples does not change it).

    Args:
      spectrum, reference: :class:`SRMSpectrum` (mean over planes is taken), or complex
        ``(K+1,)`` mean-curve coefficients.
    """
    a = spectrum.mean_coefficients if isinstance(spectrum, SRMSpectrum) else spectrum
    b = reference.mean_coefficients if isinstance(reference, SRMSpectrum) else reference
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"spectra must share the order, got {a.shape} and {b.shape}.")
    mean_a, mean_b = jnp.abs(a[..., 0]) ** 2, jnp.abs(b[..., 0]) ** 2
    a, b = a[..., 1:], b[..., 1:]
    power_a = jnp.sum(jnp.abs(a) ** 2, axis=-1)
    power_b = jnp.sum(jnp.abs(b) ** 2, axis=-1)
    flat = (2 * power_a <= flat_tolerance * mean_a) | (2 * power_b <= flat_tolerance * mean_b)
    cross = jnp.sum((a * jnp.conj(b)).real, axis=-1)
    # Two square roots: the product of two small powers can underflow.
    norm = jnp.sqrt(jnp.where(flat, 1.0, power_a)) * jnp.sqrt(jnp.where(flat, 1.0, power_b))
    score = cross / norm
    return jnp.where(flat, jnp.nan, jnp.clip(score, -1.0, 1.0))
