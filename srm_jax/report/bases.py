"""The privileged bases a report names by a short specification (App. B.1, App. D)."""

from __future__ import annotations

import jax

from srm_jax import bases as _bases
from srm_jax.report.errors import ReportError

#: Basis specifications of :func:`basis_from_spec` (besides a file path, read by the caller).
BASIS_SPECS = ("standard", "orthoplex:SEED", "simplex:SEED", "thompson:M:SEED", "random:M:SEED")
#: How many integers each kind of specification takes.
_ARITY = {"standard": 0, "orthoplex": 1, "simplex": 1, "thompson": 2, "random": 2}


def _parse_spec(spec: str) -> tuple[str, list[int]]:
    """``spec``'s kind and integers, checked (a :class:`ReportError` names the problem)."""
    kind, *args = spec.split(":")
    if kind not in _ARITY:
        raise ReportError(
            f"unknown basis {spec!r}: use one of {', '.join(BASIS_SPECS)} or the path of an "
            "(m, n) .npy file"
        )
    if len(args) != _ARITY[kind]:
        form = next(s for s in BASIS_SPECS if s.split(":")[0] == kind)
        raise ReportError(f"basis {spec!r} is malformed: write it as {form}")
    try:
        return kind, [int(a) for a in args]
    except ValueError:
        raise ReportError(f"basis {spec!r}: M and SEED must be integers") from None


def basis_from_spec(spec: str, n: int) -> jax.Array:
    """The privileged basis named by ``spec`` in ``R^n`` (App. B.1, App. D; math §8).

    ``"standard"``: ``±e_i`` (m = 2n), the privileged basis of elementwise activations;
    ``"orthoplex:SEED"``: ``±`` a Haar-random orthonormal basis; ``"simplex:SEED"``: a randomly
    rotated regular simplex (m = n + 1); ``"thompson:M:SEED"``: ``M`` vectors spread by the
    Thompson energy (Eqns. 16–17); ``"random:M:SEED"``: ``M`` random unit vectors. ``SEED`` seeds
    ``jax.random.key``. Raises :class:`ReportError` naming the problem for any other string.
    """
    kind, numbers = _parse_spec(spec)
    if n < 2:
        raise ReportError(f"the activations have n={n} feature(s): SRM needs n >= 2")
    if kind == "standard":
        return _bases.standard_basis(n)
    key = jax.random.key(numbers[-1])
    if kind == "orthoplex":
        return _bases.orthoplex_basis(key, n)
    if kind == "simplex":
        return _bases.simplex_basis(key, n)
    m = numbers[0]
    if m < 2:
        raise ReportError(f"basis {spec!r}: M must be >= 2 (a plane needs two vectors)")
    if kind == "thompson":
        return _bases.thompson_basis(key, m, n)
    return _bases.random_basis(key, m, n)
