"""Training throughput of the Fig. 1 small autoencoder: srm-jax against a plain PyTorch loop.

The model is ``train.models.Autoencoder`` with the ``fig1`` preset (MNIST-sized inputs d = 784,
hidden width 128, latent n = 24; generalised tanh on orthoplex bases, m = 48 on the latent
layer), SGD with momentum (0.08, 0.9), batch 24, MSE. srm-jax runs one compiled epoch
(``train.train.train_epoch``: a ``lax.scan`` over the minibatches), and K models at once
(``train.train.ensemble_epoch``: that epoch ``jax.vmap``-ed over K seeds, what
``python -m train --seeds K`` runs); its rate is reported per model (K × steps / time). The
PyTorch loop is what a
straightforward user would write: the same layers, generalised tanh as
``tanh(relu(x B̂ᵀ)) B̂`` (exact for orthoplex bases, whose correction term N of Eqn. 14 is 0),
``zero_grad / backward / step`` per minibatch, on the CPU with PyTorch's default threads.
PyTorch is optional (``pip install -e ".[bench]"``); without it that row is skipped.
Inputs are random (throughput does not depend on their values).

    python -m benchmarks.training_benchmark [--quick] [--seeds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

BATCH = 24
IN_FEATURES = 784


def _inputs(num: int) -> np.ndarray:
    return np.random.default_rng(0).random((num, IN_FEATURES), dtype=np.float32)


def jax_steps_per_second(num_steps: int, repeats: int) -> float:
    import jax

    from train.configs import get_config
    from train.train import create_optimizer, create_train_state, make_train_epoch

    config = get_config("fig1")
    state, _ = create_train_state(config, IN_FEATURES, jax.random.key(0))
    tx = create_optimizer(config)
    epoch = make_train_epoch(state.graphdef, tx, config.batch_size)
    x = jax.device_put(_inputs(num_steps * config.batch_size))
    params, opt_state = state.params, state.opt_state
    key = jax.random.key(1)
    params, opt_state, losses = epoch(params, opt_state, state.rest, x, key)  # compile
    jax.block_until_ready(losses)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        params, opt_state, losses = epoch(params, opt_state, state.rest, x, key)
        jax.block_until_ready(losses)
        times.append(time.perf_counter() - start)
    return num_steps / statistics.median(times)


def jax_ensemble_steps_per_second(num_steps: int, repeats: int, num_seeds: int) -> float:
    """Per-model optimiser steps/s of ``num_seeds`` models trained at once (vmapped epoch)."""
    import jax
    import jax.numpy as jnp

    from train.configs import get_config
    from train.train import create_ensemble_state, create_optimizer, ensemble_epoch

    config = get_config("fig1")
    state, _ = create_ensemble_state(config, IN_FEATURES, list(range(num_seeds)))
    tx = create_optimizer(config)
    x = jax.device_put(_inputs(num_steps * config.batch_size))
    keys = jax.random.split(jax.random.key(1), num_seeds)
    alive = jnp.ones(num_seeds, bool)
    params, opt_state = state.params, state.opt_state

    def run(params, opt_state):
        return ensemble_epoch(params, opt_state, state.rest, alive, x, keys,
                              graphdef=state.graphdef, tx=tx, batch_size=config.batch_size)

    params, opt_state, losses, _ = run(params, opt_state)  # compile
    jax.block_until_ready(losses)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        params, opt_state, losses, _ = run(params, opt_state)
        jax.block_until_ready(losses)
        times.append(time.perf_counter() - start)
    return num_seeds * num_steps / statistics.median(times)


def torch_steps_per_second(num_steps: int, repeats: int) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    from train.configs import get_config

    config = get_config("fig1")
    widths = [IN_FEATURES, *config.hidden_widths, config.latent_dim]

    def orthoplex(n: int) -> torch.Tensor:
        q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(n)))
        return torch.cat([q, -q])  # (2n, n), unit rows, no positive-cosine pair: N = 0

    class GeneralisedTanh(torch.nn.Module):
        def __init__(self, n: int):
            super().__init__()
            self.register_buffer("basis", orthoplex(n))

        def forward(self, x):
            return torch.tanh(torch.relu(x @ self.basis.T)) @ self.basis

    class Autoencoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            layers = []
            for a, b in zip(widths[:-1], widths[1:], strict=True):
                layers += [torch.nn.Linear(a, b), GeneralisedTanh(b)]
            self.encoder = torch.nn.Sequential(*layers[:-1])  # small: latent z is affine
            back = widths[::-1]
            layers = [GeneralisedTanh(back[0])]
            for a, b in zip(back[:-1], back[1:], strict=True):
                layers += [torch.nn.Linear(a, b), GeneralisedTanh(b)]
            self.decoder = torch.nn.Sequential(*layers[:-1])  # linear output layer

        def forward(self, x):
            return self.decoder(self.encoder(x))

    torch.manual_seed(0)
    model = Autoencoder()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.xavier_normal_(module.weight)
            torch.nn.init.zeros_(module.bias)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate,
                                momentum=config.momentum)
    x = torch.from_numpy(_inputs(num_steps * BATCH))

    def epoch():
        order = torch.randperm(x.shape[0])
        for i in range(num_steps):
            batch = x[order[i * BATCH : (i + 1) * BATCH]]
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(batch), batch)
            loss.backward()
            optimizer.step()

    epoch()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - start)
    return num_steps / statistics.median(times)


def _child(which: str, num_steps: int, repeats: int, num_seeds: int = 1) -> float | None:
    """Steps per second measured in a fresh interpreter (JAX's and PyTorch's thread pools would
    otherwise compete: PyTorch measured after JAX in one process runs ~2x slower)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.training_benchmark", "--child", which,
         "--steps", str(num_steps), "--repeats", str(repeats), "--seeds", str(num_seeds)],
        capture_output=True, text=True, cwd=root, env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"training benchmark child failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["steps_per_second"]


def table(quick: bool = False, num_seeds: int = 8) -> list[str]:
    num_steps, repeats = (200, 2) if quick else (2000, 5)
    torch_rate = _child("torch", num_steps, repeats)
    jax_rate = _child("jax", num_steps, repeats)
    ensemble_rate = _child("ensemble", num_steps // 2 if not quick else num_steps, repeats,
                           num_seeds)
    lines = [
        "Training throughput, Fig. 1 small autoencoder (d=784, hidden 128, n=24, m=48 "
        f"orthoplex; batch {BATCH}; {num_steps} steps per epoch, median of {repeats} epochs):",
        "",
        "| implementation | optimiser steps / s | speed-up |",
        "|---|---|---|",
        f"| srm-jax, one model (one compiled epoch) | {jax_rate:,.0f} | "
        f"{'—' if torch_rate is None else f'{jax_rate / torch_rate:.1f}×'} |",
        f"| srm-jax, {num_seeds} models at once (vmapped epoch), per model | "
        f"{ensemble_rate:,.0f} | "
        f"{'—' if torch_rate is None else f'{ensemble_rate / torch_rate:.1f}×'} |",
    ]
    if torch_rate is None:
        lines.append("| PyTorch CPU loop | skipped: PyTorch not installed "
                     "(`pip install -e \".[bench]\"`) | — |")
    else:
        import torch

        lines.append(f"| PyTorch {torch.__version__} CPU loop (default threads) | "
                     f"{torch_rate:,.0f} | 1× |")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", choices=("jax", "ensemble", "torch"))
    parser.add_argument("--seeds", type=int, default=8, help="models trained at once")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.child:
        if args.child == "ensemble":
            rate = jax_ensemble_steps_per_second(args.steps, args.repeats, args.seeds)
        elif args.child == "jax":
            rate = jax_steps_per_second(args.steps, args.repeats)
        else:
            rate = torch_steps_per_second(args.steps, args.repeats)
        print(json.dumps({"steps_per_second": rate}))
    else:
        print("\n".join(table(args.quick, args.seeds)))


if __name__ == "__main__":
    main()
