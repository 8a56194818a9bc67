"""SRM over several hosts (multi-process JAX): every process counts its own samples.

Launch one process per host (or several on one machine to try it). On TPU pods, SLURM and
Open MPI ``jax.distributed.initialize()`` detects everything; elsewhere pass the coordinator:

    # two processes on this machine, two CPU devices each:
    python examples/multihost_srm.py --coordinator localhost:12355 --num-processes 2 \
        --process-id 0 --cpu-devices 2 &
    python examples/multihost_srm.py --coordinator localhost:12355 --num-processes 2 \
        --process-id 1 --cpu-devices 2

Each process makes its own share of the samples (here: synthetic activations clustered on the
basis; in practice its shard of the data set run through the model), and
:func:`srm_jax.sharded_srm` sums the integer counts of every device of every process inside
the compiled program. Every process prints the same total; process 0 compares it with the
in-memory count of all the samples.
"""

from __future__ import annotations

import argparse
import os


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coordinator", default=None, help="host:port of process 0")
    parser.add_argument("--num-processes", type=int, default=None)
    parser.add_argument("--process-id", type=int, default=None)
    parser.add_argument("--cpu-devices", type=int, default=0,
                        help="force this many CPU devices per process (trying it on one machine)")
    parser.add_argument("--samples", type=int, default=20_000, help="samples per process")
    args = parser.parse_args(argv)
    if args.cpu_devices:
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.cpu_devices}"

    import jax
    import numpy as np

    # Cross-process collectives of CPU devices (ignored by GPU / TPU devices).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=args.coordinator, num_processes=args.num_processes,
        process_id=args.process_id,
    )
    import srm_jax

    me, count = jax.process_index(), jax.process_count()
    basis = np.random.default_rng(0).standard_normal((12, 6)).astype(np.float32)  # shared

    def samples(process: int) -> np.ndarray:
        rng = np.random.default_rng(1000 + process)
        centres = basis[rng.integers(0, len(basis), args.samples)]
        return (3 * centres + rng.standard_normal(centres.shape)).astype(np.float32)

    local = samples(me)
    result = srm_jax.sharded_srm(local, basis, epsilon=0.8)
    reference = srm_jax.self_srm(basis, epsilon=0.8)
    score = float(srm_jax.alignment_score(result, reference))
    print(f"process {me}/{count} ({jax.local_device_count()} of {jax.device_count()} devices): "
          f"{int(result.num_samples)} samples in total, alignment {score:+.3f}", flush=True)
    if me == 0:
        everything = np.concatenate([samples(p) for p in range(count)])
        full = jax.jit(srm_jax.spotlight_resonance)(everything, basis, epsilon=0.8)
        diff = np.abs(np.asarray(result.counts) - np.asarray(full.counts))
        # Only a sample within float rounding of ±ε can land differently: the matrix product's
        # rounding may depend on the batch shape (the tolerance math §5.2 grants the engine).
        print(f"process 0: sharded vs in-memory counts: {np.count_nonzero(diff)} of {diff.size} "
              f"entries differ (max {int(diff.max())}) out of {int(full.num_samples)} samples",
              flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
