"""The ``srm-jax`` command line: ``srm-jax report ACTIVATIONS ...`` (also ``python -m srm_jax``).

Reads activations saved by any framework (``.npy``, ``.npz``, ``.safetensors``), streams them
through :func:`srm_jax.accumulate_srm` (memory-mapped ``.npy`` windows, lazy safetensors slices,
sequential ``.npz`` reads: memory does not grow with the number of rows), and writes the report
of :mod:`srm_jax.report` (``report.json``, ``report.md`` and figures) to ``--out``. Several files
(or a directory) are shards of one sample set, read in turn; several ``--key`` (or ``--key all``)
report several layers, with a table across them.

Every input is checked before anything is computed; a bad input ends with one line on stderr
naming the problem and exit status 2, and nothing is written: the outputs are written to a
temporary directory and moved into ``--out`` only when all of them exist.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from typing import NoReturn

import numpy as np

from srm_jax.report import (
    BASIS_SPECS,
    DEFAULT_EPSILON,
    DEFAULT_MAX_SAMPLES,
    DEFAULT_MEMORY_BUDGET_GIB,
    DEFAULT_RESAMPLES,
    DEFAULT_SAMPLED_PLANES,
    DEFAULT_STATISTIC,
    DEFAULT_TOP,
    FIGURES,
    MIN_MAX_SAMPLES,
    ReportError,
)

PROG = "srm-jax"
SUFFIXES = (".npy", ".npz", ".safetensors")
#: Target size of one streamed batch, in float32 elements.
BATCH_ELEMENTS = 1 << 19
#: The same when every plane is measured through summaries: a batch's fixed cost (adding the
#: ``(P,)`` plane totals, the kernel's per-plane accumulator) is paid once per batch.
SUMMARY_BATCH_ELEMENTS = 1 << 23
MAX_BATCH_SAMPLES = 1 << 16
OUTPUT_FILES = ("report.json", "report.md", *FIGURES.values())
#: Folder of the per-layer figures of a multi-layer report.
LAYERS_DIR = "layers"


# ------------------------------------------------------------------------------- reading


class ArraySource:
    """One array of a ``.npy``, ``.npz`` or ``.safetensors`` file, read lazily along axis 0.

    ``shape`` and ``dtype`` come from the file's header; :meth:`rows` yields consecutive row
    blocks without holding the whole array (a fresh memory map per block for ``.npy``, a fresh
    safetensors slice per block, a sequential zip stream for ``.npz``).
    """

    def __init__(self, path: str, key: str | None, *, what: str = "activations",
                 prefer: str | None = None):
        self.path, self.what, self._prefer = path, what, prefer
        if not os.path.exists(path):
            raise ReportError(f"no such file: {path}")
        if os.path.isdir(path):
            raise ReportError(f"{path} is a directory, not an array file")
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in SUFFIXES:
            raise ReportError(
                f"{path}: unsupported file type {suffix or '(none)'!r}; use .npy, .npz or "
                ".safetensors"
            )
        self.kind = suffix[1:]
        try:
            getattr(self, f"_open_{self.kind}")(key)
        except ReportError:
            raise
        except Exception as error:  # a corrupt or foreign file: say so in one line
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ReportError(f"cannot read {path} as {suffix}: {reason}") from None
        # ml_dtypes' floats (bfloat16, float8) are NumPy "void" kinds; they convert to float32.
        if self.dtype.kind not in "biuf" and not self.dtype.name.startswith(("bfloat", "float")):
            raise ReportError(
                f"{self.name} has dtype {self.dtype}: the {what} must be real numbers"
            )

    @property
    def name(self) -> str:
        return self.path if self.key is None else f"{self.path}[{self.key!r}]"

    def _pick(self, names: list[str], key: str | None) -> str | None:
        if key is None:
            if len(names) == 1:
                return names[0]
            if self._prefer in names:
                return self._prefer
            if not names:
                raise ReportError(f"{self.path} holds no arrays")
            raise ReportError(
                f"{self.path} holds several arrays ({', '.join(names)}): pick one with --key"
            )
        if key not in names:
            raise ReportError(
                f"no array named {key!r} in {self.path} (it holds: {', '.join(names)})"
            )
        return key

    def keys(self) -> list[str]:
        """Names of the arrays in the file (empty for ``.npy``)."""
        return list(self._names)

    def _open_npy(self, key):
        if key is not None:
            raise ReportError(f"--key applies to .npz and .safetensors files; {self.path} holds "
                              "one array")
        self.key, self._names = None, []
        array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        self.shape, self.dtype = tuple(array.shape), array.dtype
        self._offset = int(getattr(array, "offset", 0))
        self._fortran = bool(array.flags.f_contiguous and not array.flags.c_contiguous)
        del array

    def _open_npz(self, key):
        with zipfile.ZipFile(self.path) as archive:
            self._names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        self.key = self._pick(self._names, key)
        with zipfile.ZipFile(self.path) as archive, archive.open(self.key + ".npy") as f:
            self.shape, self._fortran, self.dtype = _read_npy_header(f)

    def _open_safetensors(self, key):
        import ml_dtypes  # noqa: F401  (registers bfloat16 with NumPy for bf16 tensors)
        from safetensors import safe_open

        with safe_open(self.path, framework="np") as f:
            self._names = list(f.keys())
            self.key = self._pick(self._names, key)
            piece = f.get_slice(self.key)
            self.shape = tuple(int(s) for s in piece.get_shape())
            self.dtype = np.dtype(piece[:0].dtype) if self.shape else np.dtype(
                f.get_tensor(self.key).dtype)

    def rows(self, block: int) -> Iterator[np.ndarray]:
        """Consecutive blocks of ``block`` rows (the last may be shorter), as NumPy arrays."""
        total = self.shape[0]
        if self.kind == "npy":
            if self._fortran:
                array = np.load(self.path, mmap_mode="r")
                for start in range(0, total, block):
                    yield np.array(array[start:start + block])
                return
            row_shape = self.shape[1:]
            row_bytes = int(np.prod(row_shape, dtype=np.int64)) * self.dtype.itemsize
            for start in range(0, total, block):
                stop = min(total, start + block)
                window = np.memmap(self.path, dtype=self.dtype, mode="r",
                                   offset=self._offset + start * row_bytes,
                                   shape=(stop - start, *row_shape))
                out = np.array(window)
                del window  # unmap: pages already read do not stay in this process
                yield out
        elif self.kind == "safetensors":
            from safetensors import safe_open

            for start in range(0, total, block):
                # A fresh handle per block: the file's mapping (and the pages read) is released.
                with safe_open(self.path, framework="np") as f:
                    yield np.asarray(f.get_slice(self.key)[start:min(total, start + block)])
        elif self._fortran:  # column-major .npz member: rows are not contiguous, load it
            with np.load(self.path, allow_pickle=False) as npz:
                array = npz[self.key]
            for start in range(0, total, block):
                yield np.array(array[start:start + block])
        else:
            with zipfile.ZipFile(self.path) as archive, archive.open(self.key + ".npy") as f:
                _read_npy_header(f)
                row_shape = self.shape[1:]
                count = int(np.prod(row_shape, dtype=np.int64))
                for start in range(0, total, block):
                    rows = min(total, start + block) - start
                    data = f.read(rows * count * self.dtype.itemsize)
                    yield np.frombuffer(data, self.dtype).reshape((rows, *row_shape))

    def read(self) -> np.ndarray:
        """The whole array (for labels and bases: small arrays)."""
        if self.kind == "npy":
            return np.load(self.path, mmap_mode="r", allow_pickle=False)
        if self.kind == "npz":
            with np.load(self.path, allow_pickle=False) as npz:
                return npz[self.key]
        from safetensors import safe_open

        with safe_open(self.path, framework="np") as f:
            return f.get_tensor(self.key)


def _read_npy_header(f):
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def shard_paths(paths: list[str]) -> list[str]:
    """The shard files of ``paths``: each a file, or a directory whose ``.npy``/``.npz``/
    ``.safetensors`` files are taken in name order."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(f for f in os.listdir(path) if f.lower().endswith(SUFFIXES))
            if not found:
                raise ReportError(f"{path} is a directory with no .npy, .npz or .safetensors file")
            files += [os.path.join(path, f) for f in found]
        else:
            files.append(path)
    return files


class ShardedSource:
    """One array read from a sequence of shards, one after another, as a single array.

    Every shard must hold the array (``key``) with the same row shape (width) and a real dtype;
    otherwise a :class:`ReportError` names the shard. One shard is exactly an
    :class:`ArraySource`.
    """

    def __init__(self, paths: list[str], key: str | None, *, what: str = "activations"):
        self.shards = [ArraySource(paths[0], key, what=what)]
        self.key = self.shards[0].key
        row_shape = self.shards[0].shape[1:]
        for path in paths[1:]:
            shard = ArraySource(path, self.key, what=what)
            if shard.shape[1:] != row_shape:
                raise ReportError(
                    f"shard {shard.name} has rows of shape {shard.shape[1:]} but "
                    f"{self.shards[0].name} has {row_shape}: every shard needs the same width"
                )
            self.shards.append(shard)
        self.path = paths[0] if len(paths) == 1 else list(paths)
        self.dtype = self.shards[0].dtype
        self.shape = (sum(sh.shape[0] for sh in self.shards), *row_shape) if row_shape else (
            self.shards[0].shape)
        self.kind = self.shards[0].kind

    @property
    def name(self) -> str:
        if len(self.shards) == 1:
            return self.shards[0].name
        key = "" if self.key is None else f"[{self.key!r}]"
        return f"{len(self.shards)} shards ({self.shards[0].path} …){key}"

    def keys(self) -> list[str]:
        """Names of the arrays of the first shard (empty for ``.npy``)."""
        return self.shards[0].keys()

    def rows(self, block: int) -> Iterator[np.ndarray]:
        """Consecutive row blocks of every shard in turn (a block never spans two shards)."""
        for shard in self.shards:
            yield from shard.rows(block)

    def read_array(self, key: str, *, what: str) -> np.ndarray:
        """Array ``key`` of every shard, concatenated along axis 0 (labels)."""
        parts = [ArraySource(sh.path, key, what=what).read() for sh in self.shards]
        return np.concatenate([np.asarray(p) for p in parts], axis=0)


class Samples:
    """How the file's rows become SRM samples ``(S, n)`` (``--features``)."""

    def __init__(self, source: ArraySource, features: str | None):
        shape = source.shape
        if len(shape) < 2:
            raise ReportError(
                f"{source.name} has shape {shape}: the activations must be (N, n), or "
                "(N, ..., n) with --features"
            )
        if shape[0] == 0:
            raise ReportError(f"{source.name} has no rows (shape {shape})")
        if len(shape) > 2 and features is None:
            raise ReportError(
                f"{source.name} has shape {shape}: pass --features flatten (one sample per "
                "row) or --features last (one sample per position, over the last axis)"
            )
        self.source, self.features = source, features or "flatten"
        if self.features == "flatten":
            self.n = int(np.prod(shape[1:], dtype=np.int64))
            self.per_row = 1
        else:
            self.n = int(shape[-1])
            self.per_row = int(np.prod(shape[1:-1], dtype=np.int64))
        if self.n < 2:
            raise ReportError(f"{source.name} has n={self.n} feature(s): SRM needs n >= 2")
        self.total = shape[0] * self.per_row
        if self.total == 0:
            raise ReportError(f"{source.name} has no samples (shape {shape})")
        self.resize(BATCH_ELEMENTS, MAX_BATCH_SAMPLES)

    def resize(self, elements: int, max_samples: int) -> None:
        """Streams batches of about ``elements`` float32 values (at most ``max_samples`` rows)."""
        target = max(1, min(int(max_samples), int(elements) // self.n))
        self.rows_per_batch = max(1, target // self.per_row)
        self.batch_samples = self.rows_per_batch * self.per_row

    def batches(self) -> Iterator[np.ndarray]:
        """``(B, n)`` float32 sample blocks in file order."""
        for block in self.source.rows(self.rows_per_batch):
            yield np.asarray(block, dtype=np.float32).reshape(-1, self.n)


def load_labels(spec: str, source: ArraySource, samples: Samples) -> np.ndarray:
    """Per-sample int labels from a ``.npy`` file or an array of the activations' file."""
    if os.path.exists(spec) or spec.lower().endswith(tuple(SUFFIXES)):
        labels = ArraySource(spec, None, what="labels").read()
        name = spec
    elif spec in source.keys():
        labels = source.read_array(spec, what="labels")
        name = f"{source.name.rsplit('[', 1)[0]}[{spec!r}]"
    else:
        first = source.shards[0].path
        where = f" and no array named {spec!r} in {first}" if source.keys() else ""
        raise ReportError(f"--labels {spec}: no such file{where}")
    labels = np.asarray(labels)
    rows = source.shape[0]
    if labels.shape == (rows,):
        if samples.per_row > 1:
            labels = np.repeat(labels, samples.per_row)
    elif samples.features == "last" and labels.shape == source.shape[:-1]:
        labels = labels.reshape(-1)
    else:
        raise ReportError(
            f"labels {name} have shape {labels.shape} but the activations have {rows} rows: "
            f"one label per row is needed"
        )
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ReportError(f"labels {name} must be integer classes")
    elif labels.dtype.kind not in "biu":
        raise ReportError(f"labels {name} have dtype {labels.dtype}: integer classes needed")
    labels = labels.astype(np.int64)
    if not np.any(labels >= 0):
        raise ReportError(f"labels {name} have no non-negative class")
    return labels


def load_basis(spec: str, n: int) -> np.ndarray:
    """The basis of ``--basis``: a named construction or an ``(m, n)`` array file."""
    from srm_jax.report import basis_from_spec, check_basis

    if spec.split(":")[0] in {s.split(":")[0] for s in BASIS_SPECS} and not os.path.exists(spec):
        return check_basis(basis_from_spec(spec, n), n)
    if not (os.path.exists(spec) or spec.lower().endswith(SUFFIXES)):
        basis_from_spec(spec, n)  # raises: names the valid specifications
    source = ArraySource(spec, None, what="basis", prefer="basis")
    if len(source.shape) != 2:
        raise ReportError(f"the basis {source.name} must be an (m, n) array, got shape "
                          f"{source.shape}")
    return check_basis(source.read(), n)


# -------------------------------------------------------------------------------- command


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The ``srm-jax`` argument parser."""
    parser = _Parser(
        prog=PROG,
        description="Spotlight Resonance Method (SRM) reports for activations from any "
        "framework.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    report = commands.add_parser(
        "report",
        help="is a layer aligned with a basis? SRM, a rotation test and figures",
        description="Measures SRM of saved activations about the planes of a privileged basis\n"
        "and writes report.json, report.md and figures: the alignment score, a rotation-test\n"
        "p-value and a one-sentence verdict; with labels, the most class-selective planes and\n"
        "basis vectors. Rows with NaN/Inf are excluded and counted. Bad input: one line on\n"
        "stderr, exit status 2, nothing written.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="basis: standard (±e_i, the basis of elementwise activations such as ReLU,\n"
        "  GELU, tanh: the default), orthoplex:SEED, simplex:SEED, thompson:M:SEED,\n"
        "  random:M:SEED, or the path of an (m, n) .npy file.\n"
        "example: srm-jax report acts.safetensors --key layer3 --labels labels.npy --out "
        "report/",
    )
    report.add_argument("activations", metavar="ACTIVATIONS", nargs="+",
                        help=".npy, .npz or .safetensors file(s) of (N, n) activations: several "
                        "files (or a directory of them) are shards, read one after another as "
                        "one sample set")
    report.add_argument("--key", action="append",
                        help="the array (layer) to read from multi-array .npz/.safetensors files; "
                        "repeat it for several layers, or 'all' for every array (one section "
                        "per layer and a table across layers)")
    report.add_argument("--basis", default="standard", metavar="SPEC",
                        help="privileged basis (see below; default: standard)")
    report.add_argument("--labels", metavar="PATH|KEY",
                        help="class labels: a .npy file, or an array of the activations' file")
    report.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON, metavar="E",
                        help=f"spotlight cosine ε in [-1, 1] (default {DEFAULT_EPSILON})")
    report.add_argument("--planes", choices=("comb", "perm"), default="comb",
                        help="unordered (comb, default) or ordered (perm) pairs of basis vectors")
    report.add_argument("--features", choices=("flatten", "last"),
                        help="for (N, ..., n) arrays: one sample per row (flatten) or per "
                        "position over the last axis (last)")
    report.add_argument("--seed", type=int, default=0,
                        help="seeds the rotations, label shuffles and subsets (default 0)")
    report.add_argument("--out", default="srm-report", metavar="DIR",
                        help="output directory (default srm-report/)")
    report.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, metavar="K",
                        help="random rotations of the basis (and label shuffles) for the "
                        f"p-values (default {DEFAULT_RESAMPLES}: p down to 0.01)")
    report.add_argument("--statistic", choices=("projection", "correlation"),
                        default=DEFAULT_STATISTIC,
                        help="rotation-test statistic: projection (default; the amplitude of the "
                        "mean SRM curve in phase with self-SRM) or correlation (the alignment "
                        "score)")
    report.add_argument("--max-samples", type=int, default=None, metavar="S",
                        help="the rotation tests, ε sweep, class selectivity and projection use "
                        f"a random subset of this many samples (default {DEFAULT_MAX_SAMPLES:,}, "
                        "fewer at width: about a minute of rotation products, at least "
                        f"{MIN_MAX_SAMPLES:,}); SRM, the neuron ranking and the measures' values "
                        "count every sample")
    report.add_argument("--max-planes", type=int, default=None, metavar="P",
                        help="measure a random subset of this many planes (default: every "
                        "plane of a ± orthonormal basis, measured through summaries; "
                        f"otherwise {DEFAULT_SAMPLED_PLANES:,} when the basis has more)")
    report.add_argument("--top", type=int, default=None, metavar="K",
                        help=f"basis vectors and planes listed (default {DEFAULT_TOP}, or every "
                        "plane when there are fewer)")
    report.add_argument("--memory-budget", type=float, default=DEFAULT_MEMORY_BUDGET_GIB,
                        metavar="GiB",
                        help="memory the report may hold at once; rotations are drawn and "
                        f"applied in batches that fit (default {DEFAULT_MEMORY_BUDGET_GIB:g} GiB)")
    return parser


def _fail(message: str) -> int:
    print(f"{PROG} report: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``srm-jax`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return run_report(args)
    except ReportError as error:
        return _fail(str(error))


def _check_settings(args) -> None:
    from srm_jax.report import check_epsilon, memory_budget_bytes

    check_epsilon(args.epsilon)
    for name in ("resamples", "max_samples", "max_planes", "top"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ReportError(f"--{name.replace('_', '-')} must be >= 1")
    memory_budget_bytes(args.memory_budget)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ReportError(f"--out {args.out} exists and is not a directory")


def _subset(total: int, size: int, seed: int) -> np.ndarray:
    if total <= size:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size, replace=False))


def _layer_keys(paths: list[str], args) -> list[str | None]:
    """The layers to report: ``--key`` values in order, every array for ``--key all``."""
    keys = args.key or [None]
    if "all" not in keys:
        return list(dict.fromkeys(keys))
    names = _array_names(paths[0])
    labels = args.labels if args.labels in names else None
    chosen = [k for k in names if k != labels and _array_rank(paths[0], k) >= 2]
    if not chosen:
        raise ReportError(f"--key all: {paths[0]} holds no (N, n) array")
    return chosen


def _array_names(path: str) -> list[str]:
    if not os.path.exists(path):
        raise ReportError(f"no such file: {path}")
    if path.lower().endswith(".npy"):
        raise ReportError(f"--key applies to .npz and .safetensors files; {path} holds one array")
    if path.lower().endswith(".npz"):
        with zipfile.ZipFile(path) as archive:
            return [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
    from safetensors import safe_open

    try:
        with safe_open(path, framework="np") as f:
            return list(f.keys())
    except Exception as error:
        raise ReportError(f"cannot read {path}: {str(error).splitlines()[0]}") from None


def _array_rank(path: str, key: str) -> int:
    return len(ArraySource(path, key).shape)


class _Layer:
    """One layer's inputs, checked, and the plan of its analysis (before anything is computed)."""

    def __init__(self, paths, key, args, budget):
        from srm_jax import neurons
        from srm_jax import report as report_lib

        self.source = ShardedSource(paths, key)
        self.samples = Samples(self.source, args.features)
        self.basis = load_basis(args.basis, self.samples.n)
        self.labels = (None if args.labels is None else
                       load_labels(args.labels, self.source, self.samples))
        import jax

        k_planes, self.k_report = jax.random.split(jax.random.key(args.seed))
        self.pairs, self.max_planes, self.summaries = report_lib.choose_planes(
            self.basis, args.planes, args.epsilon, max_planes=args.max_planes, key=k_planes)
        num_planes = int(self.pairs.shape[0])
        if self.summaries:
            self.samples.resize(SUMMARY_BATCH_ELEMENTS, self.samples.total)
        self.top = report_lib.check_top(args.top, num_planes)
        self.signed = neurons.signed_neurons(self.basis)
        self.max_samples = (report_lib.default_max_samples(
            self.samples.n, self.signed.num_directions, args.resamples)
            if args.max_samples is None else args.max_samples)
        self.chosen = _subset(self.samples.total, self.max_samples, args.seed)
        report_lib.check_memory(
            int(self.chosen.shape[0]), self.samples.n, int(self.basis.shape[0]),
            self.signed.num_directions, num_planes, NUM_ANGLES, args.resamples, budget,
            summaries=self.summaries)


#: Angles of the report's SRM curves (the default grid).
NUM_ANGLES = 100


def run_report(args) -> int:
    """``srm-jax report``: check every input, stream, analyse, write (see the module doc)."""
    from srm_jax.report import memory_budget_bytes

    _check_settings(args)
    budget = memory_budget_bytes(args.memory_budget)
    paths = shard_paths(args.activations)
    keys = _layer_keys(paths, args)
    layers = [_Layer(paths, key, args, budget) for key in keys]  # every input, checked

    import srm_jax
    from srm_jax import report as report_lib

    outputs = []
    for layer in layers:
        report = _analyse(layer, args, budget)
        summary = dict(report.summary)
        source, samples = layer.source, layer.samples
        summary.update({
            "input": {"path": source.path, "key": source.key, "shape": list(source.shape),
                      "dtype": str(source.dtype), "features": samples.features,
                      "num_shards": len(source.shards)},
            "basis": args.basis,
            "planes": args.planes,
            "max_planes": layer.max_planes,
            "max_samples": layer.max_samples,
            "seed": args.seed,
            "labels": args.labels,
            "memory_budget_gib": args.memory_budget,
            "srm_jax_version": srm_jax.__version__,
        })
        outputs.append((report, summary))
    if len(outputs) == 1:
        report, summary = outputs[0]
        _write(outputs, args.out, layers[0].source.name)
        sentence = summary["verdict_sentence"]
    else:
        _write(outputs, args.out, layers[0].source.name.rsplit("[", 1)[0])
        sentence = report_lib.layers_sentence([summary for _, summary in outputs])
    print(f"{sentence[0].upper()}{sentence[1:]}. Report: {os.path.join(args.out, 'report.md')}")
    return 0


def _analyse(layer: _Layer, args, budget: float):
    """Streams one layer's samples (SRM counts and the measures' sums), then its report."""
    import jax
    from tqdm import tqdm

    import srm_jax
    from srm_jax import basis_measures
    from srm_jax import report as report_lib

    source, samples, chosen = layer.source, layer.samples, layer.chosen
    directions = layer.signed.directions(layer.basis)
    batch_sums = jax.jit(basis_measures.activation_sums)
    sums = [basis_measures.zero_sums(layer.signed.num_directions)]
    picked: list[np.ndarray] = []

    def stream():
        start = 0
        with tqdm(total=samples.total, unit=" samples", unit_scale=True, disable=None,
                  desc=f"SRM {source.key or ''}".strip(), file=sys.stderr) as bar:
            for batch in samples.batches():
                stop = start + batch.shape[0]
                lo, hi = np.searchsorted(chosen, [start, stop])
                picked.append(batch[chosen[lo:hi] - start])
                start = stop
                pad = samples.batch_samples - batch.shape[0]  # one compiled shape
                padded = np.pad(batch, ((0, pad), (0, 0)), constant_values=np.nan) if pad > 0 \
                    else batch
                sums[0] = basis_measures.combine_sums(sums[0], batch_sums(padded, directions))
                bar.update(batch.shape[0])
                yield batch

    accumulate = srm_jax.accumulate_summary if layer.summaries else srm_jax.accumulate_srm
    result = accumulate(stream(), layer.basis, epsilon=args.epsilon, planes=layer.pairs,
                        batch_size=samples.batch_samples)
    if int(result.num_samples) == 0:
        raise ReportError(
            f"every row of {source.name} contains NaN or Inf: nothing to measure"
        )
    peaks = None
    if layer.summaries:  # a second pass: the exact curves of the planes with most lit counts
        candidates = report_lib.candidate_planes(result)
        with tqdm(total=samples.total, unit=" samples", unit_scale=True, disable=None,
                  desc=f"top planes {source.key or ''}".strip(), file=sys.stderr) as bar:
            def again():
                for batch in samples.batches():
                    bar.update(batch.shape[0])
                    yield batch

            peaks = srm_jax.accumulate_srm(again(), layer.basis, epsilon=args.epsilon,
                                           planes=layer.pairs[candidates],
                                           batch_size=samples.batch_samples)
    subset = np.concatenate(picked, axis=0)
    labels = layer.labels
    return report_lib.srm_report(
        subset, layer.basis, key=layer.k_report, epsilon=args.epsilon,
        labels=None if labels is None else labels[chosen], planes=layer.pairs,
        num_resamples=args.resamples, statistic=args.statistic, result=result,
        num_rows=samples.total, top=layer.top, memory_budget=budget, measures=sums[0],
        peaks=peaks,
    )


def _layer_directory(key: str | None, index: int) -> str:
    """The figures' folder of one layer of a multi-layer report: ``layers/<key>``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(key)).strip(".")
    return os.path.join(LAYERS_DIR, safe or f"layer{index}")


def _write(outputs, out: str, source_name: str) -> None:
    """Writes every output to a temporary directory, then moves them into ``out``.

    One layer: ``report.json``, ``report.md`` and the figures, as ever. Several layers: the
    figures of each in ``layers/<key>/``, one ``report.json`` with an entry per layer and the
    table across layers, and one ``report.md`` with a section per layer.
    """
    from srm_jax import report as report_lib

    scratch = tempfile.mkdtemp(prefix="srm-report-")
    try:
        if len(outputs) == 1:
            report, summary = outputs[0]
            figures = report_lib.write_figures(report, scratch)
            summary["figures"] = figures
            document, markdown = summary, report_lib.report_markdown(summary, figures,
                                                                     source=source_name)
        else:
            summaries, all_figures = [], []
            for i, (report, summary) in enumerate(outputs):
                folder = _layer_directory(summary["input"]["key"], i)
                os.makedirs(os.path.join(scratch, folder))
                figures = report_lib.write_figures(report, os.path.join(scratch, folder))
                figures = {k: f"{folder}/{v}" for k, v in figures.items()}
                summary["figures"] = figures
                summaries.append(summary)
                all_figures.append(figures)
            document = report_lib.layers_summary(summaries)
            markdown = report_lib.layers_markdown(summaries, all_figures, source=source_name)
        with open(os.path.join(scratch, "report.json"), "w") as fh:
            json.dump(report_lib.json_safe(document), fh, indent=2, allow_nan=False)
            fh.write("\n")
        with open(os.path.join(scratch, "report.md"), "w") as fh:
            fh.write(markdown)
        written = set(os.listdir(scratch))
        if not os.path.exists(out):
            os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
            shutil.move(scratch, out)
            return
        for name in (*OUTPUT_FILES, LAYERS_DIR):  # replace this report's files; drop stale ones
            target = os.path.join(out, name)
            if os.path.isdir(target) and name == LAYERS_DIR:
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)
            if name in written:
                shutil.move(os.path.join(scratch, name), target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
