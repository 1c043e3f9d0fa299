"""Field data model: coupled physical fields as xarray objects.

A *field dataset* is an :class:`xarray.Dataset` with one data variable per field
on dims ``("sample", "time", "y", "x")``; its canonical *DataArray* form stacks
the fields along a named ``field`` dimension, dims :data:`FIELD_DIMS`. Per-field
units travel as a ``units`` coordinate on ``field`` (an empty string means "no
units"), so they survive selection and concatenation; :func:`to_dataset` turns
them back into each variable's ``units`` attribute.

Nothing here imports TensorFlow, and nothing loads dask-backed data except the
small per-(sample, time, field) reductions of :func:`validate_fields`. Files are
read and written by :func:`open_fields` and :func:`write_fields` (module
``skmld._files``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

__all__ = ["FIELD_DIMS", "SPATIAL_DIMS", "as_fields", "open_fields", "to_dataset", "validate_fields", "write_fields"]

#: Dimensions of the canonical field DataArray, in order.
FIELD_DIMS: tuple[str, ...] = ("sample", "time", "field", "y", "x")
#: Dimensions of one field variable of a field Dataset.
VARIABLE_DIMS: tuple[str, ...] = ("sample", "time", "y", "x")
#: The spatial dimensions, (rows, columns).
SPATIAL_DIMS: tuple[str, ...] = ("y", "x")

# Relative tolerance on the time step: the dynamics models assume a fixed step.
_TIME_RTOL = 1e-6


def is_lazy(a) -> bool:
    """Whether ``a`` (an array, or an xarray DataArray or Variable) holds a dask array, read chunk by chunk."""
    if isinstance(a, (xr.DataArray, xr.Variable)):
        a = a.data
    return type(a).__module__.startswith("dask.")


def first_nonfinite(arrays) -> tuple[int, int, int, int] | None:
    """``(field, sample, time, n_slices)`` of the first NaN or inf in per-field ``arrays``, or None.

    Each array (DataArray or Variable) has dims ``sample`` and ``time`` among
    others, searched in (sample, time, field) order; ``n_slices`` counts the
    non-finite slices. NumPy data cost two reductions per field when all is
    finite (no temporary); dask data compute one boolean per slice, all fields
    in one pass.
    """
    variables = [getattr(a, "variable", a) for a in arrays]
    todo = [i for i, v in enumerate(variables) if v.dtype.kind == "f" and v.size and (
        is_lazy(v) or not (np.isfinite(np.min(v.data)) and np.isfinite(np.max(v.data))))]
    if not todo:
        return None
    ok = xr.Dataset({f"f{i}": np.isfinite(v).all([d for d in v.dims if d not in ("sample", "time")])
                     for i, v in ((i, variables[i]) for i in todo)}).compute()
    bad = np.argwhere(~np.stack([ok[f"f{i}"].transpose("sample", "time").values for i in todo], axis=-1))
    if not len(bad):
        return None
    s, t, k = (int(v) for v in bad[0])
    return todo[k], s, t, len(bad)


class _FieldView(NamedTuple):
    """Fields of a Dataset or DataArray, one DataArray each, without stacking.

    Lets the tokenizer read numpy-backed Datasets without the copy that
    stacking the variables into one array would make.
    """

    names: list[Hashable]
    arrays: list[xr.DataArray]  # each with dims VARIABLE_DIMS
    units: dict[Hashable, str]  # only fields that have units
    attrs: dict[str, Any]
    kind: type  # xr.Dataset or xr.DataArray
    # CF ``valid_min``/``valid_max`` of Dataset variables: field -> (lo or None, hi or None)
    bounds: dict[Hashable, tuple] = {}  # noqa: RUF012 (never mutated)


def _check_dims(name: str, what: str, dims, expected) -> None:
    missing = [d for d in expected if d not in dims]
    extra = [d for d in dims if d not in expected]
    if not missing and not extra:
        return
    parts = [f"is missing dims {missing}"] * bool(missing) + [f"has unexpected dims {extra}"] * bool(extra)
    hint = (" Rename dims with .rename(...), or add a length-1 dim with .expand_dims(...)." if missing
            else " Select or reduce the extra dims first, e.g. .isel(...).")
    raise ValueError(f"{name}{what} {' and '.join(parts)}; expected dims {tuple(expected)}, got {tuple(dims)}.{hint}")


def _field_view(obj: Any, name: str = "X") -> _FieldView:
    """Split ``obj`` into per-field DataArrays with dims VARIABLE_DIMS (no copy)."""
    if isinstance(obj, xr.Dataset):
        if not obj.data_vars:
            raise ValueError(f"{name} is a Dataset without data variables; expected one per field.")
        arrays, units, bounds = [], {}, {}
        for var, arr in obj.data_vars.items():
            _check_dims(name, f" variable {var!r}", arr.dims, VARIABLE_DIMS)
            arrays.append(arr.transpose(*VARIABLE_DIMS))
            if "units" in arr.attrs:
                units[var] = str(arr.attrs["units"])
            lo, hi = (arr.attrs.get(k) for k in ("valid_min", "valid_max"))
            if lo is not None or hi is not None:
                bounds[var] = (None if lo is None else float(lo), None if hi is None else float(hi))
        return _FieldView(list(obj.data_vars), arrays, units, dict(obj.attrs), xr.Dataset, bounds)
    if isinstance(obj, xr.DataArray):
        _check_dims(name, "", obj.dims, FIELD_DIMS)
        if "field" not in obj.coords:
            raise ValueError(f"{name} has no 'field' coordinate; name the fields with "
                             f"{name}.assign_coords(field=[...]).")
        names = list(obj["field"].values.tolist())
        if len(set(names)) != len(names):
            dup = sorted({str(n) for n in names if names.count(n) > 1})
            raise ValueError(f"{name} has duplicate field names {dup}.")
        units = {}
        if "units" in obj.coords and obj["units"].dims == ("field",):
            units = {f: str(u) for f, u in zip(names, obj["units"].values.tolist()) if u != ""}
        elif isinstance(obj.attrs.get("units"), Mapping):
            units = {f: str(obj.attrs["units"][f]) for f in names if f in obj.attrs["units"]}
        da = obj.transpose(*FIELD_DIMS)
        # Per-field arrays carry no attrs: the DataArray's attrs are dataset-level.
        arrays = [da.isel(field=i, drop=True) for i in range(len(names))]
        for arr in arrays:
            arr.attrs = {}  # isel made new objects; drop_attrs would copy the data
        attrs = {k: v for k, v in obj.attrs.items() if not (k == "units" and isinstance(v, Mapping))}
        return _FieldView(names, arrays, units, attrs, xr.DataArray)
    hint = ""
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):  # a bare array: say how to wrap it
        hint = (" A (samples, H, W, fields, time) array, as the reference code stores it, becomes one with "
                "skmld.datasets.from_reference_arrays(array, fields=[...], dt=..., dx=...); files open with "
                "skmld.open_fields (see docs/your_data.md).")
    raise TypeError(f"{name} must be an xarray.Dataset (one variable per field) or an xarray.DataArray with dims "
                    f"{FIELD_DIMS}, got {type(obj).__name__}.{hint}")


def as_fields(obj: xr.Dataset | xr.DataArray) -> xr.DataArray:
    """Return the canonical field DataArray, dims ``("sample", "time", "field", "y", "x")``.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        A field Dataset (one data variable per field, dims ``sample``, ``time``,
        ``y``, ``x`` in any order) or a DataArray with dims ``sample``, ``time``,
        ``field``, ``y``, ``x`` in any order and a ``field`` coordinate.

    Returns
    -------
    xarray.DataArray
        Dims :data:`FIELD_DIMS`; ``field`` coordinate = field names; a ``units``
        coordinate on ``field`` holds each field's units (``""`` if none); other
        coordinates and the attrs are kept. Dask-backed data stay lazy.

    Raises
    ------
    TypeError
        If ``obj`` is neither a Dataset nor a DataArray.
    ValueError
        If dims are missing or unexpected (they are listed by name).

    See Also
    --------
    to_dataset : The inverse conversion.
    validate_fields : Also checks values and the time axis.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"temperature": (("sample", "time", "y", "x"), np.zeros((2, 3, 4, 5)),
    ...                                  {"units": "K"})})
    >>> da = as_fields(ds)
    >>> da.dims
    ('sample', 'time', 'field', 'y', 'x')
    >>> da["units"].values.tolist()
    ['K']
    """
    view = _field_view(obj, name="obj")
    # to_dataarray stays lazy on dask-backed variables; transpose makes a new object (not obj) to give attrs.
    da = (obj.to_dataarray(dim="field") if view.kind is xr.Dataset else obj).transpose(*FIELD_DIMS)
    da.attrs = dict(view.attrs)
    units = [view.units.get(f, "") for f in view.names]
    return da.assign_coords(units=("field", np.array(units, dtype=object)))


def to_dataset(da: xr.DataArray | xr.Dataset) -> xr.Dataset:
    """Turn a canonical field DataArray back into a field Dataset.

    Parameters
    ----------
    da : xarray.DataArray or xarray.Dataset
        Field data (anything :func:`as_fields` accepts; a Dataset is returned
        as a Dataset with variables transposed to ``("sample", "time", "y", "x")``).

    Returns
    -------
    xarray.Dataset
        One data variable per field, dims ``("sample", "time", "y", "x")``, each
        with its ``units`` attribute restored; attrs of ``da`` become the
        Dataset's attrs.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.zeros((1, 2, 1, 3, 3)), dims=FIELD_DIMS,
    ...                   coords={"field": ["pressure"], "units": ("field", ["GPa"])})
    >>> ds = to_dataset(da)
    >>> list(ds.data_vars), ds["pressure"].attrs["units"]
    (['pressure'], 'GPa')
    """
    view = _field_view(da, name="da")
    data_vars = {name: arr.assign_attrs({"units": view.units[name]} if name in view.units else {})
                 for name, arr in zip(view.names, view.arrays)}
    return xr.Dataset(data_vars, attrs=dict(view.attrs))


def check_time(time: xr.DataArray, name: str) -> None:
    """Raise ValueError if the ``time`` coordinate is unusable as a fixed-step axis."""
    message = _time_error(time, name)
    if message is not None:
        raise ValueError(message)


def _time_error(time: xr.DataArray, name: str) -> str | None:
    """Why the ``time`` coordinate is unusable as a fixed-step axis, or None."""
    t = np.asarray(time.values)
    if np.issubdtype(t.dtype, np.datetime64) or np.issubdtype(t.dtype, np.timedelta64):
        t = (t - t[0]) / np.timedelta64(1, "ns")
    elif not np.issubdtype(t.dtype, np.number) or np.issubdtype(t.dtype, np.complexfloating):
        return f"{name} time coordinate must be numeric or datetime, got dtype {t.dtype}."
    t = t.astype(np.float64)
    if not np.isfinite(t).all():
        return f"{name} time coordinate contains NaN or inf."
    steps = np.diff(t)
    if np.any(steps <= 0):
        i = int(np.argmax(steps <= 0))
        return (f"{name} time coordinate must be strictly increasing; time[{i}]={float(t[i])!r} is followed by "
                f"time[{i + 1}]={float(t[i + 1])!r}. Sort with .sortby('time').")
    dt = float(np.median(steps))
    # Relative tolerance on the step, plus the rounding of the stored time values.
    eps = np.finfo(time.dtype if time.dtype.kind == "f" else np.float64).eps
    tol = _TIME_RTOL * dt + 4 * eps * float(np.max(np.abs(t)))
    bad = np.abs(steps - dt) > tol
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    return (f"{name} time coordinate must be uniformly spaced (the models assume a fixed step): step {i} "
            f"(time[{i}]={float(t[i])!r} -> time[{i + 1}]={float(t[i + 1])!r}) is {float(steps[i])!r}, the typical "
            f"step is {dt!r}.")


def _coord_label(arr: xr.DataArray, dim: str, i: int) -> str:
    if dim in arr.coords:
        value = arr[dim].values[i]
        # Plain Python scalars print as 2.0, not np.float64(2.0).
        kind = getattr(getattr(value, "dtype", None), "kind", "")
        value = str(value) if kind in ("m", "M") else (value.item() if hasattr(value, "item") else value)
        return f"{dim} index {i} ({dim}={value!r})"
    return f"{dim} index {i}"


def _validate_view(obj: Any, name: str, check_values: bool = True) -> _FieldView:
    """Run the checks of :func:`validate_fields` on the unstacked fields."""
    view = _field_view(obj, name=name)
    if not view.arrays:
        raise ValueError(f"{name} has empty dims ['field']: it holds no fields.")
    bad = [f for f in view.names if not isinstance(f, str) or not f]
    if bad:
        raise ValueError(f"{name} has field names {bad} that are not non-empty strings; name every field, e.g. "
                         "'temperature', 'pressure', 'microstructure'.")
    first = view.arrays[0]
    for field, arr in zip(view.names, view.arrays):
        if arr.sizes != first.sizes:
            raise ValueError(f"{name} fields differ in shape: {view.names[0]!r} has {dict(first.sizes)}, "
                             f"{field!r} has {dict(arr.sizes)}.")
    sizes = dict(first.sizes, field=len(view.names))
    empty = [d for d in FIELD_DIMS if sizes[d] == 0]
    if empty:
        raise ValueError(f"{name} has empty dims {empty}; sizes are {sizes}.")
    for field, arr in zip(view.names, view.arrays):
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} field {field!r} has non-numeric dtype {arr.dtype}; expected real numbers "
                             "(bool, int or float).")
    if sizes["time"] < 2:
        raise ValueError(f"{name} has {sizes['time']} time step; at least 2 are needed to learn dynamics.")
    if "time" in first.coords:
        check_time(first["time"], name)
    if check_values:
        _check_finite(view, name)
    return view


def _check_finite(view: _FieldView, name: str) -> None:
    where = first_nonfinite(view.arrays)
    if where is None:
        return
    i, s, t, n_bad = where
    arr = view.arrays[i]
    kind = "NaN" if np.isnan(np.asarray(arr.isel(sample=s, time=t).values)).any() else "inf"
    more = f" ({n_bad - 1} more (sample, time, field) slices are not finite)" if n_bad > 1 else ""
    raise ValueError(f"{name} contains {kind} in field {view.names[i]!r} at {_coord_label(arr, 'sample', s)}, "
                     f"{_coord_label(arr, 'time', t)}{more}. Fill or drop non-finite values first.")


def validate_fields(obj: xr.Dataset | xr.DataArray, *, name: str = "X") -> xr.DataArray:
    """Check field data and return it as the canonical DataArray.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        Field data, see :func:`as_fields`.
    name : str, default="X"
        Name used in error messages.

    Returns
    -------
    xarray.DataArray
        ``as_fields(obj)``.

    Raises
    ------
    TypeError
        If ``obj`` is not an xarray Dataset or DataArray.
    ValueError
        If dims are missing or unexpected, a dim is empty, a field name is not a
        non-empty string, a field is not numeric, there are fewer than 2 time
        steps, the ``time`` coordinate (when present) is not strictly increasing
        with a uniform step (relative tolerance 1e-6), or a value is NaN or
        infinite (the message names the field, sample and time of the first one,
        in ``(sample, time, field)`` order). Only per-(sample, time, field)
        booleans are computed for dask input.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"temperature": (("sample", "time", "y", "x"), np.zeros((1, 2, 3, 3)))},
    ...                 coords={"time": [0.0, 2.0]})
    >>> validate_fields(ds).sizes["field"]
    1
    >>> ds["temperature"][0, 1, 2, 2] = np.nan
    >>> validate_fields(ds)
    Traceback (most recent call last):
    ...
    ValueError: X contains NaN in field 'temperature' at sample index 0, time index 1 (time=...
    """
    _validate_view(obj, name)
    return as_fields(obj)


# File I/O lives in skmld._files, which needs the functions above.
from skmld._files import open_fields, write_fields  # noqa: E402
