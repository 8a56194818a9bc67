"""SRM measurements of a model's latent layer (math §4, §9; paper Sec. 3, App. B.1).

The training loop calls :class:`Measurer` on the latent activations of the test split before
training, every ``measure_every`` epochs and after. Each measurement is the SRM ensemble
``(P, T)`` about the planes of the latent basis, with the config's ε, plane kind and angle grid,
and an *alignment score*: the Pearson correlation over θ between the mean SRM curve and the mean
self-SRM curve (``srm_jax.alignment_score``; +1 in phase, −1 in anti-phase, undefined — NaN
here, ``null`` in JSON — when either curve is flat).

Planes: a pair of antipodal vectors ``(b, −b)`` spans no plane (math §2.2), so such pairs are left
out of the plane list. Orthoplex bases ``{±q_k}`` (``m = 2n``) and the standard basis ``{±e_i}``
have ``n`` of them (``(m(m−1)/2) − n`` combination planes remain); Thompson and simplex bases have
none. The list is fixed per basis for the whole run (a ``max_planes`` subset is drawn once from
the run's PRNG key).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import srm_jax
from srm_jax import bases as srm_bases
from train.configs import Config


def plane_layout(
    basis: np.ndarray,
    kind: str = "comb",
    *,
    antipodal: str = "drop",
    max_planes: int | None = None,
    key: jax.Array | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The reported planes of ``basis`` and which of them span a plane: ``(pairs, spanning)``.

    ``antipodal="drop"`` (default): :func:`srm_jax.spanning_planes` (the pairs with
    ``|b̂_α·b̂_β| < 1 − 1e-6``, math §2.2; a ``max_planes`` subset drawn among them), every entry
    of ``spanning`` True. ``antipodal="zero"``: every ``kind`` pair (a ``max_planes`` subset
    drawn from all of them), the antipodal ones marked ``False``; their SRM curves are reported
    as all-zero, as the published NumPy code counts them (it divides 0 by 0 and the comparison
    counts nothing).
    """
    if antipodal == "drop":
        pairs = np.asarray(srm_jax.spanning_planes(basis, kind, max_planes=max_planes, key=key))
        return pairs, np.ones(len(pairs), bool)
    if antipodal != "zero":
        raise ValueError(f"antipodal must be 'drop' or 'zero', got {antipodal!r}.")
    pairs = np.asarray(srm_jax.plane_pairs(np.shape(basis)[0], kind, max_planes=max_planes,
                                           key=key))
    every_spanning = np.asarray(srm_jax.spanning_planes(basis, kind))
    spanning = (pairs[:, None, :] == every_spanning[None, :, :]).all(axis=-1).any(axis=1)
    return pairs.astype(np.int32), spanning


@dataclasses.dataclass(frozen=True)
class BasisMeasurement:
    """What one basis gives: SRM values ``(P, T)``, its alignment with self-SRM, sample count.

    For a :class:`Measurer` of stacked bases every field has a leading seed axis ``K``.
    """

    values: np.ndarray
    alignment: float | np.ndarray
    num_samples: int | np.ndarray

    @property
    def mean_curve(self) -> np.ndarray:
        """The mean SRM curve over planes ``(T,)`` (``(K, T)`` when stacked)."""
        return self.values.mean(axis=-2)


class Measurer:
    """SRM of latent activations about one fixed basis, with its self-SRM as the reference.

    ``basis`` may be one ``(m, n)`` basis or a stack ``(K, m, n)``, one per seed of an ensemble:
    then every measurement takes ``(K, N, n)`` latents and runs vmapped over the seeds (one
    compiled computation, no Python loop), and ``planes``, ``self_values`` and the results get
    a leading seed axis. ``key`` is then a ``(K,)`` array of keys (one per seed) or ``None``.
    A method the library plans from the basis' values (:func:`needs_concrete_basis`:
    ``"sample_major"``) cannot take traced bases: its SRM, self-SRM and rotation test run one
    seed at a time on concrete arrays instead (each call jitted by the library) and are stacked
    into the same shapes, so nothing downstream changes. The library takes every basis of the
    experiments there (orthoplex, Thompson, simplex, standard, random: no two vectors parallel;
    a basis with parallel vectors raises its ``ValueError`` here, at construction) and hands
    ε = 0, where every sample lights every plane, to the arc kernel (the same counts).

    Args:
      basis: ``(m, n)`` or ``(K, m, n)`` privileged basis.
      epsilon: spotlight ε.
      planes: ``"comb"`` or ``"perm"``.
      num_angles: size of the angle grid ``linspace(0, 2π, T)``.
      max_planes: optional random subset of planes (drawn once from ``key``).
      key: PRNG key for ``max_planes``.
      method: the engine's kernel (one of :data:`srm_jax.resonance.METHODS`; same counts).
      antipodal: ``"drop"`` or ``"zero"`` (:func:`plane_layout`).
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
        antipodal: str = "drop",
    ):
        basis = np.asarray(basis, np.float32)
        self.stacked = basis.ndim == 3
        stack = basis if self.stacked else basis[None]
        if not np.all(np.isfinite(stack)) or np.any(np.linalg.norm(stack, axis=-1) == 0):
            raise ValueError("the basis has a zero or non-finite row (docs/math.md §1.2).")
        keys = [None] * len(stack)
        if key is not None:
            keys = list(key) if self.stacked else [key]
        layouts = [
            plane_layout(b, planes, antipodal=antipodal, max_planes=max_planes, key=k)
            for b, k in zip(stack, keys, strict=True)
        ]
        if len({int(s.sum()) for _, s in layouts}) != 1:
            raise ValueError("the seeds' bases have different numbers of spanning planes.")
        self.basis = basis
        self.epsilon = float(epsilon)
        self.method = method
        self.antipodal = antipodal
        self.angles = np.asarray(srm_jax.angle_grid(num_angles))
        all_pairs = np.stack([p for p, _ in layouts])
        self._spanning = np.stack([s for _, s in layouts])  # (K, P)
        span_pairs = np.stack([p[s] for p, s in layouts])  # (K, P_s, 2)
        self.planes = all_pairs if self.stacked else all_pairs[0]
        self._stack = jnp.asarray(stack)
        self._span_pairs = jnp.asarray(span_pairs)
        self._angles = jnp.asarray(self.angles)
        self._eps = jnp.float32(self.epsilon)
        self._seeds = _PER_SEED if needs_concrete_basis(method) else _VMAPPED
        values, curve = self._seeds.self_srm(
            self._stack, self._angles, self._span_pairs, self._eps, method=method
        )
        self._self_curve = curve
        self.self_values = self._unstack(self._full(np.asarray(values)))

    @property
    def spanning_fraction(self) -> float:
        """Fraction of the reported planes that span a plane (1 unless ``antipodal="zero"``)."""
        return float(self._spanning[0].mean())

    def _full(self, values: np.ndarray) -> np.ndarray:
        """``(K, P_s, T)`` spanning-plane values scattered into ``(K, P, T)`` (zeros elsewhere)."""
        if self._spanning.all():
            return values
        out = np.zeros((*self._spanning.shape, values.shape[-1]), values.dtype)
        for k in range(len(out)):
            out[k, self._spanning[k]] = values[k]
        return out

    def _unstack(self, x):
        return x if self.stacked else x[0]

    def __call__(self, latents) -> BasisMeasurement:
        """Measure ``(N, n)`` latent activations (``(K, N, n)`` when stacked); rows with NaN/Inf
        are left out (math §1.2). The alignment is that of the mean curves over every reported
        plane (all-zero curves scale both mean curves alike: the correlation is unchanged)."""
        latents = jnp.asarray(latents, jnp.float32)
        if not self.stacked:
            latents = latents[None]
        values, score, count = self._seeds.srm(
            latents, self._stack, self._angles, self._span_pairs, self._eps, self._self_curve,
            method=self.method,
        )
        values = self._full(np.asarray(values))
        return BasisMeasurement(
            self._unstack(values), self._unstack(np.asarray(score, np.float64)),
            self._unstack(np.asarray(count)),
        )

    def rotation_test(
        self, key: jax.Array, latents, *, num_rotations: int, alternative: str
    ) -> dict:
        """The rotation test of alignment (:func:`srm_jax.alignment_test`, statistic
        ``"projection"``) of every seed, vmapped; returns arrays ``score``, ``p_value`` and
        ``null_quantiles`` (2.5 %, 50 %, 97.5 %) with the seed axis when stacked.

        ``key`` is one key per seed (``(K,)``) when stacked. The projection statistic is scaled
        by the fraction of spanning planes (:attr:`spanning_fraction`), as the mean curves are
        when antipodal planes count as zero curves; the p-value does not change.
        """
        latents = jnp.asarray(latents, jnp.float32)
        keys = jnp.asarray(key) if self.stacked else jnp.asarray(key)[None]
        if not self.stacked:
            latents = latents[None]
        score, null, p = self._seeds.rotation_test(
            keys, latents, self._stack, self._angles, self._span_pairs, self._eps,
            num_rotations=int(num_rotations), alternative=alternative, method=self.method,
        )
        scale = self.spanning_fraction
        quantiles = np.quantile(np.asarray(null, np.float64) * scale, [0.025, 0.5, 0.975], axis=1)
        return {
            "score": self._unstack(np.asarray(score, np.float64) * scale),
            "p_value": self._unstack(np.asarray(p, np.float64)),
            "null_quantiles": self._unstack(quantiles.T),
        }

    def max_cosine(self, key: jax.Array, latents, num_reference: int = 4096) -> dict:
        """Median over samples of the largest ``|cos|`` between a latent and the basis vectors,
        and the same for ``num_reference`` isotropic directions (Monte Carlo from ``key``, the
        same draws for every seed): how close the latents lie to basis directions."""
        latents = jnp.asarray(latents, jnp.float32)
        if not self.stacked:
            latents = latents[None]
        n = self.basis.shape[-1]
        reference = jax.random.normal(key, (num_reference, n), jnp.float32)
        data, iso = _median_max_cosine_batch(latents, self._stack, reference)
        return {
            "median_max_abs_cos": self._unstack(np.asarray(data, np.float64)),
            "isotropic_median_max_abs_cos": self._unstack(np.asarray(iso, np.float64)),
        }


def measured_epochs(config: Config) -> list[int]:
    """The SRM schedule: before training (0), every ``measure_every`` epochs, and the last."""
    every = range(0, config.epochs + 1, config.measure_every)
    return sorted({0, config.epochs, *every})


class RunMeasurements:
    """SRM measurements of a run, vmapped over its seeds: the latent bases and, for Fig. 2,
    random and standard bases, plus the ε sweep."""

    def __init__(self, config: Config, latent_bases: np.ndarray, measure_keys: jax.Array):
        split = jax.vmap(jax.random.split)(measure_keys)  # (K, 2)
        plane_keys, random_keys = split[:, 0], split[:, 1]
        self.test_keys = jax.vmap(lambda k: jax.random.fold_in(k, 7))(measure_keys)
        self.cosine_key = jax.random.fold_in(jax.random.key(0), 11)
        common = dict(
            epsilon=config.epsilon,
            planes=config.planes,
            num_angles=config.num_angles,
            max_planes=config.max_planes,
            key=plane_keys if config.max_planes is not None else None,
            method=config.srm_method,
            antipodal=config.antipodal_planes,
        )
        self.bases = {"privileged": Measurer(latent_bases, **common)}
        if config.compare_bases:
            m, n = config.num_basis, config.latent_dim
            random = np.stack([np.asarray(srm_bases.random_basis(k, m, n)) for k in random_keys])
            standard = np.broadcast_to(np.asarray(srm_bases.standard_basis(n)),
                                       (len(latent_bases), 2 * n, n))
            self.bases["random"] = Measurer(random, **common)
            self.bases["standard"] = Measurer(standard, **common)
        # The same planes of the latent basis at other spotlight sizes (a diagnostic).
        self.sweep_epsilon = np.asarray(config.epsilon_sweep, np.float64)
        self.sweep = [
            Measurer(latent_bases, **{**common, "epsilon": float(e)}) for e in self.sweep_epsilon
        ]

    def measure(self, latents):
        """Every basis's :class:`BasisMeasurement` and the sweep's, of ``(K, N, n)`` latents."""
        results = {name: measurer(latents) for name, measurer in self.bases.items()}
        sweep = [measurer(latents) for measurer in self.sweep]
        return results, sweep

    def save(self, path: Path, epoch: int, measured) -> None:
        """Save what :meth:`measure` returned (``measurements/epoch_XXXX.npz``)."""
        results, sweep = measured
        arrays = {"epoch": np.asarray(epoch)}
        for name, r in results.items():
            arrays[f"{name}_values"] = r.values.astype(np.float32)
            arrays[f"{name}_alignment"] = np.asarray(r.alignment, np.float64)
            arrays[f"{name}_num_samples"] = np.asarray(r.num_samples)
        arrays["sweep_epsilon"] = self.sweep_epsilon
        # (K, E): seeds first.
        arrays["sweep_alignment"] = np.asarray([r.alignment for r in sweep], np.float64).T
        arrays["sweep_srm_mean"] = np.asarray(
            [r.values.mean(axis=(1, 2)) for r in sweep], np.float64
        ).T
        np.savez_compressed(path, **arrays)


def needs_concrete_basis(method: str) -> bool:
    """Whether the library plans ``method`` from the basis' values (its kernel's
    ``needs_concrete_basis``), not only from its shape.

    The sample-major kernel's plan (:func:`srm_jax.resonance.plan_measurement`, its
    :attr:`~srm_jax.resonance.CountPlan.major` settings) is built from a concrete basis, planes
    and ε, so ``method="sample_major"`` refuses bases traced by ``jax.vmap``; :class:`Measurer`
    then measures seed by seed (:data:`_PER_SEED`). ``"auto"`` plans without it when the basis
    is traced (it then takes the arc or direct kernel: the same counts).
    """
    kernel = srm_jax.resonance.KERNELS.get(method)
    return kernel is not None and kernel.needs_concrete_basis


# Module-level jitted kernels: basis, angles and planes are arguments, so one compilation serves
# every basis (and every run in a process) of the same shapes. The ``_batch`` versions map over
# a leading seed axis of latents, bases and planes; the ``_each`` versions loop over it in
# Python with concrete arrays (for :func:`needs_concrete_basis` methods) and stack the results.


def _self_srm(basis, angles, planes, epsilon, *, method):
    result = srm_jax.self_srm(
        basis, epsilon=epsilon, angles=angles, planes=planes, method=method
    )
    return result.values, result.mean_curve


@functools.partial(jax.jit, static_argnames=("method",))
def _self_srm_batch(bases, angles, planes, epsilon, *, method):
    fn = functools.partial(_self_srm, method=method)
    return jax.vmap(fn, in_axes=(0, None, 0, None))(bases, angles, planes, epsilon)


def _srm(latents, basis, angles, planes, epsilon, self_curve, *, method):
    result = srm_jax.spotlight_resonance(
        latents, basis, epsilon=epsilon, angles=angles, planes=planes, method=method
    )
    return _srm_outputs(result, self_curve)


def _srm_outputs(result, self_curve):
    return result.values, srm_jax.alignment_score(result, self_curve), result.num_samples


@functools.partial(jax.jit, static_argnames=("method",))
def _srm_batch(latents, bases, angles, planes, epsilon, self_curves, *, method):
    fn = functools.partial(_srm, method=method)
    return jax.vmap(fn, in_axes=(0, 0, None, 0, None, 0))(
        latents, bases, angles, planes, epsilon, self_curves
    )


def _rotation_test(key, x, basis, pairs, angles, epsilon, *, num_rotations, alternative,
                   method):
    test = srm_jax.alignment_test(
        key, x, basis, epsilon=epsilon, num_resamples=num_rotations,
        alternative=alternative, statistic="projection", angles=angles, planes=pairs,
        method=method,
    )
    return test.score, test.null_scores, test.p_value


@functools.partial(jax.jit, static_argnames=("num_rotations", "alternative", "method"))
def _rotation_test_batch(keys, latents, bases, angles, planes, epsilon, *, num_rotations,
                         alternative, method):
    def one(key, x, basis, pairs):
        return _rotation_test(key, x, basis, pairs, angles, epsilon, num_rotations=num_rotations,
                              alternative=alternative, method=method)

    return jax.vmap(one)(keys, latents, bases, planes)


def _stack_seeds(outputs) -> tuple:
    """Per-seed output tuples stacked field by field along a new leading seed axis."""
    return tuple(jnp.stack(field) for field in zip(*outputs, strict=True))


def _self_srm_each(bases, angles, planes, epsilon, *, method):
    """:func:`_self_srm_batch` one seed at a time on concrete arrays."""
    return _stack_seeds(
        _self_srm(basis, angles, pairs, epsilon, method=method)
        for basis, pairs in zip(bases, planes, strict=True)
    )


def _srm_each(latents, bases, angles, planes, epsilon, self_curves, *, method):
    """:func:`_srm_batch` one seed at a time on concrete arrays. The counts are stacked first
    and the alignment scores computed by one vmapped computation, as :func:`_srm_batch` does
    (the same floats as the vmapped path for the same counts)."""
    results = [
        srm_jax.spotlight_resonance(
            x, basis, epsilon=epsilon, angles=angles, planes=pairs, method=method
        )
        for x, basis, pairs in zip(latents, bases, planes, strict=True)
    ]
    stacked = jax.tree.map(lambda *seeds: jnp.stack(seeds), *results)
    return _srm_outputs_batch(stacked, self_curves)


_srm_outputs_batch = jax.jit(jax.vmap(_srm_outputs))


def _rotation_test_each(keys, latents, bases, angles, planes, epsilon, *, num_rotations,
                        alternative, method):
    """:func:`_rotation_test_batch` one seed at a time on concrete arrays."""
    return _stack_seeds(
        _rotation_test(key, x, basis, pairs, angles, epsilon, num_rotations=num_rotations,
                       alternative=alternative, method=method)
        for key, x, basis, pairs in zip(keys, latents, bases, planes, strict=True)
    )


class _SeedKernels(NamedTuple):
    """How a :class:`Measurer` maps its measurements over the seed axis (same signatures)."""

    self_srm: Callable
    srm: Callable
    rotation_test: Callable


# One compiled computation over every seed; or a Python loop over concrete seeds for methods the
# library must plan from the basis' values (:func:`needs_concrete_basis`).
_VMAPPED = _SeedKernels(_self_srm_batch, _srm_batch, _rotation_test_batch)
_PER_SEED = _SeedKernels(_self_srm_each, _srm_each, _rotation_test_each)


def _median_max_abs_cos(x, basis):
    hi = jax.lax.Precision.HIGHEST
    unit_x = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    unit_b = basis / jnp.linalg.norm(basis, axis=-1, keepdims=True)
    cos = jnp.abs(jnp.matmul(unit_x, unit_b.T, precision=hi)).max(axis=-1)
    return jnp.nanmedian(cos)


@jax.jit
def _median_max_cosine_batch(latents, bases, reference):
    data = jax.vmap(_median_max_abs_cos)(latents, bases)
    iso = jax.vmap(_median_max_abs_cos, in_axes=(None, 0))(reference, bases)
    return data, iso


def json_float(x) -> float | None:
    """``x`` as a float, or ``None`` when it is NaN/Inf (undefined in JSON)."""
    x = float(x)
    return x if np.isfinite(x) else None
