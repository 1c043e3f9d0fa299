"""Shared machinery of the micro and meso latent dynamics estimators.

One base, two thin estimators: the subclasses say which networks they build or
borrow and which training stages they run; everything else (data layouts,
history, pickling) lives here, the training loop in :mod:`skmld._trainer`
(curriculum, divergence handling, checkpoints) and the predict side in
:mod:`skmld._prediction` (predict/score/encode/decode).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from dataclasses import dataclass
from numbers import Integral, Real
from typing import ClassVar

import keras
import numpy as np
import tensorflow as tf
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from skmld import _data, _engine, _state
from skmld._layout import from_blocks, from_domain, to_blocks, to_domain
from skmld._prediction import PredictionMixin
from skmld._tags import FieldDataTags
from skmld._trainer import Trainer, user_stacklevel
from skmld.nn.vae import DOWNSAMPLING

logger = logging.getLogger("skmld")

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


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


class LatentDynamicsEstimator(PredictionMixin, _state.FittedState, FieldDataTags, BaseEstimator):
    """Base class; use :class:`~skmld.MicroDynamicsEstimator` or :class:`~skmld.MesoDynamicsEstimator`."""

    # Micro: every token is an independent building block. Meso: the whole domain.
    _whole_domain = False

    _parameter_constraints: ClassVar[dict] = {
        "horizons": ["array-like"],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "gradient_chunk_size": [None, Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "vae_loss": [StrOptions({"sse", "calibrated"})],
        "multistep_normalization": [StrOptions({"variance", "none"})],
        "latent_margin": [None, Interval(Real, 0, None, closed="left")],
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

    #: Runs the training stages of ``fit`` (a subclass may train with a :class:`~skmld._trainer.Trainer` subclass).
    _trainer_class = Trainer

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
                    stacklevel=user_stacklevel(),
                )
        self.units_ = {f: u for f, u in zip(layout.fields, layout.units or ()) if u}
        self.spacing_ = tuple(None if s is None else float(s) for s in layout.spacing)
        self.time_step_ = None if layout.time_step is None else float(layout.time_step)
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
        n_val = round(float(self.validation_fraction) * n_samples)
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
            self._trainer_class(self).fit(x, rows(train_samples), rows(val_samples) if n_val else None, horizons,
                                          seed)
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
        # Blocks of about GROUP_BYTES in float64, as the training data is read: memory bounded, not ∝ data.
        rows_per_block = max(1, _data.GROUP_BYTES // (int(np.prod(x.shape[1:])) * 8))
        for sl in _engine.batches(len(train_rows), rows_per_block):
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

    # -- predict side: skmld._prediction.PredictionMixin --------------------------------

    def save(self, path) -> None:
        """Write the fitted estimator to ``path`` in skmld's safe, pickle-free format.

        Read it back with :func:`skmld.load`; see :mod:`skmld.persistence`.
        """
        from skmld.persistence import save

        save(self, path)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "_networks")

    # -- pickling ----------------------------------------------------------------
    # Parameters passed on as they are by clone: shared runtime objects, not settings to copy.
    _shared_params: tuple = ("distribute",)

    def __sklearn_clone__(self):
        params = self.get_params(deep=False)
        shared = {k: params.pop(k) for k in self._shared_params}
        return type(self)(**{k: clone(v, safe=False) for k, v in params.items()}, **shared)

    # -- fitted state, for pickle and skmld.persistence (see skmld._state) -----------
    _fitted_attrs: ClassVar[dict] = {
        "fields_": ("a list of field names", _state.str_list),
        "ranges_": ("None or a dict of field -> (min, max)", lambda v: v is None or _state.ranges(v)),
        "bounds_": ("None or a dict of field -> (min or None, max or None)", lambda v: v is None or _state.bounds(v)),
        "token_shape_": ("a pair of ints", _state.int_tuple(2)),
        "latent_shape_": ("a triple of ints", _state.int_tuple(3)),
        "history_": ("a list of dicts of loss terms", _state.history),
    }
    # Without it (fitted by an earlier version) rollouts are not bounded (see ``latent_margin``).
    _optional_fitted_attrs: ClassVar[dict] = {
        "latent_range_": ("a finite float64 array of shape (2, n_latent_channels), minima <= maxima",
                          _state.latent_range),
        # The data's physical scales (meso compares them with its backbone's); absent: unknown.
        "units_": ("a dict of field -> units", _state.str_dict),
        "spacing_": ("a pair (y, x) of positive floats or None", _state.positive_pair),
        "time_step_": ("None or a positive float", _state.positive_or_none),
    }
    _runtime_attrs: tuple = ("_networks", "_rollout_fn")
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
        return _engine.network_names(_engine.PART_KINDS, self.fields_) + list(_engine.COUPLED)

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
