"""Reading a report's inputs: arrays of ``.npy``, ``.npz`` and ``.safetensors`` files, lazily.

An :class:`ArraySource` reads one array along axis 0 without holding it (memory-mapped ``.npy``
windows, lazy safetensors slices, sequential ``.npz`` reads); a :class:`ShardedSource` reads
one array from several files in turn; :class:`Samples` turns the rows into SRM samples (centred
ones with a shift). Labels, tokens, a vocabulary, a basis file and the layers of a multi-array
file are read here too. Every problem is a
:class:`ReportError` in one line naming the file.
"""

from __future__ import annotations

import copy
import json
import os
import zipfile
from collections.abc import Iterator

import ml_dtypes  # noqa: F401  (registers bfloat16 with NumPy for bf16 tensors)
import numpy as np
from safetensors import safe_open

from srm_jax.report.bases import BASIS_SPECS, basis_from_spec
from srm_jax.report.checks import check_basis
from srm_jax.report.errors import ReportError

SUFFIXES = (".npy", ".npz", ".safetensors")
#: How rows of more than two axes become samples: one a row, or one a position (last axis).
FEATURES = ("flatten", "last")
#: Target size of one streamed batch, in float32 elements.
BATCH_ELEMENTS = 1 << 19
#: The same when every plane is measured through summaries: a batch's fixed cost (adding the
#: ``(P,)`` plane totals, the kernel's per-plane accumulator) is paid once per batch.
SUMMARY_BATCH_ELEMENTS = 1 << 23
MAX_BATCH_SAMPLES = 1 << 16


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
                f"{self.path} holds several arrays ({', '.join(names)}): pick one with key="
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
            raise ReportError(f"key= applies to .npz and .safetensors files; {self.path} holds "
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
    """How the file's rows become SRM samples ``(S, n)`` (``features``: ``"flatten"``, one
    sample per row, or ``"last"``, one per position over the last axis); with ``shift``
    (``(n,)``), every sample less ``shift`` (centred rows: ``shift`` their mean)."""

    def __init__(self, source: ArraySource, features: str | None,
                 shift: np.ndarray | None = None):
        shape = source.shape
        if len(shape) < 2:
            raise ReportError(
                f"{source.name} has shape {shape}: the activations must be (N, n), or "
                "(N, ..., n) with features="
            )
        if shape[0] == 0:
            raise ReportError(f"{source.name} has no rows (shape {shape})")
        if len(shape) > 2 and features is None:
            raise ReportError(
                f"{source.name} has shape {shape}: pass features='flatten' (one sample per "
                "row) or features='last' (one sample per position, over the last axis)"
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
        self.shift = None if shift is None else np.asarray(shift, np.float32).reshape(self.n)
        self.resize(BATCH_ELEMENTS, MAX_BATCH_SAMPLES)

    def shifted(self, shift: np.ndarray | None) -> Samples:
        """The same samples less ``shift`` (a copy; ``None``: the raw samples)."""
        other = copy.copy(self)
        other.shift = None if shift is None else np.asarray(shift, np.float32).reshape(self.n)
        return other

    def resize(self, elements: int, max_samples: int) -> None:
        """Streams batches of about ``elements`` float32 values (at most ``max_samples`` rows)."""
        target = max(1, min(int(max_samples), int(elements) // self.n))
        self.rows_per_batch = max(1, target // self.per_row)
        self.batch_samples = self.rows_per_batch * self.per_row

    def raw_batches(self) -> Iterator[np.ndarray]:
        """``(B, n)`` float32 sample blocks in file order, never shifted."""
        for block in self.source.rows(self.rows_per_batch):
            yield np.asarray(block, dtype=np.float32).reshape(-1, self.n)

    def centre(self, batch: np.ndarray) -> np.ndarray:
        """A raw batch less ``shift`` (the batch itself without one)."""
        return batch if self.shift is None else batch - self.shift

    def batches(self) -> Iterator[np.ndarray]:
        """``(B, n)`` float32 sample blocks in file order, less ``shift``."""
        for block in self.raw_batches():
            yield self.centre(block)


def _per_row_array(spec: str, source: ShardedSource, samples: Samples,
                   what: str) -> tuple[np.ndarray, str]:
    """A per-sample array (labels, tokens) and its name: a ``.npy`` file or an array ``spec``
    of every shard of the activations; one value per row, repeated over the positions of
    ``features='last'`` (or one per position)."""
    if os.path.exists(spec) or spec.lower().endswith(tuple(SUFFIXES)):
        values = ArraySource(spec, None, what=what).read()
        name = spec
    elif spec in source.keys():
        values = source.read_array(spec, what=what)
        name = f"{source.name.rsplit('[', 1)[0]}[{spec!r}]"
    else:
        first = source.shards[0].path
        where = f" and no array named {spec!r} in {first}" if source.keys() else ""
        raise ReportError(f"{what}='{spec}': no such file{where}")
    values = np.asarray(values)
    rows = source.shape[0]
    if values.shape == (rows,):
        if samples.per_row > 1:
            values = np.repeat(values, samples.per_row)
    elif samples.features == "last" and values.shape == source.shape[:-1]:
        values = values.reshape(-1)
    else:
        raise ReportError(
            f"{what} {name} have shape {values.shape} but the activations have {rows} rows: "
            f"one {what[:-1]} per row is needed"
        )
    return values, name


def load_labels(spec: str, source: ShardedSource, samples: Samples) -> np.ndarray:
    """Per-sample int labels from a ``.npy`` file or an array of the activations' file."""
    labels, name = _per_row_array(spec, source, samples, "labels")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ReportError(f"labels {name} must be integer classes")
    elif labels.dtype.kind not in "biu":
        raise ReportError(f"labels {name} have dtype {labels.dtype}: integer classes needed")
    labels = labels.astype(np.int64)
    if not np.any(labels >= 0):
        raise ReportError(f"labels {name} have no non-negative class")
    return labels


def load_tokens(spec: str, source: ShardedSource, samples: Samples) -> np.ndarray:
    """Per-sample int64 token ids from a ``.npy`` file or an array of the activations' file
    (every shard's, like labels): integer and non-negative."""
    tokens, name = _per_row_array(spec, source, samples, "tokens")
    if tokens.dtype.kind not in "iu":
        raise ReportError(f"tokens {name} have dtype {tokens.dtype}: integer token ids needed")
    if tokens.size and tokens.min() < 0:
        raise ReportError(f"tokens {name} hold negative ids (least {tokens.min()}): token ids "
                          "are non-negative")
    return tokens.astype(np.int64)


def load_vocab(path: str) -> dict[int, str]:
    """Token texts by id: a ``vocab.txt`` (line ``i`` is token ``i``, as BERT's WordPiece) or a
    Hugging Face ``tokenizer.json`` (``model.vocab`` and ``added_tokens``; a ``vocab.json``
    mapping token to id is read the same way)."""
    if not os.path.isfile(path):
        raise ReportError(f"vocab='{path}': no such file")
    try:
        if path.lower().endswith(".json"):
            with open(path, encoding="utf-8") as f:
                return _json_vocab(json.load(f), path)
        with open(path, encoding="utf-8", newline="") as f:
            return {i: line.rstrip("\r\n") for i, line in enumerate(f)}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ReportError(f"cannot read the vocabulary {path}: {reason}") from None


def _json_vocab(data, path: str) -> dict[int, str]:
    """The vocabulary of a parsed ``tokenizer.json`` (or ``vocab.json``)."""
    model = data.get("model", data) if isinstance(data, dict) else None
    vocab = model.get("vocab") if isinstance(model, dict) and "vocab" in model else model
    if isinstance(vocab, dict) and all(isinstance(i, int) for i in vocab.values()):
        texts = {int(i): str(token) for token, i in vocab.items()}
    elif isinstance(vocab, list) and all(isinstance(e, (list, str)) for e in vocab):
        # A Unigram model lists [token, score] pairs in id order.
        texts = {i: str(e[0] if isinstance(e, list) else e) for i, e in enumerate(vocab)}
    else:
        raise ReportError(f"the vocabulary {path} holds no token → id map (model.vocab of a "
                          "tokenizer.json, or a vocab.json)")
    for added in data.get("added_tokens", []) if isinstance(data, dict) else []:
        if isinstance(added, dict) and isinstance(added.get("id"), int) and "content" in added:
            texts[added["id"]] = str(added["content"])
    return texts


def load_basis(spec: str, n: int) -> np.ndarray:
    """The basis ``spec``: a named construction (:func:`basis_from_spec`) or an ``(m, n)`` array
    file."""

    if spec.split(":")[0] in {s.split(":")[0] for s in BASIS_SPECS} and not os.path.exists(spec):
        return check_basis(basis_from_spec(spec, n), n)
    if not (os.path.exists(spec) or spec.lower().endswith(SUFFIXES)):
        basis_from_spec(spec, n)  # raises: names the valid specifications
    source = ArraySource(spec, None, what="basis", prefer="basis")
    if len(source.shape) != 2:
        raise ReportError(f"the basis {source.name} must be an (m, n) array, got shape "
                          f"{source.shape}")
    return check_basis(source.read(), n)



def layer_keys(paths: list[str], keys: list[str] | None, labels: str | None = None,
               tokens: str | None = None) -> list[str | None]:
    """The layers to report: ``keys`` in order (``None``: the file's one array), or for a key
    ``"all"`` every array of rank 2 or more of the first file but the labels' and the tokens'
    (``labels``, ``tokens``: their keys)."""
    keys = keys or [None]
    if "all" not in keys:
        return list(dict.fromkeys(keys))
    names = _array_names(paths[0])
    skip = {labels, tokens}
    chosen = [k for k in names if k not in skip and len(ArraySource(paths[0], k).shape) >= 2]
    if not chosen:
        raise ReportError(f"key='all': {paths[0]} holds no (N, n) array")
    return chosen


def _array_names(path: str) -> list[str]:
    """Names of the arrays of a multi-array file."""
    if not os.path.exists(path):
        raise ReportError(f"no such file: {path}")
    if path.lower().endswith(".npy"):
        raise ReportError(f"key= applies to .npz and .safetensors files; {path} holds one array")
    if path.lower().endswith(".npz"):
        with zipfile.ZipFile(path) as archive:
            return [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
    try:
        with safe_open(path, framework="np") as f:
            return list(f.keys())
    except Exception as error:
        raise ReportError(f"cannot read {path}: {str(error).splitlines()[0]}") from None
