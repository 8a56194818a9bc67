"""Facts of single rows and of the rows' mean, gathered while a layer streams.

SRM (paper Eqn. 2) counts lit samples; the report also asks *which* rows light the planes. For
a ``±`` orthonormal basis a row whose ``|cos|`` with one basis vector is at least ε lights every
plane of that vector (its projection on the plane has ``r ≥ ε``, math §5.1), so each row's
largest ``|cos(x, b)|`` and the vector attaining it
(:class:`RowFacts`) say which rows carry the counts, at 8 bytes a row. The rows' mean
(:class:`MeanFacts`) says whether a constant offset, rather than the rows' spread, points along
a basis vector.

Ties in ``|cos|`` (a ``±`` basis has ``b`` and ``−b``) go to the vector with positive cosine:
a row along ``+e_i`` names ``+e_i``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from srm_jax._precision import HIGHEST
from srm_jax.neurons import SignedBasis


class RowFacts(NamedTuple):
    """One entry per streamed sample (every row, in file order).

    Attributes:
      max_cos: ``(N,)`` float32, the largest ``|cos(x, b)|`` over the basis vectors ``b``; NaN
        for rows with NaN/Inf, 0 for zero rows.
      vector: ``(N,)`` int32, the basis vector attaining it; ``-1`` for rows with NaN/Inf and
        for zero rows.
    """

    max_cos: np.ndarray
    vector: np.ndarray


class MeanFacts(NamedTuple):
    """The mean of the finite rows (rows without NaN/Inf) and its direction.

    Attributes:
      mean: ``(n,)`` float64 mean.
      share_of_squared_norm: ``|mean|² / mean(|x|²)``: the share of the rows' second moment
        that the mean carries (1 for identical rows, near 0 for rows centred on the origin).
      max_abs_cos: the largest ``|cos(mean, b)|`` over the basis vectors ``b``.
      vector: the vector attaining it (``-1`` when the mean is zero or undefined).
    """

    mean: np.ndarray
    share_of_squared_norm: float
    max_abs_cos: float
    vector: int


@functools.partial(jax.jit, static_argnames="chunk")
def row_facts_batch(batch: jax.Array, unit_basis: jax.Array,
                    chunk: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Each row's largest ``|cos(x, b)|`` over the unit rows ``b`` of ``unit_basis`` and the
    vector attaining it (ties to the positive cosine).

    Pure and jit-compiled; the dot products are full float32 (``Precision.HIGHEST``).

    Args:
      batch: ``(B, n)`` rows; rows with NaN/Inf give NaN and ``-1``.
      unit_basis: ``(m, n)`` unit basis vectors.
      chunk: rows whose ``(chunk, m)`` cosines are held at once (``None``: every row); bounds
        the memory of a wide or overcomplete basis.

    Returns:
      ``(max_cos, vector)``: float32 ``(B,)`` and int32 ``(B,)``; a zero row gives 0 and ``-1``.
    """
    unit = jnp.asarray(unit_basis, jnp.float32)
    if chunk is None or chunk >= batch.shape[0]:
        return _row_facts(jnp.asarray(batch, jnp.float32), unit)
    return jax.lax.map(lambda row: tuple(a[0] for a in _row_facts(row[None], unit)),
                       jnp.asarray(batch, jnp.float32), batch_size=chunk)


def _row_facts(x: jax.Array, unit: jax.Array) -> tuple[jax.Array, jax.Array]:
    valid = jnp.all(jnp.isfinite(x), axis=1)
    x = jnp.where(valid[:, None], x, 0.0)
    norm = jnp.linalg.norm(x, axis=1)
    dots = jnp.matmul(x, unit.T, precision=HIGHEST)
    cos = dots / jnp.where(norm > 0, norm, 1.0)[:, None]
    best = jnp.max(jnp.abs(cos), axis=1)
    tied = jnp.abs(cos) == best[:, None]
    positive = tied & (cos > 0)
    vector = jnp.where(jnp.any(positive, axis=1), jnp.argmax(positive, axis=1),
                       jnp.argmax(tied, axis=1))
    vector = jnp.where(valid & (norm > 0), vector, -1).astype(jnp.int32)
    return jnp.where(valid, best, jnp.nan).astype(jnp.float32), vector


def vector_lookup(neurons: SignedBasis) -> np.ndarray:
    """The basis vector of each direction and sign: int32 ``(K, 2)``, column 0 the (first)
    vector along ``−q_k``, column 1 the one along ``+q_k``, ``-1`` where the basis has none.
    Host-side."""
    lookup = np.full((neurons.num_directions, 2), -1, np.int64)
    for v in range(neurons.direction.shape[0]):
        k, side = neurons.direction[v], int(neurons.sign[v] > 0)
        if lookup[k, side] < 0:
            lookup[k, side] = v
    return lookup.astype(np.int32)


def coordinate_facts(coordinates: jax.Array, norms: jax.Array,
                     lookup: jax.Array) -> tuple[jax.Array, jax.Array]:
    """:func:`row_facts_batch` from the rows' coordinates on the basis' directions.

    The coordinates ``d·q_k`` that the measures' sums need already hold every ``|cos|``: a
    vector ``±q_k`` has ``cos = ±d·q_k / ‖d‖``. The vector chosen is the one
    :func:`row_facts_batch` chooses: of the directions with the largest ``|cos|``, the first
    vector with a positive cosine, else the first vector. Pure and jit-safe.

    Args:
      coordinates: ``(B, K)`` raw coordinates on the unit directions.
      norms: ``(B,)`` the rows' norms, NaN for rows with NaN/Inf.
      lookup: int ``(K, 2)`` (:func:`vector_lookup`).

    Returns:
      ``(max_cos, vector)`` as :func:`row_facts_batch`.
    """
    lookup = jnp.asarray(lookup, jnp.int32)
    never = jnp.iinfo(jnp.int32).max
    valid = jnp.isfinite(norms) & jnp.all(jnp.isfinite(coordinates), axis=1)
    counted = valid & (norms > 0)
    cos = jnp.where(valid[:, None], coordinates, 0.0) / jnp.where(counted, norms, 1.0)[:, None]
    best = jnp.max(jnp.abs(cos), axis=1)
    tied = jnp.abs(cos) == best[:, None]
    along = lookup[jnp.arange(lookup.shape[0]), (cos > 0).astype(jnp.int32)]  # (B, K)
    positive = jnp.where(tied & (cos != 0) & (along >= 0), along, never).min(axis=1)
    first = jnp.where(lookup < 0, never, lookup).min(axis=1)  # (K,)
    fallback = jnp.where(tied, first, never).min(axis=1)
    vector = jnp.where(positive < never, positive, fallback)
    vector = jnp.where(counted, vector, -1).astype(jnp.int32)
    return jnp.where(valid, best, jnp.nan).astype(jnp.float32), vector


@jax.jit
def row_sums_batch(batch: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The sums a mean needs of the finite rows of ``batch`` ``(B, n)``: ``Σ x`` ``(n,)``,
    ``Σ |x|²`` and the number of rows (float32, float32, int32). Pure and jit-compiled."""
    x = jnp.asarray(batch, jnp.float32)
    valid = jnp.all(jnp.isfinite(x), axis=1)
    x = jnp.where(valid[:, None], x, 0.0)
    return jnp.sum(x, axis=0), jnp.sum(x * x), jnp.sum(valid, dtype=jnp.int32)


def mean_facts(sum_x, sum_sq, count, basis) -> MeanFacts:
    """:class:`MeanFacts` of the sums of the finite rows (:func:`row_sums_batch`, added up).

    Host-side, float64.

    Args:
      sum_x: ``(n,)`` ``Σ x``; sum_sq: ``Σ |x|²``; count: the number of rows summed.
      basis: ``(m, n)`` basis (rows of any norm but zero).

    Returns:
      :class:`MeanFacts`; with no rows, a NaN mean, NaN shares and vector ``-1``.
    """
    sum_x = np.asarray(sum_x, np.float64)
    count = int(count)
    if count == 0:
        return MeanFacts(np.full(sum_x.shape, np.nan), float("nan"), float("nan"), -1)
    mean = sum_x / count
    squared = float(mean @ mean)
    second_moment = float(sum_sq) / count
    share = squared / second_moment if second_moment > 0 else float("nan")
    if squared == 0.0:
        return MeanFacts(mean, share, 0.0, -1)
    unit = np.asarray(basis, np.float64)
    unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    cos = unit @ (mean / np.sqrt(squared))
    best = float(np.max(np.abs(cos)))
    tied = np.abs(cos) == best
    positive = tied & (cos > 0)
    vector = int(np.argmax(positive) if np.any(positive) else np.argmax(tied))
    return MeanFacts(mean, share, best, vector)


def combine_row_sums(parts) -> tuple[np.ndarray, float, int]:
    """Adds up per-batch :func:`row_sums_batch` results in float64 (host-side)."""
    parts = list(parts)
    if not parts:
        raise ValueError("no batches to add up")
    sum_x = np.sum([np.asarray(p[0], np.float64) for p in parts], axis=0)
    sum_sq = float(np.sum([np.float64(p[1]) for p in parts]))
    count = int(np.sum([int(p[2]) for p in parts]))
    return sum_x, sum_sq, count
