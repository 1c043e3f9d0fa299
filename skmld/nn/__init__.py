"""Keras 3 networks of skmld: tensors in, tensors out (no scikit-learn, no xarray)."""

from skmld.nn.dynamics import build_dynamics, build_resnet, build_unet
from skmld.nn.latent import LatentStepper
from skmld.nn.losses import (
    edge_boosting_mae,
    kl_divergence,
    normalized_mse,
    reconstruction_sse,
)
from skmld.nn.vae import build_decoder, build_encoder

__all__ = [
    "LatentStepper",
    "build_decoder",
    "build_dynamics",
    "build_encoder",
    "build_resnet",
    "build_unet",
    "edge_boosting_mae",
    "kl_divergence",
    "normalized_mse",
    "reconstruction_sse",
]
