"""Print the verdict evidence of docs/reproduction.md from the committed study files.

    python -m docs.study.tables            # every docs/study/*/study.json (repository root)

Each row: a variant and arm of one study; the fraction of seeds whose rotation test
(statistic "projection", the claimed direction, 99 rotations) is significant at 0.05, at the
preset epsilon and over the epsilon sweep; the paired model - control difference of the rotation
statistic at the preset epsilon (mean [95 % t-interval]); test MSE; alignment after training.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from train.study import fmt_ci

HERE = Path(__file__).resolve().parent


ci = fmt_ci  # the study's own formatter (train/study.py)


def rows(path: Path) -> list[str]:
    s = json.loads(path.read_text())
    k = len(s["seeds"])
    out = []
    eps = None
    for v in s["variants"]:
        for arm in ("model", "control"):
            a = v.get(arm)
            if a is None:
                continue
            rot = a.get("rotation_test") or {}
            sig = round(rot.get("fraction_significant", 0) * k)
            sweep = a.get("epsilon_sweep", {})
            eps = sweep.get("epsilon", [])
            fr = sweep.get("fraction_significant", [])
            pairs = zip(eps, fr, strict=True) if fr else []
            sweep_text = ", ".join(f"{e:g}: {round(f * k)}/{k}" for e, f in pairs) or "n/a"
            diff = None
            if arm == "model":
                diff = v.get("paired_difference", {}).get("rotation_score")
            bases = ""
            if "random_alignment_after" in a:
                bases = (f" random basis {ci(a['random_alignment_after'], 2)}; standard basis "
                         f"{ci(a['standard_alignment_after'], 2)}")
            out.append(
                f"| {path.parent.name} | {v['name']} | {arm} | {sig}/{k} | {sweep_text} | "
                f"{ci(diff, 2, 1e3) if diff else ''} | {ci(a['final_test_loss'])} | "
                f"{ci(a['alignment_after'], 2)}{bases} |"
            )
    return out


def main() -> None:
    paths = sorted(HERE.glob("*/study.json")) if len(sys.argv) < 2 else map(Path, sys.argv[1:])
    print("| study | variant | arm | significant at preset ε | significant over the ε sweep "
          "| model − control, statistic ×10³ | test MSE | alignment after |")
    print("|---|---|---|---|---|---|---|---|")
    for p in paths:
        print("\n".join(rows(p)))


if __name__ == "__main__":
    main()
