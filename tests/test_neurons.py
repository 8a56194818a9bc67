"""Which neurons (``srm_jax.neurons``): the neurons of a basis and the per-plane rankings, each
against a direct NumPy evaluation (float64 loops over rows and planes) on random inputs, ties
and empty measurements included."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from srm_jax import neurons
from tests.conftest import random_orthogonal

SAME = 1.0 - 1e-6  # |cos| above it: one direction
ORTHOGONAL = 1e-5  # |cos| below it: orthogonal


def reference_signed_neurons(basis):
    """``(orthonormal, standard, direction, sign, neuron, representative)`` by a loop over the
    rows: each row joins the first earlier direction it is (anti)parallel to, else opens one."""
    b = np.asarray(basis, np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    m = len(b)
    cos = b @ b.T
    index = np.arange(m)
    if not np.all((np.abs(cos) < ORTHOGONAL) | (np.abs(cos) > SAME)):
        return False, False, index, np.ones(m, int), index, index
    representative, direction, sign = [], np.empty(m, int), np.empty(m, int)
    for v in range(m):
        for k, r in enumerate(representative):
            if abs(cos[v, r]) > SAME:
                direction[v], sign[v] = k, np.sign(cos[v, r])
                break
        else:
            direction[v], sign[v] = len(representative), 1
            representative.append(v)
    representative = np.array(representative)
    coordinate = np.argmax(np.abs(b), axis=1)
    standard = bool(np.all(np.abs(b[index, coordinate]) > SAME))
    if standard:
        return (True, True, direction, np.sign(b[index, coordinate]).astype(int),
                coordinate[representative], representative)
    return True, False, direction, sign, np.arange(len(representative)), representative


def _check_signed(basis):
    got = neurons.signed_neurons(basis)
    expect = reference_signed_neurons(basis)
    assert (got.orthonormal, got.standard) == expect[:2]
    for field, value in zip(("direction", "sign", "neuron", "representative"), expect[2:],
                            strict=True):
        np.testing.assert_array_equal(getattr(got, field), value, err_msg=field)
    assert got.num_directions == len(expect[4])
    return got


def _signed_rows(rng, q, num):
    """``num`` rows ``±q_k`` of the orthonormal rows of ``q``, shuffled, some directions
    present once (either sign), some twice, some not at all."""
    k = rng.integers(0, len(q), num)
    return q[k] * rng.choice([-1.0, 1.0], num)[:, None]


def test_signed_neurons_of_shuffled_standard_rows(rng):
    n = 6
    basis = _signed_rows(rng, np.eye(n), 9)
    basis[0] *= 2.5  # rows need not be unit
    got = _check_signed(basis)
    assert got.standard
    # The direction of ±e_i is +e_i: a representative −e_i has sign −1.
    directions = np.asarray(got.directions(basis))
    np.testing.assert_array_equal(directions, np.eye(n)[got.neuron])


def test_signed_neurons_of_a_rotated_plus_minus_basis(rng):
    n = 5
    q = random_orthogonal(rng, n)
    basis = _signed_rows(rng, q, 8)
    got = _check_signed(basis)
    assert got.orthonormal and not got.standard
    # Each direction is +(its first row), and every row is sign · its direction.
    unit = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    directions = np.asarray(got.directions(basis), np.float64)
    np.testing.assert_allclose(directions, unit[got.representative], atol=1e-6)
    np.testing.assert_allclose(got.sign[:, None] * directions[got.direction], unit, atol=1e-6)
    # A rotated copy with the same rows gives the rotated directions.
    r = random_orthogonal(rng, n)
    np.testing.assert_allclose(np.asarray(got.directions(basis @ r.T), np.float64),
                               unit[got.representative] @ r.T, atol=1e-5)


@pytest.mark.parametrize("kind", ["gaussian", "simplex", "near_orthoplex", "wide"])
def test_signed_neurons_of_bases_that_are_not_plus_minus_orthonormal(rng, kind):
    n = 4
    if kind == "gaussian":
        basis = rng.standard_normal((6, n))
    elif kind == "simplex":  # the regular simplex: every cosine −1/n
        basis = np.eye(n + 1) - 1.0 / (n + 1)
        basis = basis @ np.linalg.svd(basis)[2][:n].T
    elif kind == "near_orthoplex":  # one cosine of 1e-3: past the orthogonal tolerance
        basis = np.concatenate([np.eye(n), -np.eye(n)])
        basis[1, 0] = 1e-3
    else:  # more directions than dimensions
        basis = _signed_rows(rng, random_orthogonal(rng, n), 6)
        basis = np.concatenate([basis, rng.standard_normal((1, n))])
    got = _check_signed(basis)
    assert not got.orthonormal and got.num_directions == len(basis)


def test_signed_neurons_within_tolerance_is_still_plus_minus(rng):
    n = 5
    basis = _signed_rows(rng, np.eye(n), 8) + 1e-8 * rng.standard_normal((8, n))
    got = _check_signed(basis)
    assert got.orthonormal and got.standard


def test_signed_neurons_rejects_a_zero_row():
    with pytest.raises(ValueError):
        neurons.signed_neurons(np.array([[1.0, 0.0], [0.0, 0.0]]))


# --- per-plane summaries and rankings -----------------------------------------------------------


def _planes(m):
    return np.array(list(itertools.combinations(range(m), 2)), np.int32)


def test_plane_summaries_with_ties(rng):
    counts = rng.integers(0, 4, (30, 11)).astype(np.int32)  # many ties for the peak
    angles = np.sort(rng.uniform(0, 2 * np.pi, 11)).astype(np.float32)
    got = neurons.plane_summaries(counts, angles)
    np.testing.assert_array_equal(got.totals, counts.astype(np.int64).sum(axis=1))
    np.testing.assert_array_equal(got.peaks, counts.max(axis=1))
    first_peak = [next(t for t in range(11) if row[t] == row.max()) for row in counts]
    np.testing.assert_array_equal(got.peak_angles, angles[first_peak])


def _reference_shares(totals, pairs, m):
    per_vector = np.zeros(m)
    for (a, b), total in zip(pairs, np.asarray(totals, np.float64), strict=True):
        per_vector[a] += total
        per_vector[b] += total
    whole = 2 * np.sum(totals, dtype=np.float64)
    return per_vector / whole if whole > 0 else np.full(m, np.nan)


def _reference_ranking(scores, k):
    """Best first, ties by lower index, NaN last (as −1)."""
    key = np.where(np.isnan(scores), -1.0, scores)
    return np.argsort(-key, kind="stable")[:k]


@pytest.mark.parametrize("case", ["random", "ties", "subset", "nothing_lit"])
def test_vector_shares_and_rank_basis_vectors(rng, case):
    m = 7
    pairs = _planes(m)
    if case == "random":
        totals = rng.integers(0, 500, len(pairs))
    elif case == "ties":  # every plane the same: vectors tie, lower index first
        totals = np.full(len(pairs), 3)
    elif case == "subset":  # a plane subset: vectors in no measured plane share nothing
        pairs = pairs[rng.choice(len(pairs), 6, replace=False)]
        totals = rng.integers(1, 4, len(pairs))
    else:
        totals = np.zeros(len(pairs), int)
    expect = _reference_shares(totals, pairs, m)
    shares = np.asarray(neurons.vector_shares(totals, pairs, m), np.float64)
    np.testing.assert_allclose(shares, expect, rtol=1e-6)
    if case != "nothing_lit":
        assert np.sum(shares) == pytest.approx(1.0, rel=1e-6)
    ranking = neurons.rank_basis_vectors(totals.astype(np.float32), pairs, m, 4)
    np.testing.assert_array_equal(ranking.indices, _reference_ranking(expect, 4))
    np.testing.assert_allclose(ranking.scores, expect[_reference_ranking(expect, 4)], rtol=1e-6)
    np.testing.assert_allclose(ranking.all_scores, expect, rtol=1e-6)


@pytest.mark.parametrize("case", ["random", "ties", "nan"])
def test_rank_planes(rng, case):
    peaks = rng.integers(0, 6, 25).astype(np.float32)  # ties among 25 peaks in 6 values
    if case == "random":
        peaks = rng.random(25).astype(np.float32)
    if case == "nan":
        peaks[rng.choice(25, 5, replace=False)] = np.nan
    ranking = neurons.rank_planes(peaks, 8)
    expect = _reference_ranking(peaks.astype(np.float64), 8)
    np.testing.assert_array_equal(ranking.indices, expect)
    np.testing.assert_array_equal(ranking.scores, peaks[expect])
    np.testing.assert_array_equal(ranking.all_scores, peaks)


def test_neuron_shares_and_neuron_map_of_a_plus_minus_basis(rng):
    n = 5
    basis = _signed_rows(rng, random_orthogonal(rng, n), 9)
    signed = neurons.signed_neurons(basis)
    k = signed.num_directions
    direction = signed.direction
    pairs = _planes(len(basis))
    spans = direction[pairs[:, 0]] != direction[pairs[:, 1]]  # ±q_k span no plane
    pairs = pairs[spans]
    pairs = pairs[rng.random(len(pairs)) < 0.6]  # leave some neuron pairs unmeasured
    values = rng.random(len(pairs))
    shares = rng.random(len(basis))
    expect = np.zeros(k)
    for v, s in enumerate(shares):
        expect[direction[v]] += s
    np.testing.assert_allclose(neurons.neuron_shares(shares, direction, k), expect, rtol=1e-6)
    total, count = np.zeros((k, k)), np.zeros((k, k))
    for (a, b), value in zip(direction[pairs], values, strict=True):
        for i, j in ((a, b), (b, a)):
            total[i, j] += value
            count[i, j] += 1
    with np.errstate(invalid="ignore"):
        expect_map = total / np.where(count > 0, count, np.nan)
    image = np.asarray(neurons.neuron_map(values, pairs, direction, k), np.float64)
    np.testing.assert_allclose(image, expect_map, rtol=1e-6, equal_nan=True)
    assert np.all(np.isnan(np.diag(image)))
    np.testing.assert_array_equal(np.isnan(image), count == 0)


def test_planes_is_the_keyword_and_pairs_is_deprecated(rng):
    """``vector_shares`` and ``neuron_map`` take ``planes=`` as every SRM function; the old
    ``pairs=`` still works for one release, with a DeprecationWarning."""
    pairs = _planes(4)
    totals = rng.integers(1, 9, len(pairs))
    direction = np.array([0, 1, 2, 3])
    new = neurons.vector_shares(totals, planes=pairs, num_vectors=4)
    with pytest.warns(DeprecationWarning, match="planes="):
        old = neurons.vector_shares(totals, pairs=pairs, num_vectors=4)
    np.testing.assert_array_equal(old, new)
    new = neurons.neuron_map(totals, planes=pairs, direction=direction, num_neurons=4)
    with pytest.warns(DeprecationWarning, match="planes="):
        old = neurons.neuron_map(totals, pairs=pairs, direction=direction, num_neurons=4)
    np.testing.assert_array_equal(old, new)
    with pytest.raises(TypeError, match="num_vectors"):
        neurons.vector_shares(totals, pairs)


def test_signed_neurons_of_axis_rows_takes_no_gram_matrix(rng, monkeypatch):
    """Rows with one non-zero entry each (``±c·e_i``, repeated, shuffled) are numbered without a
    Gram matrix, exactly as the Gram matrix numbers them; a second non-zero entry takes it."""
    n, m = 7, 12
    basis = _signed_rows(rng, np.eye(n), m) * rng.uniform(0.5, 3.0, (m, 1))
    unit = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    np.testing.assert_array_equal(neurons._axis_first_rows(unit), neurons._gram_first_rows(unit))

    def no_gram(unit):
        raise AssertionError("a Gram matrix for rows ±e_i")

    with monkeypatch.context() as patch:
        patch.setattr(neurons, "_gram_first_rows", no_gram)
        assert _check_signed(basis.astype(np.float32)).standard
    basis[0, (np.argmax(np.abs(basis[0])) + 1) % n] = 1e-9
    assert neurons._axis_first_rows(basis) is None
    assert _check_signed(basis).standard  # within tolerance, through the Gram matrix
