"""The paper's autoencoder experiments (math §9), laid out like the Flax examples.

* :mod:`train.configs` — one config per preset (fig1, fig2, fig5–fig9, isotropic);
* :mod:`train.input_pipeline` — mnist5k, digits, and MNIST / CIFAR-10 through TFDS;
* :mod:`train.models` — the small and large reconstruction autoencoders (Flax NNX);
* :mod:`train.state` — the train state of one model or of a seed ensemble;
* :mod:`train.train` — the epoch and ensemble steps, the training loop in stages;
* :mod:`train.checkpoints` — save, restore, ``load_run`` and the compatibility of a resumed run;
* :mod:`train.run_files` — ``config.json``, ``metrics.jsonl`` and the measurement files;
* :mod:`train.guard` — the non-finite guard (frozen seeds, a stopped run);
* :mod:`train.measure` — SRM of the latent layer, the alignment score and the schedule;
* :mod:`train.summary` — ``summary.json``: aggregation over seeds, the claims and their verdicts;
* :mod:`train.cli` — the start shared by ``python -m train`` and ``python -m train.study``;
* :mod:`train.plots` — the paper-style SRM ensemble figures;
* :mod:`train.study` — variants × seeds with the paired isotropic control (a reproduction study).

Run ``python -m train fig1 --dataset mnist5k --epochs 10 --out runs/fig1``; ``--seeds 8`` trains
eight seeds at once; ``python -m train.study fig1 --seeds 8 --vary bias_init=zero,torch``
compares variants against the isotropic control (docs/reproduction.md).
"""
