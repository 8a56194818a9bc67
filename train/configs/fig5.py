"""Preset ``fig5`` (paper Fig. 5, App. B.3)."""

from train.configs.default import Config


def get_config() -> Config:
    """The ``fig5`` preset (math §9)."""
    return Config(
        preset="fig5",
        description=(
            "Fig. 5 (App. B.3): large CIFAR autoencoder, n=10, m=20, eps=0.8, combination-SRM."
        ),
        size="large",
        latent_dim=10,
        num_basis=20,
        basis_kind="orthoplex",
        epsilon=0.8,
        hidden_widths=(256, 128),
        paper_dataset="cifar10",
    )
