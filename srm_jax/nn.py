"""Flax NNX modules for the paper's activations, carrying their privileged basis (math §7).

The basis is held in a :class:`PrivilegedBasis` variable, a subclass of ``nnx.Variable`` that is
*not* an ``nnx.Param``: ``nnx.state(model, nnx.Param)``, ``nnx.grad`` (which differentiates
``nnx.Param`` by default) and ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` leave it alone,
while ``nnx.split``/``nnx.merge``, ``nnx.jit`` and checkpoints of ``nnx.state(model)`` carry
it with the model. Every module has a ``.basis`` property (the ``(m, n)`` array, or ``None``
for :class:`IsotropicTanh`) from which SRM reads the privileged basis; to find all of them in a
model, use ``nnx.state(model, PrivilegedBasis)``.

:class:`GeneralisedTanh` also stores the positive-cosine pair list of its basis
(:func:`srm_jax.activations.positive_cosine_pairs`) in a :class:`CorrectionPairs` variable,
computed once when the module is built. Under ``nnx.jit`` the basis is traced, so the pair
list (static shape) keeps the correction on the sparse path. Replacing the basis values by
hand keeps the old pair list; build a new module instead (restoring a checkpoint restores both).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from srm_jax._validation import UNSET, check_basis, renamed
from srm_jax.activations import (
    DEFAULT_PAIR_TOLERANCE,
    DEFAULT_RADIUS,
    _resolve_pairs,
    generalised_tanh,
    isotropic_tanh,
    normalised_isotropic_tanh,
)
from srm_jax.rotation import normalise_rows

__all__ = [
    "CorrectionPairs",
    "GeneralisedTanh",
    "IsotropicTanh",
    "NormalisedIsotropicTanh",
    "PrivilegedBasis",
]


class PrivilegedBasis(nnx.Variable):
    """A non-trainable ``(m, n)`` privileged basis (unit rows) held by an activation module."""


class CorrectionPairs(nnx.Variable):
    """The non-trainable ``(P, 2)`` int32 positive-cosine pair list of a generalised tanh."""


def _unit_basis(basis) -> jax.Array:
    b = jnp.asarray(basis)
    check_basis(b, min_vectors=1)
    return normalise_rows(b)


class GeneralisedTanh(nnx.Module):
    """Generalised tanh (Eqn. 14) on a fixed privileged basis; see
    :func:`srm_jax.activations.generalised_tanh`.

    Args:
      basis: ``(m, n)`` basis (rows normalised and stored as :class:`PrivilegedBasis`).
      tolerance: cosines at or below it count as non-positive in the correction.
      correction_pairs: the ``(P, 2)`` positive-cosine pairs of ``basis`` (formerly ``pairs``,
        still accepted with a DeprecationWarning); by default computed here with
        :func:`~srm_jax.activations.positive_cosine_pairs`, which needs a concrete basis. If the
        module is built from a traced basis (one computed inside ``nnx.jit`` or
        ``nnx.eval_shape``; a concrete basis closed over by them is fine) and no pairs are
        given, it stores all ``m(m−1)/2`` pairs: still exact, but ``O(m²)`` per sample and a
        different state shape from a module built eagerly.
    """

    def __init__(
        self,
        basis: jax.Array,
        *,
        tolerance: float = DEFAULT_PAIR_TOLERANCE,
        correction_pairs: jax.Array | np.ndarray | None = None,
        pairs=UNSET,
    ):
        pairs = renamed(
            "GeneralisedTanh", "pairs", pairs, "correction_pairs", correction_pairs, None
        )
        unit = _unit_basis(basis)
        pairs = _resolve_pairs(basis, pairs, tolerance)
        self.privileged_basis = PrivilegedBasis(unit)
        self.correction_pairs = CorrectionPairs(pairs.reshape(-1, 2))
        self.tolerance = float(tolerance)

    @property
    def basis(self) -> jax.Array:
        """The ``(m, n)`` privileged basis."""
        return self.privileged_basis[...]

    def __call__(self, x: jax.Array) -> jax.Array:
        return generalised_tanh(
            x, self.basis, correction_pairs=self.correction_pairs[...], tolerance=self.tolerance
        )


class IsotropicTanh(nnx.Module):
    """Isotropic tanh ``tanh(‖x‖) x̂``, identity inside ``‖x‖ ≤ radius``; no privileged basis.

    See :func:`srm_jax.activations.isotropic_tanh`. ``.basis`` is ``None``.
    """

    def __init__(self, *, radius: float = DEFAULT_RADIUS):
        self.radius = float(radius)

    @property
    def basis(self) -> None:
        """``None``: the isotropic tanh privileges no basis."""
        return None

    def __call__(self, x: jax.Array) -> jax.Array:
        return isotropic_tanh(x, radius=self.radius)


class NormalisedIsotropicTanh(nnx.Module):
    """Basis-normalised isotropic tanh (Eqn. 15); see
    :func:`srm_jax.activations.normalised_isotropic_tanh`.

    Args:
      basis: concrete ``(m, n)`` basis (stored as :class:`PrivilegedBasis`).
      radius: identity-ball radius of the numerator.
      min_cosine: floor of the denominator (``None``: ``1/n``).
    """

    def __init__(
        self,
        basis: jax.Array,
        *,
        radius: float = DEFAULT_RADIUS,
        min_cosine: float | None = None,
    ):
        self.privileged_basis = PrivilegedBasis(_unit_basis(basis))
        self.radius = float(radius)
        self.min_cosine = None if min_cosine is None else float(min_cosine)

    @property
    def basis(self) -> jax.Array:
        """The ``(m, n)`` privileged basis."""
        return self.privileged_basis[...]

    def __call__(self, x: jax.Array) -> jax.Array:
        return normalised_isotropic_tanh(
            x, self.basis, radius=self.radius, min_cosine=self.min_cosine
        )
