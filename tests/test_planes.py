import itertools

import jax
import numpy as np
import pytest

import srm_jax


@pytest.mark.parametrize("m", [2, 3, 7])
def test_planes_follow_itertools_order(m):
    comb = np.asarray(srm_jax.plane_pairs(m, "comb"))
    perm = np.asarray(srm_jax.plane_pairs(m, "perm"))
    assert comb.dtype == np.int32 and perm.dtype == np.int32
    np.testing.assert_array_equal(comb, np.array(list(itertools.combinations(range(m), 2))))
    np.testing.assert_array_equal(perm, np.array(list(itertools.permutations(range(m), 2))))
    assert len(comb) == srm_jax.num_planes(m, "comb")
    assert len(perm) == srm_jax.num_planes(m, "perm")


def test_max_planes_is_a_keyed_subset_without_replacement():
    full = {tuple(p) for p in np.asarray(srm_jax.plane_pairs(12, "perm"))}
    a = np.asarray(srm_jax.plane_pairs(12, "perm", max_planes=30, key=jax.random.key(1)))
    b = np.asarray(srm_jax.plane_pairs(12, "perm", max_planes=30, key=jax.random.key(1)))
    c = np.asarray(srm_jax.plane_pairs(12, "perm", max_planes=30, key=jax.random.key(2)))
    assert a.shape == (30, 2)
    assert len({tuple(p) for p in a}) == 30
    assert {tuple(p) for p in a} <= full
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # More planes than exist: all of them.
    np.testing.assert_array_equal(
        srm_jax.plane_pairs(4, "comb", max_planes=100, key=jax.random.key(0)),
        srm_jax.plane_pairs(4),
    )


def test_planes_errors():
    with pytest.raises(ValueError, match="needs a PRNG key"):
        srm_jax.plane_pairs(5, max_planes=3)
    with pytest.raises(ValueError, match="m must be"):
        srm_jax.plane_pairs(1)
    with pytest.raises(ValueError, match="'comb'"):
        srm_jax.plane_pairs(4, "pairs")


def test_angle_grid_has_endpoint():
    grid = np.asarray(srm_jax.angle_grid())
    assert grid.shape == (100,)
    np.testing.assert_allclose(grid, np.linspace(0, 2 * np.pi, 100), rtol=1e-6)
    assert grid[0] == 0 and np.isclose(grid[-1], 2 * np.pi)
