"""The summary of a run: aggregation over seeds, the claim tested and its verdict (math §9).

:func:`finalise` collects a finished run's measurements into ``srm.npz``, runs the rotation test
of the claim of the preset's paper figure (:func:`srm_jax.alignment_test`, statistic
``"projection"``, in the claimed direction) and the largest-cosine statistic on the final
latents of every seed, and writes ``summary.json`` and the figures. In an ensemble,
``summary.json`` holds the mean over seeds of every scalar field with its 95 % Student-t interval
(:func:`mean_interval`, shared with :mod:`train.study`), the fraction of seeds whose test is
significant at :data:`SIGNIFICANCE_LEVEL`, and ``per_seed``: every seed's own summary and verdict.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np
import scipy.stats

from srm_jax import significance
from train import plots
from train.configs import Config
from train.input_pipeline import Dataset
from train.measure import Measurer, RunMeasurements, json_float, measured_epochs
from train.run_files import load_measurements, write_json

SIGNIFICANCE_LEVEL = 0.05
CLAIM_ALTERNATIVE = {"aligned": "greater", "anti-aligned": "less", "none": "two-sided"}
CLAIM_TEXT = {
    "aligned": "the trained latents align with the privileged basis of their activation",
    "anti-aligned": "the trained latents anti-align with the privileged basis (they avoid it)",
    "none": "the latents show no alignment with the reference basis (no activation uses it)",
}


def seed_history(history: list[dict], k: int) -> list[dict]:
    """Seed ``k``'s records of an ensemble history (per-seed lists become scalars)."""
    return [{key: (v[k] if isinstance(v, list) else v) for key, v in r.items()} for r in history]


def _base_summary(config: Config, data: Dataset, history: list[dict], status: str) -> dict:
    """The loss and schedule fields of one seed's summary (``history`` of scalars)."""
    train_losses = [r.get("train_loss") for r in history if r["epoch"] > 0]
    test_losses = [r.get("test_loss") for r in history]
    alignment = {str(r["epoch"]): r.get("alignment") for r in history if "alignment" in r}
    return {
        "preset": config.preset,
        "dataset": data.name,
        "status": status,
        "epochs": config.epochs,
        "epochs_completed": history[-1]["epoch"] if history else 0,
        "initial_test_loss": test_losses[0] if test_losses else None,
        "final_train_loss": next((v for v in reversed(train_losses) if v is not None), None),
        "final_test_loss": test_losses[-1] if test_losses else None,
        "train_loss_per_epoch": train_losses,
        "test_loss_per_epoch": test_losses,
        "alignment_per_measurement": alignment,
        "alignment_definition": (
            "Pearson correlation over theta between the mean SRM curve and the mean self-SRM "
            "curve (srm_jax.alignment_score); +1 in phase (aligned), -1 in anti-phase "
            "(anti-aligned), null when either curve is flat (undefined)."
        ),
    }


def stopped_summary(config: Config, data: Dataset, history: list[dict], status: str,
                    seeds: list[int], ensemble: bool) -> dict:
    """The ``summary.json`` of a run that stopped (every seed non-finite): losses only."""
    per_seed = [{"seed": s, **_base_summary(config, data, seed_history(history, k), status)}
                for k, s in enumerate(seeds)]
    if not ensemble:
        return per_seed[0]
    return {**_aggregate(per_seed), "preset": config.preset, "dataset": data.name,
            "status": status, "seeds": seeds, "per_seed": per_seed}


def mean_interval(values, level: float = 0.95) -> dict:
    """Mean over seeds with a Student-t ``level`` interval (``None`` entries left out).

    Returns ``{"mean", "low", "high", "n"}``; the interval is ``None`` for fewer than 2 values.
    """
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    if x.size == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = float(x.mean())
    if x.size < 2:
        return {"mean": mean, "low": None, "high": None, "n": 1}
    half = float(scipy.stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(x.size)}


AGGREGATED = (
    "initial_test_loss", "final_train_loss", "final_test_loss", "alignment_before",
    "alignment_after", "srm_mean_before", "srm_mean_after", "self_srm_mean",
    "random_alignment_after", "standard_alignment_after", "random_srm_mean_after",
    "standard_srm_mean_after", "median_max_abs_cos", "isotropic_median_max_abs_cos",
)


def _aggregate(per_seed: list[dict]) -> dict:
    """Aggregate fields of an ensemble: the mean over seeds of each scalar field, and
    ``intervals``: the mean with its 95 % interval over seeds."""
    out, intervals = {}, {}
    for name in AGGREGATED:
        if any(name in s for s in per_seed):
            stats = mean_interval([s.get(name) for s in per_seed])
            out[name] = stats["mean"]
            intervals[name] = stats
    tests = [s["rotation_test"] for s in per_seed if s.get("rotation_test")]
    if tests:
        p = [t["p_value"] for t in tests]
        out["rotation_test"] = {
            "statistic": tests[0]["statistic"],
            "alternative": tests[0]["alternative"],
            "num_rotations": tests[0]["num_rotations"],
            "fraction_significant": float(np.mean([v is not None and v <= SIGNIFICANCE_LEVEL
                                                   for v in p])),
            "p_values": p,
            "score": mean_interval([t["score"] for t in tests]),
        }
    out["intervals"] = intervals
    return out


def _claim(config: Config, test: dict | None) -> dict:
    """What the preset's paper figure claims and whether a rotation test supports it."""
    alternative = CLAIM_ALTERNATIVE[config.claim]
    claim = {"claim": config.claim, "statement": CLAIM_TEXT[config.claim],
             "test": f"rotation test, statistic projection, alternative {alternative}, "
                     f"significance level {SIGNIFICANCE_LEVEL}"}
    if test is None:
        claim["supported"] = None
        claim["verdict"] = "not tested (num_rotations = 0)"
        return claim
    p = test["p_value"]
    significant = p is not None and p <= SIGNIFICANCE_LEVEL
    supported = (not significant) if config.claim == "none" else significant
    claim["supported"] = bool(supported)
    where = {"greater": "aligned", "less": "anti-aligned", "two-sided": "aligned or anti-aligned"}
    p_text = "undefined" if p is None else f"{p:.3g}"
    claim["verdict"] = (
        f"{'supports' if supported else 'does not support'} the claim: "
        + (f"{where[alternative]} beyond chance, p = {p_text}" if significant
           else f"no evidence of being {where[alternative]}, p = {p_text}")
        + f" ({test['num_rotations']} rotations)"
    )
    return claim


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    """What :func:`finalise` collects: a finished run's settings, history and measurements.

    Attributes:
      config: the run's settings (``epochs`` resolved from ``train_steps``).
      data: the data set trained on.
      workdir: the run directory (its ``measurements/`` are read, the outputs written there).
      history: the records of ``metrics.jsonl``, with per-seed lists.
      measurements: the run's measurers (:class:`train.measure.RunMeasurements`).
      final_epoch: the last epoch trained.
      final_latents: ``(K, N, n)`` measured latents of the trained models.
      seeds: the seeds trained (one for a single run).
      seeds_state: ``{"alive", "stopped"}``: which seeds train on, where the frozen ones stopped.
      ensemble: a seed ensemble (outputs keep the seed axis) or a single run.
      steps_per_epoch: optimiser steps in one epoch.
      start_time: ``time.time()`` when the run started (for ``wall_time_s``).
    """

    config: Config
    data: Dataset
    workdir: Path
    history: list[dict]
    measurements: RunMeasurements
    final_epoch: int
    final_latents: jax.Array
    seeds: list[int]
    seeds_state: dict
    ensemble: bool
    steps_per_epoch: int
    start_time: float

    @property
    def privileged(self) -> Measurer:
        """The measurer of the models' latent bases."""
        return self.measurements.bases["privileged"]


# Arrays of ``srm.npz`` that carry a seed axis in an ensemble besides the measured curves.
_SEED_AXIS_ARRAYS = (
    "basis", "self_srm", "planes", "random_basis", "random_planes", "random_self_srm",
    "standard_basis", "standard_planes", "standard_self_srm", "sweep_alignment_before",
    "sweep_alignment_after", "sweep_srm_mean_after", "rotation_score", "rotation_p_value",
)


def _common_fields(outcome: RunOutcome) -> dict:
    """The fields every seed's summary shares: the basis, planes and measurement settings."""
    config, priv = outcome.config, outcome.privileged
    n = config.latent_dim
    return {
        "basis": {"kind": config.basis_kind, "m": config.num_basis, "n": n},
        "num_planes": int(priv.planes.shape[-2]),
        "num_spanning_planes": int(round(priv.spanning_fraction * priv.planes.shape[-2])),
        "antipodal_planes": config.antipodal_planes,
        "num_test_samples": int(outcome.data.test_x.shape[0]),
        "measured_split": config.measure_split,
        "measured_tensor": config.measure_tensor,
        "epsilon": config.epsilon,
        "planes": config.planes,
        "isotropic_expectation": float(significance.isotropic_expectation(n, config.epsilon))
        * priv.spanning_fraction,
        "steps_per_epoch": outcome.steps_per_epoch,
    }


def _run_arrays(outcome: RunOutcome, epochs: list[int]) -> dict:
    """The arrays of ``srm.npz`` that do not depend on a measurement: grid, planes, bases."""
    priv = outcome.privileged
    return {
        "angles": priv.angles,
        "planes": priv.planes,
        "epsilon": np.asarray(outcome.config.epsilon),
        "basis": priv.basis,
        "self_srm": priv.self_values,
        "measured_epochs": np.asarray(epochs, np.int32),
        "seeds": np.asarray(outcome.seeds, np.int64),
    }


def _basis_results(outcome: RunOutcome, loaded: dict, epochs: list[int]) -> tuple[dict, list]:
    """Every basis's SRM during training and alignment: arrays, and each seed's summary fields
    (before and after training)."""
    arrays, extra = {}, [{} for _ in outcome.seeds]
    for name, measurer in outcome.measurements.bases.items():
        prefix = "" if name == "privileged" else f"{name}_"
        stack = np.stack([loaded[e][f"{name}_values"] for e in epochs], axis=1)  # (K, E, P, T)
        align = np.stack([loaded[e][f"{name}_alignment"] for e in epochs], axis=1)  # (K, E)
        arrays[f"{prefix}srm_during"] = stack
        arrays[f"{prefix}srm_before"] = stack[:, 0]
        arrays[f"{prefix}srm_after"] = stack[:, -1]
        arrays[f"{prefix}alignment"] = align
        if name != "privileged":
            arrays[f"{prefix}basis"] = measurer.basis
            arrays[f"{prefix}planes"] = measurer.planes
            arrays[f"{prefix}self_srm"] = measurer.self_values
        for k, seed_extra in enumerate(extra):
            seed_extra[f"{prefix}alignment_before"] = json_float(align[k, 0])
            seed_extra[f"{prefix}alignment_after"] = json_float(align[k, -1])
            seed_extra[f"{prefix}srm_mean_before"] = float(stack[k, 0].mean())
            seed_extra[f"{prefix}srm_mean_after"] = float(stack[k, -1].mean())
            seed_extra[f"{prefix}self_srm_mean"] = float(measurer.self_values[k].mean())
    return arrays, extra


def _sweep_results(outcome: RunOutcome, loaded: dict, epochs: list[int]) -> tuple[dict, list]:
    """The ε sweep before and after training (with its rotation tests when the run has them):
    arrays, and each seed's ``epsilon_sweep`` summary field."""
    measurements, config = outcome.measurements, outcome.config
    if not len(measurements.sweep_epsilon):
        return {}, [{} for _ in outcome.seeds]
    tests = []
    if config.num_rotations:
        tests = [m.rotation_test(measurements.test_keys, outcome.final_latents,
                                 num_rotations=config.num_rotations,
                                 alternative=CLAIM_ALTERNATIVE[config.claim])
                 for m in measurements.sweep]
    first, last = loaded[epochs[0]], loaded[epochs[-1]]
    arrays = {
        "sweep_epsilon": measurements.sweep_epsilon,
        "sweep_alignment_before": first["sweep_alignment"],
        "sweep_alignment_after": last["sweep_alignment"],
        "sweep_srm_mean_after": last["sweep_srm_mean"],
    }
    extra = []
    for k in range(len(outcome.seeds)):
        sweep = {
            "epsilon": measurements.sweep_epsilon.tolist(),
            "alignment_before": [json_float(a) for a in first["sweep_alignment"][k]],
            "alignment_after": [json_float(a) for a in last["sweep_alignment"][k]],
            "srm_mean_before": first["sweep_srm_mean"][k].tolist(),
            "srm_mean_after": last["sweep_srm_mean"][k].tolist(),
        }
        if tests:
            sweep["rotation_p_value"] = [json_float(t["p_value"][k]) for t in tests]
            sweep["rotation_score"] = [json_float(t["score"][k]) for t in tests]
        extra.append({"epsilon_sweep": sweep})
    return arrays, extra


def _rotation_test_summary(config: Config, tests: dict | None, k: int) -> dict | None:
    """Seed ``k``'s rotation test as ``summary.json`` holds it (``None`` when not run)."""
    if tests is None:
        return None
    return {
        "statistic": "projection",
        "alternative": CLAIM_ALTERNATIVE[config.claim],
        "num_rotations": config.num_rotations,
        "score": json_float(tests["score"][k]),
        "p_value": json_float(tests["p_value"][k]),
        "null_quantiles_2.5_50_97.5": [json_float(q) for q in tests["null_quantiles"][k]],
    }


def _final_tests(outcome: RunOutcome) -> tuple[dict, list]:
    """The trained models' largest-cosine statistic and rotation test of the claim: arrays,
    and each seed's summary fields (with the claim's verdict)."""
    config, priv, measurements = outcome.config, outcome.privileged, outcome.measurements
    cosines = priv.max_cosine(measurements.cosine_key, outcome.final_latents)
    arrays, tests = {}, None
    if config.num_rotations:
        tests = priv.rotation_test(measurements.test_keys, outcome.final_latents,
                                   num_rotations=config.num_rotations,
                                   alternative=CLAIM_ALTERNATIVE[config.claim])
        arrays["rotation_score"] = tests["score"]
        arrays["rotation_p_value"] = tests["p_value"]
    extra = []
    for k in range(len(outcome.seeds)):
        test = _rotation_test_summary(config, tests, k)
        extra.append({
            "median_max_abs_cos": float(cosines["median_max_abs_cos"][k]),
            "isotropic_median_max_abs_cos": float(cosines["isotropic_median_max_abs_cos"][k]),
            "rotation_test": test,
            "claim": _claim(config, test),
        })
    return arrays, extra


def _without_seed_axis(arrays: dict) -> dict:
    """The arrays of a single run: the seed axis dropped, no ``seeds``."""
    out = {}
    for key, value in arrays.items():
        if key == "seeds":
            continue
        seeded = key in _SEED_AXIS_ARRAYS or key.endswith(
            ("srm_during", "srm_before", "srm_after", "alignment"))
        out[key] = value[0] if seeded else value
    return out


def _seed_summaries(outcome: RunOutcome, common: dict, extra: list[dict]) -> list[dict]:
    """Every seed's own summary: losses, status, optimiser steps, ``common`` and ``extra``."""
    per_seed = []
    for k, seed in enumerate(outcome.seeds):
        stopped = outcome.seeds_state["stopped"][k]
        status = "completed" if stopped is None else (
            f"frozen at epoch {stopped['epoch'] - 1}: {stopped['reason']}")
        history = seed_history(outcome.history, k)
        seed_summary = {"seed": seed,
                        **_base_summary(outcome.config, outcome.data, history, status)}
        seed_summary["optimizer_steps"] = outcome.steps_per_epoch * (
            outcome.final_epoch if stopped is None else stopped["epoch"] - 1)
        seed_summary.update(common)
        seed_summary.update(extra[k])
        per_seed.append(seed_summary)
    return per_seed


def _ensemble_summary(outcome: RunOutcome, common: dict, per_seed: list[dict]) -> dict:
    """An ensemble's ``summary.json``: aggregates over seeds, the claim's verdict as the
    fraction of seeds significant, and ``per_seed``."""
    config, num = outcome.config, len(outcome.seeds)
    frozen = [s["seed"] for s in per_seed if s["status"] != "completed"]
    summary = {
        "preset": config.preset,
        "dataset": outcome.data.name,
        "status": "completed" + (f" ({len(frozen)} of {num} seeds frozen: {frozen})"
                                 if frozen else ""),
        "epochs": config.epochs,
        "epochs_completed": outcome.final_epoch,
        "seeds": outcome.seeds,
        "frozen_seeds": frozen,
        **common,
        **_aggregate(per_seed),
        "claim": {**_claim(config, None), "supported": None, "verdict": None},
        "per_seed": per_seed,
    }
    rotation = summary.get("rotation_test")
    if rotation:
        summary["claim"]["verdict"] = (
            f"{rotation['fraction_significant']:.0%} of {num} seeds significant at "
            f"{SIGNIFICANCE_LEVEL} in the claimed direction")
        summary["claim"]["fraction_supporting"] = float(
            np.mean([bool(s["claim"]["supported"]) for s in per_seed]))
    return summary


def finalise(outcome: RunOutcome) -> dict:
    """Collect the measurements into ``srm.npz``, ``summary.json`` and the PNG figure(s).

    Runs the rotation test (:func:`srm_jax.alignment_test`, statistic ``"projection"``, in the
    direction of ``config.claim``) and the largest-cosine statistic on the final latents of
    every seed, vmapped. Returns the summary.
    """
    config, workdir = outcome.config, outcome.workdir
    loaded = load_measurements(workdir, measured_epochs(config.replace(epochs=outcome.final_epoch)))
    epochs = sorted(loaded)
    arrays = _run_arrays(outcome, epochs)
    extra = [{} for _ in outcome.seeds]
    for stage in (_basis_results(outcome, loaded, epochs),
                  _sweep_results(outcome, loaded, epochs), _final_tests(outcome)):
        arrays.update(stage[0])
        for seed_extra, more in zip(extra, stage[1], strict=True):
            seed_extra.update(more)
    if not outcome.ensemble:
        arrays = _without_seed_axis(arrays)
    np.savez_compressed(workdir / "srm.npz", **arrays)

    common = _common_fields(outcome)
    per_seed = _seed_summaries(outcome, common, extra)
    figures = plots.save_run_figures(
        workdir, config, outcome.data.name, arrays, outcome.privileged, per_seed,
        ensemble=outcome.ensemble, num_samples=int(outcome.final_latents.shape[1]))
    if outcome.ensemble:
        summary = _ensemble_summary(outcome, common, per_seed)
    else:
        summary = per_seed[0]
        del summary["seed"]
    summary["figures"] = figures
    summary["wall_time_s"] = round(time.time() - outcome.start_time, 2)
    write_json(workdir / "summary.json", summary)
    return summary
