"""TensorFlow computations of the method: training steps, encoding, rollouts.

Everything here works on channels-last arrays and a :class:`Networks` bundle;
the estimators (``_base.py``) own the data layouts, loops and bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from skmld.nn import LatentStepper, Sampling
from skmld.nn.optimizers import FusedAdam
from skmld.nn.losses import edge_boosting_mae, kl_divergence, normalized_mse, reconstruction_sse

PART_KINDS = ("encoder", "decoder", "decoupled_mean", "decoupled_log_var")
COUPLED = ("coupled_mean", "coupled_log_var")


@dataclass
class Networks:
    """All networks of a latent dynamics model, looked up by name.

    ``models`` maps ``"encoder/<field>"``, ``"decoder/<field>"``,
    ``"decoupled_mean/<field>"``, ``"decoupled_log_var/<field>"``,
    ``"coupled_mean"`` and ``"coupled_log_var"`` to Keras models.
    """

    models: dict
    fields: list
    latent_channels: int

    def compiled(self, name: str, jit: bool = False):
        """``encode``/``decode`` as a cached ``tf.function`` (traced once per input shape)."""
        cache = self.__dict__.setdefault("_compiled", {})
        if (name, jit) not in cache:
            cache[name, jit] = tf.function(getattr(self, name), jit_compile=jit, reduce_retracing=True)
        return cache[name, jit]

    def per_field(self, kind: str) -> list:
        return [self.models[f"{kind}/{f}"] for f in self.fields]

    def stepper(self, coupled: bool = True) -> LatentStepper:
        return LatentStepper(
            self.per_field("decoupled_mean"),
            self.per_field("decoupled_log_var"),
            self.models["coupled_mean"] if coupled else None,
            self.models["coupled_log_var"] if coupled else None,
            self.latent_channels,
        )

    def variables(self, names) -> list:
        return [v for name in names for v in self.models[name].trainable_variables]

    def encode(self, x, training: bool = False):
        """``(B, H, W, F) -> (z_mean, z_log_var)``, each ``(B, h, w, F*C)``."""
        outs = [enc(x[..., i : i + 1], training=training) for i, enc in enumerate(self.per_field("encoder"))]
        return ops.concatenate([o[0] for o in outs], -1), ops.concatenate([o[1] for o in outs], -1)

    def decode(self, z, training: bool = False):
        """``(B, h, w, F*C) -> (B, H, W, F)``."""
        c = self.latent_channels
        return ops.concatenate(
            [dec(z[..., i * c : (i + 1) * c], training=training) for i, dec in enumerate(self.per_field("decoder"))],
            -1,
        )


def make_optimizer(learning_rate: float, precision: str):
    """Adam with the paper's betas (fused kernel); loss scaling for float16."""
    opt = FusedAdam(learning_rate=learning_rate, beta_1=0.5, beta_2=0.99)
    if precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def _apply(optimizer, tape, loss, variables):
    scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
    grads = tape.gradient(scaled, variables)
    optimizer.apply(grads, variables)


def make_vae_step(nets: Networks, frames: tf.Tensor, weights: dict, optimizer, variables, sampler: Sampling,
                  jit: bool):
    """Compiled VAE step on frames ``(N*T, H, W, F)``, indexed by a batch of frame indices.

    Returns ``(train_step, eval_step)``; both map an index batch to per-term batch means.
    """

    def losses(idx, training):
        x = tf.gather(frames, idx)
        terms = {"reconstruction": 0.0, "kl": 0.0, "edge": 0.0}
        for i, (enc, dec) in enumerate(zip(nets.per_field("encoder"), nets.per_field("decoder"))):
            xi = x[..., i : i + 1]
            z_mean, z_log_var = enc(xi, training=training)
            x_hat = dec(sampler(z_mean, z_log_var), training=training)
            terms["reconstruction"] += ops.mean(reconstruction_sse(xi, x_hat))
            terms["kl"] += ops.mean(kl_divergence(z_mean, z_log_var))
            terms["edge"] += ops.mean(edge_boosting_mae(xi, x_hat))
        terms["loss"] = (
            weights["reconstruction"] * terms["reconstruction"]
            + weights["kl"] * terms["kl"]
            + weights["edge"] * terms["edge"]
        )
        return terms

    spec = [tf.TensorSpec([None], tf.int32)]  # any batch size, one trace

    @tf.function(jit_compile=jit, input_signature=spec)
    def train_step(idx):
        with tf.GradientTape() as tape:
            terms = losses(idx, True)
        _apply(optimizer, tape, terms["loss"], variables)
        return terms

    @tf.function(jit_compile=jit, input_signature=spec)
    def eval_step(idx):
        return losses(idx, False)

    return train_step, eval_step


def make_dynamics_step(
    nets: Networks,
    data: tuple,
    *,
    horizon: int,
    time_ratio: int,
    coupled: bool,
    train_decoupled: bool,
    train_coupled: bool,
    weights: dict,
    optimizer,
    variables,
    sampler: Sampling,
    jit: bool,
):
    """Compiled curriculum step of the latent dynamics at one horizon.

    ``data = (z_mean, z_log_var, x)`` with shapes ``(N, T, h, w, F*C)`` and
    ``(N, T, H, W, F)``: the cached encodings and the fields. A batch is a pair
    of index vectors ``(n, t0)``; windows ``t0 .. t0 + horizon`` are gathered
    inside the step, never materialised.

    Loss = latent consistency of the rolled-out mean and log-variance with the
    encoded trajectory (normalised MSE) + reconstruction MSE of the fields
    decoded (frozen decoders) from sampled latents. Only predicted steps are
    decoded: the initial frame's reconstruction feeds no loss.
    """
    z_mean_all, z_log_var_all, x_all = data
    stepper = nets.stepper(coupled=coupled)
    c, n_fields = nets.latent_channels, len(nets.fields)

    def losses(n, t0, training):
        steps = tf.range(horizon + 1)
        idx = tf.stack([tf.repeat(n[:, None], horizon + 1, axis=1), t0[:, None] + steps[None]], axis=-1)
        zm_true = tf.gather_nd(z_mean_all, idx)  # (B, k+1, h, w, FC)
        zv_true = tf.gather_nd(z_log_var_all, idx)
        x_true = tf.gather_nd(x_all, idx[:, 1:])  # (B, k, H, W, F)
        zm, zv = zm_true[:, 0], zv_true[:, 0]
        lat_m, lat_v, draws = 0.0, 0.0, []
        for s in range(horizon):
            for _ in range(time_ratio):
                zm, zv = stepper(
                    zm, zv, train_decoupled=training and train_decoupled, train_coupled=training and train_coupled
                )
            for f in range(n_fields):
                sl = slice(f * c, (f + 1) * c)
                lat_m += ops.mean(normalized_mse(zm_true[:, s + 1, ..., sl], zm[..., sl]))
                lat_v += ops.mean(normalized_mse(zv_true[:, s + 1, ..., sl], zv[..., sl]))
            draws.append(sampler(zm, zv))
        # Decode all predicted steps in one batched call per field.
        z = ops.concatenate(draws, axis=0)  # (k*B, h, w, FC), step-major
        x_hat = nets.decode(z)
        x_ref = ops.concatenate([x_true[:, s] for s in range(horizon)], axis=0)
        recon = ops.sum(ops.mean(ops.square(x_ref - x_hat), axis=(0, 1, 2))) * horizon
        terms = {"latent_mean": lat_m, "latent_log_var": lat_v, "multistep": recon}
        terms["loss"] = (
            weights["latent_mean"] * lat_m + weights["latent_log_var"] * lat_v + weights["multistep"] * recon
        )
        return terms

    spec = [tf.TensorSpec([None], tf.int32)] * 2  # any batch size, one trace

    @tf.function(jit_compile=jit, input_signature=spec)
    def train_step(n, t0):
        with tf.GradientTape() as tape:
            terms = losses(n, t0, True)
        _apply(optimizer, tape, terms["loss"], variables)
        return terms

    @tf.function(jit_compile=jit, input_signature=spec)
    def eval_step(n, t0):
        return losses(n, t0, False)

    return train_step, eval_step


def make_rollout(nets: Networks, time_ratio: int, jit: bool):
    """One compiled function: encode the initial frames, step, decode every step.

    ``rollout(x0, n_steps, n_draws, seed)`` returns ``(mean, std, z_mean, z_log_var)``
    with fields ``(B, n_steps + 1, H, W, F)``; ``mean`` decodes the latent means,
    ``std`` is the standard deviation of ``n_draws`` decoded latent samples
    (zeros when ``n_draws == 0``).
    """
    stepper = nets.stepper()

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def rollout(x0, n_steps, n_draws, seed):
        zm, zv = nets.encode(x0)
        means = tf.TensorArray(tf.float32, size=n_steps + 1)
        stds = tf.TensorArray(tf.float32, size=n_steps + 1)
        zms = tf.TensorArray(tf.float32, size=n_steps + 1)
        zvs = tf.TensorArray(tf.float32, size=n_steps + 1)
        for s in tf.range(n_steps + 1):
            if s > 0:
                for _ in range(time_ratio):
                    zm, zv = stepper(zm, zv)
            mean = tf.cast(nets.decode(zm), tf.float32)
            total = tf.zeros_like(mean)
            total_sq = tf.zeros_like(mean)
            for d in tf.range(n_draws):
                eps = tf.random.stateless_normal(tf.shape(zm), seed=tf.stack([seed, s * n_draws + d]))
                draw = tf.cast(nets.decode(zm + tf.exp(0.5 * zv) * eps), tf.float32)
                total += draw
                total_sq += tf.square(draw)
            k = tf.cast(tf.maximum(n_draws, 1), tf.float32)
            var = tf.maximum(total_sq / k - tf.square(total / k), 0.0)
            means = means.write(s, mean)
            stds = stds.write(s, tf.sqrt(var))
            zms = zms.write(s, zm)
            zvs = zvs.write(s, zv)

        def stack(ta):
            return tf.transpose(ta.stack(), tf.concat([[1, 0], tf.range(2, 5)], 0))

        return stack(means), stack(stds), stack(zms), stack(zvs)

    return rollout


def batches(n: int, size: int):
    """Slices covering ``range(n)`` in chunks of ``size``."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def encode_all(nets: Networks, x: np.ndarray, batch_size: int, jit: bool = False):
    """Encode every frame of ``x`` ``(N, T, H, W, F)`` with the latent means and log-variances."""
    N, T = x.shape[:2]
    flat = x.reshape((N * T,) + x.shape[2:])
    fn = nets.compiled("encode", jit)
    outs = [fn(tf.constant(flat[sl])) for sl in batches(N * T, batch_size)]
    zm = np.concatenate([o[0].numpy() for o in outs])
    zv = np.concatenate([o[1].numpy() for o in outs])
    return zm.reshape((N, T) + zm.shape[1:]), zv.reshape((N, T) + zv.shape[1:])


def decode_all(nets: Networks, z: np.ndarray, batch_size: int, jit: bool = False) -> np.ndarray:
    """Decode latents ``(N, T, h, w, F*C)`` into fields ``(N, T, H, W, F)``."""
    N, T = z.shape[:2]
    flat = z.reshape((N * T,) + z.shape[2:])
    fn = nets.compiled("decode", jit)
    out = np.concatenate([fn(tf.constant(flat[sl])).numpy() for sl in batches(N * T, batch_size)])
    return out.reshape((N, T) + out.shape[1:])
