"""Graded hotspot metrics: overlap of the hot masks (F1, IoU), hotspot counts and excess heat."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import xarray as xr

from skmld._constants import HOTSPOT_THRESHOLD
from skmld.metrics._common import _align_time, _check_result, _pixel_area, _real, _temperature
from skmld.metrics._hotspots import HOTSPOT_CONNECTIVITY, _n_hotspots


def _thresholds(thresholds: Any) -> xr.DataArray:
    """The thresholds as a DataArray on their own ``threshold`` dim (checked)."""
    if isinstance(thresholds, (int, float, np.integer, np.floating)) and not isinstance(
        thresholds, (bool, np.bool_)
    ):
        thresholds = (thresholds,)
    if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, Iterable):
        raise TypeError(f"thresholds must be a number or a sequence of numbers, got {thresholds!r}.")
    values = [_real(t, "threshold") for t in thresholds]
    if not values:
        raise ValueError("thresholds is empty; give at least one threshold.")
    if len(set(values)) != len(values):
        raise ValueError(f"thresholds has duplicate values: {values}.")
    return xr.DataArray(values, dims="threshold", coords={"threshold": values})


def _f1_iou(tp: xr.DataArray, fp: xr.DataArray, fn: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """F1 and IoU from summed counts; both are 1 where both masks are empty (no TP, FP or FN)."""
    f1_den = 2 * tp + fp + fn
    iou_den = tp + fp + fn
    f1 = xr.where(f1_den > 0, 2 * tp / f1_den.where(f1_den > 0), 1.0)
    iou = xr.where(iou_den > 0, tp / iou_den.where(iou_den > 0), 1.0)
    return f1, iou


def _excess_heat(temp: xr.DataArray, thr: xr.DataArray, pixel_area: float) -> xr.DataArray:
    """∫(T − θ)⁺ dA per image and threshold."""
    return (temp.astype(np.float64) - thr).clip(min=0.0).sum(("y", "x")) * pixel_area


def hotspot_mask_scores(
    truth: xr.Dataset | xr.DataArray,
    pred: xr.Dataset | xr.DataArray,
    *,
    thresholds: float | Iterable[float] = (HOTSPOT_THRESHOLD,),
    pixel_area: float | None = None,
    temperature: str = "temperature",
) -> xr.Dataset:
    """Graded hotspot metrics: overlap of the hot masks, hotspot counts and excess heat.

    ``T_hs`` of :func:`hotspot_metrics` is all-or-nothing: a field 50 K under
    the threshold scores like a field without any hotspot. These metrics grade
    how close a prediction comes: how well its hot pixels (``T > θ``) overlap
    the true ones, whether it has as many separate hotspots, and how much heat
    it puts above the threshold.

    Parameters
    ----------
    truth, pred : xarray.DataArray or xarray.Dataset
        Temperature in K on dims ``(..., "y", "x")`` (usually ``("sample",
        "time", "y", "x")``), or the canonical field array / field Dataset,
        from which the field named ``temperature`` is selected. Only the time
        steps both have are compared; every other dim must match.
    thresholds : float or sequence of float, default=(875.0,)
        Thresholds θ in K; a pixel is hot when strictly above θ. Each is one
        entry of the ``threshold`` dim of the result.
    pixel_area : float, default=None
        Area of one pixel, for the excess heat. ``None`` takes ``dx * dy`` from
        ``truth``'s ``x`` and ``y`` coordinates (µm²); without them it is 1, the
        excess heat is in K·pixel and a warning says so.
    temperature : str, default="temperature"
        Name of the temperature variable or field, as in :func:`hotspot_metrics`.

    Returns
    -------
    xarray.Dataset
        On dim ``threshold`` (coordinate: the thresholds):

        - ``f1``, ``iou``: F1 = 2TP / (2TP + FP + FN) and IoU = TP / (TP + FP
          + FN) of the hot masks, the pixel counts TP (hot in both), FP (hot
          only in ``pred``) and FN (hot only in ``truth``) summed over all
          samples, times and pixels first. Both are **1 when both masks are
          empty everywhere** (nothing to find, nothing found).
        - ``f1_per_time`` (dims ``threshold``, ``time``; only with a ``time``
          dim): F1 with the counts summed over samples and pixels, 1 at a time
          where both masks are empty.
        - ``n_hotspots_true``, ``n_hotspots_pred``: mean over samples and
          times of the number of hotspots, 4-connected regions of hot pixels
          (see :func:`hotspot_counts`); ``n_hotspots_rmse``: the RMSE of that
          number over samples and times.
        - ``excess_heat_true``, ``excess_heat_pred``: mean over samples and
          times of the excess heat ∫(T − θ)⁺ dA = Σ max(T − θ, 0) · pixel area,
          in K·µm²; ``excess_heat_rmse``: its RMSE over samples and times.

        Every variable has a ``units`` attr; the Dataset's attrs record
        ``pixel_area``, ``threshold_units`` and ``connectivity`` (4).

    See Also
    --------
    hotspot_counts : The number of hotspots of each image.
    hotspot_rmse : RMSE of hotspot temperature and area.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> T = np.full((1, 1, 3, 3), 300.0)
    >>> T[0, 0, 0, :3] = 1000.0                    # truth: three hot pixels
    >>> P = T.copy()
    >>> P[0, 0, 0, 2] = 800.0                      # prediction misses one ...
    >>> P[0, 0, 2, 2] = 900.0                      # ... and adds another
    >>> coords = {"y": np.arange(3.0), "x": np.arange(3.0)}
    >>> dims = ("sample", "time", "y", "x")
    >>> s = hotspot_mask_scores(xr.DataArray(T, dims=dims, coords=coords),
    ...                         xr.DataArray(P, dims=dims, coords=coords))
    >>> s["f1"].values.round(4).tolist(), s["iou"].values.tolist()
    ([0.6667], [0.5])
    >>> s["n_hotspots_pred"].values.tolist(), s["excess_heat_true"].values.tolist()
    ([2.0], [375.0])
    """
    thr = _thresholds(thresholds)
    pixel_area = _real(pixel_area, "pixel_area", positive=True, allow_none=True)
    t_temp, p_temp = _align_time(
        _temperature(truth, temperature), _temperature(pred, temperature), ("truth", "pred")
    )
    pixel_area, area_units, note = _pixel_area(t_temp, pixel_area, "the excess heat is in K·pixel")
    temp_units = str(t_temp.attrs.get("units", "K"))

    hot_t, hot_p = t_temp > thr, p_temp > thr
    pooled = [d for d in hot_t.dims if d != "threshold"]
    per_image = [d for d in t_temp.dims if d not in ("y", "x")]
    tp, fp, fn = (hot_t & hot_p), (hot_p & ~hot_t), (hot_t & ~hot_p)
    f1, iou = _f1_iou(*(m.sum(pooled) for m in (tp, fp, fn)))
    data = {
        "f1": f1.assign_attrs(units="1", long_name="F1 score of the hot masks"),
        "iou": iou.assign_attrs(units="1", long_name="intersection over union of the hot masks"),
    }
    if "time" in t_temp.dims:
        per_time = [d for d in pooled if d != "time"]
        f1_t, _ = _f1_iou(*(m.sum(per_time) for m in (tp, fp, fn)))
        data["f1_per_time"] = f1_t.transpose("threshold", "time").assign_attrs(
            units="1", long_name="F1 score of the hot masks per time step"
        )

    def summarise(name: str, a: xr.DataArray, b: xr.DataArray, units: str, long_name: str) -> None:
        data[f"{name}_true"] = a.mean(per_image).assign_attrs(units=units, long_name=f"mean {long_name} (truth)")
        data[f"{name}_pred"] = b.mean(per_image).assign_attrs(
            units=units, long_name=f"mean {long_name} (prediction)"
        )
        rmse = np.sqrt(((a - b) ** 2).mean(per_image))
        data[f"{name}_rmse"] = rmse.assign_attrs(units=units, long_name=f"RMSE of the {long_name}")

    n_t, n_p = _n_hotspots(hot_t).astype(np.float64), _n_hotspots(hot_p).astype(np.float64)
    summarise("n_hotspots", n_t, n_p, "1", "number of hotspots")
    heat_units = f"{temp_units}·{area_units}"
    summarise(
        "excess_heat", _excess_heat(t_temp, thr, pixel_area), _excess_heat(p_temp, thr, pixel_area),
        heat_units, "excess heat above the threshold",
    )
    attrs: dict[str, Any] = {
        "threshold_units": temp_units,
        "pixel_area": pixel_area,
        "connectivity": HOTSPOT_CONNECTIVITY,
    }
    if note:
        attrs["note"] = note
    out = xr.Dataset(data, attrs=attrs)
    out["threshold"].attrs = {"units": temp_units, "long_name": "hotspot threshold"}
    _check_result(out, "hotspot_mask_scores")
    return out
