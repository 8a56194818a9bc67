"""Grandmother neurons of a large MNIST autoencoder (paper App. B.2, Figs. 3–4).

``python -m train.grandmother --out DIR [--epochs N] [--run RUN_DIR] [--top K] [--shuffles K]``

Trains the large MNIST autoencoder of preset ``fig6`` (``n = 10``, ``m = 20``, rotated
elementwise tanh; math §9) on ``mnist5k`` (or ``--dataset``) in memory with the training loop of
``python -m train`` (same keys, optimiser and compiled epoch; ``--set`` overrides config fields),
or loads the trained model of a run directory written by ``python -m train`` (``--run``). Then
it encodes the test split and measures the per-class signed SRM of every plane of the latent
basis with the paper's ``ε = 0.75`` (:func:`srm_jax.rank_selectivity`). Writes into ``DIR``
(``<data>`` is the data set the latents come from, e.g. ``mnist5k``):

* ``grandmother_<data>.png`` — per-class signed SRM of the ``--top`` most class-selective planes
  and the ranking of all planes against the shuffled-label null (:func:`srm_jax.plot_grandmother`);
* ``projection_<data>.png`` — the density of latents near the top plane relative to isotropic
  data (:func:`srm_jax.plot_projection_density`);
* ``srm_null_<data>.png`` — the SRM of the latents with the isotropic null band and expectation
  (:func:`srm_jax.plot_srm`), at the measurement ε of the preset;
* ``ranking.json`` — every number behind the figures: the ranked distinct planes and the basis
  vectors with their selectivity, z-scores, p-values (per item and family-wise), per-digit
  signed SRM at the peak angle, and the rotation tests of alignment;
* ``latents.npz`` — the test-split latents, basis, labels and config (``--latents`` reuses them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import srm_jax
from train import input_pipeline
from train.configs import Config, get_config, override
from train.train import create_optimizer, create_train_state, load_run, make_train_epoch

EPSILON = 0.75  # paper Figs. 3-4
PRESET = "fig6"  # large MNIST autoencoder, n = 10, m = 20


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train.grandmother",
        description="Per-class signed SRM and grandmother-neuron ranking (paper Figs. 3-4).",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (paper: 100)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", type=Path, help="use the trained model of this run directory")
    source.add_argument("--latents", type=Path,
                        help="reuse the latents.npz an earlier call wrote (no training)")
    parser.add_argument("--preset", default=PRESET, help="experiment preset (default fig6)")
    parser.add_argument("--dataset", default="mnist5k",
                        help="data set to train on (default mnist5k; ignored with --run)")
    parser.add_argument("--epsilon", type=float, default=EPSILON, help="per-class SRM epsilon")
    parser.add_argument("--projection-epsilon", type=float, default=0.3,
                        help="in-plane fraction cut of the projection figure")
    parser.add_argument("--top", type=int, default=3, help="distinct planes shown in the figure")
    parser.add_argument("--shuffles", type=int, default=199, help="label permutations")
    parser.add_argument("--rotations", type=int, default=199, help="rotations of the basis")
    parser.add_argument("--seed", type=int, default=0, help="seed of training and of the nulls")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a training config field (see python -m train --help)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def figure_names(dataset: str) -> dict[str, str]:
    """The figure files of a data set: ``grandmother_<data>.png`` and so on."""
    return {kind: f"{kind}_{dataset}.png" for kind in ("grandmother", "projection", "srm_null")}


def train_in_memory(config, data, *, progress: bool = True):
    """Train the model ``config`` describes on ``data``; returns ``(model, epochs)``.

    The same keys, optimiser and compiled epoch as ``python -m train`` (``train.train``), without
    checkpoints or SRM measurements along the way.
    """
    from flax import nnx
    from tqdm.auto import tqdm

    model_key, shuffle_key, _ = jax.random.split(jax.random.key(config.seed), 3)
    state, _ = create_train_state(config, data.num_features, model_key)
    run_epoch = make_train_epoch(state.graphdef, create_optimizer(config), config.batch_size)
    params, opt_state = state.params, state.opt_state
    train_x = jnp.asarray(data.train_x)
    for epoch in tqdm(range(1, config.epochs + 1), desc="training", disable=not progress):
        params, opt_state, losses = run_epoch(
            params, opt_state, state.rest, train_x, jax.random.fold_in(shuffle_key, epoch)
        )
        finite = all(bool(np.all(np.isfinite(np.asarray(leaf))))
                     for leaf in jax.tree.leaves(params))
        if not (np.all(np.isfinite(np.asarray(losses))) and finite):
            raise FloatingPointError(f"non-finite training loss or parameters at epoch {epoch}.")
    return nnx.merge(state.graphdef, params, state.rest), config.epochs


def latent_data(args) -> dict:
    """Test-split latents, latent basis, labels, config and epochs: from ``--latents``, from
    the model of ``--run``, or from a model trained here."""
    if args.latents is not None:
        saved = np.load(args.latents)
        config = Config.from_dict(json.loads(str(saved["config"])))
        return dict(latents=saved["latents"], basis=saved["basis"], labels=saved["labels"],
                    config=config, epoch=int(saved["epoch"]))
    if args.run is not None:
        model, config, epoch = load_run(args.run)
    else:
        config = get_config(args.preset).replace(
            dataset=args.dataset, epochs=args.epochs, seed=args.seed
        )
        config = override(config, args.set)
    data = input_pipeline.load_dataset(config.dataset, data_dir=config.data_dir)
    data = input_pipeline.subsample(data, config.num_train, config.num_test)
    if args.run is None:
        model, epoch = train_in_memory(config, data, progress=not args.no_progress)
    latents = np.asarray(jax.jit(model.encode)(jnp.asarray(data.test_x)))
    return dict(latents=latents, basis=np.asarray(model.latent_basis),
                labels=np.asarray(data.test_y, np.int32), config=config, epoch=int(epoch))


def _round(x, digits=4):
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


def _test_summary(test) -> dict:
    null = np.asarray(test.null_scores)
    return {
        "statistic": test.statistic,
        "alternative": test.alternative,
        "score": _round(test.score, 5),
        "p_value": _round(test.p_value),
        "num_rotations": int(null.shape[0]),
        "null_quantiles_2.5_50_97.5": [_round(q, 5) for q in np.quantile(null, [0.025, 0.5,
                                                                                  0.975])],
    }


def ranking_summary(selectivity, shown, tests, config, epoch, epsilon, num_test,
                    top: int = 10) -> dict:
    """A JSON-able summary of a :class:`srm_jax.Selectivity` and the alignment tests.

    ``shown``: the ranked plane indices with distinct spans (:func:`srm_jax.distinct_planes`).
    """
    planes = np.asarray(selectivity.per_class.planes)
    values = np.asarray(selectivity.per_class.values)  # (C, P, T)
    angles = np.asarray(selectivity.per_class.angles)
    order = np.asarray(selectivity.plane_order)
    rank_of = {int(p): r for r, p in enumerate(order)}
    scores = np.asarray(selectivity.plane_scores)
    out_planes = []
    for p in shown[:top]:
        curves = values[:, p]
        peak = int(np.argmax(np.abs(curves).max(axis=0)))
        out_planes.append({
            "rank": rank_of[int(p)] + 1,
            "plane": [int(planes[p, 0]), int(planes[p, 1])],
            "selectivity": _round(scores[p]),
            "z": _round(selectivity.plane_z[p], 2),
            "p_value": _round(selectivity.plane_p_values[p]),
            "p_family_wise": _round(selectivity.plane_p_adjusted[p]),
            "peak_angle": _round(angles[peak], 3),
            "signed_srm_per_digit_at_peak": [_round(v, 3) for v in curves[:, peak]],
            "digits_most_positive_first_at_peak": [int(c) for c in np.argsort(-curves[:, peak])],
        })
    vector_values = np.asarray(selectivity.vector_values)
    out_vectors = []
    for rank, i in enumerate(np.asarray(selectivity.vector_order)[:top]):
        firing = vector_values[:, i]
        out_vectors.append({
            "rank": rank + 1,
            "basis_vector": int(i),
            "selectivity": _round(selectivity.vector_scores[i]),
            "z": _round(selectivity.vector_z[i], 2),
            "p_family_wise": _round(selectivity.vector_p_adjusted[i]),
            "signed_firing_per_digit": [_round(v, 3) for v in firing],
        })
    return {
        "preset": config.preset,
        "dataset": config.dataset,
        "epochs_trained": int(epoch),
        "latent_dim": config.latent_dim,
        "num_basis": config.num_basis,
        "basis_kind": config.basis_kind,
        "epsilon": epsilon,
        "num_test_samples": int(num_test),
        "num_planes": int(planes.shape[0]),
        "num_shuffles": selectivity.num_shuffles,
        "selectivity_statistic": "sqrt(sum_c w_c mean_theta (v_c - v_pooled)^2), w_c = N_c/N",
        "plane_null_max_quantile_0.95": _round(
            np.quantile(np.asarray(selectivity.plane_null_max), 0.95)
        ),
        "num_planes_family_wise_p_le_0.01": int(
            np.sum(np.asarray(selectivity.plane_p_adjusted) <= 0.01 + 1e-9)
        ),
        "num_distinct_planes_family_wise_p_le_0.01": int(
            np.sum(np.asarray(selectivity.plane_p_adjusted)[shown] <= 0.01 + 1e-9)
        ),
        "num_vectors_family_wise_p_le_0.01": int(
            np.sum(np.asarray(selectivity.vector_p_adjusted) <= 0.01 + 1e-9)
        ),
        "max_abs_cosine_latent_basis_quantiles_50_99_100": None,
        "top_distinct_planes": out_planes,
        "top_basis_vectors": out_vectors,
        "alignment_tests": {"epsilon": config.epsilon, **{
            t.statistic: _test_summary(t) for t in tests
        }},
    }


def save_figures(
    args: argparse.Namespace,
    got: dict,
    planes: jax.Array,
    selectivity: srm_jax.Selectivity,
    shown: np.ndarray,
    correlation: srm_jax.AlignmentTest,
    keys: tuple[jax.Array, jax.Array],
) -> None:
    """Write the three figures of ``got``'s latents into ``args.out``: the per-class signed SRM
    of the most class-selective ``shown`` planes, the projection density near the top plane, and
    the SRM with its isotropic null band and ``correlation``'s test (``keys``: the null band's
    and the projection density's)."""
    import matplotlib.pyplot as plt

    out = args.out
    config, epoch, latents, basis = got["config"], got["epoch"], got["latents"], got["basis"]
    names = figure_names(config.dataset)
    key_null, key_projection = keys
    digits = [str(d) for d in range(10)]
    fig = srm_jax.plot_grandmother(selectivity, top=args.top, class_names=digits,
                                   plane_indices=shown)
    fig.suptitle(
        f"Large MNIST autoencoder (n={config.latent_dim}, m={config.num_basis}, {epoch} epochs, "
        f"{config.dataset} test split): per-digit signed SRM of the most class-selective "
        f"distinct planes, $\\epsilon$={args.epsilon:g}", y=1.03,
    )
    fig.savefig(out / names["grandmother"], dpi=100, bbox_inches="tight")
    plt.close(fig)

    top_plane = planes[int(shown[0])]
    density = srm_jax.projection_density(
        key_projection, latents, basis, top_plane, min_radius=args.projection_epsilon, bins=24
    )
    ax = srm_jax.plot_projection_density(density, min_expected=0.5)
    ax.figure.savefig(out / names["projection"], dpi=100, bbox_inches="tight")
    plt.close(ax.figure)

    result = srm_jax.spotlight_resonance(latents, basis, epsilon=config.epsilon, planes=planes)
    band = srm_jax.null_band(key_null, latents.shape[0], basis, epsilon=config.epsilon,
                             planes=planes, num_resamples=100)
    ax = srm_jax.plot_srm(result, null=band, title=(
        f"latent SRM, $\\epsilon$={config.epsilon:g}: alignment {float(correlation.score):+.2f}"
        f" (rotation test p = {float(correlation.p_value):.3g}, two-sided)"
    ))
    ax.figure.savefig(out / names["srm_null"], dpi=100, bbox_inches="tight")
    plt.close(ax.figure)


def closing_message(summary: dict, tests: list) -> str:
    """The line ``main`` prints: the top plane, how many planes and vectors are selective, and
    the alignment tests."""
    correlation, projection = tests
    best = summary["top_distinct_planes"][0]
    return (
        f"top plane {tuple(best['plane'])}: S={best['selectivity']} (z={best['z']}, "
        f"family-wise p={best['p_family_wise']}), peak at theta={best['peak_angle']}; "
        f"{summary['num_distinct_planes_family_wise_p_le_0.01']} distinct planes and "
        f"{summary['num_vectors_family_wise_p_le_0.01']} basis vectors selective at "
        f"family-wise p <= 0.01; alignment {float(correlation.score):+.3f} "
        f"(two-sided p={float(correlation.p_value):.3g}), projection "
        f"{float(projection.score):+.5f} (p={float(projection.p_value):.3g})."
    )


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m train.grandmother``; returns the exit status."""
    args = build_parser().parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        got = latent_data(args)
    except (input_pipeline.MissingDependencyError, input_pipeline.DatasetUnavailableError,
            FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    config, epoch = got["config"], got["epoch"]
    latents, basis, labels = got["latents"], got["basis"], got["labels"]
    np.savez(args.out / "latents.npz", latents=latents, basis=basis, labels=labels,
             epoch=epoch, config=json.dumps(config.to_dict()))
    # Antipodal pairs (b, -b) of an orthoplex basis span no plane: left out, as in train/.
    planes = srm_jax.spanning_planes(basis, config.planes)
    key_select, key_rotate, key_null, key_projection = jax.random.split(
        jax.random.fold_in(jax.random.key(args.seed), 6), 4
    )

    selectivity = srm_jax.rank_selectivity(
        key_select, latents, basis, labels, num_classes=10, epsilon=args.epsilon,
        num_resamples=args.shuffles, planes=planes,
    )
    shown = srm_jax.distinct_planes(basis, planes, selectivity.plane_order)
    tests = [
        srm_jax.alignment_test(
            key_rotate, latents, basis, epsilon=config.epsilon, num_resamples=args.rotations,
            planes=planes, alternative="two-sided", statistic=statistic,
        )
        for statistic in ("correlation", "projection")
    ]
    summary = ranking_summary(selectivity, shown, tests, config, epoch, args.epsilon,
                              latents.shape[0])
    unit_l = latents / np.linalg.norm(latents, axis=1, keepdims=True)
    unit_b = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    max_cos = np.abs(unit_l @ unit_b.T).max(axis=1)
    summary["max_abs_cosine_latent_basis_quantiles_50_99_100"] = [
        _round(q, 3) for q in np.quantile(max_cos, [0.5, 0.99, 1.0])
    ]
    (args.out / "ranking.json").write_text(json.dumps(summary, indent=2))
    save_figures(args, got, planes, selectivity, shown, tests[0], (key_null, key_projection))
    print(closing_message(summary, tests))
    names = figure_names(config.dataset)
    print(f"outputs in {args.out}/: {', '.join(names.values())}, ranking.json, latents.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
