"""Which planes a report measures: pairs of basis vectors, all or a random subset, and how."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from srm_jax import _validation
from srm_jax.planes import PLANE_KINDS, plane_pairs
from srm_jax.report.defaults import DEFAULT_SAMPLED_PLANES, PEAK_CANDIDATES
from srm_jax.report.errors import ReportError
from srm_jax.resonance import plan_measurement
from srm_jax.summaries import SRMSummary


def subset_indices(total: int, size: int, key: jax.Array) -> np.ndarray:
    """``size`` distinct indices of ``range(total)``, sorted, drawn from ``key`` (host NumPy:
    the report's subsets are chosen before anything is compiled)."""
    seed = int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))
    return np.sort(np.random.default_rng(seed).choice(int(total), int(size), replace=False))


def _num_pairs(m: int, kind: str) -> int:
    return m * (m - 1) // (2 if kind == "comb" else 1)


def _plane_pairs(m: int, kind: str, max_planes: int | None, key) -> np.ndarray:
    """The ``kind`` pairs of ``m`` vectors in ``itertools`` order, or a random subset of
    ``max_planes`` of them (from ``key``), decoded from pair indices without listing every pair
    (a wide layer's ``±e_i`` basis has ``m = 6144`` and 19 million pairs)."""
    total = _num_pairs(m, kind)
    if max_planes is None or max_planes >= total:
        return np.asarray(plane_pairs(m, kind))
    k = subset_indices(total, max_planes, key)
    if kind == "perm":
        alpha, beta = k // (m - 1), k % (m - 1)
        return np.stack([alpha, beta + (beta >= alpha)], axis=1).astype(np.int32)
    # comb: row α starts at index α(2m − α − 1)/2 and holds the pairs (α, α+1 .. m−1).
    def start(a):
        return a * (2 * m - a - 1) // 2

    alpha = np.floor(((2 * m - 1) - np.sqrt((2.0 * m - 1) ** 2 - 8.0 * k)) / 2).astype(np.int64)
    alpha = np.clip(alpha, 0, m - 2)
    alpha -= start(alpha) > k  # float rounding: step back or forward one row
    alpha += start(alpha + 1) <= k
    beta = k - start(alpha) + alpha + 1
    return np.stack([alpha, beta], axis=1).astype(np.int32)


def report_planes(
    basis: jax.Array, kind: str = "comb", *, max_planes: int | None = None,
    key: jax.Array | None = None,
) -> jax.Array:
    """The planes a report measures: ``kind`` pairs of ``basis`` (a random subset of
    ``max_planes`` of them, drawn from ``key``, when there are more) that span a plane (math §2.2).
    """
    if kind not in PLANE_KINDS:
        raise ReportError(f"planes= must be one of {PLANE_KINDS}, got {kind!r}")
    if max_planes is not None and max_planes < 1:
        raise ReportError(f"max_planes= must be >= 1, got {max_planes}")
    key = jax.random.key(0) if key is None else key
    pairs = _plane_pairs(int(np.shape(basis)[0]), kind, max_planes, key)
    # The engine's own test of a spanning pair (math §2.2); the pairs are drawn by index above
    # because listing every pair of a wide basis (m = 6,144: 19 million) is too much.
    pairs = jnp.asarray(pairs[_validation.spans_plane(basis, pairs)], jnp.int32)
    if pairs.shape[0] == 0:
        raise ReportError("no pair of basis vectors spans a plane: the basis has no planes")
    return pairs


def uses_summaries(basis, pairs, epsilon: float) -> bool:
    """Whether a report of ``pairs`` is measured through summaries (:class:`srm_jax.SRMSummary`)
    rather than ``(P, T)`` counts: where ``method="auto"`` takes the sample-major kernel (a wide
    ``±`` orthonormal basis: the standard basis, an orthoplex, a rotated one, a file basis that
    is one; :mod:`srm_jax.sample_major`)."""
    plan, _, _ = plan_measurement(None, jnp.asarray(basis), epsilon=float(epsilon),
                                  planes=jnp.asarray(pairs, jnp.int32))
    return plan.sample_major is not None


def choose_planes(basis, kind: str, epsilon: float, *, max_planes: int | None = None,
                  key: jax.Array | None = None) -> tuple[jax.Array, int | None, bool]:
    """The planes of a report from the command line, each pair list built and planned once.

    ``max_planes`` given: a random subset of that many (:func:`report_planes`). By default
    every plane where the report measures them through summaries (:func:`uses_summaries`) or
    where the basis has at most :data:`DEFAULT_SAMPLED_PLANES` pairs; otherwise a random subset
    of that many.

    Returns:
      ``(pairs, max_planes, summaries)``: the pairs, the ``max_planes`` used (``None``: every
      plane) and whether they are measured through summaries.
    """
    pairs = report_planes(basis, kind, max_planes=max_planes, key=key)
    summaries = uses_summaries(basis, pairs, epsilon)
    total = _num_pairs(int(np.shape(basis)[0]), kind)
    if max_planes is None and not summaries and total > DEFAULT_SAMPLED_PLANES:
        max_planes = DEFAULT_SAMPLED_PLANES
        pairs = report_planes(basis, kind, max_planes=max_planes, key=key)
        summaries = uses_summaries(basis, pairs, epsilon)
    return pairs, max_planes, summaries


def candidate_planes(summary: SRMSummary, k: int = PEAK_CANDIDATES) -> np.ndarray:
    """Indices of the ``k`` planes with the most lit counts (Σ over θ, Eqn. 2), in plane order
    (so that ties in peak rank as over every plane: lower index first).

    A plane's peak count is at most its total, so the planes whose peaks rank highest are found
    among those with the largest totals: :func:`srm_jax.report.srm_report` measures the exact
    curves of these candidates and says whether its ``top_planes`` are provably the best by peak
    (``top_planes_exact``).
    """
    totals = np.asarray(summary.lit_plane_totals, np.float64)
    k = int(min(int(k), totals.shape[0]))
    if k < 1:
        raise ReportError("there are no planes to rank")
    best = np.argpartition(-totals, k - 1)[:k]  # O(P); a full sort of 18.9 M totals is not
    return np.sort(best).astype(np.int64)
