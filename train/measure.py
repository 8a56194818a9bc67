"""SRM measurements of a model's latent layer (SPEC §4, §9; paper Sec. 3, App. B.1).

The training loop calls :class:`Measurer` on the latent activations of the test split before
training, every ``measure_every`` epochs and after. Each measurement is the SRM ensemble
``(P, T)`` about the planes of the latent basis, with the config's ε, plane kind and angle grid,
and an *alignment score*: the Pearson correlation over θ between the mean SRM curve and the mean
self-SRM curve (``srm_jax.alignment_score``; +1 in phase, −1 in anti-phase, undefined — NaN
here, ``null`` in JSON — when either curve is flat).

Planes: a pair of antipodal vectors ``(b, −b)`` spans no plane (SPEC §2), so such pairs are left
out of the plane list. Orthoplex bases ``{±q_k}`` (``m = 2n``) and the standard basis ``{±e_i}``
have ``n`` of them (``(m(m−1)/2) − n`` combination planes remain); Thompson and simplex bases have
none. The list is fixed per basis for the whole run (a ``max_planes`` subset is drawn once from
the run's PRNG key).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

import srm_jax

ANTIPODAL_TOLERANCE = 1e-4  # |cos| >= 1 - this: the pair spans no plane and is left out


def spanning_planes(
    basis: np.ndarray,
    kind: str = "comb",
    *,
    max_planes: int | None = None,
    key: jax.Array | None = None,
    tolerance: float = ANTIPODAL_TOLERANCE,
) -> np.ndarray:
    """The ``kind`` planes of ``basis`` that span a plane (``|b̂_α·b̂_β| < 1 − tolerance``).

    Pairs come in the canonical order of :func:`srm_jax.planes` (SPEC §2); with ``max_planes``
    a subset of the spanning planes is drawn without replacement from ``key``.
    """
    b = np.asarray(basis, np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    pairs = np.asarray(srm_jax.planes(b.shape[0], kind))
    cos = np.abs(np.sum(b[pairs[:, 0]] * b[pairs[:, 1]], axis=1))
    pairs = pairs[cos < 1.0 - tolerance]
    if max_planes is not None and max_planes < len(pairs):
        if key is None:
            raise ValueError("max_planes needs a PRNG key.")
        chosen = np.sort(np.asarray(jax.random.choice(key, len(pairs), (max_planes,), False)))
        pairs = pairs[chosen]
    if len(pairs) == 0:
        raise ValueError("the basis has no pair of vectors that spans a plane.")
    return pairs.astype(np.int32)


@dataclasses.dataclass(frozen=True)
class BasisMeasurement:
    """What one basis gives: SRM values ``(P, T)``, its alignment with self-SRM, sample count."""

    values: np.ndarray
    alignment: float
    num_samples: int

    @property
    def mean_curve(self) -> np.ndarray:
        """The mean SRM curve over planes ``(T,)``."""
        return self.values.mean(axis=0)


class Measurer:
    """SRM of latent activations about one fixed basis, with its self-SRM as the reference.

    Args:
      basis: ``(m, n)`` privileged basis.
      epsilon: spotlight ε.
      planes: ``"comb"`` or ``"perm"``.
      num_angles: size of the angle grid ``linspace(0, 2π, T)``.
      max_planes: optional random subset of planes (drawn once from ``key``).
      key: PRNG key for ``max_planes``.
      method: the engine's kernel (``"auto"``, ``"arc"``, ``"direct"``; same counts).
    """

    def __init__(
        self,
        basis,
        *,
        epsilon: float,
        planes: str = "comb",
        num_angles: int = 100,
        max_planes: int | None = None,
        key: jax.Array | None = None,
        method: str = "auto",
    ):
        self.basis = np.asarray(basis, np.float32)
        if not np.all(np.isfinite(self.basis)) or np.any(np.linalg.norm(self.basis, axis=1) == 0):
            raise ValueError("the basis has a zero or non-finite row (SPEC §1).")
        self.epsilon = float(epsilon)
        self.method = method
        self.angles = np.asarray(srm_jax.angle_grid(num_angles))
        self.planes = spanning_planes(self.basis, planes, max_planes=max_planes, key=key)
        self._args = tuple(map(jnp.asarray, (self.basis, self.angles, self.planes)))
        self._eps = jnp.float32(self.epsilon)
        values, curve = _self_srm(*self._args, self._eps, method=method)
        self.self_values, self._self_curve = np.asarray(values), curve

    def __call__(self, latents) -> BasisMeasurement:
        """Measure ``(N, n)`` latent activations (rows with NaN/Inf are left out, SPEC §1)."""
        values, score, count = _srm(
            jnp.asarray(latents, jnp.float32), *self._args, self._eps, self._self_curve,
            method=self.method,
        )
        return BasisMeasurement(np.asarray(values), float(score), int(count))


# Module-level jitted kernels: basis, angles and planes are arguments, so one compilation serves
# every basis (and every run in a process) of the same shapes.


@functools.partial(jax.jit, static_argnames=("method",))
def _self_srm(basis, angles, planes, epsilon, *, method):
    result = srm_jax.self_srm(
        basis, epsilon=epsilon, angles=angles, planes=planes, method=method
    )
    return result.values, result.mean_curve


@functools.partial(jax.jit, static_argnames=("method",))
def _srm(latents, basis, angles, planes, epsilon, self_curve, *, method):
    result = srm_jax.spotlight_resonance(
        latents, basis, epsilon=epsilon, angles=angles, planes=planes, method=method
    )
    return result.values, srm_jax.alignment_score(result, self_curve), result.num_samples


def json_float(x) -> float | None:
    """``x`` as a float, or ``None`` when it is NaN/Inf (undefined in JSON)."""
    x = float(x)
    return x if np.isfinite(x) else None
