"""The measures stage: the field's measures beside SRM against the same rotations."""

from __future__ import annotations

import jax
import numpy as np

from srm_jax import basis_measures as _measures
from srm_jax.neurons import SignedBasis
from srm_jax.report.jsonable import to_float, to_floats
from srm_jax.report.significance import verdict
from srm_jax.significance import AlignmentTest

#: How each measure is named in report.md.
MEASURE_NAMES = {
    "kurtosis": "kurtosis across dimensions (mean over tokens; Gaussian: 3)",
    "outlier_share": r"largest share of tokens with \|c\| ≥ 6 in one dimension (absolute)",
    "outlier_share_relative": r"largest share of tokens with \|c\| ≥ 6 × RMS of the others "
                              "(scale-free)",
    "proximity": r"median over samples of max \|cos\| with a basis vector",
}
#: The measures whose verdicts are compared with SRM's (the scale-free outlier form).
VERDICT_MEASURES = ("kurtosis", "outlier_share_relative", "proximity")
#: Each measure's evidence, by the verdict of its rotation test.
_EVIDENCE = {"aligned": "higher than rotations", "anti-aligned": "lower than rotations"}
_WORDS = {"kurtosis": "kurtosis", "outlier_share_relative": "outlier share (scale-free)",
          "proximity": "proximity"}


def measures_against_rotations(x: jax.Array, measure_args: dict,
                               test: AlignmentTest) -> _measures.MeasuresTest:
    """The field's measures of ``x`` against the rotations of the SRM rotation ``test``
    (measured in the same loop, :func:`srm_jax.basis_measures.measures_test`)."""
    return _measures.measures_test(
        _measures.measure_directions(x, measure_args), test.null_measured, 1)


def _measure_row(test: _measures.MeasuresTest, values, i: int) -> dict:
    """One measure's value, rotation null, p-values and evidence."""
    null = np.asarray(test.null)[:, i]
    observed = np.asarray(test.observed)[i]
    p_greater, p_less = to_float(test.p_greater[i]), to_float(test.p_less[i])
    kind, p_value, _ = verdict(p_greater, p_less)
    finite = null[np.isfinite(null)]
    quantiles = np.quantile(finite, [0.025, 0.5, 0.975]) if finite.size else np.full(3, np.nan)
    return {
        "value": to_float(observed if values is None else values[i]),
        "value_test_samples": to_float(observed),
        "null_quantiles": to_floats(quantiles.astype(np.float32)),
        "null": to_floats(null),
        "p_value": p_value,
        "p_value_greater": p_greater,
        "p_value_less": p_less,
        "evidence": _EVIDENCE.get(kind, "no evidence"),
    }


def _outlier_dimensions(measures: _measures.BasisMeasures, neurons: SignedBasis,
                        top: int) -> dict:
    """The outlier dimensions, absolute and scale-free, by share of tokens (at most ``top``)."""
    dims = {}
    for name, shares in (("outlier_dimensions", measures.outlier_shares),
                         ("outlier_dimensions_relative", measures.relative_outlier_shares)):
        shares = np.asarray(shares)
        hits = np.nonzero(np.asarray(_measures.outlier_dimensions(shares)))[0]
        hits = hits[np.argsort(-shares[hits], kind="stable")][:int(top)]
        dims[name] = [{"dimension": int(neurons.neuron[k]), "share": to_float(shares[k])}
                      for k in hits]
    return dims


def _agreement(rows: dict, srm_kind: str) -> tuple[str, bool]:
    """Whether the verdict measures agree with SRM's verdict ``srm_kind``, in one sentence."""
    wanted = _EVIDENCE.get(srm_kind, "no evidence")
    agree = [n for n in VERDICT_MEASURES if rows[n]["evidence"] == wanted]
    differ = [n for n in VERDICT_MEASURES if n not in agree]
    if not differ:
        return f"All three measures ({', '.join(_WORDS[n] for n in agree)}) agree with SRM.", True
    reasons = "; ".join(f"{_WORDS[n]}: {rows[n]['evidence']}" for n in differ) + "."
    if not agree:
        return "None of the three measures agrees with SRM: " + reasons, False
    return (f"{', '.join(_WORDS[n] for n in agree).capitalize()} agree"
            f"{'s' if len(agree) == 1 else ''} with SRM; " + reasons), False


def _coordinates(neurons: SignedBasis) -> str:
    """Which coordinates the measures are taken on, in words."""
    if neurons.standard:
        return "the standard basis' coordinates"
    if neurons.orthonormal:
        return f"the coordinates in the basis' {neurons.num_directions} distinct directions"
    return f"the {neurons.num_directions} projections d·b̂_k on the basis vectors"


def measures_table(test: _measures.MeasuresTest, streamed: _measures.BasisMeasures | None,
                   neurons: SignedBasis, srm_kind: str, top: int) -> dict:
    """``measures`` of ``report.json``: each measure's value, its rotation null and p-values,
    the outlier dimensions, and whether the measures agree with SRM's verdict."""
    values = (None if streamed is None else
              np.asarray(_measures.measure_statistics(streamed)))
    rows = {name: _measure_row(test, values, i) for i, name in enumerate(_measures.MEASURES)}
    source = test.measures if streamed is None else streamed
    sentence, agrees = _agreement(rows, srm_kind)
    return {
        **rows,
        **_outlier_dimensions(source, neurons, top),
        "coordinates": _coordinates(neurons),
        "num_samples": int(source.num_samples),
        "num_test_samples": int(test.measures.num_samples),
        "outlier_threshold": _measures.OUTLIER_THRESHOLD,
        "relative_outlier_threshold": _measures.RELATIVE_OUTLIER_THRESHOLD,
        "outlier_dimension_share": _measures.OUTLIER_SHARE,
        "proximity_bins": _measures.PROXIMITY_BINS,
        "verdict_measures": list(VERDICT_MEASURES),
        "rotations_per_batch": int(test.rotations_per_batch),
        "agreement": sentence,
        "agrees_with_srm": agrees,
    }
