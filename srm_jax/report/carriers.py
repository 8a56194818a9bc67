"""Who carries the SRM signal: the rows that light the planes, the massive rows, their tokens,
and which neurons each group credits (math §10).

At the headline ε each analysed row's lit count and its credits to the basis vectors come from
:func:`srm_jax.lit_credits` (a lit count split between a plane's two vectors by the row's
squared coordinates on them). A row is *massive* when its cosine with one basis vector is at
least :data:`MASSIVE_COS`: it lights every plane of that vector (Sun et al. 2024, *Massive
Activations in Large Language Models*, find them on starting and delimiter tokens). The bulk
rule (:func:`bulk_rule`) decides whether the other rows are analysed on their own.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from srm_jax import neurons as _neurons
from srm_jax.credits import lit_credits
from srm_jax.report.defaults import (
    BULK_MAX_ROW_SHARE,
    BULK_MIN_LIT_SHARE,
    DEFAULT_TOP,
    MASSIVE_COS,
    TOP_ROW_SHARE,
    TOP_TOKENS,
)
from srm_jax.report.jsonable import to_float
from srm_jax.report.rows import RowFacts


class GroupCurve(NamedTuple):
    """The mean SRM curve of one group of rows (the carriers or the bulk) at its ε."""

    epsilon: float
    angles: np.ndarray
    mean_curve: np.ndarray
    num_rows: int
    expectation: float


@dataclasses.dataclass(frozen=True)
class Carriers:
    """Who carries the lit counts of the analysed rows at the headline ε.

    Attributes:
      table: ``carriers`` of ``report.json``.
      massive: ``(S,)`` bool, the analysed rows that are massive.
      analyse_bulk: whether :func:`bulk_rule` holds (the other rows are analysed).
      vector_scores: ``(m,)`` credit of each basis vector over every analysed row.
      counts: ``(S,)`` each analysed row's lit count.
    """

    table: dict
    massive: np.ndarray
    analyse_bulk: bool
    vector_scores: np.ndarray
    counts: np.ndarray


def bulk_rule(massive_row_share: float, massive_lit_share: float) -> bool:
    """Whether a small share of rows carries most of the lit counts: the massive rows are at
    most :data:`BULK_MAX_ROW_SHARE` of the rows and carry at least :data:`BULK_MIN_LIT_SHARE`
    of the lit counts. Then the answer for every row is an answer about them, and the report
    also analyses the rest (the bulk)."""
    return (math.isfinite(massive_lit_share) and massive_row_share <= BULK_MAX_ROW_SHARE
            and massive_lit_share >= BULK_MIN_LIT_SHARE)


def may_analyse_bulk(facts: RowFacts, subset_massive: np.ndarray) -> bool:
    """Whether :func:`bulk_rule` can hold before the lit counts are known: some analysed rows
    are massive, at least two are not, and the massive rows are at most
    :data:`BULK_MAX_ROW_SHARE` of every row (``facts``). The layer's rotation test then also
    tests the other rows (one loop for both, :func:`srm_jax.alignment_test`'s ``subset``)."""
    return (bool(subset_massive.any()) and int(np.sum(~subset_massive)) > 1
            and _massive_share(facts)[1] <= BULK_MAX_ROW_SHARE)


def bulk_rule_words() -> str:
    """:func:`bulk_rule` in words, for ``report.json``."""
    return (f"the bulk (rows that are not massive, |cos| < {MASSIVE_COS:g} with every basis "
            f"vector) is analysed on its own when the massive rows are at most "
            f"{BULK_MAX_ROW_SHARE:.0%} of the rows and carry at least {BULK_MIN_LIT_SHARE:.0%} "
            "of the lit counts at the headline ε")


def ranked_scores(vector_scores: np.ndarray, neurons: _neurons.SignedBasis,
                  top: int = DEFAULT_TOP) -> list[dict]:
    """The neurons (a ``±`` orthonormal basis: each neuron the sum of its ``±`` vectors) or the
    basis vectors with the largest positive scores, at most ``top``, with ties marked.

    Equal scores share a rank (the best of the group) and are ``tied``: a ranking never orders
    them. Scores of zero are not listed (nothing credits them).
    """
    scores = np.asarray(vector_scores, np.float32)
    if neurons.orthonormal:
        scores = np.asarray(_neurons.neuron_shares(jnp.asarray(scores), neurons.direction,
                                                   neurons.num_directions))
    total = float(np.sum(scores, dtype=np.float64))
    order = np.argsort(-scores, kind="stable")
    order = order[scores[order] > 0][:int(top)]
    values, counts = np.unique(scores, return_counts=True)
    multiplicity = dict(zip(values.tolist(), counts.tolist(), strict=True))
    rows = []
    for k in order:
        value = float(scores[k])
        rows.append({
            "neuron": int(neurons.neuron[k]) if neurons.orthonormal else None,
            "vector": int(k if not neurons.orthonormal else neurons.representative[k]),
            "score": to_float(np.float32(value)),
            "share": to_float(value / total) if total > 0 else math.nan,
            "rank": int(np.sum(scores > scores[k])) + 1,
            "tied": multiplicity[value] > 1,
        })
    return rows


def massive_rows(facts: RowFacts) -> np.ndarray:
    """Which rows are massive (``|cos| ≥`` :data:`MASSIVE_COS` with one basis vector)."""
    return np.nan_to_num(np.asarray(facts.max_cos), nan=0.0) >= MASSIVE_COS


def _massive_share(facts: RowFacts) -> tuple[np.ndarray, float]:
    """Which rows are massive (:func:`massive_rows`) and their share of the finite rows."""
    flags = massive_rows(facts)
    finite = int(np.sum(np.isfinite(np.asarray(facts.max_cos))))
    return flags, to_float(flags.sum() / max(finite, 1))


def _token_text(token: int, vocab: dict | None) -> str | None:
    return None if vocab is None else vocab.get(int(token))


def _count_table(values: np.ndarray, weights: np.ndarray | None, limit: int) -> list[tuple]:
    """The ``limit`` values with the largest total weight (or count): ``(value, rows, weight)``."""
    if values.size == 0:
        return []
    keys, inverse = np.unique(values, return_inverse=True)
    rows = np.bincount(inverse, minlength=keys.size)
    weight = rows if weights is None else np.bincount(inverse, weights=weights,
                                                      minlength=keys.size)
    order = np.lexsort((keys, -weight))[:limit]
    return [(int(keys[i]), int(rows[i]), float(weight[i])) for i in order]


def _massive_table(facts: RowFacts, all_tokens, vocab, neurons: _neurons.SignedBasis,
                   subset_massive: np.ndarray, counts: np.ndarray) -> dict:
    """``carriers.massive``: every row's massive flag, their vectors and tokens."""
    flags, row_share = _massive_share(facts)
    vectors = np.asarray(facts.vector)[flags]
    total = float(np.sum(counts, dtype=np.float64))
    table = {
        "threshold": MASSIVE_COS,
        "num_rows": int(flags.sum()),
        "row_share": row_share,
        "num_subset_rows": int(subset_massive.sum()),
        "lit_share": (to_float(np.sum(counts[subset_massive], dtype=np.float64) / total)
                      if total > 0 else math.nan),
        "vectors": [{"vector": v, "rows": rows,
                     "neuron": (int(neurons.neuron[neurons.direction[v]])
                                if neurons.orthonormal else None)}
                    for v, rows, _ in _count_table(vectors, None, TOP_TOKENS)],
        "tokens": None,
    }
    if all_tokens is not None:
        table["tokens"] = [{"token": t, "text": _token_text(t, vocab), "rows": rows}
                           for t, rows, _ in _count_table(np.asarray(all_tokens)[flags], None,
                                                          TOP_TOKENS)]
    return table


def _tokens_table(tokens, counts: np.ndarray, vocab) -> list[dict] | None:
    """The tokens of the analysed rows ranked by their share of the lit counts."""
    if tokens is None:
        return None
    lit = counts > 0
    total = float(np.sum(counts, dtype=np.float64))
    return [{"token": t, "text": _token_text(t, vocab), "rows": rows, "share": to_float(w / total)}
            for t, rows, w in _count_table(np.asarray(tokens)[lit],
                                           counts[lit].astype(np.float64), TOP_TOKENS)]


def _top_rows_share(counts: np.ndarray) -> tuple[int, float]:
    """The top :data:`TOP_ROW_SHARE` of rows (at least one) and their share of the lit counts."""
    top = max(1, math.ceil(TOP_ROW_SHARE * counts.shape[0]))
    total = float(np.sum(counts, dtype=np.float64))
    best = np.sort(counts)[::-1][:top]
    return top, (to_float(np.sum(best, dtype=np.float64) / total) if total > 0 else math.nan)


def find_carriers(x, basis, pairs, *, epsilon: float, facts: RowFacts, subset_facts: RowFacts,
                  neurons: _neurons.SignedBasis, tokens=None, all_tokens=None,
                  vocab: dict | None = None, top: int = DEFAULT_TOP) -> Carriers:
    """Who carries the lit counts of the analysed rows ``x`` at ``epsilon`` (see module doc).

    ``facts`` are the massive-row facts of every row read (``all_tokens`` their tokens);
    ``subset_facts`` those of the rows of ``x`` (``tokens`` theirs).
    """
    lit = lit_credits(jnp.asarray(x), jnp.asarray(basis), epsilon=float(epsilon),
                      planes=jnp.asarray(pairs, jnp.int32))
    counts = np.asarray(lit.counts, np.int64)
    credits = np.asarray(lit.credits, np.float64)
    subset_massive = massive_rows(subset_facts)
    massive = _massive_table(facts, all_tokens, vocab, neurons, subset_massive, counts)
    top_rows, top_share = _top_rows_share(counts)
    num_lit = int(np.sum(counts > 0))
    table = {
        "epsilon": float(epsilon),
        "num_rows": int(counts.shape[0]),
        "num_lit_rows": num_lit,
        "lit_row_share": to_float(num_lit / max(counts.shape[0], 1)),
        "top_rows": top_rows,
        "top_rows_share": top_share,
        "massive": massive,
        "tokens": _tokens_table(tokens, counts, vocab),
        "top_neurons": ranked_scores(credits[subset_massive].sum(axis=0), neurons, top),
        "bulk_analysed": bulk_rule(massive["row_share"], massive["lit_share"]),
        "rule": bulk_rule_words(),
    }
    table["sentence"] = carriers_sentence(table)
    return Carriers(table, subset_massive, table["bulk_analysed"],
                    credits.sum(axis=0).astype(np.float32), counts)


def _who(table: dict) -> str:
    """The massive rows in words: their tokens and vectors."""
    m = table["massive"]
    parts = []
    if m["tokens"]:
        t = m["tokens"][0]
        name = t["text"] if t["text"] is not None else f"token {t['token']}"
        share = t["rows"] / max(m["num_rows"], 1)
        parts.append(f"all `{name}`" if share == 1 else f"{share:.0%} `{name}`")
    if m["vectors"]:
        v = m["vectors"][0]
        what = f"neuron {v['neuron']}" if v["neuron"] is not None else f"basis vector {v['vector']}"
        share = v["rows"] / max(m["num_rows"], 1)
        parts.append(f"{'each' if share == 1 else f'{share:.0%}'} one-hot on {what}")
    return ", ".join(parts)


def carriers_sentence(table: dict) -> str:
    """One sentence of ``report.md``: who carries the SRM signal at the headline ε."""
    e, m = table["epsilon"], table["massive"]
    if table["num_lit_rows"] == 0:
        return f"No analysed row lights a plane at ε = {e:g}."
    lit = (f"At ε = {e:g} the SRM signal is carried by {table['num_lit_rows']:,} of the "
           f"{table['num_rows']:,} analysed rows ({table['lit_row_share']:.1%}); the top "
           f"{TOP_ROW_SHARE:.0%} of rows carry {table['top_rows_share']:.0%} of the lit counts")
    if m["num_rows"] == 0:
        return lit + "; no row is massive."
    who = _who(table)
    return (f"{lit}; {m['num_rows']:,} rows ({m['row_share']:.1%} of all rows) are massive "
            f"(|cos| ≥ {m['threshold']:g} with one basis vector){', ' + who if who else ''}, "
            f"and carry {m['lit_share']:.0%} of the lit counts.")
