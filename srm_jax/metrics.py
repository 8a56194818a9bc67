"""SRM as a metric inside a jitted training step (paper Sec. 3 and 5: the alignment of the
latent layer as an early-stopping signal).

Every ``every`` steps the metric measures SRM of a batch of the layer's activations and its
alignment score (:func:`srm_jax.alignment_score`: the Pearson correlation of the mean SRM curve
with the mean self-SRM curve); on other steps it carries the last measurement forward. The
choice is a ``lax.cond`` on ``step % every == 0`` inside the compiled step: every shape is fixed
when the metric is built (planes and angles are constants), so the step compiles once and the
measurement never leaves the device. Read ``state.score`` on the host whenever you log.

::

    metric = srm_metric(basis, every=50, epsilon=0.9)
    metric_state = metric.init()

    @nnx.jit
    def train_step(model, optimizer, metric_state, step, x):
        def loss_fn(model):
            y, latent = layer_activations(model, "latent", x)
            return jnp.mean((y - x) ** 2), latent
        (loss, latent), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        optimizer.update(model, grads)
        metric_state = metric.update(metric_state, latent, step)
        return loss, metric_state

The batch measured is the training batch, or, steadier, a fixed held-out probe batch: pass
``lambda: model.encode(probe)`` and its forward pass runs on measured steps only. (The paper
measures the full test split after training: :func:`srm_jax.layer_srm`.) The cost is one SRM of a
batch plus a self-SRM of ``m`` samples on measured steps, and nothing on the others.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from srm_jax._precision import working_dtype
from srm_jax.alignment import alignment_score
from srm_jax.resonance import SRMResult, plan_counts, plan_measurement, validate_inputs


@struct.dataclass
class SRMMetricState:
    """The last in-training SRM measurement (a pytree of fixed shapes).

    Attributes:
      score: float scalar: the alignment score with self-SRM of the last measurement (NaN before
        the first, or when a curve is flat).
      step: int32 scalar: the step of the last measurement (``-1`` before the first).
      mean_curve: ``(T,)`` the mean SRM curve of the last measurement (NaN before the first).
      result: the full :class:`SRMResult` of the last measurement (zero counts before the
        first) when the metric was built with ``keep_result=True``, else ``None``.
    """

    score: jax.Array
    step: jax.Array
    mean_curve: jax.Array
    result: SRMResult | None = None


@struct.dataclass
class SRMAlignment:
    """SRM of a batch and its alignment score with self-SRM (a pytree; see
    :func:`srm_alignment`).

    Attributes:
      score: scalar :func:`srm_jax.alignment_score` of the measurement (NaN when a curve is
        flat).
      result: the :class:`SRMResult` of the activations.
    """

    score: jax.Array
    result: SRMResult

    def __iter__(self):
        """``score, result = srm_alignment(...)``, the tuple it returned before: deprecated."""
        warnings.warn(
            "unpacking srm_alignment(...) as (score, result) is deprecated: read .score and "
            ".result of the SRMAlignment it returns. Unpacking will be removed in the next "
            "release.",
            DeprecationWarning,
            stacklevel=2,
        )
        return iter((self.score, self.result))


class SRMMetric(NamedTuple):
    """``init() -> SRMMetricState`` and pure ``update(state, activations, step, basis=None)``."""

    init: Callable[[], SRMMetricState]
    update: Callable[..., SRMMetricState]


def srm_alignment(
    activations: jax.Array,
    basis: jax.Array,
    *,
    epsilon: float | jax.Array,
    planes: jax.Array,
    angles: jax.Array,
    signed: bool = False,
    method: str = "auto",
    chunk_size: int | None = None,
) -> SRMAlignment:
    """SRM of ``activations`` and its alignment score with self-SRM of ``basis`` (Sec. 3).

    A pure, jit-safe function of fixed output shapes: ``planes`` is an explicit ``(P, 2)``
    array, ``angles`` a ``(T,)`` array. Rows with NaN/Inf are left out (math §1.2).

    Returns:
      :class:`SRMAlignment`: ``score`` (:func:`srm_jax.alignment_score`, scalar) and
      ``result`` (the :class:`SRMResult`). Unpacking it as ``score, result`` (the tuple it
      was before) still works for one release, with a ``DeprecationWarning``.
    """
    dtype = working_dtype(activations, basis)
    x = jnp.asarray(activations).astype(dtype)
    b = jnp.asarray(basis, dtype)
    x = x.reshape(x.shape[0], -1)
    plan, planes, angles = plan_measurement(
        x, b, epsilon=epsilon, angles=angles, planes=planes, signed=signed, method=method,
        chunk_size=chunk_size,
    )
    angles = angles.astype(dtype)
    eps = jnp.asarray(epsilon, dtype)

    def measure(samples):
        grouped = plan_counts(plan, samples, b, planes, angles, eps)
        return SRMResult.from_counts(grouped, planes, eps, signed, group=0)

    result = measure(x)
    reference = measure(b)
    return SRMAlignment(score=alignment_score(result, reference), result=result)


def srm_metric(
    basis: jax.Array,
    *,
    every: int,
    epsilon: float | jax.Array,
    angles: jax.Array | None = None,
    planes: str | jax.Array = "comb",
    signed: bool = False,
    method: str = "auto",
    max_planes: int | None = None,
    key: jax.Array | None = None,
    chunk_size: int | None = None,
    keep_result: bool = False,
) -> SRMMetric:
    """An in-training SRM alignment metric measured every ``every`` steps (paper Sec. 3, 5).

    ``update(state, activations, step, basis=None)`` measures when ``step % every == 0`` (a
    ``lax.cond``; no recompilation, no host round-trip) and otherwise returns ``state``
    unchanged. ``activations`` is the layer's ``(B, ...)`` batch (flattened to ``(B, n)``), or
    a function of no arguments returning it, which then runs only on measured steps (e.g. the
    forward pass of a fixed held-out probe batch: ``lambda: model.encode(probe)``).
    ``basis`` defaults to the one given here; pass the model's (traced) basis variable when it
    changes during training: it must keep the shape given here.

    Args:
      basis: ``(m, n)`` privileged basis; fixes the planes (validated here).
      every: measure on steps ``0, every, 2·every, …``.
      epsilon, angles, planes, signed, method, max_planes, key, chunk_size: as in
        :func:`srm_jax.spotlight_resonance`.
      keep_result: also carry the full ``(P, T)`` counts of the last measurement in the state.
        Off by default: the state is carried through every step, and a small state keeps the
        steps that do not measure as cheap as possible.

    Returns:
      :class:`SRMMetric` ``(init, update)``.
    """
    if int(every) < 1:
        raise ValueError(f"every must be a positive number of steps, got {every}.")
    every = int(every)
    pairs, angles = validate_inputs(
        None, basis, epsilon=epsilon, angles=angles, planes=planes, method=method,
        max_planes=max_planes, key=key,
    )
    dtype = working_dtype(basis)
    default_basis = jnp.asarray(basis, dtype)
    angles = angles.astype(dtype)
    eps = jnp.asarray(epsilon, dtype)

    def init() -> SRMMetricState:
        result = SRMResult.zeros(pairs, angles, eps, signed)
        return SRMMetricState(
            score=jnp.full((), jnp.nan, dtype),
            step=jnp.full((), -1, jnp.int32),
            mean_curve=jnp.full(angles.shape, jnp.nan, dtype),
            result=result if keep_result else None,
        )

    def update(
        state: SRMMetricState,
        activations: jax.Array,
        step: jax.Array | int,
        basis: jax.Array | None = None,
    ) -> SRMMetricState:
        b = default_basis if basis is None else jnp.asarray(basis, dtype)
        if b.shape != default_basis.shape:
            raise ValueError(f"basis must keep the shape {default_basis.shape}, got {b.shape}.")
        step = jnp.asarray(step, jnp.int32)
        b = jax.lax.stop_gradient(b)

        def measure(operand):
            b, step = operand
            x = activations() if callable(activations) else activations
            x = jax.lax.stop_gradient(jnp.asarray(x))
            measured = srm_alignment(
                x.reshape(x.shape[0], -1), b, epsilon=eps, planes=pairs, angles=angles,
                signed=signed, method=method, chunk_size=chunk_size,
            )
            return SRMMetricState(
                score=measured.score.astype(dtype),
                step=step,
                mean_curve=measured.result.mean_curve.astype(dtype),
                result=measured.result if keep_result else None,
            )

        def keep(operand):
            return state

        return jax.lax.cond(step % every == 0, measure, keep, (b, step))

    return SRMMetric(init=init, update=update)
