"""Physical outputs of a fitted pipeline in one call: mean, spread, intervals and draws in the fields' units.

A pipeline ``PatchTokenizer → dynamics estimator`` predicts scaled tokens.
:func:`predict_fields` runs it and maps everything it predicts back through
the tokenizer: the fields on their grid, in their units. No TensorFlow is
imported here (the estimators bring it).
"""

from __future__ import annotations

import inspect
from numbers import Integral, Real

import numpy as np
import xarray as xr
from scipy.special import ndtri
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from skmld.fields import as_fields
from skmld.tokenizer import PatchTokenizer

__all__ = ["predict_fields"]


def _tokenizer_and_model(pipeline) -> tuple[PatchTokenizer, object]:
    """The pipeline's PatchTokenizer and last step, both fitted, or a clear error."""
    if not isinstance(pipeline, Pipeline):
        raise TypeError(f"pipeline must be a fitted sklearn Pipeline (a PatchTokenizer, then a dynamics estimator), "
                        f"got a {type(pipeline).__name__}.")
    steps = [(name, est) for name, est in pipeline.steps if est is not None and not isinstance(est, str)]
    if len(steps) != 2 or not isinstance(steps[0][1], PatchTokenizer):
        raise ValueError(
            "predict_fields needs a pipeline of a PatchTokenizer, then a dynamics estimator: the tokenizer maps the "
            "predicted tokens, and their spread, back to physical fields. This pipeline has steps "
            f"{[(name, type(est).__name__) for name, est in steps]}.")
    for name, est in steps:
        try:
            check_is_fitted(est)
        except NotFittedError:
            raise NotFittedError(f"The pipeline's step {name!r} ({type(est).__name__}) is not fitted; call "
                                 "pipeline.fit(X) before predict_fields.") from None
    return steps[0][1], steps[1][1]


def _coverage(coverage) -> xr.DataArray | None:
    """``coverage`` as a DataArray of levels in (0, 1), a ``coverage`` dim for a sequence; None for None."""
    if coverage is None:
        return None
    levels = list(coverage) if isinstance(coverage, (list, tuple, np.ndarray)) else [coverage]
    if not levels or not all(isinstance(c, Real) and not isinstance(c, (bool, np.bool_)) and 0 < c < 1
                             for c in levels):
        raise ValueError(f"coverage must be a number or a non-empty sequence of numbers in (0, 1), e.g. 0.9 for a "
                         f"90 % central interval; got {coverage!r}.")
    if isinstance(coverage, (list, tuple, np.ndarray)):
        return xr.DataArray(np.asarray(levels, float), dims="coverage").pipe(lambda c: c.assign_coords(coverage=c))
    return xr.DataArray(float(coverage), coords={"coverage": float(coverage)})


def predict_fields(pipeline: Pipeline, X: xr.Dataset | xr.DataArray, *, n_steps: int | None = None,
                   return_std: bool = False, coverage: float | list[float] | None = None, n_draws: int = 0,
                   random_state=None) -> xr.Dataset:
    """Roll a fitted pipeline out from ``X`` and return the prediction as physical fields.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        Fitted: a :class:`~skmld.PatchTokenizer`, then a
        :class:`~skmld.MicroDynamicsEstimator`,
        :class:`~skmld.MesoDynamicsEstimator` or
        :class:`~skmld.CalibratedDynamics` (``None`` or ``"passthrough"``
        steps are skipped).
    X : xarray.Dataset or xarray.DataArray
        Physical fields, as for ``pipeline.predict``: the rollout starts from
        their first time step.
    n_steps : int, default=None
        Steps to predict; ``None`` means ``X``'s time length − 1.
    return_std : bool, default=False
        Also return ``std``, the standard deviation of the model's ensemble
        (``predict(X, return_std=True)``: calibrated with CalibratedDynamics)
        in the fields' units. The tokenizer's scaling is affine per field, so
        this is the std of the tokens times ``hi − lo`` of the field's range.
    coverage : float or sequence of float, default=None
        Levels in (0, 1) of central intervals to return as ``lower`` and
        ``upper``: ``mean ∓ z·std`` with ``z`` the standard normal quantile
        of ``(1 + coverage) / 2`` (0.9545 gives ±2σ), cut to the fields'
        physical bounds (``bounds_`` of the tokenizer). A sequence adds a
        ``coverage`` dim.
    n_draws : int, default=0
        Members of the trajectory ensemble to return as ``draws`` (0: none,
        else at least 2): ``predict_draws`` of the last step, in physical units.
    random_state : int, RandomState, Generator or None, default=None
        Seeds the noise CalibratedDynamics adds to its draws; the latent
        trajectories are seeded by the estimator's own ``random_state``.

    Returns
    -------
    xarray.Dataset
        Variables in the canonical field layout (dims ``sample``, ``time``,
        ``field``, ``y``, ``x``, on ``X``'s grid, a ``units`` coordinate on
        ``field``), so each is ready for :mod:`skmld.metrics` and
        :mod:`skmld.plotting`: ``mean`` (the mean rollout); ``std`` with
        ``return_std``; ``lower`` and ``upper`` (a ``coverage`` coordinate)
        with ``coverage``; ``draws`` (a leading ``draw`` dim) with ``n_draws``.

    Raises
    ------
    TypeError
        If ``pipeline`` is not a Pipeline.
    ValueError
        If its steps are not a PatchTokenizer then one estimator, or
        ``coverage`` or ``n_draws`` is invalid.
    sklearn.exceptions.NotFittedError
        If a step is not fitted.

    Examples
    --------
    >>> from sklearn.pipeline import Pipeline
    >>> from skmld import MicroDynamicsEstimator, PatchTokenizer
    >>> from skmld.datasets import make_pore_collapse
    >>> from skmld.outputs import predict_fields
    >>> X = make_pore_collapse("micro", 2, shape=(32, 32), n_steps=3, random_state=0)
    >>> pipe = Pipeline([("tokens", PatchTokenizer()),
    ...                  ("micro", MicroDynamicsEstimator(filters=2, dynamics_filters=2, horizons=(1,),
    ...                                                   vae_epochs=1, decoupled_epochs=0, coupled_epochs=1,
    ...                                                   batch_size=4, random_state=0))]).fit(X)
    >>> out = predict_fields(pipe, X, return_std=True, coverage=0.9)
    >>> sorted(out.data_vars), out["units"].values.tolist()
    (['lower', 'mean', 'std', 'upper'], ['K', 'GPa', '1'])
    """
    tokenizer, model = _tokenizer_and_model(pipeline)
    levels = _coverage(coverage)
    if isinstance(n_draws, (bool, np.bool_)) or not isinstance(n_draws, Integral) or n_draws < 0 or n_draws == 1:
        raise ValueError(f"n_draws must be 0 (no draws) or an int >= 2, got {n_draws!r}.")
    tokens = tokenizer.transform(X)
    if return_std or levels is not None:
        mean_t, std_t = model.predict(tokens, n_steps=n_steps, return_std=True)
    else:
        mean_t, std_t = model.predict(tokens, n_steps=n_steps), None

    def physical(t):
        return as_fields(tokenizer.inverse_transform(t))

    def per_field(values):
        return xr.DataArray(values, dims="field", coords={"field": tokenizer.fields_})

    out = {"mean": physical(mean_t).assign_attrs(long_name="mean rollout")}
    if std_t is not None:
        # inverse_transform(s) = lo + s·(hi − lo): subtract lo, in float64 so that a small std stays exact.
        lo = per_field([tokenizer.ranges_[f][0] for f in tokenizer.fields_])
        std = (physical(std_t.astype(np.float64)) - lo).astype(out["mean"].dtype)
        if return_std:
            out["std"] = std.assign_attrs(long_name="predictive standard deviation")
        if levels is not None:
            half = levels.copy(data=ndtri(0.5 + levels.values / 2)) * std
            bounds = [tokenizer.bounds_[f] for f in tokenizer.fields_]
            low = per_field([-np.inf if b is None else b for b, _ in bounds])
            high = per_field([np.inf if b is None else b for _, b in bounds])
            ends = {"lower": np.maximum(out["mean"] - half, low), "upper": np.minimum(out["mean"] + half, high)}
            for name, end in ends.items():
                out[name] = end.astype(std.dtype).transpose(*levels.dims, ...).assign_attrs(
                    long_name=f"{name} end of the central interval")
    if n_draws:
        seeded = "random_state" in inspect.signature(model.predict_draws).parameters
        draws_t = model.predict_draws(tokens, n_steps=n_steps, n_draws=int(n_draws),
                                      **({"random_state": random_state} if seeded else {}))
        out["draws"] = xr.concat([physical(draws_t.isel(draw=d)) for d in range(draws_t.sizes["draw"])],
                                 dim="draw").assign_attrs(long_name="ensemble member")
    return xr.Dataset(out)
