"""Input handling shared by the metrics: validation, field stacking, alignment, units, grids."""

from __future__ import annotations

import math
import warnings
from typing import Any, Hashable

import numpy as np
import xarray as xr

from skmld._constants import FIELD_UNITS

# Units of the canonical fields, used when the data carry no ``units`` attrs.
DEFAULT_UNITS = FIELD_UNITS
_TOKEN_DIMS = ("token_y", "token_x", "patch_y", "patch_x")
_HOTSPOT_VARS = ("T_hs", "A_hs", "dT_hs_dt", "dA_hs_dt")
# Dimension of the rates: S snapshots give S - 1 forward differences, which
# cannot share the ``time`` index with the values in one Dataset.
INTERVAL_DIM = "interval"


def _is_lazy(arr: xr.DataArray) -> bool:
    from skmld.fields import is_lazy  # the one dask test

    return is_lazy(arr)


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


def _temperature_hint(names: list, units: dict) -> str:
    """``pass temperature='<guess>'``: the variable in K, else one named like a temperature."""
    guess = next((n for n in names if str(units.get(n, "")).lower() in ("k", "kelvin")), None)
    guess = guess or next((n for n in names if str(n).lower() in ("t", "temp") or str(n).lower().startswith("temp")),
                          None)
    return f"pass temperature={str(guess)!r}" if guess is not None else "pass temperature='<its name>'"


def _temperature(obj: xr.Dataset | xr.DataArray, temperature: str = "temperature") -> xr.DataArray:
    """Pick the temperature field, the variable (or ``field`` entry) named ``temperature``, out of ``obj``.

    A DataArray without a ``field`` dim is the temperature itself.
    """
    if not isinstance(temperature, str) or not temperature:
        got = repr(temperature) if isinstance(temperature, str) else f"a {type(temperature).__name__}"
        raise TypeError(f"temperature= names the temperature variable (a non-empty str), got {got}; pass the data "
                        "as the first argument.")
    if isinstance(obj, xr.Dataset):
        if temperature not in obj.data_vars:
            names = list(obj.data_vars)
            units = {n: obj[n].attrs.get("units", "") for n in names}
            raise ValueError(f"Dataset has no {temperature!r} variable; variables are {names}; "
                             f"{_temperature_hint(names, units)}.")
        temp = obj[temperature]
    elif isinstance(obj, xr.DataArray):
        temp = obj
        if "field" in obj.dims:
            names = [str(f) for f in obj["field"].values]
            if temperature not in names:
                units = {str(f): u for f, u in _field_units(obj).items()}
                raise ValueError(f"no {temperature!r} along dim 'field'; fields are {names}; "
                                 f"{_temperature_hint(names, units)}.")
            unit = _field_units(obj).get(temperature, "")
            temp = obj.sel(field=temperature, drop=True)
            # Keep the field's units as an attr, not a stray scalar coordinate.
            temp = temp.drop_vars("units", errors="ignore")
            if unit and "units" not in temp.attrs:
                temp = temp.assign_attrs(units=unit)
    else:
        raise TypeError(f"the temperature data must be an xarray DataArray or Dataset, got {type(obj).__name__}.")
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
