"""Preset ``fig2`` (paper Fig. 2, App. B.1)."""

from train.configs.default import Config


def get_config() -> Config:
    """The ``fig2`` preset (math §9)."""
    return Config(
        preset="fig2",
        description=(
            "Fig. 2 (App. B.1): small MNIST autoencoder, n=10, m=20, eps=0.9; SRM on a random "
            "basis, the "
            "standard basis and the privileged basis of the one trained model."
        ),
        size="small",
        latent_dim=10,
        num_basis=20,
        basis_kind="orthoplex",
        epsilon=0.9,
        compare_bases=True,
        paper_dataset="mnist",
    )
