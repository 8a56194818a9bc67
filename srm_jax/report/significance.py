"""The significance stage: the alignment score, the rotation test, the null band, the verdict."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from srm_jax import basis_measures as _measures
from srm_jax.alignment import alignment_score
from srm_jax.report.defaults import (
    NULL_BAND_DRAWS,
    NULL_BAND_SAMPLES,
    SIGNIFICANCE_LEVEL,
    SUMMARY_NULL_BAND_SAMPLES,
)
from srm_jax.report.jsonable import to_float
from srm_jax.report.measurement import Measurement
from srm_jax.significance import (
    AlignmentTest,
    NullBand,
    alignment_test,
    isotropic_expectation,
    null_band,
    permutation_p_value,
)
from srm_jax.spectrum import EpsilonSweep

#: The measures of each rotation of the report's rotation test (:func:`srm_jax.alignment_test`'s
#: ``measure``; one function object, so that its compilation is cached across reports).
_ROTATED_STATISTICS = _measures.rotated_statistics


@dataclasses.dataclass(frozen=True)
class Significance:
    """Is the measurement aligned with the basis? (Sec. 3, App. B.1, App. F).

    Attributes:
      score: the alignment score (corr. of the mean SRM curve with the mean self-SRM curve).
      expectation: the isotropic expectation (Eqn. 18).
      band: the isotropic null band, scaled to the report's samples.
      band_samples: samples of each null-band draw.
      test: the rotation test (``alternative="greater"``), with the measures of every rotation.
      p_greater, p_less: its one-sided p-values for alignment and anti-alignment.
      verdict, p_value, sentence: :func:`verdict` of them.
    """

    score: float
    expectation: float
    band: NullBand
    band_samples: int
    test: AlignmentTest
    p_greater: float
    p_less: float
    verdict: str
    p_value: float
    sentence: str


def verdict(p_greater: float, p_less: float,
            level: float = SIGNIFICANCE_LEVEL) -> tuple[str, float, str]:
    """The report's verdict from the one-sided rotation-test p-values.

    Returns ``(kind, p, sentence)``: ``kind`` is ``"aligned"``, ``"anti-aligned"``,
    ``"no evidence"`` or ``"undefined"`` (NaN p-values: a flat curve), ``p = min(1, 2 min(
    p_greater, p_less))`` the two-sided p-value, and ``sentence`` the plain statement.
    """
    if not (math.isfinite(p_greater) and math.isfinite(p_less)):
        return "undefined", math.nan, "no evidence of alignment: the SRM curves are flat"
    p = min(1.0, 2.0 * min(p_greater, p_less))
    if p <= level:
        kind = "aligned" if p_greater <= p_less else "anti-aligned"
        return kind, p, f"{kind} with the basis, p = {p:.2g}"
    return "no evidence", p, f"no evidence of alignment (p = {p:.2g})"


def scaled_band(band: NullBand, num_samples: int) -> NullBand:
    """A null band simulated with ``N'`` samples, rescaled to ``N`` by ``√(N'/N)`` (the normal
    approximation: the spread of a fraction of ``N`` samples shrinks as ``1/√N``)."""
    if band.num_samples == num_samples:
        return band
    s = math.sqrt(band.num_samples / num_samples)
    e = band.expectation

    def shrink(q):
        return None if q is None else e + (q - e) * s

    return band.replace(
        std=None if band.std is None else band.std * s, quantiles=shrink(band.quantiles),
        curve_std=band.curve_std * s,
        curve_quantiles=shrink(band.curve_quantiles),
        curve_sup_quantiles=band.curve_sup_quantiles * s, num_samples=int(num_samples),
    )


def assess_alignment(keys: tuple[jax.Array, jax.Array], x: jax.Array, basis: jax.Array,
                     pairs: jax.Array, measured: Measurement, measure_args: dict, *,
                     epsilon: float, num_resamples: int, statistic: str) -> Significance:
    """The score, null band and rotation test of ``measured`` (``keys``: test, band).

    One rotation loop serves SRM and the field's measures (``measure_args``:
    :func:`srm_jax.basis_measures.direction_arguments`): each rotation's product ``x q`` serves
    both (a ``±e_i`` basis then reads its coordinates by a gather).
    """
    k_test, k_band = keys
    n = int(basis.shape[1])
    band_samples = min(int(x.shape[0]), SUMMARY_NULL_BAND_SAMPLES if measured.summaries
                       else NULL_BAND_SAMPLES)
    band = null_band(k_band, band_samples, basis, epsilon=epsilon, planes=pairs,
                     num_resamples=NULL_BAND_DRAWS, per_plane=not measured.summaries)
    test = alignment_test(
        k_test, x, basis, epsilon=epsilon, num_resamples=int(num_resamples),
        statistic=statistic, planes=pairs, measure=_ROTATED_STATISTICS,
        measure_args=measure_args)
    p_greater = to_float(test.p_value)
    p_less = to_float(permutation_p_value(test.score, test.null_scores, "less"))
    kind, p_value, sentence = verdict(p_greater, p_less)
    return Significance(
        score=to_float(alignment_score(measured.result, measured.reference)),
        expectation=to_float(isotropic_expectation(n, epsilon)),
        band=scaled_band(band, measured.num_samples), band_samples=band_samples, test=test,
        p_greater=p_greater, p_less=p_less, verdict=kind, p_value=p_value, sentence=sentence)


def flat_verdict(significance: Significance, sweep: EpsilonSweep, mean_curve,
                 epsilon: float) -> Significance:
    """``significance`` with no verdict of alignment where the score is undefined (a flat
    curve: no alignment can be read at this ε), saying why and the ε sweep's best."""
    if math.isfinite(significance.score):
        return significance
    why = (f"the SRM curve is flat at ε = {epsilon:g}" if float(np.max(mean_curve))
           else f"no sample falls inside a spotlight at ε = {epsilon:g}")
    best = to_float(sweep.best_epsilon)
    hint = f" (the ε sweep's best is {best:g})" if math.isfinite(best) else ""
    return dataclasses.replace(significance, verdict="no evidence",
                               sentence=f"no evidence of alignment: {why}{hint}")
