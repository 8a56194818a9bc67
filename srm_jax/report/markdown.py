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


def report_markdown(summary: dict, figures: dict[str, str], *, source: str = "") -> str:
    """``report.md``: the verdict in one sentence, the key numbers and the figures."""
    s = summary
    lines = ["# SRM report" + (f": `{source}`" if source else ""), ""]
    sentence = s["verdict_sentence"]
    lines.append(f"**Verdict: {sentence[0].upper() + sentence[1:]}.**")
    lines.append("")
    if s.get("top_neurons"):
        names = ", ".join(str(t["neuron"]) for t in s["top_neurons"][:MAP_LABELS])
        lines += [f"Top neurons (by share of the lit counts): {names}.", ""]
    elif s.get("top_basis_vectors"):
        names = ", ".join(str(t["index"]) for t in s["top_basis_vectors"][:MAP_LABELS])
        lines += [f"Top basis vectors (by share of the lit counts): {names}.", ""]
    if s.get("measures"):
        lines += [s["measures"]["agreement"], ""]
    subset = ""
    if s["num_test_samples"] < s["num_samples"]:
        subset = f" (on a random subset of {s['num_test_samples']:,} samples)"
    lines += [
        f"SRM of {s['num_samples']:,} samples ({s['num_excluded']:,} rows with NaN/Inf "
        f"excluded) in n = {s['n']} dimensions about {s['num_planes']:,} planes of a basis of "
        f"m = {s['m']} vectors, at ε = {s['epsilon']:g}. The rotation test{subset} compares the "
        f"basis with {s['num_rotations']} random rotations of it "
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
    lines += [
        "| quantity | value |",
        "| --- | --- |",
        f"| alignment score (corr. of mean SRM with mean self-SRM) | "
        f"{_number(s['alignment_score'])} |",
        f"| p-value (two-sided; aligned / anti-aligned one-sided) | {_number(s['p_value'])} "
        f"({_number(s['p_value_aligned'])} / {_number(s['p_value_anti_aligned'])}) |",
        f"| mean SRM (isotropic expectation) | {_number(s['mean_srm'])} "
        f"({_number(s['isotropic_expectation'])}) |",
        f"| best ε of the sweep | {_number(s['best_epsilon'])} |",
        "",
    ]
    captions = {
        "srm": "SRM of every plane (faint), their mean (dashed) and the isotropic null band",
        "epsilon_sweep": "alignment score over the ε sweep",
        "rotation_test": "the basis' score among randomly rotated bases",
        "per_class": "per-class signed SRM of the most class-selective plane",
        "projection": "density of the samples in the top plane relative to isotropic data",
        "neuron_map": "mean SRM of the planes of every pair of neurons (log scale), top neurons "
                      "labelled",
        "neuron_shares": "share of the lit counts carried by the planes of each neuron, top 50",
    }
    for name, file in figures.items():
        caption = captions[name][0].upper() + captions[name][1:]
        lines += [f"![{captions[name]}]({file})", "", f"*{caption}.*", ""]
    lines += _neurons_markdown(s) + _measures_markdown(s)
    classes = s.get("class_selectivity")
    if classes:
        lines += [
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
        lines.append("")
    return "\n".join(lines)


def _neurons_markdown(s: dict) -> list[str]:
    """The "Which neurons" section: the top basis vectors and planes."""
    if not s.get("top_basis_vectors"):
        return []
    signed = s.get("basis_is_signed_orthonormal")
    lines = ["## Which neurons", "",
             "Basis vectors ranked by the share of the lit counts (Σ over θ of SRM counts) "
             "their planes carry" + ("; ±q_k is neuron k" if signed else "") + ".", "",
             "| rank | vector | neuron | sign | share |", "| --- | --- | --- | --- | --- |"]
    for rank, v in enumerate(s["top_basis_vectors"], 1):
        neuron = "–" if v["neuron"] is None else str(v["neuron"])
        sign = "–" if v["sign"] is None else ("+" if v["sign"] > 0 else "−")
        lines.append(f"| {rank} | {v['index']} | {neuron} | {sign} | {_number(v['score'])} |")
    lines += ["", "Planes with the highest SRM peak:", "",
              "| rank | plane | vectors | peak SRM | angle of the peak |",
              "| --- | --- | --- | --- | --- |"]
    for rank, p in enumerate(s["top_planes"], 1):
        lines.append(f"| {rank} | ({p['plane'][0]}, {p['plane'][1]}) | "
                     f"{p['neurons'][0]}, {p['neurons'][1]} | {_number(p['peak_srm'])} | "
                     f"{_number(p['peak_angle'])} |")
    return lines + [""]


def _measures_markdown(s: dict) -> list[str]:
    """The "measures beside SRM" section: one table, the agreement with SRM."""
    m = s.get("measures")
    if not m:
        return []
    lines = [
        "## The field's measures beside SRM", "",
        f"Taken on {m['coordinates']}; the value on all {m['num_samples']:,} samples, and the "
        f"basis against the same {s['num_rotations']} random rotations as the SRM test on "
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


def layer_table(summaries: list[dict]) -> list[dict]:
    """One row per layer: key, verdict, p, top neurons (or basis vectors) and kurtosis."""
    rows = []
    for s in summaries:
        tops = s.get("top_neurons") or [{"neuron": v["index"]} for v in s["top_basis_vectors"]]
        kurt = s["measures"]["kurtosis"]
        rows.append({
            "key": s["input"]["key"],
            "verdict": s["verdict"],
            "p_value": s["p_value"],
            "top_neurons": [t["neuron"] for t in tops[:5]],
            "kurtosis": kurt["value"],
            "kurtosis_p_value": kurt["p_value"],
            "measures_agree": s["measures"]["agrees_with_srm"],
        })
    return rows


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
             "| layer | verdict | p | top neurons | kurtosis (p) | measures agree |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in layer_table(summaries):
        lines.append(f"| {row['key']} | {row['verdict']} | {_number(row['p_value'])} | "
                     f"{', '.join(map(str, row['top_neurons']))} | {_number(row['kurtosis'])} "
                     f"({_number(row['kurtosis_p_value'])}) | "
                     f"{'yes' if row['measures_agree'] else 'no'} |")
    lines.append("")
    for summary, figs in zip(summaries, figures, strict=True):
        section = report_markdown(summary, figs).splitlines()
        section[0] = f"## Layer `{summary['input']['key']}`"
        lines += ["#" + line if line.startswith("## ") else line for line in section]
        lines.append("")
    return "\n".join(lines)


