"""SRM across devices and hosts: samples sharded with ``jax.sharding``, counts summed by ``psum``.

SRM counts are additive over disjoint sample sets (math §4.4), so a data-parallel SRM is exact:
every device counts its own shard of the samples with the engine
(:func:`srm_jax.resonance.plan_counts`) inside :func:`jax.shard_map`, and the compiled program
sums the integer counts with ``lax.psum`` over the mesh axis. The basis, planes and angles are
replicated. No host round-trip: the result is a replicated array on every device.

**Several hosts.** The same code runs under multi-process JAX. Call
``jax.distributed.initialize()`` first in every process (on TPU pods and SLURM / Open MPI
clusters it needs no arguments; otherwise pass ``coordinator_address="host0:1234",
num_processes=P, process_id=i``). :func:`data_mesh` then spans every device of every process,
and each process passes *its own* samples: :func:`shard_samples` builds the global array with
``jax.make_array_from_process_local_data``. Every process must pass the same number of rows (pad
with NaN rows, which are left out) and make the same calls in the same order (the sum is a
collective). The result is replicated, so every process can read it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from srm_jax._precision import working_dtype
from srm_jax.resonance import (
    CountPlan,
    GroupedCounts,
    SRMResult,
    plan_counts,
    plan_measurement,
)
from srm_jax.sample_major import wide_sum
from srm_jax.summaries import GroupedSums, plan_summaries

DEFAULT_AXIS = "data"


def data_mesh(devices=None, axis_name: str = DEFAULT_AXIS) -> Mesh:
    """A 1-D mesh over ``devices`` (default: every device of every process, ``jax.devices()``)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (axis_name,))


def _axis(mesh: Mesh, axis_name: str | None) -> str:
    axis_name = axis_name or mesh.axis_names[0]
    if axis_name not in mesh.axis_names:
        raise ValueError(f"axis {axis_name!r} is not an axis of the mesh {mesh.axis_names}.")
    return axis_name


def local_shard_count(mesh: Mesh, axis_name: str | None = None) -> int:
    """How many distinct sample shards this process holds along ``axis_name`` of ``mesh``."""
    axis_name = _axis(mesh, axis_name)
    axis = mesh.axis_names.index(axis_name)
    me = jax.process_index()
    coords = {
        index[axis]
        for index, device in np.ndenumerate(mesh.devices)
        if device.process_index == me
    }
    return max(1, len(coords))


def shard_samples(
    x, mesh: Mesh | None = None, *, axis_name: str | None = None, fill=None
) -> jax.Array:
    """Place this process's samples ``x`` (leading axis = samples) sharded over ``mesh``.

    The rows are padded to a multiple of the process's shard count with ``fill`` (default NaN for
    floating arrays, which the engine leaves out of the counts (math §1); 0 / False otherwise).
    With one process this is ``jax.device_put`` with ``NamedSharding(mesh, P(axis_name))``; under
    multi-process JAX the global array is assembled from every process's local rows with
    ``jax.make_array_from_process_local_data`` (each process must pass the same number of rows).

    Args:
      x: NumPy or JAX array ``(N, ...)``.
      mesh: default :func:`data_mesh` over every device.
      axis_name: mesh axis of the samples (default: the mesh's first axis).
      fill: value of the padding rows.
    """
    mesh = data_mesh() if mesh is None else mesh
    axis_name = _axis(mesh, axis_name)
    spec = P(axis_name, *([None] * (np.ndim(x) - 1)))
    sharding = NamedSharding(mesh, spec)
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    shards = local_shard_count(mesh, axis_name)
    rows = np.shape(x)[0]
    pad = -rows % shards
    if pad:
        dtype = np.asarray(x[:0]).dtype
        value = fill if fill is not None else (np.nan if np.issubdtype(dtype, np.floating) else 0)
        widths = [(0, pad)] + [(0, 0)] * (np.ndim(x) - 1)
        x = np.pad(np.asarray(x), widths, constant_values=value)
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    return jax.make_array_from_process_local_data(sharding, np.asarray(x))


@functools.partial(jax.jit, static_argnames=("mesh", "axis_name", "plan"))
def sharded_counts(
    activations: jax.Array,
    basis: jax.Array,
    pairs: jax.Array,
    angles: jax.Array,
    epsilon: jax.Array,
    *,
    mesh: Mesh,
    axis_name: str,
    plan: CountPlan,
) -> GroupedCounts:
    """Counts of sample-sharded activations: per-device engine counts summed with ``psum``.

    Each device runs :func:`srm_jax.resonance.plan_counts` on its shard of ``activations``
    (sharded on axis 0 over ``axis_name``); basis, planes, angles and ε are replicated. math §4
    (counts additive over disjoint sample sets) makes the sum exact. Inputs are assumed
    validated (``plan`` from :func:`srm_jax.resonance.plan_measurement`); jitted and cached.

    Returns:
      :class:`srm_jax.resonance.GroupedCounts` of one group (``counts (1, P, T)``,
      ``negative_counts`` or ``None``, ``num_samples (1,)``), replicated, and the angles in the
      working dtype.
    """

    def local(x, basis, pairs, angles, epsilon):
        grouped = plan_counts(plan, x, basis, pairs, angles, epsilon)
        negative = () if grouped.negative_counts is None else (grouped.negative_counts,)
        return jax.lax.psum((grouped.counts, grouped.num_samples) + negative, axis_name)

    signed = plan.signed
    out = _per_device(local, mesh, axis_name, (P(),) * (3 if signed else 2),
                      activations, basis, pairs, angles, epsilon)
    dtype = working_dtype(activations, basis)
    return GroupedCounts(out[0], out[2] if signed else None, out[1], angles.astype(dtype))


def _per_device(local, mesh: Mesh, axis_name: str, out_specs, activations, *replicated):
    """``local(shard, *replicated)`` on every device's shard of ``activations`` (sharded on
    axis 0 over ``axis_name``), the other arguments replicated."""
    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(P(axis_name, None),) + (P(),) * len(replicated),
        out_specs=out_specs,
        # The engine's scan carries start replicated and become per-device; every output is
        # summed over the devices (a psum, or stacked and added), as out_specs states.
        check_vma=False,
    )(activations, *replicated)


@functools.partial(jax.jit, static_argnames=("mesh", "axis_name", "plan"))
def sharded_summaries(
    activations: jax.Array,
    basis: jax.Array,
    pairs: jax.Array,
    angles: jax.Array,
    epsilon: jax.Array,
    table: jax.Array | None = None,
    *,
    mesh: Mesh,
    axis_name: str,
    plan: CountPlan,
) -> GroupedSums:
    """Summaries of sample-sharded activations: per-device summaries, added (math §4).

    The summary counterpart of :func:`sharded_counts`: each device runs
    :func:`srm_jax.summaries.plan_summaries` on its shard (``table`` as there); the wide sums of
    the devices are stacked and added with :func:`srm_jax.sample_major.wide_sum`, which keeps
    them exact past ``2**31`` (a ``psum`` of the limbs would not). Jitted and cached.

    Returns:
      :class:`srm_jax.summaries.GroupedSums` of one group, replicated.
    """
    devices = mesh.shape[axis_name]
    two = plan.signed or (plan.major is not None and plan.major.complement)
    fields = ("curve", "negative_curve", "totals", "negative_totals") if two else (
        "curve", "totals")

    def local(x, basis, pairs, angles, epsilon, *table):
        sums = plan_summaries(plan, x, basis, pairs, angles, epsilon,
                              table=table[0] if table else None)
        return tuple(getattr(sums, name) for name in fields) + (sums.num_samples,)

    extra = () if table is None else (table,)
    out = _per_device(local, mesh, axis_name, (P(axis_name),) * (len(fields) + 1),
                      activations, basis, pairs, angles, epsilon, *extra)
    added = {name: functools.reduce(wide_sum, [x[i:i + 1] for i in range(devices)])
             for name, x in zip(fields, out[:-1], strict=True)}
    dtype = working_dtype(activations, basis)
    return GroupedSums(
        curve=added["curve"], negative_curve=added.get("negative_curve"),
        totals=added["totals"], negative_totals=added.get("negative_totals"),
        num_samples=jnp.sum(out[-1], axis=0, keepdims=True), angles=angles.astype(dtype),
    )


def sharded_srm(
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
    mesh: Mesh | None = None,
    axis_name: str | None = None,
) -> SRMResult:
    """:func:`srm_jax.spotlight_resonance` with the samples sharded over every device (math §4).

    ``activations`` are this process's samples (a NumPy array or any JAX array; an array already
    sharded with ``NamedSharding(mesh, P(axis_name))`` is used in place). They are placed with
    :func:`shard_samples`, every device counts its shard and the counts are summed in the
    compiled program. The counts equal those of :func:`srm_jax.spotlight_resonance` on all the
    samples of all processes.

    Args:
      activations: ``(N, n)`` local samples.
      basis, epsilon, angles, planes, signed, method, max_planes, key, chunk_size: as in
        :func:`srm_jax.spotlight_resonance`.
      mesh: default :func:`data_mesh` (every device of every process).
      axis_name: mesh axis the samples are split over (default: the mesh's first axis).

    Returns:
      :class:`SRMResult` with replicated counts.
    """
    plan, pairs, angles = plan_measurement(
        activations, basis, epsilon=epsilon, angles=angles, planes=planes, signed=signed,
        method=method, max_planes=max_planes, key=key, chunk_size=chunk_size,
    )
    mesh = data_mesh() if mesh is None else mesh
    axis_name = _axis(mesh, axis_name)
    dtype = working_dtype(activations, basis)
    angles = angles.astype(dtype)
    eps = jnp.asarray(epsilon, dtype)
    if not isinstance(activations, jax.Array) or np.issubdtype(activations.dtype, np.integer):
        activations = np.asarray(activations, dtype)
    x = shard_samples(activations, mesh, axis_name=axis_name)
    grouped = sharded_counts(
        x, jnp.asarray(basis, dtype), pairs, angles, eps, mesh=mesh, axis_name=axis_name,
        plan=plan,
    )
    return SRMResult.from_counts(grouped, pairs, eps, signed, group=0)
