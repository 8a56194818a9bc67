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
