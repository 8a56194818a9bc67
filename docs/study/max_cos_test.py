"""Rotation test of a second alignment statistic on the trained models of the study runs.

    python -m docs.study.max_cos_test RUNS_DIR STUDY_NAME [STUDY_NAME ...]   # repository root

For every run of a study (``RUNS_DIR/<study>/<variant>/<arm>/``, with checkpoints) and every
seed: the test-split latents of the trained model, the statistic "median over samples of the
largest |cos| between a latent and a basis vector", and its rotation null (the same statistic
with the basis rotated by 99 Haar-random orthogonal matrices, srm_jax's ``haar_rotations``; the
data unchanged), with the exact permutation p-values (``permutation_p_value``) for "greater"
(latents closer to the basis vectors than to rotated ones: alignment) and "less" (farther:
anti-alignment). Writes ``docs/study/<study>/max_cos_test.json`` and prints a table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from srm_jax.significance import haar_rotations, permutation_p_value
from train import input_pipeline
from train.train import load_run

HERE = Path(__file__).resolve().parent
NUM_ROTATIONS = 99


@jax.jit
def statistic(latents, basis, rotations):
    """Median max |cos| of ``latents`` with ``basis`` and with every rotated basis."""
    hi = jax.lax.Precision.HIGHEST
    unit = latents / jnp.linalg.norm(latents, axis=1, keepdims=True)

    def one(b):
        b = b / jnp.linalg.norm(b, axis=1, keepdims=True)
        return jnp.median(jnp.abs(jnp.matmul(unit, b.T, precision=hi)).max(axis=1))

    rotated = jax.vmap(lambda q: jnp.matmul(basis, q.T, precision=hi))(rotations)
    return one(basis), jax.vmap(one)(rotated)


def run_dir(path: Path, cache: dict) -> dict:
    saved = json.loads((path / "config.json").read_text())
    config = saved["config"]
    name = config["dataset"]
    if name not in cache:
        data = input_pipeline.load_dataset(name)
        cache[name] = input_pipeline.subsample(data, config["num_train"], config["num_test"])
    data = cache[name]
    x = data.train_x if config["measure_split"] == "train" else data.test_x
    out = []
    for seed in saved.get("seeds", [config["seed"]]):
        model, _, epoch = load_run(path, seed=seed)
        latents = jax.jit(lambda v, m=model: m.measured(v, config["measure_tensor"]))(x)
        rotations = haar_rotations(jax.random.fold_in(jax.random.key(123), seed),
                                   latents.shape[1], NUM_ROTATIONS)
        observed, null = statistic(latents, model.latent_basis, rotations)
        out.append({
            "seed": seed, "epoch": epoch, "median_max_abs_cos": float(observed),
            "null_quantiles_2.5_50_97.5": [float(q) for q in np.quantile(null, [.025, .5, .975])],
            "p_greater": float(permutation_p_value(observed, null, "greater")),
            "p_less": float(permutation_p_value(observed, null, "less")),
        })
    return {"claim": config["claim"], "activation": config["activation"], "per_seed": out}


def main(argv: list[str]) -> None:
    runs, names = Path(argv[0]), argv[1:]
    cache: dict = {}
    print("| study | variant | arm | median max abs cos (mean) | rotated bases (median) "
          "| seeds p_greater <= 0.05 | seeds p_less <= 0.05 |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        result = {"num_rotations": NUM_ROTATIONS, "runs": {}}
        for arm_dir in sorted((runs / name).glob("*/*/")):
            if not (arm_dir / "summary.json").exists():
                continue
            key = f"{arm_dir.parent.name}/{arm_dir.name}"
            r = run_dir(arm_dir, cache)
            result["runs"][key] = r
            seeds = r["per_seed"]
            k = len(seeds)
            print(f"| {name} | {arm_dir.parent.name} | {arm_dir.name} | "
                  f"{np.mean([s['median_max_abs_cos'] for s in seeds]):.3f} | "
                  f"{np.mean([s['null_quantiles_2.5_50_97.5'][1] for s in seeds]):.3f} | "
                  f"{sum(s['p_greater'] <= 0.05 for s in seeds)}/{k} | "
                  f"{sum(s['p_less'] <= 0.05 for s in seeds)}/{k} |", flush=True)
        (HERE / name).mkdir(parents=True, exist_ok=True)
        (HERE / name / "max_cos_test.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
