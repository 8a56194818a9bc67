"""SRM of any layer of a Flax NNX model (paper Sec. 2.1.2, steps 1 and 3).

The paper's recipe: determine the privileged basis of the layer to analyse, forward the data to
that layer, stack its activations and measure SRM. Here a layer is named in one of two ways:

* **A module path**, ``"encoder/layers/1"`` (or ``"encoder.layers.1"``, or a tuple
  ``("encoder", "layers", 1)``), as :func:`flax.nnx.iter_modules` lists them. The module's
  method (``__call__`` by default) is intercepted while the model runs and its output (or its
  first positional input, ``capture="input"``) is taken. The model needs no change.
* **A sown value**: a model that calls ``self.sow(nnx.Intermediate, "latent", h)`` exposes ``h``
  at the path of the sowing module plus the name, e.g. ``"latent"`` (sown by the root) or
  ``"encoder/latent"``. It is read with :func:`flax.nnx.capture`.

A path that names a module is a module path; otherwise it is looked up among the sown values.
Interception patches the method on the module's class for the duration of one call (checking the
instance, so other instances of the class are untouched); it is not thread-safe, like
:func:`flax.nnx.capture`, which patches classes the same way.

The basis is the one the user gives or the one the model's activation module carries: a module
with a ``basis`` attribute (the :class:`srm_jax.nn.GeneralisedTanh` activation holds its basis in a
``PrivilegedBasis`` variable); see :func:`find_basis`.

The forward pass and the SRM count of each batch run in one jitted step compiled once (a ragged
last batch is padded and masked, :func:`srm_jax.streaming.fixed_size_batches`), and counts are
accumulated, so memory does not grow with the data set.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from srm_jax.resonance import SRMResult
from srm_jax.streaming import Batch, _selector, accumulate_srm, fixed_size_batches

CAPTURES = ("output", "input")
FEATURES = ("flatten", "last")
Path = str | tuple


def parse_path(path: Path) -> tuple[str, ...]:
    """A layer path as a tuple of strings: ``"a/b/0"``, ``"a.b.0"`` and ``("a", "b", 0)`` agree."""
    if isinstance(path, str):
        parts = [p for p in path.replace(".", "/").split("/") if p]
    else:
        parts = [str(p) for p in path]
    return tuple(parts)


def _format(path: tuple) -> str:
    return "/".join(str(p) for p in path) or "<root>"


def module_paths(model: nnx.Module) -> dict[str, nnx.Module]:
    """Every sub-module of ``model`` by its path string (``""`` is the model itself)."""
    return {_format(path) if path else "": m for path, m in nnx.iter_modules(model)}


def resolve_module(model: nnx.Module, path: Path) -> nnx.Module | None:
    """The sub-module of ``model`` at ``path``, or ``None`` when no module lives there."""
    wanted = parse_path(path)
    for module_path, module in nnx.iter_modules(model):
        if tuple(str(p) for p in module_path) == wanted:
            return module
    return None


def _variable_value(value) -> jax.Array:
    if isinstance(value, nnx.Variable):
        value = value.get_value()
    return jnp.asarray(value)


def _is_matrix(value) -> bool:
    if isinstance(value, nnx.Variable):
        value = value.get_value()
    return isinstance(value, (jax.Array, np.ndarray)) and value.ndim == 2


def _module_basis(module):
    """The module's ``basis`` attribute (array, property or variable), or its only
    ``PrivilegedBasis`` variable; ``None`` when it carries no basis."""
    value = getattr(module, "basis", None)
    if _is_matrix(value):
        return value
    try:
        from srm_jax.nn import PrivilegedBasis
    except ImportError:  # pragma: no cover - srm_jax.nn ships with the package
        return None
    held = [v for v in vars(module).values() if isinstance(v, PrivilegedBasis) and _is_matrix(v)]
    return held[0] if len(held) == 1 else None


def _has_basis(module) -> bool:
    return _module_basis(module) is not None


def _resolve_attribute(model, path: Path):
    obj = model
    for part in parse_path(path):
        if isinstance(obj, (list, tuple, nnx.List)) and part.lstrip("-").isdigit():
            obj = obj[int(part)]
        elif hasattr(obj, part):
            obj = getattr(obj, part)
        else:
            return None
    return obj


def find_basis(model: nnx.Module, path: Path | None = None) -> jax.Array:
    """The privileged basis ``(m, n)`` an activation module of ``model`` carries (SRM step 1).

    A module carries a basis when it has a 2-D ``basis`` attribute (an array, a property or an
    ``nnx.Variable``: :class:`srm_jax.nn.GeneralisedTanh` exposes ``.basis``) or holds exactly
    one :class:`srm_jax.nn.PrivilegedBasis` variable.

    Args:
      model: the NNX model.
      path: the module path of the activation (``"decoder/act0"``), or the path of a basis
        variable or array itself (``"reference_basis"``). Without it, the model must hold exactly
        one module that carries a basis.

    Raises:
      ValueError: nothing usable at ``path`` / several candidates / none.
    """
    if path is not None:
        target = _resolve_attribute(model, path)
        where = _format(parse_path(path))
        if target is None:
            raise ValueError(f"nothing at {where!r}; modules: {sorted(module_paths(model))}.")
        if isinstance(target, nnx.Module):
            basis = _module_basis(target)
            if basis is None:
                raise ValueError(
                    f"the module at {where!r} ({type(target).__name__}) carries no 2-D `basis`; "
                    "pass basis= explicitly."
                )
            return _variable_value(basis)
        if _is_matrix(target):
            return _variable_value(target)
        raise ValueError(f"{where!r} is neither a module nor a 2-D basis array.")
    found = {_format(p): m for p, m in nnx.iter_modules(model) if _has_basis(m)}
    if len(found) != 1:
        what = "no module carries" if not found else f"{len(found)} modules carry"
        raise ValueError(
            f"{what} a `basis` ({sorted(found)}): pass basis= or basis_path= to say which."
        )
    return _variable_value(_module_basis(next(iter(found.values()))))


@contextlib.contextmanager
def _intercept(target: nnx.Module, method: str, record: list):
    """Record ``(args, kwargs, output)`` of every call of ``target.<method>`` in ``record``."""
    cls = type(target)
    own = cls.__dict__.get(method)
    original = getattr(cls, method)

    @functools.wraps(original)
    def wrapper(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if self is target:
            record.append((args, kwargs, out))
        return out

    setattr(cls, method, wrapper)
    try:
        yield
    finally:
        if own is None:
            delattr(cls, method)
        else:
            setattr(cls, method, own)


def _pick_call(values: list, occurrence: int | None, where: str):
    if not values:
        raise ValueError(f"{where} was not called during the forward pass: nothing to capture.")
    if occurrence is None:
        if len(values) > 1:
            raise ValueError(
                f"{where} ran {len(values)} times in one forward pass; pass occurrence=i to pick "
                "the i-th call."
            )
        return values[0]
    return values[occurrence]


def _flat_intermediates(state) -> dict[tuple[str, ...], Any]:
    flat = {}
    for path, value in nnx.to_flat_state(state):
        flat[tuple(str(p) for p in path)] = value
    return flat


def capture_activations(
    model: nnx.Module,
    layer: Path,
    run: Callable[[nnx.Module], Any],
    *,
    capture: str = "output",
    method: str = "__call__",
    occurrence: int | None = None,
) -> tuple[Any, jax.Array]:
    """Run ``run(model)`` and return ``(its output, the layer's activations)``.

    Usable inside a jitted or differentiated function (``nnx.jit``, ``nnx.value_and_grad``, or
    ``jax.jit`` over ``nnx.merge``): the interception happens while the model is traced.

    Args:
      model: the NNX model.
      layer: a module path or a sown value's path (see the module docstring).
      run: calls the model, e.g. ``lambda m: m(x)``.
      capture: ``"output"`` (the module's return value) or ``"input"`` (its first positional
        argument: the pre-activation when the module is an activation). Sown values ignore it.
      method: the intercepted method of a module path (default ``"__call__"``).
      occurrence: which call to take when the module runs (or the value is sown) more than once
        per forward pass (default: exactly one call is required).

    Returns:
      ``(output, activations)``; activations keep the layer's shape ``(B, ...)``.
    """
    if capture not in CAPTURES:
        raise ValueError(f"capture must be one of {CAPTURES}, got {capture!r}.")
    target = resolve_module(model, layer)
    where = f"layer {_format(parse_path(layer))!r}"
    if target is not None:
        record: list = []
        with _intercept(target, method, record):
            # Inside nnx.capture, so that values the model sows are collected (and dropped)
            # rather than stored on the module (Flax 0.12 deprecates `sow` outside capture).
            output, _ = nnx.capture(run, nnx.Intermediate)(model)
        args, kwargs, out = _pick_call(record, occurrence, where)
        if capture == "output":
            return output, out
        if not args:
            raise ValueError(f"{where} was called with no positional input to capture.")
        return output, args[0]
    output, intermediates = nnx.capture(run, nnx.Intermediate)(model)
    flat = _flat_intermediates(intermediates)
    wanted = parse_path(layer)
    if wanted not in flat:
        raise ValueError(
            f"{where} is neither a module path ({sorted(module_paths(model))}) nor a sown value "
            f"({sorted(_format(p) for p in flat)})."
        )
    value = flat[wanted]
    value = value.get_value() if isinstance(value, nnx.Variable) else value
    if isinstance(value, (tuple, list)):
        value = _pick_call(list(value), occurrence, where)
    return output, value


def layer_activations(
    model: nnx.Module,
    layer: Path,
    *args,
    capture: str = "output",
    occurrence: int | None = None,
    **kwargs,
) -> tuple[Any, jax.Array]:
    """``model(*args, **kwargs)`` and the activations of ``layer``: ``(output, activations)``.

    A shorthand for :func:`capture_activations` with ``run = lambda m: m(*args, **kwargs)``; use
    it inside a loss function to get the layer for an in-training SRM metric.
    """
    return capture_activations(
        model, layer, lambda m: m(*args, **kwargs), capture=capture, occurrence=occurrence
    )


def as_samples(activations: jax.Array, features: str = "flatten") -> jax.Array:
    """A layer's activations as SRM samples ``(N, n)``.

    ``"flatten"``: one sample per input, ``(B, ...) -> (B, prod(...))`` (a dense layer, or a
    whole feature map). ``"last"``: one sample per position, ``(..., C) -> (-1, C)`` (the
    channels of a convolutional layer, whose elementwise activation privileges the channel
    basis at each position).
    """
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}.")
    activations = jnp.asarray(activations)
    if activations.ndim < 2:
        raise ValueError(f"layer activations must have a batch axis, got {activations.shape}.")
    if features == "flatten":
        return activations.reshape(activations.shape[0], -1)
    return activations.reshape(-1, activations.shape[-1])


_STATIC = ("graphdef", "layer", "call", "capture", "occurrence", "features")


def _forward(model_state, inputs, mask, *, graphdef, layer, call, capture, occurrence, features):
    """``(N, n)`` activations of ``layer`` for one padded batch; rows of padding are NaN."""
    m = nnx.merge(graphdef, model_state)
    _, acts = capture_activations(
        m, layer, lambda mod: call(mod, inputs), capture=capture, occurrence=occurrence
    )
    acts = jnp.asarray(acts)
    acts = acts.astype(jnp.result_type(acts.dtype, jnp.float32))
    live = jnp.asarray(mask, bool).reshape((-1,) + (1,) * (acts.ndim - 1))
    return as_samples(jnp.where(live, acts, jnp.nan), features)


_forward_jit = jax.jit(_forward, static_argnames=_STATIC)


def _default_call(model, inputs):
    return model(inputs)


def collect_activations(
    model: nnx.Module,
    layer: Path,
    batches: Iterable[Batch],
    *,
    call: Callable[[nnx.Module, Any], Any] | None = None,
    select: str | Callable[[Batch], Any] | None = None,
    capture: str = "output",
    occurrence: int | None = None,
    features: str = "flatten",
    batch_size: int | None = None,
) -> np.ndarray:
    """A layer's activations over a data iterator, stacked ``(N, n)`` in host memory.

    For SRM itself prefer :func:`layer_srm`, whose memory does not grow with ``N``. The forward
    pass is jitted once (the ragged last batch is padded, then its padding dropped).

    Args:
      model: the NNX model (put it in evaluation mode first, e.g. ``model.eval()``).
      layer: module path or sown value (see :func:`capture_activations`).
      batches: an iterable of model inputs (arrays or dicts).
      call: ``call(model, inputs)`` runs the model; default ``model(inputs)``.
      select: picks the inputs from a batch (dict key or function), applied before ``call``.
      capture, occurrence: see :func:`capture_activations`.
      features: ``"flatten"`` or ``"last"`` (see :func:`as_samples`).
      batch_size: fixed rows per forward pass; default the first non-empty batch's size.
    """
    graphdef, state = nnx.split(model)
    static = dict(
        graphdef=graphdef, layer=parse_path(layer), call=call or _default_call, capture=capture,
        occurrence=occurrence, features=features,
    )
    out = []
    pick = _selector(select)
    for inputs, mask in fixed_size_batches(map(pick, batches), batch_size):
        acts = np.asarray(_forward_jit(state, inputs, mask, **static))
        per_sample = acts.shape[0] // mask.shape[0]
        out.append(acts[: int(mask.sum()) * per_sample])
    if not out:
        raise ValueError("the iterator yielded no batches.")
    return np.concatenate(out)


def layer_srm(
    model: nnx.Module,
    layer: Path,
    batches: Iterable[Batch],
    *,
    epsilon: float | jax.Array,
    basis: jax.Array | None = None,
    basis_path: Path | None = None,
    call: Callable[[nnx.Module, Any], Any] | None = None,
    select: str | Callable[[Batch], Any] | None = None,
    capture: str = "output",
    occurrence: int | None = None,
    features: str = "flatten",
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    axis_name: str | None = None,
    max_in_flight: int = 2,
    **kwargs,
) -> SRMResult:
    """SRM (Eqn. 2 / Eqn. 4) of any layer of an NNX model over a data iterator (Sec. 2.1.2).

    Each batch is forwarded to ``layer`` by a jitted forward pass compiled once, and its
    activations go to :func:`srm_jax.accumulate_srm`; counts are summed over batches (math §4.4),
    so the result equals :func:`srm_jax.spotlight_resonance` on all the layer's activations
    while memory stays flat.

    The basis is, in order: ``basis``; the basis of the module at ``basis_path``; the basis of
    the module ``layer`` names, if it carries one (e.g. an activation captured with
    ``capture="input"``); the only basis in the model (see :func:`find_basis`).

    Args:
      model: the NNX model (put it in evaluation mode first, e.g. ``model.eval()``).
      layer: module path or sown value (see :func:`capture_activations`).
      batches: an iterable of model inputs (arrays, or dicts with ``select``/``call``).
      epsilon: ``ε``.
      basis, basis_path: the privileged basis, or where the model holds it.
      call: ``call(model, inputs)`` runs the model; default ``model(inputs)``.
      select: picks the inputs from a batch (dict key or function).
      capture, occurrence: see :func:`capture_activations`.
      features: ``"flatten"`` or ``"last"`` (see :func:`as_samples`).
      batch_size: fixed rows per step; default the first non-empty batch's size.
      mesh, axis_name: shard each batch's samples over a device mesh (see
        :mod:`srm_jax.distributed`).
      max_in_flight: steps that may be dispatched but not finished (see
        :class:`srm_jax.streaming.InFlight`).
      **kwargs: ``angles``, ``planes``, ``signed``, ``method``, ``max_planes``, ``key``,
        ``chunk_size`` of :func:`srm_jax.spotlight_resonance`.
    """
    if basis is None:
        if basis_path is None:
            module = resolve_module(model, layer)
            if module is not None and _has_basis(module):
                basis_path = layer
        basis = find_basis(model, basis_path)
    graphdef, model_state = nnx.split(model)
    forward = functools.partial(
        _forward_jit, graphdef=graphdef, layer=parse_path(layer), call=call or _default_call,
        capture=capture, occurrence=occurrence, features=features,
    )
    multiple = 1
    if mesh is not None:
        from srm_jax.distributed import local_shard_count, shard_samples

        multiple = local_shard_count(mesh, axis_name)

    def layer_activations():
        """The layer's activations of each fixed-size batch (padding rows are NaN)."""
        pick = _selector(select)
        for inputs, mask in fixed_size_batches(map(pick, batches), batch_size,
                                               multiple_of=multiple):
            if mesh is not None:
                inputs = jax.tree.map(lambda x: shard_samples(x, mesh, axis_name=axis_name),
                                      inputs)
                mask = shard_samples(mask, mesh, axis_name=axis_name)
            yield forward(model_state, inputs, mask)

    # One batch driver: the streaming accumulator over the jitted forward pass.
    return accumulate_srm(
        layer_activations(), jnp.asarray(basis), epsilon=epsilon, mesh=mesh,
        axis_name=axis_name, max_in_flight=max_in_flight, **kwargs,
    )
