"""SRM summaries: what a wide layer's measurement returns when the ``(P, T)`` counts do not fit.

A 3,072-wide ``±e_i`` basis has 18.9 million planes: its ``(P, T)`` counts alone are 7.5 GB.
:func:`resonance_summary` returns, without ever holding them, the exact sums that the usual
questions need:

* the mean SRM curve over planes (Eqn. 2 averaged over planes; the dashed line of the paper's
  figures): per-angle counts summed over planes;
* per-plane totals: each plane's counts summed over the angles (its mean SRM over θ), from which
  :func:`srm_jax.neurons.vector_shares` gives each basis vector's (each neuron's) share of the
  lit counts (:attr:`SRMSummary.lit_plane_totals`).

Summaries are integers and add over batches and devices like counts (math §4.4): ``a + b`` is the
summary of the union. Sums that can pass ``2**31`` are kept in two int32 limbs
(:func:`srm_jax.sample_major.wide_add`). The sample-major kernel computes them directly; every
other method sums its full counts (so a summary is available for any basis where ``(P, T)``
fits).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from srm_jax import _validation
from srm_jax.resonance import (
    KERNELS,
    CountPlan,
    _prepare,
    _sample_major_call,
    check_same_settings,
    kernel_method,
    plan_measurement,
)
from srm_jax.sample_major import sample_major_curves, wide_add, wide_sum, wide_value


@struct.dataclass
class SRMSummary:
    """Additive summaries of SRM counts over planes and angles (a pytree; see the module doc).

    Attributes:
      curve_counts: int32 ``(T, 2)`` wide: per angle, the counts summed over planes.
      negative_curve_counts: the same for ``d̂·s ≤ −ε`` (signed SRM, or ε < 0), else ``None``.
      plane_totals: int32 ``(P, 2)`` wide: per plane, the counts summed over the angles.
      negative_plane_totals: the same for ``d̂·s ≤ −ε``, or ``None``.
      num_samples: int32 scalar, the samples that counted.
      angles, planes, epsilon: as :class:`srm_jax.SRMResult`.
      signed: signed SRM (Eqn. 4); static.
      complement: ε < 0: the count fields hold the counts of the cone at ``|ε|`` and its opposite
        (positive and negative), and the values are taken through the complement (math §5.3);
        static.
    """

    curve_counts: jax.Array
    negative_curve_counts: jax.Array | None
    plane_totals: jax.Array
    negative_plane_totals: jax.Array | None
    num_samples: jax.Array
    angles: jax.Array
    planes: jax.Array
    epsilon: jax.Array
    signed: bool = struct.field(pytree_node=False, default=False)
    complement: bool = struct.field(pytree_node=False, default=False)

    def _pair(self, field: str, scale: int):
        """Positive and negative sums (float) at ε, the complement applied."""
        dtype = jnp.result_type(self.angles.dtype, jnp.float32)
        positive = wide_value(getattr(self, field), dtype)
        negative_field = getattr(self, "negative_" + field)
        negative = None if negative_field is None else wide_value(negative_field, dtype)
        if self.complement:
            total = jnp.asarray(self.num_samples).astype(dtype) * scale
            positive, negative = total - negative, total - positive
        return positive, negative

    def _values(self, field: str, scale: int, divisor: int) -> jax.Array:
        positive, negative = self._pair(field, scale)
        if self.signed:
            positive = positive - negative
        n = jnp.asarray(self.num_samples).astype(positive.dtype)
        return positive / (n * divisor)

    @property
    def mean_curve(self) -> jax.Array:
        """The mean SRM curve over planes, ``(T,)``: equal to ``SRMResult.mean_curve``."""
        num_planes = self.planes.shape[0]
        return self._values("curve_counts", num_planes, num_planes)

    @property
    def plane_means(self) -> jax.Array:
        """Each plane's SRM averaged over the angles, ``(P,)`` (signed when ``signed``)."""
        num_angles = self.angles.shape[0]
        return self._values("plane_totals", num_angles, num_angles)

    @property
    def lit_plane_totals(self) -> jax.Array:
        """Each plane's lit counts (``d̂·s ≥ ε``) summed over the angles, ``(P,)`` float: the
        ``plane_totals`` of :func:`srm_jax.neurons.vector_shares` and
        :func:`srm_jax.neurons.rank_basis_vectors` (which neurons carry the signal)."""
        return self._pair("plane_totals", self.angles.shape[0])[0]

    def __add__(self, other: SRMSummary) -> SRMSummary:
        return combine_summaries(self, other)


def combine_summaries(first: SRMSummary, second: SRMSummary) -> SRMSummary:
    """The summary of the union of two disjoint sample sets (math §4.4: sums are additive)."""
    if (first.signed, first.complement) != (second.signed, second.complement):
        raise ValueError("cannot combine summaries of different settings (signed, sign of ε).")
    check_same_settings(first, second, ("angles", "planes", "epsilon"))

    def add(a, b):
        return None if a is None else wide_sum(a, b)

    return first.replace(
        curve_counts=wide_sum(first.curve_counts, second.curve_counts),
        negative_curve_counts=add(first.negative_curve_counts, second.negative_curve_counts),
        plane_totals=wide_sum(first.plane_totals, second.plane_totals),
        negative_plane_totals=add(first.negative_plane_totals, second.negative_plane_totals),
        num_samples=first.num_samples + second.num_samples,
    )


class GroupedSums(NamedTuple):
    """What :func:`plan_summaries` returns: summaries of disjoint sample groups, wide
    (:func:`srm_jax.sample_major.wide_add`) int32 sums with a leading group axis."""

    curve: jax.Array  # (G, T, 2): per angle, the counts summed over planes
    negative_curve: jax.Array | None  # the same for d̂·s ≤ −ε (signed, or ε < 0), else None
    totals: jax.Array  # (G, P, 2): per plane, the counts summed over the angles
    negative_totals: jax.Array | None
    num_samples: jax.Array  # (G,) int32
    angles: jax.Array  # (T,) in the working dtype


def plan_summaries(plan: CountPlan, activations, basis, pairs, angles, epsilon, *, groups=None,
                   num_groups: int = 1, table=None) -> GroupedSums:
    """Summaries of disjoint sample groups, as ``plan`` (:func:`srm_jax.plan_measurement`) says.

    The summary counterpart of :func:`srm_jax.resonance.plan_counts`: jitted and cached; inside
    another ``jit`` it is inlined. ``table`` is the sample-major kernel's plane table
    (:func:`srm_jax.sample_major.plane_table`), to build once for many calls.

    Returns:
      :class:`GroupedSums`: wide ``(G, T, 2)`` and ``(G, P, 2)`` sums (negatives ``None``
      unless the plan is signed or ε < 0), ``(G,)`` sample counts and the angles in the working
      dtype.
    """
    return _grouped_summaries_jit(
        activations, basis, pairs, angles, epsilon, groups=groups, num_groups=num_groups,
        plan=plan.resolved(), table=table,
    )


def _wide_sum_over(x, axis: int):
    """Counts summed over ``axis``, as wide sums (``None`` stays ``None``)."""
    if x is None:
        return None
    total = jnp.sum(x, axis=axis)
    return wide_add(jnp.zeros(total.shape + (2,), jnp.int32), total)


def _grouped_summaries(activations, basis, pairs, angles, epsilon, *, groups, num_groups: int,
                       plan: CountPlan, table) -> GroupedSums:
    """The sums of :func:`plan_summaries`: the kernel's own summaries, or its counts summed."""
    samples = _prepare(activations, basis, angles, groups, num_groups)
    kernel = KERNELS[kernel_method(plan, samples.unit.shape[0], pairs.shape[0],
                                   samples.angles.shape[0])]
    if kernel.summaries is None:
        counts, negative = kernel.counts(plan, samples, pairs, epsilon, num_groups=num_groups,
                                         table=table)
        return GroupedSums(_wide_sum_over(counts, 1), _wide_sum_over(negative, 1),
                           _wide_sum_over(counts, 2), _wide_sum_over(negative, 2),
                           samples.num_samples, samples.angles)
    sums = kernel.summaries(plan, samples, pairs, epsilon, num_groups=num_groups, table=table)
    two = sums.curve.shape[1] == 2

    def copy(x, index):
        return x[:, index] if index == 0 or two else None

    return GroupedSums(copy(sums.curve, 0), copy(sums.curve, 1), copy(sums.totals, 0),
                       copy(sums.totals, 1), samples.num_samples, samples.angles)


_grouped_summaries_jit = jax.jit(_grouped_summaries, static_argnames=("num_groups", "plan"))


def summary_from_sums(sums: GroupedSums, pairs, epsilon, plan: CountPlan, *,
                      group: int = 0) -> SRMSummary:
    """The :class:`SRMSummary` of group ``group`` of :func:`plan_summaries`' output."""

    def pick(x):
        return None if x is None else x[group]

    major = plan.major
    return SRMSummary(
        curve_counts=sums.curve[group],
        negative_curve_counts=pick(sums.negative_curve),
        plane_totals=sums.totals[group],
        negative_plane_totals=pick(sums.negative_totals),
        num_samples=sums.num_samples[group],
        angles=sums.angles,
        planes=pairs,
        epsilon=jnp.asarray(epsilon, sums.angles.dtype),
        signed=plan.signed,
        complement=major is not None and major.complement,
    )


def resonance_summary(
    activations: jax.Array,
    basis: jax.Array,
    *,
    epsilon: float | jax.Array,
    angles: jax.Array | None = None,
    planes: str | jax.Array = "comb",
    signed: bool = False,
    method: str = "auto",
    max_planes: int | None = None,
    key: jax.Array | None = None,
    chunk_size: int | None = None,
) -> SRMSummary:
    """SRM (Eqns. 2 and 4) summarised over planes and angles, never holding ``(P, T)``.

    The same measurement as :func:`srm_jax.spotlight_resonance` (same arguments, same exact
    counts), returned as :class:`SRMSummary`: the mean curve over planes and each plane's total
    over the angles. With the sample-major kernel (``method="auto"`` picks it for a wide ``±``
    basis, :mod:`srm_jax.sample_major`) memory is ``O(P + T)`` beyond the activations; any
    other method sums its full counts.

    Returns:
      :class:`SRMSummary`; ``summary.mean_curve`` equals ``spotlight_resonance(...).mean_curve``.
    """
    plan, pairs, angles = plan_measurement(
        activations, basis, epsilon=epsilon, angles=angles, planes=planes, signed=signed,
        method=method, max_planes=max_planes, key=key, chunk_size=chunk_size,
    )
    sums = plan_summaries(plan, activations, basis, pairs, angles, epsilon)
    return summary_from_sums(sums, pairs, epsilon, plan)


def plan_sweep_curves(plan: CountPlan, activations, basis, pairs, angles, epsilons, *,
                      table=None, subset=None) -> jax.Array:
    """The mean SRM curves (Eqn. 2) at every threshold of a sweep, ``(E, T)``, counted in one
    sample-major enumeration (:func:`srm_jax.sample_major.sample_major_curves`, math §6.2).

    ``plan`` is the sample-major plan of the sweep's least ε (:func:`srm_jax.plan_measurement`
    at ``min(epsilons)``; unsigned); ``epsilons`` ``(E,)`` are positive and at least that ε
    (the caller's contract, checked where they are concrete). Each row equals the mean curve of
    the same samples planned at that ε alone. ``subset``: int row indices whose curves are also
    wanted; the same enumeration then counts them as a group of their own and the result is
    ``(2, E, T)``: the curves of every row, then of the subset's rows (each equal to the curves
    of those rows alone). Pure; ``plan`` static.
    """
    major = plan.major
    if major is None or major.complement or plan.signed:
        raise ValueError("plan_sweep_curves needs an unsigned sample-major plan at ε > 0.")
    if _validation.is_concrete(epsilons) and float(np.min(np.asarray(epsilons))) < major.threshold:
        raise ValueError("plan_sweep_curves: every epsilon must be at least the plan's.")
    return _sweep_curves_jit(activations, basis, pairs, angles, epsilons, subset,
                             plan=plan.resolved(), table=table)


def _sweep_curves(activations, basis, pairs, angles, epsilons, subset=None, *, plan: CountPlan,
                  table):
    """The curves of :func:`plan_sweep_curves`: the wide sums of each group (the subset's rows
    are group 1), added as integers for every row, then divided."""
    groups, num_groups = (None, 1) if subset is None else (
        jnp.zeros(activations.shape[0], jnp.int32).at[subset].set(1), 2)
    samples = _prepare(activations, basis, angles, groups, num_groups)
    sums = _sample_major_call(sample_major_curves, plan, samples, pairs, epsilons, num_groups,
                              table)[:, 0]
    dtype = jnp.result_type(samples.angles.dtype, jnp.float32)
    counts = samples.num_samples

    def mean_curves(wide, count):
        return wide_value(wide, dtype) / (count.astype(dtype) * pairs.shape[0])

    if subset is None:
        return mean_curves(sums[0], counts[0])
    return jnp.stack([mean_curves(wide_sum(sums[0], sums[1]), counts[0] + counts[1]),
                      mean_curves(sums[1], counts[1])])


_sweep_curves_jit = jax.jit(_sweep_curves, static_argnames=("plan",))
