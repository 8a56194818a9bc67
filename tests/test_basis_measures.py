"""The field's measures beside SRM (srm_jax.basis_measures) and the neuron rankings
(srm_jax.neurons), against scipy and direct NumPy definitions."""

from __future__ import annotations

import dataclasses
import itertools
from functools import partial

import jax
import numpy as np
import pytest
import scipy.stats

import srm_jax
from srm_jax import basis_measures as bm
from srm_jax import neurons
from tests.conftest import random_orthogonal

N, DIM, ROTATIONS = 300, 16, 39


def planted_outliers(rng, num=N, n=DIM, channels=2, share=0.3):
    """Gaussian tokens with ``channels`` outlier channels at random indices."""
    x = rng.normal(size=(num, n))
    index = rng.choice(n, channels, replace=False)
    for i in index:
        rows = rng.random(num) < share
        x[rows, i] = rng.choice([-1, 1], rows.sum()) * rng.uniform(10, 14, rows.sum())
    return x.astype(np.float32), index


def test_kurtosis_equals_scipy_averaged_over_tokens(rng):
    x = rng.standard_t(3, size=(N, DIM)).astype(np.float32)
    q = random_orthogonal(rng, DIM)
    for directions in (np.eye(DIM), q):
        coords = x.astype(np.float64) @ directions.T
        expected = np.mean(scipy.stats.kurtosis(coords, axis=1, fisher=False))
        sums = bm.activation_sums(x, directions.astype(np.float32))
        assert float(bm.finalise_measures(sums).kurtosis) == pytest.approx(expected, rel=1e-4)
    # Gaussian coordinates: 3 (the Fisher correction's reference), up to sampling error.
    gauss = rng.normal(size=(4000, 64)).astype(np.float32)
    value = float(bm.finalise_measures(bm.activation_sums(gauss, np.eye(64))).kurtosis)
    assert abs(value - 3.0) < 0.1


def test_outliers_and_proximity_against_direct_definitions(rng):
    x, _ = planted_outliers(rng)
    x[[4, 9]] = np.nan
    x[17] = 0.0
    basis = srm_jax.thompson_basis(jax.random.key(1), 20, DIM)  # a general (non-±) basis
    signed = neurons.signed_neurons(basis)
    assert not signed.orthonormal and signed.num_directions == 20
    unit = np.asarray(basis, np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    measures = bm.finalise_measures(bm.activation_sums(x, unit.astype(np.float32)))
    keep = np.all(np.isfinite(x), axis=1) & np.any(x != 0, axis=1)
    d = x[keep].astype(np.float64)
    c = d @ unit.T
    assert int(measures.num_samples) == keep.sum() == N - 3
    np.testing.assert_allclose(measures.outlier_shares, np.mean(np.abs(c) >= 6, axis=0),
                               atol=1.5 / N)
    others = np.sqrt((np.sum(c**2, axis=1, keepdims=True) - c**2) / (c.shape[1] - 1))
    np.testing.assert_allclose(measures.relative_outlier_shares,
                               np.mean(np.abs(c) >= 6 * others, axis=0), atol=1.5 / N)
    cosine = np.max(np.abs(c), axis=1) / np.linalg.norm(d, axis=1)
    # The binned median is within one bin of the exact one.
    assert abs(float(measures.proximity) - np.median(cosine)) <= 0.5 / bm.PROXIMITY_BINS + 1e-7


def test_histogram_median_against_numpy(rng):
    for size in (1, 2, 7, 1000):
        values = rng.random(size)
        hist = np.histogram(values, bins=bm.PROXIMITY_BINS, range=(0, 1))[0]
        error = abs(float(bm.histogram_median(hist)) - np.median(values))
        assert error <= 0.5 / bm.PROXIMITY_BINS + 1e-7
    assert np.isnan(float(bm.histogram_median(np.zeros(8, np.int32))))


def test_batches_add_up_to_the_whole(rng):
    x, _ = planted_outliers(rng)
    directions = random_orthogonal(rng, DIM).astype(np.float32)
    whole = bm.activation_sums(x, directions)
    parts = [bm.activation_sums(part, directions) for part in np.array_split(x, [37, 200])]
    total = bm.zero_sums(DIM)
    for part in parts:
        total = bm.combine_sums(total, part)
    for field in dataclasses.fields(bm.MeasureSums):
        name, a, b = field.name, getattr(total, field.name), getattr(whole, field.name)
        if np.issubdtype(np.asarray(b).dtype, np.integer):
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, err_msg=name)


def test_planted_outlier_channels_are_named_first_and_significant(rng):
    # n = 32: a magnitude-12 outlier rotated away spreads to about 12/√32 per dimension, below 6.
    x, index = planted_outliers(rng, n=32)
    basis = srm_jax.standard_basis(32)
    measures = bm.finalise_measures(bm.activation_sums(x, np.eye(32, dtype=np.float32)))
    for shares in (measures.outlier_shares, measures.relative_outlier_shares):
        assert set(np.argsort(-np.asarray(shares))[:2]) == set(index)
        assert np.sum(bm.outlier_dimensions(shares)) == 2
    test = bm.measures_rotation_test(jax.random.key(0), x, basis, ROTATIONS)
    for name, p in zip(bm.MEASURES, np.asarray(test.p_greater), strict=True):
        assert p == pytest.approx(1 / (ROTATIONS + 1)), name


def test_isotropic_data_give_no_evidence_on_any_measure(rng):
    x = rng.normal(size=(N, DIM)).astype(np.float32)
    for basis in (srm_jax.standard_basis(DIM), srm_jax.thompson_basis(jax.random.key(2), 24, DIM)):
        test = bm.measures_rotation_test(jax.random.key(5), x, basis, ROTATIONS)
        for name, pg, pl in zip(bm.MEASURES, np.asarray(test.p_greater), np.asarray(test.p_less),
                                strict=True):
            assert bm.two_sided(float(pg), float(pl)) > 0.05, name


def test_rotation_convention_and_batching(rng):
    """Row i of the null is the basis rotated by random_orthogonal(split(key, R)[i], n); the
    rotations per batch do not change it."""
    x, _ = planted_outliers(rng, num=100, n=8)
    basis = srm_jax.orthoplex_basis(jax.random.key(3), 8)
    key = jax.random.key(11)
    one = bm.measures_rotation_test(key, x, basis, 5, map_batch_size=1)
    three = bm.measures_rotation_test(key, x, basis, 5, map_batch_size=3)
    np.testing.assert_allclose(one.null, three.null, rtol=1e-5)
    signed = neurons.signed_neurons(basis)
    for i, k in enumerate(jax.random.split(key, 5)):
        rotated = srm_jax._precision.exact_matmul(basis, srm_jax.random_orthogonal(k, 8).T)
        expected = bm.measure_statistics(bm.finalise_measures(
            bm.activation_sums(x, signed.directions(rotated))))
        np.testing.assert_allclose(one.null[i], expected, rtol=1e-5, err_msg=str(i))


def test_memory_budget_batches_rotations_and_refuses_what_cannot_fit():
    per = bm.rotation_bytes(64, 128, 64, bm.ROW_CHUNK)
    fixed = 2 * 4 * 2048 * 64
    assert bm.rotation_batch_size(2000, 64, 128, 64, 199, fixed + 3.5 * per) == 3
    assert bm.rotation_batch_size(2000, 64, 128, 64, 2, 1e12) == 2
    with pytest.raises(MemoryError, match="reduce --max-samples or raise --memory-budget"):
        bm.rotation_batch_size(2000, 64, 128, 64, 199, fixed + 0.5 * per)
    with pytest.warns(DeprecationWarning, match="num_resamples"):
        assert bm.rotation_batch_size(2000, 64, 128, 64, memory_budget=1e12, num_rotations=2) == 2


def test_num_rotations_is_deprecated_for_num_resamples(rng):
    """``num_resamples`` (the one Monte Carlo size name) with the old ``num_rotations=`` still
    working; the results are pytrees (flax.struct), the batch size static."""
    x, _ = planted_outliers(rng, num=60, n=8)
    basis = srm_jax.standard_basis(8)
    key = jax.random.key(4)
    new = bm.measures_rotation_test(key, x, basis, num_resamples=3)
    with pytest.warns(DeprecationWarning, match="num_resamples"):
        old = bm.measures_rotation_test(key, x, basis, num_rotations=3)
    np.testing.assert_array_equal(new.null, old.null)
    assert new.null.shape == (3, len(bm.MEASURES))
    with pytest.raises(TypeError, match="num_resamples"):
        bm.measures_rotation_test(key, x, basis, 4, num_rotations=3)
    leaves, tree = jax.tree_util.tree_flatten(new)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)
    assert jax.tree_util.tree_unflatten(tree, leaves).rotations_per_batch == 3


def test_signed_neurons_of_standard_orthoplex_and_other_bases(rng):
    n = 7
    order = rng.permutation(2 * n)
    basis = np.concatenate([np.eye(n), -np.eye(n)])[order]
    signed = neurons.signed_neurons(basis)
    assert signed.orthonormal and signed.standard and signed.num_directions == n
    # The neuron of ±e_i is the coordinate i, whatever the row order.
    np.testing.assert_array_equal(signed.neuron[signed.direction], order % n)
    np.testing.assert_array_equal(signed.sign, np.where(order < n, 1, -1))
    np.testing.assert_allclose(signed.directions(basis), np.eye(n)[signed.neuron])
    partial = np.eye(n)[[5, 2]] * np.array([[-1.0], [1.0]])  # -e_5, e_2
    signed = neurons.signed_neurons(partial)
    assert list(signed.neuron) == [5, 2] and list(signed.sign) == [-1, 1]
    ortho = np.asarray(srm_jax.orthoplex_basis(jax.random.key(0), n))
    signed = neurons.signed_neurons(ortho)
    assert signed.orthonormal and not signed.standard
    np.testing.assert_array_equal(signed.direction, np.tile(np.arange(n), 2))
    np.testing.assert_array_equal(signed.sign, np.repeat([1, -1], n))
    for basis in (srm_jax.simplex_basis(jax.random.key(0), n), np.eye(n) + 0.01):
        signed = neurons.signed_neurons(basis)
        assert not signed.orthonormal and signed.num_directions == len(basis)


def test_rankings_against_direct_definitions(rng):
    m = 9
    pairs = np.array(list(itertools.combinations(range(m), 2)), np.int32)
    counts = rng.integers(0, 50, size=(len(pairs), 12)).astype(np.int32)
    angles = np.linspace(0, 2 * np.pi, 12)
    summary = neurons.plane_summaries(counts, angles)
    np.testing.assert_array_equal(summary.totals, counts.sum(1))
    np.testing.assert_array_equal(summary.peaks, counts.max(1))
    np.testing.assert_allclose(summary.peak_angles, angles[counts.argmax(1)])
    totals = counts.sum(1)
    share = np.array([totals[(pairs == v).any(1)].sum() for v in range(m)]) / (2 * totals.sum())
    ranking = neurons.rank_basis_vectors(summary.totals, pairs, m, 4)
    np.testing.assert_allclose(ranking.all_scores, share, rtol=1e-6)
    np.testing.assert_array_equal(ranking.indices, np.argsort(-share, kind="stable")[:4])
    assert float(np.sum(ranking.all_scores)) == pytest.approx(1.0)
    planes = neurons.rank_planes(summary.peaks, 5)
    np.testing.assert_array_equal(planes.scores, np.sort(counts.max(1))[::-1][:5])
    # The neuron map of an orthoplex-like labelling: mean over the planes of each neuron pair.
    direction = np.arange(m) % 3
    image = np.asarray(neurons.neuron_map(totals, pairs, direction, 3))
    for a, b in itertools.permutations(range(3), 2):
        mask = ((direction[pairs[:, 0]] == a) & (direction[pairs[:, 1]] == b)) | (
            (direction[pairs[:, 0]] == b) & (direction[pairs[:, 1]] == a))
        assert image[a, b] == pytest.approx(totals[mask].mean())
    shares = neurons.neuron_shares(share, direction, 3)
    np.testing.assert_allclose(shares, [share[direction == k].sum() for k in range(3)], rtol=1e-6)


@pytest.mark.parametrize("kind", ["standard", "orthoplex"])
def test_fused_rotation_loop_equals_the_separate_tests(rng, kind):
    """The report's one rotation loop (``alignment_test(measure=rotated_statistics)``: the data
    rotated once, ``x q``, for SRM and the measures) gives the SRM null of the rotated bases and
    the measures' null of :func:`measures_rotation_test`, rotation for rotation."""
    n = 8
    x, _ = planted_outliers(rng, num=200, n=n)
    basis = (srm_jax.standard_basis(n) if kind == "standard"
             else srm_jax.orthoplex_basis(jax.random.key(3), n))
    arguments = bm.direction_arguments(neurons.signed_neurons(basis), basis)
    assert ("axes" in arguments) == (kind == "standard")  # a gather for ±e_i
    key = jax.random.key(int(rng.integers(1 << 30)))
    kw = {"epsilon": 0.7, "num_resamples": 9, "statistic": "projection"}
    fused = srm_jax.alignment_test(key, x, basis, measure=bm.rotated_statistics,
                                   measure_args=arguments, **kw)
    alone = srm_jax.alignment_test(key, x, basis, **kw)
    assert alone.null_measured is None
    np.testing.assert_allclose(fused.null_scores, alone.null_scores, rtol=1e-4, atol=1e-6)
    assert float(fused.p_value) == float(alone.p_value)
    measures = bm.measures_rotation_test(key, x, basis, 9)
    np.testing.assert_allclose(fused.null_measured, measures.null, rtol=1e-4)
    observed = bm.measure_statistics(bm.measure_directions(x, arguments))
    np.testing.assert_allclose(observed, measures.observed, rtol=1e-5)


def awkward_rows(rng, num, n):
    """Heavy-tailed rows with the rows the measures leave out (NaN, ±Inf, zero, a float32 ‖d‖²
    that overflows) and rows of equal coordinates (counted, but without a kurtosis)."""
    x = rng.standard_t(3, size=(num, n)).astype(np.float32)
    x[rng.choice(num, 12, replace=False)] *= 8.0  # outliers on some tokens
    x[3, 1], x[8, 0], x[11, 5], x[20] = np.nan, np.inf, -np.inf, 0.0
    x[25], x[30], x[31] = 1e25, 2.0, -0.5
    return x


def reference_measures(x, directions):
    """The measures by their definitions (module docstring), NumPy/SciPy in float64: counts,
    shares, the binned median proximity and the mean kurtosis of the rows kept."""
    x32 = np.asarray(x, np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        square_norm = np.sum(x32 * x32, axis=1, dtype=np.float32)
    keep = np.isfinite(square_norm) & np.any(x32 != 0, axis=1)
    d = x32[keep].astype(np.float64)
    c = d @ np.asarray(directions, np.float64).T
    square = c**2
    others = (square.sum(1, keepdims=True) - square) / (c.shape[1] - 1)
    index = np.sort(np.minimum(np.floor(np.max(np.abs(c), 1) / np.linalg.norm(d, axis=1)
                                        * bm.PROXIMITY_BINS), bm.PROXIMITY_BINS - 1))
    total = len(index)  # numpy.median of the bin centres
    proximity = (index[(total + 1) // 2 - 1] + index[total // 2] + 1) / (2 * bm.PROXIMITY_BINS)
    spread = np.var(c, axis=1) > 1e-12 * np.mean(square, axis=1)
    return {"num_samples": total,
            "outlier_counts": np.sum(np.abs(c) >= 6, axis=0),
            "relative_counts": np.sum(square >= 36 * others, axis=0),
            "proximity": proximity,
            "kurtosis": np.mean(scipy.stats.kurtosis(c[spread], axis=1, fisher=False))}


def assert_measures_equal_reference(measures, expected, label):
    num = int(measures.num_samples)
    assert num == expected["num_samples"], label
    for name, counts in (("outlier_shares", expected["outlier_counts"]),
                         ("relative_outlier_shares", expected["relative_counts"])):
        shares = np.asarray(getattr(measures, name), np.float64)
        np.testing.assert_array_equal(np.rint(shares * num), counts, err_msg=f"{label} {name}")
    assert float(measures.proximity) == expected["proximity"], label
    assert float(measures.kurtosis) == pytest.approx(expected["kurtosis"], rel=2e-5), label


@pytest.mark.parametrize("row_chunk", [bm.ROW_CHUNK, 64])
def test_measure_directions_forms_against_numpy(rng, row_chunk):
    """The identity form (``axes`` None: the samples are the coordinates), the gather of a
    permuted or partial ``±e_i`` basis and the product of a general basis all give the measures
    of their definitions, whole chunks and the last partial one alike (jit, and ``rotated_
    statistics`` as the report calls it)."""
    n, num = 16, 1000  # 1000 rows: 15 chunks of 64 and 40 more
    x = awkward_rows(rng, num, n)
    eye = np.eye(n, dtype=np.float32)
    signs = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
    cases = {
        "standard": srm_jax.standard_basis(n),
        "permuted": np.concatenate([eye, -eye])[rng.permutation(2 * n)],
        "partial": eye[rng.choice(n, 9, replace=False)] * signs[:9, None],
        "rotated": random_orthogonal(rng, n).astype(np.float32),
    }
    measure = jax.jit(partial(bm.measure_directions, row_chunk=row_chunk))
    statistics = jax.jit(partial(bm.rotated_statistics, row_chunk=row_chunk))
    for label, basis in cases.items():
        signed = neurons.signed_neurons(basis)
        arguments = bm.direction_arguments(signed, basis)
        if label in ("standard", "rotated"):  # the samples themselves; a product
            assert (arguments["axes"] is None) if label == "standard" else "axes" not in arguments
        expected = reference_measures(x, signed.directions(jax.numpy.asarray(basis)))
        measures = measure(x, arguments)
        assert_measures_equal_reference(measures, expected, label)
        np.testing.assert_array_equal(statistics(x, arguments),
                                      bm.measure_statistics(measures), err_msg=label)
    # Signs on the identity form: the coordinates ±x_i, as the product with ±e_i gives.
    directions = eye * signs[:, None]
    signed_identity = {"directions": directions, "axes": None, "signs": signs}
    assert_measures_equal_reference(measure(x, signed_identity),
                                    reference_measures(x, directions), "signed identity")


def test_measure_directions_forms_agree_count_for_count(rng):
    """On the standard basis the identity form, the gather and the product count the same
    rows, dimension for dimension."""
    n = 24
    x = awkward_rows(rng, 1500, n)
    basis = srm_jax.standard_basis(n)
    identity = bm.direction_arguments(neurons.signed_neurons(basis), basis)
    forms = {"identity": identity,
             "gather": dict(identity, axes=np.arange(n, dtype=np.int32),
                            signs=np.ones(n, np.float32)),
             "product": {"directions": identity["directions"]}}
    measures = {k: bm.measure_directions(x, v, row_chunk=256) for k, v in forms.items()}
    for name in ("num_samples", "outlier_shares", "relative_outlier_shares", "proximity"):
        for label in ("gather", "product"):
            np.testing.assert_array_equal(getattr(measures[label], name),
                                          getattr(measures["identity"], name), err_msg=label)
    for label in ("gather", "product"):
        assert float(measures[label].kurtosis) == pytest.approx(
            float(measures["identity"].kurtosis), rel=1e-6)


@pytest.mark.parametrize("kind", ["standard", "signed_permuted", "rotated"])
def test_direction_coordinates_equal_the_exact_product(rng, kind):
    """``direction_coordinates`` (no product for a standard basis' ``±e_i``: the samples, times
    the signs, gathered where the axes are out of order) equals ``basis_coordinates``' exact
    product on the same directions, bit for bit (a product with ±1 and 0 is exact), and takes
    the product for any other basis. Rows with a NaN are invalid either way."""
    n = 24
    x = rng.standard_normal((300, n)).astype(np.float32) * rng.lognormal(0, 2, (300, 1))
    x[7, 3] = np.nan
    eye = np.eye(n, dtype=np.float32)
    if kind == "standard":
        basis = np.concatenate([eye, -eye])
    elif kind == "signed_permuted":
        signed = eye[rng.permutation(n)] * rng.choice([-1.0, 1.0], (n, 1)).astype(np.float32)
        basis = np.concatenate([signed, -signed])
    else:
        q = random_orthogonal(rng, n).astype(np.float32)
        basis = np.concatenate([q, -q])
    arguments = bm.direction_arguments(neurons.signed_neurons(basis), basis)
    assert ("signs" in arguments) == (kind != "rotated")
    if kind == "standard":
        assert arguments["axes"] is None and arguments["signs"] is None
    got = np.asarray(bm.direction_coordinates(x, arguments))
    want = np.asarray(bm.basis_coordinates(x, arguments["directions"]))
    finite = np.all(np.isfinite(x), axis=1)
    np.testing.assert_array_equal(got[finite], want[finite])
    assert not np.all(np.isfinite(got[~finite]))
    sums = bm.measure_sums(got, np.linalg.norm(np.where(np.isfinite(x), x, np.nan), axis=1))
    reference = bm.activation_sums(x, arguments["directions"])
    for a, b in zip(jax.tree.leaves(sums), jax.tree.leaves(reference), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
