"""Field values and their declared units: undo min-max normalisation, warn about values a unit rules out.

Data min-max normalised to [0, 1] (as the reference repository stores
temperature, scaled from 300–5000 K) but labelled in physical units would be
scaled a second time by the tokenizer's physical ``ranges`` and train a model on
a sliver of [0, 1] without any error. :func:`restore_normalised` maps such data
back (``x * (hi - lo) + lo``) and :func:`check_units` warns when a field's
values cannot be in its unit.

Cost: NumPy-backed values are checked whole (one min and one max); of
dask-backed values only the first snapshot (sample 0, time 0) is computed,
which reads at most one chunk, so opening a large store stays cheap. A
temperature in K below 1 K in that snapshot already says enough.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import xarray as xr

from skmld.exceptions import UnitsWarning
from skmld.fields import is_lazy

# Units in which values can be neither negative nor all within [0, 1]: absolute temperature.
_KELVIN = frozenset({"k", "kelvin", "degk", "deg_k"})
# Normalised values may stray this far outside [0, 1] (interpolation, rounding) before a warning.
_SLACK = 0.01


def value_range(arr: xr.DataArray) -> tuple[float, float, str]:
    """``(min, max, what)`` of ``arr``'s values; ``what`` says which values were looked at.

    All values of NumPy data; only the first snapshot (sample 0, time 0) of dask data.
    """
    what = "its values"
    if is_lazy(arr):
        arr = arr.isel({d: 0 for d in ("sample", "time") if d in arr.dims})
        what = "its values in the first snapshot (sample 0, time 0; lazy data are checked there only)"
        import dask

        lo, hi = dask.compute(arr.data.min(), arr.data.max())
    else:
        lo, hi = np.min(arr.values), np.max(arr.values)
    return float(lo), float(hi), what


def _bounds(name: str, bounds: object) -> tuple[float, float]:
    try:
        lo, hi = (float(b) for b in bounds)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"normalised_from[{name!r}] must be (lo, hi) with finite lo < hi, e.g. (300.0, 5000.0); "
                         f"got {bounds!r}.")
    return lo, hi


def restore_normalised(ds: xr.Dataset, normalised_from: Mapping[str, tuple[float, float]] | None,
                       stacklevel: int = 2) -> xr.Dataset:
    """Map fields min-max normalised from ``(lo, hi)`` back to physical units: ``x * (hi - lo) + lo``.

    Lazy for dask data; attrs (units) are kept. Warns (:class:`UnitsWarning`)
    when a field's values are not within [0, 1], i.e. look physical already.
    """
    if not normalised_from:
        return ds
    unknown = [f for f in normalised_from if f not in ds.data_vars]
    if unknown:
        raise ValueError(f"normalised_from names fields {unknown} that are not in the data; fields are "
                         f"{list(ds.data_vars)}.")
    restored = {}
    for name, bounds in normalised_from.items():
        lo, hi = _bounds(name, bounds)
        arr = ds[name]
        vmin, vmax, what = value_range(arr)
        if vmin < -_SLACK or vmax > 1 + _SLACK:
            warnings.warn(f"normalised_from[{name!r}] = {(lo, hi)} is given but {what} span [{vmin:g}, {vmax:g}], "
                          "not [0, 1]: is the field already in physical units?", UnitsWarning,
                          stacklevel=stacklevel)
        restored[name] = (arr * (hi - lo) + lo).assign_attrs(arr.attrs)
    return ds.assign(restored)


def check_units(ds: xr.Dataset, stacklevel: int = 2) -> None:
    """Warn (:class:`UnitsWarning`) for each field whose values cannot be in its ``units`` attribute.

    Checked today: a field in K (absolute temperature) must not be negative,
    and its values cannot all lie in [0, 1] (that is min-max normalised data).
    """
    for name, arr in ds.data_vars.items():
        unit = str(arr.attrs.get("units", ""))
        if unit.lower() not in _KELVIN or arr.dtype.kind not in "iuf" or arr.size == 0:
            continue
        vmin, vmax, what = value_range(arr)
        if 0.0 <= vmin and vmax <= 1.0:
            problem = (f"all {what} lie in [0, 1] (min {vmin:g}, max {vmax:g}): it looks min-max normalised, "
                       "not a temperature in kelvin")
        elif vmin < 0.0:
            problem = f"{what} include negative values (min {vmin:g}), impossible for an absolute temperature"
        else:
            continue
        warnings.warn(f"Field {name!r} is declared in {unit!r} but {problem}. Restore physical units with "
                      f"normalised_from={{{name!r}: (lo, hi)}} (the range it was scaled from, e.g. (300.0, 5000.0) "
                      f"K for the reference data), or give its true units with units={{{name!r}: ...}}.",
                      UnitsWarning, stacklevel=stacklevel)
