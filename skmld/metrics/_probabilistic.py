"""Probabilistic rollouts: coverage of the predictive bands, spread-skill ratio and CRPS.

``predict(X, return_std=True)`` gives a Gaussian predictive distribution per
pixel, ``N(mean, std²)``; an ensemble gives members along a ``draw`` dim. The
statistics here pool unpinned pixels (see :func:`pinned_mask`) over samples
and space, per field and lead time.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import xarray as xr

from skmld.metrics._common import (
    _align_time,
    _as_array,
    _check_result,
    _field_units,
    _is_lazy,
    _real,
)
from skmld.metrics._pinned import (
    _PINNED_RTOL,
    Bounds,
    _as_draws,
    _check_std,
    _conform,
    _field_names,
    _ks,
    _nominal,
    _pinned,
    _resolve_bounds,
)

# A zero-width band (std = 0) whose error is within this fraction of the field's
# largest |truth| is a tie (float32 tokens round at ~1e-7): it counts at the
# nominal rate, as the randomised PIT of a point forecast does.
_TIE_RTOL = 1e-5


def _prepare(truth: Any, mean: Any, std: Any, bounds: Bounds | None) -> tuple:
    """Checked ``(truth, mean, std, pinned)`` on the time steps truth and mean share."""
    t_arr, m_arr = _conform(_as_array(truth, "truth"), _as_array(mean, "mean"), ("truth", "mean"), intersect=True)
    _, s_arr = _conform(m_arr, _as_array(std, "std"), ("mean", "std"))
    _check_std(s_arr)
    resolved = _resolve_bounds(truth, bounds, _field_names(t_arr))
    return t_arr, m_arr, s_arr, _pinned(t_arr, m_arr, resolved, _PINNED_RTOL)


def _reduced(arr: xr.DataArray) -> list:
    """The dims pooled by the statistics: all but ``field`` and ``time``."""
    return [d for d in arr.dims if d not in ("field", "time")]


def _with_units(arr: xr.DataArray, ref: xr.DataArray) -> xr.DataArray:
    arr = arr.drop_vars("units", errors="ignore")
    units = _field_units(ref)
    if units and "field" in arr.dims:
        arr = arr.assign_coords(units=("field", [units.get(f, "") for f in _field_names(arr)]))
    return arr.transpose(*[d for d in ("field", "k", "time") if d in arr.dims], ...)


def _crps_gaussian_np(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """CRPS of N(mu, sigma²) at y, per element; |y − mu| where sigma is 0."""
    from scipy.special import erf

    y, mu, sigma = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (y, mu, sigma)))
    err = y - mu
    positive = sigma > 0
    safe = np.where(positive, sigma, 1.0)
    z = err / safe
    value = safe * (z * erf(z / math.sqrt(2.0)) + math.sqrt(2.0 / math.pi) * np.exp(-0.5 * z * z)
                    - 1.0 / math.sqrt(math.pi))
    return np.where(positive, value, np.abs(err))


def _crps_ensemble_np(y: np.ndarray, x: np.ndarray, fair: bool) -> np.ndarray:
    """Ensemble CRPS per element; members along the last axis of ``x``.

    ``Σ_ij |x_i − x_j| = 2 Σ_k (2k − m − 1) x_(k)`` over the sorted members
    x_(1) <= ... <= x_(m): O(m log m) time and O(m) memory per pixel.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m = x.shape[-1]
    spread = np.abs(x - y[..., None]).mean(axis=-1)
    weights = 2.0 * np.arange(1, m + 1) - m - 1
    half_pairs = (np.sort(x, axis=-1) * weights).sum(axis=-1)  # = Σ_{i<j} (x_(j) − x_(i))
    return spread - half_pairs / (m * (m - 1) if fair else m * m)


def _gaussian_pixels(t_arr: xr.DataArray, m_arr: xr.DataArray, s_arr: xr.DataArray) -> xr.DataArray:
    return xr.apply_ufunc(_crps_gaussian_np, t_arr, m_arr, s_arr, dask="parallelized", output_dtypes=[np.float64])


def _ensemble_pixels(t_arr: xr.DataArray, d_arr: xr.DataArray, dim: str, fair: bool) -> xr.DataArray:
    return xr.apply_ufunc(
        _crps_ensemble_np, t_arr, d_arr, input_core_dims=[[], [dim]], kwargs={"fair": fair},
        dask="parallelized", output_dtypes=[np.float64], dask_gufunc_kwargs={"allow_rechunk": True},
    )


def _unpinned_mean(values: xr.DataArray, pinned: xr.DataArray, ref: xr.DataArray, name: str) -> xr.DataArray:
    """Mean over the unpinned pixels of each (field, time); NaN where all are pinned."""
    weights = (~pinned).astype(np.float64)
    reduced = _reduced(ref)
    n = weights.sum(reduced)
    out = _with_units((values * weights).sum(reduced) / n.where(n > 0), ref)
    out.name = name
    return out


def _members(dim: str, d_arr: xr.DataArray, fair: Any) -> int:
    if not isinstance(fair, (bool, np.bool_)):
        raise TypeError(f"fair must be True or False, got {fair!r}.")
    m = d_arr.sizes[dim]
    if fair and m < 2:
        raise ValueError(f"the fair CRPS needs at least two members along {dim!r}, got {m}; pass fair=False.")
    return m


def crps_ensemble(
    truth: xr.Dataset | xr.DataArray,
    draws: xr.Dataset | xr.DataArray,
    *,
    fair: bool = True,
    bounds: Bounds | None = None,
    dim: str = "draw",
) -> xr.DataArray:
    """Continuous ranked probability score of an ensemble, per field and time step.

    Per pixel, with members ``X_1..X_m`` and truth ``y``::

        CRPS = mean_i |X_i − y| − Σ_ij |X_i − X_j| / (2 m (m − 1))   (fair)
        CRPS = mean_i |X_i − y| − Σ_ij |X_i − X_j| / (2 m²)          (plain)

    The fair score is unbiased for the CRPS of the distribution the members
    are drawn from, whatever ``m``; the plain one is the CRPS of the empirical
    distribution of the members. Lower is better; the units are the field's.

    Parameters
    ----------
    truth : xarray.DataArray or xarray.Dataset
        Physical fields; only the time steps ``truth`` and ``draws`` share are scored.
    draws : xarray.DataArray or xarray.Dataset
        Ensemble in the layout of ``truth`` with an extra member dim ``dim``.
    fair : bool, default=True
        Fair (needs two members or more) or plain ensemble CRPS.
    bounds : dict, default=None
        Field bounds for the pinned pixels, judged with the ensemble mean;
        see :func:`pinned_mask` (``None`` reads ``truth``'s CF attrs).
    dim : str, default="draw"
        The member dim of ``draws``.

    Returns
    -------
    xarray.DataArray
        Named ``"crps"`` on dims ``("field", "time")`` (those present): the
        mean over the unpinned pixels of all samples; NaN where every pixel is
        pinned. A ``units`` coordinate along ``field``.

    See Also
    --------
    crps_gaussian : The CRPS of a Gaussian predictive distribution.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> truth = xr.DataArray([[0.0]], dims=("field", "time"), coords={"field": ["pressure"]})
    >>> draws = xr.DataArray([[[-1.0, 1.0]]], dims=("field", "time", "draw"),
    ...                      coords={"field": ["pressure"]})
    >>> crps_ensemble(truth, draws).values.tolist(), crps_ensemble(truth, draws, fair=False).values.tolist()
    ([[0.0]], [[0.5]])
    """
    t_arr, d_arr = _conform(_as_array(truth, "truth"), _as_draws(draws, dim), ("truth", "draws"),
                            extra=dim, intersect=True)
    _members(dim, d_arr, fair)
    resolved = _resolve_bounds(truth, bounds, _field_names(t_arr))
    pinned = _pinned(t_arr, d_arr.mean(dim), resolved, _PINNED_RTOL)
    out = _unpinned_mean(_ensemble_pixels(t_arr, d_arr, dim, bool(fair)), pinned, t_arr, "crps")
    out.attrs = {"long_name": f"{'fair' if fair else 'plain'} ensemble CRPS", "n_members": d_arr.sizes[dim]}
    return out


def crps_gaussian(
    truth: xr.Dataset | xr.DataArray,
    mean: xr.Dataset | xr.DataArray,
    std: xr.Dataset | xr.DataArray,
    *,
    bounds: Bounds | None = None,
) -> xr.DataArray:
    """Closed-form CRPS of the Gaussian predictive distribution ``N(mean, std²)``.

    Per pixel, with ``z = (y − μ) / σ``::

        CRPS = σ · (z · erf(z / √2) + √(2/π) · exp(−z² / 2) − 1 / √π)

    and ``|y − μ|`` where ``σ = 0``. Lower is better; the units are the field's.

    Parameters
    ----------
    truth, mean, std : xarray.DataArray or xarray.Dataset
        Physical fields in the same layout; ``std`` as from
        ``predict(X, return_std=True)`` in physical units, and with every time
        step of ``mean``. Only the time steps truth and mean share are scored.
    bounds : dict, default=None
        Field bounds for the pinned pixels; see :func:`pinned_mask`.

    Returns
    -------
    xarray.DataArray
        Named ``"crps"`` on dims ``("field", "time")`` (those present),
        averaged over the unpinned pixels of all samples.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> truth = xr.DataArray([[0.0, 2.0]], dims=("field", "time"), coords={"field": ["pressure"]})
    >>> mean = xr.zeros_like(truth)
    >>> crps_gaussian(truth, mean, xr.zeros_like(truth)).values.tolist()
    [[0.0, 2.0]]
    >>> round(float(crps_gaussian(truth, mean, xr.ones_like(truth))[0, 0]), 4)  # (√2 − 1) / √π
    0.2337
    """
    t_arr, m_arr, s_arr, pinned = _prepare(truth, mean, std, bounds)
    out = _unpinned_mean(_gaussian_pixels(t_arr, m_arr, s_arr), pinned, t_arr, "crps")
    out.attrs = {"long_name": "CRPS of the Gaussian predictive distribution"}
    return out


def probabilistic_scores(
    truth: xr.Dataset | xr.DataArray,
    mean: xr.Dataset | xr.DataArray,
    std: xr.Dataset | xr.DataArray,
    *,
    draws: xr.Dataset | xr.DataArray | None = None,
    ks: float | Iterable[float] = (1.0, 2.0),
    bounds: Bounds | None = None,
) -> xr.Dataset:
    """Calibration and skill of a probabilistic rollout, per field and lead time.

    All statistics pool the unpinned pixels (:func:`pinned_mask`) of every
    sample, per field and time step; the ``_overall`` ones pool the time steps too.

    Parameters
    ----------
    truth, mean, std : xarray.DataArray or xarray.Dataset
        Physical fields in the same layout (a field Dataset, or a DataArray
        with a ``field`` dim), ``std`` in physical units with every time step
        of ``mean``. The time steps truth and mean share are scored; drop the
        initial state first, it is given, not predicted.
    draws : xarray.DataArray or xarray.Dataset, default=None
        Ensemble members along an extra ``draw`` dim. When given, ``crps`` is
        the fair ensemble CRPS (:func:`crps_ensemble`), else the Gaussian CRPS
        (:func:`crps_gaussian`).
    ks : float or sequence of float, default=(1.0, 2.0)
        Half-widths of the bands ``mean ± k·std``.
    bounds : dict, default=None
        Field bounds for the pinned pixels (``None``: ``truth``'s CF attrs).

    Returns
    -------
    xarray.Dataset
        - ``coverage`` (field, k, time): fraction of truths in ``mean ± k·std``;
          the ``nominal`` coordinate on ``k`` is erf(k/√2), the coverage of a
          calibrated Gaussian. A pixel with ``std = 0`` whose error is within
          1e-5 of the field's largest |truth| is a tie and counts at the
          nominal rate (an exact point forecast is calibrated).
        - ``coverage_overall`` (field, k): the same over all time steps.
        - ``spread`` (field, time): sqrt(mean std²).
        - ``rmse`` (field, time): RMSE of ``mean``.
        - ``spread_skill`` (field, time): spread / rmse, 1 when calibrated;
          ``spread_skill_overall`` (field): from the pooled mean std² and MSE.
        - ``crps`` (field, time) and ``crps_overall`` (field).
        - ``n_pixels`` (field, time): the unpinned pixels used.

        Statistics over no pixel are NaN. The ``units`` coordinate on
        ``field`` gives the units of spread, rmse and crps.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> truth = xr.DataArray(rng.normal(size=(1, 2, 20000)), dims=("field", "time", "x"),
    ...                      coords={"field": ["pressure"], "time": [1.0, 2.0]})
    >>> s = probabilistic_scores(truth, xr.zeros_like(truth), xr.ones_like(truth))
    >>> s["coverage_overall"].round(2).values.tolist(), s["nominal"].round(3).values.tolist()
    ([[0.68, 0.95]], [0.683, 0.954])
    >>> s["spread_skill_overall"].round(2).values.tolist()
    [1.0]
    """
    ks = _ks(ks)
    t_arr, m_arr, s_arr, pinned = _prepare(truth, mean, std, bounds)
    if draws is not None:
        _, d_arr = _conform(t_arr, _as_draws(draws, "draw"), ("truth", "draws"), extra="draw")
        _members("draw", d_arr, True)
        crps_pixels = _ensemble_pixels(t_arr, d_arr, "draw", True)
    else:
        crps_pixels = _gaussian_pixels(t_arr, m_arr, s_arr)
    weights = (~pinned).astype(np.float64)
    reduced = _reduced(t_arr)
    n = weights.sum(reduced)

    def total(values: xr.DataArray) -> xr.DataArray:
        return (values * weights).sum(reduced)

    def per_time(values: xr.DataArray) -> xr.DataArray:
        return values / n.where(n > 0)

    def overall(values: xr.DataArray) -> xr.DataArray:
        if "time" not in values.dims:
            return per_time(values)
        count = n.sum("time")
        return values.sum("time") / count.where(count > 0)

    err = t_arr.astype(np.float64) - m_arr.astype(np.float64)
    abs_err, std64 = np.abs(err), s_arr.astype(np.float64)
    scale = np.abs(t_arr).max(reduced + (["time"] if "time" in t_arr.dims else []))
    tie = (std64 == 0) & (abs_err <= _TIE_RTOL * scale)
    nominal = [_nominal(k) for k in ks]
    covered = xr.concat(
        [total(xr.where(tie, nom, (abs_err <= k * std64).astype(np.float64))) for k, nom in zip(ks, nominal)],
        dim="k",
    ).assign_coords(k=("k", ks, {"long_name": "band half-width in std"}), nominal=("k", nominal))
    var_sum, sq_sum, crps_sum = total(std64**2), total(err**2), total(crps_pixels)
    spread, rmse = np.sqrt(per_time(var_sum)), np.sqrt(per_time(sq_sum))
    rmse_all = np.sqrt(overall(sq_sum))
    kind = "fair ensemble CRPS" if draws is not None else "CRPS of the Gaussian predictive distribution"
    one = {"units": "1"}
    data = {
        "coverage": per_time(covered).assign_attrs(one, long_name="fraction of truths in mean ± k·std"),
        "coverage_overall": overall(covered).assign_attrs(one, long_name="coverage over all time steps"),
        "spread": spread.assign_attrs(long_name="root-mean predicted variance"),
        "rmse": rmse.assign_attrs(long_name="RMSE of the predictive mean"),
        "spread_skill": (spread / rmse.where(rmse > 0)).assign_attrs(one, long_name="spread / RMSE"),
        "spread_skill_overall": (np.sqrt(overall(var_sum)) / rmse_all.where(rmse_all > 0)).assign_attrs(
            one, long_name="spread / RMSE over all time steps"
        ),
        "crps": per_time(crps_sum).assign_attrs(long_name=kind),
        "crps_overall": overall(crps_sum).assign_attrs(long_name=f"{kind} over all time steps"),
        "n_pixels": n.astype(np.int64).assign_attrs(one, long_name="unpinned pixels used"),
    }
    out = xr.Dataset({name: _with_units(arr, t_arr) for name, arr in data.items()})
    out["nominal"].attrs = {"long_name": "coverage of a calibrated Gaussian, erf(k/√2)", "units": "1"}
    out.attrs = {"crps": kind, "pinned_rtol": _PINNED_RTOL, "tie_rtol": _TIE_RTOL}
    if draws is not None:
        out.attrs["n_members"] = int(d_arr.sizes["draw"])
    return out


def coverage(
    truth: xr.Dataset | xr.DataArray,
    mean: xr.Dataset | xr.DataArray,
    std: xr.Dataset | xr.DataArray,
    k: float = 1.0,
    *,
    bounds: Bounds | None | bool = False,
) -> xr.Dataset:
    """Fraction of true values inside the predicted band ``mean ± k·std``.

    For a calibrated Gaussian predictive distribution the fraction approaches
    ``erf(k / sqrt(2))`` (0.683 for k = 1, 0.954 for k = 2), recorded as the
    ``nominal`` attr; a lower value means over-confident, a higher one
    under-confident predictions.

    Parameters
    ----------
    truth, mean, std : xarray.DataArray or xarray.Dataset
        Same layout (physical or token); ``std`` is the predictive standard
        deviation, as returned by ``predict(X, return_std=True)``. Only common
        time steps are compared.
    k : float, default=1.0
        Half-width of the band in standard deviations.
    bounds : dict, None or False, default=False
        ``False`` counts every pixel. Otherwise pinned pixels are left out, as
        in :func:`probabilistic_scores`: ``None`` takes the bounds from
        ``truth``'s CF attrs, a dict ``field -> (lo, hi)`` gives them (see
        :func:`pinned_mask`). A field whose pixels are all pinned gets NaN.

    Returns
    -------
    xarray.Dataset
        ``coverage`` per field (dim ``field``; a scalar without one) and
        ``coverage_overall`` over everything, fractions in [0, 1].

    See Also
    --------
    probabilistic_scores : Coverage per lead time and several k, with spread-skill and CRPS.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> truth = xr.DataArray([[0.0, 1.0, 2.0, 3.0]], dims=("field", "x"),
    ...                      coords={"field": ["pressure"]})
    >>> mean = xr.zeros_like(truth)
    >>> float(coverage(truth, mean, xr.ones_like(truth) * 1.5)["coverage_overall"])
    0.5
    """
    k = _real(k, "k")
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}.")
    t_arr = _as_array(truth, "truth")
    m_arr = _as_array(mean, "mean")
    s_arr = _as_array(std, "std")
    t_arr, m_arr = _align_time(t_arr, m_arr, ("truth", "mean"))
    m_arr, s_arr = _align_time(m_arr, s_arr, ("mean", "std"))
    t_arr = t_arr.sel(time=m_arr["time"]) if "time" in m_arr.coords else t_arr
    if s_arr.dtype.kind in "biuf" and not _is_lazy(s_arr) and bool((s_arr < 0).any()):
        raise ValueError("std must be non-negative (a standard deviation).")
    inside = (np.abs(t_arr - m_arr) <= k * s_arr).astype(float)
    masked = bounds is not False
    if masked:
        if bounds is True:
            raise TypeError("bounds must be False, None or a dict field -> (lo, hi), not True.")
        resolved = _resolve_bounds(truth, bounds, _field_names(t_arr))
        inside = inside.where(~_pinned(t_arr, m_arr, resolved, _PINNED_RTOL))
    per_field = inside.mean([d for d in inside.dims if d != "field"])
    nominal = _nominal(k)
    attrs = {"k": float(k), "nominal": nominal, "units": "1"}
    out = xr.Dataset(
        {
            "coverage": per_field.assign_attrs(attrs, long_name="coverage per field"),
            "coverage_overall": inside.mean().assign_attrs(attrs, long_name="coverage"),
        },
        attrs={"k": float(k), "nominal": nominal},
    )
    if not masked:  # with a mask, NaN marks a field without unpinned pixels
        _check_result(out, "coverage")
    return out
