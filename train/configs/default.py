"""The experiment configuration: one frozen dataclass, one instance per preset (math §9).

Every field can be overridden from the command line (``--set name=value``; the most used also
have their own flags). Fields the paper leaves open are marked *choice* below and in the README.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

SIZES = ("small", "large")
ACTIVATIONS = ("generalised_tanh", "isotropic_tanh")
BASIS_KINDS = ("thompson", "orthoplex", "simplex")
PLANE_KINDS = ("comb", "perm")
BIAS_INITS = ("zero", "torch")
MEASURE_TENSORS = ("z", "sigma_z")
MEASURE_SPLITS = ("test", "train")
ANTIPODAL_PLANES = ("drop", "zero")
CLAIMS = ("aligned", "anti-aligned", "none")


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one experiment run (paper App. E and G; math §9).

    Model:
      size: ``"small"`` (no activation before the latent layer: the latent is an affine map of
        the layer below) or ``"large"`` (the latent is the output of an activation).
      activation: ``"generalised_tanh"`` (Eqn. 14, every layer on its own randomly rotated
        basis) or ``"isotropic_tanh"`` (the isotropic control of the position paper).
      latent_dim: ``n``, the width of the latent layer.
      num_basis: ``m``, the number of privileged-basis vectors of the activation that acts on the
        latent layer (the basis SRM is measured with).
      basis_kind: how that basis is made: ``"thompson"`` (App. D optimiser), ``"orthoplex"``
        (exact, ``m = 2n``) or ``"simplex"`` (exact, ``m = n + 1``); randomly rotated.
      hidden_widths: *choice* (the paper's architecture figures were lost): widths of the hidden
        layers between input and latent; the decoder mirrors them.
      hidden_basis_kind: *choice*: basis kind of the hidden-layer activations (whose width is
        not ``n``); ``"orthoplex"`` (rotated elementwise tanh, ``m_h = 2h``), ``"simplex"``
        (``m_h = h + 1``) or ``"thompson"`` (``m_h = round(hidden_basis_ratio * h)``).
      hidden_basis_ratio: ``m_h / h`` for Thompson hidden layers.
      thompson_steps, thompson_learning_rate: the App. D optimiser's settings.
      isotropic_radius: radius of the identity ball of isotropic tanh (math §7.5).
      bias_init: *choice*: ``"zero"`` (App. G names Xavier-normal for the weights only) or
        ``"torch"``, PyTorch's ``nn.Linear`` default ``U(−1/√fan_in, 1/√fan_in)``.

    Optimisation (paper App. E/G; fixed there, settings here): SGD with momentum 0.9, learning
    rate 0.08, batch 24, MSE, 100 epochs; the ragged last batch of an epoch is dropped.
    ``train_steps`` (*choice*, the training budget in optimiser steps; the paper's 100 epochs
    of full MNIST are ~250,000 steps, of mnist5k 16,600) replaces ``epochs`` by
    ``ceil(train_steps / steps_per_epoch)`` once the data are loaded.

    Measurement: SRM of the latent layer on the test split with ``epsilon``, ``planes``
    (``"comb"`` or ``"perm"``) and ``num_angles`` (grid 0…2π inclusive) before training, every
    ``measure_every`` epochs and after; ``compare_bases`` adds App. B.1's random and standard
    bases (Fig. 2). ``srm_method`` picks the engine's exact kernel, one of the library's
    :data:`srm_jax.resonance.METHODS` (all give the same counts; checked when a run starts:
    :func:`check_srm_method`; ``"sample_major"`` is planned from each basis' values, so its
    seeds are measured one at a time: :func:`train.measure.needs_concrete_basis`).
    ``epsilon_sweep``: the same measurement at these ε as well (a diagnostic in
    ``summary.json``: at the paper's ε an SRM can be identically 0, leaving the alignment
    undefined, while a wider spotlight still sees the structure).
    *Choices* of the measurement: ``measure_tensor`` ``"z"`` (what ``encode`` returns) or
    ``"sigma_z"`` (σ_z(z), the latent activation's output; small models only, a large model's
    ``z`` already is it); ``measure_split`` ``"test"`` or ``"train"``; ``antipodal_planes``
    ``"drop"`` (pairs ``(b, −b)`` span no plane and are left out) or ``"zero"`` (kept as
    all-zero curves, as the published NumPy code counts them: it lowers the mean SRM, not the
    correlation). ``num_rotations``: rotations of the basis in the rotation test of the trained
    model (:func:`srm_jax.alignment_test`, statistic ``"projection"``; 0 skips it); ``claim``:
    what the paper reports for this preset (``"aligned"``, ``"anti-aligned"`` or ``"none"``),
    which fixes the test's direction.
    """

    preset: str = "fig1"
    description: str = ""
    paper_dataset: str = "mnist"
    # data
    dataset: str = "mnist5k"
    data_dir: str | None = None
    num_train: int | None = None
    num_test: int | None = None
    # model
    size: str = "small"
    activation: str = "generalised_tanh"
    latent_dim: int = 24
    num_basis: int = 48
    basis_kind: str = "orthoplex"
    hidden_widths: tuple[int, ...] = (128,)
    hidden_basis_kind: str = "orthoplex"
    hidden_basis_ratio: float = 2.0
    thompson_steps: int = 2000
    thompson_learning_rate: float = 0.1
    isotropic_radius: float = 1e-2
    bias_init: str = "zero"
    # optimisation
    learning_rate: float = 0.08
    momentum: float = 0.9
    batch_size: int = 24
    epochs: int = 100
    train_steps: int | None = None
    seed: int = 0
    # measurement
    epsilon: float = 0.9
    planes: str = "comb"
    num_angles: int = 100
    max_planes: int | None = None
    measure_every: int = 10
    srm_method: str = "auto"
    epsilon_sweep: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
    compare_bases: bool = False
    measure_tensor: str = "z"
    measure_split: str = "test"
    antipodal_planes: str = "drop"
    num_rotations: int = 99
    claim: str = "aligned"
    eval_chunk: int = 1024
    checkpoints_to_keep: int = 2

    def __post_init__(self):
        validate(self)

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["hidden_widths"] = list(self.hidden_widths)
        out["epsilon_sweep"] = list(self.epsilon_sweep)
        return out

    def to_json(self) -> str:
        """The config as indented JSON (what ``config.json`` holds)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        data = dict(data)
        if "hidden_widths" in data:
            data["hidden_widths"] = tuple(int(w) for w in data["hidden_widths"])
        if "epsilon_sweep" in data:
            data["epsilon_sweep"] = tuple(float(e) for e in data["epsilon_sweep"])
        return cls(**data)


def _choose(name: str, value: Any, options: tuple) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}.")


def validate(config: Config) -> None:
    """Raise ``ValueError`` naming the setting when a config is inconsistent.

    Needs no JAX (the CLI builds a config before importing it), so ``srm_method`` is checked
    against the library separately, when a run starts (:func:`check_srm_method`).
    """
    _choose("size", config.size, SIZES)
    _choose("activation", config.activation, ACTIVATIONS)
    _choose("basis_kind", config.basis_kind, BASIS_KINDS)
    _choose("hidden_basis_kind", config.hidden_basis_kind, BASIS_KINDS)
    _choose("planes", config.planes, PLANE_KINDS)
    _choose("bias_init", config.bias_init, BIAS_INITS)
    _choose("measure_tensor", config.measure_tensor, MEASURE_TENSORS)
    _choose("measure_split", config.measure_split, MEASURE_SPLITS)
    _choose("antipodal_planes", config.antipodal_planes, ANTIPODAL_PLANES)
    _choose("claim", config.claim, CLAIMS)
    if config.measure_tensor == "sigma_z" and config.size == "large":
        raise ValueError(
            "measure_tensor='sigma_z' is for small models: a large model's z already is the "
            "output of its latent activation sigma_z."
        )
    if config.train_steps is not None and config.train_steps < 1:
        raise ValueError(f"train_steps must be at least 1, got {config.train_steps}.")
    if config.num_rotations < 0:
        raise ValueError(f"num_rotations must be non-negative, got {config.num_rotations}.")
    n, m = config.latent_dim, config.num_basis
    if n < 2 or m < 2:
        raise ValueError(f"latent_dim and num_basis must be at least 2, got n={n}, m={m}.")
    if config.basis_kind == "orthoplex" and m != 2 * n:
        raise ValueError(
            f"basis_kind='orthoplex' needs num_basis = 2 * latent_dim = {2 * n}, got {m}; "
            "use basis_kind='thompson' for other m."
        )
    if config.basis_kind == "simplex" and m != n + 1:
        raise ValueError(
            f"basis_kind='simplex' needs num_basis = latent_dim + 1 = {n + 1}, got {m}; "
            "use basis_kind='thompson' for other m."
        )
    if any(w < 2 for w in config.hidden_widths):
        raise ValueError(f"hidden_widths must all be at least 2, got {config.hidden_widths}.")
    for eps in (config.epsilon, *config.epsilon_sweep):
        if not -1.0 <= eps <= 1.0:
            raise ValueError(f"epsilon must lie in [-1, 1], got {eps}.")
    for name in ("batch_size", "num_angles", "measure_every", "eval_chunk"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}.")
    if config.epochs < 0:
        raise ValueError(f"epochs must be non-negative, got {config.epochs}.")
    if config.checkpoints_to_keep < 1:
        raise ValueError("checkpoints_to_keep must be at least 1.")


def check_srm_method(config: Config) -> None:
    """Raise ``ValueError`` unless ``config.srm_method`` is one of the library's kernels.

    The methods are the library's own :data:`srm_jax.resonance.METHODS` (one list, so a kernel
    added there is accepted here). Not part of :func:`validate`: importing the library loads JAX.
    """
    from srm_jax.resonance import METHODS

    _choose("srm_method", config.srm_method, METHODS)


def _parse_value(text: str, annotation) -> Any:
    hint = str(annotation)
    if text.lower() in ("none", "null") and "None" in hint:
        return None
    if "tuple" in hint:
        cast = float if "float" in hint else int
        return tuple(cast(v) for v in text.replace("(", "").replace(")", "").split(",") if v)
    if "bool" in hint:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {text!r}")
    if "int" in hint:
        return int(text)
    if "float" in hint:
        return float(text)
    return text


def split_setting(item: str, option: str) -> tuple[str, str]:
    """``"name=value"`` → ``(name, value)`` for a known :class:`Config` field (``-`` → ``_``);
    ``option`` (``--set``, ``--vary``) names the flag in the error."""
    if "=" not in item:
        raise ValueError(f"{option} expects name=value, got {item!r}.")
    name, value = item.split("=", 1)
    name = name.strip().replace("-", "_")
    if name not in typing.get_type_hints(Config):
        raise ValueError(
            f"unknown setting {name!r} in {option}; settings are: "
            f"{', '.join(sorted(typing.get_type_hints(Config)))}."
        )
    return name, value


def override(config: Config, assignments: list[str]) -> Config:
    """Apply ``name=value`` strings (the CLI's ``--set``) to ``config``, parsed by field type.

    Tuples are comma separated (``hidden_widths=256,128``; an empty value is ``()``); ``none``
    sets an optional field to ``None``.
    """
    hints = typing.get_type_hints(Config)
    changes = {}
    for item in assignments:
        name, value = split_setting(item, "--set")
        changes[name] = _parse_value(value.strip(), hints[name])
    return config.replace(**changes)
