"""Alignment score: is the SRM oscillation in phase with self-SRM? (paper Sec. 3, Fig. 1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from srm_jax.resonance import SRMResult
from srm_jax.summaries import SRMSummary


def _mean_curve(x) -> jax.Array:
    if isinstance(x, SRMResult | SRMSummary):
        return x.mean_curve
    x = jnp.asarray(x)
    return x if x.ndim == 1 else jnp.mean(x.reshape(-1, x.shape[-1]), axis=0)


def alignment_score(
    result: SRMResult | SRMSummary | jax.Array,
    reference: SRMResult | SRMSummary | jax.Array,
    *,
    flat_tolerance: float = 1e-12,
) -> jax.Array:
    """Pearson correlation over θ between the mean SRM curve and the mean self-SRM curve.

    ``+1``: the activations oscillate in phase with the basis (axis-aligned); ``−1``: in
    anti-phase (anti-aligned, as the paper's simplex bases, App. B.4); ``0``: unrelated. The
    paper compares the curves by eye (Sec. 3: "the mean results ... closely match"); this makes
    the comparison a number. When either curve is flat (its variance over θ is at most
    ``flat_tolerance`` times its squared mean, or exactly zero: a relative test, so scaling a
    curve or measuring more samples does not change it) the correlation is undefined and NaN is
    returned. Every grid angle counts once, as given (the default grid holds both 0 and
    2π).

    Args:
      result: an :class:`SRMResult` or :class:`srm_jax.SRMSummary`, a ``(T,)`` curve or
        ``(P, T)`` values.
      reference: the same for self-SRM (must share the angles).

    Returns:
      A scalar in ``[−1, 1]``, or NaN.
    """
    a = _mean_curve(result)
    b = _mean_curve(reference)
    if a.shape != b.shape:
        raise ValueError(f"curves must share the angle grid, got {a.shape} and {b.shape}.")
    mean_a = jnp.mean(a, axis=-1, keepdims=True)
    mean_b = jnp.mean(b, axis=-1, keepdims=True)
    a, b = a - mean_a, b - mean_b
    var_a = jnp.sum(a * a, axis=-1)
    var_b = jnp.sum(b * b, axis=-1)
    # Relative: a curve ×c, or measured on 10× more samples, is as flat as before.
    num = a.shape[-1]
    flat_a = var_a <= flat_tolerance * num * jnp.square(mean_a[..., 0])
    flat_b = var_b <= flat_tolerance * num * jnp.square(mean_b[..., 0])
    flat = flat_a | flat_b
    # Two square roots: the product var_a·var_b of two small curves can underflow.
    norm = jnp.sqrt(jnp.where(flat, 1.0, var_a)) * jnp.sqrt(jnp.where(flat, 1.0, var_b))
    score = jnp.sum(a * b, axis=-1) / norm
    return jnp.where(flat, jnp.nan, jnp.clip(score, -1.0, 1.0))
