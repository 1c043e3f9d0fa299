"""The predict side of the latent dynamics estimators: rollouts, predict, score, encode and decode.

:class:`PredictionMixin` reads only what a fitted estimator holds (its
networks, ``fields_``, ``token_shape_``, ``bounds_``, ...) and the estimator's
layout helpers (``_to_arrays``, ``_from_arrays``, ``_check_token_shape``).
"""

from __future__ import annotations

import threading
import uuid
from numbers import Integral

import numpy as np
import tensorflow as tf
import xarray as xr
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from skmld import _data, _engine, _rollout
from skmld._layout import (
    Layout,
    from_blocks,
    from_domain,
    latents_from_xarray,
    latents_to_xarray,
    to_blocks,
)

# One rollout at a time in a process: TensorFlow parallelises inside it, and the
# rollout function called at once from several of dask's threads crashed
# TensorFlow 2.21 (segfault) while predictions were written chunk by chunk.
_ROLLOUT_LOCK = threading.Lock()


def _locked(fn, *args):
    """``fn(*args)`` under :data:`_ROLLOUT_LOCK` (dask calls rollouts from its threads)."""
    with _ROLLOUT_LOCK:
        return fn(*args)


def _mean_or_std(estimator, x0, n_steps, n_draws, seed):
    """The mean rollout of ``x0`` (``n_draws == 0``) or the standard deviation of its trajectory ensemble."""
    return estimator._rollout_block(x0, n_steps, n_draws, seed)[1 if n_draws else 0]


class PredictionMixin:
    """Predict, score, encode and decode for a fitted :class:`~skmld._base.LatentDynamicsEstimator`."""

    def _check_predict_input(self, X, name="X"):
        check_is_fitted(self)
        x, layout = self._to_arrays(X, name=name)
        layout.check_fields(self.fields_, name, type(self).__name__)
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
        key = (kind, getattr(self, "latent_margin", None))  # may change after fit (set_params)
        if key not in fns:
            make = _rollout.make_rollout if kind == "mean" else _rollout.make_ensemble
            lower, upper = _rollout.scaled_bounds(self.bounds_, self.ranges_, self.fields_)
            fns[key] = make(self._networks, self._time_ratio, self.jit_compile, lower, upper,
                            *self._latent_limits())
        return fns[key]

    def _latent_limits(self):
        """Per-channel bounds of the rolled-out latents: the training latents' range widened by ``latent_margin``.

        ``(None, None)`` where the estimator has no ``latent_range_`` or ``latent_margin`` is ``None``.
        """
        margin, rng = getattr(self, "latent_margin", None), getattr(self, "latent_range_", None)
        if margin is None or rng is None:  # estimators pickled before the range was recorded have none
            return None, None
        lo, hi = np.asarray(rng, np.float32)
        pad = float(margin) * (hi - lo)
        return lo - pad, hi + pad

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

        # Keys named here: dask would otherwise name them by hashing the function, which
        # pickles this estimator and its networks (seconds per call, more than the rollout).
        token = uuid.uuid4().hex
        block = dask.delayed(lambda *args: _locked(_mean_or_std, self, *args), name=f"skmld-rollout-{token}")
        out = []
        for k in kinds:
            _mean_or_std(self, np.zeros((1,) + x.shape[2:], np.float32), 1, k, seed)  # trace before threads
            out.append(da.concatenate([
                da.from_delayed(block(x[sl, 0], n_steps, k, seed, dask_key_name=f"skmld-rollout-{token}-{k}-{i}"),
                                (sl.stop - sl.start, n_steps + 1) + x.shape[2:], dtype=np.float32)
                for i, sl in enumerate(_engine.batches(x.shape[0], self._rollout_rows(grid, k)))]))
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
