"""Latent evolution networks: the maps z_t -> z_{t+1} of the latent dynamics.

A U-Net (default) and a ResNet-16 variant, both fully convolutional so they run
on micro latents and on whole meso-domain latents alike.
"""

import keras
from keras import layers

from skmld.nn.blocks import conv_stack, conv_unit

DYNAMICS = ("unet", "resnet")


def build_unet(
    in_channels: int, out_channels: int, filters: int = 64, dropout: float = 0.1, *, dtype=None, name: str = "unet"
) -> keras.Model:
    """U-Net with 3 resolution levels (2 halvings), 3 conv units per level and skips.

    Dropout on the input regularises the autoregressive map against its own
    prediction errors. The head is linear (latents are signed and unbounded) and
    zero-initialised.
    Spatial sides must be multiples of 4.
    """
    inputs = keras.Input(shape=(None, None, in_channels), name=f"{name}_input")
    x = layers.Dropout(dropout, dtype=dtype)(inputs)
    skip1 = conv_stack(x, filters, 3, dtype=dtype)
    skip2 = conv_stack(layers.MaxPooling2D(2, dtype=dtype)(skip1), 2 * filters, 3, dtype=dtype)
    x = conv_stack(layers.MaxPooling2D(2, dtype=dtype)(skip2), 4 * filters, 3, dtype=dtype)
    for skip, width in ((skip2, 2 * filters), (skip1, filters)):
        x = layers.UpSampling2D(2, interpolation="bilinear", dtype=dtype)(x)
        x = layers.Concatenate(dtype=dtype)([x, skip])
        x = conv_stack(x, width, 3, dtype=dtype)
    x = conv_unit(x, filters, 1, dtype=dtype)
    outputs = _delta_head(x, out_channels)
    return keras.Model(inputs, outputs, name=name)


def _delta_head(x, out_channels: int):
    # Zero-initialised: an untrained map predicts no change, so a fresh network is
    # exact persistence and the coupled stage starts from the decoupled solution.
    return layers.Conv2D(out_channels, 1, dtype="float32", kernel_initializer="zeros", name="delta")(x)


def _bottleneck(x, width: int, out_channels: int, *, dtype=None):
    """Residual bottleneck unit: 1×1 (width) → 3×3 (width) → 1×1 (out), projected shortcut."""
    shortcut = layers.Conv2D(out_channels, 1, dtype=dtype)(x)
    y = layers.Conv2D(width, 1, activation="relu", dtype=dtype)(x)
    y = layers.Conv2D(width, 3, padding="same", activation="relu", dtype=dtype)(y)
    y = layers.Conv2D(out_channels, 1, dtype=dtype)(y)
    return layers.ReLU(dtype=dtype)(layers.Add(dtype=dtype)([shortcut, y]))


def build_resnet(
    in_channels: int, out_channels: int, filters: int = 64, dropout: float = 0.1, *, dtype=None, name: str = "resnet"
) -> keras.Model:
    """ResNet-16 variant: four bottleneck units of widths f, 2f, 2f, 4f at full resolution.

    Each unit expands to 4× its width (the last one to ``out_channels``); a
    linear 1×1 convolution gives the output.
    """
    inputs = keras.Input(shape=(None, None, in_channels), name=f"{name}_input")
    x = layers.Dropout(dropout, dtype=dtype)(inputs)
    widths = (filters, 2 * filters, 2 * filters, 4 * filters)
    for i, width in enumerate(widths):
        x = _bottleneck(x, width, out_channels if i == len(widths) - 1 else 4 * width, dtype=dtype)
    outputs = _delta_head(x, out_channels)
    return keras.Model(inputs, outputs, name=name)


def build_dynamics(kind: str, in_channels: int, out_channels: int, filters: int = 64, dropout: float = 0.1, **kwargs):
    """Build a latent evolution network by name: ``"unet"`` or ``"resnet"``."""
    builders = {"unet": build_unet, "resnet": build_resnet}
    if kind not in builders:
        raise ValueError(f"Unknown dynamics network {kind!r}; expected one of {sorted(builders)}.")
    return builders[kind](in_channels, out_channels, filters, dropout, **kwargs)
