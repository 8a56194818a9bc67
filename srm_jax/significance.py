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
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from jax.scipy.special import betainc

from srm_jax import _validation
from srm_jax._precision import exact_matmul, working_dtype
from srm_jax.alignment import alignment_score
from srm_jax.bases import random_orthogonal
from srm_jax.resonance import SRMResult, plan_counts, plan_measurement
from srm_jax.sample_major import plane_table
from srm_jax.summaries import plan_summaries, summary_from_sums

ALTERNATIVES = ("greater", "less", "two-sided")
#: The statistics of the rotation test (:func:`alignment_statistic`); the first is the default
#: of every function that takes ``statistic`` (docs/vocabulary.md).
STATISTICS = ("projection", "correlation")
DEFAULT_STATISTIC = STATISTICS[0]
DEFAULT_LEVELS = (0.025, 0.5, 0.975)
#: ``jax.random.fold_in(key, PLANES_STREAM)`` draws ``max_planes`` in the functions whose ``key``
#: also draws their Monte Carlo null: the null's draws stay those of ``key``.
PLANES_STREAM = 1


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
    num=_validation.UNSET,
) -> jax.Array:
    """``num_resamples`` Haar-random ``(n, n)`` orthogonal matrices, ``(K, n, n)``: the rotations
    of :func:`alignment_test`. Rotation ``i`` is :func:`haar_rotation` of
    ``jax.random.split(key, num_resamples)[i]``, so a test that draws them a batch at a time (it
    never holds all of them) uses the same rotations. ``num`` is the deprecated name of
    ``num_resamples``."""
    num_resamples = _validation.renamed(
        "haar_rotations", "num", num, "num_resamples", num_resamples, None)
    if num_resamples is None:
        raise TypeError("haar_rotations() needs num_resamples: the number of rotations.")
    keys = jax.random.split(key, int(num_resamples))
    return jax.vmap(lambda k: haar_rotation(k, n, dtype))(keys)


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
    """

    score: jax.Array
    null_scores: jax.Array
    p_value: jax.Array
    null_measured: Any = None
    alternative: str = struct.field(pytree_node=False, default="greater")
    statistic: str = struct.field(pytree_node=False, default=DEFAULT_STATISTIC)


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
    if alternative == "greater":
        extreme = null >= observed
    elif alternative == "less":
        extreme = null <= observed
    else:
        extreme = jnp.abs(null) >= jnp.abs(observed)
    count = jnp.sum(extreme, axis=0)
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
    num_rotations=_validation.UNSET,
    batch_size=_validation.UNSET,
) -> AlignmentTest:
    """Is the alignment with the privileged basis real? A rotation test (App. B.1, quantitative).

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
      epsilon: ``ε ∈ [−1, 1]``.
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
    plan, pairs, angles = plan_measurement(
        activations, basis, epsilon=epsilon, angles=angles, planes=planes, method=method,
        max_planes=max_planes, key=planes_key(key, max_planes), chunk_size=chunk_size,
    )
    curve, reference, null_curves, null_measured = _alignment_curves(
        key, activations, basis, pairs, angles, epsilon, measure_args,
        num_resamples=int(num_resamples), plan=plan, map_batch_size=map_batch_size,
        measure=measure,
    )
    score = alignment_statistic(curve, reference, statistic)
    null = jax.vmap(lambda c: alignment_statistic(c, reference, statistic))(null_curves)
    null = jnp.where(jnp.isnan(null), 0.0, null)
    return AlignmentTest(
        score=score,
        null_scores=null,
        p_value=permutation_p_value(score, null, alternative),
        null_measured=null_measured,
        alternative=alternative,
        statistic=statistic,
    )


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


@partial(jax.jit, static_argnames=("num_resamples", "plan", "map_batch_size", "measure"))
def _alignment_curves(
    key, activations, basis, pairs, angles, epsilon, measure_args, *, num_resamples, plan,
    map_batch_size, measure,
):
    """Mean SRM curve of the data, mean self-SRM curve and the ``(K, T)`` rotated-basis curves."""
    dtype = working_dtype(activations, basis)
    activations = jnp.asarray(activations, dtype)
    basis = jnp.asarray(basis, dtype)

    # The plane table of the sample-major kernel depends on the planes only: built once.
    table = None if plan.sample_major is None else plane_table(plan.sample_major, pairs)
    # A rotated basis is no longer ±e_i: its projection is a product, not a gather.
    rotated_plan = dataclasses.replace(plan, gather=False)

    def null_curve(rotation_key):
        q = haar_rotation(rotation_key, basis.shape[1], dtype)
        if measure is None:
            return _srm_mean_curve(rotated_plan, activations, exact_matmul(basis, q.T), pairs,
                                   angles, epsilon, table), None
        rotated = exact_matmul(activations, q)  # one product for SRM and the measure
        return (_srm_mean_curve(plan, rotated, basis, pairs, angles, epsilon, table),
                measure(rotated, measure_args))

    # Rotations are drawn and applied map_batch_size at a time: never all of them at once.
    null_curves, null_measured = batched_map(
        null_curve, jax.random.split(key, num_resamples), map_batch_size)
    return (_srm_mean_curve(plan, activations, basis, pairs, angles, epsilon, table),
            _srm_mean_curve(plan, basis, basis, pairs, angles, epsilon, table), null_curves,
            null_measured)
