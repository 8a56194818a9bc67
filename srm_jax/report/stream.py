"""Streaming one layer from its file: SRM of every row, the measures' sums and the subset."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator

import jax
import numpy as np
from tqdm import tqdm

from srm_jax import basis_measures as _measures
from srm_jax.neurons import SignedBasis
from srm_jax.report.errors import ReportError
from srm_jax.report.planes import candidate_planes
from srm_jax.report.reading import Samples
from srm_jax.resonance import SRMResult
from srm_jax.streaming import accumulate_srm, accumulate_summary
from srm_jax.summaries import SRMSummary

#: The measures' sums of one batch (one function object: compiled once per batch shape).
_BATCH_SUMS = jax.jit(_measures.activation_sums)


@dataclasses.dataclass(frozen=True)
class StreamedLayer:
    """What one pass (two with summaries) over a layer's rows gives the report.

    Attributes:
      result: SRM of every row (``(P, T)`` counts, or summaries of every plane).
      sums: the field's measures' sums of every row on the basis' directions.
      subset: the analysis subset, ``(S, n)`` float32 rows in file order.
      peaks: with summaries, the exact SRM of the candidate planes; ``None`` with counts.
    """

    result: SRMResult | SRMSummary
    sums: _measures.MeasureSums
    subset: np.ndarray
    peaks: SRMResult | None


class _Tap:
    """The batches of one pass, handed on to SRM; on the way, the rows of the analysis subset
    (sorted indices ``chosen``) are kept and the measures' sums added up."""

    def __init__(self, samples: Samples, chosen: np.ndarray, neurons: SignedBasis, basis,
                 bar: tqdm):
        self.samples, self.chosen, self.bar = samples, chosen, bar
        self.directions = neurons.directions(basis)
        self.sums = _measures.zero_sums(neurons.num_directions)
        self.picked: list[np.ndarray] = []

    def __iter__(self) -> Iterator[np.ndarray]:
        start = 0
        for batch in self.samples.batches():
            stop = start + batch.shape[0]
            lo, hi = np.searchsorted(self.chosen, [start, stop])
            self.picked.append(batch[self.chosen[lo:hi] - start])
            start = stop
            pad = self.samples.batch_samples - batch.shape[0]  # one compiled shape
            padded = (np.pad(batch, ((0, pad), (0, 0)), constant_values=np.nan) if pad > 0
                      else batch)
            self.sums = _measures.combine_sums(self.sums, _BATCH_SUMS(padded, self.directions))
            self.bar.update(batch.shape[0])
            yield batch


def _bar(samples: Samples, what: str) -> tqdm:
    """A progress bar over the layer's samples, on stderr (off when it is not a terminal)."""
    return tqdm(total=samples.total, unit=" samples", unit_scale=True, disable=None,
                desc=what.strip(), file=sys.stderr)


def _counted(samples: Samples, bar: tqdm) -> Iterator[np.ndarray]:
    for batch in samples.batches():
        bar.update(batch.shape[0])
        yield batch


def stream_layer(samples: Samples, basis, pairs, neurons: SignedBasis, chosen: np.ndarray, *,
                 epsilon: float, summaries: bool, name: str = "") -> StreamedLayer:
    """Streams a layer's rows through :func:`srm_jax.accumulate_srm` (or
    :func:`srm_jax.accumulate_summary`), keeping the rows ``chosen`` and the measures' sums; with
    summaries, a second pass measures the exact curves of the planes with most lit counts."""
    accumulate = accumulate_summary if summaries else accumulate_srm
    with _bar(samples, f"SRM {name}") as bar:
        tap = _Tap(samples, chosen, neurons, basis, bar)
        result = accumulate(iter(tap), basis, epsilon=epsilon, planes=pairs,
                            batch_size=samples.batch_samples)
    if int(result.num_samples) == 0:
        raise ReportError(
            f"every row of {samples.source.name} contains NaN or Inf: nothing to measure")
    peaks = None
    if summaries:
        with _bar(samples, f"top planes {name}") as bar:
            peaks = accumulate_srm(_counted(samples, bar), basis, epsilon=epsilon,
                                   planes=pairs[candidate_planes(result)],
                                   batch_size=samples.batch_samples)
    return StreamedLayer(result, tap.sums, np.concatenate(tap.picked, axis=0), peaks)
