"""The prepared device check: precision, exactness and speed of srm-jax on the device JAX finds.

    python -m benchmarks.device                 # the full check (≤ 6 min on one H100/H200)
    python -m benchmarks.device --quick         # every part at toy sizes (the test suite runs it)
    python -m benchmarks.device --out DIR       # where device.json goes (default: runs/device)

It runs, in this order, and prints as it goes (after 4, the sample-major kernel at ``llm768`` and
the rotation test over a sweep of ten ε at 1,536 units, :func:`sweep_test_timing`):

1. the device: backend, device kind, JAX version, host CPU;
2. precision: every float dot of the engine (each method, signed, grouped, traced angles) asks
   for ``HIGHEST`` (a jaxpr walk); whether this device rounds a default float32 dot (TF32 or
   bfloat16), and that the counts are the same with JAX's default matmul precision forced to
   ``"highest"``; on a CPU the accelerators' rounding is emulated instead
   (:mod:`benchmarks.precision`);
3. exactness: ``direct`` and ``arc`` agree, and both lie within the bounds of a float64
   evaluation of Eqn. 2 (on a subset of samples) for fig1, fig1-dense and large;
4. timing: fig1, fig1-dense and large (median after compilation, the first call with its
   compilation, the device's peak memory from ``memory_stats()`` where the backend has it), and
   the floor measured in the same run (reading the activations once and projecting them on the
   basis at this device's measured float32 matmul rate, ``HIGHEST``, and memory bandwidth);
5. the direct/arc crossover grid, and the ``AUTO_DIRECT_LIMIT`` it suggests for this backend.

It writes ``DIR/device.json`` and, unless ``--quick``, this backend's block of
``benchmarks/RESULTS.md``. Nothing here installs anything beyond ``pip install -e ".[test,data]"``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

import numpy as np

from benchmarks import precision, srm_benchmark, workloads
from benchmarks.workloads import Workload

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "RESULTS.md")
# Float64 reference: samples per workload (the reference is O(N·P·T) on the host).
REFERENCE_SAMPLES = {"fig1": 2_000, "fig1-dense": 2_000, "large": 160}
# |d̂·s − ε| below this may fall either way in float32 (the bounds' tolerance).
REFERENCE_TOLERANCE = 2e-5


def _log(*parts) -> None:
    print(*parts, flush=True)


def device_info() -> dict:
    import jax

    device = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device_kind": str(device.device_kind),
        "num_devices": jax.device_count(),
        "jax": jax.__version__,
        "host_cpu": srm_benchmark.cpu_model(),
        "host_cores": os.cpu_count(),
        "python": platform.python_version(),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }


# ----------------------------------------------------------------------------- precision


def _engine_calls(x, basis):
    """The engine's entry points whose jaxprs are walked (each method, signed, grouped...)."""
    import jax.numpy as jnp

    import srm_jax
    from srm_jax import resonance

    pairs = srm_jax.plane_pairs(basis.shape[0])
    labels = jnp.arange(x.shape[0]) % 3
    calls = {}
    for method in ("direct", "arc"):
        for signed in (False, True):
            calls[f"{method}, signed={signed}"] = (
                lambda method=method, signed=signed: srm_jax.spotlight_resonance(
                    x, basis, epsilon=0.5, method=method, signed=signed), ())
        calls[f"{method}, traced angles"] = (
            lambda a, method=method: srm_jax.spotlight_resonance(
                x, basis, epsilon=0.5, angles=a, method=method), (jnp.linspace(0.0, 6.0, 11),))
        calls[f"{method}, grouped"] = (
            lambda method=method: resonance.plan_counts(
                resonance.CountPlan(signed=True, method=method,
                                    grid=resonance.angle_layout(srm_jax.angle_grid())),
                x, basis, pairs, srm_jax.angle_grid(), 0.5, groups=labels, num_groups=3), ())
    return calls


def _counts(x, basis, epsilon, num_angles, kind, method, signed=False):
    import srm_jax

    angles = None if num_angles == 100 else srm_jax.angle_grid(num_angles)
    result = srm_jax.spotlight_resonance(
        x, basis, epsilon=epsilon, angles=angles, planes=kind, method=method, signed=signed)
    out = [np.asarray(result.counts)]
    if signed:
        out.append(np.asarray(result.negative_counts))
    return out


def precision_checks(quick: bool) -> dict:
    """The jaxpr walk, the device's own rounding, and counts under the reduced precision."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    basis = jnp.asarray(rng.standard_normal((9, 5)), jnp.float32)
    x = jnp.asarray(rng.standard_normal((300, 5)), jnp.float32)
    inexact = {}
    for name, (fn, args) in _engine_calls(x, basis).items():
        found = [d for d in precision.float_dots_without_highest(fn, *args)
                 if d.location != "outside srm_jax"]
        if found:
            inexact[name] = [d.location for d in found]
    out = {"jaxpr_all_highest": not inexact, "jaxpr_inexact": inexact}
    _log(f"  jaxpr walk: every float dot asks for HIGHEST: {not inexact} {inexact or ''}")

    a = jnp.asarray(rng.standard_normal((256, 256)), jnp.float32)
    exact = np.asarray(a, np.float64) @ np.asarray(a, np.float64)
    default = np.asarray(jax.jit(lambda a: a @ a)(a))
    highest = np.asarray(jax.jit(lambda a: jnp.matmul(a, a, precision="highest"))(a))
    scale = np.max(np.abs(exact))
    out["default_dot_rel_error"] = float(np.max(np.abs(default - exact)) / scale)
    out["highest_dot_rel_error"] = float(np.max(np.abs(highest - exact)) / scale)
    out["device_rounds_default_dots"] = out["default_dot_rel_error"] > 1e-5
    _log(f"  this device's default float32 dot: relative error {out['default_dot_rel_error']:.2e}"
         f" (HIGHEST: {out['highest_dot_rel_error']:.2e})")

    work = workloads.FIG1.replace(num_samples=500 if quick else 4_000)
    data, wbasis = workloads.make_activations(work), workloads.make_basis(work)
    counts = {}
    for method in ("direct", "arc"):
        counts[method] = _counts(data, wbasis, work.epsilon, work.num_angles, work.kind, method,
                                 signed=True)
    same = {}
    if jax.default_backend() == "cpu":
        for mode in precision.MODES:
            with precision.emulate_reduced_precision(mode):
                same[f"emulated {mode}"] = all(
                    all(np.array_equal(a, b) for a, b in zip(counts[method], _counts(
                        data, wbasis, work.epsilon, work.num_angles, work.kind, method,
                        signed=True), strict=True))
                    for method in counts)
    else:
        with jax.default_matmul_precision("highest"):
            jax.clear_caches()
            same["default precision forced to highest"] = all(
                all(np.array_equal(a, b) for a, b in zip(counts[method], _counts(
                    data, wbasis, work.epsilon, work.num_angles, work.kind, method, signed=True),
                    strict=True))
                for method in counts)
        jax.clear_caches()
    out["counts_unchanged"] = same
    _log(f"  fig1 counts unchanged: {same}")
    return out


# ----------------------------------------------------------------------------- exactness


def reference_bounds(x: np.ndarray, basis: np.ndarray, pairs: np.ndarray, angles: np.ndarray,
                     epsilon: float, tol: float):
    """Float64 bounds of ``#{d̂·s_αβ(θ) ≥ ε}``: values within ``tol`` of ε may go either way.

    ``d̂·s = x cos θ − y sin θ`` (math §5), planes in blocks so that memory stays small.
    """
    d = x.astype(np.float64)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    b = basis.astype(np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    proj = d @ b.T
    a, bb = pairs[:, 0], pairs[:, 1]
    c = np.sum(b[a] * b[bb], axis=1)
    sine = np.linalg.norm(b[bb] - c[:, None] * b[a], axis=1)
    cos, sin = np.cos(angles.astype(np.float64)), np.sin(angles.astype(np.float64))
    low = np.zeros((len(pairs), len(angles)), np.int64)
    high = np.zeros_like(low)
    step = max(1, 2_000_000 // (len(d) * len(angles)))
    for start in range(0, len(pairs), step):
        sl = slice(start, start + step)
        px = proj[:, a[sl]]
        py = (proj[:, bb[sl]] - c[sl] * px) / sine[sl]
        dots = px[..., None] * cos - py[..., None] * sin  # (N, p, T)
        low[sl] = np.sum(dots >= epsilon + tol, axis=0)
        high[sl] = np.sum(dots >= epsilon - tol, axis=0)
    return low, high


def exactness_checks(names: list[str], quick: bool) -> dict:
    out = {}
    for name in names:
        work = _sized(workloads.WORKLOADS[name], quick)
        num = min(REFERENCE_SAMPLES[name], work.num_samples) if not quick else 200
        sub = work.replace(num_samples=num)
        data, basis = workloads.make_activations(sub), workloads.make_basis(sub)
        pairs, angles = workloads.make_pairs(sub), workloads.make_angles(sub)
        low, high = reference_bounds(data, basis, pairs, angles, sub.epsilon, REFERENCE_TOLERANCE)
        row = {"reference_samples": num}
        counts = {}
        for method in ("direct", "arc"):
            counts[method] = _counts(data, basis, sub.epsilon, sub.num_angles, sub.kind,
                                     method)[0]
            outside = int(np.sum((counts[method] < low) | (counts[method] > high)))
            row[f"{method}_outside_float64_bounds"] = outside
        row["direct_arc_differences"] = int(np.sum(counts["direct"] != counts["arc"]))
        row["lit"] = int(counts["arc"].sum())
        row["ok"] = (row["direct_outside_float64_bounds"] == 0
                     and row["arc_outside_float64_bounds"] == 0)
        out[name] = row
        _log(f"  {name}: {row}")
    return out


# ----------------------------------------------------------------------------- timing


def _sized(work: Workload, quick: bool) -> Workload:
    if not quick:
        return work
    return work.replace(num_samples=min(work.num_samples, 2_000),
                        m=min(work.m, 16), num_angles=min(work.num_angles, 64))


def _peak_device_memory() -> int | None:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def measure_rates(quick: bool) -> dict:
    """This device's float32 matmul rate (``HIGHEST``, what the engine asks for) and its
    memory bandwidth (read + write of a large array), medians of repeated calls."""
    import jax
    import jax.numpy as jnp

    size = 1024 if quick else 8192
    a = jnp.ones((size, size), jnp.float32)
    matmul = jax.jit(lambda a: jnp.matmul(a, a, precision="highest"))
    jax.block_until_ready(matmul(a))
    seconds, _ = srm_benchmark._median_time(lambda: jax.block_until_ready(matmul(a)), 5)
    x = jnp.ones(1 << (22 if quick else 28), jnp.float32)
    copy = jax.jit(lambda x: x + 1)
    jax.block_until_ready(copy(x))
    copy_s, _ = srm_benchmark._median_time(lambda: jax.block_until_ready(copy(x)), 5)
    return {"flops": 2 * size**3 / seconds, "bytes_per_s": 2 * x.nbytes / copy_s}


def timing(names: list[str], quick: bool, rates: dict) -> dict:
    import jax

    out = {}
    for name in names:
        work = _sized(workloads.WORKLOADS[name], quick)
        data = jax.device_put(workloads.make_activations(work))
        basis = jax.device_put(workloads.make_basis(work))
        row = {"workload": work.describe()}
        for method in ("auto", "arc", "direct"):
            if method == "direct" and name == "large" and jax.default_backend() == "cpu" \
                    and not quick:
                continue  # ~10 TFLOP: minutes on a CPU, the arc kernel's case
            srm = srm_benchmark.engine_srm(work, method)
            start = time.perf_counter()
            jax.block_until_ready(srm(data, basis))
            first = time.perf_counter() - start
            median, _ = srm_benchmark._median_time(
                lambda srm=srm, d=data, b=basis: jax.block_until_ready(srm(d, b)),
                3 if quick else 10)
            row[method] = {"median_s": median, "first_call_s": first}
        row["peak_device_bytes"] = _peak_device_memory()
        row["floor_s"] = srm_benchmark.floor_seconds(work, rates)
        row["auto_over_floor"] = row["auto"]["median_s"] / row["floor_s"]
        out[name] = row
        _log(f"  {name}: auto {row['auto']['median_s'] * 1e3:.3g} ms "
             f"(first {row['auto']['first_call_s']:.2f} s), floor {row['floor_s'] * 1e3:.3g} ms, "
             f"{row['auto_over_floor']:.1f}× the floor")
    return out


def wide_timing(quick: bool) -> dict:
    """``llm768`` (issue 16): every plane of a 768-wide ``±e_i`` basis with the sample-major
    kernel, summaries and full counts; N = 10⁶ on an accelerator, 2·10⁴ on a CPU, 2,000 quick."""
    import jax

    import srm_jax
    from benchmarks.wide_benchmark import measure

    w = workloads.LLM768
    rows = 2_000 if quick else (20_000 if jax.default_backend() == "cpu" else 1_000_000)
    x = jax.device_put(workloads.make_wide_activations(w.n, rows))
    row = measure(x, srm_jax.standard_basis(w.n), 1 if quick else 3, arc=False,
                  epsilon=w.epsilon)
    row["workload"] = w.describe()
    row["peak_device_bytes"] = _peak_device_memory()
    _log(f"  llm768, N={rows:,}: summaries {row['sample_major_summary_s']:.3g} s, "
         f"full counts {row['sample_major_counts_s']:.3g} s, "
         f"one read {row['floor_read_s'] * 1e3:.3g} ms")
    return row


def sweep_test_timing(quick: bool) -> dict:
    """The rotation test over a sweep at 1,536 units (the fixture's GELU layer ``mlp3``, tiled to
    20,000 rows on an accelerator): ten ε from 0.2 to 0.95, 199 rotations, in full (the moonshot:
    ≤ 10 s on one H100); 2,000 rows on a CPU; quick: 100 rows of the 384-wide ``resid3``, three
    ε, 19 rotations. Its time includes compilation (a fresh test, as a user runs it)."""
    import jax

    import srm_jax
    from benchmarks.rotation_test_benchmark import fixture_rows

    rows = 100 if quick else (2_000 if jax.default_backend() == "cpu" else 20_000)
    # Quick: the 384-wide layer (the same code; 1,536 units' self-SRM alone lights 4.7 M planes).
    x = fixture_rows("resid3" if quick else "mlp3", rows)
    x = np.resize(x, (rows, x.shape[1]))  # whole copies of the fixture's rows, in order
    sweep = np.linspace(0.2, 0.95, 3 if quick else 10).astype(np.float32)
    rotations = 19 if quick else 199
    start = time.perf_counter()
    test = srm_jax.alignment_test(jax.random.key(0), jax.device_put(x),
                                  srm_jax.standard_basis(x.shape[1]), epsilon=sweep,
                                  num_resamples=rotations)
    jax.block_until_ready(test.p_value)
    row = {"rows": rows, "width": int(x.shape[1]), "epsilons": len(sweep),
           "rotations": rotations, "seconds": time.perf_counter() - start,
           "family_wise_p_value": float(test.family_wise_p_value),
           "lit_share": np.asarray(test.lit_share).tolist()}
    _log(f"  sweep test, {rows:,} × {row['width']}, {len(sweep)} ε, {rotations} rotations: "
         f"{row['seconds']:.3g} s, family-wise p = {row['family_wise_p_value']:.3g}")
    return row


def crossover(quick: bool) -> dict:
    points = sorted(srm_benchmark.crossover_points(quick), key=lambda p: p["work"])
    # Largest work below which direct always wins (the measured auto limit for this backend).
    limit = 0
    for p in points:
        if p["direct"] > p["arc"]:
            break
        limit = p["work"]
    return {"points": points, "suggested_auto_direct_limit": limit}


# ----------------------------------------------------------------------------- output


def results_block(report: dict) -> list[str]:
    info = report["device"]
    cmd = "python -m benchmarks.device" + (" --quick" if report["quick"] else "")
    lines = [
        f"_Measured {info['date']} with `{cmd}` on {info['device_kind']} "
        f"(backend {info['backend']}, {info['num_devices']} device(s)), host {info['host_cpu']} "
        f"({info['host_cores']} cores), JAX {info['jax']}; script wall time "
        f"{report['wall_s']:.0f} s._",
        "",
        f"Floor rates: {report['rates']['flops'] / 1e12:.2f} TFLOP/s float32 matmul (HIGHEST), "
        f"{report['rates']['bytes_per_s'] / 1e9:.0f} GB/s memory.",
        "",
        "| workload | auto | arc | direct | first call (auto) | peak device memory | floor |"
        " auto / floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report["timing"].items():
        def ms(method, row=row):
            return f"{row[method]['median_s'] * 1e3:.3g} ms" if method in row else "—"
        mem = row["peak_device_bytes"]
        lines.append(
            f"| {name} ({row['workload']}) | {ms('auto')} | {ms('arc')} | {ms('direct')} | "
            f"{row['auto']['first_call_s']:.2f} s | "
            f"{'—' if mem is None else f'{mem / 2**20:.0f} MiB'} | "
            f"{row['floor_s'] * 1e3:.3g} ms | {row['auto_over_floor']:.1f}× |")
    wide = report["wide"]
    lines += [
        "",
        f"Language-model width, {wide['workload']}, N = {wide['rows']:,} (sample-major kernel): "
        f"summaries {wide['sample_major_summary_s']:.3g} s, full counts "
        f"{wide['sample_major_counts_s']:.3g} s, one read of the activations "
        f"{wide['floor_read_s'] * 1e3:.3g} ms.",
    ]
    sweep = report.get("sweep_test")
    if sweep:
        lines += [
            "",
            f"Rotation test over a sweep (`alignment_test`, fixture `mlp3` tiled): "
            f"{sweep['rows']:,} × {sweep['width']}, {sweep['epsilons']} ε, "
            f"{sweep['rotations']} rotations: {sweep['seconds']:.3g} s with compilation "
            f"(family-wise p = {sweep['family_wise_p_value']:.3g}).",
        ]
    prec = report["precision"]
    lines += [
        "",
        f"Precision: every engine dot asks for HIGHEST: {prec['jaxpr_all_highest']}; this "
        f"device's default float32 dot has relative error {prec['default_dot_rel_error']:.1e} "
        f"(HIGHEST {prec['highest_dot_rel_error']:.1e}); counts unchanged: "
        f"{prec['counts_unchanged']}.",
        "Exactness (counts within float64 bounds, direct = arc): " + "; ".join(
            f"{k}: {'ok' if v['ok'] else 'FAILED'} ({v['direct_arc_differences']} direct/arc "
            f"differences of {v['lit']:,} lit)" for k, v in report["exactness"].items()),
        f"Crossover: direct wins up to N·P·T = "
        f"{report['crossover']['suggested_auto_direct_limit']:,} (suggested `AUTO_DIRECT_LIMIT`"
        f" entry for `{info['backend']}`).",
    ]
    return lines


def write_results(report: dict, path: str = RESULTS) -> None:
    """Replaces (or adds) this backend's block in RESULTS.md's device-check section."""
    backend = report["device"]["backend"]
    begin, end = f"<!-- device-check:{backend}:begin -->", f"<!-- device-check:{backend}:end -->"
    block = "\n".join([begin, *results_block(report), end])
    with open(path) as fh:
        text = fh.read()
    if begin in text and end in text:
        before, after = text.split(begin, 1)
        text = before + block + after.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + (
            "\n\n## Device check (`python -m benchmarks.device`)\n\n" if
            "## Device check" not in text else "\n\n") + block + "\n"
    with open(path, "w") as fh:
        fh.write(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.device",
        description="Precision, exactness and speed of srm-jax on the device JAX finds.")
    parser.add_argument("--quick", action="store_true",
                        help="every part at toy sizes (about a minute on a CPU)")
    parser.add_argument("--out", default=os.path.join("runs", "device"),
                        help="folder for device.json (default: runs/device)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    names = ["fig1", "fig1-dense", "large"]
    report = {"quick": args.quick, "device": device_info()}
    _log(f"device: {report['device']}")
    _log("precision:")
    report["precision"] = precision_checks(args.quick)
    _log("exactness (float64 reference on a subset of samples):")
    report["exactness"] = exactness_checks(names, args.quick)
    _log("floor rates:")
    report["rates"] = measure_rates(args.quick)
    _log(f"  {report['rates']['flops'] / 1e12:.3g} TFLOP/s, "
         f"{report['rates']['bytes_per_s'] / 1e9:.3g} GB/s")
    _log("timing:")
    report["timing"] = timing(names, args.quick, report["rates"])
    _log("language-model width (sample-major kernel):")
    report["wide"] = wide_timing(args.quick)
    _log("rotation test over a sweep of ε at 1,536 units:")
    report["sweep_test"] = sweep_test_timing(args.quick)
    _log("direct/arc crossover:")
    report["crossover"] = crossover(args.quick)
    _log(f"  suggested auto limit: {report['crossover']['suggested_auto_direct_limit']:,}")
    report["wall_s"] = time.perf_counter() - started
    prec = report["precision"]
    report["ok"] = (prec["jaxpr_all_highest"] and all(prec["counts_unchanged"].values())
                    and all(v["ok"] for v in report["exactness"].values()))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "device.json"), "w") as fh:
        json.dump(report, fh, indent=1, default=str)
    if not args.quick:
        write_results(report)
    _log("\n".join(results_block(report)))
    _log(f"checks {'passed' if report['ok'] else 'FAILED'}; wrote "
         f"{os.path.join(args.out, 'device.json')} in {report['wall_s']:.0f} s")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
