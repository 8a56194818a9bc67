"""Checks of the precision policy (math §1.4) that run on any backend, the CPU included.

XLA:CPU multiplies float32 exactly whatever a dot asks for, so a CPU run cannot show what a GPU
(TF32: 10-bit mantissa) or a TPU (one bfloat16 pass) does to a float32 ``dot_general`` that does
not ask for ``Precision.HIGHEST``. Two tools make it visible:

* :func:`float_dots_without_highest` walks the jaxpr of a call (every nested jaxpr of ``jit``,
  ``scan``, ``while``, ``cond``, ``shard_map``...) and lists each float ``dot_general`` that does
  not ask for ``HIGHEST``, with the srm-jax function that issued it.
* :func:`emulate_reduced_precision` wraps ``lax.dot_general`` while JAX traces: a float32 dot
  without ``HIGHEST`` gets its operands rounded to bfloat16 (``"bf16"``, a TPU) or to TF32
  (``"tf32"``, an NVIDIA GPU from Ampere on) before the exact CPU product. A computation whose
  counts do not move under it is exact on those backends.

Both are test and benchmark tools (used by ``tests/test_precision.py`` and
``python -m benchmarks.device``), not part of the library: they patch JAX for a moment.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax._src.lax import lax as _lax_impl  # the module whose ``dot_general`` jnp calls

import srm_jax

_PACKAGE_DIR = os.path.dirname(os.path.abspath(srm_jax.__file__))
_EXACT = {jax.lax.Precision.HIGHEST}
MODES = ("bf16", "tf32")


def round_to_bfloat16(x: jax.Array) -> jax.Array:
    """float32 ``x`` rounded to bfloat16 (8-bit significand) and back: a TPU's default pass."""
    return x.astype(jnp.bfloat16).astype(x.dtype)


def round_to_tf32(x: jax.Array) -> jax.Array:
    """float32 ``x`` rounded to nearest-even TF32 (10 explicit mantissa bits), as float32.

    Bit arithmetic (no library has a TF32 dtype): the 13 low mantissa bits are rounded away.
    """
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    lsb = (bits >> 13) & 1
    rounded = (bits + jnp.uint32(0x0FFF) + lsb) & jnp.uint32(0xFFFFE000)
    finite = jnp.isfinite(x)
    return jnp.where(finite, jax.lax.bitcast_convert_type(rounded, jnp.float32), x)


def _is_exact(precision) -> bool:
    """Whether a ``dot_general`` precision parameter asks for full float32 products."""
    if precision is None:
        return False
    if isinstance(precision, (tuple, list)):
        return all(p in _EXACT for p in precision)
    if isinstance(precision, jax.lax.DotAlgorithmPreset):
        return precision in (
            jax.lax.DotAlgorithmPreset.F32_F32_F32, jax.lax.DotAlgorithmPreset.F64_F64_F64
        )
    return precision in _EXACT


@contextlib.contextmanager
def emulate_reduced_precision(mode: str) -> Iterator[None]:
    """While active, float32 dots without ``HIGHEST`` round their operands as ``mode`` does.

    ``mode`` is ``"bf16"`` (TPU) or ``"tf32"`` (NVIDIA GPU). JAX's caches are cleared on entry
    and exit so that every function is traced again under (and after) the emulation.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    rounding = round_to_bfloat16 if mode == "bf16" else round_to_tf32
    original = _lax_impl.dot_general

    def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None,
                    **kwargs):
        lhs, rhs = jnp.asarray(lhs), jnp.asarray(rhs)
        canonical = _lax_impl.canonicalize_precision(precision)
        if not _is_exact(canonical):
            if lhs.dtype == jnp.float32:
                lhs = rounding(lhs)
            if rhs.dtype == jnp.float32:
                rhs = rounding(rhs)
        return original(lhs, rhs, dimension_numbers, precision=precision,
                        preferred_element_type=preferred_element_type, **kwargs)

    jax.clear_caches()
    _lax_impl.dot_general = dot_general
    jax.lax.dot_general = dot_general
    try:
        yield
    finally:
        _lax_impl.dot_general = original
        jax.lax.dot_general = original
        jax.clear_caches()


@dataclass(frozen=True)
class FloatDot:
    """A float ``dot_general`` of a jaxpr: where it came from, what it multiplies, how exactly."""

    location: str  # "module.py:function" of the innermost srm-jax frame, or "outside srm_jax"
    shapes: tuple
    dtype: str
    precision: object
    exact: bool  # asks for HIGHEST (full float32 products on every backend)


def _subjaxprs(params) -> Iterator:
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, jax.extend.core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jax.extend.core.Jaxpr):
                yield item


def _location(eqn) -> str:
    traceback = eqn.source_info.traceback
    for frame in traceback.frames if traceback is not None else ():
        path = os.path.abspath(frame.file_name)
        if path.startswith(_PACKAGE_DIR) and not path.endswith("_precision.py"):
            return f"{os.path.basename(path)}:{frame.function_name.split('.<locals>')[0]}"
    return "outside srm_jax"


def _walk(jaxpr, found: list[FloatDot]) -> None:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            dtypes = [v.aval.dtype for v in eqn.invars]
            if any(jnp.issubdtype(d, jnp.floating) for d in dtypes):
                precision = eqn.params.get("precision")
                found.append(FloatDot(
                    location=_location(eqn),
                    shapes=tuple(tuple(v.aval.shape) for v in eqn.invars),
                    dtype=str(dtypes[0]),
                    precision=precision,
                    exact=_is_exact(precision),
                ))
        for sub in _subjaxprs(eqn.params):
            _walk(sub, found)


def float_dots(fn: Callable, *args, **kwargs) -> list[FloatDot]:
    """Every float ``dot_general`` in the jaxpr of ``fn(*args, **kwargs)``, nested ones included.

    ``fn`` is staged with :func:`jax.make_jaxpr` (arguments are traced; close over arrays to
    keep them concrete). JAX's caches are cleared first so that the source location of every dot
    is the one of this trace.
    """
    jax.clear_caches()
    closed = jax.make_jaxpr(fn)(*args, **kwargs)
    found: list[FloatDot] = []
    _walk(closed.jaxpr, found)
    return found


def float_dots_without_highest(fn: Callable, *args, **kwargs) -> list[FloatDot]:
    """The dots of :func:`float_dots` that do not ask for ``HIGHEST``."""
    return [dot for dot in float_dots(fn, *args, **kwargs) if not dot.exact]
