"""The neurons stage: which basis vectors, neurons and planes carry the SRM (per-plane arrays)."""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from srm_jax import neurons as _neurons
from srm_jax.neurons import PlaneSummaries, SignedBasis
from srm_jax.report.jsonable import to_float
from srm_jax.report.measurement import Measurement


@dataclasses.dataclass(frozen=True)
class NeuronRanking:
    """Per-plane arrays of a measurement and the rankings of ``report.json`` built from them.

    Attributes:
      plane_summaries: totals of every plane; peaks and peak angles of the candidate planes.
      top_exact: whether the candidates' top peaks are provably the best of every plane.
      tables: ``top_basis_vectors``, ``top_planes``, ``top_neurons`` and the basis' kind.
    """

    plane_summaries: PlaneSummaries
    top_exact: bool
    tables: dict


def rank_neurons(neurons: SignedBasis, measured: Measurement, pairs, top: int) -> NeuronRanking:
    """Ranks the basis vectors by share of the lit counts and the candidate planes by SRM peak.

    A plane's peak is at most its total: the candidates' top peaks are the best of every plane
    when they reach the largest total left out (``top_exact``).
    """
    peak_arrays = _neurons.plane_summaries(measured.peaks.counts, measured.peaks.angles)
    totals = (np.asarray(peak_arrays.totals) if measured.totals is None else measured.totals)
    candidates, num_planes = measured.candidates, int(pairs.shape[0])
    rest = np.delete(totals, candidates) if candidates.shape[0] < num_planes else np.zeros(0)
    bound = float(np.max(rest)) if rest.size else -math.inf
    candidate_peaks = np.sort(np.asarray(peak_arrays.peaks, np.float64))[::-1]
    top_exact = bool(candidate_peaks[min(top, candidate_peaks.size) - 1] >= bound)
    summaries = PlaneSummaries(jnp.asarray(totals), peak_arrays.peaks, peak_arrays.peak_angles)
    tables = neuron_tables(neurons, summaries, pairs, measured.num_samples, top,
                           peak_pairs=pairs[candidates])
    return NeuronRanking(summaries, top_exact, tables)


def tie_ranks(values, listed) -> list[tuple[int, bool]]:
    """The competition rank (1 + the number of larger values) of each ``listed`` index of
    ``values`` and whether it is tied (another value equal to it, listed or not): equal scores
    share a rank and are reported as ties, never as an order. NaN ranks last, untied."""
    values = np.nan_to_num(np.asarray(values, np.float64), nan=-np.inf)
    out = []
    for i in np.asarray(listed).reshape(-1):
        v = values[int(i)]
        out.append((int(np.sum(values > v)) + 1,
                    bool(np.isfinite(v) and np.sum(values == v) > 1)))
    return out


def _neuron_label(neurons: SignedBasis, vector: int) -> str:
    """``+3`` / ``−3`` for vector ``±q_3`` of a ``±`` basis; ``#v`` for any other basis."""
    if not neurons.orthonormal:
        return f"#{vector}"
    neuron = int(neurons.neuron[neurons.direction[vector]])
    return f"{'+' if neurons.sign[vector] > 0 else '−'}{neuron}"


def _top_vectors(neurons: SignedBasis, vectors: _neurons.Ranking) -> list[dict]:
    """``top_basis_vectors``: each ranked vector, its neuron and sign (a ``±`` basis), share."""
    rows = []
    indices = np.asarray(vectors.indices)
    ranks = tie_ranks(vectors.all_scores, indices)
    for v, score, (rank, tied) in zip(indices, np.asarray(vectors.scores), ranks, strict=True):
        k = int(neurons.direction[v])
        rows.append({
            "index": int(v),
            "neuron": int(neurons.neuron[k]) if neurons.orthonormal else None,
            "sign": int(neurons.sign[v]) if neurons.orthonormal else None,
            "score": to_float(score),
            "rank": rank,
            "tied": tied,
        })
    return rows


def neuron_tables(neurons: SignedBasis, planes: PlaneSummaries, pairs, num_samples: int,
                  top: int, *, peak_pairs=None) -> dict:
    """``top_basis_vectors``, ``top_planes`` and ``top_neurons`` of ``report.json``.

    Ranked by :func:`srm_jax.neurons.rank_basis_vectors` (share of the lit counts) and
    :func:`srm_jax.neurons.rank_planes` (SRM peak) from per-plane arrays only: ``planes.totals``
    of every plane in ``pairs``; ``planes.peaks`` and ``peak_angles`` of the planes in
    ``peak_pairs`` (default ``pairs``; the candidate planes of a report of summaries).
    """
    pairs = np.asarray(pairs)
    peak_pairs = pairs if peak_pairs is None else np.asarray(peak_pairs)
    m = int(neurons.direction.shape[0])
    vectors = _neurons.rank_basis_vectors(planes.totals, pairs, m, min(int(top), m))
    best = _neurons.rank_planes(planes.peaks, min(int(top), peak_pairs.shape[0]))
    best_indices = np.asarray(best.indices)
    top_planes = [
        {"plane": [int(a) for a in peak_pairs[p]],
         "neurons": ([_neuron_label(neurons, int(a)) for a in peak_pairs[p]]),
         "peak_srm": to_float(np.float32(peak) / max(int(num_samples), 1)),
         "peak_angle": to_float(np.asarray(planes.peak_angles)[p]),
         "rank": rank, "tied": tied}
        for p, peak, (rank, tied) in zip(best_indices, np.asarray(best.scores),
                                         tie_ranks(planes.peaks, best_indices), strict=True)
    ]
    shares = np.asarray(_neurons.neuron_shares(vectors.all_scores, neurons.direction,
                                               neurons.num_directions))
    order = np.argsort(-np.nan_to_num(shares, nan=-1.0), kind="stable")[:int(top)]
    top_neurons = [{"neuron": int(neurons.neuron[k]), "share": to_float(shares[k]),
                    "rank": rank, "tied": tied}
                   for k, (rank, tied) in zip(order, tie_ranks(shares, order), strict=True)]
    return {"top_basis_vectors": _top_vectors(neurons, vectors), "top_planes": top_planes,
            "top_neurons": top_neurons if neurons.orthonormal else None,
            "basis_is_signed_orthonormal": bool(neurons.orthonormal),
            "basis_is_standard": bool(neurons.standard)}
