"""Which neurons: the basis vectors and planes that carry a layer's SRM, ranked.

SRM (paper Eqn. 2) counts, for every plane ``(α, β)`` of the basis and every angle θ, the samples
inside the spotlight. The report asks *where* that resonance sits. Three pure functions of the
per-plane arrays answer it, so they apply equally to full ``(P, T)`` counts and to summaries that
never hold them:

* :func:`plane_summaries`: per-plane totals (Σ over θ of the counts), peaks and peak angles;
* :func:`rank_basis_vectors`: each basis vector's share of the lit counts its planes carry;
* :func:`rank_planes`: the planes with the highest SRM peak;
* :func:`neuron_map`: the neuron × neuron image of per-plane values for a ``±`` orthonormal basis.

A ``±`` orthonormal basis (the standard basis ``±e_i`` of elementwise activations, an orthoplex,
math §5.1) has ``K`` distinct directions, each present as ``+q_k`` and/or ``−q_k``: a *neuron*.
:func:`signed_neurons` finds them (host-side: it decides shapes).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from srm_jax import _validation
from srm_jax._precision import working_dtype

#: ``|b̂_i·b̂_j|`` below this: orthogonal vectors (the ``±`` orthonormal test).
ORTHOGONAL_TOLERANCE = 1e-5
#: ``|b̂_i·b̂_j|`` above ``1 −`` this: the same direction (as math §2.2's spanning test).
ANTIPODAL_TOLERANCE = _validation.DEGENERATE_PAIR_TOLERANCE
#: Rows of the Gram matrix computed at once by :func:`signed_neurons` (host memory bound).
_GRAM_BLOCK = 1024


class SignedBasis(NamedTuple):
    """The neurons of a basis: its distinct directions and each vector's direction and sign.

    Attributes:
      orthonormal: the unit rows are pairwise orthogonal or antipodal (a ``±`` orthonormal
        basis); otherwise every vector is its own direction (``K = m``, every sign ``+1``).
      standard: every vector is ``±e_i`` (then the neuron of ``±e_i`` is the coordinate ``i``).
      direction: int ``(m,)``, the slot ``k ∈ [0, K)`` of each vector's direction.
      sign: int ``(m,)``, ``±1``: vector ``v`` is ``sign[v] · q_direction[v]``.
      neuron: int ``(K,)``, the neuron label of each slot: the coordinate ``i`` of ``±e_i`` for
        the standard basis, the slot itself otherwise.
      representative: int ``(K,)``, one basis row of each direction (its first).
    """

    orthonormal: bool
    standard: bool
    direction: np.ndarray
    sign: np.ndarray
    neuron: np.ndarray
    representative: np.ndarray

    @property
    def num_directions(self) -> int:
        """``K``, the number of distinct directions (neurons)."""
        return int(self.neuron.shape[0])

    def directions(self, basis: jax.Array) -> jax.Array:
        """The ``(K, n)`` unit directions ``q_k`` of ``basis`` (or of a rotated copy of it with
        the same row order): ``sign · b̂`` of each representative row. Pure and jit-safe."""
        unit = _unit_rows(jnp.asarray(basis))
        rows = jnp.asarray(self.representative)
        signs = jnp.asarray(self.sign[self.representative], unit.dtype)
        return signs[:, None] * unit[rows]


def _unit_rows(x: jax.Array) -> jax.Array:
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x / jnp.where(norm == 0, 1, norm)


def signed_neurons(basis) -> SignedBasis:
    """The neurons of a concrete basis: is it ``±`` orthonormal, and which direction and sign has
    each vector (math §5.1; Elhage et al. 2023 call such a basis *privileged*).

    A basis is ``±`` orthonormal when every pair of unit rows has ``|cos| < 1e-5`` (orthogonal)
    or ``|cos| > 1 − 1e-6`` (the same or the opposite direction). Its distinct directions are
    numbered in order of first appearance, the first row of each having sign ``+1``; for the
    *standard* basis (every row ``±e_i``) the neuron of ``±e_i`` is the coordinate ``i`` and the
    sign that of the entry. Any other basis has ``K = m`` directions, the rows themselves.

    Host-side (it decides ``K``); float64, in blocks of rows (no ``m × m`` matrix at once), and
    without a Gram matrix where every row has one non-zero entry.

    Args:
      basis: concrete ``(m, n)`` basis, no zero row.

    Returns:
      :class:`SignedBasis`.
    """
    _validation.check_basis(basis)
    unit = _validation.host_unit_rows(basis)
    m = unit.shape[0]
    first = _axis_first_rows(unit)  # the first row along the same (or opposite) direction
    if first is None:
        first = _gram_first_rows(unit)
    if first is None:
        index = np.arange(m)
        return SignedBasis(False, False, index, np.ones(m, np.int64), index, index)
    representative, direction = np.unique(first, return_inverse=True)
    peak = np.argmax(np.abs(unit), axis=1)
    standard = bool(np.all(np.abs(unit[np.arange(m), peak]) > 1.0 - ANTIPODAL_TOLERANCE))
    if standard:
        sign = np.sign(unit[np.arange(m), peak]).astype(np.int64)
        neuron = peak[representative]
        # The direction of ±e_i is +e_i: the representative's own sign says which one it is.
    else:
        sign = np.sign(np.sum(unit * unit[first], axis=1)).astype(np.int64)
        neuron = np.arange(representative.shape[0])
    return SignedBasis(True, standard, direction.astype(np.int64), sign, neuron.astype(np.int64),
                       representative.astype(np.int64))


def _axis_first_rows(unit: np.ndarray) -> np.ndarray | None:
    """For rows that each have one non-zero entry (``±e_i``: pairwise ``|cos|`` exactly 0 or 1,
    so no Gram matrix is needed), the first row on each row's axis; else ``None``."""
    nonzero = unit != 0
    if not np.all(np.count_nonzero(nonzero, axis=1) == 1):
        return None
    axis = np.argmax(nonzero, axis=1)
    axes, first = np.unique(axis, return_index=True)
    return first[np.searchsorted(axes, axis)]


def _gram_first_rows(unit: np.ndarray) -> np.ndarray | None:
    """The first row along each row's direction or its opposite, from the Gram matrix in blocks
    of rows; ``None`` when some pair is neither orthogonal nor (anti)parallel."""
    m = unit.shape[0]
    first = np.empty(m, np.int64)
    for start in range(0, m, _GRAM_BLOCK):
        block = np.abs(unit[start:start + _GRAM_BLOCK] @ unit.T)
        same = block > 1.0 - ANTIPODAL_TOLERANCE
        if not np.all(same | (block < ORTHOGONAL_TOLERANCE)):
            return None
        first[start:start + block.shape[0]] = np.argmax(same, axis=1)
    return first


class PlaneSummaries(NamedTuple):
    """Per-plane arrays of an SRM measurement (Eqn. 2), all ``(P,)``.

    Attributes:
      totals: Σ over θ of the counts (the lit counts the plane carries).
      peaks: the largest count over θ.
      peak_angles: the angle of the first largest count.
    """

    totals: jax.Array
    peaks: jax.Array
    peak_angles: jax.Array


@jax.jit
def plane_summaries(counts: jax.Array, angles: jax.Array) -> PlaneSummaries:
    """Per-plane totals, peaks and peak angles of ``(P, T)`` SRM counts (paper Eqn. 2).

    Pure and jit-compiled. Totals are summed in the counts' integer dtype (exact while
    ``T · N < 2³¹``).

    Args:
      counts: integer ``(P, T)`` numbers of lit samples of every plane at every angle.
      angles: ``(T,)`` angles of the counts.

    Returns:
      :class:`PlaneSummaries`.
    """
    counts = jnp.asarray(counts)
    at = jnp.argmax(counts, axis=1)
    return PlaneSummaries(jnp.sum(counts, axis=1), jnp.max(counts, axis=1),
                          jnp.asarray(angles)[at])


class Ranking(NamedTuple):
    """The top ``k`` items of a ranking, best first, and every item's score.

    Attributes:
      indices: int ``(k,)`` items (basis vectors or planes), best first (ties: lower index
        first).
      scores: ``(k,)`` their scores.
      all_scores: the score of every item.
    """

    indices: jax.Array
    scores: jax.Array
    all_scores: jax.Array


def _require(function: str, **arguments) -> None:
    """Raises unless every argument was passed: their ``None`` defaults only stand for "not
    passed" while the deprecated ``pairs=`` can stand in for ``planes``."""
    missing = [name for name, value in arguments.items() if value is None]
    if missing:
        raise TypeError(f"{function}() missing required argument(s): {', '.join(missing)}.")


def vector_shares(plane_totals: jax.Array, planes: jax.Array | None = None,
                  num_vectors: int | None = None, *, pairs=_validation.UNSET) -> jax.Array:
    """Each basis vector's share of the lit counts its planes carry: ``(m,)``, summing to 1.

    ``share_v = Σ_{planes p ∋ v} total_p / (2 Σ_p total_p)`` (every plane has two vectors), with
    ``total_p`` the Σ over θ of plane ``p``'s SRM counts (Eqn. 2). NaN when nothing is lit. In a
    ``±`` basis, ``+q`` and ``−q`` lie in the same spans, so their shares are (nearly) equal.
    Pure and jit-safe (``num_vectors`` static).

    Args:
      plane_totals: ``(P,)`` Σ over θ of every plane's counts (:func:`plane_summaries`).
      planes: int ``(P, 2)`` the planes' basis vectors (required).
      num_vectors: ``m``, the number of basis vectors (required).
      pairs: deprecated name of ``planes``.
    """
    planes = _validation.renamed("vector_shares", "pairs", pairs, "planes", planes, None)
    _require("vector_shares", planes=planes, num_vectors=num_vectors)
    planes = jnp.asarray(planes)
    dtype = working_dtype(jnp.asarray(plane_totals).astype(jnp.float32))
    totals = jnp.asarray(plane_totals).astype(dtype)
    per_vector = (jnp.zeros(int(num_vectors), dtype).at[planes[:, 0]].add(totals)
                  .at[planes[:, 1]].add(totals))
    whole = 2.0 * jnp.sum(totals)
    return per_vector / jnp.where(whole > 0, whole, jnp.nan)


@partial(jax.jit, static_argnames=("num_vectors", "k"))
def rank_basis_vectors(plane_totals: jax.Array, pairs: jax.Array, num_vectors: int,
                       k: int) -> Ranking:
    """The ``k`` basis vectors whose planes carry the largest share of the lit counts.

    The score of a vector is :func:`vector_shares` (the plane totals are the Σ over θ of the
    SRM counts, paper Eqn. 2); planted channels that the data cluster on carry most of them.
    Pure and jit-compiled; it needs only ``(P,)`` totals, never the ``(P, T)`` counts.

    Args:
      plane_totals: ``(P,)`` Σ over θ of every plane's counts (:func:`plane_summaries`).
      pairs: int ``(P, 2)`` the planes' basis vectors.
      num_vectors: ``m``, the number of basis vectors.
      k: how many to return (``1 ≤ k ≤ m``).

    Returns:
      :class:`Ranking` of basis vectors (NaN scores, when nothing is lit, rank last).
    """
    shares = vector_shares(plane_totals, pairs, num_vectors)
    top = jax.lax.top_k(jnp.nan_to_num(shares, nan=-1.0), int(k))[1]
    return Ranking(top, shares[top], shares)


@partial(jax.jit, static_argnames=("k",))
def rank_planes(plane_peaks: jax.Array, k: int) -> Ranking:
    """The ``k`` planes with the highest SRM peak (max over θ of Eqn. 2), best first.

    Pure and jit-compiled.

    Args:
      plane_peaks: ``(P,)`` every plane's peak count or peak SRM (:func:`plane_summaries`).
      k: how many to return (``1 ≤ k ≤ P``).

    Returns:
      :class:`Ranking` of planes (indices into the ``(P, 2)`` pairs).
    """
    peaks = jnp.asarray(plane_peaks)
    top = jax.lax.top_k(jnp.nan_to_num(peaks.astype(jnp.float32), nan=-1.0), int(k))[1]
    return Ranking(top, peaks[top], peaks)


def neuron_shares(shares: jax.Array, direction: jax.Array, num_neurons: int) -> jax.Array:
    """Each neuron's share: the sum of the shares of its vectors (``+q_k`` and ``−q_k``), ``(K,)``.

    Pure and jit-safe (``num_neurons`` static). ``direction`` is :attr:`SignedBasis.direction`.
    """
    shares = jnp.asarray(shares)
    return jnp.zeros(int(num_neurons), shares.dtype).at[jnp.asarray(direction)].add(shares)


def neuron_map(plane_values: jax.Array, planes: jax.Array | None = None,
               direction: jax.Array | None = None, num_neurons: int | None = None, *,
               pairs=_validation.UNSET) -> jax.Array:
    """The neuron × neuron image of a ``±`` basis: the mean of ``plane_values`` over the planes
    spanned by each pair of neurons, ``(K, K)`` and symmetric; NaN where no plane was measured
    (the diagonal, and pairs outside a plane subset).

    ``plane_values`` is any per-plane quantity, e.g. the mean SRM over θ (``totals / (T N)``).
    Pure and jit-safe (``num_neurons`` static).

    Args:
      plane_values: ``(P,)`` per-plane values.
      planes: int ``(P, 2)`` the planes' basis vectors (required).
      direction: int ``(m,)`` each vector's neuron slot (:attr:`SignedBasis.direction`;
        required).
      num_neurons: ``K`` (required).
      pairs: deprecated name of ``planes``.
    """
    planes = _validation.renamed("neuron_map", "pairs", pairs, "planes", planes, None)
    _require("neuron_map", planes=planes, direction=direction, num_neurons=num_neurons)
    planes = jnp.asarray(planes)
    direction = jnp.asarray(direction)
    values = jnp.asarray(plane_values).astype(jnp.float32)
    a, b = direction[planes[:, 0]], direction[planes[:, 1]]
    k = int(num_neurons)
    total = jnp.zeros((k, k), values.dtype).at[a, b].add(values).at[b, a].add(values)
    count = jnp.zeros((k, k), values.dtype).at[a, b].add(1.0).at[b, a].add(1.0)
    return total / jnp.where(count > 0, count, jnp.nan)
