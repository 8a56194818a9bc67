"""The significance stage: the alignment score, the rotation test, the null band, the verdict."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from srm_jax import _validation
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
    min_p_value,
    null_band,
    permutation_p_value,
)
from srm_jax.spectrum import EpsilonSweep

#: The measures of each rotation of the report's rotation test (:func:`srm_jax.alignment_test`'s
#: ``measure``; one function object, so that its compilation is cached across reports).
ROTATED_STATISTICS = _measures.rotated_statistics


@dataclasses.dataclass(frozen=True)
class Significance:
    """Is the measurement aligned with the basis? (Sec. 3, App. B.1, App. F).

    Attributes:
      score: the alignment score (corr. of the mean SRM curve with the mean self-SRM curve).
      expectation: the isotropic expectation (Eqn. 18).
      band: the isotropic null band, scaled to the report's samples.
      band_samples: samples of each null-band draw.
      test: the rotation test (``alternative="greater"``) at every ε of ``test_epsilons``,
        with the measures of every rotation.
      p_greater, p_less: its one-sided family-wise p-values for alignment and anti-alignment
        (min-p over ``test_epsilons``; the plain p-values for one ε).
      verdict, p_value, sentence: :func:`verdict` of them.
      test_epsilons: the ε tested (the sweep, or one ε).
      headline_epsilon: the ε with the strongest evidence (:func:`headline_index`).
      epsilon_tests: per ε of ``test_epsilons``: the statistic, its two-sided and one-sided
        p-values and the share of samples lit (``report.json``'s ``epsilon_tests``).
      headline_test: the test at ``headline_epsilon`` alone (a scalar :class:`AlignmentTest`).
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
    test_epsilons: tuple[float, ...] = ()
    headline_epsilon: float = math.nan
    epsilon_tests: tuple[dict, ...] = ()
    headline_test: AlignmentTest | None = None


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
                     epsilon: float, num_resamples: int, statistic: str,
                     test_epsilons: tuple[float, ...] | None = None,
                     rotations: jax.Array | None = None,
                     subset: np.ndarray | None = None) -> Significance:
    """The score and null band of ``measured`` (at ``epsilon``) and the rotation test at every
    ε of ``test_epsilons`` (default ``(epsilon,)``; ``keys``: test, band).

    One rotation loop serves SRM at every tested ε and the field's measures (``measure_args``:
    :func:`srm_jax.basis_measures.direction_arguments`): each rotation's product ``x q`` serves
    all of them (math §6.2). Several ε are one family: the verdict is the two-sided min-p
    family-wise p-value (:func:`sweep_evidence`). ``rotations``: the test's rotations drawn
    beforehand (:func:`rotation_test`). ``subset``: row indices also tested on their own, on
    the same rotations (the test's ``subset_test``; the bulk, :mod:`srm_jax.report.bulk`).
    """
    k_test, k_band = keys
    n = int(basis.shape[1])
    band_samples = min(int(x.shape[0]), SUMMARY_NULL_BAND_SAMPLES if measured.summaries
                       else NULL_BAND_SAMPLES)
    if measured.summaries:  # the band of the mean curve: the same for every layer of a width
        band = mean_curve_band(k_band, band_samples, basis, pairs, epsilon)
    else:
        band = null_band(k_band, band_samples, basis, epsilon=epsilon, planes=pairs,
                         num_resamples=NULL_BAND_DRAWS, per_plane=True)
    epsilons = tuple(float(e) for e in (test_epsilons or (epsilon,)))
    test = rotation_test(k_test, x, basis, pairs, measure_args, epsilons,
                         num_resamples=num_resamples, statistic=statistic, rotations=rotations,
                         subset=subset)
    evidence = sweep_evidence(test, epsilons)
    return Significance(
        score=to_float(alignment_score(measured.result, measured.reference)),
        expectation=to_float(isotropic_expectation(n, epsilon)),
        band=scaled_band(band, measured.num_samples), band_samples=band_samples, test=test,
        **evidence)


_BANDS: dict = {}


def mean_curve_band(key: jax.Array, num_samples: int, basis, pairs, epsilon: float) -> NullBand:
    """The isotropic null band of the mean curve (:func:`srm_jax.null_band`, ``per_plane=False``,
    :data:`NULL_BAND_DRAWS` draws), kept for the next call with the same inputs: it depends on
    the width, planes, ε and sample count, not on the data, so every layer of one width in a
    multi-layer report shares it (one entry is kept; it holds ``(T,)`` curves only)."""
    def draw() -> NullBand:
        return null_band(key, num_samples, basis, epsilon=epsilon, planes=pairs,
                         num_resamples=NULL_BAND_DRAWS, per_plane=False)

    if not all(_validation.is_concrete(v) for v in (key, basis, pairs, epsilon)):
        return draw()
    name = (tuple(np.asarray(jax.random.key_data(key)).ravel().tolist()), int(num_samples),
            _validation.array_key(basis), _validation.array_key(pairs),
            float(epsilon))
    return _validation.kept(_BANDS, name, draw, 1)


def rotation_test(key: jax.Array, x: jax.Array, basis: jax.Array, pairs: jax.Array,
                  measure_args: dict, epsilons: tuple[float, ...], *, num_resamples: int,
                  statistic: str, rotations: jax.Array | None = None,
                  subset: np.ndarray | None = None) -> AlignmentTest:
    """The report's rotation test of ``x`` at every ε of ``epsilons`` (one family, math §6.2;
    :func:`srm_jax.alignment_test`, ``alternative="greater"``), the field's measures taken on
    each rotation's product (:data:`ROTATED_STATISTICS`). The same ``key`` draws the same
    rotations for any rows: the layer, its bulk and its uncentred rows share them.
    ``rotations``: those rotations drawn once beforehand (``haar_rotations(key, n, K)``:
    the same rotations up to float32 rounding, without a QR per rotation per test); default
    drawn in the loop. ``subset``: row indices also tested on their own in the same loop (the
    result's ``subset_test``, :func:`srm_jax.alignment_test`)."""
    x = jnp.asarray(x)
    return alignment_test(
        key, x, basis, epsilon=jnp.asarray(epsilons, x.dtype), num_resamples=int(num_resamples),
        statistic=statistic, planes=pairs, measure=ROTATED_STATISTICS, measure_args=measure_args,
        rotations=rotations, subset=subset)


def headline_index(p_values: np.ndarray, statistics: np.ndarray, null: np.ndarray,
                   lit_shares: np.ndarray | None = None) -> int:
    """The ε with the strongest evidence: the least p-value (NaN: none). Ties (several ε at the
    least attainable p, common on real layers) go to the ε with the largest share of samples lit
    (the most rows behind the answer), then the largest standardised statistic
    ``|s − mean(null)| / sd(null)``, then the larger ε."""
    p = np.where(np.isfinite(p_values), p_values, np.inf)
    lit = (np.zeros(p.shape) if lit_shares is None
           else np.nan_to_num(np.asarray(lit_shares, np.float64), nan=-1.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.abs(statistics - np.nanmean(null, axis=0)) / np.nanstd(null, axis=0)
    z = np.where(np.isfinite(z), z, -np.inf)
    # lexsort: the last key is the first criterion.
    order = np.lexsort((-np.arange(p.shape[0]), -z, -lit, p))
    return int(order[0])


def sweep_evidence(test: AlignmentTest, epsilons: tuple[float, ...]) -> dict:
    """The verdict of a rotation test at ``E`` thresholds (math §6.2): per-ε one- and two-sided
    p-values, the family-wise (min-p, Westfall & Young 1993) p-values for alignment and
    anti-alignment, the verdict from them (:func:`verdict`) and the ε with the strongest
    evidence (:func:`headline_index`). One ε is a family of one: its plain p-values."""
    score = np.asarray(test.score).reshape(-1)
    null = np.asarray(test.null_scores, np.float64).reshape(-1, score.shape[0])
    p_greater = np.asarray(test.p_value).reshape(-1)
    p_less = np.asarray(permutation_p_value(test.score, test.null_scores, "less")).reshape(-1)
    if len(epsilons) > 1:
        fw_greater = to_float(test.family_wise_p_value)
        fw_less = to_float(min_p_value(test.score, test.null_scores, "less"))
    else:
        fw_greater, fw_less = to_float(p_greater[0]), to_float(p_less[0])
    kind, p_value, sentence = verdict(fw_greater, fw_less)
    two_sided = np.minimum(1, 2 * np.minimum(p_greater, p_less)).astype(p_greater.dtype)
    chosen = {"aligned": p_greater, "anti-aligned": p_less}.get(kind, two_sided)
    signed = -score if kind == "anti-aligned" else score
    lit = (np.full(score.shape, np.nan) if test.lit_share is None
           else np.asarray(test.lit_share).reshape(-1))
    best = headline_index(np.asarray(chosen, np.float64), np.asarray(signed, np.float64),
                          -null if kind == "anti-aligned" else null, lit)
    rows = tuple(
        {"epsilon": e, "statistic": to_float(score[i]),
         "p_value": to_float(two_sided[i]), "p_value_aligned": to_float(p_greater[i]),
         "p_value_anti_aligned": to_float(p_less[i]), "lit_share": to_float(lit[i])}
        for i, e in enumerate(epsilons))
    if len(epsilons) > 1 and math.isfinite(p_value):
        where = f"at ε = {epsilons[best]:g}" if kind != "no evidence" else (
            f"at any ε of {epsilons[0]:g}–{epsilons[-1]:g}")
        sentence = (f"{kind} with the basis {where}, family-wise p = {p_value:.2g} over "
                    f"{len(epsilons)} ε" if kind != "no evidence" else
                    f"no evidence of alignment {where} (family-wise p = {p_value:.2g})")
    headline = AlignmentTest(score=test.score.reshape(-1)[best],
                             null_scores=test.null_scores.reshape(-1, score.shape[0])[:, best],
                             p_value=test.p_value.reshape(-1)[best],
                             alternative=test.alternative, statistic=test.statistic)
    return {"p_greater": fw_greater, "p_less": fw_less, "verdict": kind, "p_value": p_value,
            "sentence": sentence, "test_epsilons": tuple(epsilons),
            "headline_epsilon": float(epsilons[best]), "epsilon_tests": rows,
            "headline_test": headline}


def flat_verdict(significance: Significance, sweep: EpsilonSweep, mean_curve,
                 epsilon: float) -> Significance:
    """``significance`` with no verdict of alignment where the score is undefined (a flat
    curve: no alignment can be read at this ε), saying why and the ε sweep's best. A test of
    several ε reads its verdict from every ε and is returned unchanged."""
    if len(significance.test_epsilons) > 1 or math.isfinite(significance.score):
        return significance
    why = (f"the SRM curve is flat at ε = {epsilon:g}" if float(np.max(mean_curve))
           else f"no sample falls inside a spotlight at ε = {epsilon:g}")
    best = to_float(sweep.best_epsilon)
    hint = f" (the ε sweep's best is {best:g})" if math.isfinite(best) else ""
    return dataclasses.replace(significance, verdict="no evidence",
                               sentence=f"no evidence of alignment: {why}{hint}")
