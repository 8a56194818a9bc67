"""One vocabulary, enforced (docs/vocabulary.md).

Every public function of srm_jax (the functions of ``srm_jax.__all__`` and those of the public
submodules users call: ``srm_jax.report.srm_report``, ``srm_jax.neurons``,
``srm_jax.basis_measures``) is introspected. A keyword that several of them take must have one
default and one annotation (``X | None = None`` is the optional form of ``X``; a required
parameter has no default to disagree with), and be documented in docs/vocabulary.md, unless
the document's exceptions section lists the function with its reason. Deprecated spellings
(default ``_validation.UNSET``) must be listed in the document's renamed section, and an old
spelling may stay a live keyword elsewhere only where the document gives it its own meaning.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

import srm_jax
from srm_jax import _validation

VOCABULARY = Path(__file__).resolve().parents[1] / "docs" / "vocabulary.md"

#: Public submodules whose functions users call by their module: (module, names or None for
#: every public function defined there). Their functions are named ``module.function``.
SUBMODULES = (
    ("srm_jax.report", ("srm_report",)),
    ("srm_jax.neurons", None),
    ("srm_jax.basis_measures", None),
)

EMPTY = inspect.Parameter.empty


@dataclasses.dataclass(frozen=True)
class Use:
    """One public function's parameter of a given name."""

    function: str
    default: object
    annotation: str | None


def public_functions() -> dict:
    functions = {}
    for name in srm_jax.__all__:
        value = getattr(srm_jax, name)
        if inspect.isfunction(value):
            functions[name] = value
    for module_name, names in SUBMODULES:
        module = importlib.import_module(module_name)
        short = module_name.rsplit(".", 1)[-1]
        if names is None:
            names = [n for n, v in vars(module).items() if not n.startswith("_")
                     and inspect.isfunction(v) and v.__module__ == module.__name__]
        for name in names:
            functions[f"{short}.{name}"] = getattr(module, name)
    return functions


def _split_union(text: str) -> list[str]:
    """The members of ``A | B[C | D] | E`` at bracket depth 0."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[(" and 1 or (char in "])" and -1 or 0)
        if char == "|" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p.strip() for p in parts + [current] if p.strip()]


def normalise_annotation(annotation, default) -> str | None:
    """The annotation as a sorted union of its members, without ``None`` when the default is
    ``None`` (``X | None = None`` is the optional form of ``X``); ``None`` when absent."""
    if annotation is EMPTY:
        return None
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    members = {re.sub(r"\s+", "", m) for m in _split_union(text)}
    if default is None:
        members.discard("None")
    return " | ".join(sorted(members))


def deprecated_parameters(functions: dict) -> set[tuple[str, str]]:
    """``(function, keyword)`` of every deprecated spelling (default ``UNSET``)."""
    return {(f, p.name) for f, fn in functions.items()
            for p in inspect.signature(fn).parameters.values() if p.default is _validation.UNSET}


def keyword_uses(functions: dict) -> dict[str, list[Use]]:
    """Every live parameter of ``functions`` grouped by name (deprecated spellings left out)."""
    uses: dict[str, list[Use]] = {}
    for qualified, function in functions.items():
        for p in inspect.signature(function).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is _validation.UNSET:
                continue
            uses.setdefault(p.name, []).append(
                Use(qualified, p.default, normalise_annotation(p.annotation, p.default)))
    return uses


def inconsistencies(uses: dict[str, list[Use]], exceptions: dict[str, set[str]]) -> list[str]:
    """What disagrees: a shared keyword with two defaults or two annotations among the
    functions not listed as exceptions for it (``"*"``: all of them), and exceptions that name
    a function which does not take the keyword (stale)."""
    problems = []
    for name, excepted in exceptions.items():
        takers = {u.function for u in uses.get(name, [])}
        for function in sorted(excepted - takers - {"*"}):
            problems.append(f"exception for `{name}` names `{function}`, which does not take it")
    for name, group in sorted(uses.items()):
        excepted = exceptions.get(name, set())
        if len(group) < 2 or "*" in excepted:
            continue
        checked = [u for u in group if u.function not in excepted]
        for what, values in (
            ("defaults", {u.function: repr(u.default) for u in checked if u.default is not EMPTY}),
            ("annotations", {u.function: u.annotation for u in checked if u.annotation}),
        ):
            if len(set(values.values())) > 1:
                listed = "; ".join(f"{f}: {v}" for f, v in sorted(values.items()))
                problems.append(f"`{name}` has {len(set(values.values()))} {what}: {listed}")
    return problems


def _section(text: str, name: str) -> str:
    match = re.search(rf"<!-- {name}: begin -->(.*?)<!-- {name}: end -->", text, re.S)
    assert match, f"docs/vocabulary.md has no `<!-- {name}: begin/end -->` section"
    return match.group(1)


def _table_rows(section: str) -> list[list[str]]:
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.strip().startswith("|") and not set(cells[0]) <= set("-: "):
            rows.append(cells)
    return rows[1:]  # without the header


def _ticked(cell: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", cell)) | ({"*"} if cell.strip() == "*" else set())


def parse_exceptions(text: str) -> dict[str, set[str]]:
    """``keyword -> functions`` of the exceptions section: ``| `keyword` | `f`, `g` | reason |``."""
    exceptions: dict[str, set[str]] = {}
    for cells in _table_rows(_section(text, "vocabulary-exceptions")):
        assert len(cells) >= 3 and cells[2], f"an exception needs a reason: {cells}"
        for name in _ticked(cells[0]):
            exceptions.setdefault(name, set()).update(_ticked(cells[1]))
    return exceptions


def parse_renamed(text: str) -> list[tuple[str, str, set[str]]]:
    """``(old, new, functions)`` of the renamed section: ``| `old` | `new` | `f`, `g` |``."""
    rows = []
    for cells in _table_rows(_section(text, "vocabulary-renamed")):
        (old,), (new,) = _ticked(cells[0]), _ticked(cells[1])
        rows.append((old, new, _ticked(cells[2])))
    return rows


def defined_keywords(text: str) -> set[str]:
    """The keywords this page defines: those named in the first cell of a table row outside
    the exceptions and renamed sections (a mention elsewhere does not define a name)."""
    for name in ("vocabulary-exceptions", "vocabulary-renamed"):
        text = text.replace(_section(text, name), "")
    first_cells = re.findall(r"^\|([^|\n]*)\|", text, re.M)
    return {name for cell in first_cells for name in re.findall(r"`([A-Za-z_]\w*)`", cell)}


@pytest.fixture(scope="module")
def functions():
    return public_functions()


@pytest.fixture(scope="module")
def vocabulary():
    return VOCABULARY.read_text()


def test_a_shared_keyword_has_one_default_and_one_annotation(functions, vocabulary):
    problems = inconsistencies(keyword_uses(functions), parse_exceptions(vocabulary))
    assert not problems, "\n".join(problems)


def test_every_shared_keyword_is_documented(functions, vocabulary):
    documented = defined_keywords(vocabulary)
    shared = {name for name, group in keyword_uses(functions).items() if len(group) > 1}
    missing = sorted(shared - documented)
    assert not missing, f"shared keywords not in docs/vocabulary.md: {missing}"


def test_deprecated_spellings_are_the_documented_renames(functions, vocabulary):
    renamed = parse_renamed(vocabulary)
    listed = {(f, old) for old, _, fs in renamed for f in fs}
    undocumented = sorted(deprecated_parameters(functions) - listed)
    assert not undocumented, f"deprecated keywords missing from the renamed section: {undocumented}"
    for old, new, fs in renamed:
        for f in fs:
            assert f in functions, f"renamed section names `{f}`, not a public function"
            parameters = inspect.signature(functions[f]).parameters
            assert parameters[old].default is _validation.UNSET, (f, old)
            assert new in parameters, (f, new)


def test_an_old_spelling_is_live_only_where_it_has_its_own_meaning(functions, vocabulary):
    """``num_rotations`` is retired: a function still taking it as a live keyword disagrees
    with the vocabulary, unless the document gives the name its own meaning (``batch_size``:
    rows per streamed update)."""
    meanings = defined_keywords(vocabulary)
    uses = keyword_uses(functions)
    live = sorted({f"{u.function}({old}=)" for old, _, _ in parse_renamed(vocabulary)
                   if old not in meanings for u in uses.get(old, [])})
    assert not live, f"retired keywords still live: {live}"


def test_the_check_catches_a_planted_inconsistency():
    """The test can fail: two functions sharing a keyword with two defaults or annotations."""

    def f(x: jax.Array, *, statistic: str = "projection", map_batch_size: int | None = 1):
        return x

    def g(x: jax.Array, *, statistic: str = "correlation", map_batch_size: int = 1):
        return x

    def h(x: np.ndarray, *, statistic: str = "projection", map_batch_size: int | None = None):
        return x

    uses = keyword_uses({"f": f, "g": g, "h": h})
    problems = inconsistencies(uses, {})
    assert any(p.startswith("`statistic` has 2 defaults") for p in problems), problems
    assert any(p.startswith("`map_batch_size` has 2 defaults") for p in problems), problems
    assert any(p.startswith("`x` has 2 annotations") for p in problems), problems
    # g's `int` and f's `int | None = 1` differ; h's `int | None = None` is optional `int`.
    assert any(p.startswith("`map_batch_size` has 2 annotations") for p in problems), problems
    # An exception silences its function only, and a stale one is reported.
    problems = inconsistencies(uses, {"statistic": {"g"}, "x": {"h"}, "map_batch_size": {"*"}})
    assert problems == [], problems
    assert inconsistencies(uses, {"statistic": {"g", "k"}, "x": {"*"}, "map_batch_size": {"*"}}
                           ) == ["exception for `statistic` names `k`, which does not take it"]


def test_the_document_sections_parse(vocabulary):
    exceptions = parse_exceptions(vocabulary)
    assert exceptions and all(exceptions.values())
    renamed = parse_renamed(vocabulary)
    assert ("num_rotations", "num_resamples", {"alignment_test"}) in renamed


# --- the decisions, one test each -------------------------------------------------------------


def test_statistic_default_and_constant():
    from srm_jax.significance import DEFAULT_STATISTIC, STATISTICS

    assert STATISTICS[0] == DEFAULT_STATISTIC == "projection"
    for function in (srm_jax.alignment_test, srm_jax.alignment_statistic):
        assert inspect.signature(function).parameters["statistic"].default == DEFAULT_STATISTIC
    with pytest.raises(ValueError, match="statistic must be one of"):
        srm_jax.alignment_statistic(np.ones(4), np.arange(4.0), "pearson")


def test_plane_pairs_and_the_deprecated_planes():
    import srm_jax.planes  # noqa: F401  (the submodule is still importable)
    from srm_jax.planes import PLANE_KINDS, plane_pairs

    module = importlib.import_module("srm_jax.planes")
    assert PLANE_KINDS == ("comb", "perm") and module.plane_pairs is plane_pairs
    with pytest.warns(DeprecationWarning, match="plane_pairs"):
        old = srm_jax.planes(5, "perm")
    np.testing.assert_array_equal(old, srm_jax.plane_pairs(5, "perm"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        srm_jax.plane_pairs(5)


def test_monte_carlo_sizes_old_spellings_warn_and_agree(rng):
    basis = rng.standard_normal((4, 3)).astype(np.float32)
    x = rng.standard_normal((20, 3)).astype(np.float32)
    key = jax.random.key(0)
    kw = dict(epsilon=0.5, angles=np.linspace(0, 2 * np.pi, 8), method="direct")
    for call, old in (
        (lambda **k: srm_jax.null_band(key, 20, basis, **kw, **k).curve_mean, "num_draws"),
        (lambda **k: srm_jax.alignment_test(key, x, basis, **kw, **k).null_scores,
         "num_rotations"),
        (lambda **k: srm_jax.rank_selectivity(key, x, basis, np.arange(20) % 2, num_classes=2,
                                              **kw, **k).plane_null_max, "num_shuffles"),
    ):
        new = call(num_resamples=3)
        with pytest.warns(DeprecationWarning, match="num_resamples"):
            np.testing.assert_array_equal(call(**{old: 3}), new)
    with pytest.warns(DeprecationWarning, match="num_resamples"):
        old = srm_jax.haar_rotations(key, 3, num=2)
    np.testing.assert_array_equal(old, srm_jax.haar_rotations(key, 3, 2))


def test_min_radius_is_a_radius(rng):
    basis = rng.standard_normal((3, 4)).astype(np.float32)
    x = rng.standard_normal((30, 4)).astype(np.float32)
    new = srm_jax.plane_projection(x, basis, np.array([0, 1]), min_radius=0.5)
    with pytest.warns(DeprecationWarning, match="min_radius"):
        old = srm_jax.plane_projection(x, basis, np.array([0, 1]), epsilon=0.5)
    for a, b in zip(new, old, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"min_radius must be a scalar in \[0, 1\]"):
        srm_jax.plane_projection(x, basis, np.array([0, 1]), min_radius=-0.5)
    density = srm_jax.projection_density(jax.random.key(0), x, basis, np.array([0, 1]),
                                         min_radius=0.25, num_reference=256, bins=4)
    assert float(density.min_radius) == 0.25


def test_max_planes_everywhere(rng):
    basis = rng.standard_normal((6, 4)).astype(np.float32)
    x = rng.standard_normal((40, 4)).astype(np.float32)
    key = jax.random.key(3)
    drawn = srm_jax.plane_pairs(6, max_planes=4, key=key)
    kw = dict(epsilon=0.5, max_planes=4)
    np.testing.assert_array_equal(
        srm_jax.per_class_srm(x, basis, np.arange(40) % 2, num_classes=2, key=key, **kw).planes,
        drawn)
    np.testing.assert_array_equal(srm_jax.srm_spectrum(x, basis, key=key, **kw).planes, drawn)
    sweep = srm_jax.alignment_sweep(x, basis, np.array([0.5]), max_planes=4, key=key)
    np.testing.assert_array_equal(sweep.planes, drawn)
    # Functions whose key draws a null draw the planes from planes_key(key): the null keeps key.
    from srm_jax.significance import planes_key

    np.testing.assert_array_equal(
        srm_jax.null_band(key, 20, basis, num_resamples=2, **kw).planes,
        srm_jax.plane_pairs(6, max_planes=4, key=planes_key(key, 4)))
    full = srm_jax.alignment_test(key, x, basis, epsilon=0.5, num_resamples=3)
    assert srm_jax.alignment_test(key, x, basis, num_resamples=3, **kw).null_scores.shape == (3,)
    assert full.null_scores.shape == (3,)


def test_srm_alignment_is_a_record_and_still_unpacks(rng):
    basis = rng.standard_normal((4, 3)).astype(np.float32)
    x = rng.standard_normal((20, 3)).astype(np.float32)
    measured = srm_jax.srm_alignment(x, basis, epsilon=0.5, planes=srm_jax.plane_pairs(4),
                                     angles=srm_jax.angle_grid(8))
    assert isinstance(measured, srm_jax.SRMAlignment)
    with pytest.warns(DeprecationWarning, match="unpacking"):
        score, result = measured
    assert score is measured.score and result is measured.result
