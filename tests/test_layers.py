"""Activations of any NNX layer (module path or sown value) and SRM over a data iterator."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SRM, away_from_threshold
from flax import nnx

from srm_jax.layers import (
    as_samples,
    collect_activations,
    find_basis,
    layer_activations,
    layer_srm,
    parse_path,
    resolve_module,
)

ANGLES = np.linspace(0, 2 * np.pi, 16)


class Basis(nnx.Variable):
    """A stand-in for ``srm_jax.nn.PrivilegedBasis``: a non-trainable basis variable."""


class Act(nnx.Module):
    """An activation that carries its privileged basis (as ``GeneralisedTanh`` does)."""

    def __init__(self, basis):
        self.basis = Basis(jnp.asarray(basis, jnp.float32))

    def __call__(self, x):
        return jnp.tanh(x)


class Block(nnx.Module):
    def __init__(self, din, dout, rngs):
        self.linear = nnx.Linear(din, dout, rngs=rngs)

    def __call__(self, x):
        return jnp.tanh(self.linear(x))


class Net(nnx.Module):
    """x → blocks[0] → blocks[1] → latent (Linear) → act → out; sows the latent as "z"."""

    def __init__(self, basis, rngs):
        self.blocks = nnx.List([Block(6, 8, rngs), Block(8, 8, rngs)])
        self.latent = nnx.Linear(8, 4, rngs=rngs)
        self.act = Act(basis)
        self.out = nnx.Linear(4, 6, rngs=rngs)

    def __call__(self, x):
        for block in self.blocks:
            x = block(x)
        z = self.latent(x)
        self.sow(nnx.Intermediate, "z", z)
        return self.out(self.act(z))


def _reference(model, x):
    """The latent and the second block's output, computed by hand from the weights (float64)."""
    h = np.asarray(x, np.float64)
    outs = []
    for block in model.blocks:
        w = np.asarray(block.linear.kernel[...], np.float64)
        b = np.asarray(block.linear.bias[...], np.float64)
        h = np.tanh(h @ w + b)
        outs.append(h)
    w = np.asarray(model.latent.kernel[...], np.float64)
    b = np.asarray(model.latent.bias[...], np.float64)
    return h @ w + b, outs[1]


@pytest.fixture
def setup(rng):
    basis = rng.standard_normal((7, 4)).astype(np.float32)  # not orthogonal
    model = Net(basis, nnx.Rngs(int(rng.integers(1 << 30))))
    x = rng.standard_normal((70, 6)).astype(np.float32)
    return model, basis, x


def test_module_paths_inputs_outputs_and_sown_values(setup):
    model, _, x = setup
    latent, block1 = _reference(model, x)
    for path in ("blocks/1", "blocks.1", ("blocks", 1)):
        _, got = layer_activations(model, path, x)
        np.testing.assert_allclose(got, block1, rtol=1e-5, atol=1e-5)
    _, got = layer_activations(model, "latent", x)
    np.testing.assert_allclose(got, latent, rtol=1e-5, atol=1e-5)
    _, got = layer_activations(model, "act", x, capture="input")  # pre-activation
    np.testing.assert_allclose(got, latent, rtol=1e-5, atol=1e-5)
    _, got = layer_activations(model, "act", x)  # post-activation
    np.testing.assert_allclose(got, np.tanh(latent), rtol=1e-5, atol=1e-5)
    output, got = layer_activations(model, "z", x)  # sown by the root module
    np.testing.assert_allclose(got, latent, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(output, model.out(jnp.tanh(jnp.asarray(latent))), atol=1e-5)
    # Interception leaves the classes as they were.
    assert "__call__" not in nnx.Linear.__dict__ or not hasattr(
        nnx.Linear.__dict__["__call__"], "__wrapped__"
    )
    assert Block.__call__.__qualname__ == "Block.__call__"


@pytest.mark.filterwarnings("ignore:Using 'Module.sow\\(\\)' outside:DeprecationWarning")
def test_under_jit_and_grad(setup):
    model, _, x = setup
    latent, _ = _reference(model, x)

    @nnx.jit
    def loss_and_latent(model, x):
        def loss_fn(model):
            y, z = layer_activations(model, "act", x, capture="input")
            return jnp.mean((y - x) ** 2), z

        (loss, z), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        return loss, z, grads

    loss, z, grads = loss_and_latent(model, x)
    np.testing.assert_allclose(z, latent, rtol=1e-5, atol=1e-5)
    direct = nnx.value_and_grad(lambda m: jnp.mean((m(x) - x) ** 2))(model)
    np.testing.assert_allclose(loss, direct[0], rtol=1e-6)
    np.testing.assert_allclose(
        grads["latent"]["kernel"][...], direct[1]["latent"]["kernel"][...], rtol=1e-5
    )


def test_errors_and_occurrence(setup):
    model, _, x = setup
    with pytest.raises(ValueError, match="neither a module path"):
        layer_activations(model, "encoder/nope", x)

    class Twice(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(6, 6, rngs=rngs)

        def __call__(self, x):
            return self.lin(self.lin(x))

    twice = Twice(nnx.Rngs(0))
    with pytest.raises(ValueError, match="ran 2 times"):
        layer_activations(twice, "lin", x)
    _, second = layer_activations(twice, "lin", x, occurrence=1)
    np.testing.assert_allclose(second, twice(x), rtol=1e-6)
    with pytest.raises(ValueError, match="capture"):
        layer_activations(twice, "lin", x, capture="gradient")
    assert parse_path("a.b/0") == ("a", "b", "0")
    assert resolve_module(model, "blocks/0/linear") is model.blocks[0].linear
    assert resolve_module(model, "blocks/7") is None


def test_find_basis(setup, rng):
    model, basis, _ = setup
    np.testing.assert_array_equal(find_basis(model), basis)
    np.testing.assert_array_equal(find_basis(model, "act"), basis)
    with pytest.raises(ValueError, match="no 2-D `basis`"):
        find_basis(model, "latent")
    np.testing.assert_array_equal(find_basis(model, "act/basis"), basis)  # a variable's path
    with pytest.raises(ValueError, match="nothing at"):
        find_basis(model, "act/nope")
    model.extra = Act(rng.standard_normal((5, 4)))
    with pytest.raises(ValueError, match="2 modules carry"):
        find_basis(model)


def test_layer_srm_equals_in_memory(setup, rng):
    model, basis, x = setup
    x = away_from_threshold(rng, x, basis, ANGLES, [0.4], lambda v: _reference(model, v)[0])
    latent, _ = _reference(model, x)
    batches = [x[i : i + 32] for i in range(0, len(x), 32)]  # 32, 32, 6: ragged
    # Basis from the activation the layer path names (its input is the latent).
    result = layer_srm(model, "act", iter(batches), capture="input", epsilon=0.4, angles=ANGLES,
                       signed=True)
    full = SRM(jnp.asarray(latent, jnp.float32), basis, epsilon=0.4, angles=ANGLES, signed=True)
    np.testing.assert_array_equal(result.counts, full.counts)
    np.testing.assert_array_equal(result.negative_counts, full.negative_counts)
    assert int(result.num_samples) == len(x)
    # A sown value, dict batches and a user basis (rows rescaled: SRM normalises them).
    dicts = [{"x": b, "y": np.zeros(len(b))} for b in batches]
    scaled = basis * np.arange(1, 8, dtype=np.float32)[:, None]
    by_sow = layer_srm(model, "z", iter(dicts), select="x", basis=scaled, epsilon=0.4,
                       angles=ANGLES, signed=True, method="direct")
    np.testing.assert_array_equal(by_sow.counts, full.counts)
    np.testing.assert_array_equal(by_sow.negative_counts, full.negative_counts)


def test_collect_activations_conv_features(rng):
    class CNN(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(1, 3, kernel_size=(3, 3), rngs=rngs)

        def __call__(self, x):
            return jnp.mean(nnx.relu(self.conv(x)), axis=(1, 2))

    cnn = CNN(nnx.Rngs(1))
    images = rng.standard_normal((10, 5, 5, 1)).astype(np.float32)
    feature_maps = np.asarray(cnn.conv(images))
    batches = [images[:4], images[4:8], images[8:]]
    per_position = collect_activations(cnn, "conv", batches, features="last")
    np.testing.assert_allclose(per_position, feature_maps.reshape(-1, 3), rtol=1e-5, atol=1e-6)
    per_image = collect_activations(cnn, "conv", batches)
    np.testing.assert_allclose(per_image, feature_maps.reshape(10, -1), rtol=1e-5, atol=1e-6)
    assert as_samples(jnp.ones((2, 3, 4)), "last").shape == (6, 4)


def test_generalised_tanh_basis_is_found(rng):
    from srm_jax import nn

    basis = rng.standard_normal((6, 3)).astype(np.float32)

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(3, 3, rngs=rngs)
            self.act = nn.GeneralisedTanh(basis)
            self.iso = nn.IsotropicTanh()  # carries no basis
            self.reference = nn.PrivilegedBasis(jnp.asarray(basis[::-1]))

        def __call__(self, x):
            return self.iso(self.act(self.lin(x)))

    model = Model(nnx.Rngs(0))
    unit = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    np.testing.assert_allclose(find_basis(model, "act"), unit, rtol=1e-6)
    np.testing.assert_array_equal(find_basis(model, "reference"), basis[::-1])
    with pytest.raises(ValueError, match=r"2 modules carry a `basis` \(\['<root>', 'act'\]\)"):
        find_basis(model)  # the root holds a PrivilegedBasis variable too
    del model.reference
    np.testing.assert_allclose(find_basis(model), unit, rtol=1e-6)  # now the only one
    x = rng.standard_normal((9, 3)).astype(np.float32)
    _, pre = layer_activations(model, "act", x, capture="input")
    np.testing.assert_allclose(pre, model.lin(x), rtol=1e-6)
