"""Pinned pixels and the input checks of the probabilistic metrics.

A pixel is *pinned* when the truth and the prediction both sit on the same
physical bound of their field (CF ``valid_min`` / ``valid_max``), e.g. the
solid fraction at 1 away from the pore: such pixels are right by construction
and would flatter every probabilistic statistic, so those statistics leave
them out.
"""

from __future__ import annotations

import math
from typing import Any, Hashable, Iterable, Mapping

import numpy as np
import xarray as xr

from skmld.metrics._common import _align_time, _as_array, _check_values, _is_lazy, _real

#: field -> (lower bound or None, upper bound or None)
Bounds = Mapping[Hashable, tuple]
#: Default tolerance of the pinned test, relative to the width of the bounds.
_PINNED_RTOL = 1e-3


def _field_names(arr: xr.DataArray) -> list:
    if "field" not in arr.dims:
        return []
    return [f.item() if hasattr(f, "item") else f for f in arr["field"].values]


def _same_fields(ref: xr.DataArray, other: xr.DataArray, names: tuple[str, str]) -> xr.DataArray:
    """``other`` with ``ref``'s fields in ``ref``'s order, or ValueError naming the missing ones."""
    if "field" not in ref.dims or "field" not in other.dims:
        return other  # a dims mismatch is reported by the shape check
    if "field" not in ref.indexes or "field" not in other.indexes:
        return other
    mine, theirs = _field_names(ref), _field_names(other)
    missing = [f for f in mine if f not in theirs]
    extra = [f for f in theirs if f not in mine]
    if missing:
        raise ValueError(f"{names[1]} has no field {missing[0]!r} (missing {missing}); "
                         f"{names[0]} has fields {mine}, {names[1]} has {theirs}.")
    if extra:
        raise ValueError(f"{names[1]} has field(s) {extra} that {names[0]} lacks; "
                         f"{names[0]} has fields {mine}.")
    return other if mine == theirs else other.sel(field=mine)


def _check_shapes(ref: xr.DataArray, other: xr.DataArray, names: tuple[str, str], extra: str | None) -> None:
    """Same dims (``extra`` aside), same sizes and the same labels on every indexed dim."""
    other_dims = [d for d in other.dims if d != extra]
    for dim in set(ref.dims) ^ set(other_dims):
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same dimensions; {dim!r} is only in "
            f"{names[0] if dim in ref.dims else names[1]} (dims {ref.dims} vs {other.dims}). "
            "If one of them is in token layout, convert it with tokenizer.inverse_transform(...) first."
        )
    for dim in ref.dims:
        if ref.sizes[dim] != other.sizes[dim]:
            raise ValueError(f"{names[0]} and {names[1]} differ in size along {dim!r}: "
                             f"{ref.sizes[dim]} vs {other.sizes[dim]}.")
        if dim in ref.indexes and dim in other.indexes and not ref.indexes[dim].equals(other.indexes[dim]):
            raise ValueError(f"{names[0]} and {names[1]} have different {dim!r} coordinates; "
                             "they are compared element by element, so the labels must match.")


def _conform(
    ref: xr.DataArray,
    other: xr.DataArray,
    names: tuple[str, str],
    *,
    extra: str | None = None,
    intersect: bool = False,
) -> tuple[xr.DataArray, xr.DataArray]:
    """Put ``other`` on ``ref``'s fields, times and grid; ValueError naming whatever differs.

    With ``intersect`` both keep the time steps they share (none shared is an
    error); otherwise ``other`` must have every time step of ``ref``.
    ``extra`` names a dim only ``other`` has (the ensemble members).
    """
    if extra is not None:
        if extra not in other.dims:
            raise ValueError(f"{names[1]} has no {extra!r} dim for the ensemble members (dims {other.dims}); "
                             "pass dim= to name it.")
        if extra in ref.dims:
            raise ValueError(f"{names[0]} must not have the ensemble dim {extra!r} (dims {ref.dims}).")
        if other.sizes[extra] == 0:
            raise ValueError(f"{names[1]} has no members along {extra!r}.")
    other = _same_fields(ref, other, names)
    if "time" in ref.indexes and "time" in other.indexes:
        have = ref.indexes["time"].isin(other.indexes["time"])
        if not have.any():
            raise ValueError(f"{names[0]} and {names[1]} share no time step: {names[0]} has times "
                             f"{ref.indexes['time'].tolist()}, {names[1]} has {other.indexes['time'].tolist()}.")
        if not have.all():
            if not intersect:
                missing = ref.indexes["time"][~have].tolist()
                raise ValueError(f"{names[1]} has no time step(s) {missing} of {names[0]}.")
            ref = ref.isel(time=np.flatnonzero(have))
        other = other.sel(time=ref.indexes["time"])
    _check_shapes(ref, other, names, extra)
    return ref, other


def _check_std(std: xr.DataArray) -> None:
    if not _is_lazy(std) and bool((std < 0).any()):
        raise ValueError("std must be non-negative (a standard deviation).")


def _as_draws(obj: xr.Dataset | xr.DataArray, dim: str) -> xr.DataArray:
    """Ensemble members as a DataArray with a ``field`` dim, values checked."""
    if not isinstance(dim, str):
        raise TypeError(f"dim must be a dimension name, got {dim!r}.")
    if isinstance(obj, xr.Dataset):
        if not obj.data_vars:
            raise ValueError("draws is a Dataset without data variables; expected one per field.")
        units = [str(arr.attrs.get("units", "")) for arr in obj.data_vars.values()]
        obj = obj.to_dataarray(dim="field").assign_coords(units=("field", np.array(units, dtype=object)))
    elif not isinstance(obj, xr.DataArray):
        raise TypeError(f"draws must be an xarray DataArray or Dataset, got {type(obj).__name__}.")
    return _check_values(obj, "draws")


def _ks(ks: float | Iterable[float]) -> list[float]:
    if isinstance(ks, (int, float, np.integer, np.floating)) and not isinstance(ks, (bool, np.bool_)):
        ks = (ks,)
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Iterable):
        raise TypeError(f"ks must be a number or a sequence of numbers, got {ks!r}.")
    values = [_real(k, "k") for k in ks]
    if not values:
        raise ValueError("ks is empty; give at least one band half-width k.")
    if any(k < 0 for k in values) or len(set(values)) != len(values):
        raise ValueError(f"ks must be distinct non-negative numbers, got {values}.")
    return values


def _resolve_bounds(truth: Any, bounds: Bounds | None, fields: list) -> dict:
    """Checked ``{field: (lo, hi)}`` for the fields with at least one bound.

    ``None`` reads CF ``valid_min`` / ``valid_max`` from each data variable of
    ``truth`` when it is a Dataset (nothing from a DataArray).
    """
    if bounds is None:
        if not isinstance(truth, xr.Dataset):
            return {}
        bounds = {
            var: (arr.attrs.get("valid_min"), arr.attrs.get("valid_max"))
            for var, arr in truth.data_vars.items()
        }
    if not isinstance(bounds, Mapping):
        raise TypeError(f"bounds must be a dict field -> (lo, hi) or None, got {type(bounds).__name__}.")
    out = {}
    for field, pair in bounds.items():
        if field not in fields:
            raise ValueError(f"bounds names field {field!r}, which the data do not have; fields are {fields}.")
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise ValueError(f"bounds[{field!r}] must be a pair (lo, hi), either of them None; got {pair!r}.")
        lo, hi = (None if b is None else _real(b, f"bounds[{field!r}]") for b in pair)
        if lo is not None and hi is not None and not lo < hi:
            raise ValueError(f"bounds[{field!r}] = {pair!r}: the lower bound must be below the upper one.")
        if lo is not None or hi is not None:
            out[field] = (lo, hi)
    return out


def _pinned(truth: xr.DataArray, mean: xr.DataArray, bounds: dict, rtol: float) -> xr.DataArray:
    """The pinned mask of aligned arrays for resolved ``bounds`` (all False without bounds)."""
    if not bounds:
        return xr.zeros_like(truth, dtype=bool).rename("pinned")
    fields = _field_names(truth)
    lo = np.array([np.nan if bounds.get(f, (None, None))[0] is None else bounds[f][0] for f in fields])
    hi = np.array([np.nan if bounds.get(f, (None, None))[1] is None else bounds[f][1] for f in fields])
    tol = rtol * (hi - lo)
    one_sided = ~np.isfinite(tol) & (np.isfinite(lo) | np.isfinite(hi))
    as_field = {"dims": "field", "coords": {"field": truth["field"]}}
    tol = xr.DataArray(np.nan_to_num(tol, nan=0.0), **as_field)
    if one_sided.any():
        # One bound only: the scale is the field's range in the truth (1 if constant).
        others = [d for d in truth.dims if d != "field"]
        span = truth.max(others) - truth.min(others)
        span = xr.where(span > 0, span, 1.0)
        tol = xr.where(xr.DataArray(one_sided, **as_field), rtol * span, tol)
    lo, hi = xr.DataArray(lo, **as_field), xr.DataArray(hi, **as_field)

    def near(arr: xr.DataArray, bound: xr.DataArray) -> xr.DataArray:
        return np.abs(arr - bound) <= tol  # False where the bound is NaN (absent)

    pinned = (near(truth, lo) & near(mean, lo)) | (near(truth, hi) & near(mean, hi))
    pinned = pinned.transpose(*truth.dims).drop_vars("units", errors="ignore")
    pinned.name = "pinned"
    return pinned


def pinned_mask(
    truth: xr.Dataset | xr.DataArray,
    mean: xr.Dataset | xr.DataArray,
    bounds: Bounds | None = None,
    rtol: float = 1e-3,
) -> xr.DataArray:
    """Pixels where truth and prediction both sit on the same bound of their field.

    A pixel of field *F* with bounds ``(lo, hi)`` is pinned when
    ``|truth − b| <= rtol·(hi − lo)`` and ``|mean − b| <= rtol·(hi − lo)`` for
    ``b = lo`` or for ``b = hi``. Such pixels are right by construction (the
    solid fraction is 1 on most of the domain) and the probabilistic metrics
    leave them out.

    Parameters
    ----------
    truth, mean : xarray.DataArray or xarray.Dataset
        Physical fields in the same layout (a field Dataset, or a DataArray
        with a ``field`` dim); only the time steps both have are compared.
    bounds : dict, default=None
        ``field -> (lo, hi)``, either bound may be None. ``None`` reads the CF
        attrs ``valid_min`` / ``valid_max`` of each data variable of ``truth``
        when it is a Dataset; a field without bounds is never pinned. With a
        single bound the tolerance is ``rtol`` times the field's range in
        ``truth`` (max − min).
    rtol : float, default=1e-3
        Tolerance relative to the width of the bounds.

    Returns
    -------
    xarray.DataArray
        Boolean, named ``"pinned"``, on ``truth``'s dims and common times.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> truth = xr.DataArray([[[1.0, 1.0, 0.5]]], dims=("field", "time", "x"),
    ...                      coords={"field": ["microstructure"]})
    >>> mean = xr.DataArray([[[1.0, 0.9, 0.5]]], dims=("field", "time", "x"),
    ...                     coords={"field": ["microstructure"]})
    >>> pinned_mask(truth, mean, {"microstructure": (0.0, 1.0)}).values.tolist()
    [[[True, False, False]]]
    """
    rtol = _real(rtol, "rtol")
    if rtol < 0:
        raise ValueError(f"rtol must be non-negative, got {rtol}.")
    t_arr, m_arr = _as_array(truth, "truth"), _as_array(mean, "mean")
    m_arr = _same_fields(t_arr, m_arr, ("truth", "mean"))
    t_arr, m_arr = _align_time(t_arr, m_arr, ("truth", "mean"))
    _check_shapes(t_arr, m_arr, ("truth", "mean"), None)
    resolved = _resolve_bounds(truth, bounds, _field_names(t_arr))
    return _pinned(t_arr, m_arr, resolved, rtol)


def _nominal(k: float) -> float:
    """Coverage of ``mean ± k·std`` for a calibrated Gaussian."""
    return math.erf(k / math.sqrt(2.0))
