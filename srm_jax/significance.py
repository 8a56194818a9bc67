"""Significance of SRM: the isotropic expectation, a null band and a rotation test (math §6).

Three answers to "is this SRM signal more than what no alignment looks like?":

* :func:`isotropic_expectation` — the exact value of SRM for directions uniform on the sphere
  (App. F, Eqn. 18, in the regularised-incomplete-beta form of math §6). It is the same for every
  plane and angle, and the signed SRM of isotropic data is exactly 0.
* :func:`null_band` — the Monte Carlo spread of SRM of isotropic data of the same ``N`` and ``n``
  measured on the same basis, planes and angles: per plane and angle, and for the mean curve.
* :func:`alignment_test` — App. B.1's argument (only the privileged basis gives a signal) made
  quantitative: the alignment score of the real basis is ranked among the scores of the same basis
  rotated by Haar-random orthogonal matrices, with the same data. This gives an exact permutation
  p-value under the null hypothesis "the data do not know where the basis is".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.scipy.special import betainc

from srm_jax import _validation
from srm_jax._precision import exact_matmul, working_dtype
from srm_jax.alignment import alignment_score
from srm_jax.bases import random_orthogonal
from srm_jax.neurons import signed_neurons
from srm_jax.planes import spanning_planes
from srm_jax.resonance import (
    SAMPLE_MAJOR_PROBE_ROWS,
    SRMResult,
    plan_counts,
    plan_measurement,
    replan,
)
from srm_jax.rotation import normalise_rows
from srm_jax.sample_major import plane_table, probe_rows
from srm_jax.summaries import plan_summaries, plan_sweep_curves, summary_from_sums

ALTERNATIVES = ("greater", "less", "two-sided")
#: The statistics of the rotation test (:func:`alignment_statistic`); the first is the default
#: of every function that takes ``statistic`` (docs/vocabulary.md).
STATISTICS = ("projection", "correlation")
DEFAULT_STATISTIC = STATISTICS[0]
DEFAULT_LEVELS = (0.025, 0.5, 0.975)
#: ``jax.random.fold_in(key, PLANES_STREAM)`` draws ``max_planes`` in the functions whose ``key``
#: also draws their Monte Carlo null: the null's draws stay those of ``key``.
PLANES_STREAM = 1
#: The seed of the one rotation on which a rotation test plans its rotated copies' kernel.
NULL_PLAN_SEED = 0


def check_statistic(statistic: str) -> None:
    """Raises unless ``statistic`` is one of :data:`STATISTICS`."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}.")


def planes_key(key: jax.Array, max_planes: int | None) -> jax.Array | None:
    """The key that draws ``max_planes`` planes in a Monte Carlo function (``None`` without
    ``max_planes``): ``fold_in(key, PLANES_STREAM)``, independent of the draws of ``key``."""
    return None if max_planes is None else jax.random.fold_in(key, PLANES_STREAM)


def isotropic_expectation(n: int | jax.Array, epsilon: float | jax.Array) -> jax.Array:
    """SRM of isotropic data: ``P(d̂·s ≥ ε)`` for ``d̂`` uniform on ``S^{n−1}`` (math §6, Eqn. 18).

    ``½ I_{1−ε²}((n−1)/2, ½)`` for ``0 ≤ ε ≤ 1`` and ``1 − ½ I_{1−ε²}((n−1)/2, ½)`` for
    ``ε < 0``, with ``I`` the regularised incomplete beta function. This is the paper's ratio of
    the volume of an n-segment to that of the n-ball (App. F), the expected SRM value at every
    plane and angle (and so the exact mean over θ) of isotropically distributed activations.
    Checks: ``n = 2`` gives ``arccos(ε)/π``; ``n = 3`` gives ``(1 − ε)/2``. Eqn. 18 as printed
    in the paper evaluates to twice this value (1 at ε = 0); this is half of it, the probability.
    The signed SRM (Eqn. 4) of isotropic data is exactly 0 by the symmetry ``d̂ → −d̂``.

    Pure and jit/vmap safe; broadcasts over ``n`` and ``epsilon``.

    Args:
      n: dimension of the activation space (``n ≥ 2``).
      epsilon: ``ε ∈ [−1, 1]``, scalar or array.

    Returns:
      The probability, with the broadcast shape of ``n`` and ``epsilon``.
    """
    eps = jnp.asarray(epsilon)
    if not jnp.issubdtype(eps.dtype, jnp.floating):
        eps = eps.astype(jnp.result_type(float))
    n = jnp.asarray(n, eps.dtype)
    x = jnp.clip(1.0 - eps * eps, 0.0, 1.0)
    half = 0.5 * betainc(0.5 * (n - 1.0), jnp.asarray(0.5, eps.dtype), x)
    return jnp.where(eps >= 0, half, 1.0 - half)


def haar_rotations(
    key: jax.Array,
    n: int,
    num_resamples: int | None = None,
    dtype: Any = None,
    *,
    map_batch_size: int | None = 1,
    num=_validation.UNSET,
) -> jax.Array:
    """``num_resamples`` Haar-random ``(n, n)`` orthogonal matrices, ``(K, n, n)``: the rotations
    of :func:`alignment_test`. Rotation ``i`` is :func:`haar_rotation` of
    ``jax.random.split(key, num_resamples)[i]``, so a test that draws them a batch at a time (it
    never holds all of them) uses the same rotations. ``map_batch_size``: drawn that many at a
    time (:func:`batched_map`; ``1`` (default) holds one draw's workspace beside the result,
    ``None`` all at once). ``num`` is the deprecated name of ``num_resamples``."""
    num_resamples = _validation.renamed(
        "haar_rotations", "num", num, "num_resamples", num_resamples, None)
    if num_resamples is None:
        raise TypeError("haar_rotations() needs num_resamples: the number of rotations.")
    return haar_rotations_of(jax.random.split(key, int(num_resamples)), n, dtype,
                             map_batch_size=map_batch_size)


def haar_rotations_of(keys: jax.Array, n: int, dtype: Any = None, *,
                      map_batch_size: int | None = 1) -> jax.Array:
    """:func:`haar_rotation` of each key of ``keys``, ``(len(keys), n, n)``, ``map_batch_size``
    at a time (:func:`batched_map`): a run of :func:`haar_rotations`' rotations from its split
    keys (:func:`srm_jax.report.report_rotations` draws runs side by side)."""
    return batched_map(lambda k: haar_rotation(k, n, dtype), keys, map_batch_size)


def haar_rotation(key: jax.Array, n: int, dtype: Any = None) -> jax.Array:
    """One Haar-random ``(n, n)`` orthogonal matrix (:func:`srm_jax.random_orthogonal`): the
    rotation that key ``i`` of ``jax.random.split(key, num_resamples)`` gives in
    :func:`alignment_test`
    and in every other null drawn over the same rotations
    (:func:`srm_jax.basis_measures.measures_rotation_test`)."""
    return random_orthogonal(key, n, dtype=dtype)


@struct.dataclass
class NullBand:
    """The spread of SRM of isotropic data (a pytree; see :func:`null_band`).

    Attributes:
      mean, std: ``(P, T)`` Monte Carlo mean and standard deviation of the SRM value of each
        plane at each angle (``None`` for a band of the mean curve only, ``per_plane=False``).
      quantiles: ``(Q, P, T)`` the ``levels`` quantiles of each plane's value at each angle (or
        ``None``).
      curve_mean, curve_std: ``(T,)`` the same for the mean curve over planes.
      curve_quantiles: ``(Q, T)`` pointwise quantiles of the mean curve.
      curve_sup_quantiles: ``(Q,)`` quantiles of ``max_θ |mean curve(θ) − expectation|``: with
        probability ``q`` the whole isotropic mean curve lies within ``expectation ±`` this value
        (a simultaneous band over θ).
      levels: ``(Q,)`` the quantile levels.
      expectation: the exact isotropic value (:func:`isotropic_expectation`; 0 when signed).
      angles: ``(T,)``; planes: ``(P, 2)``; epsilon: scalar; num_samples: the ``N`` simulated.
      signed: whether the band is for signed SRM (Eqn. 4); static.
      num_draws: the number of isotropic data sets drawn (``num_resamples`` of
        :func:`null_band`); static.
    """

    mean: jax.Array | None
    std: jax.Array | None
    quantiles: jax.Array | None
    curve_mean: jax.Array
    curve_std: jax.Array
    curve_quantiles: jax.Array
    curve_sup_quantiles: jax.Array
    levels: jax.Array
    expectation: jax.Array
    angles: jax.Array
    planes: jax.Array
    epsilon: jax.Array
    num_samples: int = struct.field(pytree_node=False, default=0)
    signed: bool = struct.field(pytree_node=False, default=False)
    num_draws: int = struct.field(pytree_node=False, default=0)


def null_band(
    key: jax.Array,
    num_samples: int,
    basis: jax.Array,
    *,
    epsilon: float | jax.Array,
    angles: jax.Array | None = None,
    planes: str | jax.Array = "comb",
    signed: bool = False,
    num_resamples: int = 100,
    levels: Sequence[float] = DEFAULT_LEVELS,
    method: str = "auto",
    max_planes: int | None = None,
    chunk_size: int | None = None,
    map_batch_size: int | None = 1,
    per_plane: bool = True,
    num_draws=_validation.UNSET,
    batch_size=_validation.UNSET,
) -> NullBand:
    """What no alignment looks like: SRM of isotropic data on the same basis, planes and angles.

    Draws ``num_resamples`` data sets of ``num_samples`` standard-normal vectors in ``R^n`` (their
    directions are uniform on the sphere: the isotropic null of App. F) from ``key`` and measures
    their SRM (Eqn. 2, or Eqn. 4 when ``signed``) exactly as the real data would be measured.
    For a single plane and angle the count is exactly ``Binomial(N, p)`` with
    ``p = isotropic_expectation(n, ε)`` (every plane and angle alike); the Monte Carlo is needed
    for the mean curve, whose planes are correlated through shared and non-orthogonal basis
    vectors, and for the simultaneous band.

    Pure; ``num_samples``, ``planes`` (when a string), ``signed``, ``num_resamples``,
    ``levels``, ``method``, ``max_planes``, ``chunk_size`` and ``map_batch_size`` are static under
    ``jax.jit``.

    Args:
      key: PRNG key.
      num_samples: ``N`` of the real data (the spread shrinks as ``1/√N``).
      basis: ``(m, n)`` privileged basis.
      epsilon: ``ε ∈ [−1, 1]``.
      angles: 1-D angles; default :func:`srm_jax.angle_grid`.
      planes: ``"comb"``, ``"perm"`` or explicit int ``(P, 2)`` pairs.
      signed: band for signed SRM.
      num_resamples: number of isotropic data sets drawn.
      levels: quantile levels (default 2.5 %, 50 %, 97.5 %).
      method, chunk_size: passed to the SRM kernel (see :func:`srm_jax.spotlight_resonance`).
      max_planes: draw this many of the named ``planes`` at random, as
        :func:`srm_jax.spotlight_resonance`, from :func:`planes_key` of ``key`` (the isotropic
        data sets are those of ``key`` with or without it).
      map_batch_size: draws evaluated together (:func:`batched_map`); default 1, one at a time,
        which bounds memory to one data set; ``None`` evaluates all at once.
      per_plane: keep every plane's band (``mean``, ``std``, ``quantiles``: ``(P, T)`` per
        draw). ``False`` keeps the mean curve's band only and, where the sample-major kernel
        applies, never builds ``(P, T)`` (its summaries give each draw's mean curve): the band
        of a wide layer.
      num_draws: deprecated name of ``num_resamples``.
      batch_size: deprecated name of ``map_batch_size`` (``None`` there meant one at a time).

    Returns:
      :class:`NullBand`.
    """
    map_batch_size, num_resamples = monte_carlo_sizes(
        "null_band", batch_size, map_batch_size, ("num_draws", num_draws), num_resamples, 100)
    plan, pairs, angles = plan_measurement(
        None, basis, epsilon=epsilon, angles=angles, planes=planes, signed=signed,
        method=method, max_planes=max_planes, key=planes_key(key, max_planes),
        chunk_size=chunk_size,
    )
    if int(num_samples) < 1 or int(num_resamples) < 1:
        raise ValueError("num_samples and num_resamples must be >= 1.")
    return _null_band(
        key, basis, pairs, angles, epsilon, num_samples=int(num_samples), plan=plan,
        num_resamples=int(num_resamples), levels=tuple(float(q) for q in levels),
        map_batch_size=map_batch_size, per_plane=bool(per_plane),
    )


def batched_map(f, xs, map_batch_size: int | None):
    """``f`` over the leading axis of ``xs``, ``map_batch_size`` at a time.

    ``1``: one at a time (``jax.lax.map``; least memory); ``k``: ``k`` together
    (``jax.lax.map(batch_size=k)``); ``None``: all at once (``jax.vmap``). The meaning of
    ``map_batch_size`` in every function that takes it (docs/vocabulary.md).
    """
    if map_batch_size is None:
        return jax.vmap(f)(xs)
    if int(map_batch_size) < 1:
        raise ValueError(f"map_batch_size must be >= 1 or None, got {map_batch_size}.")
    return jax.lax.map(f, xs, batch_size=None if map_batch_size == 1 else int(map_batch_size))


def _one_at_a_time(batch_size):
    """The deprecated ``batch_size`` of the Monte Carlo functions: ``None`` meant one at a time."""
    return 1 if batch_size is None else batch_size


def monte_carlo_sizes(function: str, batch_size, map_batch_size: int | None,
                      old_size: tuple[str, object], num_resamples: int, default: int):
    """``(map_batch_size, num_resamples)`` of a Monte Carlo function, each through its
    deprecated spelling (``batch_size``; ``old_size = (old name, value)``) for one release."""
    map_batch_size = _validation.renamed(
        function, "batch_size", _one_at_a_time(batch_size), "map_batch_size", map_batch_size, 1,
        depth=2)
    num_resamples = _validation.renamed(
        function, old_size[0], old_size[1], "num_resamples", num_resamples, default, depth=2)
    return map_batch_size, num_resamples


@partial(
    jax.jit, static_argnames=("num_samples", "plan", "num_resamples", "levels", "map_batch_size",
                              "per_plane")
)
def _null_band(
    key, basis, pairs, angles, epsilon, *, num_samples, plan, num_resamples, levels, map_batch_size,
    per_plane,
):
    signed = plan.signed
    dtype = working_dtype(basis)
    basis = jnp.asarray(basis, dtype)
    n = basis.shape[1]
    table = None if plan.sample_major is None else plane_table(plan.sample_major, pairs)

    def one_draw(draw_key):
        data = jax.random.normal(draw_key, (num_samples, n), dtype)
        if not per_plane:
            return _srm_mean_curve(plan, data, basis, pairs, angles, epsilon, table, signed)
        grouped = plan_counts(plan, data, basis, pairs, angles, epsilon)
        return SRMResult.from_counts(grouped, pairs, epsilon, signed, group=0).values

    draws = batched_map(one_draw, jax.random.split(key, num_resamples), map_batch_size)
    level_array = jnp.asarray(levels, dtype)
    expectation = jnp.zeros((), dtype)
    if not signed:
        expectation = isotropic_expectation(n, jnp.asarray(epsilon, dtype))
    curves = jnp.mean(draws, axis=1) if per_plane else draws  # (K, T)
    sup = jnp.max(jnp.abs(curves - expectation), axis=-1)
    return NullBand(
        mean=jnp.mean(draws, axis=0) if per_plane else None,
        std=jnp.std(draws, axis=0) if per_plane else None,
        quantiles=jnp.quantile(draws, level_array, axis=0) if per_plane else None,
        curve_mean=jnp.mean(curves, axis=0),
        curve_std=jnp.std(curves, axis=0),
        curve_quantiles=jnp.quantile(curves, level_array, axis=0),
        curve_sup_quantiles=jnp.quantile(sup, level_array),
        levels=level_array,
        expectation=expectation,
        angles=jnp.asarray(angles).astype(dtype),
        planes=pairs,
        epsilon=jnp.asarray(epsilon, dtype),
        num_samples=num_samples,
        signed=signed,
        num_draws=num_resamples,
    )


def alignment_statistic(curve: jax.Array, reference: jax.Array,
                        statistic: str = DEFAULT_STATISTIC) -> jax.Array:
    """The statistic of :func:`alignment_test` for a mean SRM curve and the mean self-SRM curve.

    ``"projection"`` (default): ``cov_θ(f, g) / sd_θ(g)``, the amplitude (in SRM units) of the
    component of the SRM curve ``f`` in phase with the self-SRM curve ``g``; it keeps the
    strength of the oscillation, so a weak wiggle that happens to correlate with ``g`` scores
    little (the more powerful choice when the data are clustered, e.g. anti-alignment).
    ``"correlation"``: :func:`srm_jax.alignment_score` (Pearson correlation over θ; scale-free,
    NaN when flat).
    """
    check_statistic(statistic)
    if statistic == "correlation":
        return alignment_score(curve, reference)
    f = curve - jnp.mean(curve, axis=-1, keepdims=True)
    g = reference - jnp.mean(reference, axis=-1, keepdims=True)
    sd_g = jnp.sqrt(jnp.mean(g * g, axis=-1))
    return jnp.where(sd_g > 0, jnp.mean(f * g, axis=-1) / jnp.where(sd_g > 0, sd_g, 1), jnp.nan)


@struct.dataclass
class AlignmentTest:
    """A rotation test of alignment (a pytree; see :func:`alignment_test`).

    Attributes:
      score: the statistic of the real basis (:func:`alignment_statistic`: by default the
        in-phase amplitude of mean SRM against mean self-SRM over θ; NaN when a curve is flat).
      null_scores: ``(K,)`` the scores of the randomly rotated bases (NaN replaced by 0).
      p_value: ``(1 + #{null at least as extreme as score}) / (1 + K)``.
      null_measured: what ``measure`` gave for each rotation (stacked on a leading ``(K,)``
        axis), or ``None`` without ``measure``.
      alternative: ``"greater"``, ``"less"`` or ``"two-sided"``; static.
      statistic: ``"projection"`` or ``"correlation"`` (:func:`alignment_statistic`); static.
      family_wise_p_value: for a 1-D ``epsilon`` (a sweep, math §6.2), the min-p p-value over
        the sweep (Westfall & Young 1993; :func:`min_p_value`); ``None`` for a scalar ε.
      lit_share: for a 1-D ``epsilon``, ``(E,)`` the share of the finite samples that light at
        least one plane of the real basis at each ε (:func:`lit_share`); ``None`` for a
        scalar ε.
      num_drawn: with ``sequential_level`` (sequential rotations, Besag & Clifford 1991), the
        number of rotations drawn; ``null_scores`` is NaN past it. ``None`` without it.
      subset_test: with ``subset``, the same test of the subset's rows alone, on the same
        rotations (an :class:`AlignmentTest`); ``None`` without it.

    For a 1-D ``epsilon`` of ``E`` thresholds, ``score`` is ``(E,)``, ``null_scores``
    ``(K, E)`` and ``p_value`` ``(E,)``.
    """

    score: jax.Array
    null_scores: jax.Array
    p_value: jax.Array
    null_measured: Any = None
    family_wise_p_value: Any = None
    lit_share: Any = None
    num_drawn: Any = None
    subset_test: Any = None
    alternative: str = struct.field(pytree_node=False, default="greater")
    statistic: str = struct.field(pytree_node=False, default=DEFAULT_STATISTIC)


def _extreme(null, observed, alternative):
    """Which ``null`` statistics are at least as extreme as ``observed`` (math §6.1)."""
    if alternative == "greater":
        return null >= observed
    if alternative == "less":
        return null <= observed
    return jnp.abs(null) >= jnp.abs(observed)


def permutation_p_value(observed, null, alternative: str = "greater") -> jax.Array:
    """Monte Carlo p-value ``(1 + #{null at least as extreme}) / (1 + K)`` (never 0, exact).

    ``"greater"`` counts ``null ≥ observed``, ``"less"`` counts ``null ≤ observed`` and
    ``"two-sided"`` counts ``|null| ≥ |observed|``. The null axis is the first axis of ``null``;
    ``observed`` broadcasts against the rest. Under exchangeability of the observed and null
    statistics this p-value is (discretely) uniform: ``P(p ≤ k/(K+1)) ≤ k/(K+1)``. NaN observed
    values give NaN.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}.")
    observed = jnp.asarray(observed)
    null = jnp.asarray(null)
    count = jnp.sum(_extreme(null, observed, alternative), axis=0)
    dtype = working_dtype(observed, null)
    p = (1.0 + count.astype(dtype)) / (1.0 + null.shape[0])
    return jnp.where(jnp.isnan(observed), jnp.nan, p)


def alignment_test(
    key: jax.Array,
    activations: jax.Array,
    basis: jax.Array,
    *,
    epsilon: float | jax.Array,
    num_resamples: int = 199,
    alternative: str = "greater",
    statistic: str = DEFAULT_STATISTIC,
    angles: jax.Array | None = None,
    planes: str | jax.Array = "comb",
    method: str = "auto",
    max_planes: int | None = None,
    chunk_size: int | None = None,
    map_batch_size: int | None = 1,
    measure: Callable[[jax.Array, Any], Any] | None = None,
    measure_args: Any = None,
    sequential_level: float | None = None,
    rotations: jax.Array | None = None,
    subset: jax.Array | np.ndarray | None = None,
    num_rotations=_validation.UNSET,
    batch_size=_validation.UNSET,
) -> AlignmentTest:
    """Is the alignment with the privileged basis real? A rotation test (App. B.1, quantitative;
    math §6.1, and §6.2 for a sweep of ε).

    The statistic (:func:`alignment_statistic`) compares the mean SRM curve of ``activations`` on
    ``basis`` with the mean self-SRM curve of ``basis``: by default ``"projection"`` (the in-phase
    amplitude, which keeps the oscillation's strength and is far more powerful when the data are
    clustered: the Pearson correlation of a rotated basis' weak wiggle with the self-SRM shape is
    often large, see docs/analysis.md), or ``"correlation"`` (:func:`srm_jax.alignment_score`, the
    Pearson correlation). The null distribution is the same statistic with the basis replaced by
    ``Q B`` (every vector rotated by one Haar-random orthogonal ``Q`` drawn from ``key``), the data
    unchanged. Rotating the whole basis keeps its geometry, so the self-SRM reference is unchanged;
    only the basis' placement relative to the data changes (App. B.1's "random basis" made a
    distribution). The p-value is ``(1 + #{null ≥ score}) / (1 + num_resamples)`` (``"greater"``:
    alignment, the paper's elementwise bases), ``#{null ≤ score}`` (``"less"``: anti-alignment, the
    paper's simplex bases, App. B.4) or ``#{|null| ≥ |score|}`` (``"two-sided"``). It is exact:
    under the null hypothesis that the data's distribution does not depend on where the basis is (in
    particular for isotropic data) it is uniform on ``{1, …, K+1}/(K+1)``; the smallest attainable
    value is ``1/(K+1)``, so ``p < 0.01`` needs ``num_resamples ≥ 100``. A rotated basis whose curve
    is flat (no sample ever in the spotlight) scores NaN and counts as 0 (no alignment).

    Pure; ``num_resamples``, ``alternative``, ``statistic``, ``planes`` (string), ``method``,
    ``max_planes``, ``chunk_size`` and ``map_batch_size`` are static under ``jax.jit`` (the SRM
    work is one compiled computation whatever the statistic and alternative).

    Args:
      key: PRNG key for the rotations.
      activations: ``(N, n)`` samples.
      basis: ``(m, n)`` privileged basis.
      epsilon: ``ε ∈ [−1, 1]``; or a concrete 1-D array of ``E`` thresholds, a sweep tested
        as one (math §6.2): each rotation is drawn once and its one product (the rotated basis,
        or ``x q`` with ``measure``) is measured at every ε, ``measure`` once per rotation. The
        result then holds per-ε ``score``, ``null_scores`` and ``p_value`` (each equal to the
        scalar test's at that ε with the same ``key``), the family-wise ``family_wise_p_value``
        (min-p, Westfall & Young 1993) and ``lit_share``.
      num_resamples: ``K``, the number of random rotations (a setting; default 199).
      alternative: ``"greater"``, ``"less"`` or ``"two-sided"``.
      statistic: one of :data:`STATISTICS`: ``"projection"`` (default) or ``"correlation"``.
      angles, planes, method, chunk_size: as :func:`srm_jax.spotlight_resonance`.
      max_planes: draw this many of the named ``planes`` at random, as
        :func:`srm_jax.spotlight_resonance`, from :func:`planes_key` of ``key`` (the rotations
        are those of ``key`` with or without it).
      map_batch_size: rotations evaluated together (:func:`batched_map`); default 1, one at a
        time; ``None`` evaluates all at once.
      measure: another statistic of each rotation, measured on the same product (static,
        hashable): ``measure(x q, measure_args)``, with ``x q`` the data rotated by ``q``
        (which puts them on the rotated basis ``B qᵀ`` as ``B`` sees ``x q``: the SRM of ``x``
        on ``B qᵀ`` is the SRM of ``x q`` on ``B``). With it, each rotation costs one product
        ``x q`` for both (a ``±e_i`` basis then reads coordinates by a gather); without it the
        basis is rotated. :func:`srm_jax.basis_measures.rotated_statistics` is the report's.
      measure_args: arrays passed to ``measure`` (arguments, not constants of the computation).
      sequential_level: sequential rotations (Besag & Clifford 1991; math §6.2): draw the
        rotations ``map_batch_size`` at a time (the same stream as the full test) and stop once
        the decision ``p ≤ sequential_level`` cannot change (math §6.2); the result's
        ``num_drawn`` says how many were drawn. ``None`` (default) draws all ``num_resamples``.
        For a sweep the test stops once every ε's decision is certain to be "no evidence" (the
        family-wise decision is then certain too, math §6.2). Without ``measure``; static.
      rotations: ``(num_resamples, n, n)`` orthogonal matrices used as the test's rotations
        instead of drawing them from ``key``: the same rotations shared by several tests
        without drawing each twice (:func:`haar_rotations` of this ``key`` gives the rotations
        the test would draw, up to float32 rounding: a QR compiled apart may round its last
        bits differently at width). ``None`` (default): drawn
        from ``key``, ``map_batch_size`` at a time. The test is exact only for Haar rotations
        drawn independently of the data.
      subset: concrete int row indices of a subset of ``activations`` tested on its own as
        well, on the same rotations: each rotation's one product (and, where the sample-major
        kernel counts a sweep, one enumeration with the subset as a group) serves both; the
        result's ``subset_test`` is that test (equal to this test of ``activations[subset]``
        with the same key and rotations, up to the float32 rounding of a product of another
        shape). Not with ``sequential_level``.
      num_rotations: deprecated name of ``num_resamples``.
      batch_size: deprecated name of ``map_batch_size`` (``None`` there meant one at a time).

    Returns:
      :class:`AlignmentTest` with ``score``, ``null_scores``, ``p_value`` and, with
      ``measure``, ``null_measured``.
    """
    map_batch_size, num_resamples = monte_carlo_sizes(
        "alignment_test", batch_size, map_batch_size, ("num_rotations", num_rotations),
        num_resamples, 199)
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}.")
    check_statistic(statistic)
    if int(num_resamples) < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}.")
    _check_rotations(rotations, int(num_resamples), int(np.shape(basis)[-1]))
    subset = _check_subset(subset, np.shape(activations)[0])
    sweep = not isinstance(epsilon, (int, float)) and np.ndim(epsilon) == 1
    test = _plan_rotation_test(
        key, activations, basis, epsilon, sweep=sweep, num_resamples=int(num_resamples),
        angles=angles, planes=planes, method=method, max_planes=max_planes,
        chunk_size=chunk_size, map_batch_size=map_batch_size, measure=measure,
        level=sequential_level)
    if sequential_level is not None:
        if subset is not None:
            raise ValueError("sequential_level takes no subset (each would stop on its own).")
        return _sequential_test(test, key, activations, basis, rotations,
                                alternative=alternative, statistic=statistic)
    if sweep:
        every_plane = covers_every_plane(planes, max_planes, basis)
        return _sweep_test(
            key, activations, basis, test.pairs, test.angles, test.epsilons, measure_args,
            rotations, subset, setup=test.setup, alternative=alternative, statistic=statistic,
            directions=pm_directions(basis) if every_plane else None)
    curves, references, null_curves, null_measured = _alignment_curves(
        key, activations, basis, test.pairs, test.angles, test.epsilons, measure_args,
        rotations, subset, setup=test.setup)

    def result(data_curves, copies_curves, measured):
        score, null = _statistics(data_curves, references, copies_curves, statistic)
        return _rotation_test_result(score[0], null[:, 0], measured, alternative=alternative,
                                     statistic=statistic)

    if subset is None:
        return result(curves, null_curves, null_measured)
    every, rows = _split_measured(null_measured)
    return result(curves[0], null_curves[:, 0], every).replace(
        subset_test=result(curves[1], null_curves[:, 1], rows))


def _check_subset(subset, num_rows: int) -> jax.Array | None:
    """``subset`` as int32 row indices, checked: 1-D integers in ``[0, num_rows)``, at least
    one, none twice (``None`` passes)."""
    if subset is None:
        return None
    values = np.asarray(subset)
    if values.ndim != 1 or values.size < 1 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"subset must be a non-empty 1-D array of row indices, got shape "
                         f"{values.shape} and dtype {values.dtype}.")
    if values.min() < 0 or values.max() >= num_rows:
        raise ValueError(f"subset holds indices outside [0, {num_rows}).")
    if np.unique(values).size != values.size:
        raise ValueError("subset holds a row twice.")
    return jnp.asarray(values, jnp.int32)


def _check_rotations(rotations, num_resamples: int, n: int) -> None:
    """``rotations=`` of :func:`alignment_test`: ``None`` or ``(num_resamples, n, n)`` floats."""
    if rotations is None:
        return
    shape = tuple(np.shape(rotations))
    if shape != (num_resamples, n, n):
        raise ValueError(f"rotations must be (num_resamples, n, n) = ({num_resamples}, {n}, "
                         f"{n}), got shape {shape}.")
    if not jnp.issubdtype(jnp.result_type(rotations), jnp.floating):
        raise ValueError(f"rotations must be floats, got {jnp.result_type(rotations)}.")


def _rotation_test_result(score, null, null_measured, *, alternative, statistic,
                          **sweep_fields) -> AlignmentTest:
    """The :class:`AlignmentTest` of ``score`` against the rotations' ``null`` (flat curves'
    NaN counted as 0, no alignment), with a sweep's extra fields."""
    null, p_value = _counted_null(score, null, alternative)
    return AlignmentTest(
        score=score,
        null_scores=null,
        p_value=p_value,
        null_measured=null_measured,
        alternative=alternative,
        statistic=statistic,
        **sweep_fields,
    )


@partial(jax.jit, static_argnames=("alternative",))
def _counted_null(score, null, alternative):
    """``null`` with a flat curve's NaN counted as 0 (no alignment) and the p-values of
    ``score`` against it, in one compiled call (eagerly, each small operation compiles on its
    own)."""
    null = jnp.where(jnp.isnan(null), 0.0, null)
    return null, permutation_p_value(score, null, alternative)


def _srm_mean_curve(plan, data, basis, pairs, angles, epsilon, table=None, signed=False):
    """The mean SRM curve of ``data`` (signed, Eqn. 4, when ``signed``), counted as ``plan`` says.

    With the sample-major kernel the curve comes from its summaries (:func:`plan_summaries`):
    the ``(P, T)`` counts are never built, so a rotation of a wide basis costs its projection.
    """
    plan = dataclasses.replace(plan, signed=bool(signed))
    if plan.sample_major is not None:
        sums = plan_summaries(plan, data, basis, pairs, angles, epsilon, table=table)
        return summary_from_sums(sums, pairs, epsilon, plan).mean_curve
    grouped = plan_counts(plan, data, basis, pairs, angles, epsilon)
    return SRMResult.from_counts(grouped, pairs, epsilon, plan.signed, group=0).mean_curve


def _null_plan(plan, probe, basis, pairs, epsilon, *, rotate_data: bool):
    """The plan of a rotation test's rotated copies (math §6.1).

    ``"auto"`` decides the sample-major kernel on ``probe``, samples turned by a Haar rotation
    (:func:`_rotated_probe`), which is what every rotated copy looks like (a Haar rotation
    spreads a layer over the directions: few samples lead at any ε that lights anything), not
    on the samples as they are (:func:`srm_jax.resonance.replan`). ``rotate_data``:
    the copies are ``x q`` on the basis (a ``±e_i`` basis keeps its gather); otherwise the
    basis is rotated (a rotated basis is no longer ``±e_i``: its projection is a product).
    """
    null = plan
    if probe is not None and plan.method == "auto" and _validation.is_concrete(epsilon):
        null = replan(plan, basis, pairs, epsilon, probe)
    return null if rotate_data else dataclasses.replace(null, gather=False)


def _rotated_probe(activations, basis) -> np.ndarray | None:
    """At most ``SAMPLE_MAJOR_PROBE_ROWS`` rows of concrete samples turned by one Haar rotation,
    on the host (``None`` for traced inputs): what a rotation test's copies look like."""
    if not all(_validation.is_concrete(v) for v in (activations, basis)):
        return None
    if np.ndim(activations) != 2:
        return None
    rows = probe_rows(activations.shape[0], SAMPLE_MAJOR_PROBE_ROWS)
    with jax.ensure_compile_time_eval():  # concrete samples closed over by a jit: read them
        probe = np.asarray(activations[rows], np.float32)
    return probe @ _probe_rotation(int(basis.shape[1]))


@lru_cache(maxsize=2)
def _probe_rotation(n: int) -> np.ndarray:
    """The Haar rotation of :func:`_rotated_probe` at width ``n`` (from :data:`NULL_PLAN_SEED`:
    the same one at every call, so kept; its QR is 0.5 s at 1,536 units)."""
    # Planning is eager host work: one Haar rotation in NumPy (scipy.stats.ortho_group's
    # construction, QR with R's signs) costs no compilation; any rotation is typical.
    rng = np.random.default_rng(NULL_PLAN_SEED)
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    q = (q * np.sign(np.diag(r))).astype(np.float32)
    q.flags.writeable = False
    return q


def _plane_table(pairs, *plans):
    """The sample-major plane table of ``pairs`` (the same for every plan of one basis and
    planes: built once), or ``None`` where no plan takes that kernel."""
    major = next((p.sample_major for p in plans if p.sample_major is not None), None)
    return None if major is None else plane_table(major, pairs)


@dataclasses.dataclass(frozen=True)
class _TestSetup:
    """The static half of a rotation test (hashable): one plan per ε for the data and the
    self-SRM, one per ε for the rotated copies (:func:`_null_plan`), and ``fused``: the plan of
    the copies' one enumeration of every ε (:func:`srm_jax.summaries.plan_sweep_curves`) where
    the sample-major kernel counts every ε > 0 of them, else ``None``. ``shared``: where the
    sample-major kernel counts the data at every ε > 0, the plan of the least ε, which is exact
    at every larger ε (math §6.2): the data and self-SRM curves are then counted in one
    enumeration of every ε, as the copies' are."""

    plans: tuple
    null_plans: tuple
    fused: Any
    shared: Any
    num_resamples: int
    map_batch_size: int | None
    measure: Any


class _PlannedTest(NamedTuple):
    """A planned rotation test: its static setup and the arrays the plans fixed."""

    setup: _TestSetup
    pairs: jax.Array
    angles: jax.Array
    epsilons: jax.Array  # (E,)
    level: float | None
    sweep: bool


def _plan_rotation_test(key, activations, basis, epsilon, *, sweep, num_resamples, angles,
                        planes, method, max_planes, chunk_size, map_batch_size, measure,
                        level) -> _PlannedTest:
    """Plans every ε of a rotation test (one ε is a sweep of one), eagerly."""
    values = np.asarray(epsilon, dtype=float).reshape(-1) if sweep else None
    if sweep and values.size < 1:
        raise ValueError("a sweep needs at least one epsilon.")
    each = [float(e) for e in values] if sweep else [epsilon]
    probe = _rotated_probe(activations, basis) if method == "auto" else None
    first, pairs, angles_used = plan_measurement(
        activations, basis, epsilon=each[0], angles=angles, planes=planes, method=method,
        max_planes=max_planes, key=planes_key(key, max_planes), chunk_size=chunk_size)
    plans, null_plans = [], []
    for j, eps in enumerate(each):
        plan = first if j == 0 else replan(first, basis, pairs, eps, activations)
        plans.append(plan)
        null_plans.append(_null_plan(plan, probe, basis, pairs, eps,
                                     rotate_data=measure is not None))
    fused = shared = None
    if sweep and values.min() > 0:
        least = int(np.argmin(values))
        if all(p.sample_major is not None for p in null_plans):
            fused = null_plans[least]
        if all(p.sample_major is not None for p in plans):
            shared = plans[least]
    dtype = working_dtype(activations, basis)
    epsilons = jnp.asarray(values, dtype) if sweep else jnp.reshape(
        jnp.asarray(epsilon, dtype), (1,))
    setup = _TestSetup(tuple(plans), tuple(null_plans), fused, shared, num_resamples,
                       map_batch_size, measure)
    return _PlannedTest(setup, pairs, angles_used, epsilons, level, sweep)


def _statistics(curves, references, null_curves, statistic):
    """Per-ε scores ``(E,)`` and the rotations' ``(K, E)`` of ``(E, T)`` curves and
    ``(K, E, T)`` rotated curves."""
    score = jax.vmap(lambda c, r: alignment_statistic(c, r, statistic))(curves, references)
    null = jax.vmap(jax.vmap(lambda c, r: alignment_statistic(c, r, statistic)),
                    in_axes=(0, None))(null_curves, references)
    return score, null


def _sweep_test(key, activations, basis, pairs, angles, epsilons, measure_args, rotations=None,
                subset=None, *, setup: _TestSetup, alternative, statistic,
                directions=None) -> AlignmentTest:
    """The sweep's :class:`AlignmentTest` (math §6.2): per-ε p-values, the min-p family-wise
    p-value and the lit share (:func:`lit_share_pm` from ``directions`` of a ± orthonormal
    basis measured on every plane, else :func:`lit_share`); with ``subset`` (row indices) the
    subset's own in ``subset_test``, from the same rotations. Pure and vmap safe (``setup``,
    ``alternative`` and ``statistic`` static)."""
    curves, references, null_curves, null_measured = _alignment_curves(
        key, activations, basis, pairs, angles, epsilons, measure_args, rotations, subset,
        setup=setup)

    def result(rows, data_curves, copies_curves, measured):
        score, null, family = _sweep_scores(
            data_curves, references, copies_curves, alternative=alternative, statistic=statistic)
        return _rotation_test_result(
            score, null, measured, alternative=alternative, statistic=statistic,
            family_wise_p_value=family,
            lit_share=(lit_share(rows, basis, pairs, epsilon=epsilons) if directions is None
                       else lit_share_pm(rows, directions, epsilons)))

    if subset is None:
        return result(activations, curves, null_curves, null_measured)
    every, rows = _split_measured(null_measured)
    return result(activations, curves[0], null_curves[:, 0], every).replace(
        subset_test=result(activations[subset], curves[1], null_curves[:, 1], rows))


@partial(jax.jit, static_argnames=("alternative", "statistic"))
def _sweep_scores(curves, references, null_curves, *, alternative, statistic):
    """A sweep test's ``(E,)`` scores, ``(K, E)`` null scores and min-p family-wise p-value, in
    one compiled call (eagerly, each of their small operations compiles on its own)."""
    score, null = _statistics(curves, references, null_curves, statistic)
    return score, null, min_p_value(score, null, alternative)


def _split_measured(null_measured):
    """The measures of every row and of the subset (a pair, or ``None`` without ``measure``)."""
    return (None, None) if null_measured is None else null_measured


def _curves_at(plans, data, basis, pairs, angles, epsilons, table, shared=None, subset=None):
    """``(E, T)`` mean SRM curves of ``data`` on ``basis``: one plan per ε, or the ``shared``
    plan (:class:`_TestSetup`) for every ε in one enumeration (:func:`plan_sweep_curves`, the
    rotated copies' kernel; equal to a loop over ε, math §6.2). With ``subset`` (row indices),
    ``(2, E, T)``: those of every row and of the subset's rows (one enumeration for both with
    ``shared``)."""
    if shared is not None:
        return plan_sweep_curves(dataclasses.replace(shared, signed=False), data, basis, pairs,
                                 angles, epsilons, table=table, subset=subset)
    every_row = jnp.stack([_srm_mean_curve(p, data, basis, pairs, angles, epsilons[j], table)
                           for j, p in enumerate(plans)])
    if subset is None:
        return every_row
    return jnp.stack([every_row, _curves_at(plans, data[subset], basis, pairs, angles, epsilons,
                                            table)])


def _rotation_of(draw, activations, basis, given: bool):
    """The rotation of one draw of a test: :func:`haar_rotation` of a key, or (``given``) an
    ``(n, n)`` rotation of ``rotations=`` (:func:`alignment_test`) in the working dtype."""
    if given:
        return draw.astype(activations.dtype)
    return haar_rotation(draw, basis.shape[1], activations.dtype)


def _test_draws(key, rotations, num_resamples: int):
    """What the rotations of a test are made from: ``num_resamples`` keys split from ``key``,
    or the caller's ``rotations``."""
    return jax.random.split(key, num_resamples) if rotations is None else rotations


def _rotated_curves(setup: _TestSetup, draw, activations, basis, pairs, angles,
                    epsilons, measure_args, table, given: bool = False, subset=None):
    """One rotation of the test: its ``(E, T)`` curves and what ``measure`` gives (or ``None``).

    Without ``measure`` the basis is rotated, ``B qᵀ``; with it the samples, ``x q`` (one
    product for SRM and the measure: the SRM of ``x`` on ``B qᵀ`` is that of ``x q`` on ``B``).
    ``draw``: a key, or with ``given`` a rotation (:func:`_rotation_of`). With ``subset`` (row
    indices) the curves are ``(2, E, T)`` (:func:`_curves_at`) and ``measure`` gives a pair:
    every row's and the subset's, from the same product.
    """
    q = _rotation_of(draw, activations, basis, given)
    if setup.measure is None:
        data, on_basis, measured = activations, exact_matmul(basis, q.T), None
    else:
        data, on_basis = exact_matmul(activations, q), basis
        measured = setup.measure(data, measure_args)
        if subset is not None:
            measured = (measured, setup.measure(data[subset], measure_args))
    if setup.fused is not None:
        curves = plan_sweep_curves(setup.fused, data, on_basis, pairs, angles, epsilons,
                                   table=table, subset=subset)
    else:
        curves = _curves_at(setup.null_plans, data, on_basis, pairs, angles, epsilons, table,
                            subset=subset)
    return curves, measured


def _cast(activations, basis):
    """Both in the working dtype."""
    dtype = working_dtype(activations, basis)
    return jnp.asarray(activations, dtype), jnp.asarray(basis, dtype)


@partial(jax.jit, static_argnames=("setup",))
def _alignment_curves(key, activations, basis, pairs, angles, epsilons, measure_args,
                      rotations=None, subset=None, *, setup: _TestSetup):
    """``(E, T)`` mean SRM curves of the data and of the self-SRM, the ``(K, E, T)`` curves of
    the rotated copies and the measure of each. Each rotation is drawn (or taken from
    ``rotations``) and applied once, for every ε; rotations are drawn ``map_batch_size`` at a
    time, never all at once. With ``subset`` (row indices) the data's and the copies' curves
    hold every row's and the subset's (``(2, E, T)``, ``(K, 2, E, T)``) and the measure a pair
    (:func:`_rotated_curves`)."""
    activations, basis = _cast(activations, basis)
    table = _plane_table(pairs, *setup.plans, *setup.null_plans)
    null_curves, null_measured = batched_map(
        lambda d: _rotated_curves(setup, d, activations, basis, pairs, angles, epsilons,
                                  measure_args, table, rotations is not None, subset),
        _test_draws(key, rotations, setup.num_resamples), setup.map_batch_size)
    return (_curves_at(setup.plans, activations, basis, pairs, angles, epsilons, table,
                       setup.shared, subset),
            _curves_at(setup.plans, basis, basis, pairs, angles, epsilons, table, setup.shared),
            null_curves, null_measured)


def _sequential_test(test: _PlannedTest, key, activations, basis, rotations, *, alternative,
                     statistic) -> AlignmentTest:
    """:func:`alignment_test` with sequential rotations (Besag & Clifford 1991, math §6.2)."""
    setup, num_resamples = test.setup, test.setup.num_resamples
    if setup.measure is not None:
        raise ValueError("sequential_level takes no measure (the measures' null needs every "
                         "rotation).")
    hits_needed = int(np.floor(float(test.level) * (num_resamples + 1)))
    if not 1 <= hits_needed <= num_resamples:
        raise ValueError(f"sequential_level must lie in [1/(K+1), K/(K+1)] for "
                         f"K = {num_resamples}, got {test.level}.")
    batch = (num_resamples if setup.map_batch_size is None
             else min(int(setup.map_batch_size), num_resamples))
    score, null, num_drawn, p_value, family = _sequential_run(
        key, activations, basis, test.pairs, test.angles, test.epsilons, rotations, setup=setup,
        batch=batch, hits_needed=hits_needed, alternative=alternative, statistic=statistic)
    sweep = test.sweep
    return AlignmentTest(
        score=score if sweep else score[0], null_scores=null if sweep else null[:, 0],
        p_value=p_value if sweep else p_value[0], num_drawn=num_drawn,
        family_wise_p_value=family if sweep else None,
        alternative=alternative, statistic=statistic)


@partial(jax.jit, static_argnames=("setup", "batch", "hits_needed", "alternative", "statistic"))
def _sequential_run(key, activations, basis, pairs, angles, epsilons, rotations=None, *, setup,
                    batch, hits_needed, alternative, statistic):
    """Rotations ``batch`` at a time until every ε has ``hits_needed`` rotations at least as
    extreme as its score, or all are drawn: ``(E,)`` scores, ``(K, E)`` null scores (NaN past
    ``num_drawn``), ``num_drawn``, ``(E,)`` p-values and the family-wise p-value."""
    activations, basis = _cast(activations, basis)
    num_resamples = setup.num_resamples
    table = _plane_table(pairs, *setup.plans, *setup.null_plans)
    references = _curves_at(setup.plans, basis, basis, pairs, angles, epsilons, table,
                            setup.shared)
    score, _ = _statistics(_curves_at(setup.plans, activations, basis, pairs, angles, epsilons,
                                      table, setup.shared), references, references[None],
                           statistic)

    def null_scores(draw):
        curves, _ = _rotated_curves(setup, draw, activations, basis, pairs, angles,
                                    epsilons, None, table, rotations is not None)
        values = jax.vmap(lambda c, r: alignment_statistic(c, r, statistic))(curves, references)
        return jnp.where(jnp.isnan(values), 0.0, values)

    num_batches = -(-num_resamples // batch)
    draws = _test_draws(key, rotations, num_resamples)  # the full test's stream
    draws = jnp.concatenate([draws, draws[:num_batches * batch - num_resamples]])

    def body(carry):
        i, nulls, count = carry
        # One rotation at a time within a batch (lax.map, not vmap: the kernel's early exits
        # stay branches instead of both sides of a select).
        values = jax.lax.map(null_scores, jax.lax.dynamic_slice_in_dim(draws, i * batch, batch))
        index = i * batch + jnp.arange(batch)
        hits = _extreme(values, score, alternative) & (index < num_resamples)[:, None]
        return (i + 1, jax.lax.dynamic_update_slice_in_dim(nulls, values, i * batch, 0),
                count + jnp.sum(hits, axis=0))

    def cond(carry):
        return (carry[0] < num_batches) & jnp.any(carry[2] < hits_needed)

    nulls = jnp.full((num_batches * batch, score.shape[0]), jnp.nan, score.dtype)
    count = jnp.zeros(score.shape, jnp.int32)
    i, nulls, count = jax.lax.while_loop(cond, body, (0, nulls, count))
    num_drawn = jnp.minimum(i * batch, num_resamples)
    nulls = nulls[:num_resamples]
    p_value = jax.vmap(
        lambda s, v, c: _sequential_p_value(s, v, num_drawn, c, hits_needed, alternative),
        in_axes=(0, 1, 0))(score, nulls, count)
    # Stopped early, every ε's decision is "no evidence", and so is the family's (the min-p
    # p-value is never below the least per-ε one): the least sequential p-value says so.
    family = jnp.where(num_drawn < num_resamples, jnp.min(p_value),
                       min_p_value(score, jnp.where(jnp.isnan(nulls), 0.0, nulls), alternative))
    return score, nulls, num_drawn, p_value, family


def min_p_value(observed, null, alternative: str = "greater") -> jax.Array:
    """The family-wise p-value of a sweep by the min-p rule (Westfall & Young 1993; math §6.2).

    ``observed`` is ``(E,)``, the statistic at each of ``E`` settings (the ε of a sweep), and
    ``null`` ``(K, E)`` the same statistics of ``K`` null draws. Every member of the ``K + 1``
    set gets, per setting, its p-value against the other ``K`` members by
    :func:`permutation_p_value`'s rule (ties count as at least as extreme), and its smallest
    p-value over the settings; the observed minimum is ranked among them:
    ``(1 + #{k : minp_k ≤ minp_obs}) / (1 + K)``. Exact whenever the ``K + 1`` members are
    exchangeable, whatever the dependence between settings; never below the smallest per-setting
    p-value. NaN statistics (flat curves) count as 0 for every member alike.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}.")
    members = jnp.concatenate([jnp.asarray(observed)[None], jnp.asarray(null)], axis=0)
    members = jnp.where(jnp.isnan(members), 0.0, members)  # (K + 1, E)
    # [i, k]: member k at least as extreme as member i.
    at_least = _extreme(members[None, :, :], members[:, None, :], alternative)
    dtype = working_dtype(members)
    size = members.shape[0]
    # Member i's own entry counts for the "+1": (1 + #{k ≠ i}) = #{k, i included}.
    min_p = jnp.min(jnp.sum(at_least, axis=1).astype(dtype), axis=-1) / size  # (K + 1,)
    return (1.0 + jnp.sum(min_p[1:] <= min_p[0]).astype(dtype)) / size


def lit_share(activations: jax.Array, basis: jax.Array, planes: str | jax.Array = "comb", *,
              epsilon: float | jax.Array, plane_chunk: int = 4096) -> jax.Array:
    """The share of the finite samples that light at least one of the planes ``pairs``, per ε.

    A sample lights a plane at some angle iff its in-plane radius ``r`` (math §5.1:
    ``r² = (x_α² + x_β² − 2c x_α x_β)/(1 − c²)`` for the unit sample's coordinates ``x`` on the
    unit basis vectors, ``c`` their cosine) is at least ``ε`` (``ε > 0``; every sample does for
    ``ε ≤ 0``). So this is the share with ``max_planes r ≥ ε``: exact for any basis, over the
    continuous θ (a grid of angles may miss a sample whose ``r`` is barely ``ε``). Pairs that
    span no plane (``|c| = 1``, math §2.2) light nothing. Rows with a NaN or an infinity are not
    samples (math §1.2). Costs ``N·P`` once, the planes ``plane_chunk`` at a time; a ± orthonormal
    basis measured on every plane takes :func:`lit_share_pm` (``N·K``) instead.

    Args:
      activations: ``(N, n)`` samples.
      basis: ``(m, n)`` basis.
      planes: ``"comb"`` or ``"perm"`` (every plane the basis spans: for a ± orthonormal
        basis :func:`lit_share_pm`'s ``O(N·K)``; the basis must be concrete) or explicit int
        ``(P, 2)`` pairs.
      epsilon: a threshold or ``(E,)`` thresholds.
      plane_chunk: planes evaluated together.

    Returns:
      The shares, in the shape of ``epsilon`` (NaN without any finite sample).
    """
    if isinstance(planes, str):
        directions = pm_directions(basis)
        if directions is not None:
            return lit_share_pm(activations, directions, epsilon)
        planes = spanning_planes(basis, planes)
    x, valid = _unit_finite_rows(activations, basis)
    b = normalise_rows(jnp.asarray(basis, x.dtype))
    radius2 = _best_radius2(exact_matmul(x, b.T), exact_matmul(b, b.T),
                            jnp.asarray(planes, jnp.int32), int(plane_chunk))
    return _share_lit(radius2, valid, epsilon)


@partial(jax.jit, static_argnames=("plane_chunk",))
def _best_radius2(coords, gram, pairs, plane_chunk):
    """``(N,)`` each sample's largest in-plane radius² over ``pairs`` (coordinates ``(N, m)``)."""
    num = pairs.shape[0]
    chunk = min(plane_chunk, num)
    padded = jnp.concatenate([pairs, jnp.broadcast_to(pairs[:1], (-num % chunk, 2))], axis=0)

    def step(best, block):
        a, b = coords[:, block[:, 0]], coords[:, block[:, 1]]
        c = gram[block[:, 0], block[:, 1]]
        spans = jnp.abs(c) < 1 - 1e-6
        denom = jnp.where(spans, 1 - c * c, 1.0)
        r2 = jnp.where(spans, (a * a + b * b - 2 * c * a * b) / denom, 0.0)
        return jnp.maximum(best, jnp.max(r2, axis=-1)), None

    best, _ = jax.lax.scan(step, jnp.zeros(coords.shape[:1], coords.dtype),
                           padded.reshape(-1, chunk, 2))
    return best


def covers_every_plane(planes, max_planes: int | None, basis) -> bool:
    """Whether ``planes`` name every plane ``basis`` spans (math §2.2): ``"comb"``/``"perm"``, or
    concrete pairs holding each unordered pair of vectors that spans a plane (a report's
    explicit planes; pairs that span none light nothing), without a ``max_planes`` subset. Then
    :func:`lit_share_pm` (``O(N·K)``) may replace :func:`lit_share` (``O(N·P)``) for a ±
    orthonormal basis. Needs a concrete basis for explicit pairs."""
    if max_planes is not None:
        return False
    if isinstance(planes, str):
        return True
    if not (_validation.is_concrete(planes) and _validation.is_concrete(basis)):
        return False
    m = int(np.shape(basis)[0])
    pairs = np.asarray(planes, np.int64)
    if np.ndim(pairs) != 2 or m < 2:
        return False
    low, high = np.minimum(pairs[:, 0], pairs[:, 1]), np.maximum(pairs[:, 0], pairs[:, 1])
    named = np.zeros(m * m, bool)
    named[low * m + high] = True
    # The basis' cached |Gram| (the report's plane checks built it already): pairs spanning a plane.
    spanning = _validation._abs_gram(basis) < 1.0 - _validation.DEGENERATE_PAIR_TOLERANCE
    return bool(np.all(named[np.triu(spanning, k=1).ravel()]))


def pm_directions(basis) -> jax.Array | None:
    """The distinct directions ``q_k`` of a ± orthonormal basis (math §5.1: every vector is
    some ``±q_k``, the ``q_k`` orthonormal), one per ``±`` pair, or ``None`` for any other
    basis (or fewer than two directions): the first row of each direction of
    :func:`srm_jax.neurons.signed_neurons`. Needs a concrete basis."""
    neurons = signed_neurons(basis)
    if not neurons.orthonormal or neurons.num_directions < 2:
        return None
    unit = _validation.host_unit_rows(basis)[neurons.representative]
    return jnp.asarray(unit, working_dtype(basis))


@jax.jit
def lit_share_pm(activations: jax.Array, directions: jax.Array,
                 epsilon: float | jax.Array) -> jax.Array:
    """:func:`lit_share` over every plane of a ± orthonormal basis, from its directions
    (:func:`pm_directions`), in ``O(N·K)``: the best plane's radius² is the sum of the sample's
    two largest squared coordinates ``z_k²`` (math §5.1, where a spanning pair has ``c = 0`` and
    ``r² = x_α² + x_β²``). Equals :func:`lit_share` for ``planes="comb"`` or ``"perm"``."""
    x, valid = _unit_finite_rows(activations, directions)
    z2 = jnp.square(exact_matmul(x, jnp.asarray(directions, x.dtype).T))
    top = jax.lax.top_k(z2, 2)[0]
    return _share_lit(top[:, 0] + top[:, 1], valid, epsilon)


def _unit_finite_rows(activations, basis):
    """Unit rows (zero for a row with a NaN or an infinity, math §1.2) and the finite mask."""
    x = jnp.asarray(activations, working_dtype(activations, basis))
    valid = jnp.all(jnp.isfinite(x), axis=-1)
    return normalise_rows(jnp.where(valid[:, None], x, 0.0)), valid


def _share_lit(radius2, valid, epsilon):
    """The share of the ``valid`` rows whose best radius² reaches ``ε²`` (all for ``ε ≤ 0``), in
    the shape of ``epsilon``."""
    eps = jnp.asarray(epsilon, radius2.dtype)
    flat = jnp.reshape(eps, (-1,))
    lit = (flat[None, :] <= 0) | (radius2[:, None] >= (flat * flat)[None, :])
    count = jnp.sum(lit & valid[:, None], axis=0).astype(radius2.dtype)
    total = jnp.sum(valid).astype(radius2.dtype)
    share = jnp.where(total > 0, count / jnp.where(total > 0, total, 1.0), jnp.nan)
    return jnp.reshape(share, eps.shape)


def _sequential_p_value(score, nulls, num_drawn, count, hits_needed, alternative):
    """The p-value of sequential rotations (Besag & Clifford 1991, math §6.2).

    With all ``K`` rotations drawn it is the full test's ``(1 + count)/(K + 1)``. Stopped
    early, after the ``h``-th rotation at least as extreme as the score (``h = ⌊level·(K+1)⌋``,
    the first count at which ``p ≤ level`` can no longer hold) came at draw ``l``, it is
    ``max(h/l, (1 + h)/(K + 1))``: Besag & Clifford's valid sequential p-value ``h/l``, made no
    smaller than the least full p-value the stop implies, so the decision at ``level`` is the
    full test's (both above ``level``).
    """
    num_resamples = nulls.shape[0]
    dtype = nulls.dtype
    drawn = jnp.arange(num_resamples) < num_drawn
    hits = _extreme(nulls, score, alternative) & drawn
    at_hit = jnp.argmax(jnp.cumsum(hits) >= hits_needed) + 1  # l, the draw of the h-th hit
    early = jnp.maximum(hits_needed / at_hit.astype(dtype),
                        (1.0 + hits_needed) / (1.0 + num_resamples))
    full = (1.0 + count.astype(dtype)) / (1.0 + num_resamples)
    p = jnp.where(num_drawn < num_resamples, early, full)
    return jnp.where(jnp.isnan(score), jnp.nan, p)
