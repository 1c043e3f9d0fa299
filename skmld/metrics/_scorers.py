"""scikit-learn scorers: ``scorer(estimator, X, y=None) -> float`` for cross-validation and search."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import xarray as xr

from skmld._constants import HOTSPOT_THRESHOLD
from skmld.metrics._common import _TOKEN_DIMS, _align_time, _as_array, _pixel_area, _real, _temperature
from skmld.metrics._fields import r2_per_field
from skmld.metrics._hotspot_masks import _excess_heat
from skmld.metrics._hotspots import hotspot_rmse
from skmld.metrics._pinned import _PINNED_RTOL, _conform, _field_names, _pinned, _resolve_bounds
from skmld.metrics._probabilistic import probabilistic_scores


def _token_transformers(estimator: Any, pred: Any) -> Any:
    """The pipeline's transformers when ``pred`` is in token layout, else None."""
    dims = getattr(pred, "dims", ())
    if not (any(d in dims for d in _TOKEN_DIMS) and hasattr(estimator, "steps")):
        return None
    # A Pipeline tokenizer -> dynamics predicts tokens; its transformers
    # (all invertible) bring them back to K / GPa / - on X's grid.
    transformers = estimator[:-1]
    if not hasattr(transformers, "inverse_transform"):
        raise ValueError(
            "the pipeline predicts tokens but its transformers cannot inverse_transform them."
        )
    return transformers


def _physical_std(transformers: Any, mean: xr.DataArray, std: xr.DataArray) -> xr.DataArray:
    """A predicted std mapped through invertible affine transformers: ``|inv(mean + std) − inv(mean)|``.

    The tokenizer's scaling is affine per field (``lo + token·(hi − lo)``), so
    this is ``std·(hi − lo)`` of each field, on the original grid. Both maps
    run in float64: the difference of two float32 values near ``lo`` would
    lose a small std, and a zero std stays exactly 0.
    """
    mean64 = mean.astype(np.float64)
    upper = (mean64 + std.astype(np.float64)).assign_attrs(mean.attrs)
    hi = _as_array(transformers.inverse_transform(upper), "predicted std")
    lo = _as_array(transformers.inverse_transform(mean64), "prediction")
    return np.abs(hi - lo)


def _rollout(estimator: Any, X: xr.Dataset | xr.DataArray) -> xr.DataArray:
    """Predict from X's first step and return the rollout in X's (physical) layout."""
    pred = estimator.predict(X)
    if isinstance(pred, tuple):  # (mean, std): score the mean
        pred = pred[0]
    transformers = _token_transformers(estimator, pred)
    if transformers is not None:
        pred = transformers.inverse_transform(pred)
    return _as_array(pred, "prediction")


def _rollout_with_std(estimator: Any, X: xr.Dataset | xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """``predict(X, return_std=True)`` as physical ``(mean, std)`` in X's layout."""
    try:
        out = estimator.predict(X, return_std=True)
    except TypeError as exc:
        if "return_std" not in str(exc):
            raise
        raise TypeError(
            f"this scorer needs predict(X, return_std=True), which {type(estimator).__name__} lacks: {exc}"
        ) from exc
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(f"predict(X, return_std=True) must return (mean, std), got {type(out).__name__}.")
    mean, std = out
    transformers = _token_transformers(estimator, mean)
    if transformers is not None:
        mean, std = transformers.inverse_transform(mean), _physical_std(transformers, mean, std)
    return _as_array(mean, "prediction"), _as_array(std, "predicted std")


def _after_first(truth: xr.DataArray, pred: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """Drop the initial state, which every rollout starts from."""
    truth, pred = _align_time(truth, pred, ("X", "prediction"))
    if "time" in truth.dims:
        if truth.sizes["time"] < 2:
            raise ValueError("scoring a rollout needs at least two time steps in X.")
        truth, pred = truth.isel(time=slice(1, None)), pred.isel(time=slice(1, None))
    return truth, pred


def _r2_physical(truth: xr.DataArray, pred: xr.DataArray) -> float:
    """Uniform average over fields of each field's R² (fields weigh equally)."""
    per = [d for d in truth.dims if d != "field"]
    ss_res = ((truth - pred) ** 2).sum(per)
    ss_tot = ((truth - truth.mean(per)) ** 2).sum(per)
    r2 = 1.0 - ss_res / ss_tot.where(ss_tot > 0)
    return float(r2.mean())


def _one_field(field: str, truth: xr.DataArray, *others: xr.DataArray) -> list[xr.DataArray]:
    names = [str(f) for f in truth["field"].values] if "field" in truth.coords else []
    if field not in names:
        raise ValueError(f"field={field!r} is not a field of X; X has fields {names}.")
    return [arr.sel(field=[field]) for arr in (truth, *others)]


def _probabilistic(kind: str, estimator: Any, X: xr.Dataset | xr.DataArray, field: str | None) -> float:
    """``-`` the normalised Gaussian CRPS or the coverage error, after the first step, unpinned pixels."""
    names = ("prediction", "predicted std")
    mean, std = _rollout_with_std(estimator, X)
    _, std = _conform(mean, std, names)
    truth, mean = _after_first(_as_array(X, "X"), mean)
    if "time" in std.dims and "time" not in std.indexes:
        std = std.isel(time=slice(1, None))
    _, std = _conform(mean, std, names)
    bounds = _resolve_bounds(X, None, _field_names(truth))
    if field is not None:
        truth, mean, std = _one_field(field, truth, mean, std)
        bounds = {f: b for f, b in bounds.items() if f == field}
    scores = probabilistic_scores(truth, mean, std, ks=(1.0, 2.0), bounds=bounds)
    if kind == "crps":
        per_field = scores["crps_overall"]
        if field is None:  # in units of each field's spread, so K and GPa weigh alike
            free = truth.where(~_pinned(truth, mean, bounds, _PINNED_RTOL))
            spread = free.std([d for d in truth.dims if d != "field"])
            per_field = per_field / spread.where(spread > 0, 1.0)
    else:
        per_field = np.abs(scores["coverage_overall"] - scores["nominal"]).mean("k")
    values = np.asarray(per_field.values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("nothing to score: every pixel after the first time step is pinned to a field bound.")
    return -float(values.mean())


class _Scorer:
    """Picklable ``scorer(estimator, X, y=None) -> float``, higher is better."""

    # Pickled as skmld.metrics._Scorer, wherever the class is defined.
    __module__ = "skmld.metrics"

    def __init__(self, name: str, kind: str, **options: Any) -> None:
        self.name = name
        self.kind = kind
        self.options = options

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"skmld.metrics.get_scorer({self.name!r}{opts})"

    def __call__(self, estimator: Any, X: xr.Dataset | xr.DataArray, y: Any = None, **kw) -> float:
        field = self.options.get("field")
        if self.kind == "r2" and field is None and hasattr(estimator, "score"):
            return float(estimator.score(X))
        if self.kind in _PROBABILISTIC_KINDS:
            return _probabilistic(self.kind, estimator, X, field)
        truth = _as_array(X, "X")
        truth, pred = _after_first(truth, _rollout(estimator, X))
        if field is not None:
            truth, pred = _one_field(field, truth, pred)
        if self.kind == "r2":
            if field is not None:
                return float(r2_per_field(truth, pred).squeeze("field"))
            return _r2_physical(truth, pred)
        if self.kind == "field_rmse":
            per = [d for d in truth.dims if d != "field"]
            rmse = np.sqrt(((truth - pred) ** 2).mean(per))
            return -float(rmse.mean())
        threshold = self.options.get("threshold", HOTSPOT_THRESHOLD)
        temperature = self.options.get("temperature", "temperature")
        if self.kind == "hotspot_f1":
            t_temp, p_temp = _temperature(truth, temperature), _temperature(pred, temperature)
            hot_t, hot_p = t_temp > threshold, p_temp > threshold
            counts = [int(m.sum()) for m in (hot_t & hot_p, hot_p & ~hot_t, hot_t & ~hot_p)]
            tp, fp, fn = counts
            return 1.0 if 2 * tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
        if self.kind == "excess_heat":
            t_temp, p_temp = _temperature(truth, temperature), _temperature(pred, temperature)
            area, _, _ = _pixel_area(t_temp, None, "the excess heat is in K·pixel", stacklevel=3)
            thr = xr.DataArray(threshold)
            sq = (_excess_heat(t_temp, thr, area) - _excess_heat(p_temp, thr, area)) ** 2
            return -float(np.sqrt(sq.mean()))
        ds = hotspot_rmse(truth, pred, threshold=threshold, temperature=temperature)
        return -float(ds[f"{self.kind}_overall"])


# name -> (kind, short description)
_SCORERS: dict[str, tuple[str, str]] = {
    "r2": ("r2", "the estimator's own score(X), or one field's R² in physical units"),
    "neg_field_rmse": ("field_rmse", "minus the field RMSE in physical units"),
    "neg_hotspot_temperature_rmse": ("T_hs", "minus the RMSE of T_hs [K]"),
    "neg_hotspot_area_rmse": ("A_hs", "minus the RMSE of A_hs [µm²]"),
    "hotspot_f1": ("hotspot_f1", "F1 of the T > threshold masks"),
    "neg_excess_heat_rmse": ("excess_heat", "minus the RMSE of the excess heat [K·µm²]"),
    "neg_crps": ("crps", "minus the mean over fields of the Gaussian CRPS / the truth's std"),
    "neg_coverage_error": ("coverage_error", "minus the mean |coverage − nominal| over fields and k = 1, 2"),
}
# Scorers that take field=, those that predict (mean, std), and those that take threshold= / temperature=.
_FIELD_KINDS = ("r2", "field_rmse", "crps", "coverage_error")
_PROBABILISTIC_KINDS = ("crps", "coverage_error")
_THRESHOLD_KINDS = ("T_hs", "A_hs", "hotspot_f1", "excess_heat")


def get_scorer_names() -> list[str]:
    """Names accepted by :func:`get_scorer`.

    Examples
    --------
    >>> get_scorer_names()  # doctest: +NORMALIZE_WHITESPACE
    ['hotspot_f1', 'neg_coverage_error', 'neg_crps', 'neg_excess_heat_rmse', 'neg_field_rmse',
     'neg_hotspot_area_rmse', 'neg_hotspot_temperature_rmse', 'r2']
    """
    return sorted(_SCORERS)


def get_scorer(
    name: str = "r2",
    *,
    threshold: float = HOTSPOT_THRESHOLD,
    field: str | None = None,
    temperature: str = "temperature",
) -> Callable[..., float]:
    """A scikit-learn scorer ``scorer(estimator, X, y=None) -> float``, higher is better.

    The rollout ``estimator.predict(X)`` starts from X's first time step; it is
    compared with ``X`` on the times after the first. When ``estimator`` is a
    Pipeline whose prediction is in token layout (tokenizer first), the
    prediction is mapped back to physical units with the pipeline's
    transformers' ``inverse_transform`` before comparing; a bare estimator's
    prediction is compared with ``X`` as is.

    Parameters
    ----------
    name : str, default="r2"
        ``"r2"``: ``estimator.score(X)`` (identical to ``scoring=None``), by the
        estimators' contract the mean over fields of each field's R² of the
        rollout over tokens and times after the first, in the layout the
        estimator predicts (the tokenizer's [0, 1]-scaled tokens for a
        pipeline); for an estimator without ``score``, the mean over fields of
        each field's R² in physical units. With ``field=``, ``estimator.score``
        is not called: the score is that field's R² in physical units
        (:func:`r2_per_field` of the rollout against ``X``).
        ``"neg_field_rmse"``: minus the mean over fields of each field's RMSE in
        physical units (temperature dominates; pass ``field=``).
        ``"neg_hotspot_temperature_rmse"`` / ``"neg_hotspot_area_rmse"``: minus the
        overall RMSE of ``T_hs`` [K] / ``A_hs`` [µm²] over samples and times.
        ``"hotspot_f1"``: F1 of the ``T > threshold`` masks pooled over samples,
        times and pixels (1 when both are empty), as in
        :func:`hotspot_mask_scores`.
        ``"neg_excess_heat_rmse"``: minus the RMSE over samples and times of the
        excess heat ∫(T − θ)⁺ dA [K·µm²].
        ``"neg_crps"`` and ``"neg_coverage_error"`` score the Gaussian
        predictive distribution of ``estimator.predict(X, return_std=True)``
        (for a pipeline, the token std is mapped to physical units too) on the
        unpinned pixels (bounds from X's CF attrs, see :func:`pinned_mask`):
        ``"neg_crps"`` is minus the mean over fields of each field's CRPS
        divided by the std of that field in ``X`` (dimensionless, so fields in
        K and GPa weigh alike; with ``field=``, that field's CRPS in its
        units); ``"neg_coverage_error"`` is minus the mean over fields and
        k = 1, 2 of ``|coverage − erf(k/√2)|`` (see :func:`probabilistic_scores`).
    threshold : float, default=875.0
        Hotspot threshold in K for the hotspot scorers.
    field : str, default=None
        Restrict ``"r2"``, ``"neg_field_rmse"``, ``"neg_crps"`` or
        ``"neg_coverage_error"`` to one field.
    temperature : str, default="temperature"
        Name of the temperature field, for the hotspot scorers (as in
        :func:`hotspot_metrics`).

    Returns
    -------
    callable
        Picklable, usable as ``scoring=`` in ``cross_val_score``,
        ``cross_validate`` (also in a dict of scorers) and ``GridSearchCV``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones), or ``field=`` /
        ``temperature=`` given to a scorer that does not use it.

    Examples
    --------
    >>> scorer = get_scorer("neg_field_rmse")
    >>> scorer
    skmld.metrics.get_scorer('neg_field_rmse')
    """
    if name not in _SCORERS:
        raise ValueError(
            f"unknown scorer {name!r}; valid names are {get_scorer_names()}."
        )
    kind = _SCORERS[name][0]
    options: dict[str, Any] = {}
    if kind in _THRESHOLD_KINDS and threshold != HOTSPOT_THRESHOLD:
        options["threshold"] = _real(threshold, "threshold")
    if field is not None:
        if kind not in _FIELD_KINDS:
            names = [n for n, (k, _) in _SCORERS.items() if k in _FIELD_KINDS]
            raise ValueError(f"field= applies only to {names}, not {name!r}.")
        options["field"] = field
    if temperature != "temperature":
        if kind not in _THRESHOLD_KINDS:
            names = [n for n, (k, _) in _SCORERS.items() if k in _THRESHOLD_KINDS]
            raise ValueError(f"temperature= applies only to the hotspot scorers {names}, not {name!r}.")
        if not isinstance(temperature, str) or not temperature:
            raise TypeError(f"temperature must name the temperature field (a non-empty str), got {temperature!r}.")
        options["temperature"] = temperature
    return _Scorer(name, kind, **options)
