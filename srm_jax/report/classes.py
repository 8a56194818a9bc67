"""The class-selectivity stage: the most class-selective planes and basis vectors (App. B.2)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from srm_jax.per_class import Selectivity, distinct_planes, rank_selectivity
from srm_jax.report.defaults import TOP_ITEMS
from srm_jax.report.errors import ReportError
from srm_jax.report.jsonable import to_float, to_floats
from srm_jax.resonance import SRMResult


@dataclasses.dataclass(frozen=True)
class ClassSelectivity:
    """Class selectivity of the candidate planes against shuffled labels.

    Attributes:
      selectivity: :func:`srm_jax.rank_selectivity` of the candidate planes.
      distinct: indices of the ranked planes with distinct spans.
      table: ``class_selectivity`` of ``report.json``.
    """

    selectivity: Selectivity
    distinct: np.ndarray
    table: dict


def check_labels(labels, num_rows: int) -> tuple[np.ndarray, int]:
    """``labels`` as int64 ``(num_rows,)`` and the number of classes, checked."""
    labels = np.asarray(labels).astype(np.int64)
    if labels.shape != (num_rows,):
        raise ReportError(f"labels have shape {labels.shape}; one per row, ({num_rows},), "
                          "is needed")
    num_classes = int(labels.max()) + 1 if np.any(labels >= 0) else 0
    if num_classes == 0:
        raise ReportError("the labels have no non-negative class")
    return labels, num_classes


def class_selectivity(key: jax.Array, x: jax.Array, basis: jax.Array, labels,
                      pairs: jax.Array, *, epsilon: float,
                      num_resamples: int) -> ClassSelectivity:
    """Signed per-class SRM selectivity of ``pairs`` and of the basis vectors, with
    family-wise p-values against ``num_resamples`` label shuffles (App. B.2, Eqn. 4)."""
    labels, num_classes = check_labels(labels, int(x.shape[0]))
    selectivity = rank_selectivity(
        key, x, basis, jnp.asarray(labels, jnp.int32), num_classes=num_classes,
        epsilon=epsilon, planes=pairs, num_resamples=int(num_resamples),
    )
    distinct = distinct_planes(basis, pairs, selectivity.plane_order)
    return ClassSelectivity(selectivity, distinct,
                            selectivity_table(selectivity, distinct, num_classes))


def top_plane(classes: ClassSelectivity | None, peaks: SRMResult, expectation: float) -> int:
    """The report's top plane (an index of the candidates): the most class-selective with
    labels, otherwise the one whose curve rises highest above the isotropic expectation."""
    if classes is not None:
        return int(classes.distinct[0])
    values = np.nan_to_num(np.asarray(peaks.values), nan=0.0)
    return int(np.argmax(np.max(values, axis=1) - expectation))


def _scores(sel: Selectivity, kind: str, i: int) -> dict:
    """Selectivity, z and p-values of plane or vector ``i`` (``kind``: "plane" or "vector")."""
    return {
        "selectivity": to_float(getattr(sel, f"{kind}_scores")[i]),
        "z": to_float(getattr(sel, f"{kind}_z")[i]),
        "p_value": to_float(getattr(sel, f"{kind}_p_values")[i]),
        "p_family_wise": to_float(getattr(sel, f"{kind}_p_adjusted")[i]),
    }


def selectivity_table(sel: Selectivity, distinct: np.ndarray, num_classes: int) -> dict:
    """``class_selectivity`` of ``report.json``: the top planes (distinct spans) and vectors."""
    pairs = np.asarray(sel.per_class.planes)
    firing = np.asarray(sel.vector_values)
    planes = [{"plane": [int(a) for a in pairs[p]], **_scores(sel, "plane", p)}
              for p in distinct[:TOP_ITEMS]]
    vectors = [{"vector": int(i), **_scores(sel, "vector", i),
                "firing_per_class": to_floats(firing[:, i])}
               for i in np.asarray(sel.vector_order)[:TOP_ITEMS]]
    return {
        "num_classes": int(num_classes),
        "class_counts": [int(c) for c in np.asarray(sel.class_counts)],
        "num_shuffles": int(sel.num_shuffles),
        "signed": bool(sel.per_class.signed),
        "planes": planes,
        "vectors": vectors,
    }
