"""Hotspot metrics: hotspot temperature and area, their rates and RMSE, and hotspot counts.

A pixel is *hot* when its temperature is strictly above ``threshold``; ``T_hs``
is the mean temperature of the hot pixels (0 when there are none), ``A_hs`` the
hot-pixel count times the pixel area, and their rates are forward differences
over the time coordinate (Azarfar et al., 2025).
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from skmld._constants import HOTSPOT_THRESHOLD
from skmld.metrics._common import (
    _HOTSPOT_VARS,
    INTERVAL_DIM,
    _align_time,
    _check_result,
    _coord_spacing,
    _pixel_area,
    _real,
    _temperature,
    _time_units,
)


def hotspot_metrics(
    data: xr.Dataset | xr.DataArray,
    threshold: float = HOTSPOT_THRESHOLD,
    pixel_area: float | None = None,
    dt: float | None = None,
    *,
    temperature: str = "temperature",
) -> xr.Dataset:
    """Hotspot temperature, area and their rates for every sample and time step.

    Parameters
    ----------
    data : xarray.DataArray or xarray.Dataset
        Temperature in K on dims ``(..., "y", "x")`` (usually ``("sample",
        "time", "y", "x")``), or the canonical field array / field Dataset, from
        which the field named ``temperature`` is selected.
    threshold : float, default=875.0
        A pixel is hot when its temperature is strictly above this (K).
    pixel_area : float, default=None
        Area of one pixel. ``None`` takes ``dx * dy`` from the mean spacing of the
        ``x`` and ``y`` coordinates (µm², uniform grid assumed); without those
        coordinates the area is 1 (a pixel count) and a warning says so.
    dt : float, default=None
        Time between snapshots. ``None`` uses the differences of the ``time``
        coordinate (non-uniform steps allowed); without it, 1 per step.
    temperature : str, default="temperature"
        Name of the temperature variable of a Dataset (or entry of a field
        array's ``field`` dim), e.g. ``"T"``; unused for a bare temperature array.

    Returns
    -------
    xarray.Dataset
        ``T_hs`` and ``A_hs`` on the input's dims without ``y``/``x``;
        ``dT_hs_dt`` and ``dA_hs_dt`` (forward differences, S - 1 values for S
        snapshots) with ``time`` replaced by ``"interval"``, whose coordinate is
        the start time of each interval. Every variable has a ``units`` attr;
        the Dataset's attrs record ``threshold`` and ``pixel_area``.

    Notes
    -----
    ``T_hs = sum(T * [T > θ]) / N_hs`` (0 when ``N_hs = 0``), with
    ``N_hs = sum([T > θ])`` over ``y`` and ``x``; ``A_hs = N_hs * pixel_area``;
    ``dM/dt[i] = (M[i + 1] - M[i]) / (t[i + 1] - t[i])``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> T = np.full((1, 2, 4, 4), 300.0)
    >>> T[0, 1, 0, :2] = [1000.0, 1200.0]          # two hot pixels at t = 1 ns
    >>> T = xr.DataArray(T, dims=("sample", "time", "y", "x"),
    ...                  coords={"time": [0.0, 1.0], "y": np.arange(4) * 0.5,
    ...                          "x": np.arange(4) * 0.5})
    >>> hs = hotspot_metrics(T)
    >>> hs["T_hs"].values.tolist(), hs["A_hs"].values.tolist()
    ([[0.0, 1100.0]], [[0.0, 0.5]])
    >>> hs["dT_hs_dt"].values.tolist()
    [[1100.0]]
    """
    threshold = _real(threshold, "threshold")
    pixel_area = _real(pixel_area, "pixel_area", positive=True, allow_none=True)
    dt = _real(dt, "dt", positive=True, allow_none=True)
    temp = _temperature(data, temperature)
    spatial = ("y", "x")
    pixel_area, area_units, note = _pixel_area(temp, pixel_area, "A_hs counts pixels")

    hot = temp > threshold
    count = hot.sum(spatial)
    hot_sum = temp.where(hot, 0.0).sum(spatial)
    # Divide by NaN rather than 0 where there is no hotspot, then replace: no warnings.
    t_hs = xr.where(count > 0, hot_sum / count.where(count > 0), 0.0)
    a_hs = count * pixel_area

    temp_units = str(temp.attrs.get("units", "K"))
    t_units = _time_units(temp)
    t_hs = t_hs.assign_attrs(units=temp_units, long_name="hotspot temperature")
    a_hs = a_hs.assign_attrs(units=area_units, long_name="hotspot area")
    data = {"T_hs": t_hs, "A_hs": a_hs}

    if "time" in temp.dims:
        data["dT_hs_dt"] = _forward_rate(t_hs, dt).assign_attrs(
            units=f"{temp_units}/{t_units}", long_name="rate of hotspot temperature"
        )
        data["dA_hs_dt"] = _forward_rate(a_hs, dt).assign_attrs(
            units=f"{area_units}/{t_units}", long_name="rate of hotspot area"
        )
    attrs = {"threshold": float(threshold), "threshold_units": temp_units, "pixel_area": pixel_area}
    if note:
        attrs["note"] = note
    out = xr.Dataset(data, attrs=attrs)
    _check_result(out, "hotspot_metrics")
    return out


def _forward_rate(values: xr.DataArray, dt: float | None) -> xr.DataArray:
    """Forward difference over ``time`` on an ``interval`` dim labelled by start times."""
    # label="lower": each difference sits at the start of its interval.
    rate = values.diff("time", label="lower")
    if dt is not None:
        rate = rate / float(dt)
    elif "time" in values.coords:
        t = values["time"]
        if np.issubdtype(t.dtype, np.timedelta64):
            t = t / np.timedelta64(1, "ns")
        try:
            t_values = np.asarray(t.values, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"the time coordinate must be numeric to take rates, got dtype {t.dtype}; "
                             "pass dt=.") from None
        steps = np.diff(t_values)
        if not (np.isfinite(t_values).all() and (steps > 0).all()):
            raise ValueError(f"the time coordinate must be finite and strictly increasing to take rates, got "
                             f"{t_values.tolist()}; sort with .sortby('time') or pass dt=.")
        rate = rate / xr.DataArray(steps, dims="time")
    rate = rate.rename(time=INTERVAL_DIM)
    if INTERVAL_DIM in rate.coords:
        rate[INTERVAL_DIM].attrs = {
            "long_name": "start time of the forward-difference interval",
            "units": _time_units(values),
        }
    return rate


def hotspot_rmse(
    truth: xr.Dataset | xr.DataArray,
    pred: xr.Dataset | xr.DataArray,
    threshold: float = HOTSPOT_THRESHOLD,
    pixel_area: float | None = None,
    dt: float | None = None,
    *,
    temperature: str = "temperature",
) -> xr.Dataset:
    """RMSE of the hotspot metrics between truth and prediction.

    Parameters
    ----------
    truth, pred : xarray.DataArray or xarray.Dataset
        Temperature (or field data holding the field named ``temperature``) in
        physical units; see :func:`hotspot_metrics`. Only common time steps are
        compared.
    threshold, pixel_area, dt, temperature
        As in :func:`hotspot_metrics`; the pixel area and time step come from
        ``truth`` and are applied to both, so they cannot differ.

    Returns
    -------
    xarray.Dataset
        For each metric ``M`` in ``T_hs``, ``A_hs``, ``dT_hs_dt``, ``dA_hs_dt``:
        ``M`` is the RMSE per time step over samples (dim ``time``, or
        ``interval`` for the rates) and ``M_overall`` the RMSE over samples and
        times (a scalar), both with the metric's ``units``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> T = xr.DataArray(np.full((2, 3, 4, 4), 1000.0),
    ...                  dims=("sample", "time", "y", "x"),
    ...                  coords={"time": [0.0, 1.0, 2.0], "x": np.arange(4.0),
    ...                          "y": np.arange(4.0)})
    >>> r = hotspot_rmse(T, T + 10.0)
    >>> float(r["T_hs_overall"]), float(r["A_hs_overall"])
    (10.0, 0.0)
    """
    threshold = _real(threshold, "threshold")
    pixel_area = _real(pixel_area, "pixel_area", positive=True, allow_none=True)
    dt = _real(dt, "dt", positive=True, allow_none=True)
    t_temp = _temperature(truth, temperature)
    p_temp = _temperature(pred, temperature)
    t_temp, p_temp = _align_time(t_temp, p_temp, ("truth", "pred"))
    if pixel_area is None:
        dy, dx = _coord_spacing(t_temp, "y"), _coord_spacing(t_temp, "x")
        if dy is not None and dx is not None:
            pixel_area = dx * dy
    with warnings.catch_warnings():
        # Warn once (for truth) about a missing pixel area, not twice.
        m_true = hotspot_metrics(t_temp, threshold, pixel_area, dt)
        warnings.simplefilter("ignore", UserWarning)
        m_pred = hotspot_metrics(p_temp, threshold, m_true.attrs["pixel_area"], dt)
    out = {}
    for name in _HOTSPOT_VARS:
        if name not in m_true:
            continue
        sq = (m_true[name] - m_pred[name]) ** 2
        keep = [d for d in ("time", INTERVAL_DIM) if d in sq.dims]
        attrs = {"units": m_true[name].attrs["units"]}
        out[name] = np.sqrt(sq.mean([d for d in sq.dims if d not in keep])).assign_attrs(
            attrs, long_name=f"RMSE of {m_true[name].attrs['long_name']} per time step"
        )
        out[f"{name}_overall"] = np.sqrt(sq.mean()).assign_attrs(
            attrs, long_name=f"RMSE of {m_true[name].attrs['long_name']} over samples and times"
        )
    out = xr.Dataset(out, attrs=dict(m_true.attrs))
    _check_result(out, "hotspot_rmse")
    return out


#: Hotspots are 4-connected regions of hot pixels: pixels sharing an edge.
HOTSPOT_CONNECTIVITY = 4


def _count_regions(mask: np.ndarray) -> np.ndarray:
    """Number of 4-connected True regions of each image along the last two axes."""
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(2, 1)  # the cross: 4-connectivity
    images = mask.reshape(-1, *mask.shape[-2:])
    counts = np.fromiter(
        (ndimage.label(image, structure=structure)[1] for image in images), dtype=np.int64, count=len(images)
    )
    return counts.reshape(mask.shape[:-2])


def _n_hotspots(hot: xr.DataArray) -> xr.DataArray:
    """Hotspot count per image of a boolean mask on ``(..., "y", "x")`` (lazy on dask)."""
    return xr.apply_ufunc(
        _count_regions,
        hot,
        input_core_dims=[["y", "x"]],
        dask="parallelized",
        output_dtypes=[np.int64],
        dask_gufunc_kwargs={"allow_rechunk": True},
    )


def hotspot_counts(
    data: xr.Dataset | xr.DataArray, threshold: float = HOTSPOT_THRESHOLD, *, temperature: str = "temperature"
) -> xr.DataArray:
    """Number of hotspots, the connected regions of hot pixels, per image.

    A pixel is hot when its temperature is strictly above ``threshold``; two
    hot pixels belong to the same hotspot when a chain of hot pixels, each
    sharing an *edge* with the next, joins them (4-connectivity: pixels that
    touch only at a corner are separate hotspots).

    Parameters
    ----------
    data : xarray.DataArray or xarray.Dataset
        Temperature in K on dims ``(..., "y", "x")``, or the canonical field
        array / field Dataset, from which the field named ``temperature`` is
        selected.
    threshold : float, default=875.0
        Hot means strictly above this (K).
    temperature : str, default="temperature"
        Name of the temperature variable or field, as in :func:`hotspot_metrics`.

    Returns
    -------
    xarray.DataArray
        Integer counts named ``"n_hotspots"`` on the input's dims without
        ``y``/``x`` (usually ``("sample", "time")``); lazy on dask input.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> T = np.full((1, 1, 4, 5), 300.0)
    >>> T[0, 0, :2, 0] = 1000.0                    # one hotspot of two pixels
    >>> T[0, 0, 3, 3] = 900.0                      # and a second one
    >>> T = xr.DataArray(T, dims=("sample", "time", "y", "x"))
    >>> hotspot_counts(T).values.tolist()
    [[2]]
    """
    threshold = _real(threshold, "threshold")
    temp = _temperature(data, temperature)
    count = _n_hotspots(temp > threshold)
    count.name = "n_hotspots"
    count.attrs = {
        "units": "1",
        "long_name": "number of hotspots",
        "threshold": threshold,
        "threshold_units": str(temp.attrs.get("units", "K")),
        "connectivity": HOTSPOT_CONNECTIVITY,
    }
    return count
