"""The rotation test where a wide layer's samples are: one ε, a sweep, sequential, two revisions.

    python -m benchmarks.rotation_test_benchmark                       # this tree
    python -m benchmarks.rotation_test_benchmark --baseline /tmp/base  # and a checkout beside it
    python -m benchmarks.rotation_test_benchmark --quick               # toy sizes (the tests)

Real activations: the committed fixture ``tests/data/minilm`` (all-MiniLM-L6-v2 on the Python
reference manual, ``examples/capture_activations.py``), its residual stream (``resid3``, 384
wide) and GELU MLP (``mlp3``, 1,536 wide) without the special tokens ``[CLS]``/``[SEP]``, 2,000
rows, the standard basis ``±e_i``, every plane. Each case runs in a fresh process, so its time
includes compilation (what a user waits for), with OpenBLAS on one thread (as ``srm-jax report``
runs it); ``--baseline`` times the same cases with another checkout's ``srm_jax`` in the same run
(a case it cannot run, a sequential sweep, is "—").

Cases: ``alignment_test`` at ε = 0.3 with 99 rotations (the report's loop: the field's measures
on the same rotations); a sweep of nine ε from 0.2 to 0.95 with 199 rotations, sequential at 5 %
and in full with the measures; and the smallest ε the sweep affords (ε from 0.1 with 19
rotations: the time per rotation).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURE = os.path.join(ROOT, "tests", "data", "minilm")
SPECIAL_TOKENS = (101, 102)  # [CLS], [SEP] in the fixture's vocab.txt
SWEEP = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
LEVEL = 0.05


def fixture_rows(key: str, num_rows: int) -> np.ndarray:
    """``num_rows`` float32 rows of layer ``key`` of the fixture, special tokens left out."""
    from safetensors.numpy import load_file

    shards = [load_file(os.path.join(FIXTURE, name)) for name in sorted(os.listdir(FIXTURE))
              if name.endswith(".safetensors")]
    rows = np.concatenate([s[key] for s in shards]).astype(np.float32)
    tokens = np.concatenate([s["tokens"] for s in shards])
    return rows[~np.isin(tokens, SPECIAL_TOKENS)][:num_rows]


def run_case(case: dict) -> dict:
    """One case in this process: its wall time (compilation included) and outcome."""
    import jax

    import srm_jax
    from srm_jax import basis_measures, neurons

    x = fixture_rows(case["layer"], case["rows"])
    basis = srm_jax.standard_basis(x.shape[1])
    kwargs = {"num_resamples": case["rotations"]}
    if case.get("measures"):
        kwargs.update(measure=basis_measures.rotated_statistics,
                      measure_args=basis_measures.direction_arguments(
                          neurons.signed_neurons(basis), basis))
    if case.get("sequential"):
        kwargs["sequential_level"] = LEVEL
    epsilon = case["epsilon"]
    epsilon = np.asarray(epsilon, np.float32) if isinstance(epsilon, list) else epsilon
    start = time.perf_counter()
    test = srm_jax.alignment_test(jax.random.key(0), x, basis, epsilon=epsilon, **kwargs)
    jax.block_until_ready(test.p_value)
    seconds = time.perf_counter() - start
    family = getattr(test, "family_wise_p_value", None)
    drawn = getattr(test, "num_drawn", None)
    p = np.asarray(test.p_value, np.float64)
    return {"seconds": seconds, "p": p.tolist(),
            "family": None if family is None else float(family),
            "drawn": None if drawn is None else int(drawn),
            "lit": (None if getattr(test, "lit_share", None) is None
                    else np.asarray(test.lit_share, np.float64).tolist())}


def child(source: str, case: dict, timeout: float) -> dict | None:
    """``run_case`` in a fresh process importing ``srm_jax`` from ``source``."""
    # OpenBLAS on one thread for both revisions (srm-jax report does the same): see
    # srm_jax.report.cli.one_blas_thread.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([source, ROOT]), OPENBLAS_NUM_THREADS="1")
    code = ("import json, sys; from benchmarks.rotation_test_benchmark import run_case; "
            "print('RESULT', json.dumps(run_case(json.loads(sys.argv[1]))))")
    try:
        done = subprocess.run([sys.executable, "-c", code, json.dumps(case)], env=env,
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"timeout": timeout}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.stderr.write(done.stderr[-2000:])
    return None


def cases(quick: bool) -> list[dict]:
    """The cases of the module docstring (toy sizes with ``quick``)."""
    rows = 200 if quick else 2_000
    many, few = (19, 9) if quick else (199, 99)
    sweep = list(SWEEP)
    out = [
        {"name": "ε = 0.3, measures", "layer": "resid3", "rows": rows, "epsilon": 0.3,
         "rotations": few, "measures": True},
        {"name": "ε = 0.3", "layer": "resid3", "rows": rows, "epsilon": 0.3,
         "rotations": few},
    ]
    for layer in ("resid3", "mlp3"):
        out += [
            {"name": f"sweep, sequential ({layer})", "layer": layer, "rows": rows,
             "epsilon": sweep, "rotations": many, "sequential": True, "new_only": True},
            {"name": f"sweep, measures ({layer})", "layer": layer, "rows": rows,
             "epsilon": sweep, "rotations": many, "measures": True, "new_only": True},
            # The same-run ratio: few rotations (the baseline's sweep costs seconds a rotation).
            {"name": f"sweep, measures ({layer})", "layer": layer, "rows": rows,
             "epsilon": sweep, "rotations": 19, "measures": True},
        ]
    for least in (0.1, 0.15):
        for layer in ("resid3", "mlp3"):
            out.append({"name": f"sweep from ε = {least} ({layer})", "layer": layer,
                        "rows": rows, "epsilon": [least, *sweep], "rotations": 19,
                        "new_only": True})
    return out


def _seconds(result: dict | None, ran: bool = True) -> str:
    if not ran:
        return "—"
    if result is None:
        return "failed"
    if "timeout" in result:
        return f"> {result['timeout']:.0f} s"
    return f"{result['seconds']:.1f} s"


def _outcome(result: dict | None) -> str:
    if not result or "timeout" in result:
        return "—"
    p = result["p"]
    text = f"p = {p:.3g}" if isinstance(p, float) else f"min p = {min(p):.3g}"
    if result.get("family") is not None:
        text += f", family-wise {result['family']:.3g}"
    if result.get("drawn") is not None:
        text += f", {result['drawn']} drawn"
    return text


def table(rows: list[tuple[dict, dict | None, dict | None]], baseline: bool) -> list[str]:
    head = "| case | rows × width | ε | rotations | this tree | outcome |"
    rule = "|---|---|---|---|---|---|"
    if baseline:
        head += " baseline | ratio |"
        rule += "---|---|"
    lines = [head, rule]
    for case, new, old in rows:
        width = 384 if case["layer"].startswith("resid") else 1536
        eps = case["epsilon"]
        eps = f"{eps[0]:g}–{eps[-1]:g} ({len(eps)})" if isinstance(eps, list) else f"{eps:g}"
        line = (f"| {case['name']} | {case['rows']:,} × {width} | {eps} | {case['rotations']} "
                f"| {_seconds(new)} | {_outcome(new)} |")
        if baseline:
            ratio = "—"
            if new and old and "seconds" in new and "seconds" in old:
                ratio = f"{old['seconds'] / new['seconds']:.1f}×"
            line += f" {_seconds(old, not case.get('new_only'))} | {ratio} |"
        lines.append(line)
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=None, help="a checkout whose srm_jax to time too")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--only", default=None, metavar="TEXT",
                        help="only the cases whose name holds TEXT")
    parser.add_argument("--baseline-rotations", type=int, default=None, metavar="K",
                        help="time the baseline also on the cases of K rotations it skips "
                             "(not the sequential ones, which it cannot run)")
    args = parser.parse_args(argv)
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores", flush=True)
    rows = []
    for case in cases(args.quick):
        if args.only and args.only not in case["name"]:
            continue
        if case.get("new_only") and not case.get("sequential") and (
                case["rotations"] == args.baseline_rotations):
            case = dict(case, new_only=False)
        new = child(ROOT, case, args.timeout)
        old = None
        if args.baseline and not case.get("new_only"):
            old = child(args.baseline, case, args.timeout)
        rows.append((case, new, old))
        print(f"{case['name']}: {_seconds(new)} {_outcome(new)}"
              + (f" | baseline {_seconds(old, old is not None)}" if args.baseline else ""),
              flush=True)
    print("\n".join(table(rows, args.baseline is not None)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
