"""The report's per-row inputs and facts: tokens, vocabularies, row and mean facts, centring.

Every piece is checked on its own against direct NumPy definitions (no full report runs here):
tokens against the arrays read straight from the files, :class:`RowFacts` and
:class:`MeanFacts` against float64 cosines, the centred stream against ``raw − mean``.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
from safetensors import safe_open

from srm_jax.neurons import signed_neurons
from srm_jax.report import ReportError, cli
from srm_jax.report.planes import choose_planes
from srm_jax.report.reading import (
    Samples,
    ShardedSource,
    layer_keys,
    load_tokens,
    load_vocab,
    shard_paths,
)
from srm_jax.report.rows import (
    combine_row_sums,
    coordinate_facts,
    mean_facts,
    row_facts_batch,
    row_sums_batch,
    vector_lookup,
)
from srm_jax.report.stream import stream_layer
from tests.conftest import run_report as run

MINILM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "minilm")


def standard(n: int) -> np.ndarray:
    return np.concatenate([np.eye(n), -np.eye(n)])


def source_of(path, key=None, features=None):
    source = ShardedSource(shard_paths([str(path)]), key)
    return source, Samples(source, features)


# --- tokens ---------------------------------------------------------------------------------

def test_tokens_from_a_key_of_every_shard():
    source, samples = source_of(MINILM, "resid3")
    expected = []
    for path in shard_paths([MINILM]):
        with safe_open(path, framework="np") as f:
            expected.append(f.get_tensor("tokens"))
    tokens = load_tokens("tokens", source, samples)
    assert tokens.dtype == np.int64
    np.testing.assert_array_equal(tokens, np.concatenate(expected))
    assert tokens.shape == (samples.total,)


def test_tokens_from_npy_repeat_per_position(tmp_path, rng):
    x = rng.normal(size=(7, 3, 4)).astype(np.float32)
    ids = rng.integers(0, 100, 7).astype(np.int32)
    np.save(tmp_path / "acts.npy", x)
    np.save(tmp_path / "ids.npy", ids)
    source, samples = source_of(tmp_path / "acts.npy", features="last")
    tokens = load_tokens(str(tmp_path / "ids.npy"), source, samples)
    np.testing.assert_array_equal(tokens, np.repeat(ids, 3))
    source, samples = source_of(tmp_path / "acts.npy", features="flatten")
    np.testing.assert_array_equal(load_tokens(str(tmp_path / "ids.npy"), source, samples), ids)


@pytest.mark.parametrize("bad, words", [
    (np.arange(5), "shape"),                          # one id short
    (np.arange(6, dtype=np.float32), "dtype"),        # integral floats are still not ids
    (np.array([0, 1, 2, -1, 4, 5]), "negative"),
    (np.array([[0, 1]] * 6), "shape"),
])
def test_bad_tokens_are_one_line_errors_naming_the_file(tmp_path, rng, bad, words):
    np.save(tmp_path / "acts.npy", rng.normal(size=(6, 4)).astype(np.float32))
    np.save(tmp_path / "ids.npy", bad)
    source, samples = source_of(tmp_path / "acts.npy")
    with pytest.raises(ReportError, match=words) as error:
        load_tokens(str(tmp_path / "ids.npy"), source, samples)
    assert str(tmp_path / "ids.npy") in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_tokens_key_names_the_file():
    source, samples = source_of(MINILM, "resid3")
    with pytest.raises(ReportError, match="tokens='nope': no such file and no array named"):
        load_tokens("nope", source, samples)


def test_key_all_skips_the_tokens_and_labels(tmp_path, rng):
    path = tmp_path / "acts.npz"
    np.savez(path, a=rng.normal(size=(5, 4)), ids=np.zeros((5, 2), np.int32),
             y=np.zeros((5, 3), np.int32))
    assert layer_keys([str(path)], ["all"]) == ["a", "ids", "y"]
    assert layer_keys([str(path)], ["all"], "y", "ids") == ["a"]
    assert layer_keys(shard_paths([MINILM]), ["all"], None, "tokens") == ["mlp3", "resid3"]


# --- vocabularies ---------------------------------------------------------------------------

def test_vocab_txt_line_i_is_token_i(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n[CLS]\nhello\n##ing\n", encoding="utf-8")
    assert load_vocab(str(tmp_path / "vocab.txt")) == {0: "[PAD]", 1: "[CLS]", 2: "hello",
                                                       3: "##ing"}
    vocab = load_vocab(os.path.join(MINILM, "vocab.txt"))
    with open(os.path.join(MINILM, "vocab.txt"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert len(vocab) == 30522 and vocab[101] == lines[101] == "[CLS]"


def test_tokenizer_json_vocab_and_added_tokens(tmp_path):
    data = {"added_tokens": [{"id": 3, "content": "<extra>", "special": True}],
            "model": {"type": "BPE", "vocab": {"a": 0, "Ġb": 1, "cd": 2}, "merges": []}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    assert load_vocab(str(tmp_path / "tokenizer.json")) == {0: "a", 1: "Ġb", 2: "cd",
                                                            3: "<extra>"}
    unigram = {"model": {"type": "Unigram", "vocab": [["<unk>", 0.0], ["▁x", -1.5]]}}
    (tmp_path / "unigram.json").write_text(json.dumps(unigram), encoding="utf-8")
    assert load_vocab(str(tmp_path / "unigram.json")) == {0: "<unk>", 1: "▁x"}


def test_bad_vocab_files(tmp_path):
    with pytest.raises(ReportError, match="no such file"):
        load_vocab(str(tmp_path / "missing.txt"))
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ReportError, match="cannot read the vocabulary"):
        load_vocab(str(tmp_path / "broken.json"))
    (tmp_path / "other.json").write_text(json.dumps({"model": {"vocab": 3}}), encoding="utf-8")
    with pytest.raises(ReportError, match="no token"):
        load_vocab(str(tmp_path / "other.json"))


# --- row and mean facts ---------------------------------------------------------------------

def reference_facts(x: np.ndarray, basis: np.ndarray):
    """Float64 largest |cos| per row and the vector of largest cos (a ± basis: the positive)."""
    unit = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    d = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = d @ unit.T
    return np.max(np.abs(cos), axis=1), np.argmax(cos, axis=1)


def planted_rows(rng, num: int, n: int):
    x = rng.normal(size=(num, n)).astype(np.float32)
    x[5] = 0.0
    x[5, 2] = 4.0    # +e_2
    x[9] = 0.0
    x[9, 1] = -0.5   # −e_1
    x[[3, 11]] = np.nan
    x[17, 0] = np.inf
    return x


def test_row_facts_against_numpy_on_a_pm_basis(rng):
    n = 6
    x = planted_rows(rng, 40, n)
    basis = standard(n)
    max_cos, vector = map(np.asarray, row_facts_batch(x, basis.astype(np.float32)))
    bad = ~np.all(np.isfinite(x), axis=1)
    ref_cos, ref_vector = reference_facts(np.where(bad[:, None], 1.0, x), basis)
    assert max_cos.dtype == np.float32 and vector.dtype == np.int32
    assert np.all(np.isnan(max_cos[bad])) and np.all(vector[bad] == -1)
    np.testing.assert_allclose(max_cos[~bad], ref_cos[~bad], rtol=1e-6)
    np.testing.assert_array_equal(vector[~bad], ref_vector[~bad])
    assert vector[5] == 2 and vector[9] == n + 1  # +e_2 names +e_2; −e_1 names −e_1
    assert max_cos[5] == max_cos[9] == 1.0


def test_row_facts_on_a_general_basis_and_a_zero_row(rng):
    basis = rng.normal(size=(9, 5))
    x = rng.normal(size=(30, 5)).astype(np.float32)
    x[4] = 0.0
    unit = (basis / np.linalg.norm(basis, axis=1, keepdims=True)).astype(np.float32)
    max_cos, vector = map(np.asarray, row_facts_batch(x, unit))
    keep = np.arange(30) != 4
    cos = np.zeros((30, 9))
    cos[keep] = (x[keep] / np.linalg.norm(x[keep], axis=1, keepdims=True)) @ unit.T.astype(float)
    np.testing.assert_allclose(max_cos[keep], np.max(np.abs(cos[keep]), axis=1), rtol=1e-5)
    np.testing.assert_array_equal(vector[keep], np.argmax(np.abs(cos[keep]), axis=1))
    assert max_cos[4] == 0.0 and vector[4] == -1
    chunked = row_facts_batch(x, unit, 7)  # in chunks of 7 rows, the last one short
    np.testing.assert_array_equal(np.asarray(chunked[0]), max_cos)
    np.testing.assert_array_equal(np.asarray(chunked[1]), vector)


def partial_pm_basis(rng, n: int) -> np.ndarray:
    """A rotated ±-orthonormal basis with the antipodes of only some directions, shuffled."""
    q = np.linalg.qr(rng.normal(size=(n, n)))[0]
    return rng.permutation(np.concatenate([q, -q[: n // 2]]))


@pytest.mark.parametrize("kind", ["standard", "standard_plus", "partial_pm", "general"])
def test_facts_from_coordinates_equal_facts_from_the_basis(rng, kind):
    n = 6
    basis = {"standard": lambda: standard(n), "standard_plus": lambda: np.eye(n),
             "partial_pm": lambda: partial_pm_basis(rng, n),
             "general": lambda: rng.normal(size=(9, n))}[kind]()
    x = planted_rows(rng, 40, n)
    x[20] = 0.0
    x[20, :2] = [-1.0, 1.0]  # a tie between two directions, of opposite signs
    x[21] = -np.eye(n)[3] * 2  # a negative one-hot row
    x[22] = 0.0              # a zero row
    neurons = signed_neurons(basis)
    unit = (basis / np.linalg.norm(basis, axis=1, keepdims=True)).astype(np.float32)
    directions = np.asarray(neurons.directions(basis))
    norms = np.linalg.norm(np.where(np.isfinite(x), x, np.nan), axis=1)
    with np.errstate(invalid="ignore"):
        coordinates = x.astype(np.float64) @ directions.T.astype(np.float64)
    got = coordinate_facts(coordinates.astype(np.float32), norms.astype(np.float32),
                           vector_lookup(neurons))
    want = row_facts_batch(x, unit)
    np.testing.assert_allclose(np.asarray(got[0]), np.asarray(want[0]), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
    if kind == "standard":
        assert int(got[1][20]) == 1 and int(got[1][21]) == n + 3  # +e_1 (positive); −e_3
    if kind == "standard_plus":
        assert int(got[1][21]) == 3  # no −e_3: +e_3 has the largest |cos|


def test_mean_facts_against_numpy(rng):
    n = 5
    x = (rng.normal(size=(200, n)) + np.array([0.0, 3.0, 0.0, 0.0, 0.0])).astype(np.float32)
    x[[7, 8]] = np.nan
    x[150, 2] = -np.inf  # a row with one bad entry is left out whole
    sums = combine_row_sums([row_sums_batch(x[:120]), row_sums_batch(x[120:])])
    basis = standard(n)
    facts = mean_facts(*sums, basis)
    finite = x[np.all(np.isfinite(x), axis=1)].astype(np.float64)
    mean = finite.mean(axis=0)
    assert sums[2] == 197
    np.testing.assert_allclose(facts.mean, mean, rtol=1e-5)
    assert facts.share_of_squared_norm == pytest.approx(
        mean @ mean / np.mean(np.sum(finite**2, axis=1)), rel=1e-5)
    cos = basis @ mean / np.linalg.norm(mean)
    assert facts.max_abs_cos == pytest.approx(np.max(np.abs(cos)), rel=1e-6)
    assert facts.vector == int(np.argmax(cos)) == 1
    # Exact float64 sums give the float64 answer; a negative mean names the negative vector.
    exact = mean_facts(-finite.sum(0), np.sum(finite**2), len(finite), basis)
    np.testing.assert_allclose(exact.mean, -mean, rtol=1e-12)
    assert exact.vector == n + 1
    assert np.isnan(mean_facts(np.zeros(n), 0.0, 0, basis).share_of_squared_norm)


# --- streaming ------------------------------------------------------------------------------

@pytest.mark.parametrize("center", [False, True])
def test_streamed_row_facts_mean_and_centred_subset(tmp_path, rng, center):
    n, num = 4, 300
    x = planted_rows(rng, num, n) + np.float32(2.0)
    np.save(tmp_path / "acts.npy", x)
    source, samples = source_of(tmp_path / "acts.npy")
    samples.resize(64 * n, 64)  # five batches, the last one padded
    basis = standard(n)
    pairs, _, summaries = choose_planes(basis, "comb", 0.9, key=jax.random.key(0))
    chosen = np.sort(rng.choice(num, 50, replace=False))
    streamed = stream_layer(samples, basis, pairs, signed_neurons(basis), chosen, epsilon=0.9,
                            summaries=summaries, center=center)
    finite = np.all(np.isfinite(x), axis=1)
    mean = x[finite].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(streamed.mean.mean, mean, rtol=1e-5)
    measured = x - mean.astype(np.float32) if center else x
    ref_cos, ref_vector = reference_facts(np.where(finite[:, None], measured, 1.0), basis)
    assert streamed.rows.max_cos.shape == streamed.rows.vector.shape == (num,)
    np.testing.assert_allclose(streamed.rows.max_cos[finite], ref_cos[finite], rtol=1e-5)
    np.testing.assert_array_equal(streamed.rows.vector[finite], ref_vector[finite])
    assert np.all(np.isnan(streamed.rows.max_cos[~finite]))
    np.testing.assert_allclose(streamed.subset, measured[chosen], rtol=1e-6, atol=1e-6)
    if center:
        np.testing.assert_array_equal(streamed.uncentered_subset, x[chosen])
    else:
        assert streamed.uncentered_subset is None


# --- command line ---------------------------------------------------------------------------

def test_flag_errors_are_one_line(tmp_path, rng, capsys):
    acts = tmp_path / "acts.npy"
    np.save(acts, rng.normal(size=(20, 4)).astype(np.float32))
    np.save(tmp_path / "floats.npy", np.arange(20, dtype=np.float64))
    cases = {
        "vocab without tokens": (["--vocab", os.path.join(MINILM, "vocab.txt")],
                                 ["--vocab", "--tokens"]),
        "float tokens": (["--tokens", tmp_path / "floats.npy"], ["--tokens", "floats.npy"]),
        "missing tokens key": (["--key", "resid3", "--tokens", "nope"], ["--tokens nope"]),
    }
    for name, (flags, words) in cases.items():
        files = [MINILM] if "--key" in flags else [acts]
        status, _, err = run([*files, *flags, "--out", tmp_path / "out"], capsys)
        assert status == 2, name
        assert err.count("\n") == 1 and err.startswith("srm-jax report: error: "), err
        assert all(word in err for word in words), err
    assert not os.path.exists(tmp_path / "out")


def test_flags_reach_the_settings():
    parser = cli.build_parser()
    args = parser.parse_args(["report", "a.npy", "--tokens", "ids", "--vocab", "v.txt",
                              "--center"])
    settings = cli.settings_from(args)
    assert (settings.tokens, settings.vocab, settings.center) == ("ids", "v.txt", True)
    assert cli.settings_from(parser.parse_args(["report", "a.npy"])).center is False
    assert cli.flag_message("vocab= needs tokens='ids'") == "--vocab needs --tokens ids"


def test_default_subset_is_sized_for_the_products_and_the_enumeration():
    """default_max_samples: the product term alone at ε ≤ 0 (1,536 units, 99 rotations: 2,568
    rows); the enumeration term where leaders are many (384 units at ε = 0.2), whose expected
    leaders ``K · erfc(√(nτ/2))`` match those of uniform unit vectors (Monte Carlo)."""
    from srm_jax.report import (
        DEFAULT_MAX_SAMPLES,
        MIN_MAX_SAMPLES,
        ROTATION_TEST_ENUMERATION,
        ROTATION_TEST_WORK,
        default_max_samples,
    )

    assert default_max_samples(1536, 1536, 99) == int(ROTATION_TEST_WORK // (99 * 1536**2))
    assert default_max_samples(1536, 1536, 99, least_epsilon=0.2) == 2568  # products bind
    assert default_max_samples(384, 384, 99) == DEFAULT_MAX_SAMPLES
    assert default_max_samples(384, 384, 99, least_epsilon=-0.5) == DEFAULT_MAX_SAMPLES
    assert default_max_samples(8192, 8192, 999, least_epsilon=0.2) == MIN_MAX_SAMPLES
    n, k, eps = 384, 99, 0.2
    u = np.random.default_rng(5).standard_normal((20_000, n))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    leaders = float(np.mean(np.sum(u**2 >= eps**2 / 2, axis=1)))
    assert 1.5 < leaders < 3.0  # a handful: the enumeration, not the product, is the cost
    size = default_max_samples(n, n, k, least_epsilon=eps)
    monte_carlo = ROTATION_TEST_ENUMERATION / (k * n * (1 + leaders))
    assert abs(size - monte_carlo) <= 0.05 * monte_carlo
    assert size < DEFAULT_MAX_SAMPLES
    # A coherent basis (c_max > 0) lowers τ: more leaders, fewer rows.
    assert default_max_samples(n, n, k, least_epsilon=eps, max_cosine=0.3) < size
