"""Loss terms of the method, per sample (reduce over the batch outside).

All take ``(y_true, y_pred)``-like tensors in channels-last layout and return a
tensor of shape ``(B,)``.
"""

from keras import ops


def reconstruction_sse(x, x_hat):
    """Sum over pixels and channels of the squared error."""
    return ops.sum(ops.square(x - x_hat), axis=(1, 2, 3))


def kl_divergence(z_mean, z_log_var):
    """KL(N(z_mean, exp(z_log_var)) || N(0, 1)), summed over latent pixels and channels."""
    kl = -0.5 * (1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
    return ops.sum(kl, axis=(1, 2, 3))


def edge_weight(x):
    """Image-gradient magnitude of ``x`` min–max normalised per sample to [0, 1].

    Forward differences with a zero last row/column, as ``tf.image.image_gradients``.
    """
    dy = ops.pad(x[:, 1:] - x[:, :-1], ((0, 0), (0, 1), (0, 0), (0, 0)))
    dx = ops.pad(x[:, :, 1:] - x[:, :, :-1], ((0, 0), (0, 0), (0, 1), (0, 0)))
    g = ops.sqrt(ops.square(dy) + ops.square(dx))
    g_min = ops.min(g, axis=(1, 2, 3), keepdims=True)
    g_max = ops.max(g, axis=(1, 2, 3), keepdims=True)
    return (g - g_min) / (g_max - g_min + 1e-5)


def edge_boosting_mae(x, x_hat):
    """Sum over pixels of the absolute error weighted by the target's edge map.

    Boosts the loss on shock fronts and pore boundaries, where a plain MSE blurs.
    """
    w = ops.stop_gradient(edge_weight(x))
    return ops.sum(ops.abs(w * (x - x_hat)), axis=(1, 2, 3))


def state_norm(z):
    """Per-sample mean over pixels of the channel-wise L2 norm, shape ``(B, 1, 1, 1)``."""
    norm = ops.sqrt(ops.sum(ops.square(z), axis=-1, keepdims=True))
    return ops.mean(norm, axis=(1, 2), keepdims=True)


def normalized_mse(z_true, z_pred, eps: float = 1e-6):
    """Mean squared error after dividing both by the target's :func:`state_norm` (+ eps).

    Makes the latent consistency term independent of the latent's overall scale.
    """
    scale = ops.stop_gradient(state_norm(z_true)) + eps
    return ops.mean(ops.square((z_pred - z_true) / scale), axis=(1, 2, 3))
