"""Per-field variational auto-encoder: VGG-style encoder and mirrored decoder.

Both are fully convolutional (spatial dims ``None``), so a VAE trained on micro
tokens runs unchanged on a whole meso domain. The encoder halves the grid three
times (spatial /8).
"""

import keras
from keras import layers

from skmld.nn.blocks import conv_stack, leaky_relu

DOWNSAMPLING = 8
# Initial latent log-variance: the posterior starts nearly deterministic (σ ≈ 0.05),
# so the decoder first sees the encoder's signal instead of unit noise that it would
# learn to ignore (posterior collapse); the KL then widens it where it can afford to.
LOG_VAR_INIT = -6.0


def _standardize(mean, variance, invert: bool, name: str):
    # Fixed (not adapted) statistics: stored in the config, no trainable weights.
    return layers.Normalization(axis=-1, mean=[float(mean)], variance=[float(variance)], invert=invert,
                                dtype="float32", name=name)


def build_encoder(
    filters: int = 64, latent_channels: int = 4, kernel_size: int = 3, *, mean: float | None = None,
    variance: float | None = None, dtype=None, name: str = "encoder"
) -> keras.Model:
    """Encoder ``(B, H, W, 1) -> [z_mean, z_log_var]``, each ``(B, H/8, W/8, latent_channels)``.

    Widths filters, 2·, 4·, 8·filters with one, one, two and two conv units, a
    max-pool halving before each of the last three blocks. With ``mean`` and
    ``variance`` (the field's training statistics) the input is first
    standardised: a field that is 1 almost everywhere (microstructure) reaches
    the first LeakyReLU as a zero background with its pores as strong signals,
    instead of as a constant that the slope-0.2 side of the activation and the
    max-pools mostly flatten.
    """
    inputs = keras.Input(shape=(None, None, 1), name=f"{name}_input")
    x = inputs if mean is None else _standardize(mean, variance, False, "standardize")(inputs)
    x = conv_stack(x, filters, 1, kernel_size, dtype=dtype)
    for width, reps in ((2 * filters, 1), (4 * filters, 2), (8 * filters, 2)):
        x = layers.MaxPooling2D(2, dtype=dtype)(x)
        x = conv_stack(x, width, reps, kernel_size, dtype=dtype)
    # Heads in float32: they feed the KL term and the latent dynamics.
    z_mean = layers.Conv2D(latent_channels, 3, padding="same", dtype="float32", name="z_mean")(x)
    z_log_var = layers.Conv2D(latent_channels, 3, padding="same", dtype="float32", name="z_log_var",
                              bias_initializer=keras.initializers.Constant(LOG_VAR_INIT))(x)
    return keras.Model(inputs, [z_mean, z_log_var], name=name)


def build_decoder(
    filters: int = 64, latent_channels: int = 4, kernel_size: int = 3, *, mean: float | None = None,
    variance: float | None = None, dtype=None, name: str = "decoder"
) -> keras.Model:
    """Decoder ``(B, h, w, latent_channels) -> (B, 8h, 8w, 1)``, the encoder mirrored.

    Three bilinear upsamplings; widths 8·, 8·, 4·, 2·, 1·filters, then a 3×3
    convolution to one channel (no activation: scaled fields may leave [0, 1]).
    With ``mean`` and ``variance`` that output is un-standardised
    (``mean + √variance · out``), so a fresh decoder starts at the field's mean.
    """
    inputs = keras.Input(shape=(None, None, latent_channels), name=f"{name}_input")
    x = layers.Conv2D(8 * filters, 3, padding="same", activation=leaky_relu, dtype=dtype)(inputs)
    for width, reps in ((8 * filters, 2), (4 * filters, 1), (2 * filters, 1)):
        x = layers.UpSampling2D(2, interpolation="bilinear", dtype=dtype)(x)
        x = conv_stack(x, width, reps, kernel_size, dtype=dtype)
    x = conv_stack(x, filters, 1, kernel_size, dtype=dtype)
    outputs = layers.Conv2D(1, 3, padding="same", dtype="float32", name="field")(x)
    if mean is not None:
        outputs = _standardize(mean, variance, True, "unstandardize")(outputs)
    return keras.Model(inputs, outputs, name=name)
