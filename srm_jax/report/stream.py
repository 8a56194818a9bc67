"""Streaming one layer from its file: SRM of every row, the measures' sums, each row's facts
(:class:`srm_jax.report.rows.RowFacts`), the rows' mean and the subset."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from srm_jax import basis_measures as _measures
from srm_jax.neurons import SignedBasis
from srm_jax.report.errors import ReportError
from srm_jax.report.planes import candidate_planes
from srm_jax.report.reading import Samples
from srm_jax.report.rows import (
    MeanFacts,
    RowFacts,
    combine_row_sums,
    coordinate_facts,
    mean_facts,
    row_sums_batch,
    vector_lookup,
)
from srm_jax.resonance import SRMResult, plan_measurement
from srm_jax.streaming import accumulate_srm, accumulate_summary
from srm_jax.summaries import SRMSummary


@jax.jit
def _batch_facts(batch: jax.Array, arguments: dict, lookup: jax.Array):
    """The measures' sums of one batch (:func:`srm_jax.basis_measures.activation_sums`) and each
    row's facts (:func:`srm_jax.report.rows.coordinate_facts`), from one set of coordinates on
    the directions (:func:`srm_jax.basis_measures.direction_coordinates`: no product for a
    standard basis)."""
    x = jnp.asarray(batch, jnp.float32)
    norms = jnp.linalg.norm(jnp.where(jnp.isfinite(x), x, jnp.nan), axis=1)
    coordinates = _measures.direction_coordinates(x, arguments)
    return (_measures.measure_sums(coordinates, norms),
            coordinate_facts(coordinates, norms, lookup))


@dataclasses.dataclass(frozen=True)
class StreamedLayer:
    """What one pass (two with summaries) over a layer's rows gives the report.

    Attributes:
      result: SRM of every row (``(P, T)`` counts, or summaries of every plane).
      sums: the field's measures' sums of every row on the basis' directions.
      subset: the analysis subset, ``(S, n)`` float32 rows in file order (centred with
        ``center``).
      peaks: with summaries, the exact SRM of the candidate planes; ``None`` with counts.
      rows: each streamed sample's largest ``|cos|`` with a basis vector and that vector (of
        the rows measured: centred with ``center``).
      mean: the mean of the raw finite rows (never centred).
      uncentered_subset: with ``center``, the raw rows of the subset; ``None`` otherwise.
    """

    result: SRMResult | SRMSummary
    sums: _measures.MeasureSums
    subset: np.ndarray
    peaks: SRMResult | None
    rows: RowFacts
    mean: MeanFacts
    uncentered_subset: np.ndarray | None = None


class _Tap:
    """The batches of one pass, handed on to SRM; on the way, the rows of the analysis subset
    (sorted indices ``chosen``) are kept, the measures' sums, the raw rows' sums and each row's
    facts computed (on batches padded with NaN rows to one compiled shape)."""

    def __init__(self, samples: Samples, chosen: np.ndarray, neurons: SignedBasis, basis,
                 bar: tqdm):
        self.samples, self.chosen, self.bar = samples, chosen, bar
        self.arguments = _measures.direction_arguments(neurons, basis)
        self.lookup = vector_lookup(neurons)
        self.sums = _measures.zero_sums(neurons.num_directions)
        self.picked: list[np.ndarray] = []
        self.picked_raw: list[np.ndarray] = []
        self.row_sums: list = []
        self.facts: list = []  # (max_cos, vector, real rows) of each padded batch

    def __iter__(self) -> Iterator[np.ndarray]:
        start = 0
        for raw in self.samples.raw_batches():
            batch = self.samples.centre(raw)
            stop = start + batch.shape[0]
            lo, hi = np.searchsorted(self.chosen, [start, stop])
            self.picked.append(batch[self.chosen[lo:hi] - start])
            if self.samples.shift is not None:
                self.picked_raw.append(raw[self.chosen[lo:hi] - start])
            start = stop
            padded = _padded(batch, self.samples.batch_samples)
            sums, facts = _batch_facts(padded, self.arguments, self.lookup)
            self.sums = _measures.combine_sums(self.sums, sums)
            if self.samples.shift is None:  # centred: the raw rows' mean is known already
                self.row_sums.append(row_sums_batch(padded))
            self.facts.append((*facts, batch.shape[0]))
            self.bar.update(batch.shape[0])
            yield batch

    def row_facts(self) -> RowFacts:
        """The facts of every row streamed, padding dropped."""
        return RowFacts(
            np.concatenate([np.asarray(m)[:k] for m, _, k in self.facts]),
            np.concatenate([np.asarray(v)[:k] for _, v, k in self.facts]))

    def uncentered_subset(self) -> np.ndarray | None:
        """With a shift, the raw rows of the subset."""
        return None if self.samples.shift is None else np.concatenate(self.picked_raw, axis=0)


def _padded(batch: np.ndarray, size: int) -> np.ndarray:
    """``batch`` with NaN rows up to ``size`` rows (one compiled shape for every batch)."""
    pad = size - batch.shape[0]
    return np.pad(batch, ((0, pad), (0, 0)), constant_values=np.nan) if pad > 0 else batch


def raw_row_sums(samples: Samples, bar: tqdm) -> tuple[np.ndarray, float, int]:
    """``Σ x``, ``Σ |x|²`` and the number of the finite raw rows of ``samples`` (one pass)."""
    parts = []
    for raw in samples.raw_batches():
        parts.append(row_sums_batch(_padded(raw, samples.batch_samples)))
        bar.update(raw.shape[0])
    return combine_row_sums(parts)


def _bar(samples: Samples, what: str) -> tqdm:
    """A progress bar over the layer's samples, on stderr (off when it is not a terminal)."""
    return tqdm(total=samples.total, unit=" samples", unit_scale=True, disable=None,
                desc=what.strip(), file=sys.stderr)


def _counted(samples: Samples, bar: tqdm) -> Iterator[np.ndarray]:
    for batch in samples.batches():
        bar.update(batch.shape[0])
        yield batch


def candidates_method(basis, candidates, epsilon: float) -> str:
    """The kernel of the candidate planes' exact curves: the sample-major kernel wherever it
    can count them (exact, like every kernel; "auto" would take a tile kernel for so few
    planes, whose cost grows with every row times every plane and angle), else "auto"."""
    try:
        plan_measurement(None, basis, epsilon=epsilon, planes=candidates, method="sample_major")
    except ValueError:
        return "auto"
    return "sample_major"


def stream_layer(samples: Samples, basis, pairs, neurons: SignedBasis, chosen: np.ndarray, *,
                 epsilon: float, summaries: bool, name: str = "",
                 center: bool = False) -> StreamedLayer:
    """Streams a layer's rows through :func:`srm_jax.accumulate_srm` (or
    :func:`srm_jax.accumulate_summary`), keeping the rows ``chosen``, the measures' sums, each
    row's facts and the rows' mean; with summaries, a second pass measures the exact curves of
    the planes with most lit counts. With ``center``, a first pass finds the rows' mean and every
    later pass measures the rows less it."""
    mean = None
    if center:
        with _bar(samples, f"mean {name}") as bar:
            mean = mean_facts(*raw_row_sums(samples, bar), basis)
        if not np.all(np.isfinite(mean.mean)):
            raise ReportError(
                f"every row of {samples.source.name} contains NaN or Inf: nothing to measure")
        samples = samples.shifted(mean.mean)
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
        candidates = pairs[candidate_planes(result)]
        with _bar(samples, f"top planes {name}") as bar:
            peaks = accumulate_srm(_counted(samples, bar), basis, epsilon=epsilon,
                                   planes=candidates, batch_size=samples.batch_samples,
                                   method=candidates_method(basis, candidates, epsilon))
    if mean is None:
        mean = mean_facts(*combine_row_sums(tap.row_sums), basis)
    return StreamedLayer(result, tap.sums, np.concatenate(tap.picked, axis=0), peaks,
                         tap.row_facts(), mean, tap.uncentered_subset())
