"""The training loop of the latent dynamics estimators, in steps that can be called or overridden alone.

:class:`Trainer` runs an estimator's stages on its networks, split the way
skorch splits ``fit_loop`` / ``run_single_epoch`` / ``train_step``: :meth:`~Trainer.fit`
loops over the stages, :meth:`~Trainer.run_stage` over a stage's horizons,
:meth:`~Trainer.run_horizon` over the epochs of one horizon and
:meth:`~Trainer.run_epoch` over the batches of one epoch; optimizers, training
steps, data sets, validation, divergence handling and checkpoints each have
their own method. The estimator keeps its parameters and its fitted
attributes (``history_``, ``reconstruction_rmse_ratio_``); the trainer reads
the one and writes the other.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import warnings

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from skmld import _checkpoint, _data, _engine
from skmld.exceptions import DivergenceError

logger = logging.getLogger("skmld")

__all__ = ["Trainer"]


class Trainer:
    """Trains the networks of a latent dynamics estimator, stage by stage.

    Parameters
    ----------
    estimator : LatentDynamicsEstimator
        The estimator being fitted, with its networks built (``_networks``)
        and ``history_`` started. Its parameters say how to train; the
        trainer appends to ``history_`` and sets ``reconstruction_rmse_ratio_``.

    Attributes
    ----------
    resume : dict or None
        The checkpoint this fit resumes from (see :mod:`skmld._checkpoint`).
    fingerprint : str or None
        Hash of the parameters and data, with a ``checkpoint_dir``.
    """

    #: Roll-backs of one horizon with ``on_divergence="restore"`` before giving up.
    max_restores = 3
    #: A field whose VAE reconstruction is not clearly better than its mean is not learnt.
    collapse_ratio = 0.8

    def __init__(self, estimator):
        self.estimator = estimator
        self.resume = None
        self.fingerprint = None

    # -- loops ------------------------------------------------------------------------
    def fit(self, x, train_rows, val_rows, horizons, seed):
        """Run the stages on ``x`` ``(N, T, H, W, F)``, training on ``train_rows``, validating on ``val_rows``.

        ``val_rows`` is ``None`` without validation; ``seed`` seeds every epoch.
        """
        est = self.estimator
        if est.checkpoint_dir is not None:
            self.restore(x, train_rows)
        cache = _data.LatentCache(est.cache, _data.is_lazy(x))
        latents = None  # encodings of x, refreshed after a VAE stage
        try:
            for index, stage in enumerate(est._stages()):
                if self.resume is not None and index < self.resume["position"][0]:
                    continue  # finished before the checkpoint
                if stage.is_vae:
                    self.run_stage(index, stage, {"x": x}, train_rows, val_rows, seed)
                    self.check_reconstruction(x, val_rows if val_rows is not None else train_rows)
                    latents = None
                    continue
                if latents is None:
                    # Encode once per stage with the frozen encoders; train on the cache.
                    latents = cache.encode(self.encode, x, f"stage{index}")
                sources = {"z_mean": latents[0], "z_log_var": latents[1], "x": x}
                self.run_stage(index, stage, sources, train_rows, val_rows, seed)
            if latents is None:  # the last VAE changed, or a resumed fit skipped every dynamics stage
                latents = cache.encode(self.encode, x, "final")
            est.latent_range_ = latent_range(latents[0], train_rows)
        finally:
            cache.close()

    def run_stage(self, index, stage, sources, train_rows, val_rows, seed):
        """Run the horizons of ``stage`` (the ``index``-th) that the checkpoint has not done yet."""
        for h_index, (horizon, epochs) in enumerate(zip(stage.horizons, stage.epochs)):
            done = self.resume["position"] if self.resume is not None else None
            if done is not None and (index, h_index) < tuple(done[:2]):
                continue
            first_epoch = done[2] + 1 if done is not None and (index, h_index) == tuple(done[:2]) else 0
            if epochs == 0 or first_epoch >= epochs:
                continue
            self.run_horizon(index, stage, h_index, sources, train_rows, val_rows, seed, first_epoch)

    def run_horizon(self, index, stage, h_index, sources, train_rows, val_rows, seed, first_epoch=0):
        """Epochs ``first_epoch, ...`` of horizon ``stage.horizons[h_index]``, with one optimizer."""
        est = self.estimator
        horizon, epochs = stage.horizons[h_index], stage.epochs[h_index]
        variables = est._networks.variables(stage.trainable)
        lr = self.resume["lr"] if first_epoch else est.learning_rate
        optimizer = self.make_optimizer(lr, variables)
        if first_epoch:
            self.restore_optimizer(optimizer)
        data = self.windows(stage, horizon, sources)
        train_step, eval_step = self.make_steps(stage, horizon, optimizer, variables, data, train_rows)
        bar = tqdm(total=epochs, initial=first_epoch, desc=f"{stage.name} h={horizon}" if horizon else stage.name,
                   unit="epoch", disable=not est.verbose, leave=True)
        restores = 0
        epoch = first_epoch
        while epoch < epochs:
            # Shuffling and latent noise are seeded per epoch, so a resumed fit
            # replays exactly what an uninterrupted one would have done.
            rng = np.random.default_rng((seed + 1000 * (index + 1), horizon, epoch))
            epoch_seed = int(rng.integers(2**31 - 1))
            snapshot = [v.numpy() for v in variables]
            terms = self.train_epoch(stage, train_step, self.dataset(data, train_rows, rng, epoch_seed))
            bad = next((k for k, v in terms.items() if not math.isfinite(v)), None)
            if bad is not None:
                for v, w in zip(variables, snapshot):
                    v.assign(w)
                if est.on_divergence != "restore" or restores >= self.max_restores:
                    raise DivergenceError(stage.name, horizon, epoch, bad, terms[bad])
                restores += 1
                lr /= 2
                optimizer = self.on_divergence(stage, horizon, epoch, bad, lr, variables)
                train_step, eval_step = self.make_steps(stage, horizon, optimizer, variables, data, train_rows)
                continue
            record = {"stage": stage.name, "horizon": horizon, "epoch": epoch, **terms}
            if val_rows is not None:
                record.update(self.validate(eval_step, data, val_rows))
            est.history_.append(record)
            logger.info("%s", record)
            if est.checkpoint_dir is not None:
                self.save_checkpoint((index, h_index, epoch), lr, optimizer)
            bar.update(1)
            bar.set_postfix(loss=f"{terms['loss']:.4g}")
            epoch += 1
        bar.close()

    def train_epoch(self, stage, step, batches) -> dict:
        """:meth:`run_epoch` of the training step, with XLA's bf16 limitation named."""
        est = self.estimator
        try:
            return self.run_epoch(step, batches)
        except tf.errors.InternalError as e:
            # XLA's CPU backend (TensorFlow 2.21) rejects the bf16 max-pool gradients of the
            # U-Nets; the step fails to compile before it changes any weight.
            if est.jit_compile and "mixed precision is disallowed" in str(e):
                raise ValueError(
                    f"jit_compile=True with precision={est.precision!r}: XLA cannot compile the "
                    f"{stage.name} training step on this device ({_xla_op(e)}). Use "
                    "jit_compile=False (TensorFlow runs bfloat16 without XLA) or precision='float32'."
                ) from e
            raise

    def run_epoch(self, step, batches) -> dict:
        """Mean of each loss term over the batches; sums stay on the device until the end."""
        totals, n = None, 0
        for batch in batches:
            out = step(batch)
            totals = out if totals is None else {k: totals[k] + out[k] for k in out}
            n += 1
        return {k: float(v) / n for k, v in totals.items()}

    def validate(self, eval_step, data, val_rows) -> dict:
        """The loss terms on the validation rows, as ``val_<term>``."""
        return {f"val_{k}": v for k, v in self.run_epoch(eval_step, self.dataset(data, val_rows,
                                                                                 distribute=False)).items()}

    def on_divergence(self, stage, horizon, epoch, term, lr, variables):
        """After a roll-back of the epoch (``on_divergence="restore"``): log, and a fresh optimizer at ``lr``."""
        logger.warning("%s h=%d epoch %d diverged (%s); retrying with learning rate %g",
                       stage.name, horizon, epoch, term, lr)
        return self.make_optimizer(lr, variables)

    # -- parts ---------------------------------------------------------------------------
    def make_optimizer(self, lr, variables):
        """A built optimizer for ``variables`` at learning rate ``lr``, in the strategy's scope."""
        with self.estimator._strategy().scope():
            optimizer = _engine.make_optimizer(lr, self.estimator.precision)
            optimizer.build(variables)
        return optimizer

    def windows(self, stage, horizon, sources) -> dict:
        """What a training element is made of: ``sources``, their windows and the span of time they cover."""
        if stage.is_vae:
            return {"sources": sources, "windows": {"x": _data.Window(0)}, "span": 1}
        windows = {"z_mean": _data.Window(0, horizon + 1), "z_log_var": _data.Window(0, horizon + 1),
                   "x": _data.Window(1, horizon)}
        return {"sources": sources, "windows": windows, "span": horizon + 1}

    def make_steps(self, stage, horizon, optimizer, variables, data, train_rows):
        """``(train_step, eval_step)`` of ``stage`` at ``horizon``, updating ``variables`` with ``optimizer``."""
        est = self.estimator
        chunk = est.gradient_chunk_size
        if chunk is not None and chunk >= est.batch_size:
            chunk = None  # every batch fits in one chunk: no loop
        spec = (self.dataset(data, train_rows).element_spec,
                self.dataset(data, train_rows, distribute=False).element_spec)
        if stage.is_vae:
            return _engine.make_vae_step(est._networks, est._weights(), optimizer, variables, est.batch_size,
                                         est._strategy(), spec, est.jit_compile, chunk, est.vae_loss)
        return _engine.make_dynamics_step(
            est._networks, horizon=horizon, time_ratio=est._time_ratio, coupled=stage.coupled,
            train_decoupled=stage.train_decoupled, train_coupled=stage.train_coupled,
            weights=est._weights(), optimizer=optimizer, variables=variables,
            global_batch=est.batch_size, strategy=est._strategy(), spec=spec, jit=est.jit_compile, chunk=chunk,
            field_weights=est._multistep_field_weights())

    def dataset(self, data, rows, rng=None, epoch_seed=0, distribute=True):
        """Batches of the ``rows`` of ``data`` (from :meth:`windows`), shuffled by ``rng``; per replica by default."""
        est = self.estimator

        def per_worker(context):
            local = context.num_replicas_in_sync // context.num_input_pipelines
            return _data.window_dataset(
                data["sources"], data["windows"], rows, data["span"], est.batch_size, rng=rng, seed=epoch_seed,
                replicas=(context.input_pipeline_id * local, local, context.num_replicas_in_sync))

        if not distribute:
            return per_worker(tf.distribute.InputContext())
        return est._strategy().distribute_datasets_from_function(per_worker)

    def encode(self, block):
        """Latent means and log-variances of ``block`` with the current encoders."""
        est = self.estimator
        return _engine.encode_all(est._networks, block, max(est.batch_size, 16), est.jit_compile)

    # -- checkpoints ------------------------------------------------------------------------
    def restore(self, x, train_rows) -> dict | None:
        """Load ``checkpoint_dir``'s checkpoint, if any, into the networks and ``history_``; sets :attr:`resume`.

        Refuses (``ValueError``) a checkpoint of another fit: other parameters,
        data, or backbone weights.
        """
        est = self.estimator
        self.fingerprint = _checkpoint.fingerprint(est.get_params(), x, train_rows)
        resume = _checkpoint.load(est.checkpoint_dir)
        if resume is not None:
            if resume["fingerprint"] != self.fingerprint:
                raise ValueError(
                    f"checkpoint_dir={str(est.checkpoint_dir)!r} holds a checkpoint of another fit (other "
                    "parameters or data); use another directory, or delete it to start afresh."
                )
            weights = _checkpoint.weight_names(est._own_models(est._networks))
            _checkpoint.assign(weights, resume["weights"], "network weights")
            est.history_ = resume["history"]
            logger.info("resuming after stage %d, horizon %d, epoch %d", *resume["position"])
        self.resume = resume
        return resume

    def restore_optimizer(self, optimizer) -> None:
        """Set ``optimizer``'s state to the checkpoint's (the horizon it was taken in)."""
        weights = _checkpoint.weight_names(self.estimator._own_models(self.estimator._networks))
        _checkpoint.assign(_checkpoint.optimizer_names(optimizer, weights), self.resume["optimizer"],
                           "optimizer variables")

    def save_checkpoint(self, position, lr, optimizer) -> None:
        """Write the checkpoint after the epoch at ``position`` ``(stage, horizon, epoch)``."""
        est = self.estimator
        _checkpoint.save(est.checkpoint_dir, position=position, lr=lr, history=est.history_,
                         fingerprint=self.fingerprint, models=est._own_models(est._networks), optimizer=optimizer)

    # -- after the VAE stage -------------------------------------------------------------
    def check_reconstruction(self, x, rows, max_frames: int = 128) -> None:
        """``reconstruction_rmse_ratio_``: per field, RMSE of decoding the latent means over the field's std.

        Measured on up to ``max_frames`` frames of ``rows`` (the validation
        samples when there are any). 0 is perfect, 1 is a constant field at
        the mean. A warning names every field above :attr:`collapse_ratio`.
        """
        est = self.estimator
        rng = np.random.default_rng(0)
        T, rows = x.shape[1], np.asarray(rows)
        frames = np.sort(rng.choice(len(rows) * T, size=min(max_frames, len(rows) * T), replace=False))
        size = max(est.batch_size, 16)
        # Per field, in float64: squared error, and sum and sum of squares about the first pixel's value
        # (a constant field gives exactly 0), accumulated a batch of frames at a time: memory bounded
        # by a batch, not by max_frames; each sample read once per batch.
        sse = total = squares = 0.0
        shift = None
        for sl in _engine.batches(len(frames), size):
            chosen = frames[sl]
            samples = {r: _data.load(x, int(rows[r]), int(rows[r]) + 1)[0] for r in np.unique(chosen // T)}
            block = np.stack([samples[r][t] for r, t in zip(chosen // T, chosen % T)]).astype(np.float32)
            with est._device_scope():
                zm, _ = _engine.encode_all(est._networks, block[:, None], size, est.jit_compile)
                rec = _engine.decode_all(est._networks, zm, size, est.jit_compile)[:, 0]
            shift = block[0, 0, 0].astype(np.float64) if shift is None else shift
            centred = block - shift
            sse = sse + np.square(rec - block, dtype=np.float64).sum(axis=(0, 1, 2))
            total = total + centred.sum(axis=(0, 1, 2))
            squares = squares + np.square(centred).sum(axis=(0, 1, 2))
        n = len(frames) * np.prod(x.shape[2:-1])
        rmse = np.sqrt(sse / n)
        std = np.sqrt(np.maximum(squares / n - (total / n) ** 2, 0.0))
        est.reconstruction_rmse_ratio_ = {f: float(r / s) if s > 0 else float(r > 0)
                                          for f, r, s in zip(est.fields_, rmse, std)}
        bad = {f: r for f, r in est.reconstruction_rmse_ratio_.items() if r > self.collapse_ratio}
        if bad:
            listed = ", ".join(f"{f!r} ({r:.2f})" for f, r in bad.items())
            warnings.warn(
                f"After the VAE stage, the reconstruction of {listed} is not clearly better than a constant "
                f"field at the mean (RMSE over the field's std in brackets; above {self.collapse_ratio} the VAE "
                "has learnt little of that field, and the dynamics cannot predict what it does not encode). "
                "Train the VAE longer (vae_epochs), use vae_loss='calibrated', or lower kl_weight; see the "
                "per-field terms in history_.",
                UserWarning, stacklevel=user_stacklevel(),
            )


def latent_range(z_mean, rows) -> np.ndarray:
    """``(2, channels)`` float64: each latent channel's minimum and maximum over ``z_mean[rows]`` (numpy or dask)."""
    z = z_mean[np.asarray(rows)]
    axes = tuple(range(z.ndim - 1))
    lo, hi = z.min(axis=axes), z.max(axis=axes)
    if _data.is_lazy(z):
        import dask

        lo, hi = dask.compute(lo, hi)
    return np.stack([np.asarray(lo, np.float64), np.asarray(hi, np.float64)])


def user_stacklevel() -> int:
    """``stacklevel`` for a warning issued by the caller: the first frame outside skmld and scikit-learn.

    The user's ``fit`` call, however deep the estimator's (or a Pipeline's) frames go.
    """
    import sklearn

    import skmld

    inside = (os.path.dirname(skmld.__file__) + os.sep, os.path.dirname(sklearn.__file__) + os.sep)
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


def _xla_op(error: Exception) -> str:
    """The op an XLA compilation error names (its message is a dump of the failing instruction)."""
    found = re.search(r'op_type="(\w+)"', str(error))
    return f"{found.group(1)}: mixed precision is disallowed" if found else "mixed precision is disallowed"
