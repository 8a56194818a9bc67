"""The paper's reconstruction autoencoders in Flax NNX (paper App. E; math §9).

Fully connected, for flattened inputs of any size ``d`` (MNIST 784, CIFAR-10 3,072, digits 64).
Weights are Xavier-normal (App. G); biases zero, or (``bias_init="torch"``, a choice the paper
leaves open) PyTorch's ``nn.Linear`` default ``U(−1/√fan_in, 1/√fan_in)``. Every activation is
the generalised tanh (Eqn. 14) on its own randomly rotated privileged basis, drawn from the
model's ``rngs`` (stream ``basis``); the isotropic control uses isotropic tanh everywhere instead.

With hidden widths ``h_1 … h_k`` (a setting; the paper's architecture figures were lost) and
latent width ``n`` (σ_l is each layer's activation, σ_z the one on the latent layer):

* **small** (no activation before the latent layer)::

      encoder: x → Linear(d, h_1) → σ_1 → … → Linear(h_k, n) = z        (z is affine, unbounded)
      decoder: z → σ_z → Linear(n, h_k) → σ → … → Linear(h_1, d) = x̂

  ``encode(x)`` returns ``z``; the **latent basis** is that of σ_z, the activation applied to
  ``z`` first thing in the decoder.

* **large** (an activation before the latent layer)::

      encoder: x → Linear(d, h_1) → σ_1 → … → Linear(h_k, n) → σ_z = z  (z is σ_z's output)
      decoder: z → Linear(n, h_k) → σ → … → Linear(h_1, d) = x̂

  ``encode(x)`` returns ``z = σ_z(·)``; the **latent basis** is that of σ_z, the activation
  whose output is the latent layer.

In both cases the latent basis is the one of the only activation that acts on the ``n``-wide
latent space, and it is the basis SRM is measured with (math §9). The output layer is linear.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from srm_jax import bases as srm_bases
from srm_jax import nn as srm_nn

# Xavier-normal as in the paper (Glorot & Bengio; PyTorch's ``xavier_normal_``): an untruncated
# normal with variance 2 / (fan_in + fan_out). JAX's ``xavier_normal`` draws a *truncated* normal,
# whose per-coordinate truncation is not rotation invariant (it privileges the standard basis, the
# very confound App. G removes), so the plain normal is used.
xavier_normal = nnx.initializers.variance_scaling(1.0, "fan_avg", "normal")
zeros = nnx.initializers.zeros_init()


@functools.partial(
    jax.jit, static_argnames=("kind", "m", "n", "thompson_steps", "thompson_learning_rate")
)
def make_basis(
    key: jax.Array,
    kind: str,
    m: int,
    n: int,
    *,
    thompson_steps: int = 2000,
    thompson_learning_rate: float = 0.1,
) -> jax.Array:
    """A randomly rotated ``(m, n)`` privileged basis of ``kind`` (math §8), from ``key``.

    ``"orthoplex"`` (``m = 2n``) and ``"simplex"`` (``m = n + 1``) are the exact configurations
    the Thompson optimiser converges to; ``"thompson"`` runs the App. D optimiser (Eqns. 16–17).
    Jitted (one compilation per kind and size).
    """
    if kind == "orthoplex":
        if m != 2 * n:
            raise ValueError(f"an orthoplex basis has m = 2n = {2 * n} vectors, not {m}.")
        return srm_bases.orthoplex_basis(key, n)
    if kind == "simplex":
        if m != n + 1:
            raise ValueError(f"a simplex basis has m = n + 1 = {n + 1} vectors, not {m}.")
        return srm_bases.simplex_basis(key, n)
    if kind == "thompson":
        return srm_bases.thompson_basis(
            key, m, n, steps=thompson_steps, learning_rate=thompson_learning_rate
        )
    raise ValueError(f"unknown basis kind {kind!r}; choose thompson, orthoplex or simplex.")


@functools.partial(
    jax.jit,
    static_argnames=(
        "kernel_shapes", "basis_specs", "thompson_steps", "thompson_learning_rate", "bias_init"
    ),
)
def _draw(
    params_key: jax.Array,
    basis_key: jax.Array,
    *,
    kernel_shapes: tuple,
    basis_specs: tuple,
    thompson_steps: int,
    thompson_learning_rate: float,
    bias_init: str = "zero",
):
    """Every Xavier-normal kernel, bias and privileged basis of a model, in one compilation.

    Biases are zero, or for ``bias_init="torch"`` PyTorch's ``nn.Linear`` default
    ``U(−1/√fan_in, 1/√fan_in)`` drawn from ``fold_in(params_key, 1)`` (the kernels' keys are
    the same for both, so the two variants share their weights).
    """
    kernel_keys = jax.random.split(params_key, len(kernel_shapes))
    kernels = tuple(
        xavier_normal(k, shape, jnp.float32)
        for k, shape in zip(kernel_keys, kernel_shapes, strict=True)
    )
    if bias_init == "torch":
        bias_keys = jax.random.split(jax.random.fold_in(params_key, 1), len(kernel_shapes))
        biases = tuple(
            jax.random.uniform(k, (b,), jnp.float32, -1.0 / np.sqrt(a), 1.0 / np.sqrt(a))
            for k, (a, b) in zip(bias_keys, kernel_shapes, strict=True)
        )
    elif bias_init == "zero":
        biases = tuple(jnp.zeros((b,), jnp.float32) for _, b in kernel_shapes)
    else:
        raise ValueError(f"bias_init must be 'zero' or 'torch', got {bias_init!r}.")
    basis_keys = jax.random.split(basis_key, len(basis_specs))
    bases = tuple(
        make_basis(
            k, kind=kind, m=m, n=n,
            thompson_steps=thompson_steps, thompson_learning_rate=thompson_learning_rate,
        )
        for k, (kind, m, n) in zip(basis_keys, basis_specs, strict=True)
    )
    return kernels, biases, bases


def hidden_basis_size(kind: str, width: int, ratio: float) -> int:
    """``m_h`` of a hidden layer of ``width`` for basis ``kind`` (Thompson: ``round(ratio·h)``)."""
    if kind == "orthoplex":
        return 2 * width
    if kind == "simplex":
        return width + 1
    return max(2, int(round(ratio * width)))


class Autoencoder(nnx.Module):
    """Small or large reconstruction autoencoder (paper App. E); see the module docstring.

    Args:
      in_features: ``d``, the flattened input size.
      latent_dim: ``n``.
      num_basis: ``m`` of the latent activation's basis.
      size: ``"small"`` or ``"large"``.
      hidden_widths: widths between input and latent (decoder mirrored).
      basis_kind: kind of the latent basis (``thompson`` / ``orthoplex`` / ``simplex``).
      hidden_basis_kind, hidden_basis_ratio: bases of the hidden-layer activations.
      activation: ``"generalised_tanh"`` or ``"isotropic_tanh"`` (the isotropic control: every
        activation is isotropic tanh, and the model still carries a latent basis of the stated
        kind, used by nothing but SRM, as the reference to measure against).
      thompson_steps, thompson_learning_rate: App. D optimiser settings.
      isotropic_radius: identity-ball radius of isotropic tanh.
      bias_init: ``"zero"`` or ``"torch"`` (``U(−1/√fan_in, 1/√fan_in)``).
      rngs: ``nnx.Rngs`` with streams ``params`` (weights) and ``basis`` (bases); a single
        default stream also works.
    """

    def __init__(
        self,
        in_features: int,
        *,
        latent_dim: int,
        num_basis: int,
        size: str = "small",
        hidden_widths: Sequence[int] = (128,),
        basis_kind: str = "orthoplex",
        hidden_basis_kind: str = "orthoplex",
        hidden_basis_ratio: float = 2.0,
        activation: str = "generalised_tanh",
        thompson_steps: int = 2000,
        thompson_learning_rate: float = 0.1,
        isotropic_radius: float = 1e-2,
        bias_init: str = "zero",
        rngs: nnx.Rngs,
    ):
        if size not in ("small", "large"):
            raise ValueError(f"size must be 'small' or 'large', got {size!r}.")
        if activation not in ("generalised_tanh", "isotropic_tanh"):
            raise ValueError(f"unknown activation {activation!r}.")
        self.size = size
        self.activation_name = activation
        widths = [in_features, *hidden_widths, latent_dim]
        back = widths[::-1]
        kernel_shapes = tuple(itertools.pairwise(widths)) + tuple(itertools.pairwise(back))
        # Privileged bases, in layer order: encoder hidden layers, latent, decoder hidden layers.
        specs = [
            (hidden_basis_kind, hidden_basis_size(hidden_basis_kind, w, hidden_basis_ratio), w)
            for w in hidden_widths
        ]
        specs.append((basis_kind, num_basis, latent_dim))
        specs += specs[: len(hidden_widths)][::-1]
        kernels, biases, bases = _draw(
            rngs.params() if "params" in rngs else rngs(),
            rngs.basis() if "basis" in rngs else rngs(),
            kernel_shapes=kernel_shapes,
            basis_specs=tuple(specs),
            thompson_steps=thompson_steps,
            thompson_learning_rate=thompson_learning_rate,
            bias_init=bias_init,
        )
        kernels, biases, bases = list(kernels), list(biases), list(bases)

        def linear(a: int, b: int) -> nnx.Linear:
            kernel, bias = kernels.pop(0), biases.pop(0)
            return nnx.Linear(
                a, b,
                kernel_init=lambda *_: kernel,
                bias_init=lambda *_: bias,
                rngs=rngs,
            )

        def act() -> nnx.Module:
            basis = bases.pop(0)
            if activation == "isotropic_tanh":
                return srm_nn.IsotropicTanh(radius=isotropic_radius)
            return srm_nn.GeneralisedTanh(basis)

        self.encoder = nnx.List([linear(a, b) for a, b in itertools.pairwise(widths)])
        self.encoder_activations = nnx.List([act() for _ in hidden_widths])
        latent_basis = bases[0]
        self.latent_activation = act()
        if activation == "isotropic_tanh":
            # Nothing acts through this basis: it is the reference SRM is measured against.
            self.reference_basis = srm_nn.PrivilegedBasis(latent_basis)
        self.decoder = nnx.List([linear(a, b) for a, b in itertools.pairwise(back)])
        self.decoder_activations = nnx.List([act() for _ in hidden_widths])

    @property
    def latent_basis(self) -> jax.Array:
        """``(m, n)`` privileged basis of the activation acting on the latent layer (σ_z).

        For the isotropic control, the reference basis that no layer uses.
        """
        if self.activation_name == "isotropic_tanh":
            return self.reference_basis[...]
        return self.latent_activation.basis

    def encode(self, x: jax.Array) -> jax.Array:
        """Latent activations ``z`` ``(..., n)``: the layer SRM is measured on."""
        h = x
        for layer, activation in zip(self.encoder[:-1], self.encoder_activations, strict=True):
            h = activation(layer(h))
        z = self.encoder[-1](h)
        if self.size == "large":
            z = self.latent_activation(z)
        return z

    def decode(self, z: jax.Array) -> jax.Array:
        """Reconstruction ``x̂`` ``(..., d)`` from latent activations (linear output layer)."""
        h = self.latent_activation(z) if self.size == "small" else z
        for layer, activation in zip(self.decoder[:-1], self.decoder_activations, strict=True):
            h = activation(layer(h))
        return self.decoder[-1](h)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Reconstruction of ``x``."""
        return self.decode(self.encode(x))

    def measured(self, x: jax.Array, tensor: str = "z") -> jax.Array:
        """The tensor SRM is measured on: ``z`` (:meth:`encode`) or ``"sigma_z"``, σ_z(z)."""
        z = self.encode(x)
        if tensor == "z":
            return z
        if tensor == "sigma_z" and self.size == "small":
            return self.latent_activation(z)
        raise ValueError(f"measure_tensor {tensor!r} is not defined for a {self.size} model.")


def model_kwargs(config) -> tuple:
    """The model settings of a :class:`train.configs.Config` as hashable ``(name, value)`` pairs."""
    return (
        ("latent_dim", config.latent_dim),
        ("num_basis", config.num_basis),
        ("size", config.size),
        ("hidden_widths", tuple(config.hidden_widths)),
        ("basis_kind", config.basis_kind),
        ("hidden_basis_kind", config.hidden_basis_kind),
        ("hidden_basis_ratio", config.hidden_basis_ratio),
        ("activation", config.activation),
        ("thompson_steps", config.thompson_steps),
        ("thompson_learning_rate", config.thompson_learning_rate),
        ("isotropic_radius", config.isotropic_radius),
        ("bias_init", config.bias_init),
    )


def build_model(config, in_features: int, key: jax.Array) -> Autoencoder:
    """The :class:`Autoencoder` a :class:`train.configs.Config` describes, from one PRNG key.

    ``key`` is split into the ``params`` stream (Xavier-normal weights) and the ``basis`` stream
    (every activation's random rotation), so the same seed gives the same model.
    """
    params_key, basis_key = jax.random.split(key)
    rngs = nnx.Rngs(params=params_key, basis=basis_key)
    return Autoencoder(int(in_features), **dict(model_kwargs(config)), rngs=rngs)


def equalise_correction_pairs(models: Sequence[Autoencoder]) -> None:
    """Give the generalised tanhs at the same place in ``models`` pair lists of one length.

    A generalised tanh stores the positive-cosine pairs of its basis (a static shape); for an
    overcomplete Thompson basis their number depends on the seed (e.g. 1,613 and 1,622 of the
    4,560 pairs of ``m = 96`` in ``n = 24``), so the models of an ensemble could not be stacked.
    Each shorter list is padded, in place, with its basis's most negative-cosine pair: a pair
    whose cosine is at or below the tolerance has weight 0 in the correction (Eqn. 13) and adds 0
    to every denominator, so the activation is unchanged.

    Raises:
      ValueError: a basis that needs padding has no pair with a cosine well below the
        tolerance (every pair of its vectors has a positive cosine).
    """
    per_model = [[m for _, m in nnx.iter_graph(model) if isinstance(m, srm_nn.GeneralisedTanh)]
                 for model in models]
    for modules in zip(*per_model, strict=True):
        lengths = [int(m.correction_pairs[...].shape[0]) for m in modules]
        size = max(lengths)
        for module, length in zip(modules, lengths, strict=True):
            if length == size:
                continue
            unit = np.asarray(module.basis, np.float64)
            unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
            i, j = np.triu_indices(unit.shape[0], k=1)
            cos = np.sum(unit[i] * unit[j], axis=1)
            k = int(np.argmin(cos))
            if cos[k] > module.tolerance - 1e-3:
                raise ValueError(
                    "cannot pad the correction pairs of a basis whose vectors all have positive "
                    "cosines; build the ensemble's models one by one instead.")
            pad = np.tile(np.asarray([[i[k], j[k]]], np.int32), (size - length, 1))
            pairs = np.concatenate([np.asarray(module.correction_pairs[...]), pad])
            module.correction_pairs = srm_nn.CorrectionPairs(jnp.asarray(pairs, jnp.int32))


def mse(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """Mean-squared reconstruction error over every element (the paper's loss)."""
    return jnp.mean(jnp.square(prediction - target))
