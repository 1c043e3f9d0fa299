"""Evaluation metrics for field rollouts: field errors and skill, hotspot metrics, calibration, scorers.

Everything here takes xarray objects and returns xarray objects, addresses
dimensions by name, and is built only from lazy xarray operations, so dask-backed
inputs stay lazy until ``.compute()`` (or ``float(...)``) is called. No TensorFlow.

The hotspot definitions follow the energetic-materials literature and the
reference implementation of Azarfar et al. (2025): a pixel is *hot* when its
temperature is strictly above ``threshold``; the hotspot temperature ``T_hs`` is
the mean temperature of the hot pixels (0 when there are none), the hotspot area
``A_hs`` is the hot-pixel count times the pixel area, and their rates are forward
differences over the time coordinate. Beside these all-or-nothing metrics,
:func:`hotspot_mask_scores` grades a prediction by the overlap of its hot pixels
with the true ones (F1, IoU), its number of hotspots and its excess heat
∫(T − θ)⁺ dA; :func:`skill_score` measures each field against a baseline.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Hashable, Iterable

import numpy as np
import xarray as xr

__all__ = [
    "coverage",
    "field_rmse",
    "get_scorer",
    "get_scorer_names",
    "hotspot_counts",
    "hotspot_mask_scores",
    "hotspot_metrics",
    "hotspot_rmse",
    "r2_per_field",
    "skill_score",
]

# Units of the canonical fields, used when the data carry no ``units`` attrs.
DEFAULT_UNITS = {"temperature": "K", "pressure": "GPa", "microstructure": "-"}
_TOKEN_DIMS = ("token_y", "token_x", "patch_y", "patch_x")
_HOTSPOT_VARS = ("T_hs", "A_hs", "dT_hs_dt", "dA_hs_dt")
# Dimension of the rates: S snapshots give S - 1 forward differences, which
# cannot share the ``time`` index with the values in one Dataset.
INTERVAL_DIM = "interval"


# ----------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------


def _is_lazy(arr: xr.DataArray) -> bool:
    return type(arr.data).__module__.startswith("dask.")


def _check_values(arr: xr.DataArray, name: str) -> xr.DataArray:
    """Real numbers, no empty dim, and (NumPy-backed data only) no NaN or inf; else ValueError saying where."""
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers (bool, int or float), got dtype {arr.dtype}.")
    empty = [str(d) for d in arr.dims if arr.sizes[d] == 0]
    if empty:
        raise ValueError(f"{name} has empty dims {empty}: sizes {dict(arr.sizes)}.")
    for dim, index in arr.indexes.items():
        if not index.is_unique:
            raise ValueError(f"{name}'s {dim!r} coordinate has duplicate values; inputs are aligned on it.")
    if arr.dtype.kind == "f" and not _is_lazy(arr):
        values = np.asarray(arr.values)
        bad = ~np.isfinite(values)
        if bad.any():
            index = np.argwhere(bad)[0]
            where = ", ".join(
                f"{d}={np.asarray(arr[d].values[i]).item()!r}" if d in arr.coords else f"{d} index {i}"
                for d, i in zip(arr.dims, index) if d not in ("y", "x")
            )
            kind = "NaN" if np.isnan(values[tuple(index)]) else "inf"
            raise ValueError(f"{name} contains {kind} (first at {where or 'index ' + str(tuple(index))}).")
    return arr


def _check_result(obj: xr.Dataset | xr.DataArray, what: str) -> None:
    """A metric computed from finite input must be finite (NumPy-backed results only)."""
    parts = obj.data_vars.items() if isinstance(obj, xr.Dataset) else [(obj.name, obj)]
    for name, arr in parts:
        if arr.dtype.kind == "f" and not _is_lazy(arr) and not np.isfinite(np.asarray(arr.values)).all():
            raise ValueError(
                f"{what}: {name} is NaN or inf although the inputs are finite: their coordinates do not "
                "overlap (xarray aligns the inputs on them), or the inputs (or pixel_area, dt, the x/y/time "
                "coordinates) are too large for float64 arithmetic."
            )


def _real(value: Any, name: str, *, positive: bool = False, allow_none: bool = False) -> float | None:
    """A finite real parameter (not a bool), > 0 when ``positive``, else ValueError/TypeError."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}.")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be {'a positive' if positive else 'a'} finite number, got {value!r}.")
    return value


def _as_array(obj: xr.Dataset | xr.DataArray, name: str = "data") -> xr.DataArray:
    """Return *obj* as a DataArray (a Dataset's variables stacked along ``field``), values checked."""
    return _check_values(_as_array_unchecked(obj, name), name)


def _as_array_unchecked(obj: xr.Dataset | xr.DataArray, name: str = "data") -> xr.DataArray:
    if isinstance(obj, xr.DataArray):
        return obj
    if isinstance(obj, xr.Dataset):
        if not obj.data_vars:
            raise ValueError(f"{name} is a Dataset without data variables; expected one per field.")
        from skmld.fields import as_fields  # the single source of truth, units coordinate included

        return as_fields(obj)
    raise TypeError(
        f"{name} must be an xarray DataArray or Dataset, got {type(obj).__name__}."
    )


def _field_units(arr: xr.DataArray) -> dict[Hashable, str]:
    """Units per field name: from a ``units`` coord, the attrs, or the defaults."""
    if "field" not in arr.dims:
        return {}
    fields = [f.item() if hasattr(f, "item") else f for f in arr["field"].values]
    if "units" in arr.coords and arr["units"].dims == ("field",):
        # An empty string marks "no units" (skmld.fields): fall back to the defaults.
        return {
            f: str(u) or DEFAULT_UNITS.get(str(f), "")
            for f, u in zip(fields, arr["units"].values)
        }
    return {f: DEFAULT_UNITS.get(str(f), "") for f in fields}


def _align_time(a: xr.DataArray, b: xr.DataArray, names: tuple[str, str]) -> tuple:
    """Align two arrays on their common times; all other dimensions must match exactly."""
    for dim in set(a.dims) ^ set(b.dims):
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same dimensions; {dim!r} is only in "
            f"{names[0] if dim in a.dims else names[1]} (dims {a.dims} vs {b.dims}). "
            "If one of them is in token layout, convert it with "
            "tokenizer.inverse_transform(...) first."
        )
    for dim in a.dims:
        if dim != "time" and a.sizes[dim] != b.sizes[dim]:
            raise ValueError(
                f"{names[0]} and {names[1]} differ in size along {dim!r}: "
                f"{a.sizes[dim]} vs {b.sizes[dim]}."
            )
    # A rollout may be shorter than the truth: compare the times both have.
    exclude = [d for d in a.dims if d != "time"]
    a, b = xr.align(a, b, join="inner", exclude=exclude)
    if "time" in a.dims and a.sizes["time"] == 0:
        raise ValueError(f"{names[0]} and {names[1]} share no time coordinate values.")
    return a, b


def _temperature(obj: xr.Dataset | xr.DataArray, field: str = "temperature") -> xr.DataArray:
    """Pick the temperature field out of a Dataset or canonical array."""
    if isinstance(obj, xr.Dataset):
        if field not in obj.data_vars:
            raise ValueError(
                f"Dataset has no {field!r} variable; variables are {list(obj.data_vars)}."
            )
        temp = obj[field]
    elif isinstance(obj, xr.DataArray):
        temp = obj
        if "field" in obj.dims:
            names = [str(f) for f in obj["field"].values]
            if field not in names:
                raise ValueError(f"no {field!r} along dim 'field'; fields are {names}.")
            unit = _field_units(obj).get(field, "")
            temp = obj.sel(field=field, drop=True)
            # Keep the field's units as an attr, not a stray scalar coordinate.
            temp = temp.drop_vars("units", errors="ignore")
            if unit and "units" not in temp.attrs:
                temp = temp.assign_attrs(units=unit)
    else:
        raise TypeError(f"temperature must be a DataArray or Dataset, got {type(obj).__name__}.")
    missing = [d for d in ("y", "x") if d not in temp.dims]
    if missing:
        hint = (
            " The input looks like tokens: convert with tokenizer.inverse_transform(...)."
            if any(d in temp.dims for d in _TOKEN_DIMS)
            else ""
        )
        raise ValueError(
            f"temperature is missing spatial dimension(s) {missing}; dims are {temp.dims}.{hint}"
        )
    return _check_values(temp, "temperature")


def _coord_spacing(arr: xr.DataArray, dim: str) -> float | None:
    """Uniform grid spacing along *dim* from its coordinate, or None when unknown."""
    if dim not in arr.coords or arr.sizes[dim] < 2:
        return None
    values = np.asarray(arr[dim].values, dtype=float)
    return float(np.mean(np.abs(np.diff(values))))


def _pixel_area(
    temp: xr.DataArray, pixel_area: float | None, what: str, stacklevel: int = 4
) -> tuple[float, str, str | None]:
    """``(pixel_area, area_units, note)``: the given area, else dx * dy from the coordinates.

    Without x/y coordinates the area is 1 (areas count pixels) and a UserWarning
    says so (``what`` names the consequence); ``note`` is then that message.
    ``stacklevel`` 4 points at the caller of the public function calling this.
    """
    if pixel_area is not None:
        units = f"{temp['x'].attrs.get('units', 'µm')}^2" if "x" in temp.coords else "µm^2"
        return float(pixel_area), units, None
    dy, dx = _coord_spacing(temp, "y"), _coord_spacing(temp, "x")
    if dy is None or dx is None:
        note = f"no x/y coordinates to derive the pixel area from: {what}"
        warnings.warn(note + "; pass pixel_area= for physical units.", UserWarning, stacklevel=stacklevel)
        return 1.0, "pixel", note
    return dx * dy, f"{temp['x'].attrs.get('units', 'µm')}^2", None


def _time_units(arr: xr.DataArray) -> str:
    if "time" in arr.coords:
        return str(arr["time"].attrs.get("units", "ns"))
    return "step"


# ----------------------------------------------------------------------------
# Field RMSE
# ----------------------------------------------------------------------------


def field_rmse(
    truth: xr.Dataset | xr.DataArray,
    pred: xr.Dataset | xr.DataArray,
    *,
    dim: str | Iterable[str] | None = None,
) -> xr.DataArray:
    """Root-mean-square error per field and time step.

    Parameters
    ----------
    truth, pred : xarray.DataArray or xarray.Dataset
        Fields in the same layout: canonical ``("sample", "time", "field", "y",
        "x")``, a field Dataset, or token layout. Only the time steps both have
        are compared (a rollout may be shorter than the truth).
    dim : str or iterable of str, default=None
        Dimensions to average over. ``None`` averages over every dimension except
        ``"field"`` and ``"time"`` (samples, space, and token dims if present).

    Returns
    -------
    xarray.DataArray
        Named ``"field_rmse"`` with dims ``("field", "time")`` (those present),
        in the units of the inputs: K, GPa and - for physical fields, and a
        ``units`` coordinate along ``field``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> truth = xr.DataArray(np.zeros((2, 3, 1, 4, 4)),
    ...                      dims=("sample", "time", "field", "y", "x"),
    ...                      coords={"field": ["temperature"]})
    >>> field_rmse(truth, truth + 5.0).values.tolist()
    [[5.0, 5.0, 5.0]]
    """
    t_arr, p_arr = _align_time(
        _as_array(truth, "truth"), _as_array(pred, "pred"), ("truth", "pred")
    )
    if dim is None:
        dims = [d for d in t_arr.dims if d not in ("field", "time")]
    else:
        if not isinstance(dim, str) and (
            not isinstance(dim, Iterable) or not all(isinstance(d, str) for d in dim)
        ):
            raise TypeError(f"dim must be a dimension name or a sequence of names, got {dim!r}.")
        dims = [dim] if isinstance(dim, str) else list(dim)
        missing = [d for d in dims if d not in t_arr.dims]
        if missing:
            raise ValueError(f"cannot reduce over {missing}: dims are {t_arr.dims}.")
    err = t_arr - p_arr
    rmse = np.sqrt((err**2).mean(dims))
    units = _field_units(t_arr)
    if units and "field" in rmse.dims:
        rmse = rmse.assign_coords(units=("field", [units.get(f, "") for f in rmse["field"].values]))
    order = [d for d in ("field", "time") if d in rmse.dims]
    rmse = rmse.transpose(*order, ...)
    rmse.name = "field_rmse"
    rmse.attrs = {"long_name": "root-mean-square error", "reduced_over": ", ".join(map(str, dims))}
    _check_result(rmse, "field_rmse")
    return rmse


def r2_per_field(
    truth: xr.Dataset | xr.DataArray,
    pred: xr.Dataset | xr.DataArray,
) -> xr.DataArray:
    """Coefficient of determination of each field, over every other dimension.

    ``R²_f = 1 − Σ(truth − pred)² / Σ(truth − mean_f)²`` with the sums and the
    mean over all samples, times, cells (and token dims) of field ``f``. Each
    field is judged on its own: 0 is the score of predicting the field's mean
    everywhere, whatever the other fields do. A field that is constant in
    ``truth`` scores 1 if predicted exactly, else NaN.

    Parameters
    ----------
    truth, pred : xarray.DataArray or xarray.Dataset
        Fields in the same layout (canonical, field Dataset or tokens); only the
        time steps both have are compared. Drop the initial state first when
        scoring a rollout (it is given, not predicted).

    Returns
    -------
    xarray.DataArray
        Named ``"r2"`` on dim ``"field"``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> truth = xr.DataArray(np.arange(8.0).reshape(2, 1, 2, 2), dims=("sample", "time", "field", "x"),
    ...                      coords={"field": ["a", "b"]})
    >>> r2_per_field(truth, truth).values.tolist()
    [1.0, 1.0]
    """
    t_arr, p_arr = _align_time(_as_array(truth, "truth"), _as_array(pred, "pred"), ("truth", "pred"))
    if "field" not in t_arr.dims:
        raise ValueError(f"r2_per_field needs a 'field' dim; truth has dims {t_arr.dims}.")
    per = [d for d in t_arr.dims if d != "field"]
    t64, p64 = t_arr.astype(np.float64), p_arr.astype(np.float64)
    ss_res = ((t64 - p64) ** 2).sum(per)
    ss_tot = ((t64 - t64.mean(per)) ** 2).sum(per)
    r2 = xr.where(ss_tot > 0, 1.0 - ss_res / ss_tot.where(ss_tot > 0), xr.where(ss_res == 0, 1.0, np.nan))
    r2.name = "r2"
    r2.attrs = {"long_name": "coefficient of determination per field", "reduced_over": ", ".join(map(str, per))}
    return r2


def skill_score(
    truth: xr.Dataset | xr.DataArray,
    pred: xr.Dataset | xr.DataArray,
    reference: xr.Dataset | xr.DataArray,
) -> xr.DataArray:
    """MSE skill score of each field against a reference forecast.

    ``skill_f = 1 − MSE_f(pred) / MSE_f(reference)``, each MSE over every dim
    but ``field`` (samples, times, cells, token dims). The reference is a
    baseline such as persistence (the initial state repeated) or climatology
    (the training mean at each time and cell): 1 is a perfect prediction, 0 one
    as good as the reference, and a negative skill one worse than it.

    Parameters
    ----------
    truth, pred, reference : xarray.DataArray or xarray.Dataset
        Fields in the same layout (canonical, field Dataset or tokens); only
        the time steps all three have are compared. Drop the initial state
        first when scoring a rollout against persistence, which is exact there.

    Returns
    -------
    xarray.DataArray
        Named ``"skill"`` on dim ``"field"`` (a scalar for inputs without one),
        dimensionless. NaN for a field the reference predicts exactly (its MSE
        is 0, so no skill can be measured against it).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> truth = xr.DataArray(np.arange(6.0).reshape(1, 3, 2), dims=("sample", "time", "field"),
    ...                      coords={"field": ["temperature", "pressure"]})
    >>> reference = truth.isel(time=[0, 0, 0]).assign_coords(time=truth["time"])
    >>> skill_score(truth, truth, reference).values.tolist()
    [1.0, 1.0]
    >>> skill_score(truth, reference, reference).values.tolist()
    [0.0, 0.0]
    """
    t_arr = _as_array(truth, "truth")
    p_arr = _as_array(pred, "pred")
    r_arr = _as_array(reference, "reference")
    t_arr, p_arr = _align_time(t_arr, p_arr, ("truth", "pred"))
    t_arr, r_arr = _align_time(t_arr, r_arr, ("truth", "reference"))
    if "time" in t_arr.dims and "time" in t_arr.coords:
        p_arr = p_arr.sel(time=t_arr["time"])
    per = [d for d in t_arr.dims if d != "field"]
    t64 = t_arr.astype(np.float64)
    mse_pred = ((t64 - p_arr.astype(np.float64)) ** 2).mean(per)
    mse_ref = ((t64 - r_arr.astype(np.float64)) ** 2).mean(per)
    skill = 1.0 - mse_pred / mse_ref.where(mse_ref > 0)
    # The score is dimensionless: drop the inputs' per-field units coordinate.
    skill = skill.drop_vars("units", errors="ignore")
    skill.name = "skill"
    skill.attrs = {
        "units": "1",
        "long_name": "MSE skill score against the reference",
        "reduced_over": ", ".join(map(str, per)),
    }
    return skill


# ----------------------------------------------------------------------------
# Hotspot metrics
# ----------------------------------------------------------------------------


def hotspot_metrics(
    temperature: xr.Dataset | xr.DataArray,
    threshold: float = 875.0,
    pixel_area: float | None = None,
    dt: float | None = None,
) -> xr.Dataset:
    """Hotspot temperature, area and their rates for every sample and time step.

    Parameters
    ----------
    temperature : xarray.DataArray or xarray.Dataset
        Temperature in K on dims ``(..., "y", "x")`` (usually ``("sample",
        "time", "y", "x")``), or the canonical field array / field Dataset, from
        which ``"temperature"`` is selected.
    threshold : float, default=875.0
        A pixel is hot when its temperature is strictly above this (K).
    pixel_area : float, default=None
        Area of one pixel. ``None`` takes ``dx * dy`` from the mean spacing of the
        ``x`` and ``y`` coordinates (µm², uniform grid assumed); without those
        coordinates the area is 1 (a pixel count) and a warning says so.
    dt : float, default=None
        Time between snapshots. ``None`` uses the differences of the ``time``
        coordinate (non-uniform steps allowed); without it, 1 per step.

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
    temp = _temperature(temperature)
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


# ----------------------------------------------------------------------------
# Hotspot RMSE
# ----------------------------------------------------------------------------


def hotspot_rmse(
    truth: xr.Dataset | xr.DataArray,
    pred: xr.Dataset | xr.DataArray,
    threshold: float = 875.0,
    pixel_area: float | None = None,
    dt: float | None = None,
) -> xr.Dataset:
    """RMSE of the hotspot metrics between truth and prediction.

    Parameters
    ----------
    truth, pred : xarray.DataArray or xarray.Dataset
        Temperature (or field arrays holding ``"temperature"``) in physical
        units; see :func:`hotspot_metrics`. Only common time steps are compared.
    threshold, pixel_area, dt
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
    t_temp = _temperature(truth)
    p_temp = _temperature(pred)
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


# ----------------------------------------------------------------------------
# Graded hotspot metrics
# ----------------------------------------------------------------------------

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


def hotspot_counts(temperature: xr.Dataset | xr.DataArray, threshold: float = 875.0) -> xr.DataArray:
    """Number of hotspots, the connected regions of hot pixels, per image.

    A pixel is hot when its temperature is strictly above ``threshold``; two
    hot pixels belong to the same hotspot when a chain of hot pixels, each
    sharing an *edge* with the next, joins them (4-connectivity: pixels that
    touch only at a corner are separate hotspots).

    Parameters
    ----------
    temperature : xarray.DataArray or xarray.Dataset
        Temperature in K on dims ``(..., "y", "x")``, or the canonical field
        array / field Dataset, from which ``"temperature"`` is selected.
    threshold : float, default=875.0
        Hot means strictly above this (K).

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
    temp = _temperature(temperature)
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
    thresholds: float | Iterable[float] = (875.0,),
    pixel_area: float | None = None,
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
        from which ``"temperature"`` is selected. Only the time steps both
        have are compared; every other dim must match.
    thresholds : float or sequence of float, default=(875.0,)
        Thresholds θ in K; a pixel is hot when strictly above θ. Each is one
        entry of the ``threshold`` dim of the result.
    pixel_area : float, default=None
        Area of one pixel, for the excess heat. ``None`` takes ``dx * dy`` from
        ``truth``'s ``x`` and ``y`` coordinates (µm²); without them it is 1, the
        excess heat is in K·pixel and a warning says so.

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
    t_temp, p_temp = _align_time(_temperature(truth), _temperature(pred), ("truth", "pred"))
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


# ----------------------------------------------------------------------------
# Calibration
# ----------------------------------------------------------------------------


def coverage(
    truth: xr.Dataset | xr.DataArray,
    mean: xr.Dataset | xr.DataArray,
    std: xr.Dataset | xr.DataArray,
    k: float = 1.0,
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

    Returns
    -------
    xarray.Dataset
        ``coverage`` per field (dim ``field``; a scalar without one) and
        ``coverage_overall`` over everything, fractions in [0, 1].

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
    per_field = inside.mean([d for d in inside.dims if d != "field"])
    nominal = math.erf(k / math.sqrt(2.0))
    attrs = {"k": float(k), "nominal": nominal, "units": "1"}
    out = xr.Dataset(
        {
            "coverage": per_field.assign_attrs(attrs, long_name="coverage per field"),
            "coverage_overall": inside.mean().assign_attrs(attrs, long_name="coverage"),
        },
        attrs={"k": float(k), "nominal": nominal},
    )
    _check_result(out, "coverage")
    return out


# ----------------------------------------------------------------------------
# scikit-learn scorers
# ----------------------------------------------------------------------------


def _rollout(estimator: Any, X: xr.Dataset | xr.DataArray) -> xr.DataArray:
    """Predict from X's first step and return the rollout in X's (physical) layout."""
    pred = estimator.predict(X)
    if isinstance(pred, tuple):  # (mean, std): score the mean
        pred = pred[0]
    dims = getattr(pred, "dims", ())
    if any(d in dims for d in _TOKEN_DIMS) and hasattr(estimator, "steps"):
        # A Pipeline tokenizer -> dynamics predicts tokens; its transformers
        # (all invertible) bring them back to K / GPa / - on X's grid.
        transformers = estimator[:-1]
        if not hasattr(transformers, "inverse_transform"):
            raise ValueError(
                "the pipeline predicts tokens but its transformers cannot inverse_transform them."
            )
        pred = transformers.inverse_transform(pred)
    return _as_array(pred, "prediction")


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


class _Scorer:
    """Picklable ``scorer(estimator, X, y=None) -> float``, higher is better."""

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
        truth = _as_array(X, "X")
        truth, pred = _after_first(truth, _rollout(estimator, X))
        if field is not None:
            names = [str(f) for f in truth["field"].values] if "field" in truth.coords else []
            if field not in names:
                raise ValueError(f"field={field!r} is not a field of X; X has fields {names}.")
            truth, pred = truth.sel(field=[field]), pred.sel(field=[field])
        if self.kind == "r2":
            if field is not None:
                return float(r2_per_field(truth, pred).squeeze("field"))
            return _r2_physical(truth, pred)
        if self.kind == "field_rmse":
            per = [d for d in truth.dims if d != "field"]
            rmse = np.sqrt(((truth - pred) ** 2).mean(per))
            return -float(rmse.mean())
        threshold = self.options.get("threshold", 875.0)
        if self.kind == "hotspot_f1":
            t_temp, p_temp = _temperature(truth), _temperature(pred)
            hot_t, hot_p = t_temp > threshold, p_temp > threshold
            counts = [int(m.sum()) for m in (hot_t & hot_p, hot_p & ~hot_t, hot_t & ~hot_p)]
            tp, fp, fn = counts
            return 1.0 if 2 * tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
        if self.kind == "excess_heat":
            t_temp, p_temp = _temperature(truth), _temperature(pred)
            area, _, _ = _pixel_area(t_temp, None, "the excess heat is in K·pixel", stacklevel=3)
            thr = xr.DataArray(threshold)
            sq = (_excess_heat(t_temp, thr, area) - _excess_heat(p_temp, thr, area)) ** 2
            return -float(np.sqrt(sq.mean()))
        ds = hotspot_rmse(truth, pred, threshold=threshold)
        return -float(ds[f"{self.kind}_overall"])


# name -> (kind, short description)
_SCORERS: dict[str, tuple[str, str]] = {
    "r2": ("r2", "the estimator's own score(X), or one field's R² in physical units"),
    "neg_field_rmse": ("field_rmse", "minus the field RMSE in physical units"),
    "neg_hotspot_temperature_rmse": ("T_hs", "minus the RMSE of T_hs [K]"),
    "neg_hotspot_area_rmse": ("A_hs", "minus the RMSE of A_hs [µm²]"),
    "hotspot_f1": ("hotspot_f1", "F1 of the T > threshold masks"),
    "neg_excess_heat_rmse": ("excess_heat", "minus the RMSE of the excess heat [K·µm²]"),
}
# Scorers that take field= / threshold=.
_FIELD_KINDS = ("r2", "field_rmse")
_THRESHOLD_KINDS = ("T_hs", "A_hs", "hotspot_f1", "excess_heat")


def get_scorer_names() -> list[str]:
    """Names accepted by :func:`get_scorer`.

    Examples
    --------
    >>> get_scorer_names()  # doctest: +NORMALIZE_WHITESPACE
    ['hotspot_f1', 'neg_excess_heat_rmse', 'neg_field_rmse', 'neg_hotspot_area_rmse',
     'neg_hotspot_temperature_rmse', 'r2']
    """
    return sorted(_SCORERS)


def get_scorer(
    name: str = "r2",
    *,
    threshold: float = 875.0,
    field: str | None = None,
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
    threshold : float, default=875.0
        Hotspot threshold in K for the hotspot scorers.
    field : str, default=None
        Restrict ``"r2"`` or ``"neg_field_rmse"`` to one field.

    Returns
    -------
    callable
        Picklable, usable as ``scoring=`` in ``cross_val_score``,
        ``cross_validate`` (also in a dict of scorers) and ``GridSearchCV``.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid ones.

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
    if kind in _THRESHOLD_KINDS and threshold != 875.0:
        options["threshold"] = _real(threshold, "threshold")
    if field is not None:
        if kind not in _FIELD_KINDS:
            raise ValueError(f"field= applies only to 'r2' and 'neg_field_rmse', not {name!r}.")
        options["field"] = field
    return _Scorer(name, kind, **options)
