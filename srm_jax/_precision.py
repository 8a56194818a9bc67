"""The precision policy (math §1.4): products that decide a count, an index or a bin are exact.

GPUs from Ampere on multiply float32 matrices in TF32 (10-bit mantissa) and TPUs in one bfloat16
pass unless a dot asks for ``Precision.HIGHEST``; XLA:CPU ignores the setting, so a CPU run cannot
show the difference (``tests/test_precision.py`` emulates both). Every float ``dot_general`` that
srm-jax issues goes through :func:`exact_matmul` or passes :data:`HIGHEST` itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST


def exact_matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` in full float32 (or float64) precision on every backend (math §1.4)."""
    return jnp.matmul(a, b, precision=HIGHEST)


def axis_coordinates(x: jax.Array, axes=None, signs=None) -> jax.Array:
    """The coordinates ``(N, K)`` of samples ``x`` ``(N, n)`` on signed coordinate axes
    ``signs[k] · e_{axes[k]}``: ``exact_matmul(x, D.T)`` for the ``(K, n)`` directions ``D``
    without its ``N·n·K`` multiply-adds (a product with ``±1`` and ``0`` is exact, so the values
    are the product's bit for bit on finite rows).

    ``axes``: ``None`` when the axes are ``0, …, n−1`` in order (the samples themselves: along
    the feature axis a gather costs XLA:CPU two transposes and a copy), else int indices;
    ``signs``: ``None`` when every sign is ``+``, else ``±1`` per axis."""
    c = x if axes is None else jnp.take(x, jnp.asarray(axes), axis=1)
    return c if signs is None else c * jnp.asarray(signs, x.dtype)


def working_dtype(*arrays) -> jnp.dtype:
    """The float dtype a measurement computes in: the inputs' own, but never below float32.

    bfloat16/float16 inputs are upcast (their values are kept exactly); integer inputs give the
    default float (float64 under ``jax_enable_x64``). math §1.4: the working dtype is at least
    float32, and ε and the angles are never rounded to a narrower input dtype.
    """
    dtype = jnp.result_type(*arrays)
    if not jnp.issubdtype(dtype, jnp.floating):
        return jnp.result_type(float)
    return jnp.promote_types(dtype, jnp.float32)
