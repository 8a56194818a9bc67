"""``report.md`` and the multi-layer ``report.json``: the report's numbers in words and tables."""

from __future__ import annotations

import math

from srm_jax import basis_measures as _measures
from srm_jax.report.defaults import MAP_LABELS
from srm_jax.report.measures import MEASURE_NAMES


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "undefined"
    return f"{value:.{digits}g}"


def _rows(value: int) -> str:
    return f"{int(value):,} row" + ("" if int(value) == 1 else "s")


def _percent(share) -> str:
    if share is None or not math.isfinite(share):
        return "undefined"
    percent = 100 * share
    return f"{percent:.0f} %" if percent >= 10 else f"{percent:.2g} %"


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] if text else text


def _full_stop(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


def _bulk_clause(s: dict) -> str:
    """The bulk's answer as a clause of the headline: "without the 928 massive rows, the bulk
    (1,971 rows) is anti-aligned at ε = 0.3 (family-wise p = 0.01)"."""
    bulk = s["bulk"]
    massive = ((s.get("carriers") or {}).get("massive") or {}).get("num_rows")
    without = "the massive rows" if massive is None else f"the {massive:,} massive rows"
    p = _number(bulk.get("family_wise_p_value", bulk["p_value"]), 2)
    where = bulk.get("headline_epsilon")
    at = "" if where is None else f" at ε = {where:g}"
    answer = {"aligned": f"is aligned with the basis{at}",
              "anti-aligned": f"is anti-aligned{at}"}.get(
        bulk["verdict"], "shows no evidence of alignment")
    return (f"without {without}, the bulk ({_rows(bulk['num_rows'])}) {answer} "
            f"(family-wise p = {p})")


def _headline(s: dict) -> list[str]:
    """The verdict (and the bulk's, in the same sentence), the carriers and the mean."""
    sentence = _sentence(s["verdict_sentence"])
    if s.get("bulk"):
        sentence += "; " + _bulk_clause(s)
    lines = [f"**Verdict: {sentence}.**", ""]
    carriers = s.get("carriers") or {}
    if carriers.get("sentence"):
        lines += [_full_stop(_sentence(carriers["sentence"])), ""]
    mean = s.get("mean")
    if mean:
        where = (f"basis vector {mean['vector']}" if mean.get("neuron") is None
                 else f"neuron {mean['neuron']}")
        lines += [f"The mean activation holds {_percent(mean['share_of_squared_norm'])} of the "
                  f"squared norm; its largest |cos| with a basis vector is "
                  f"{_number(mean['max_abs_cos'], 2)} ({where})."]
        if mean.get("centered") and mean.get("verdict_uncentered") is not None:
            same = mean["verdict_uncentered"] == s["verdict"]
            lines[-1] += (f" Centred: {s['verdict']} (p = {_number(s['p_value'], 2)}); "
                          f"uncentred: {mean['verdict_uncentered']} "
                          f"(p = {_number(mean.get('p_value_uncentered'), 2)}) — centring "
                          f"{'does not change' if same else 'changes'} the verdict.")
        lines.append("")
    return lines


def _top_line(s: dict) -> list[str]:
    """The top neurons (or basis vectors) in one line: by credit at the headline ε where the
    summary has it (tied ones grouped, never ordered), else by share of the lit counts."""
    if "neuron_scores" in s and not s["neuron_scores"]:
        return ["No basis vector is credited: no analysed row lights a plane at the headline "
                "ε.", ""]
    if s.get("neuron_scores"):
        names = []
        for group in _tie_groups(s["neuron_scores"][:MAP_LABELS]):
            labels = [str(e["vector"] if e.get("neuron") is None else e["neuron"])
                      for e in group]
            names.append(labels[0] if len(labels) == 1 else f"tied: {' = '.join(labels)}")
        what = "neurons" if s["neuron_scores"][0].get("neuron") is not None else "basis vectors"
        at = ("" if s.get("headline_epsilon") is None
              else f" at ε = {s['headline_epsilon']:g}")
        return [f"Top {what} (by credit{at}): {'; '.join(names)}.", ""]
    if s.get("top_neurons"):
        names = ", ".join(str(t["neuron"]) for t in s["top_neurons"][:MAP_LABELS])
        return [f"Top neurons (by share of the lit counts): {names}.", ""]
    if s.get("top_basis_vectors"):
        names = ", ".join(str(t["index"]) for t in s["top_basis_vectors"][:MAP_LABELS])
        return [f"Top basis vectors (by share of the lit counts): {names}.", ""]
    return []


def _setting(s: dict) -> list[str]:
    """What was measured and tested, in one paragraph, and the least attainable p-value."""
    subset = ""
    if s["num_test_samples"] < s["num_samples"]:
        subset = f" (on a random subset of {s['num_test_samples']:,} samples)"
    tested = s.get("test_epsilons") or []
    at = (f" at ε = {tested[0]:g}–{tested[-1]:g} ({len(tested)} ε, one family: min-p)"
          if len(tested) > 1 else "")
    lines = [
        f"SRM of {s['num_samples']:,} samples ({s['num_excluded']:,} rows with NaN/Inf "
        f"excluded) in n = {s['n']} dimensions about {s['num_planes']:,} planes of a basis of "
        f"m = {s['m']} vectors, at ε = {s['epsilon']:g}. The rotation test{subset} compares the "
        f"basis with {s['num_rotations']} random rotations of it{at} "
        f"(statistic: {s['statistic']}, two-sided).",
        "",
    ]
    if s["min_p_value"] > s["significance_level"]:
        lines += [
            f"With {s['num_rotations']} rotations the smallest attainable p-value is "
            f"{s['min_p_value']:.2g}, above the level {s['significance_level']:g}: no verdict "
            "of alignment is possible; raise --resamples.",
            "",
        ]
    return lines


def _quantities(s: dict) -> list[str]:
    """The key numbers, one table."""
    family = len(s.get("test_epsilons") or []) > 1
    return [
        "| quantity | value |",
        "| --- | --- |",
        f"| alignment score (corr. of mean SRM with mean self-SRM) | "
        f"{_number(s['alignment_score'])} |",
        f"| {'family-wise ' if family else ''}p-value (two-sided; aligned / anti-aligned "
        f"one-sided) | {_number(s['p_value'])} "
        f"({_number(s['p_value_aligned'])} / {_number(s['p_value_anti_aligned'])}) |",
        f"| mean SRM (isotropic expectation) | {_number(s['mean_srm'])} "
        f"({_number(s['isotropic_expectation'])}) |",
        f"| best ε of the sweep | {_number(s['best_epsilon'])} |",
        "",
    ]


def _epsilon_table(tests: list[dict], headline) -> list[str]:
    """The rotation test at each tested ε, the headline ε marked."""
    lines = ["| ε | statistic | p (two-sided) | p aligned | p anti-aligned | share of samples "
             "lit |", "| --- | --- | --- | --- | --- | --- |"]
    for t in tests:
        eps = f"{t['epsilon']:g}"
        if headline is not None and t["epsilon"] == headline:
            eps = f"**{eps}** (headline)"
        lines.append(f"| {eps} | {_number(t['statistic'])} | {_number(t['p_value'])} | "
                     f"{_number(t['p_value_aligned'])} | {_number(t['p_value_anti_aligned'])} "
                     f"| {_percent(t.get('lit_share'))} |")
    return lines + [""]


def _evidence_markdown(s: dict) -> list[str]:
    """The "Evidence per ε" section (only with ``epsilon_tests``)."""
    tests = s.get("epsilon_tests")
    if not tests:
        return []
    return ["## Evidence per ε", "",
            "The rotation test at every tested ε (one-sided p-values from the same rotations; "
            "the verdict's p is the family-wise min-p over them).", "",
            *_epsilon_table(tests, s.get("headline_epsilon"))]


_CAPTIONS = {
    "srm": "SRM of every plane (faint), their mean (dashed) and the isotropic null band",
    "epsilon_sweep": "alignment score over the ε sweep",
    "rotation_test": "the basis' score among randomly rotated bases",
    "per_class": "per-class signed SRM of the most class-selective plane",
    "projection": "density of the samples in the top plane relative to isotropic data",
    "neuron_map": "mean SRM of the planes of every pair of the top neurons (log scale), in "
                  "rank order",
    "neuron_shares": "share of the lit counts carried by the planes of each neuron, top 50",
    "carrier_tokens": "the tokens of the rows carrying SRM, by share of the lit counts",
}


def _figures_markdown(s: dict, figures: dict[str, str]) -> list[str]:
    """Each figure with its caption."""
    captions = dict(_CAPTIONS)
    if s.get("bulk"):
        captions["srm"] = ("mean SRM curve of the carriers (massive rows) and of the bulk (the "
                           "other rows), each at its ε, with the isotropic expectation (dashed)")
    if s.get("headline_epsilon") is not None:
        captions["rotation_test"] = (f"the basis' score among randomly rotated bases at the "
                                     f"headline ε = {s['headline_epsilon']:g}")
    lines = []
    for name, file in figures.items():
        caption = captions.get(name, name)
        lines += [f"![{caption}]({file})", "", f"*{_sentence(caption)}.*", ""]
    return lines


def _classes_markdown(s: dict) -> list[str]:
    """The class-selectivity tables (only with labels)."""
    classes = s.get("class_selectivity")
    if not classes:
        return []
    lines = [
        f"## Class selectivity ({classes['num_classes']} classes, "
        f"{classes['num_shuffles']} label shuffles)",
        "",
        "| plane | selectivity S | z | p | p (family-wise) |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| ({p['plane'][0]}, {p['plane'][1]}) | {_number(p['selectivity'])} | "
              f"{_number(p['z'])} | {_number(p['p_value'])} | "
              f"{_number(p['p_family_wise'])} |" for p in classes["planes"]]
    lines += ["", "| basis vector | selectivity S | z | p | p (family-wise) |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| {v['vector']} | {_number(v['selectivity'])} | {_number(v['z'])} | "
              f"{_number(v['p_value'])} | {_number(v['p_family_wise'])} |"
              for v in classes["vectors"]]
    return lines + [""]


def report_markdown(summary: dict, figures: dict[str, str], *, source: str = "") -> str:
    """``report.md``: the verdict in one sentence (with the bulk's answer when a bulk is
    analysed), the carriers and the mean, the key numbers, the figures, the evidence per ε,
    the neurons, the bulk, the tokens and the field's measures."""
    s = summary
    lines = ["# SRM report" + (f": `{source}`" if source else ""), ""]
    lines += _headline(s) + _top_line(s)
    if s.get("measures"):
        lines += [s["measures"]["agreement"], ""]
    lines += _setting(s) + _quantities(s) + _figures_markdown(s, figures)
    lines += _evidence_markdown(s) + _neurons_markdown(s) + _credit_markdown(s)
    lines += _tokens_markdown(s) + _bulk_markdown(s) + _measures_markdown(s)
    lines += _classes_markdown(s)
    return "\n".join(lines)


def _tie_groups(entries: list[dict]) -> list[list[dict]]:
    """The ranked entries grouped: a group is one entry, or the consecutive tied entries that
    share a rank (equal scores: they have no order)."""
    groups: list[list[dict]] = []
    for entry in entries:
        if (groups and entry.get("tied") and groups[-1][-1].get("tied")
                and groups[-1][-1]["rank"] == entry["rank"]):
            groups[-1].append(entry)
        else:
            groups.append([entry])
    return groups


def _credit_table(entries: list[dict]) -> list[str]:
    """A credit ranking as a table; tied entries share one row ("tied: 131, 133, 136")."""
    shares = any("share" in e for e in entries)
    lines = ["| rank | neuron | vector | score" + (" | share |" if shares else " |"),
             "| --- | --- | --- | ---" + (" | --- |" if shares else " |")]
    for group in _tie_groups(entries):
        neurons = ", ".join("–" if e.get("neuron") is None else str(e["neuron"]) for e in group)
        vectors = ", ".join(str(e["vector"]) for e in group)
        if len(group) > 1:
            neurons = f"tied: {neurons}"
        each = " each" if len(group) > 1 else ""
        row = f"| {group[0]['rank']} | {neurons} | {vectors} | {_number(group[0]['score'])}{each}"
        if shares:
            row += f" | {_number(group[0].get('share'))}{each}"
        lines.append(row + " |")
    return lines + [""]


def _credit_markdown(s: dict) -> list[str]:
    """The neurons by credit: every row of the subset, and the carriers (massive rows)."""
    lines = []
    if s.get("neuron_scores"):
        lines += ["## Neurons by credit", "",
                  "Each basis vector's credit over the analysed rows at the headline ε; equal "
                  "scores are ties, written as one row.", "",
                  *_credit_table(s["neuron_scores"])]
    top = (s.get("carriers") or {}).get("top_neurons")
    if top:
        lines += ["### The carriers' neurons (massive rows)", "", *_credit_table(top)]
    return lines


def _token_text(text) -> str:
    """A token's text in a table cell: quoted with escapes visible, ``|`` escaped."""
    if text is None:
        return "–"
    quoted = repr(text).replace("|", "\\|")
    return f"`` {quoted} ``" if "`" in quoted else f"`{quoted}`"


def _tokens_markdown(s: dict) -> list[str]:
    """The carriers' tokens, and the tokens and vectors of the massive rows."""
    carriers = s.get("carriers") or {}
    lines = []
    tokens = carriers.get("tokens")
    if tokens:
        lines += ["## Tokens of the rows carrying SRM", "",
                  "| token | text | rows | share of the lit counts |", "| --- | --- | --- | --- |"]
        lines += [f"| {t['token']} | {_token_text(t.get('text'))} | {t['rows']:,} | "
                  f"{_percent(t['share'])} |" for t in tokens]
        lines.append("")
    massive = carriers.get("massive") or {}
    if massive.get("vectors"):
        listed = ", ".join(
            f"{v['vector']}" + ("" if v.get("neuron") is None else f" (neuron {v['neuron']})")
            + f": {v['rows']:,}" for v in massive["vectors"])
        lines += [f"Massive rows (|cos| ≥ {massive.get('threshold', 0.9):g} with one basis "
                  f"vector): {_rows(massive['num_rows'])}, "
                  f"{_percent(massive.get('row_share'))} of the rows; rows per vector: "
                  f"{listed}.", ""]
    if massive.get("tokens"):
        listed = ", ".join(f"{_token_text(t.get('text'))} ({t['token']}): {t['rows']:,}"
                           for t in massive["tokens"])
        lines += [f"Tokens of the massive rows: {listed}.", ""]
    return lines


def _bulk_markdown(s: dict) -> list[str]:
    """The "Bulk" section: the rows without massive activations analysed alone."""
    bulk = s.get("bulk")
    if not bulk:
        return []
    rule = (s.get("carriers") or {}).get("rule")
    lines = ["## Bulk: the rows without massive activations", "",
             f"{_sentence(bulk['verdict_sentence'])} ({_rows(bulk['num_rows'])})."
             + (f" {_full_stop(_sentence(rule))}" if rule else ""), ""]
    if bulk.get("epsilon_tests"):
        lines += _epsilon_table(bulk["epsilon_tests"], bulk.get("headline_epsilon"))
    if bulk.get("neuron_scores"):
        lines += ["### The bulk's neurons by credit", "", *_credit_table(bulk["neuron_scores"])]
    if bulk.get("measures"):
        lines += _measures_table(bulk["measures"], s["num_rotations"],
                                 "### The field's measures on the bulk")
    return lines


def _rank(entry: dict, default: int) -> str:
    """An entry's rank, ``k=`` when it is tied (equal scores share a rank: no order)."""
    rank = entry.get("rank", default)
    return f"{rank}=" if entry.get("tied") else str(rank)


def _neurons_markdown(s: dict) -> list[str]:
    """The "Which neurons" section: the top basis vectors and planes by the lit counts of every
    row at the measurement's ε (ties marked ``k=``)."""
    if not s.get("top_basis_vectors"):
        return []
    signed = s.get("basis_is_signed_orthonormal")
    lines = ["## Which neurons and planes", "",
             f"At the measurement's ε = {s['epsilon']:g}, over every row: basis vectors ranked "
             "by the share of the lit counts (Σ over θ of SRM counts) their planes carry"
             + ("; ±q_k is neuron k" if signed else "") + ". A rank written `k=` is shared by "
             "equal scores: a tie, not an order.", "",
             "| rank | vector | neuron | sign | share |", "| --- | --- | --- | --- | --- |"]
    for i, v in enumerate(s["top_basis_vectors"], 1):
        neuron = "–" if v["neuron"] is None else str(v["neuron"])
        sign = "–" if v["sign"] is None else ("+" if v["sign"] > 0 else "−")
        lines.append(f"| {_rank(v, i)} | {v['index']} | {neuron} | {sign} | "
                     f"{_number(v['score'])} |")
    lines += ["", "Planes with the highest SRM peak:", "",
              "| rank | plane | vectors | peak SRM | angle of the peak |",
              "| --- | --- | --- | --- | --- |"]
    for i, p in enumerate(s["top_planes"], 1):
        lines.append(f"| {_rank(p, i)} | ({p['plane'][0]}, {p['plane'][1]}) | "
                     f"{p['neurons'][0]}, {p['neurons'][1]} | {_number(p['peak_srm'])} | "
                     f"{_number(p['peak_angle'])} |")
    return lines + [""]


def _measures_markdown(s: dict) -> list[str]:
    """The "measures beside SRM" section: one table, the agreement with SRM."""
    if not s.get("measures"):
        return []
    return _measures_table(s["measures"], s["num_rotations"],
                           "## The field's measures beside SRM")


def _measures_table(m: dict, num_rotations: int, heading: str) -> list[str]:
    """The field's measures ``m`` (a ``measures`` dict of ``report.json``) under ``heading``:
    the table against the rotations, the outlier dimensions and the agreement with SRM."""
    lines = [
        heading, "",
        f"Taken on {m['coordinates']}; the value on all {m['num_samples']:,} samples, and the "
        f"basis against the same {num_rotations} random rotations as the SRM test on "
        f"{m['num_test_samples']:,} samples (two-sided p as SRM's). The verdict uses the "
        "scale-free outlier share; the proximity median is read from "
        f"{m['proximity_bins']} bins on [0, 1] (within {0.5 / m['proximity_bins']:.1g}).", "",
        "| measure | basis | rotations: median [2.5 %, 97.5 %] | p | reading |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in _measures.MEASURES:
        row = m[name]
        q = row["null_quantiles"]
        lines.append(f"| {MEASURE_NAMES[name]} | {_number(row['value'])} | {_number(q[1])} "
                     f"[{_number(q[0])}, {_number(q[2])}] | {_number(row['p_value'])} | "
                     f"{row['evidence']} |")
    relative = ", ".join(f"{d['dimension']} ({d['share']:.2g})"
                         for d in m["outlier_dimensions_relative"][:MAP_LABELS])
    share = m["outlier_dimension_share"]
    lines += ["", f"Outlier dimensions (scale-free, ≥ {share:.0%} of tokens): "
              f"{relative or 'none'}.", "", m["agreement"], ""]
    return lines


def _neuron_list(row: dict) -> str:
    """A layer's top neurons; a tied one is written ``k=`` (no order among equal scores)."""
    tied = row.get("top_neurons_tied") or [False] * len(row["top_neurons"])
    return ", ".join(f"{n}{'=' if t else ''}" for n, t in zip(row["top_neurons"], tied,
                                                               strict=True))


def layer_table(summaries: list[dict]) -> list[dict]:
    """One row per layer: key, verdict, p, top neurons (or basis vectors), kurtosis, and (None
    in older summaries) the headline ε, the massive rows' share and the bulk's verdict."""
    rows = []
    for s in summaries:
        # The credit ranking at the headline ε where there is one (ties marked), else the
        # share of the lit counts at the measurement's ε.
        tops = ([{"neuron": v["vector"] if v.get("neuron") is None else v["neuron"],
                  "tied": v.get("tied", False)} for v in s["neuron_scores"]]
                if s.get("neuron_scores") is not None else
                s.get("top_neurons") or [{"neuron": v["index"]} for v in s["top_basis_vectors"]])
        kurt = s["measures"]["kurtosis"]
        massive = (s.get("carriers") or {}).get("massive") or {}
        bulk = s.get("bulk") or {}
        rows.append({
            "key": s["input"]["key"],
            "verdict": s["verdict"],
            "p_value": s["p_value"],
            "top_neurons": [t["neuron"] for t in tops[:5]],
            "top_neurons_tied": [bool(t.get("tied", False)) for t in tops[:5]],
            "kurtosis": kurt["value"],
            "kurtosis_p_value": kurt["p_value"],
            "measures_agree": s["measures"]["agrees_with_srm"],
            "headline_epsilon": s.get("headline_epsilon"),
            "massive_row_share": massive.get("row_share"),
            "bulk_verdict": bulk.get("verdict"),
            "bulk_p_value": bulk.get("family_wise_p_value", bulk.get("p_value")),
        })
    return rows


def _layer_row(row: dict) -> str:
    """One layer's row of the table across layers."""
    eps = row.get("headline_epsilon")
    bulk = ("–" if row.get("bulk_verdict") is None
            else f"{row['bulk_verdict']} ({_number(row['bulk_p_value'], 2)})")
    return (f"| {row['key']} | {row['verdict']} | {_number(row['p_value'])} | "
            f"{_neuron_list(row)} | {_number(row['kurtosis'])} "
            f"({_number(row['kurtosis_p_value'])}) | "
            f"{'yes' if row['measures_agree'] else 'no'} | "
            f"{'–' if eps is None else f'{eps:g}'} | "
            f"{'–' if row.get('massive_row_share') is None else _percent(row['massive_row_share'])}"
            f" | {bulk} |")


def layers_sentence(summaries: list[dict]) -> str:
    """Which layers are aligned, in one sentence."""
    aligned = [str(s["input"]["key"]) for s in summaries if s["verdict"] == "aligned"]
    anti = [str(s["input"]["key"]) for s in summaries if s["verdict"] == "anti-aligned"]
    parts = []
    if aligned:
        parts.append(f"aligned with the basis: {', '.join(aligned)}")
    if anti:
        parts.append(f"anti-aligned: {', '.join(anti)}")
    if not parts:
        return f"no evidence of alignment in any of the {len(summaries)} layers"
    return f"of {len(summaries)} layers, " + "; ".join(parts)


def layers_summary(summaries: list[dict]) -> dict:
    """``report.json`` of a multi-layer report: one entry per layer and the table across them."""
    return {
        "layers": summaries,
        "layer_table": layer_table(summaries),
        "aligned_layers": [s["input"]["key"] for s in summaries if s["verdict"] == "aligned"],
        "sentence": layers_sentence(summaries),
    }


def layers_markdown(summaries: list[dict], figures: list[dict], *, source: str = "") -> str:
    """``report.md`` of a multi-layer report: the table across layers, then a section a layer."""
    lines = ["# SRM report" + (f": `{source}`" if source else ""), "",
             f"**{layers_sentence(summaries)[0].upper()}{layers_sentence(summaries)[1:]}.**", "",
             "| layer | verdict | p | top neurons | kurtosis (p) | measures agree | headline ε "
             "| massive rows | bulk (p) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [_layer_row(row) for row in layer_table(summaries)] + [""]
    for summary, figs in zip(summaries, figures, strict=True):
        section = report_markdown(summary, figs).splitlines()
        section[0] = f"## Layer `{summary['input']['key']}`"
        lines += ["#" + line if line.startswith("##") else line for line in section]
        lines.append("")
    return "\n".join(lines)


