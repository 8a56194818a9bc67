"""Streaming SRM: integer counts accumulated over batches from any iterator (math §4.4).

SRM counts are integers and additive (math §4.4: "counts and sample totals from two batches sum to
those of the union"), so an accumulator that holds only the ``(P, T)`` counts and the sample total
gives *exactly* the in-memory result while its memory does not grow with the number of samples.

The accumulator is a pair of pure functions, in the style of optax::

    acc = streaming_srm(basis, epsilon=0.9)
    update = jax.jit(acc.update)          # compiled once per batch shape
    state = acc.init()                    # an SRMResult with zero counts
    for batch in batches:
        state = update(state, batch)      # batch: (B, n) activations
    state.values, state.mean_curve        # as spotlight_resonance(all_samples, basis, ...)

**Ragged batches.** The update is compiled for one batch shape. A last batch with fewer rows is
padded to the full batch size and the padded rows are left out of the counts, so the update is
never recompiled: either pass ``mask`` (bool ``(B,)``, ``True`` for a real row), or pad with rows
of NaN, which the engine leaves out of numerator and denominator alike (math §1.2).
:func:`fixed_size_batches` does the padding for any iterator and :func:`accumulate_srm` runs the
whole loop. Batches larger than the batch size are split.

**Exactness.** Counting is exact integer arithmetic, so batching changes nothing except for a
sample whose ``d̂·s(θ)`` lies within float rounding of ``±ε``: XLA's matrix products may round
differently for different batch shapes, and such a sample may then count on the other side (the
same tolerance math §5.2 grants between the engine's methods). The tests draw samples away from
the threshold and require identical counts.

**Inputs.** Anything that yields arrays with a leading sample axis works: NumPy arrays, JAX
arrays, TFDS / grain / PyTorch-style dicts (pick the field with ``select="name"`` or a callable).
Counts are int32: up to ``2**31 − 1`` samples per accumulator.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from srm_jax import _validation
from srm_jax._precision import working_dtype
from srm_jax.distributed import (
    _axis,
    local_shard_count,
    shard_samples,
    sharded_counts,
    sharded_summaries,
)
from srm_jax.resonance import (
    CountPlan,
    SRMResult,
    angle_layout,
    check_method,
    plan_counts,
    plan_measurement,
)
from srm_jax.sample_major import plane_table
from srm_jax.summaries import SRMSummary, plan_summaries, summary_from_sums

Batch = Any  # an array, or a pytree of arrays sharing a leading sample axis


class StreamingSRM(NamedTuple):
    """A streaming SRM accumulator: ``init() -> SRMResult`` and pure ``update``.

    ``update(state, activations, mask=None) -> state`` adds the counts of one ``(B, n)`` batch
    (rows with ``mask == False`` or with NaN/Inf are left out). It is safe under ``jax.jit`` and
    compiles once per batch shape.
    """

    init: Callable[[], SRMResult]
    update: Callable[..., SRMResult]


def streaming_srm(
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
    mesh: Mesh | None = None,
    axis_name: str | None = None,
) -> StreamingSRM:
    """A streaming accumulator of SRM (Eqn. 2) or signed SRM (Eqn. 4) counts (math §4).

    The arguments are those of :func:`srm_jax.spotlight_resonance`; planes (and a ``max_planes``
    draw) are fixed here, once, so every batch is measured on the same planes and angles. The
    state is an :class:`SRMResult` whose counts are the sums over the batches seen, hence equal to
    the in-memory result on the concatenated samples.

    Args:
      basis: ``(m, n)`` privileged basis (concrete: it is validated here).
      epsilon, angles, planes, signed, method, max_planes, key, chunk_size: as in
        :func:`srm_jax.spotlight_resonance`.
      mesh: if given, each batch's samples are sharded over the mesh's ``axis_name`` axis and
        every device counts its shard; the compiled program sums the counts with ``psum`` (see
        :mod:`srm_jax.distributed`). Place batches with :func:`srm_jax.shard_samples`.
      axis_name: the mesh axis the samples are split over (default: the mesh's first axis).

    Returns:
      :class:`StreamingSRM` ``(init, update)``.
    """
    plan, pairs, angles = plan_measurement(
        None, basis, epsilon=epsilon, angles=angles, planes=planes, signed=signed,
        method=method, max_planes=max_planes, key=key, chunk_size=chunk_size,
    )
    dtype = working_dtype(basis)
    basis = jnp.asarray(basis, dtype)
    angles = angles.astype(dtype)
    eps = jnp.asarray(epsilon, dtype)
    if mesh is not None:
        axis_name = _axis(mesh, axis_name)

    def init() -> SRMResult:
        return SRMResult.zeros(pairs, angles, eps, signed)

    update = functools.partial(add_batch, basis=basis, mesh=mesh, axis_name=axis_name, plan=plan)
    functools.update_wrapper(update, add_batch)
    return StreamingSRM(init=init, update=update)


def add_batch(
    state: SRMResult,
    activations: jax.Array,
    mask: jax.Array | None = None,
    *,
    basis: jax.Array,
    method: str = "auto",
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    axis_name: str | None = None,
    plan: CountPlan | None = None,
) -> SRMResult:
    """``state`` plus the SRM counts of one ``(B, n)`` batch (math §4.4: counts are additive).

    The planes, angles, ε and ``signed`` are those of ``state``; rows with ``mask == False`` or
    with NaN/Inf are left out. Pure and jit-safe (``method``, ``chunk_size``, ``mesh`` and
    ``axis_name`` static); :data:`add_batch_jit` is a jitted version whose compilation is shared
    by every accumulator of the same shapes. ``plan`` (static) is the accumulator's
    :class:`srm_jax.resonance.CountPlan`, made once by :func:`streaming_srm` and passed whole to
    the kernel (``method`` and ``chunk_size`` are then unused); without it one is made from
    ``method``, ``chunk_size`` and the state (the angles' layout decided here when they are
    concrete, else inside the kernel).
    """
    check_method(method)
    x = jnp.asarray(activations)
    _validation.check_activations(x, basis)
    dtype = working_dtype(x, basis)
    x = x.astype(dtype)
    basis = jnp.asarray(basis, dtype)
    if mask is not None:
        x = jnp.where(jnp.asarray(mask, bool)[:, None], x, jnp.nan)
    args = (x, basis, state.planes, state.angles.astype(dtype), state.epsilon.astype(dtype))
    if plan is None:
        plan = CountPlan(signed=state.signed, method=method, chunk_size=chunk_size,
                         grid=angle_layout(state.angles, dtype))
    if mesh is None:
        grouped = plan_counts(plan, *args)
    else:
        grouped = sharded_counts(*args, mesh=mesh, axis_name=axis_name or mesh.axis_names[0],
                                 plan=plan)
    negative = grouped.negative_counts
    return state.replace(
        counts=state.counts + grouped.counts[0],
        negative_counts=None if negative is None else state.negative_counts + negative[0],
        num_samples=state.num_samples + grouped.num_samples[0],
    )


add_batch_jit = jax.jit(
    add_batch, static_argnames=("method", "chunk_size", "mesh", "axis_name", "plan")
)


def _leading_size(batch: Batch) -> int:
    leaves = jax.tree.leaves(batch)
    if not leaves:
        raise ValueError("a batch must hold at least one array with a leading sample axis.")
    sizes = {int(np.shape(leaf)[0]) if np.ndim(leaf) else -1 for leaf in leaves}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(
            f"every array of a batch must share the leading (sample) axis, got sizes {sizes}."
        )
    return sizes.pop()


def _pad_rows(x, size: int):
    rows = np.shape(x)[0]
    if rows == size:
        return x
    widths = [(0, size - rows)] + [(0, 0)] * (np.ndim(x) - 1)
    if isinstance(x, jax.Array):
        return jnp.pad(x, widths)
    return np.pad(np.asarray(x), widths)


def fixed_size_batches(
    batches: Iterable[Batch], batch_size: int | None = None, *, multiple_of: int = 1
) -> Iterator[tuple[Batch, np.ndarray]]:
    """Re-cut any iterator of batches to one fixed batch size: yields ``(batch, mask)``.

    A batch (an array or a pytree of arrays with a shared leading sample axis: a TFDS / grain
    dict, for instance) larger than ``batch_size`` is split; a smaller one (the ragged last
    batch) is padded with zero rows and ``mask`` (bool ``(batch_size,)``) marks the real rows.
    So a jitted per-batch function sees one shape and compiles once.

    Args:
      batches: the iterable.
      batch_size: rows per batch; default the size of the first non-empty batch, rounded up to
        a multiple of ``multiple_of``. Empty batches are skipped.
      multiple_of: round ``batch_size`` up to a multiple of this (the number of devices the
        samples are sharded over).
    """
    size = None if batch_size is None else _round_up(int(batch_size), multiple_of)
    for batch in batches:
        rows = _leading_size(batch)
        if rows == 0:
            continue  # an empty batch holds no rows, and must not set the batch size
        if size is None:
            size = _round_up(rows, multiple_of)
        for start in range(0, max(rows, 1), size):
            stop = min(rows, start + size)
            if stop <= start:
                break
            piece = batch
            if start or stop < rows:
                piece = jax.tree.map(lambda x, a=start, b=stop: x[a:b], batch)
            piece = jax.tree.map(lambda x, s=size: _pad_rows(x, s), piece)
            mask = np.arange(size) < (stop - start)
            yield piece, mask


class InFlight:
    """Bounds how many dispatched updates may be pending (JAX dispatches asynchronously).

    A Python loop can enqueue updates faster than the device runs them, and every pending update
    holds its input batch; waiting for the update ``max_in_flight`` steps back keeps the memory
    of a stream flat. The wait is in the host loop, never inside a compiled computation.
    """

    def __init__(self, max_in_flight: int):
        if int(max_in_flight) < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}.")
        self.max_in_flight = int(max_in_flight)
        self.pending: collections.deque = collections.deque()

    def add(self, value) -> None:
        self.pending.append(value)
        if len(self.pending) > self.max_in_flight:
            jax.block_until_ready(self.pending.popleft())


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _selector(select: str | Callable[[Batch], Any] | None) -> Callable[[Batch], Any]:
    if select is None:
        return lambda batch: batch
    if isinstance(select, str):
        return lambda batch: batch[select]
    return select


def accumulate_srm(
    batches: Iterable[Batch],
    basis: jax.Array,
    *,
    epsilon: float | jax.Array,
    select: str | Callable[[Batch], Any] | None = None,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    axis_name: str | None = None,
    max_in_flight: int = 2,
    **kwargs,
) -> SRMResult:
    """SRM of every sample an iterator yields, in memory that does not grow with their number.

    Equal, count for count, to :func:`srm_jax.spotlight_resonance` on the concatenated samples
    (math §4). The per-batch update is jitted once; a ragged last batch is padded and masked (see
    :func:`fixed_size_batches`), so it does not recompile.

    Args:
      batches: an iterable of ``(B, n)`` activations, or of pytrees (dicts) holding them.
      basis: ``(m, n)`` privileged basis.
      epsilon: ``ε``.
      select: the dict key (``str``) or a function taking a batch to its ``(B, n)`` activations.
      batch_size: fixed rows per update; default the first non-empty batch's size.
      mesh, axis_name: shard every batch over the devices of ``mesh`` (see
        :func:`streaming_srm`); under multi-process JAX each process passes its own batches
        (every process must make the same number of updates).
      max_in_flight: updates that may be dispatched but not finished (each holds its batch);
        see :class:`InFlight`.
      **kwargs: ``angles``, ``planes``, ``signed``, ``method``, ``max_planes``, ``key``,
        ``chunk_size`` as in :func:`srm_jax.spotlight_resonance`.

    Returns:
      :class:`SRMResult` over all samples.
    """
    method = kwargs.pop("method", "auto")
    chunk_size = kwargs.pop("chunk_size", None)
    acc = streaming_srm(
        basis, epsilon=epsilon, mesh=mesh, axis_name=axis_name, method=method,
        chunk_size=chunk_size, **kwargs,
    )
    # The accumulator's own settings (its validated plan included), on the jitted update.
    update = functools.partial(add_batch_jit, **acc.update.keywords)
    pick = _selector(select)
    multiple = 1 if mesh is None else local_shard_count(mesh, axis_name)
    state = acc.init()
    in_flight = InFlight(max_in_flight)
    for batch, mask in fixed_size_batches(map(pick, batches), batch_size, multiple_of=multiple):
        if mesh is not None:
            batch = shard_samples(batch, mesh, axis_name=axis_name)
            mask = shard_samples(mask, mesh, axis_name=axis_name)
        state = update(state, batch, mask)
        in_flight.add(state.num_samples)
    return state


def accumulate_summary(
    batches: Iterable[Batch],
    basis: jax.Array,
    *,
    epsilon: float | jax.Array,
    select: str | Callable[[Batch], Any] | None = None,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    axis_name: str | None = None,
    max_in_flight: int = 2,
    **kwargs,
) -> SRMSummary:
    """SRM summaries (:class:`srm_jax.SRMSummary`) of every sample an iterator yields.

    The summary counterpart of :func:`accumulate_srm`: equal, sum for sum, to
    :func:`srm_jax.resonance_summary` of the concatenated samples (summaries are additive, math
    §4.4), in memory that grows with neither the samples nor ``(P, T)``: with the sample-major
    kernel it holds the ``(P,)`` plane totals and ``(T,)`` curve, never the counts (a report of
    every plane of a wide layer). The per-batch summary is jitted once (a ragged last batch is
    padded with NaN rows, which count nowhere); the sample-major plane table is built once for
    the stream. ``epsilon`` must be concrete (the kernel's plan depends on it).

    Args:
      batches, select, batch_size, max_in_flight: as :func:`accumulate_srm`.
      basis: ``(m, n)`` privileged basis.
      epsilon: ``ε``.
      mesh, axis_name: shard every batch over the devices of ``mesh`` (as
        :func:`accumulate_srm`; :func:`srm_jax.distributed.sharded_summaries`).
      **kwargs: ``angles``, ``planes``, ``signed``, ``method``, ``max_planes``, ``key``,
        ``chunk_size`` as in :func:`srm_jax.spotlight_resonance`.

    Returns:
      :class:`srm_jax.SRMSummary` over all samples.
    """
    plan, pairs, angles = plan_measurement(None, basis, epsilon=epsilon, **kwargs)
    dtype = working_dtype(basis)
    basis = jnp.asarray(basis, dtype)
    angles = jnp.asarray(angles, dtype)
    table = None if plan.major is None else plane_table(plan.major, pairs)
    if mesh is not None:
        axis_name = _axis(mesh, axis_name)

    def summarise(x) -> SRMSummary:
        if mesh is None:
            sums = plan_summaries(plan, x, basis, pairs, angles, epsilon, table=table)
        else:
            sums = sharded_summaries(
                shard_samples(x, mesh, axis_name=axis_name), basis, pairs, angles,
                jnp.asarray(epsilon, dtype), table, mesh=mesh, axis_name=axis_name, plan=plan)
        return summary_from_sums(sums, pairs, epsilon, plan)

    pick = _selector(select)
    multiple = 1 if mesh is None else local_shard_count(mesh, axis_name)
    state = None
    in_flight = InFlight(max_in_flight)
    for batch, mask in fixed_size_batches(map(pick, batches), batch_size, multiple_of=multiple):
        x = np.asarray(batch)
        _validation.check_activations(x, basis)
        if not mask.all():  # padding rows become NaN rows, which no summary counts
            x = np.where(mask[:, None], x, np.nan)
        summary = summarise(x.astype(dtype, copy=False))
        state = summary if state is None else state + summary
        in_flight.add(state.num_samples)
    if state is None:  # no rows: the summary of no samples (zeros)
        state = summarise(np.zeros((0, basis.shape[1]), dtype))
    return state
