"""The measurement stage: SRM of every sample about every plane, its reference and peaks."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from srm_jax.report.defaults import PEAK_CANDIDATES
from srm_jax.report.errors import ReportError
from srm_jax.report.planes import candidate_planes
from srm_jax.resonance import SRMResult, self_srm, spotlight_resonance
from srm_jax.summaries import SRMSummary, resonance_summary


@dataclasses.dataclass(frozen=True)
class Measurement:
    """SRM of a report's samples (Eqn. 2), with what the later stages read from it.

    Attributes:
      result: SRM over all samples: ``(P, T)`` counts, or summaries of every plane.
      reference: self-SRM of the basis on the same planes and angles (the same type).
      peaks: exact ``(C, T)`` counts of the candidate planes (``result`` itself with counts).
      candidates: ``(C,)`` indices of the candidate planes (every plane with counts).
      totals: ``(P,)`` lit counts of every plane (Σ over θ, float64) with summaries; ``None``
        with counts (their plane summaries hold them).
      summaries: whether ``result`` is an :class:`srm_jax.SRMSummary`.
      num_rows: rows read, counted or not.
      num_finite: rows of the analysis subset without NaN/Inf.
    """

    result: SRMResult | SRMSummary
    reference: SRMResult | SRMSummary
    peaks: SRMResult
    candidates: np.ndarray
    totals: np.ndarray | None
    summaries: bool
    num_rows: int
    num_finite: int

    @property
    def num_samples(self) -> int:
        """Samples counted in ``result`` (rows without NaN/Inf)."""
        return int(self.result.num_samples)


def measure_srm(x: jax.Array, basis: jax.Array, pairs: jax.Array, epsilon: float,
                summaries: bool, result: SRMResult | SRMSummary | None = None,
                ) -> tuple[SRMResult | SRMSummary, int]:
    """SRM of ``x`` about ``pairs`` (``result`` when the caller streamed it), through
    summaries or counts; raises when no row is finite.

    Returns ``(result, num_finite)``: rows with NaN/Inf stay in ``x`` (every analysis leaves
    them out), so the compiled computations depend only on the number of rows.
    """
    if result is None:
        result = (resonance_summary(x, basis, epsilon=epsilon, planes=pairs) if summaries else
                  spotlight_resonance(x, basis, epsilon=epsilon, planes=pairs))
    num_finite = int(np.sum(np.asarray(jnp.all(jnp.isfinite(x), axis=1))))
    if int(result.num_samples) == 0 or num_finite == 0:
        raise ReportError("every row of the activations contains NaN or Inf: nothing to measure")
    return result, num_finite


def measurement(x: jax.Array, basis: jax.Array, pairs: jax.Array, epsilon: float,
                result: SRMResult | SRMSummary, num_finite: int, *, num_rows: int | None = None,
                peaks: SRMResult | None = None) -> Measurement:
    """The reference and the candidates' exact curves of ``result`` (see :class:`Measurement`).

    With summaries, ``peaks`` (streamed by the caller; default measured on ``x``) must hold the
    candidate planes ``pairs[candidate_planes(result)]``.
    """
    summaries = isinstance(result, SRMSummary)
    if summaries:
        candidates = candidate_planes(result, PEAK_CANDIDATES)
        if peaks is None:
            peaks = spotlight_resonance(x, basis, epsilon=epsilon, planes=pairs[candidates])
        if not np.array_equal(np.asarray(peaks.planes), np.asarray(pairs[candidates])):
            raise ReportError(f"peaks must hold the {candidates.shape[0]} candidate planes, "
                              "pairs[candidate_planes(result)]")
        totals = np.asarray(result.lit_plane_totals, np.float64)
        reference = resonance_summary(basis, basis, epsilon=epsilon, planes=pairs)
    else:
        candidates = np.arange(int(pairs.shape[0]))
        peaks, totals = result, None
        reference = self_srm(basis, epsilon=epsilon, planes=pairs)
    return Measurement(
        result=result, reference=reference, peaks=peaks, candidates=candidates, totals=totals,
        summaries=summaries, num_rows=int(x.shape[0] if num_rows is None else num_rows),
        num_finite=num_finite)
