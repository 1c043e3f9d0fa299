"""TensorFlow computations of the method: training steps, encoding, rollouts.

Everything here works on channels-last arrays and a :class:`Networks` bundle;
the estimators (``_base.py``) own the data layouts, loops and bookkeeping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from skmld.nn import LatentStepper
from skmld.nn.losses import edge_boosting_mae, normalized_mse, reconstruction_sse
from skmld.nn.optimizers import FusedAdam

# The networks by name: "<kind>/<field>" for each field, and one coupled pair.
VAE = ("encoder", "decoder")
DECOUPLED = ("decoupled_mean", "decoupled_log_var")
PART_KINDS = VAE + DECOUPLED
COUPLED = ("coupled_mean", "coupled_log_var")


def network_names(kinds, fields) -> list:
    """``"<kind>/<field>"`` for every field and kind, field by field."""
    return [f"{k}/{f}" for f in fields for k in kinds]


def limit_threads() -> None:
    """Size TensorFlow's CPU thread pools by ``OMP_NUM_THREADS`` when it is set and TensorFlow has not started.

    joblib's loky workers (``GridSearchCV(n_jobs=k)``, ``cross_val_score``) set
    ``OMP_NUM_THREADS`` to their share of the cores, but TensorFlow sizes its
    pools by the machine's cores: without this, k workers would each run as
    many threads as there are cores. ``TF_NUM_INTRAOP_THREADS`` wins when set.
    Called before the first TensorFlow op of a fit, a prediction or an unpickling.
    """
    n = os.environ.get("OMP_NUM_THREADS", "")
    if not n.isdigit() or int(n) < 1 or "TF_NUM_INTRAOP_THREADS" in os.environ:
        return
    threading = tf.config.threading
    if threading.get_intra_op_parallelism_threads() == int(n):
        return
    try:
        threading.set_intra_op_parallelism_threads(int(n))
        threading.set_inter_op_parallelism_threads(min(int(n), 2))
    except RuntimeError:  # TensorFlow already started: its pools are fixed for this process
        pass


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

    def compiled(self, name: str, example, jit: bool = False):
        """``encode``/``decode`` as a cached ``tf.function`` for inputs of ``example``'s grid, any batch size.

        Traced once per grid: the decoders' up-sampling needs the grid at trace
        time, and TensorFlow's shape relaxation would, after two grids, trace one
        with no grid at all (which fails) and count every retrace against the
        "excessive retracing" warning.
        """
        spec = tf.TensorSpec((None,) + tuple(example.shape[1:]), example.dtype)
        cache = self.__dict__.setdefault("_compiled", {})
        if (name, jit, spec) not in cache:
            cache[name, jit, spec] = tf.function(getattr(self, name), input_signature=[spec], jit_compile=jit)
        return cache[name, jit, spec]

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


def draw(z_mean, z_log_var, batch: dict, global_batch: int, call: int):
    """Reparameterised latent sample ``z̄ + exp(zσ/2)·ε`` keyed by the element's place in its global batch.

    ``ε`` is drawn for the whole global batch from the batch's ``key`` and the
    rows at ``pos`` are kept, so a batch split across replicas draws exactly the
    noise it would draw on one device. ``call`` tells apart the draws of one step.
    """
    key = tf.reduce_max(batch["key"], axis=0)  # the same on every row; safe on an empty replica batch
    shape = tf.concat([[global_batch], tf.shape(z_mean)[1:]], 0)
    eps = tf.random.stateless_normal(shape, tf.random.experimental.stateless_fold_in(key, call), dtype=z_mean.dtype)
    return z_mean + ops.exp(0.5 * z_log_var) * tf.gather(eps, batch["pos"])


def _batch_mean(per_sample, batch: dict):
    """Sum over this replica's rows divided by the global batch's size: replica sums add up to the mean."""
    count = tf.maximum(tf.reduce_max(batch["count"]), 1)
    return ops.sum(per_sample) / tf.cast(count, per_sample.dtype)


def _compile(losses, optimizer, variables, strategy, spec, jit: bool, chunk: int | None, names):
    """``(train_step, eval_step)``: loss terms of a distributed batch summed over replicas, and of a plain batch.

    ``spec`` holds the element specs of the distributed and of the plain dataset.
    ``chunk``: back-propagate a batch ``chunk`` rows at a time (see :func:`_chunked`);
    ``names``: the loss terms that ``losses`` returns.

    The loss and its gradients are one XLA cluster with ``jit``; the update runs
    outside it because a distributed optimizer synchronises replicas there.
    """

    def gradients(batch):
        with tf.GradientTape() as tape:
            terms = losses(batch, True)
            loss = optimizer.scale_loss(terms["loss"]) if hasattr(optimizer, "scale_loss") else terms["loss"]
        return terms, tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def evaluate(batch):
        return losses(batch, False)

    if jit:
        gradients, evaluate = tf.function(gradients, jit_compile=True), tf.function(evaluate, jit_compile=True)
    if chunk is not None:
        gradients = _chunked(gradients, chunk, variables, names)

    def replica_train(batch):
        terms, grads = gradients(batch)
        optimizer.apply(grads, variables)
        return terms

    # One trace for every batch size and epoch. No autograph: the losses have no tensor-dependent
    # Python control flow, and converting them cost a quarter of a tiny fit (docs/performance.md).
    @tf.function(input_signature=[spec[0]], autograph=False)
    def train_step(batch):
        terms = strategy.run(replica_train, (batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in terms.items()}

    # Validation runs on one device, with the same numbers on every worker.
    return train_step, tf.function(evaluate, input_signature=[spec[1]], autograph=False)


def _chunked(gradients, chunk: int, variables, names):
    """``gradients`` of a batch computed ``chunk`` rows at a time and summed: the same terms and gradients.

    Every loss term is a sum over rows divided by the global batch's ``count``,
    and the noise of a row is keyed by its ``pos``, so the chunks' terms and
    gradients add up to the whole batch's. The sums start from zeros (``names``:
    the loss terms) and the chunks run one after another in one loop
    (``parallel_iterations=1``): only one chunk's activations are alive at a
    time, which bounds the memory of back-propagating through the decoders.
    """

    def run(batch):
        def body(start, terms, grads):
            t, g = gradients({k: v[start : start + chunk] for k, v in batch.items()})
            return start + chunk, {k: terms[k] + t[k] for k in terms}, [a + b for a, b in zip(grads, g)]

        zeros = ({k: tf.zeros([], tf.float32) for k in names}, [tf.zeros_like(v) for v in variables])
        n = tf.shape(batch["pos"])[0]
        _, terms, grads = tf.while_loop(lambda start, *_: start < n, body, (tf.constant(0), *zeros),
                                        parallel_iterations=1)
        return terms, grads

    return run


def vae_term_names(fields, latent_channels: int) -> tuple:
    """Names of the VAE stage's loss terms: totals, then each field's, then the KL of each latent channel."""
    per_field = tuple(f"{t}_{f}" for f in fields for t in ("reconstruction", "kl", "edge", "mse"))
    channels = tuple(f"kl_{f}_c{k}" for f in fields for k in range(latent_channels))
    return ("reconstruction", "kl", "edge", "loss") + per_field + channels


# Floor of the calibrated pixel variance, on [0, 1]-scaled fields: an RMSE below
# 1e-3 of a field's range earns no larger weight.
MIN_PIXEL_VARIANCE = 1e-6


def make_vae_step(nets: Networks, weights: dict, optimizer, variables, global_batch: int, strategy, spec,
                  jit: bool, chunk: int | None = None, loss: str = "sse"):
    """VAE steps on batches ``{"x": (B, H, W, F), pos, count, key}`` (see :mod:`skmld._data`) of type ``spec``.

    Returns ``(train_step, eval_step)``; both map a batch to the batch means of the
    loss terms (:func:`vae_term_names`: totals; per field, also the pixel MSE;
    the KL of each latent channel).

    ``loss`` is the reconstruction term of each field:

    - ``"sse"``: the summed squared error, the negative log-likelihood of a
      Gaussian decoder of fixed pixel variance 1/2 (up to a constant);
    - ``"calibrated"``: the Gaussian negative log-likelihood with the pixel
      variance of each field at its optimum, the batch's MSE: ``D/2 · log(MSE +
      1e-6)`` per frame of ``D`` pixels, up to a constant (a calibrated decoder,
      Rybkin et al. 2021). The weight of the reconstruction against the KL is
      ``1 / 2·MSE``: it grows as the reconstruction improves, so no field is
      left at its mean because its variations are small on the [0, 1] scale,
      and the balance does not depend on how a field was scaled. The MSE is
      that of the rows a gradient is computed on: with ``chunk`` or several
      replicas, of each chunk or replica (the step is then not exactly the
      whole batch's).

    ``chunk``: rows back-propagated at once (``None``: the whole batch).
    """
    names = vae_term_names(nets.fields, nets.latent_channels)

    def losses(batch, training):
        x = batch["x"]
        terms = dict.fromkeys(names, 0.0)
        pixels = tf.cast(tf.shape(x)[1] * tf.shape(x)[2], tf.float32)
        for i, (f, enc, dec) in enumerate(zip(nets.fields, nets.per_field("encoder"), nets.per_field("decoder"))):
            xi = x[..., i : i + 1]
            z_mean, z_log_var = enc(xi, training=training)
            x_hat = dec(draw(z_mean, z_log_var, batch, global_batch, i), training=training)
            sse = reconstruction_sse(xi, x_hat)
            if loss == "calibrated":
                sq = ops.square(ops.cast(xi, "float32") - ops.cast(x_hat, "float32"))
                # Divided by at least 1: a replica's part of the last batch may be empty.
                local_mse = ops.sum(sq) / tf.cast(tf.maximum(tf.size(sq), 1), tf.float32)
                rec = 0.5 * pixels * ops.log(local_mse + MIN_PIXEL_VARIANCE) * _share(batch)
            else:
                rec = _batch_mean(sse, batch)
            kl_c = kl_per_channel(z_mean, z_log_var)  # (B, C)
            for k in range(nets.latent_channels):
                terms[f"kl_{f}_c{k}"] = _batch_mean(kl_c[:, k], batch)
            field_terms = {"reconstruction": rec, "kl": _batch_mean(ops.sum(kl_c, axis=1), batch),
                           "edge": _batch_mean(edge_boosting_mae(xi, x_hat), batch),
                           "mse": _batch_mean(sse, batch) / pixels}
            for t, val in field_terms.items():
                terms[f"{t}_{f}"] = val
                if t != "mse":
                    terms[t] += val
        terms["loss"] = (
            weights["reconstruction"] * terms["reconstruction"]
            + weights["kl"] * terms["kl"]
            + weights["edge"] * terms["edge"]
        )
        return terms

    return _compile(losses, optimizer, variables, strategy, spec, jit, chunk, names)


def _share(batch):
    """This replica's (or chunk's) rows over the global batch: its terms add up to the batch's."""
    count = tf.cast(tf.maximum(tf.reduce_max(batch["count"]), 1), tf.float32)
    return tf.cast(tf.shape(batch["pos"])[0], tf.float32) / count


def kl_per_channel(z_mean, z_log_var):
    """KL of each latent channel, summed over latent pixels: ``(B, C)``."""
    kl = -0.5 * (1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
    return ops.sum(kl, axis=(1, 2))


def make_dynamics_step(
    nets: Networks,
    *,
    horizon: int,
    time_ratio: int,
    coupled: bool,
    train_decoupled: bool,
    train_coupled: bool,
    weights: dict,
    optimizer,
    variables,
    global_batch: int,
    strategy,
    spec,
    jit: bool,
    chunk: int | None = None,
    field_weights=None,
):
    """Curriculum steps of the latent dynamics at one horizon.

    A batch holds windows ``{"z_mean", "z_log_var": (B, horizon + 1, h, w, F*C),
    "x": (B, horizon, H, W, F), pos, count, key}`` (of type ``spec``): the cached
    encodings of the window and the fields of its predicted steps (see :mod:`skmld._data`).

    Loss = latent consistency of the rolled-out mean and log-variance with the
    encoded trajectory (normalised MSE) + reconstruction MSE of the fields
    decoded (frozen decoders) from sampled latents, each field's MSE times its
    entry of ``field_weights`` (``None``: all 1). Only predicted steps are
    decoded: the initial frame's reconstruction feeds no loss. ``chunk``: rows
    back-propagated at once (``None``: the whole batch).
    """
    stepper = nets.stepper(coupled=coupled)
    c, n_fields = nets.latent_channels, len(nets.fields)
    field_weights = tf.constant(np.ones(n_fields) if field_weights is None else field_weights, tf.float32)

    def losses(batch, training):
        zm_true, zv_true, x_true = batch["z_mean"], batch["z_log_var"], batch["x"]
        zm, zv = zm_true[:, 0], zv_true[:, 0]
        lat_m, lat_v, draws = 0.0, 0.0, []
        for s in range(horizon):
            for _ in range(time_ratio):
                zm, zv = stepper(
                    zm, zv, train_decoupled=training and train_decoupled, train_coupled=training and train_coupled
                )
            for f in range(n_fields):
                sl = slice(f * c, (f + 1) * c)
                lat_m += _batch_mean(normalized_mse(zm_true[:, s + 1, ..., sl], zm[..., sl]), batch)
                lat_v += _batch_mean(normalized_mse(zv_true[:, s + 1, ..., sl], zv[..., sl]), batch)
            draws.append(draw(zm, zv, batch, global_batch, s))
        # Decode all predicted steps in one batched call per field.
        x_hat = nets.decode(ops.concatenate(draws, axis=0))  # (k*B, H, W, F), step-major
        x_ref = ops.concatenate([x_true[:, s] for s in range(horizon)], axis=0)
        # Per window: squared error averaged over pixels, summed over fields and steps.
        # Each field's MSE over its variance (``field_weights``): every field counts as much as its
        # structure, not as its spread on the [0, 1] scale (pressure's would dwarf temperature's).
        per_row = ops.sum(ops.mean(ops.square(ops.cast(x_ref, "float32") - ops.cast(x_hat, "float32")),
                                   axis=(1, 2)) * field_weights, axis=-1)
        recon = _batch_mean(per_row, batch)
        terms = {"latent_mean": lat_m, "latent_log_var": lat_v, "multistep": recon}
        terms["loss"] = (
            weights["latent_mean"] * lat_m + weights["latent_log_var"] * lat_v + weights["multistep"] * recon
        )
        return terms

    return _compile(losses, optimizer, variables, strategy, spec, jit, chunk,
                    ("latent_mean", "latent_log_var", "multistep", "loss"))


def batches(n: int, size: int):
    """Slices covering ``range(n)`` in chunks of ``size``."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def encode_all(nets: Networks, x: np.ndarray, batch_size: int, jit: bool = False):
    """Encode every frame of ``x`` ``(N, T, H, W, F)`` with the latent means and log-variances.

    Frames are gathered a batch at a time: reshaping a non-contiguous ``x`` (a
    transposed view of the user's data) to ``(N * T, ...)`` would copy all of it.
    """
    N, T = x.shape[:2]
    zm = zv = None
    for sl in batches(N * T, batch_size):
        frame = np.arange(sl.start, sl.stop)
        block = tf.constant(x[frame // T, frame % T])
        m, v = (o.numpy() for o in nets.compiled("encode", block, jit)(block))
        if zm is None:
            zm, zv = np.empty((N * T,) + m.shape[1:], m.dtype), np.empty((N * T,) + v.shape[1:], v.dtype)
        zm[sl], zv[sl] = m, v
    return zm.reshape((N, T) + zm.shape[1:]), zv.reshape((N, T) + zv.shape[1:])


def decode_all(nets: Networks, z: np.ndarray, batch_size: int, jit: bool = False) -> np.ndarray:
    """Decode latents ``(N, T, h, w, F*C)`` into fields ``(N, T, H, W, F)``."""
    N, T = z.shape[:2]
    flat = z.reshape((N * T,) + z.shape[2:])
    fn = nets.compiled("decode", flat, jit)
    out = np.concatenate([fn(tf.constant(flat[sl])).numpy() for sl in batches(N * T, batch_size)])
    return out.reshape((N, T) + out.shape[1:])
