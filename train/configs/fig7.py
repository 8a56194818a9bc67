"""Preset ``fig7`` (paper Fig. 7, App. B.4)."""

from train.configs.default import Config


def get_config() -> Config:
    """The ``fig7`` preset (math §9)."""
    return Config(
        preset="fig7",
        description=(
            "Fig. 7 (App. B.4): small CIFAR autoencoder with simplex bases, n=24, m=25, eps=0.8, "
            "combination-SRM (the paper finds anti-alignment)."
        ),
        size="small",
        latent_dim=24,
        num_basis=25,
        basis_kind="simplex",
        hidden_basis_kind="simplex",
        epsilon=0.8,
        paper_dataset="cifar10",
        claim="anti-aligned",
    )
