"""Preset ``isotropic`` (isotropic control, App. G and the position paper)."""

from train.configs.default import Config


def get_config() -> Config:
    """The ``isotropic`` preset (math §9)."""
    return Config(
        preset="isotropic",
        description=(
            "Isotropic control (position paper; App. G): the Fig. 1 small autoencoder with "
            "isotropic tanh in every layer; SRM measured against a randomly rotated orthoplex "
            "reference basis (n=24, m=48, eps=0.9) that no layer uses."
        ),
        size="small",
        activation="isotropic_tanh",
        latent_dim=24,
        num_basis=48,
        basis_kind="orthoplex",
        epsilon=0.9,
        paper_dataset="mnist",
        claim="none",
    )
