"""Input checks shared by the engine (math §1-2).

Shape checks always run (shapes are static). Value checks (zero basis rows, degenerate pairs,
epsilon outside [-1, 1]) need concrete values: they run whenever the value is concrete (eager
calls, or arrays closed over by a jitted function) and are skipped for traced values, where a
Python exception cannot be raised without a host round-trip. Call the public functions once
eagerly (or use :func:`check_basis`) to validate inputs that will later be traced.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
import weakref

import jax
import numpy as np

DEGENERATE_PAIR_TOLERANCE = 1e-6


class _Unset:
    """The default of a deprecated keyword: tells "not passed" from any value (None included)."""

    def __repr__(self) -> str:
        return "<unset>"


UNSET = _Unset()


def renamed(function: str, old: str, old_value, new: str, new_value, new_default, *,
            depth: int = 1):
    """The value of keyword ``new``, formerly ``old`` (docs/vocabulary.md).

    ``old`` keeps working for one release with a ``DeprecationWarning``; passing both is an
    error. Returns ``new_value`` when ``old`` was not passed (``old_value is UNSET``). ``depth``
    is how many library frames lie between the user's call and this one (the warning names the
    user's line).
    """
    if old_value is UNSET:
        return new_value
    # An array passed as the new keyword counts as passed (its == is elementwise).
    if new_value is not new_default and (np.ndim(new_value) != 0 or new_value != new_default):
        raise TypeError(f"{function}() got both {new}= and its deprecated name {old}=.")
    warnings.warn(
        f"{function}(..., {old}=) is deprecated: use {new}= (the same setting). {old}= will be "
        "removed in the next release.",
        DeprecationWarning,
        stacklevel=2 + depth,
    )
    return old_value


def is_concrete(x) -> bool:
    """True when ``x`` has a value now (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def check_matrix(x, name: str) -> None:
    if getattr(x, "ndim", None) != 2:
        raise ValueError(
            f"{name} must be a 2-D array (one vector a row), got shape "
            f"{getattr(x, 'shape', None)}. Reshape it to (num_vectors, n) first, "
            "e.g. x.reshape(-1, x.shape[-1])."
        )


def check_activations(activations, basis) -> None:
    """Raises unless ``activations`` is ``(N, n)`` with the basis' ``n`` (math §1)."""
    check_matrix(activations, "activations")
    if activations.shape[1] != basis.shape[1]:
        raise ValueError(
            f"activations have n={activations.shape[1]} features but the basis vectors have "
            f"n={basis.shape[1]}: the basis must live in the activations' space (docs/math.md §1)."
        )


#: :func:`array_key` of live ``jax.Array`` objects by ``id`` (weak: an entry goes with its array).
_ARRAY_KEYS: dict[int, tuple] = {}


def array_key(values) -> tuple:
    """A cache key for a concrete array's value: shape, dtype and a digest of its bytes.

    A ``jax.Array`` is immutable, so its key is kept while it lives and the digest taken once:
    a report plans the same 38 MB planes and wide basis dozens of times a layer (NumPy arrays
    can change in place and are digested at every call)."""
    if isinstance(values, jax.Array) and is_concrete(values):
        entry = _ARRAY_KEYS.get(id(values))
        if entry is not None and entry[0]() is values:
            return entry[1]
        key = array_key(np.asarray(values))
        name = id(values)
        _ARRAY_KEYS[name] = (weakref.ref(values, lambda _: _ARRAY_KEYS.pop(name, None)), key)
        return key
    values = np.ascontiguousarray(values)
    return values.shape, values.dtype.str, hashlib.sha1(values.tobytes()).hexdigest()


def kept(cache: dict, key, make, size: int):
    """``cache[key]``, made by ``make()`` when absent, the oldest entry dropped past ``size``
    entries: the package's caches of host work by value (:func:`array_key`). Safe from several
    threads (a report runs stages side by side): two may both make a missing entry, one keeps."""
    with _KEPT_LOCK:
        if key in cache:
            return cache[key]
    value = make()  # outside the lock: a make() may itself use a cache
    with _KEPT_LOCK:
        while len(cache) >= size:
            cache.pop(next(iter(cache)))
        cache[key] = value
    return value


_KEPT_LOCK = threading.Lock()


def check_epsilon(epsilon) -> None:
    if is_concrete(epsilon):
        eps = np.asarray(epsilon)
        if eps.ndim != 0:
            raise ValueError(
                f"epsilon must be a scalar, got shape {eps.shape}; "
                "use jax.vmap over epsilon for a sweep."
            )
        if not (-1.0 <= float(eps) <= 1.0) or not np.isfinite(eps):
            raise ValueError(
                f"epsilon must lie in [-1, 1] (it is the cosine of the spotlight's half-angle), "
                f"got {float(eps)!r}."
            )


def check_basis(basis, min_vectors: int = 2) -> None:
    """Raises ``ValueError`` if ``basis`` (m, n) has ``m < min_vectors``, a zero row, or
    non-finite entries (math §1.2). The one basis check of the package: SRM needs two vectors to
    span a plane; an activation (``min_vectors=1``) needs one."""
    check_matrix(basis, "basis")
    m = basis.shape[0]
    if m < min_vectors:
        raise ValueError(
            f"basis must have at least 2 vectors (rows) to span a plane, got {m}."
        )
    if is_concrete(basis):
        b = np.asarray(basis, dtype=np.float64)
        if not np.all(np.isfinite(b)):
            rows = np.nonzero(~np.all(np.isfinite(b), axis=1))[0]
            raise ValueError(f"basis rows {rows.tolist()} contain NaN or Inf.")
        norms = np.linalg.norm(b, axis=1)
        zero = np.nonzero(norms == 0)[0]
        if zero.size:
            raise ValueError(
                f"basis rows {zero.tolist()} are zero vectors: a privileged direction needs a "
                "non-zero vector (docs/math.md §1). Remove them or replace them."
            )


def host_unit_rows(x) -> np.ndarray:
    """Concrete ``x`` as float64 NumPy rows of unit length, for host-side checks (a zero row
    stays zero): the host twin of :func:`srm_jax.normalise_rows`."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm == 0, 1, norm)


#: Pairs per vector above which :func:`pair_cosines` reads a Gram matrix instead of taking a
#: dot product per pair (which gathers ``2 P × n`` floats: 14 GB for every plane at n = 768).
GRAM_PAIRS_PER_VECTOR = 4


_GRAMS: dict = {}


def _abs_gram(basis) -> np.ndarray:
    """``|B̂ B̂ᵀ|`` in float64, cached by the basis' bytes (one entry: a report checks the same
    wide basis' planes many times, and a wide basis' Gram matrix is costly)."""
    def gram() -> np.ndarray:
        b = host_unit_rows(basis)
        return np.abs(b @ b.T)

    return kept(_GRAMS, array_key(basis), gram, 1)


def pair_cosines(basis, pairs) -> np.ndarray:
    """``|b̂_α·b̂_β|`` of every pair, in float64 on the host (concrete ``basis`` and ``pairs``)."""
    p = np.asarray(pairs)
    if p.shape[0] > GRAM_PAIRS_PER_VECTOR * np.shape(basis)[0]:
        return _abs_gram(basis)[p[:, 0], p[:, 1]]
    b = host_unit_rows(basis)
    return np.abs(np.sum(b[p[:, 0]] * b[p[:, 1]], axis=1))


def spans_plane(basis, pairs) -> np.ndarray:
    """Bool ``(P,)``: the pairs with ``|b̂_α·b̂_β| < 1 − 1e-6``, those that span a plane (math §2)."""
    return pair_cosines(basis, pairs) < 1.0 - DEGENERATE_PAIR_TOLERANCE


#: Value keys ``(basis, planes)`` of ``jax.Array`` pairs that passed :func:`check_planes`.
_CHECKED_PLANES: dict = {}


def check_planes(basis, pairs) -> None:
    """Raises if a pair indexes outside the basis, repeats an index, or spans no plane (math §2)."""
    m = basis.shape[0]
    if getattr(pairs, "ndim", None) != 2 or pairs.shape[-1] != 2:
        raise ValueError(f"planes must have shape (P, 2), got {getattr(pairs, 'shape', None)}.")
    if pairs.shape[0] == 0:
        raise ValueError("planes is empty: at least one (alpha, beta) pair is needed.")
    if not (is_concrete(pairs) and is_concrete(basis)):
        return
    if not (isinstance(pairs, jax.Array) and isinstance(basis, jax.Array)):
        _check_plane_values(basis, np.asarray(pairs), m)
        return
    # jax.Arrays cannot change: planes that passed stay checked (a report checks the same
    # millions of planes at every measurement of a layer); failing planes raise every time.
    kept(_CHECKED_PLANES, (array_key(basis), array_key(pairs)),
         lambda: _check_plane_values(basis, np.asarray(pairs), m) or True, 8)


def _check_plane_values(basis, p: np.ndarray, m: int) -> None:
    """:func:`check_planes`' checks of concrete pairs ``p`` of an ``m``-vector basis."""
    if p.min() < 0 or p.max() >= m:
        raise ValueError(f"plane indices must lie in [0, {m}), got range [{p.min()}, {p.max()}].")
    same = np.nonzero(p[:, 0] == p[:, 1])[0]
    if same.size:
        raise ValueError(f"plane {tuple(p[same[0]])} has alpha == beta: a plane needs two vectors.")
    c = pair_cosines(basis, p)
    bad = np.nonzero(c >= 1.0 - DEGENERATE_PAIR_TOLERANCE)[0]
    if bad.size:
        a, bb = p[bad[0]]
        raise ValueError(
            f"basis vectors {int(a)} and {int(bb)} are (anti-)parallel (|cos| = {c[bad[0]]:.8f} >= "
            f"1 - {DEGENERATE_PAIR_TOLERANCE:g}), so the pair ({int(a)}, {int(bb)}) spans no plane "
            f"(docs/math.md §2). Drop one of them or pass planes= without this pair."
        )
