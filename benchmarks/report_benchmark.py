"""Memory and time of ``srm-jax report`` against the number of rows in the file (issue 13).

Writes files of ``N`` rows of isotropic Gaussian activations (``n`` features, float32; written in
chunks, never held whole), then runs ``python -m srm_jax report FILE`` on each in a fresh
process and records its wall time and peak resident set size (``ru_maxrss`` of that child, from
``os.wait4``). The report streams every row through :func:`srm_jax.accumulate_srm` (memory-mapped
``.npy`` windows, lazy safetensors slices) and analyses a fixed-size random subset, so the peak
memory should not grow with ``N``.

Run (it takes a few minutes; the 10^7-row .npy is 320 MB at n = 8)::

    nice -n 10 python -m benchmarks.report_benchmark --rows 1000000 10000000 \\
        --formats npy safetensors
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.srm_benchmark import cpu_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHUNK = 1 << 20


def write_file(path: str, rows: int, n: int, fmt: str, seed: int = 0) -> None:
    """``rows × n`` float32 standard-normal activations, generated chunk by chunk."""
    rng = np.random.default_rng(seed)
    if fmt == "npy":
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, n))
        for start in range(0, rows, CHUNK):
            stop = min(rows, start + CHUNK)
            out[start:stop] = rng.standard_normal((stop - start, n), dtype=np.float32)
        out.flush()
        del out
        return
    # safetensors: header, then the raw little-endian rows (the format's layout, streamed).
    import json
    import struct

    nbytes = rows * n * 4
    header = json.dumps({"activations": {"dtype": "F32", "shape": [rows, n],
                                         "data_offsets": [0, nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        for start in range(0, rows, CHUNK):
            stop = min(rows, start + CHUNK)
            fh.write(rng.standard_normal((stop - start, n), dtype=np.float32).tobytes())


def run_report(path: str, out: str, args) -> dict:
    command = [sys.executable, "-m", "srm_jax", "report", path, "--out", out,
               "--resamples", str(args.resamples), "--max-samples", str(args.max_samples),
               "--seed", "0"]
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    stdout = proc.stdout.read().strip()
    proc.stdout.close()
    if status != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({status}): {stdout}")
    verdict = stdout.split(". Report:")[0]
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024, "verdict": verdict}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report_benchmark",
        description="Peak memory and time of srm-jax report against the number of rows.",
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--n", type=int, default=8, help="features per row (default 8)")
    parser.add_argument("--formats", nargs="+", default=["npy"], choices=("npy", "safetensors"))
    parser.add_argument("--resamples", type=int, default=19)
    parser.add_argument("--max-samples", type=int, default=20_000)
    parser.add_argument("--dir", default=None, help="where to write the files (default: tmp)")
    args = parser.parse_args(argv)

    print(f"{time.strftime('%Y-%m-%d %H:%M')}; {cpu_model()} ({os.cpu_count()} cores, shared; "
          f"load average {os.getloadavg()[0]:.1f}); n = {args.n}, standard basis (m = "
          f"{2 * args.n}), ε = 0.9, --resamples {args.resamples}, --max-samples "
          f"{args.max_samples}. GPU: not measured.", flush=True)
    print("| format | rows | file size | wall time | peak RSS | verdict |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        for fmt in args.formats:
            for rows in args.rows:
                path = os.path.join(scratch, f"acts_{rows}.{fmt}")
                write_file(path, rows, args.n, fmt)
                size = os.path.getsize(path) / 2**20
                result = run_report(path, os.path.join(scratch, f"out_{fmt}_{rows}"), args)
                os.remove(path)
                print(f"| {fmt} | {rows:,} | {size:,.0f} MiB | {result['seconds']:.1f} s | "
                      f"{result['peak_rss_mib']:,.0f} MiB | {result['verdict']} |", flush=True)


if __name__ == "__main__":
    main()
