"""Shared machinery of the micro and meso latent dynamics estimators.

One base, two thin estimators: the subclasses say which networks they build or
borrow and which training stages they run; everything else (data layouts,
curriculum loop, history, divergence handling, predict/score/encode/decode,
pickling) lives here.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
import warnings
from dataclasses import dataclass
from numbers import Integral, Real

import keras
import numpy as np
import tensorflow as tf
import xarray as xr
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from skmld import _checkpoint, _data, _engine, _rollout
from skmld._layout import (
    Layout,
    from_blocks,
    from_domain,
    latents_from_xarray,
    latents_to_xarray,
    to_blocks,
    to_domain,
)
from skmld import _state
from skmld.exceptions import DivergenceError
from skmld.nn.vae import DOWNSAMPLING

logger = logging.getLogger("skmld")

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
_MAX_RESTORES = 3
# One rollout at a time in a process: TensorFlow parallelises inside it, and the
# rollout function called at once from several of dask's threads crashed
# TensorFlow 2.21 (segfault) while predictions were written chunk by chunk.
_ROLLOUT_LOCK = threading.Lock()


@dataclass
class Stage:
    """One training stage: which networks learn, with which step and epochs."""

    name: str
    trainable: list  # network names
    epochs: tuple  # per horizon (one entry for the VAE stage)
    horizons: tuple = (0,)
    coupled: bool = True
    train_decoupled: bool = False
    train_coupled: bool = False

    @property
    def is_vae(self) -> bool:
        return self.horizons == (0,)


def _per_horizon(epochs, horizons, name: str) -> tuple:
    """An int, or one entry per horizon."""
    if isinstance(epochs, Integral) and not isinstance(epochs, (bool, np.bool_)):
        return (int(epochs),) * len(horizons)
    epochs = tuple(epochs)
    bad = [e for e in epochs if isinstance(e, (bool, np.bool_)) or not isinstance(e, Integral) or e < 0]
    if bad:
        raise ValueError(f"{name} must be a non-negative int or one per horizon, got {bad[0]!r} in {epochs!r}.")
    epochs = tuple(int(e) for e in epochs)
    if len(epochs) != len(horizons):
        raise ValueError(
            f"{name} has {len(epochs)} entries but there are {len(horizons)} horizons {tuple(horizons)}; "
            "give one number of epochs per horizon, or a single int."
        )
    return epochs


def _serialize(model: keras.Model) -> dict:
    # Config + weights: pickle-friendly, and rebuilt through Keras's registry (no bytecode).
    return {"config": keras.saving.serialize_keras_object(model), "weights": model.get_weights()}


def _deserialize(state: dict) -> keras.Model:
    model = keras.saving.deserialize_keras_object(state["config"], safe_mode=True)
    model.set_weights(state["weights"])
    return model


def _locked(fn, *args):
    """``fn(*args)`` under :data:`_ROLLOUT_LOCK` (dask calls rollouts from its threads)."""
    with _ROLLOUT_LOCK:
        return fn(*args)


def _mean_or_std(estimator, x0, n_steps, n_draws, seed):
    """The mean rollout of ``x0`` (``n_draws == 0``) or the standard deviation of its trajectory ensemble."""
    return estimator._rollout_block(x0, n_steps, n_draws, seed)[1 if n_draws else 0]


class LatentDynamicsEstimator(_state.FittedState, BaseEstimator):
    """Base class; use :class:`~skmld.MicroDynamicsEstimator` or :class:`~skmld.MesoDynamicsEstimator`."""

    # Micro: every token is an independent building block. Meso: the whole domain.
    _whole_domain = False

    _parameter_constraints: dict = {
        "horizons": ["array-like"],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "gradient_chunk_size": [None, Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "vae_loss": [StrOptions({"sse", "calibrated"})],
        "multistep_normalization": [StrOptions({"variance", "none"})],
        "reconstruction_weight": [Interval(Real, 0, None, closed="left")],
        "kl_weight": [Interval(Real, 0, None, closed="left")],
        "edge_weight": [Interval(Real, 0, None, closed="left")],
        "latent_mean_weight": [Interval(Real, 0, None, closed="left")],
        "latent_log_var_weight": [Interval(Real, 0, None, closed="left")],
        "multistep_weight": [Interval(Real, 0, None, closed="left")],
        "on_divergence": [StrOptions({"raise", "restore"})],
        "device": [StrOptions({"auto", "cpu", "gpu"})],
        "precision": [StrOptions(set(PRECISIONS))],
        "jit_compile": ["boolean"],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
        "checkpoint_dir": [None, str, os.PathLike],
        "distribute": [None, tf.distribute.Strategy],
        "cache": [StrOptions({"auto", "memory", "disk"}), str, os.PathLike],
    }

    # -- subclass hooks -------------------------------------------------------
    def _make_networks(self, fields, ranges, token_shape, stats=None) -> _engine.Networks:
        raise NotImplementedError

    def _stages(self) -> list[Stage]:
        raise NotImplementedError

    def _check_compatible(self, layout) -> None:
        """Check fit input against what the networks were built for (meso: the backbone)."""

    @property
    def _time_ratio(self) -> int:
        return 1

    # -- helpers ----------------------------------------------------------------
    def _check_horizons(self) -> tuple:
        if not isinstance(self.horizons, (list, tuple, range, np.ndarray)):
            raise TypeError(f"horizons must be a list or tuple of positive ints, got {self.horizons!r}.")
        horizons = tuple(self.horizons)
        ints = all(isinstance(h, Integral) and not isinstance(h, (bool, np.bool_)) for h in horizons)
        if not horizons or not ints or any(h < 1 for h in horizons) or list(horizons) != sorted(set(horizons)):
            raise ValueError(
                f"horizons must be a non-empty increasing sequence of positive ints, got {self.horizons!r}."
            )
        return tuple(int(h) for h in horizons)

    # Parameters given as an int or one int per horizon (checked at the start of fit).
    _per_horizon_params: tuple = ()

    def _check_params(self) -> tuple:
        """What ``_parameter_constraints`` cannot say: no bools or infinities for numbers, epochs per horizon."""
        for name, constraints in self._parameter_constraints.items():
            value = getattr(self, name)
            if not any(isinstance(c, Interval) for c in constraints):
                continue
            if isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name} must be a number, not a bool; got {name}={value!r}.")
            if isinstance(value, Real) and not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {name}={value!r}.")
        horizons = self._check_horizons()
        for name in self._per_horizon_params:
            _per_horizon(getattr(self, name), horizons, name)
        if self.checkpoint_dir is not None and os.path.exists(self.checkpoint_dir) \
                and not os.path.isdir(self.checkpoint_dir):
            raise ValueError(f"checkpoint_dir={str(self.checkpoint_dir)!r} exists and is not a directory.")
        return horizons

    def _dtype(self):
        return None if self.precision == "float32" else self.precision

    def _strategy(self) -> tf.distribute.Strategy:
        return self.distribute if self.distribute is not None else tf.distribute.get_strategy()

    @contextlib.contextmanager
    def _device_scope(self):
        if self.distribute is not None:  # the strategy places the replicas
            yield
            return
        gpus = tf.config.list_logical_devices("GPU")
        if self.device == "gpu" and not gpus:
            raise ValueError("device='gpu' but TensorFlow sees no GPU; use device='auto' or 'cpu'.")
        name = "/GPU:0" if (self.device != "cpu" and gpus) else "/CPU:0"
        with tf.device(name):
            yield

    def _to_arrays(self, X, name="X", min_times=1):
        """Input → network arrays ``(N, T, H, W, F)`` (tokens as samples for micro) and layout."""
        values, layout = to_domain(X, name=name, min_times=min_times)
        if not self._whole_domain:
            values = to_blocks(values, layout.grid_shape)
        return values, layout

    def _from_arrays(self, values, layout):
        if not self._whole_domain:
            values = from_blocks(values, layout.grid_shape)
        return from_domain(values, layout)

    def _check_token_side(self, token_shape):
        factor = DOWNSAMPLING * (4 if self._dynamics_kind() == "unet" else 1)
        bad = [s for s in token_shape if s % factor]
        if bad:
            raise ValueError(
                f"Token shape {tuple(token_shape)} is not a multiple of {factor} (the VAE halves the grid 3 times"
                f"{' and the U-Net twice more' if factor > DOWNSAMPLING else ''}); "
                f"use PatchTokenizer(multiple_of={factor}) or a patch_size that is a multiple of {factor}."
            )

    def _dynamics_kind(self) -> str:
        return self.dynamics

    # -- fit ----------------------------------------------------------------------
    def _fit(self, X):
        _engine.limit_threads()
        horizons = self._check_params()
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(0, 2**31 - 1))
        keras.utils.set_random_seed(seed)

        x, layout = self._to_arrays(X, min_times=2)
        if not layout.tokens and not self._whole_domain:
            lo, hi = (float(v) for v in _compute(x.min(), x.max()))
            if lo < -0.5 or hi > 1.5:
                warnings.warn(
                    f"X holds plain fields with values in [{lo:.3g}, {hi:.3g}], far outside [0, 1]; the "
                    "networks expect scaled fields. Put a PatchTokenizer before this estimator.",
                    UserWarning,
                    stacklevel=3,
                )
        self._check_compatible(layout)
        T = x.shape[1]
        if T - 1 < max(horizons):
            raise ValueError(
                f"X has {T} time steps, too few for horizon {max(horizons)}: a window needs horizon + 1 "
                "steps. Lower the horizons or pass longer trajectories."
            )
        self._check_token_side(layout.domain_shape if self._whole_domain else layout.token_shape)
        self.fields_ = list(layout.fields)
        self.ranges_ = None if layout.ranges is None else {f: tuple(r) for f, r in zip(self.fields_, layout.ranges)}
        self.token_shape_ = self._fitted_token_shape(layout)
        self.bounds_ = None if layout.bounds is None else {
            f: tuple(None if np.isnan(b) else float(b) for b in pair) for f, pair in zip(self.fields_, layout.bounds)}
        self.__dict__.pop("_rollout_fn", None)
        self.latent_shape_ = (self.token_shape_[0] // DOWNSAMPLING, self.token_shape_[1] // DOWNSAMPLING,
                              self._latent_channels())
        self.history_ = []

        # Validation: whole samples held out (with all their tokens).
        per_sample = 1 if self._whole_domain else layout.grid_shape[0] * layout.grid_shape[1]
        n_samples = x.shape[0] // per_sample
        n_val = int(round(self.validation_fraction * n_samples))
        if self.validation_fraction > 0 and not 1 <= n_val < n_samples:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} holds out {n_val} of {n_samples} samples; "
                "it must leave at least one sample for training and one for validation."
            )
        order = rng.permutation(n_samples)
        val_samples, train_samples = order[:n_val], order[n_val:]

        def rows(samples):
            return np.sort((samples[:, None] * per_sample + np.arange(per_sample)).ravel())

        with self._device_scope(), self._strategy().scope():
            stats = self._field_stats(x, rows(train_samples))
            self.field_variance_ = {f: v for f, (_, v) in stats.items()}
            fresh = self._fresh_fields()
            self._networks = self._make_networks(self.fields_, self.ranges_, self.token_shape_,
                                                 {f: stats[f] for f in fresh})
            self._train(x, rows(train_samples), rows(val_samples) if n_val else None, horizons, seed)
        return self

    def _latent_channels(self) -> int:
        return self.latent_channels

    def _fresh_fields(self) -> list:
        """Fields whose VAE this fit builds from scratch (the meso estimator borrows its backbone's)."""
        return list(self.fields_)

    def _multistep_field_weights(self):
        """Weights of the fields' MSEs in the multi-step loss: one over each field's training variance."""
        if self.multistep_normalization == "none":
            return None
        return [1.0 / self.field_variance_[f] for f in self.fields_]

    def _field_stats(self, x, train_rows) -> dict:
        """Mean and variance of each field (scaled, as the networks see it) over the training rows."""
        total, total_sq, n = 0.0, 0.0, 0
        for sl in _engine.batches(len(train_rows), 32):
            block = np.asarray(_compute(x[train_rows[sl]])[0], np.float64)
            total = total + block.sum(axis=(0, 1, 2, 3))
            total_sq = total_sq + np.square(block).sum(axis=(0, 1, 2, 3))
            n += block[..., 0].size
        mean = total / n
        var = np.maximum(total_sq / n - mean**2, 0.0)
        # A constant field gets variance 1: standardising it must not divide by zero.
        return {f: (float(mean[i]), float(var[i]) if var[i] > 1e-12 else 1.0) for i, f in enumerate(self.fields_)}

    def _fitted_token_shape(self, layout) -> tuple:
        return tuple(layout.token_shape)

    def _check_token_shape(self, layout, token_shape, name: str, fitted_on: str) -> None:
        """Tokens must have ``token_shape``; plain whole-domain fields a whole number of them."""
        token_shape = tuple(token_shape)
        if layout.tokens or not self._whole_domain:
            if tuple(layout.token_shape) != token_shape:
                raise ValueError(
                    f"{name} has token shape {tuple(layout.token_shape)} but {fitted_on} has token shape "
                    f"{token_shape}; tokenize with PatchTokenizer(patch_size={token_shape})."
                )
        elif any(d % t for d, t in zip(layout.domain_shape, token_shape)):
            raise ValueError(
                f"{name} is a plain field grid of shape {layout.domain_shape}, not a whole number of "
                f"{fitted_on}'s tokens {token_shape}; pass it through PatchTokenizer(patch_size={token_shape}), "
                "which pads it."
            )

    def _weights(self) -> dict:
        return {
            "reconstruction": self.reconstruction_weight,
            "kl": self.kl_weight,
            "edge": self.edge_weight,
            "latent_mean": self.latent_mean_weight,
            "latent_log_var": self.latent_log_var_weight,
            "multistep": self.multistep_weight,
        }

    def _train(self, x, train_rows, val_rows, horizons, seed):
        """Run the stages on ``x`` ``(N, T, H, W, F)``, training on ``train_rows``, validating on ``val_rows``."""
        nets = self._networks
        resume = None
        if self.checkpoint_dir is not None:
            self._fingerprint = _checkpoint.fingerprint(self.get_params(), x, train_rows)
            resume = _checkpoint.load(self.checkpoint_dir)
            if resume is not None:
                if resume["fingerprint"] != self._fingerprint:
                    raise ValueError(
                        f"checkpoint_dir={str(self.checkpoint_dir)!r} holds a checkpoint of another fit (other "
                        "parameters or data); use another directory, or delete it to start afresh."
                    )
                own = self._own_models(nets)
                for name, weights in resume["weights"].items():
                    own[name].set_weights(weights)
                self.history_ = resume["history"]
                logger.info("resuming after stage %d, horizon %d, epoch %d", *resume["position"])
        cache = _data.LatentCache(self.cache, _data.is_lazy(x))
        latents = None  # encodings of x, refreshed after a VAE stage
        try:
            for index, stage in enumerate(self._stages()):
                if resume is not None and index < resume["position"][0]:
                    continue  # finished before the checkpoint
                if stage.is_vae:
                    self._run_stage(index, stage, {"x": x}, train_rows, val_rows, seed, resume)
                    self._check_reconstruction(x, val_rows if val_rows is not None else train_rows)
                    latents = None
                    continue
                if latents is None:
                    # Encode once per stage with the frozen encoders; train on the cache.
                    def encode_block(block):
                        return _engine.encode_all(nets, block, max(self.batch_size, 16), self.jit_compile)

                    latents = cache.encode(encode_block, x, f"stage{index}")
                sources = {"z_mean": latents[0], "z_log_var": latents[1], "x": x}
                self._run_stage(index, stage, sources, train_rows, val_rows, seed, resume)
        finally:
            cache.close()
        self.__dict__.pop("_fingerprint", None)

    # A field whose VAE reconstruction is not clearly better than its mean is not learnt.
    _COLLAPSE_RATIO = 0.8

    def _check_reconstruction(self, x, rows, max_frames: int = 128) -> None:
        """``reconstruction_rmse_ratio_``: per field, RMSE of decoding the latent means over the field's std.

        Measured on up to ``max_frames`` frames of ``rows`` (the validation
        samples when there are any). 0 is perfect, 1 is a constant field at
        the mean. A warning names every field above :attr:`_COLLAPSE_RATIO`.
        """
        rng = np.random.default_rng(0)
        T = x.shape[1]
        frames = np.sort(rng.choice(len(rows) * T, size=min(max_frames, len(rows) * T), replace=False))
        block = np.stack([_data.load(x, int(r), int(r) + 1)[0, t] for r, t in
                          zip(np.asarray(rows)[frames // T], frames % T)]).astype(np.float32)
        with self._device_scope():
            zm, _ = _engine.encode_all(self._networks, block[:, None], max(self.batch_size, 16), self.jit_compile)
            rec = _engine.decode_all(self._networks, zm, max(self.batch_size, 16), self.jit_compile)[:, 0]
        rmse = np.sqrt(np.mean((rec.astype(np.float64) - block) ** 2, axis=(0, 1, 2)))
        std = block.astype(np.float64).std(axis=(0, 1, 2))
        self.reconstruction_rmse_ratio_ = {f: float(r / s) if s > 0 else float(r > 0)
                                           for f, r, s in zip(self.fields_, rmse, std)}
        bad = {f: r for f, r in self.reconstruction_rmse_ratio_.items() if r > self._COLLAPSE_RATIO}
        if bad:
            listed = ", ".join(f"{f!r} ({r:.2f})" for f, r in bad.items())
            warnings.warn(
                f"After the VAE stage, the reconstruction of {listed} is not clearly better than a constant "
                f"field at the mean (RMSE over the field's std in brackets; above {self._COLLAPSE_RATIO} the VAE "
                "has learnt little of that field, and the dynamics cannot predict what it does not encode). "
                "Train the VAE longer (vae_epochs), use vae_loss='calibrated', or lower kl_weight; see the "
                "per-field terms in history_.",
                UserWarning, stacklevel=5,
            )

    def _run_stage(self, index: int, stage: Stage, sources: dict, train_rows, val_rows, seed, resume=None):
        nets = self._networks
        strategy = self._strategy()
        stage_seed = seed + 1000 * (index + 1)
        for h_index, (horizon, epochs) in enumerate(zip(stage.horizons, stage.epochs)):
            done = resume["position"] if resume is not None else None
            if done is not None and (index, h_index) < tuple(done[:2]):
                continue
            first_epoch = done[2] + 1 if done is not None and (index, h_index) == tuple(done[:2]) else 0
            if epochs == 0 or first_epoch >= epochs:
                continue
            variables = nets.variables(stage.trainable)
            lr = resume["lr"] if first_epoch else self.learning_rate

            def make_optimizer(lr):
                with strategy.scope():
                    optimizer = _engine.make_optimizer(lr, self.precision)
                    optimizer.build(variables)
                return optimizer

            optimizer = make_optimizer(lr)
            if first_epoch:
                for v, value in zip(optimizer.variables, resume["optimizer"]):
                    v.assign(value)
            if stage.is_vae:
                windows, span = {"x": _data.Window(0)}, 1
            else:
                windows = {"z_mean": _data.Window(0, horizon + 1), "z_log_var": _data.Window(0, horizon + 1),
                           "x": _data.Window(1, horizon)}
                span = horizon + 1

            chunk = self.gradient_chunk_size
            if chunk is not None and chunk >= self.batch_size:
                chunk = None  # every batch fits in one chunk: no loop

            def make(optimizer):
                spec = (dataset(train_rows).element_spec, dataset(train_rows, distribute=False).element_spec)
                if stage.is_vae:
                    return _engine.make_vae_step(nets, self._weights(), optimizer, variables, self.batch_size,
                                                 strategy, spec, self.jit_compile, chunk, self.vae_loss)
                return _engine.make_dynamics_step(
                    nets, horizon=horizon, time_ratio=self._time_ratio, coupled=stage.coupled,
                    train_decoupled=stage.train_decoupled, train_coupled=stage.train_coupled,
                    weights=self._weights(), optimizer=optimizer, variables=variables,
                    global_batch=self.batch_size, strategy=strategy, spec=spec, jit=self.jit_compile, chunk=chunk,
                    field_weights=self._multistep_field_weights())

            def dataset(rows, rng=None, epoch_seed=0, distribute=True):
                def per_worker(context):
                    local = context.num_replicas_in_sync // context.num_input_pipelines
                    return _data.window_dataset(
                        sources, windows, rows, span, self.batch_size, rng=rng, seed=epoch_seed,
                        replicas=(context.input_pipeline_id * local, local, context.num_replicas_in_sync))

                if not distribute:
                    return per_worker(tf.distribute.InputContext())
                return strategy.distribute_datasets_from_function(per_worker)

            train_step, eval_step = make(optimizer)
            bar = tqdm(total=epochs, initial=first_epoch, desc=f"{stage.name} h={horizon}" if horizon else stage.name,
                       unit="epoch", disable=not self.verbose, leave=True)
            restores = 0
            epoch = first_epoch
            while epoch < epochs:
                # Shuffling and latent noise are seeded per epoch, so a resumed fit
                # replays exactly what an uninterrupted one would have done.
                rng = np.random.default_rng((stage_seed, horizon, epoch))
                epoch_seed = int(rng.integers(2**31 - 1))
                snapshot = [v.numpy() for v in variables]
                try:
                    terms = _run_epoch(train_step, dataset(train_rows, rng, epoch_seed))
                except tf.errors.InternalError as e:
                    # XLA's CPU backend (TensorFlow 2.21) rejects the bf16 max-pool gradients of the
                    # U-Nets; the step fails to compile before it changes any weight.
                    if self.jit_compile and "mixed precision is disallowed" in str(e):
                        raise ValueError(
                            f"jit_compile=True with precision={self.precision!r}: XLA cannot compile the "
                            f"{stage.name} training step on this device ({_xla_op(e)}). Use "
                            "jit_compile=False (TensorFlow runs bfloat16 without XLA) or precision='float32'."
                        ) from e
                    raise
                bad = next((k for k, v in terms.items() if not math.isfinite(v)), None)
                if bad is not None:
                    for v, w in zip(variables, snapshot):
                        v.assign(w)
                    if self.on_divergence == "restore" and restores < _MAX_RESTORES:
                        restores += 1
                        lr /= 2
                        logger.warning("%s h=%d epoch %d diverged (%s); retrying with learning rate %g",
                                       stage.name, horizon, epoch, bad, lr)
                        optimizer = make_optimizer(lr)
                        train_step, eval_step = make(optimizer)
                        continue
                    raise DivergenceError(stage.name, horizon, epoch, bad, terms[bad])
                record = {"stage": stage.name, "horizon": horizon, "epoch": epoch, **terms}
                if val_rows is not None:
                    record.update({f"val_{k}": v for k, v in _run_epoch(eval_step, dataset(val_rows, distribute=False)).items()})
                self.history_.append(record)
                logger.info("%s", record)
                if self.checkpoint_dir is not None:
                    _checkpoint.save(self.checkpoint_dir, position=(index, h_index, epoch), lr=lr,
                                     history=self.history_, fingerprint=self._fingerprint,
                                     models=self._own_models(nets), optimizer=optimizer)
                bar.update(1)
                bar.set_postfix(loss=f"{terms['loss']:.4g}")
                epoch += 1
            bar.close()

    # -- predict side -----------------------------------------------------------
    def _check_predict_input(self, X, name="X"):
        check_is_fitted(self)
        x, layout = self._to_arrays(X, name=name)
        if layout.fields != self.fields_:
            missing = [f for f in self.fields_ if f not in layout.fields]
            extra = [f for f in layout.fields if f not in self.fields_]
            raise ValueError(
                f"{name} has fields {layout.fields} but {type(self).__name__} was fitted on {self.fields_} "
                f"(missing: {missing}, unexpected: {extra}); pass the same fields in the same order."
            )
        self._check_token_shape(layout, self.token_shape_, name, f"the fitted {type(self).__name__}")
        if self._whole_domain:
            self._check_token_side(layout.domain_shape)
        return x, layout

    def _rollout_rows(self, grid, n_draws: int = 0) -> int:
        """Rows rolled out at once: whole samples (all ``grid`` tokens), about ``max(batch_size, 8)`` rows.

        An ensemble of ``n_draws`` members counts each member as a row.
        """
        per_sample = 1 if self._whole_domain else int(np.prod(grid))
        return per_sample * max(1, max(self.batch_size, 8) // (per_sample * max(n_draws, 1)))

    def _compiled_rollout(self, kind: str):
        """The fitted model's compiled mean rollout or ensemble, traced once per fitted model."""
        fns = self.__dict__.setdefault("_rollout_fn", {})
        if kind not in fns:
            make = _rollout.make_rollout if kind == "mean" else _rollout.make_ensemble
            lower, upper = _rollout.scaled_bounds(self.bounds_, self.ranges_, self.fields_)
            fns[kind] = make(self._networks, self._time_ratio, self.jit_compile, lower, upper)
        return fns[kind]

    def _rollout_block(self, x0, n_steps, n_draws, seed, keep_draws=False):
        """Rollout from initial frames ``x0`` ``(B, H, W, F)``, as numpy arrays ``(B, n_steps + 1, ...)``.

        ``n_draws == 0``: ``(mean, None, z_mean, z_log_var)``, the latent means
        stepped and decoded. Otherwise ``(mean, std, draws)`` of a trajectory
        ensemble (see :func:`skmld._rollout.make_ensemble`); ``draws`` is
        ``None`` unless ``keep_draws``.
        """
        _engine.limit_threads()
        x0 = tf.constant(np.asarray(x0, np.float32))
        with self._device_scope():
            if n_draws == 0:
                mean, zm, zv = self._compiled_rollout("mean")(x0, tf.constant(n_steps))
                return mean.numpy(), None, zm.numpy(), zv.numpy()
            mean, std, draws = self._compiled_rollout("ensemble")(
                x0, tf.constant(n_steps), tf.constant(n_draws), tf.constant(seed), bool(keep_draws))
        return mean.numpy(), std.numpy(), draws.numpy() if keep_draws else None

    def _rollout(self, x, grid, n_steps, n_draws, seed):
        """Rollouts of ``x`` ``(N, T, H, W, F)`` from their first frames, ``(N, n_steps + 1, ...)`` each.

        ``n_draws == 0``: the mean rollout ``(mean, None)``; otherwise the mean
        rollout and the standard deviation of a trajectory ensemble, ``(mean, std)``.
        Lazy (dask) in, lazy out: each block of samples is rolled out when its
        result is computed, so predictions of a data set larger than memory can be
        written chunk by chunk (e.g. :func:`skmld.write_fields`).
        """
        # The mean is rolled out in the same blocks with or without an ensemble:
        # a convolution's float sums depend on the batch it runs in.
        kinds = [0, n_draws] if n_draws else [0]
        if not _data.is_lazy(x):
            out = [np.concatenate([_mean_or_std(self, x[sl, 0], n_steps, k, seed)
                                   for sl in _engine.batches(x.shape[0], self._rollout_rows(grid, k))])
                   for k in kinds]
            return out[0], out[1] if n_draws else None
        import dask
        import dask.array as da

        block = dask.delayed(lambda *args: _locked(_mean_or_std, self, *args), pure=True)
        out = []
        for k in kinds:
            _mean_or_std(self, np.zeros((1,) + x.shape[2:], np.float32), 1, k, seed)  # trace before threads
            out.append(da.concatenate([
                da.from_delayed(block(x[sl, 0], n_steps, k, seed),
                                (sl.stop - sl.start, n_steps + 1) + x.shape[2:], dtype=np.float32)
                for sl in _engine.batches(x.shape[0], self._rollout_rows(grid, k))]))
        return out[0], out[1] if n_draws else None

    def _check_rollout_args(self, x, n_steps, n_draws, need_draws: bool):
        n_steps = x.shape[1] - 1 if n_steps is None else n_steps
        if isinstance(n_steps, bool) or not isinstance(n_steps, Integral) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive int, got {n_steps!r}.")
        if need_draws and (isinstance(n_draws, bool) or not isinstance(n_draws, Integral) or n_draws < 2):
            raise ValueError(f"n_draws must be an int >= 2 to estimate a standard deviation, got {n_draws!r}.")
        return int(n_steps), int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    def predict(self, X, n_steps: int | None = None, return_std: bool = False, n_draws: int = 16):
        """Roll the model out from ``X``'s first time step.

        Parameters
        ----------
        X : xarray.DataArray or xarray.Dataset
            Tokens from :class:`~skmld.PatchTokenizer`, or plain (scaled) fields.
        n_steps : int, default=None
            Steps to predict; ``None`` means ``X``'s time length − 1. Longer
            rollouts extend the time coordinate with its spacing.
        return_std : bool, default=False
            Also return the standard deviation of a trajectory ensemble: ``n_draws``
            latent trajectories, each started from a draw of the initial latent
            posterior and carried through the dynamics with a draw of the
            predicted latent distribution at every step (see :meth:`predict_draws`),
            so the spread grows with the lead time as the errors of the dynamics do.
        n_draws : int, default=16
            Members of the ensemble when ``return_std``.

        Returns
        -------
        pred : same type and layout as ``X``
            Fields decoded from the rolled-out latent means, ``n_steps + 1`` times;
            the first is the model's reconstruction of ``X``'s first time step.
            Values are kept within the fields' bounds (``bounds_``).
        std : same type and layout as ``X``
            Only when ``return_std``.
        """
        x, layout = self._check_predict_input(X)
        n_steps, seed = self._check_rollout_args(x, n_steps, n_draws, return_std)
        mean, std = self._rollout(x, layout.grid_shape, n_steps, int(n_draws) if return_std else 0, seed)
        pred = self._from_arrays(mean, layout)
        return (pred, self._from_arrays(std, layout)) if return_std else pred

    def predict_draws(self, X, n_steps: int | None = None, n_draws: int = 16):
        """The members of the trajectory ensemble that :meth:`predict` summarises with ``return_std``.

        Parameters
        ----------
        X : xarray.DataArray or xarray.Dataset
            As for :meth:`predict`.
        n_steps : int, default=None
            As for :meth:`predict`.
        n_draws : int, default=16
            Members of the ensemble (at least 2).

        Returns
        -------
        draws : same type and layout as ``X``, with a leading ``draw`` dim
            Member ``d`` is one latent trajectory decoded, within the fields' bounds.
        """
        x, layout = self._check_predict_input(X)
        n_steps, seed = self._check_rollout_args(x, n_steps, n_draws, True)
        x = _data.load(x, 0, x.shape[0]) if _data.is_lazy(x) else x
        parts = [self._rollout_block(x[sl, 0], n_steps, int(n_draws), seed, keep_draws=True)[2]
                 for sl in _engine.batches(x.shape[0], self._rollout_rows(layout.grid_shape, n_draws))]
        draws = np.concatenate(parts)  # (N, D, T, H, W, F)
        members = [self._from_arrays(draws[:, d], layout) for d in range(draws.shape[1])]
        return xr.concat(members, dim="draw", coords="minimal", compat="override")

    def score(self, X, y=None) -> float:
        """Mean over fields of each field's R² of the rollout against ``X``.

        Each field's R² is taken over all samples, tokens, cells and the times
        after the first (see :meth:`score_per_field`); every field weighs the
        same, so a field the model ignores pulls the score down by its share
        instead of hiding behind the differences between the fields' means.
        1 is perfect; 0 is as good as predicting each field's mean; can be negative.
        """
        return float(np.mean(list(self.score_per_field(X).values())))

    def score_per_field(self, X) -> dict:
        """R² of the rollout of each field against ``X``, over samples, tokens, cells and times after the first.

        Returns
        -------
        dict
            Field name → R². On tokens it is taken over the padded token grid;
            without padding it equals the R² in physical units (the
            tokenizer's scaling is affine per field).
        """
        x, layout = self._check_predict_input(X)
        if x.shape[1] < 2:
            raise ValueError("score needs X with at least 2 time steps.")
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        # Streamed over blocks of samples; per field, sums of squares combined as in
        # Chan et al.'s parallel variance.
        n_fields = x.shape[-1]
        n, mean, ss_tot, ss_res = 0, np.zeros(n_fields), np.zeros(n_fields), np.zeros(n_fields)
        axes = (0, 1, 2, 3)
        for sl in _engine.batches(x.shape[0], self._rollout_rows(layout.grid_shape)):
            block = _data.load(x, sl.start, sl.stop)
            pred = self._rollout_block(block[:, 0], x.shape[1] - 1, 0, seed)[0][:, 1:]
            truth = block[:, 1:].astype(np.float64)
            ss_res += np.sum((truth - pred) ** 2, axis=axes)
            m, k = truth.mean(axis=axes), truth[..., 0].size
            ss_tot += np.sum((truth - m) ** 2, axis=axes) + (m - mean) ** 2 * n * k / (n + k)
            mean, n = mean + (m - mean) * k / (n + k), n + k
        if not (np.isfinite(ss_res).all() and np.isfinite(ss_tot).all()):
            raise ValueError("score: the rollout of X is not finite (NaN or inf); X's values are likely far "
                             "outside the range the model was fitted on (scale X as the training data).")
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), (ss_res == 0).astype(float))
        return {f: float(v) for f, v in zip(self.fields_, r2)}

    def encode(self, X):
        """Latent means and log-variances of every time step of ``X``.

        Returns
        -------
        xarray.Dataset
            ``z_mean`` and ``z_log_var`` on dims ``("sample", "time", "field",
            "channel", "token_y", "token_x", "latent_y", "latent_x")`` (no token
            dims for plain-field input).
        """
        x, layout = self._check_predict_input(X)
        with self._device_scope():
            zm, zv = _engine.encode_all(self._networks, x, max(self.batch_size, 16), self.jit_compile)
        if not self._whole_domain:
            zm, zv = from_blocks(zm, layout.grid_shape), from_blocks(zv, layout.grid_shape)
        return xr.Dataset({
            "z_mean": latents_to_xarray(zm, layout, self._latent_channels(), "z_mean"),
            "z_log_var": latents_to_xarray(zv, layout, self._latent_channels(), "z_log_var"),
        })

    def decode(self, Z):
        """Fields decoded from latent means (the output of :meth:`encode`, or its ``z_mean``).

        Returns tokens (with the fitted tokenizer's attrs) when ``Z`` has token
        dims, else a plain field DataArray.
        """
        check_is_fitted(self)
        if isinstance(Z, xr.Dataset) and "z_mean" not in Z.data_vars:
            raise ValueError(f"Z has no 'z_mean' variable (it has {list(Z.data_vars)}); pass the output of encode.")
        da = Z["z_mean"] if isinstance(Z, xr.Dataset) else Z
        if not isinstance(da, xr.DataArray):
            raise TypeError(f"Z must be the Dataset returned by encode or its z_mean DataArray, got {type(Z)}.")
        if "field" in da.coords and [str(f) for f in da["field"].values] != self.fields_:
            raise ValueError(f"Z has fields {list(da['field'].values)}, the model {self.fields_}.")
        z = latents_from_xarray(da, "Z")
        if "field" in da.dims and da.sizes["field"] != len(self.fields_):
            raise ValueError(f"Z has {da.sizes['field']} fields, the model {len(self.fields_)}: {self.fields_}.")
        tokens = "token_y" in da.dims
        grid = (da.sizes["token_y"], da.sizes["token_x"]) if tokens else (1, 1)
        if z.shape[-1] != len(self.fields_) * self._latent_channels():
            raise ValueError(f"Z has {z.shape[-1] // len(self.fields_)} channels per field, "
                             f"the model {self._latent_channels()}.")
        blocks = z if self._whole_domain else to_blocks(z, grid)
        with self._device_scope():
            x = _engine.decode_all(self._networks, blocks, max(self.batch_size, 16), self.jit_compile)
        if not self._whole_domain:
            x = from_blocks(x, grid)
        attrs = {}
        if tokens:
            attrs = {"skmld_fields": list(self.fields_), "skmld_token_shape": list(self.token_shape_),
                     "skmld_grid_shape": list(grid)}
            if self.ranges_ is not None:
                attrs["skmld_ranges"] = [list(self.ranges_[f]) for f in self.fields_]
        layout = Layout(tokens=tokens, fields=self.fields_, token_shape=self.token_shape_ if tokens else x.shape[2:4],
                        grid_shape=grid, sample=da["sample"], time=da["time"], attrs=attrs)
        return from_domain(x, layout)

    def save(self, path) -> None:
        """Write the fitted estimator to ``path`` in skmld's safe, pickle-free format.

        Read it back with :func:`skmld.load`; see :mod:`skmld.persistence`.
        """
        from skmld.persistence import save

        save(self, path)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "_networks")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        tags.target_tags.required = False
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = False
        tags.non_deterministic = False
        return tags

    # -- pickling ----------------------------------------------------------------
    # Parameters passed on as they are by clone: shared runtime objects, not settings to copy.
    _shared_params: tuple = ("distribute",)

    def __sklearn_clone__(self):
        params = self.get_params(deep=False)
        shared = {k: params.pop(k) for k in self._shared_params}
        return type(self)(**{k: clone(v, safe=False) for k, v in params.items()}, **shared)

    # -- fitted state, for pickle and skmld.persistence (see skmld._state) -----------
    _fitted_attrs: dict = {
        "fields_": ("a list of field names", _state.str_list),
        "ranges_": ("None or a dict of field -> (min, max)", lambda v: v is None or _state.ranges(v)),
        "bounds_": ("None or a dict of field -> (min or None, max or None)", lambda v: v is None or _state.bounds(v)),
        "token_shape_": ("a pair of ints", _state.int_tuple(2)),
        "latent_shape_": ("a triple of ints", _state.int_tuple(3)),
        "history_": ("a list of dicts of loss terms", _state.history),
    }
    _runtime_attrs: tuple = ("_networks", "_rollout_fn", "_fingerprint")
    _runtime_params: tuple = _shared_params  # a strategy belongs to the process that made it

    def __setstate__(self, state):
        _engine.limit_threads()  # before the networks are rebuilt
        super().__setstate__(state)

    def _network_state(self) -> dict | None:
        nets = self.__dict__.get("_networks")
        if nets is None:
            return None
        return {"fields": list(nets.fields), "latent_channels": int(nets.latent_channels),
                "models": self._own_models(nets)}

    def _set_network_state(self, state: dict) -> None:
        self._networks = self._restore_networks(state["models"], list(state["fields"]), state["latent_channels"])

    def _network_names(self) -> list:
        return [f"{kind}/{f}" for f in self.fields_ for kind in _engine.PART_KINDS] + list(_engine.COUPLED)

    def _own_models(self, nets) -> dict:
        """The models this estimator owns (the meso estimator borrows the rest)."""
        return {name: nets.models[name] for name in self._network_names()}

    def _restore_networks(self, models, fields, latent_channels):
        return _engine.Networks(models, fields, latent_channels)


def _compute(*arrays):
    """numpy values of numpy or dask arrays (dask ones in one pass)."""
    if any(_data.is_lazy(a) for a in arrays):
        import dask

        return dask.compute(*arrays)
    return arrays


def _xla_op(error: Exception) -> str:
    """The op an XLA compilation error names (its message is a dump of the failing instruction)."""
    found = re.search(r'op_type="(\w+)"', str(error))
    return f"{found.group(1)}: mixed precision is disallowed" if found else "mixed precision is disallowed"


def _run_epoch(step, batches) -> dict:
    """Mean of each loss term over the batches; sums stay on the device until the end."""
    totals, n = None, 0
    for batch in batches:
        out = step(batch)
        totals = out if totals is None else {k: totals[k] + out[k] for k in out}
        n += 1
    return {k: float(v) / n for k, v in totals.items()}
