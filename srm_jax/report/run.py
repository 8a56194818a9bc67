"""A report of files, end to end: check every input, stream each layer, analyse, write.

:func:`run_report` is what ``srm-jax report`` does once its flags are parsed into
:class:`ReportSettings` (:mod:`srm_jax.report.cli`).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import dataclasses
import os
import shutil
import tempfile

import jax
import numpy as np

from srm_jax import __version__, _validation
from srm_jax import neurons as _neurons
from srm_jax.planes import DEFAULT_NUM_ANGLES
from srm_jax.report.checks import (
    check_count,
    check_epsilon,
    check_memory,
    check_top,
    default_max_samples,
    memory_budget_bytes,
)
from srm_jax.report.compose import Report, report_rotations, srm_report, test_epsilons_of
from srm_jax.report.defaults import (
    DEFAULT_EPSILON,
    DEFAULT_MEMORY_BUDGET_GIB,
    DEFAULT_RESAMPLES,
    DEFAULT_STATISTIC,
    HELD_ROTATIONS_SHARE,
)
from srm_jax.report.errors import ReportError
from srm_jax.report.markdown import layers_sentence
from srm_jax.report.output import draw_layer, write_report
from srm_jax.report.planes import choose_planes
from srm_jax.report.reading import (
    SUMMARY_BATCH_ELEMENTS,
    Samples,
    ShardedSource,
    layer_keys,
    load_basis,
    load_labels,
    load_tokens,
    load_vocab,
    shard_paths,
)
from srm_jax.report.stream import stream_layer
from srm_jax.sample_major import basis_structure


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    """The settings of a report of files (each one flag of ``srm-jax report``)."""

    basis: str = "standard"
    labels: str | None = None
    keys: tuple[str, ...] | None = None
    epsilon: float | None = None
    planes: str = "comb"
    features: str | None = None
    seed: int = 0
    num_resamples: int = DEFAULT_RESAMPLES
    statistic: str = DEFAULT_STATISTIC
    max_samples: int | None = None
    max_planes: int | None = None
    top: int | None = None
    memory_budget_gib: float = DEFAULT_MEMORY_BUDGET_GIB
    tokens: str | None = None
    vocab: str | None = None
    center: bool = False


def measured_epsilon(settings: ReportSettings) -> float:
    """The ε of the measurement (SRM curves, figures, planes): ``epsilon``, or without it
    :data:`DEFAULT_EPSILON` (the verdict then tests the sweep, :func:`srm_report`)."""
    return DEFAULT_EPSILON if settings.epsilon is None else float(settings.epsilon)


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """One layer's inputs, checked, and the plan of its analysis (before anything is computed).

    Attributes:
      source, samples: the layer's array and how its rows become samples.
      basis: the ``(m, n)`` basis; labels: per-sample classes or ``None``.
      pairs: the planes; max_planes: the ``max_planes`` used (``None``: every plane);
      summaries: whether they are measured through summaries.
      top: basis vectors and planes listed; neurons: the basis' neurons.
      max_samples: the analysis subset's size; chosen: its sorted row indices.
      key: the PRNG key of :func:`srm_jax.report.srm_report`.
      tokens: per-sample int64 token ids or ``None``; vocab: token texts by id or ``None``.
    """

    source: ShardedSource
    samples: Samples
    basis: np.ndarray
    labels: np.ndarray | None
    pairs: jax.Array
    max_planes: int | None
    summaries: bool
    top: int
    neurons: _neurons.SignedBasis
    max_samples: int
    chosen: np.ndarray
    key: jax.Array
    tokens: np.ndarray | None = None
    vocab: dict[int, str] | None = None


def check_settings(settings: ReportSettings, out: str) -> float:
    """Checks the settings that need no file; returns the memory budget in bytes."""
    if settings.epsilon is not None:
        check_epsilon(settings.epsilon)
    for name in ("num_resamples", "max_samples", "max_planes", "top"):
        check_count(name, getattr(settings, name))
    budget = memory_budget_bytes(settings.memory_budget_gib)
    if settings.vocab is not None and settings.tokens is None:
        raise ReportError("vocab= names the tokens' texts: it needs tokens= (the token id of "
                          "every row)")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ReportError(f"out='{out}' exists and is not a directory")
    return budget


def _subset(total: int, size: int, seed: int) -> np.ndarray:
    if total <= size:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size, replace=False))


def _default_subset(n: int, basis: np.ndarray, neurons: _neurons.SignedBasis,
                    settings: ReportSettings) -> int:
    """:func:`default_max_samples` of a layer: its tests' least ε and its basis' coherence."""
    least = min(test_epsilons_of(settings.epsilon))
    coherence = 0.0 if neurons.orthonormal or least <= 0 else basis_structure(basis).max_cosine
    return default_max_samples(n, neurons.num_directions, settings.num_resamples,
                               least_epsilon=least, max_cosine=coherence)


def plan_layer(paths: list[str], key: str | None, settings: ReportSettings,
               budget: float) -> LayerPlan:
    """Reads one layer's headers, basis and labels, and plans its analysis (every check)."""
    s = settings
    source = ShardedSource(paths, key)
    samples = Samples(source, s.features)
    basis = load_basis(s.basis, samples.n)
    labels = None if s.labels is None else load_labels(s.labels, source, samples)
    tokens = None if s.tokens is None else load_tokens(s.tokens, source, samples)
    vocab = None if s.vocab is None else load_vocab(s.vocab)
    k_planes, k_report = jax.random.split(jax.random.key(s.seed))
    pairs, max_planes, summaries = choose_planes(basis, s.planes, measured_epsilon(s),
                                                 max_planes=s.max_planes, key=k_planes)
    if summaries:
        samples.resize(SUMMARY_BATCH_ELEMENTS, samples.total)
    neurons = _neurons.signed_neurons(basis)
    max_samples = (_default_subset(samples.n, basis, neurons, s) if s.max_samples is None
                   else s.max_samples)
    chosen = _subset(samples.total, max_samples, s.seed)
    check_memory(int(chosen.shape[0]), samples.n, int(basis.shape[0]), neurons.num_directions,
                 int(pairs.shape[0]), DEFAULT_NUM_ANGLES, s.num_resamples, budget,
                 summaries=summaries)
    return LayerPlan(source, samples, basis, labels, pairs, max_planes, summaries,
                     check_top(s.top, int(pairs.shape[0])), neurons, max_samples, chosen,
                     k_report, tokens, vocab)


def held_rotations(held: dict, plan: LayerPlan, settings: ReportSettings,
                   budget: float) -> jax.Array | None:
    """The rotations of ``plan``'s tests (:func:`srm_jax.report.report_rotations`), drawn once
    per width and key and kept in ``held`` for the next layers, when every width held fits in
    :data:`HELD_ROTATIONS_SHARE` of ``budget`` bytes (else ``None``: each test draws its own,
    the same rotations)."""
    n, k = int(plan.basis.shape[1]), int(settings.num_resamples)
    size = k * n * n * 4  # float32
    if size > HELD_ROTATIONS_SHARE * budget:
        return None
    name = (n, k, tuple(np.asarray(jax.random.key_data(plan.key)).ravel().tolist()))
    if name not in held:
        if sum(int(r.nbytes) for r in held.values()) + size > HELD_ROTATIONS_SHARE * budget:
            held.clear()
        held[name] = jax.block_until_ready(report_rotations(plan.key, n, k))
    return held[name]


def share_pairs(plans: list[LayerPlan]) -> list[LayerPlan]:
    """``plans`` with equal planes held once: the layers of one width and basis plan the same
    ``(P, 2)`` pairs (4.7 M, 38 MB at 1,536 units), each its own copy otherwise."""
    kept: dict = {}
    shared = []
    for plan in plans:
        name = _validation.array_key(plan.pairs)
        if name not in kept:
            kept[name] = plan.pairs
        shared.append(dataclasses.replace(plan, pairs=kept[name]))
    return shared


def release_rotations(held: dict, later: list[LayerPlan]) -> None:
    """Drops from ``held`` (:func:`held_rotations`) the rotations of widths no ``later`` layer
    has (the layers of one width are usually consecutive: the next width's layers then run
    without the last width's ``(K, n, n)`` array)."""
    widths = {int(plan.basis.shape[1]) for plan in later}
    for name in [name for name in held if name[0] not in widths]:
        del held[name]


def analyse_layer(plan: LayerPlan, settings: ReportSettings, budget: float,
                  rotations: jax.Array | None = None) -> tuple[Report, dict]:
    """Streams one layer (:func:`srm_jax.report.stream.stream_layer`), then its report; returns
    the report and its ``report.json`` entry (with the inputs and settings). ``rotations``:
    its tests' rotations drawn beforehand (:func:`held_rotations`), or ``None``."""
    s, source = settings, plan.source
    streamed = stream_layer(plan.samples, plan.basis, plan.pairs, plan.neurons, plan.chosen,
                            epsilon=measured_epsilon(s), summaries=plan.summaries,
                            name=source.key or "", center=s.center)
    report = srm_report(
        streamed.subset, plan.basis, key=plan.key, epsilon=s.epsilon,
        labels=None if plan.labels is None else plan.labels[plan.chosen], planes=plan.pairs,
        num_resamples=s.num_resamples, statistic=s.statistic, result=streamed.result,
        num_rows=plan.samples.total, top=plan.top, memory_budget=budget,
        streamed_sums=streamed.sums, peaks=streamed.peaks,
        tokens=None if plan.tokens is None else plan.tokens[plan.chosen],
        row_facts=streamed.rows, all_tokens=plan.tokens, vocab=plan.vocab, mean=streamed.mean,
        centered=s.center, uncentered=streamed.uncentered_subset, rotations=rotations)
    summary = dict(report.summary)
    summary.update({
        "input": {"path": source.path, "key": source.key, "shape": list(source.shape),
                  "dtype": str(source.dtype), "features": plan.samples.features,
                  "num_shards": len(source.shards)},
        "basis": s.basis,
        "planes": s.planes,
        "max_planes": plan.max_planes,
        "max_samples": plan.max_samples,
        "seed": s.seed,
        "labels": s.labels,
        "tokens": s.tokens,
        "vocab": s.vocab,
        "center": s.center,
        "memory_budget_gib": s.memory_budget_gib,
        "srm_jax_version": __version__,
    })
    return report, summary


def release_freed_memory() -> None:
    """Returns the heap's freed pages to the operating system (glibc's ``malloc_trim``; nothing
    elsewhere). XLA:CPU's buffers of a layer are freed into glibc's arenas, which keep them:
    without this the resident memory of a many-layer report grows by a few hundred MB a layer."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def run_report(activations: list[str], settings: ReportSettings, out: str) -> str:
    """The report of the files ``activations`` (shards of one sample set) into ``out``.

    Every input is checked before anything is computed; the outputs are written to a
    temporary directory and moved into ``out`` only when all of them exist. Returns the
    verdict sentence (of every layer with several).
    """
    budget = check_settings(settings, out)
    paths = shard_paths(activations)
    keys = layer_keys(paths, list(settings.keys or []), settings.labels, settings.tokens)
    plans = share_pairs([plan_layer(paths, key, settings, budget) for key in keys])  # checked
    held: dict = {}
    summaries = []
    scratch = tempfile.mkdtemp(prefix="srm-report-")
    try:
        # A layer's figures are drawn on a thread while the next layer is analysed (matplotlib
        # holds the GIL, XLA's work does not); one layer waits to be drawn at a time, and its
        # arrays go once its figures are drawn.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as drawer:
            drawing = None
            for index, plan in enumerate(plans):
                report, summary = analyse_layer(plan, settings, budget,
                                                held_rotations(held, plan, settings, budget))
                release_rotations(held, plans[index + 1:])
                if drawing is not None:
                    summaries.append(drawing.result())
                    release_freed_memory()
                drawing = drawer.submit(draw_layer, report, summary, scratch, index,
                                        len(plans) > 1)
                del report
            summaries.append(drawing.result())
        held.clear()
        name = plans[0].source.name
        write_report(summaries, scratch, out, name if len(plans) == 1 else name.rsplit("[", 1)[0])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if len(summaries) == 1:
        return summaries[0]["verdict_sentence"]
    return layers_sentence(summaries)
