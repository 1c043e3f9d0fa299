"""Reference forecasts every dynamics model is judged against: persistence and climatology.

Both are estimators with the fit / predict / score interface of
:class:`~skmld.MicroDynamicsEstimator` and :class:`~skmld.MesoDynamicsEstimator`:
they take PatchTokenizer tokens, a canonical field DataArray or a field Dataset,
predict in the layout they are given, can end a ``Pipeline`` after a
:class:`~skmld.PatchTokenizer`, and can be cloned, cross-validated and pickled.
No TensorFlow here.

* :class:`PersistenceBaseline`: the initial state, repeated — what a model
  that learned no dynamics at all predicts.
* :class:`ClimatologyBaseline`: the training simulations' mean at each time
  and cell — what a model that ignores the initial state predicts at best.

``score`` is the mean over fields of each field's R² (:func:`skmld.metrics.r2_per_field`)
over samples, tokens or cells, and the times after the first, computed on ``X`` as
given (the tokenizer's [0, 1]-scaled tokens inside a pipeline).
"""

from __future__ import annotations

from dataclasses import replace
from numbers import Integral

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from skmld.fields import is_lazy as _is_lazy
from skmld._layout import from_domain, to_domain
from skmld.metrics import r2_per_field

__all__ = ["ClimatologyBaseline", "PersistenceBaseline"]

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


class _Baseline(BaseEstimator):
    """Shared input checks, predict and score of the baselines (no parameters)."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        tags.target_tags.required = False
        # Input is labelled xarray field data, not a 2-D (or 3-D) feature array.
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = False
        tags.non_deterministic = False
        return tags

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
        if layout.fields != self.fields_:
            missing = [f for f in self.fields_ if f not in layout.fields]
            extra = [f for f in layout.fields if f not in self.fields_]
            raise ValueError(
                f"{name} has fields {layout.fields} but {type(self).__name__} was fitted on {self.fields_} "
                f"(missing: {missing}, unexpected: {extra}); pass the same fields in the same order."
            )
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


class PersistenceBaseline(_Baseline):
    """Persistence forecast: the initial state of ``X``, repeated at every time.

    The zero-skill reference of a rollout: a dynamics model that learned
    nothing about how the fields evolve predicts ``X``'s first time step for
    ever. It has no parameters, works on any grid and needs no training data
    (``fit`` only records the field names and, for tokens, the token layout).

    Attributes
    ----------
    fields_ : list of str
        Field names seen in ``fit``, in order; ``predict`` and ``score`` need
        the same.
    token_shape_ : (int, int) or None
        Token (patch) shape of the tokens seen in ``fit``; ``None`` for plain
        field data.
    grid_shape_ : (int, int) or None
        Token grid ``(token_y, token_x)`` seen in ``fit``; ``None`` for plain
        field data.

    See Also
    --------
    ClimatologyBaseline : The training mean at each time and cell.
    skmld.metrics.r2_per_field : The per-field R² behind ``score``.

    Examples
    --------
    >>> import numpy as np, skmld
    >>> from skmld.baselines import PersistenceBaseline
    >>> from skmld.datasets import make_pore_collapse
    >>> X = skmld.as_fields(make_pore_collapse("micro", 2, shape=(32, 32), n_steps=4, random_state=0))
    >>> pers = PersistenceBaseline().fit(X)
    >>> pred = pers.predict(X, n_steps=6)
    >>> pred.sizes["time"], pred["time"].values.tolist()
    (7, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0])
    >>> bool((pred.isel(time=-1) == X.isel(time=0)).all())
    True
    >>> bool(pers.score(X) < 1)
    True
    """

    def __init__(self):
        pass

    def _fit_domain(self, x, layout) -> None:
        pass

    def _predict_domain(self, x, layout, n_steps, return_std):
        shape = (x.shape[0], n_steps + 1) + tuple(x.shape[2:])
        if _is_lazy(x):
            mean = x[:, np.zeros(n_steps + 1, dtype=int)]
            std = None
            if return_std:
                import dask.array as da

                std = da.zeros(shape, dtype=x.dtype, chunks=mean.chunks)
            return mean, std
        mean = np.broadcast_to(x[:, :1], shape)
        return mean, (np.broadcast_to(np.zeros((), x.dtype), shape) if return_std else None)

    def predict(self, X, n_steps: int | None = None, return_std: bool = False):
        """Repeat ``X``'s first time step ``n_steps + 1`` times.

        Parameters
        ----------
        X : xarray.DataArray or xarray.Dataset
            Tokens from :class:`~skmld.PatchTokenizer`, or plain field data, with
            the fitted fields in the fitted order; any grid.
        n_steps : int, default=None
            Steps to predict; ``None`` means ``X``'s time length − 1. Longer
            rollouts extend the time coordinate with its spacing.
        return_std : bool, default=False
            Also return a standard deviation: zeros (persistence is
            deterministic).

        Returns
        -------
        pred : same type and layout as ``X``
            float32, ``n_steps + 1`` times, each equal to ``X``'s first time
            step. Tokens keep ``X``'s attrs, so the pipeline's
            ``PatchTokenizer.inverse_transform`` maps them back to physical units.
            Lazy if ``X`` is dask-backed.
        std : same type and layout as ``X``
            Zeros; only when ``return_std``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        ValueError
            If ``X``'s fields differ from the fitted ones, or ``n_steps`` is not
            a positive int.
        """
        return self._predict(X, n_steps, return_std)


class ClimatologyBaseline(_Baseline):
    """Climatology forecast: the training simulations' mean at each time and cell.

    Ignores the initial state of ``X``: every sample is predicted as the mean
    over the training samples at the same time index (time index 0 included,
    although ``score`` excludes it) and cell. It is the best forecast that
    knows only *when*, not *which* simulation: a dynamics model must beat it
    to show that it uses the initial state.

    Attributes
    ----------
    fields_ : list of str
        Field names seen in ``fit``, in order; ``predict`` and ``score`` need
        the same.
    token_shape_ : (int, int) or None
        Token (patch) shape seen in ``fit``; ``None`` for plain field data.
    grid_shape_ : (int, int) or None
        Token grid ``(token_y, token_x)`` seen in ``fit``; ``None`` for plain
        field data.
    ranges_ : dict of str to (float, float) or None
        The tokenizer's scaling range per field recorded in the fitted tokens'
        attrs; ``None`` for plain field data (or tokens without ranges).
    time_ : numpy.ndarray
        Time coordinate of the training data, ``(n_times,)``.
    climatology_ : numpy.ndarray
        float32 ``(n_times, Y, X, n_fields)``: the mean over training samples at
        each time and cell. ``Y, X`` is the grid (for tokens the stitched,
        padded token grid ``token_y * patch_y, token_x * patch_x``), fields last.
    std_ : numpy.ndarray
        float32, shape of ``climatology_``: the standard deviation over training
        samples (``ddof=0``, so 0 for a single sample).

    See Also
    --------
    PersistenceBaseline : The initial state, repeated.
    skmld.metrics.r2_per_field : The per-field R² behind ``score``.

    Notes
    -----
    The climatology is aligned with ``X`` by time index from ``X``'s first time
    step, so ``X`` must start where the training simulations started and have
    their time step (checked on the time coordinate); it can predict at most the
    fitted number of times. Inside a pipeline it is fitted on, and predicts, the
    tokenizer's scaled tokens.

    Examples
    --------
    >>> import numpy as np, skmld
    >>> from sklearn.pipeline import Pipeline
    >>> from skmld.baselines import ClimatologyBaseline
    >>> from skmld.datasets import make_pore_collapse
    >>> ds = make_pore_collapse("micro", 2, shape=(32, 32), n_steps=4, random_state=0)
    >>> clim = ClimatologyBaseline().fit(skmld.as_fields(ds))
    >>> clim.climatology_.shape
    (4, 32, 32, 3)
    >>> pipe = Pipeline([("tokens", skmld.PatchTokenizer(patch_size=16, multiple_of=8)),
    ...                  ("baseline", ClimatologyBaseline())]).fit(ds)
    >>> fields = pipe["tokens"].inverse_transform(pipe.predict(ds))
    >>> dict(fields.sizes)
    {'sample': 2, 'time': 4, 'y': 32, 'x': 32}
    >>> bool(np.allclose(fields["temperature"].isel(sample=0), ds["temperature"].mean("sample"), rtol=1e-5))
    True
    >>> one = ds.isel(sample=[0])  # the mean of one simulation is that simulation
    >>> ClimatologyBaseline().fit(one).score(one)
    1.0
    """

    def __init__(self):
        pass

    def _fit_domain(self, x, layout) -> None:
        self.ranges_ = (
            {f: (float(lo), float(hi)) for f, (lo, hi) in zip(layout.fields, layout.ranges)}
            if layout.ranges is not None else None
        )
        self.time_ = np.asarray(layout.time.values).copy()
        # C order: the memory layout (hence the summation order in score) survives pickling.
        self.climatology_ = np.ascontiguousarray(_computed(x.mean(axis=0, dtype=np.float64)), dtype=np.float32)
        self.std_ = np.ascontiguousarray(_computed(x.std(axis=0, dtype=np.float64)), dtype=np.float32)

    def _check_compatible(self, layout, name: str) -> None:
        fitted = "tokens" if self.token_shape_ is not None else "plain field data"
        given = "tokens" if layout.tokens else "plain field data"
        if fitted != given:
            raise ValueError(
                f"{name} is {given} but ClimatologyBaseline was fitted on {fitted}; predict the layout it was "
                "fitted on (in a pipeline, pass the raw fields to the pipeline, not to its last step)."
            )
        if layout.tokens:
            for what, got, want in (("token shape (patch_y, patch_x)", layout.token_shape, self.token_shape_),
                                    ("token grid (token_y, token_x)", layout.grid_shape, self.grid_shape_)):
                if tuple(got) != tuple(want):
                    raise ValueError(
                        f"{name} has {what} {tuple(got)} but ClimatologyBaseline was fitted on {tuple(want)}; "
                        "the climatology is per cell, so the grid must match."
                    )
            if self.ranges_ is not None and layout.ranges is not None:
                got = np.asarray(layout.ranges, dtype=float)
                want = np.asarray([self.ranges_[f] for f in self.fields_], dtype=float)
                if not np.allclose(got, want, rtol=1e-6, atol=0):
                    raise ValueError(
                        f"{name}'s tokens were scaled with ranges {got.tolist()} but ClimatologyBaseline was "
                        f"fitted on tokens scaled with {want.tolist()}; use the same tokenizer."
                    )
        else:
            shape = tuple(layout.domain_shape)
            want = tuple(self.climatology_.shape[1:3])
            if shape != want:
                raise ValueError(
                    f"{name} has grid shape {shape} (y, x) but ClimatologyBaseline was fitted on {want}; "
                    "the climatology is per cell, so the grid must match."
                )

    def _output_layout(self, layout):
        # X's own times, then the fitted ones (a single-step X has no spacing to extend).
        own = np.asarray(layout.time.values)
        if own.size >= self.time_.size:
            return layout
        values = np.concatenate([own, self.time_[own.size:].astype(own.dtype)])
        return replace(layout, time=xr.DataArray(values, dims="time", attrs=layout.time.attrs, name="time"))

    def _predict_domain(self, x, layout, n_steps, return_std):
        n_times = self.climatology_.shape[0]
        if n_steps + 1 > n_times:
            raise ValueError(
                f"n_steps={n_steps} asks for {n_steps + 1} time steps but ClimatologyBaseline was fitted on "
                f"{n_times} time steps; predict at most n_steps={n_times - 1}."
            )
        # X's own times must be the fitted ones; beyond them the fitted times continue (_output_layout).
        times = np.asarray(layout.time.values[: n_steps + 1])
        if not _same_times(times, self.time_[: times.size]):
            raise ValueError(
                f"X's time coordinate {times.tolist()} differs from the fitted one "
                f"{self.time_[: times.size].tolist()}; the climatology is aligned by time index, so X must "
                "start at the training data's first time and share its time step."
            )
        shape = (x.shape[0], n_steps + 1) + self.climatology_.shape[1:]
        lazy = _is_lazy(x)
        mean = _broadcast(self.climatology_[: n_steps + 1], shape, lazy)
        std = _broadcast(self.std_[: n_steps + 1], shape, lazy) if return_std else None
        return mean, std

    def predict(self, X, n_steps: int | None = None, return_std: bool = False):
        """The climatology's first ``n_steps + 1`` times, for every sample of ``X``.

        Parameters
        ----------
        X : xarray.DataArray or xarray.Dataset
            Data in the layout seen in ``fit`` (tokens with the same token shape,
            token grid and scaling ranges, or plain field data on the same grid),
            with the fitted fields in the fitted order. Only its samples, grid
            and time coordinate are used, not its values.
        n_steps : int, default=None
            Steps to predict; ``None`` means ``X``'s time length − 1. At most the
            fitted number of times − 1.
        return_std : bool, default=False
            Also return the standard deviation over the training samples.

        Returns
        -------
        pred : same type and layout as ``X``
            float32, ``n_steps + 1`` times, the training mean at each time
            (time index 0 included) and cell, the same for every sample. Tokens
            keep ``X``'s attrs, so the pipeline's
            ``PatchTokenizer.inverse_transform`` maps them back to physical units.
        std : same type and layout as ``X``
            Only when ``return_std``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        ValueError
            If ``n_steps + 1`` exceeds the fitted number of times, if ``X``'s
            fields, layout, grid, token scaling or time coordinate differ from
            the fitted ones, or ``n_steps`` is not a positive int.
        """
        return self._predict(X, n_steps, return_std)
