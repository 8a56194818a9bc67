"""Cost of the generalised tanh (Eqn. 14) against elementwise ``jnp.tanh`` (issue 3).

For n ∈ {24, 96} and m ∈ {2n, 4n} (Thompson bases: m = 2n converges to the orthoplex, which has
no positive-cosine pair, m = 4n has many), a batch of 1,024 samples, jitted, forward and
forward + backward (gradient of ``sum(σ(x))`` with respect to ``x``). Each figure is the
median wall time of ``--repeats`` calls after compilation. ``dense`` rows time the fallback
that a traced basis without a pair list takes (every one of the m(m−1)/2 pairs, masked).

    python -m benchmarks.activations_benchmark [--repeats 50] [--batch 1024]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.srm_benchmark import provenance
from srm_jax.activations import generalised_tanh, positive_cosine_pairs
from srm_jax.bases import thompson_basis


def _median_seconds(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _forward_and_backward(f):
    """``f(x, *rest)`` jitted, and the gradient of ``sum(f(x, *rest))`` with respect to ``x``.

    The basis and pairs are arguments (traced), as in a model, not constants of the program.
    """
    return jax.jit(f), jax.jit(jax.grad(lambda x, *rest: jnp.sum(f(x, *rest))))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1024)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)

    print(provenance("benchmarks.activations_benchmark", argv))
    print(f"generalised_tanh vs jnp.tanh, batch {args.batch}, median of {args.repeats}")
    header = "| n | m | path | pairs P | forward ms | ×tanh | fwd+bwd ms | ×tanh |"
    print(header)
    print("|---|---|---|---|---|---|---|---|")
    for n in (24, 96):
        x = jax.random.normal(jax.random.key(0), (args.batch, n), jnp.float32)
        fwd, bwd = _forward_and_backward(jnp.tanh)
        ref_f = _median_seconds(fwd, (x,), args.repeats)
        ref_b = _median_seconds(bwd, (x,), args.repeats)
        print(f"| {n} | – | jnp.tanh | – | {ref_f * 1e3:.3f} | 1 | {ref_b * 1e3:.3f} | 1 |")
        for m in (2 * n, 4 * n):
            basis = thompson_basis(jax.random.key(m), m, n)
            sparse = jnp.asarray(positive_cosine_pairs(basis))
            dense = jnp.asarray(np.stack(np.triu_indices(m, k=1), axis=1).astype(np.int32))
            fwd, bwd = _forward_and_backward(
                lambda x, basis, pairs: generalised_tanh(x, basis, correction_pairs=pairs)
            )
            for path, pairs in (("sparse", sparse), ("dense", dense)):
                t_f = _median_seconds(fwd, (x, basis, pairs), args.repeats)
                t_b = _median_seconds(bwd, (x, basis, pairs), args.repeats)
                print(
                    f"| {n} | {m} | {path} | {len(pairs)} | {t_f * 1e3:.3f} | {t_f / ref_f:.1f} "
                    f"| {t_b * 1e3:.3f} | {t_b / ref_b:.1f} |"
                )


if __name__ == "__main__":
    main()
