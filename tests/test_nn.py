"""Tests of the Flax NNX activation modules and their non-trainable privileged basis."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from srm_jax.activations import (
    generalised_tanh,
    isotropic_tanh,
    normalised_isotropic_tanh,
    positive_cosine_pairs,
)
from srm_jax.bases import orthoplex_basis, random_basis, simplex_basis
from srm_jax.nn import (
    CorrectionPairs,
    GeneralisedTanh,
    IsotropicTanh,
    NormalisedIsotropicTanh,
    PrivilegedBasis,
)


class Tiny(nnx.Module):
    """Linear → activation → Linear, the shape of the paper's autoencoder blocks."""

    def __init__(self, activation: nnx.Module, n: int, rngs: nnx.Rngs):
        self.encode = nnx.Linear(3, n, rngs=rngs)
        self.act = activation
        self.decode = nnx.Linear(n, 3, rngs=rngs)

    def __call__(self, x):
        return self.decode(self.act(self.encode(x)))


def leaves(state) -> list:
    return jax.tree.leaves(state)


@pytest.fixture
def overcomplete_basis(rng):
    # a random basis with positive-cosine pairs, rows deliberately not unit length
    return jnp.asarray(rng.standard_normal((16, 4)) * 2.0, jnp.float32)


def test_modules_match_the_functions(rng, overcomplete_basis):
    x = jnp.asarray(rng.standard_normal((5, 4)) * 1.5, jnp.float32)
    b = overcomplete_basis
    unit = b / jnp.linalg.norm(b, axis=1, keepdims=True)

    g = GeneralisedTanh(b)
    np.testing.assert_allclose(g.basis, unit, atol=1e-6)
    np.testing.assert_allclose(g(x), generalised_tanh(x, b), atol=1e-6)
    np.testing.assert_array_equal(g.correction_pairs[...], positive_cosine_pairs(b))
    assert g.correction_pairs[...].shape[0] > 0

    iso = IsotropicTanh(radius=0.5)
    assert iso.basis is None
    np.testing.assert_allclose(iso(x), isotropic_tanh(x, radius=0.5), atol=1e-6)

    ni = NormalisedIsotropicTanh(b, radius=0.0, min_cosine=0.3)
    np.testing.assert_allclose(ni.basis, unit, atol=1e-6)
    np.testing.assert_allclose(
        ni(x), normalised_isotropic_tanh(x, b, radius=0.0, min_cosine=0.3), atol=1e-6
    )

    # exact bases carry an empty pair list (no correction)
    assert GeneralisedTanh(orthoplex_basis(jax.random.key(0), 4)).correction_pairs[...].shape == (
        0,
        2,
    )
    assert GeneralisedTanh(simplex_basis(jax.random.key(0), 4)).correction_pairs[...].shape[0] == 0
    with pytest.raises(ValueError):
        GeneralisedTanh(b.at[3].set(0.0))


def test_basis_is_carried_but_not_a_param(overcomplete_basis):
    for act in (GeneralisedTanh(overcomplete_basis), NormalisedIsotropicTanh(overcomplete_basis)):
        model = Tiny(act, 4, nnx.Rngs(0))
        params = nnx.state(model, nnx.Param)
        assert len(leaves(params)) == 4  # two kernels, two biases; no basis
        for leaf in leaves(params):
            assert leaf.shape != overcomplete_basis.shape
        bases = leaves(nnx.state(model, PrivilegedBasis))
        assert len(bases) == 1
        np.testing.assert_allclose(bases[0], model.act.basis, atol=0)
        # split / merge round trip keeps the basis, its type and the outputs
        graphdef, state = nnx.split(model)
        clone = nnx.merge(graphdef, state)
        assert isinstance(clone.act.privileged_basis, PrivilegedBasis)
        np.testing.assert_array_equal(clone.act.basis, model.act.basis)
        x = jnp.ones((2, 3))
        np.testing.assert_array_equal(clone(x), model(x))
    model = Tiny(GeneralisedTanh(overcomplete_basis), 4, nnx.Rngs(0))
    assert len(leaves(nnx.state(model, CorrectionPairs))) == 1
    assert len(leaves(nnx.state(Tiny(IsotropicTanh(), 4, nnx.Rngs(0)), PrivilegedBasis))) == 0


@pytest.mark.parametrize("kind", ["generalised", "isotropic", "normalised"])
def test_training_under_nnx_jit_leaves_the_basis_alone(rng, kind):
    n = 4
    basis = random_basis(jax.random.key(5), 4 * n, n)
    act = {
        "generalised": lambda: GeneralisedTanh(basis),
        "isotropic": lambda: IsotropicTanh(),
        "normalised": lambda: NormalisedIsotropicTanh(basis),
    }[kind]()
    model = Tiny(act, n, nnx.Rngs(1))
    optimizer = nnx.Optimizer(model, optax.sgd(0.05, momentum=0.9), wrt=nnx.Param)
    x = jnp.asarray(rng.uniform(-1, 1, (24, 3)), jnp.float32)

    @nnx.jit
    def step(model, optimizer, x):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - x) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    before_kernel = np.asarray(model.encode.kernel[...]).copy()
    before_basis = None if model.act.basis is None else np.asarray(model.act.basis).copy()
    eager = np.asarray(model(x))
    np.testing.assert_allclose(nnx.jit(lambda m, x: m(x))(model, x), eager, atol=1e-6)
    losses = [float(step(model, optimizer, x)) for _ in range(30)]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert not np.allclose(model.encode.kernel[...], before_kernel)
    if before_basis is not None:
        np.testing.assert_array_equal(model.act.basis, before_basis)
        assert isinstance(model.act.privileged_basis, PrivilegedBasis)
    # the optimiser holds state for the Params only: no momentum buffer shaped like the basis
    opt_shapes = {leaf.shape for leaf in leaves(nnx.state(optimizer))}
    assert (4 * n, n) not in opt_shapes
    assert {(3, n), (n, 3)} <= opt_shapes


def test_structure_under_eval_shape_and_traced_bases(overcomplete_basis):
    b = overcomplete_basis
    m = b.shape[0]
    sparse = positive_cosine_pairs(b)
    # a concrete basis closed over by eval_shape keeps the sparse pair list (same state shape as
    # an eagerly built module, so a checkpoint restores into it)
    abstract = nnx.eval_shape(lambda: GeneralisedTanh(b))
    assert abstract.correction_pairs.get_value().shape == sparse.shape
    # a basis computed under tracing: every pair, and the values are still exact
    x = jnp.ones((3, 4)) * 0.7
    traced = nnx.jit(lambda x: GeneralisedTanh(b * 2.0)(x))(x)
    np.testing.assert_allclose(traced, GeneralisedTanh(b)(x), atol=1e-6)
    abstract = nnx.eval_shape(lambda: GeneralisedTanh(b * 2.0))
    assert abstract.correction_pairs.get_value().shape == (m * (m - 1) // 2, 2)
    # explicit pairs are taken as given
    module = GeneralisedTanh(b, correction_pairs=sparse)
    np.testing.assert_array_equal(module.correction_pairs[...], sparse)
