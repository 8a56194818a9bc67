"""Privileged planes (bivectors) and the angle grid (math §2, §4; paper Sec. 2.1.1).

:func:`plane_pairs` builds the planes; the keyword ``planes=`` of every SRM entry point takes
its result (or a kind). The function was called ``planes`` before: ``srm_jax.planes(...)`` and
``from srm_jax.planes import planes`` still work for one release, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from srm_jax import _validation

PLANE_KINDS = ("comb", "perm")
DEFAULT_NUM_ANGLES = 100


def num_planes(m: int, kind: str = "comb") -> int:
    """Number of planes for ``m`` basis vectors: m(m-1)/2 (comb) or m(m-1) (perm)."""
    _check_kind(kind)
    return m * (m - 1) // (2 if kind == "comb" else 1)


def _check_kind(kind: str) -> None:
    if kind not in PLANE_KINDS:
        raise ValueError(
            f"plane kind must be 'comb' (alpha < beta, Combination-SRM) or 'perm' (all ordered "
            f"pairs, Permutation-SRM), got {kind!r}."
        )


def plane_pairs(
    m: int,
    kind: str = "comb",
    *,
    max_planes: int | None = None,
    key: jax.Array | None = None,
) -> jax.Array:
    """The privileged planes ``(alpha, beta)`` of ``m`` basis vectors (paper Sec. 2.1.1, math §2).

    Combination-SRM uses ``alpha < beta`` in ``itertools.combinations(range(m), 2)`` order;
    Permutation-SRM uses every ordered pair in ``itertools.permutations(range(m), 2)`` order.

    Args:
      m: number of privileged basis vectors (``m >= 2``).
      kind: ``"comb"`` or ``"perm"``.
      max_planes: if given and smaller than the number of planes, a random subset of this many
        planes is drawn without replacement from ``key`` (the paper's ``max_planes``). The chosen
        pairs keep their canonical order.
      key: JAX PRNG key; required with ``max_planes``.

    Returns:
      int32 array of shape ``(P, 2)``.
    """
    _check_kind(kind)
    if not isinstance(m, (int, np.integer)) or m < 2:
        raise ValueError(f"m must be an integer >= 2 (a plane needs two basis vectors), got {m!r}.")
    pairs = _all_pairs(m, kind)
    return _draw(pairs, max_planes, key)


def planes(*args, **kwargs) -> jax.Array:
    """Deprecated name of :func:`plane_pairs` (the same arguments; removed in the next
    release): ``planes`` is the keyword of every SRM entry point."""
    warnings.warn(
        "srm_jax.planes(...) is deprecated: use srm_jax.plane_pairs(...) (the same function). "
        "planes(...) will be removed in the next release.",
        DeprecationWarning,
        stacklevel=2,
    )
    return plane_pairs(*args, **kwargs)


def _all_pairs(m: int, kind: str) -> np.ndarray:
    """Every pair in ``itertools.combinations`` / ``permutations`` order, built by index
    arithmetic: a wide basis has tens of millions of pairs, too many for a list of tuples."""
    m = int(m)
    if kind == "comb":
        alpha, beta = np.triu_indices(m, 1)  # row-major: the order of combinations
    else:
        k = np.arange(m * (m - 1), dtype=np.int64)
        alpha, rest = k // (m - 1), k % (m - 1)
        beta = rest + (rest >= alpha)  # skip beta == alpha: the order of permutations
    return np.stack([alpha, beta], axis=1).astype(np.int32)


def _draw(pairs: np.ndarray, max_planes: int | None, key: jax.Array | None) -> jax.Array:
    """``max_planes`` of ``pairs`` drawn without replacement from ``key``, in their order.

    Evaluated eagerly even inside a trace (``jax.ensure_compile_time_eval``), so that planes
    built inside a jitted function stay concrete (the sample-major plan needs their values); a
    traced ``key`` is still traced.
    """
    with jax.ensure_compile_time_eval():
        return _draw_now(pairs, max_planes, key)


def _draw_now(pairs: np.ndarray, max_planes: int | None, key: jax.Array | None) -> jax.Array:
    if max_planes is None:
        return jnp.asarray(pairs)
    if key is None:
        raise ValueError(
            "max_planes draws a random subset of planes and needs a PRNG key: pass "
            "key=jax.random.key(seed)."
        )
    if int(max_planes) < 1:
        raise ValueError(f"max_planes must be >= 1, got {max_planes}.")
    total = pairs.shape[0]
    if max_planes >= total:
        return jnp.asarray(pairs)
    chosen = jax.random.choice(key, total, (int(max_planes),), replace=False)
    return jnp.asarray(pairs)[jnp.sort(chosen)]


def spanning_planes(
    basis: jax.Array,
    kind: str = "comb",
    *,
    max_planes: int | None = None,
    key: jax.Array | None = None,
) -> jax.Array:
    """The planes of ``kind`` that ``basis`` spans: pairs with ``|b̂_α·b̂_β| < 1 − 1e-6`` (math §2.2).

    An (anti-)parallel pair spans no plane, so it is skipped: the ``±`` bases
    (:func:`srm_jax.orthoplex_basis`, :func:`srm_jax.standard_basis`) keep every pair but the
    ``n`` antipodal ones. This is what ``planes="comb"`` / ``"perm"`` measure in every SRM entry
    point. The pairs keep the order of :func:`plane_pairs`; ``max_planes`` draws among the spanning
    pairs only (without replacement, from ``key``).

    ``basis`` must be concrete (the number of planes depends on its values); under ``jax.jit``
    call this outside the traced function and pass the pairs as ``planes=``.

    Args:
      basis: concrete ``(m, n)`` privileged basis.
      kind: ``"comb"`` or ``"perm"``.
      max_planes, key: as :func:`plane_pairs`.

    Returns:
      int32 ``(P, 2)`` pairs.
    """
    _check_kind(kind)
    if not _validation.is_concrete(basis):
        raise ValueError(
            "spanning_planes needs a concrete basis (the number of planes depends on its "
            "values): call it outside jax.jit and pass the pairs as planes=."
        )
    _validation.check_basis(basis)
    m = basis.shape[0]
    pairs = _all_pairs(m, kind)
    pairs = pairs[_validation.spans_plane(basis, pairs)]
    if pairs.shape[0] == 0:
        raise ValueError(
            f"no pair of the {m} basis vectors spans a plane: they are all (anti-)parallel "
            "(docs/math.md §2)."
        )
    return _draw(pairs, max_planes, key)


def angle_grid(num: int = DEFAULT_NUM_ANGLES, dtype: Any = None) -> jax.Array:
    """The default rotation angles: ``linspace(0, 2π, num)`` with the endpoint (math §4.5).

    The published implementation includes both 0 and 2π, so the first and last values of an SRM
    curve coincide.
    """
    if int(num) < 1:
        raise ValueError(f"num must be >= 1, got {num}.")
    return jnp.linspace(0.0, 2.0 * jnp.pi, int(num), endpoint=True, dtype=dtype)
