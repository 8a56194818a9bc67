"""``report.json`` of one layer: the stages' numbers as plain Python values."""

from __future__ import annotations

from typing import Any

import numpy as np

from srm_jax.report.classes import ClassSelectivity
from srm_jax.report.defaults import SIGNIFICANCE_LEVEL
from srm_jax.report.jsonable import to_float, to_floats
from srm_jax.report.measurement import Measurement
from srm_jax.report.neurons import NeuronRanking
from srm_jax.report.significance import Significance
from srm_jax.spectrum import EpsilonSweep


def _sweep_summary(sweep: EpsilonSweep, sweep_pairs) -> dict:
    return {
        "num_planes": int(sweep_pairs.shape[0]),
        "epsilons": to_floats(sweep.epsilons),
        "alignment_scores": to_floats(sweep.scores),
    }


def report_summary(measured: Measurement, significance: Significance, sweep: EpsilonSweep,
                   sweep_pairs, ranking: NeuronRanking, classes: ClassSelectivity | None,
                   measures: dict, *, shape: tuple[int, int, int], epsilon: float,
                   statistic: str, num_resamples: int, top_pair, top: int) -> dict[str, Any]:
    """The JSON-able dict of ``report.json`` (``shape``: ``(n, m, P)``)."""
    n, m, num_planes = shape
    s, result = significance, measured.result
    return {
        "verdict": s.verdict,
        "verdict_sentence": s.sentence,
        "num_rows": measured.num_rows,
        "num_samples": measured.num_samples,
        "num_excluded": measured.num_rows - measured.num_samples,
        "num_test_samples": measured.num_finite,
        "n": n,
        "m": m,
        "num_planes": num_planes,
        "measurement": "summaries" if measured.summaries else "counts",
        "peak_candidates": int(measured.candidates.shape[0]),
        "top_planes_exact": ranking.top_exact,
        "num_angles": int(result.angles.shape[0]),
        "epsilon": epsilon,
        "alignment_score": s.score,
        "p_value": s.p_value,
        "p_value_aligned": s.p_greater,
        "p_value_anti_aligned": s.p_less,
        "significance_level": SIGNIFICANCE_LEVEL,
        "statistic": statistic,
        "test_score": to_float(s.headline_test.score),
        "num_rotations": int(num_resamples),
        "min_p_value": min(1.0, 2.0 / (int(num_resamples) + 1)),
        "isotropic_expectation": s.expectation,
        "mean_srm": to_float(np.mean(np.asarray(result.mean_curve))),
        "max_srm": to_float(np.max(np.asarray(measured.peaks.values))),
        "best_epsilon": to_float(sweep.best_epsilon),
        "epsilon_sweep": _sweep_summary(sweep, sweep_pairs),
        "top_plane": [int(a) for a in np.asarray(top_pair)],
        "null_band_samples": s.band_samples,
        "class_selectivity": None if classes is None else classes.table,
        "top": top,
        **ranking.tables,
        "measures": measures,
    }
