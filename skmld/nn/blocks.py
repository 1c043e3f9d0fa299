"""Convolutional building blocks shared by the VAE and the latent evolution networks."""

import keras
from keras import layers

LEAK = 0.2


@keras.saving.register_keras_serializable(package="skmld")
def leaky_relu(x):
    """LeakyReLU with slope 0.2, as a registered function.

    Given as a Conv2D ``activation`` so the backend can fuse it into the convolution,
    and registered (not a lambda) so ``.keras`` files load in safe mode.
    """
    return keras.activations.leaky_relu(x, negative_slope=LEAK)


def conv_unit(x, filters: int, kernel_size: int = 3, *, dtype=None):
    """A k×k convolution then a 1×1 convolution, each followed by LeakyReLU(0.2)."""
    x = layers.Conv2D(filters, kernel_size, padding="same", activation=leaky_relu, dtype=dtype)(x)
    return layers.Conv2D(filters, 1, padding="same", activation=leaky_relu, dtype=dtype)(x)


def conv_stack(x, filters: int, reps: int, kernel_size: int = 3, *, dtype=None):
    """``reps`` conv units of the same width."""
    for _ in range(reps):
        x = conv_unit(x, filters, kernel_size, dtype=dtype)
    return x
