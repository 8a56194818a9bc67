"""Tests of train/models.py against float64 NumPy transcriptions of the architecture (App. E)."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from flax import nnx

from train.configs import get_config
from train.models import Autoencoder, build_model, hidden_basis_size


def gtanh_np(x, basis):
    """Eqn. 14 (SPEC §7) in float64 NumPy, written from the paper, for a batch of rows."""
    x = np.asarray(x, np.float64)
    b = np.asarray(basis, np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    m = b.shape[0]
    c = b @ b.T
    pos = np.maximum(0.0, c)
    a = np.linalg.norm(x, axis=-1)
    out = np.zeros_like(x)
    for k in range(x.shape[0]):
        big_n = 0.0
        for j in range(m):
            num = sum(np.tanh(a[k] * pos[j, i]) * c[i, j] for i in range(m) if i != j)
            big_n += num / np.sum(pos[j] ** 2)
        big_n = -big_n / m
        p = b @ x[k]
        xhat_p = p / a[k] if a[k] > 0 else np.zeros_like(p)
        out[k] = (np.tanh(np.maximum(0.0, p)) + np.maximum(0.0, xhat_p) * big_n) @ b
    return out


def iso_np(x, radius=1e-2):
    x = np.asarray(x, np.float64)
    r = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.where(r <= radius, x, np.tanh(r) * x / np.where(r == 0, 1, r))


def linear_np(layer, x):
    return np.asarray(x, np.float64) @ np.asarray(layer.kernel[...], np.float64) + np.asarray(
        layer.bias[...], np.float64
    )


def model_np(model, x):
    """The documented architecture, evaluated layer by layer in float64 (returns z, x_hat)."""
    act = iso_np if model.activation_name == "isotropic_tanh" else None

    def sigma(module, h):
        return act(h) if act else gtanh_np(h, module.basis)

    h = x
    for layer, a in zip(model.encoder[:-1], model.encoder_activations, strict=True):
        h = sigma(a, linear_np(layer, h))
    z = linear_np(model.encoder[-1], h)
    if model.size == "large":
        z = sigma(model.latent_activation, z)
    h = sigma(model.latent_activation, z) if model.size == "small" else z
    for layer, a in zip(model.decoder[:-1], model.decoder_activations, strict=True):
        h = sigma(a, linear_np(layer, h))
    return z, linear_np(model.decoder[-1], h)


@functools.cache
def make(size="small", hidden=(5, 4), kind="orthoplex", n=3, m=6, activation="generalised_tanh",
         hidden_kind="orthoplex", seed=0, d=12):
    """A tiny model, cached: tests share models (and compilations) of the same settings."""
    return Autoencoder(
        d, latent_dim=n, num_basis=m, size=size, hidden_widths=hidden, basis_kind=kind,
        hidden_basis_kind=hidden_kind, activation=activation, thompson_steps=200,
        rngs=nnx.Rngs(params=jax.random.key(seed), basis=jax.random.key(seed + 100)),
    )


@pytest.mark.parametrize(("size", "hidden"), [("small", ()), ("small", (5, 4)), ("large", (5, 4))])
def test_forward_matches_numpy_architecture(size, hidden, rng):
    model = make(size=size, hidden=hidden)
    x = rng.uniform(-1, 1, size=(5, 12))
    z_ref, out_ref = model_np(model, x)
    np.testing.assert_allclose(np.asarray(model.encode(x.astype(np.float32))), z_ref, atol=2e-5)
    np.testing.assert_allclose(np.asarray(model(x.astype(np.float32))), out_ref, atol=2e-5)


def test_isotropic_control_matches_numpy(rng):
    model = make(activation="isotropic_tanh")
    x = rng.uniform(-1, 1, size=(4, 12))
    z_ref, out_ref = model_np(model, x)
    np.testing.assert_allclose(np.asarray(model(x.astype(np.float32))), out_ref, atol=2e-5)
    # It still carries a reference basis (for SRM) that no layer uses.
    assert model.latent_basis.shape == (6, 3)


def test_small_latent_is_affine_in_input_without_hidden_layers(rng):
    model = make(size="small", hidden=())
    x1, x2 = rng.normal(size=(2, 3, 12)).astype(np.float32)
    z = lambda v: np.asarray(model.encode(v), np.float64)  # noqa: E731
    np.testing.assert_allclose(z(0.3 * x1 + 0.7 * x2), 0.3 * z(x1) + 0.7 * z(x2), atol=1e-5)


def test_large_latent_is_the_output_of_its_activation(rng):
    model = make(size="large")
    x = rng.uniform(-1, 1, size=(4, 12))
    h = gtanh_np(linear_np(model.encoder[0], x), model.encoder_activations[0].basis)
    h = gtanh_np(linear_np(model.encoder[1], h), model.encoder_activations[1].basis)
    z_ref = gtanh_np(linear_np(model.encoder[2], h), model.latent_basis)
    np.testing.assert_allclose(np.asarray(model.encode(x.astype(np.float32))), z_ref, atol=2e-5)


@pytest.mark.parametrize(
    ("kind", "n", "m"), [("orthoplex", 3, 6), ("simplex", 3, 4), ("thompson", 3, 9)]
)
def test_every_activation_has_its_own_unit_basis(kind, n, m):
    hidden_kind = "thompson" if kind == "thompson" else kind
    model = make(kind=kind, n=n, m=m, hidden_kind=hidden_kind)
    acts = [*model.encoder_activations, model.latent_activation, *model.decoder_activations]
    bases = [np.asarray(a.basis) for a in acts]
    for a, b in zip(acts, bases, strict=True):
        width = b.shape[1]
        expected = m if a is model.latent_activation else hidden_basis_size(kind, width, 2.0)
        assert b.shape[0] == expected
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    # Distinct random rotations: the encoder's and the decoder's width-4 layers (mirrors)
    # must not share a basis.
    enc4 = np.asarray(model.encoder_activations[1].basis)
    dec4 = np.asarray(model.decoder_activations[0].basis)
    assert not np.allclose(enc4, dec4, atol=1e-3)
    # Not the standard basis: no vector within 10 degrees of a coordinate axis... for most.
    lat = np.asarray(model.latent_basis)
    assert np.mean(np.max(np.abs(lat), axis=1) > np.cos(np.radians(10))) < 0.5


def test_exact_bases_have_their_geometry():
    ortho = np.asarray(make().latent_basis, np.float64)
    c = ortho @ ortho.T
    off = c[~np.eye(6, dtype=bool)]
    assert np.all(np.isclose(off, 0, atol=1e-5) | np.isclose(off, -1, atol=1e-5))
    simp = np.asarray(make(kind="simplex", n=3, m=4, hidden_kind="simplex").latent_basis)
    c = simp.astype(np.float64) @ simp.T
    np.testing.assert_allclose(c[~np.eye(4, dtype=bool)], -1 / 3, atol=1e-5)


def test_weights_xavier_normal_biases_zero_bases_not_trainable():
    model = make(hidden=(200,), d=300, n=4, m=8)
    kernel = np.asarray(model.encoder[0].kernel[...])
    expected_std = np.sqrt(2.0 / (300 + 200))
    assert abs(kernel.std() / expected_std - 1) < 0.02
    assert abs(kernel.mean()) < 0.02 * expected_std
    # A plain (untruncated, hence rotation-invariant) normal: of 60,000 draws about 160 lie
    # beyond 3 sigma; a 2-sigma-truncated normal (jax's xavier_normal) has none.
    assert np.sum(np.abs(kernel) > 3 * expected_std) > 60
    for layer in (*model.encoder, *model.decoder):
        assert np.all(np.asarray(layer.bias[...]) == 0)
    params = nnx.state(model, nnx.Param)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    widths = [300, 200, 4, 200, 300]
    assert n_params == sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))


def test_same_seed_same_model_different_seed_different_bases():
    cfg = get_config("fig1").replace(
        hidden_widths=(5, 4), latent_dim=3, num_basis=6, thompson_steps=200
    )
    a = build_model(cfg, 12, jax.random.key(1))
    b = build_model(cfg, 12, jax.random.key(1))
    c = build_model(cfg, 12, jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(a.latent_basis), np.asarray(b.latent_basis))
    np.testing.assert_array_equal(
        np.asarray(a.encoder[0].kernel[...]), np.asarray(b.encoder[0].kernel[...])
    )
    assert not np.allclose(np.asarray(a.latent_basis), np.asarray(c.latent_basis))


def test_bad_basis_size_is_rejected():
    with pytest.raises(ValueError, match="2n"):
        make(kind="orthoplex", n=3, m=7)
