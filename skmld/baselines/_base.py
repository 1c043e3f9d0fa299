"""What the baselines share: input checks, predict and the per-field score."""

from __future__ import annotations

from numbers import Integral

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from skmld._layout import from_domain, to_domain
from skmld._tags import FieldDataTags
from skmld.fields import is_lazy as _is_lazy
from skmld.metrics import r2_per_field

_DOMAIN_DIMS = ("sample", "time", "y", "x", "field")


def _computed(a) -> np.ndarray:
    return np.asarray(a.compute() if _is_lazy(a) else a)


def _broadcast(a: np.ndarray, shape: tuple, lazy: bool):
    """``a`` broadcast to ``shape``: a lazy dask array, or a read-only numpy view."""
    if lazy:
        import dask.array as da

        return da.broadcast_to(da.from_array(a, chunks=a.shape), shape)
    return np.broadcast_to(a, shape)


def _writable(a):
    """A numpy view (of X or of a fitted attribute) copied before it is returned; dask as is."""
    return a if a is None or _is_lazy(a) or a.flags.writeable else a.copy()


def _same_times(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "mM" or b.dtype.kind in "mM":
        return bool(np.array_equal(a, b))
    a, b = a.astype(np.float64), b.astype(np.float64)
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return bool(np.allclose(a, b, rtol=1e-6, atol=1e-6 * scale))


class _Baseline(FieldDataTags, BaseEstimator):
    """Shared input checks, predict and score of the baselines (no parameters)."""

    # -- hooks ----------------------------------------------------------------
    def _fit_domain(self, x, layout) -> None:
        raise NotImplementedError

    def _predict_domain(self, x, layout, n_steps: int, return_std: bool):
        """``(mean, std or None)``, each ``(S, n_steps + 1, Y, X, F)``, possibly read-only views."""
        raise NotImplementedError

    def _check_compatible(self, layout, name: str) -> None:
        """Raise ValueError if ``X``'s layout cannot be predicted by this fitted baseline."""

    def _output_layout(self, layout):
        """The layout predictions are returned in (``X``'s)."""
        return layout

    # -- shared ---------------------------------------------------------------
    def _record(self, layout) -> None:
        self.fields_ = list(layout.fields)
        self.token_shape_ = tuple(layout.token_shape) if layout.tokens else None
        self.grid_shape_ = tuple(layout.grid_shape) if layout.tokens else None

    def fit(self, X, y=None):
        """Fit the baseline on training data.

        Parameters
        ----------
        X : xarray.DataArray or xarray.Dataset
            Tokens from :class:`~skmld.PatchTokenizer`, or plain field data (a
            canonical field DataArray ``("sample", "time", "field", "y", "x")``
            or a field Dataset).
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted baseline.
        """
        x, layout = to_domain(X, name="X")
        self._record(layout)
        self._fit_domain(x, layout)
        return self

    def _check_input(self, X, name: str = "X"):
        check_is_fitted(self)
        x, layout = to_domain(X, name=name)
        layout.check_fields(self.fields_, name, type(self).__name__)
        self._check_compatible(layout, name)
        return x, layout

    @staticmethod
    def _resolve_steps(n_steps, n_times: int, name: str = "X") -> int:
        if n_steps is None:
            if n_times < 2:
                raise ValueError(
                    f"{name} has a single time step, so n_steps=None (its time length - 1) predicts nothing; "
                    "pass n_steps >= 1."
                )
            return n_times - 1
        if isinstance(n_steps, (bool, np.bool_)) or not isinstance(n_steps, Integral) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive int, got {n_steps!r}.")
        return int(n_steps)

    def _predict(self, X, n_steps, return_std):
        x, layout = self._check_input(X)
        n_steps = self._resolve_steps(n_steps, x.shape[1])
        mean, std = self._predict_domain(x, layout, n_steps, bool(return_std))
        layout = self._output_layout(layout)
        pred = from_domain(_writable(mean), layout)
        return (pred, from_domain(_writable(std), layout)) if return_std else pred

    def score(self, X, y=None) -> float:
        """Mean over fields of each field's R² of ``predict(X)`` against ``X``.

        Each field's R² (see :meth:`score_per_field`) is taken over all samples,
        tokens or cells and the time steps after the first (the initial state
        is given, not predicted); every field weighs the same, as in the
        dynamics estimators' ``score``.

        Parameters
        ----------
        X : xarray.DataArray or xarray.Dataset
            Data in a layout accepted by :meth:`predict`, with at least 2 time
            steps.
        y : None
            Ignored.

        Returns
        -------
        float
            1 is perfect, 0 is as good as predicting each field's mean; it can be
            negative.
        """
        return float(np.mean(list(self.score_per_field(X).values())))

    def score_per_field(self, X) -> dict:
        """R² of ``predict(X)`` against ``X`` for each field, over samples, tokens, cells and times after the first.

        Computed with :func:`skmld.metrics.r2_per_field` on ``X`` as passed
        (inside a pipeline, the tokenizer's [0, 1]-scaled tokens). A field that
        is constant over the scored times scores 1 if predicted exactly, else 0
        (as in the dynamics estimators).

        Parameters
        ----------
        X : xarray.DataArray or xarray.Dataset
            Data in a layout accepted by :meth:`predict`, with at least 2 time
            steps.

        Returns
        -------
        dict
            Field name → R², in the fitted field order.
        """
        x, layout = self._check_input(X)
        n_times = x.shape[1]
        if n_times < 2:
            raise ValueError(
                f"score needs X with at least 2 time steps (the first is the given initial state), got {n_times}."
            )
        mean, _ = self._predict_domain(x, layout, n_times - 1, False)
        coords = {"time": np.arange(1, n_times), "field": list(layout.fields)}
        truth = xr.DataArray(x[:, 1:], dims=_DOMAIN_DIMS, coords=coords)
        pred = xr.DataArray(mean[:, 1:], dims=_DOMAIN_DIMS, coords=coords)
        r2 = np.asarray(r2_per_field(truth, pred).values, dtype=np.float64)
        # r2_per_field leaves a constant, not exactly predicted field undefined (NaN): score it 0.
        return {f: float(v) if np.isfinite(v) else 0.0 for f, v in zip(self.fields_, r2)}
