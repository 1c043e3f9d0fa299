"""Import arrays laid out like the reference repository's: (samples, H, W, fields, time)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from skmld._constants import FIELD_UNITS

__all__ = ["from_reference_arrays"]

# Units of the fields of the paper, used when ``units`` does not name them.
DEFAULT_UNITS = FIELD_UNITS


def from_reference_arrays(
    array,
    fields: Sequence[str],
    dt: float,
    dx: float,
    *,
    units: Mapping[str, str] | None = None,
    t0: float = 0.0,
) -> xr.Dataset:
    """Wrap a ``(samples, H, W, fields, time)`` array as a field Dataset.

    Parameters
    ----------
    array : array-like of shape (n_samples, H, W, n_fields, n_times)
        Field values in the reference repository's layout. numpy and dask
        arrays are wrapped without loading (axes are only moved).
    fields : sequence of str
        Field names, in the order of the array's fields axis.
    dt : float
        Time between snapshots (ns).
    dx : float
        Grid spacing (µm), the same along ``y`` and ``x``.
    units : dict of str to str, default=None
        Units per field; fields not listed get the paper's units when their
        name is ``temperature`` (K), ``pressure`` (GPa) or ``microstructure`` (-).
    t0 : float, default=0.0
        Time of the first snapshot (ns).

    Returns
    -------
    xarray.Dataset
        One variable per field, dims ``("sample", "time", "y", "x")``, coords
        ``sample`` (0, 1, ...), ``time`` = ``t0 + dt * k`` (ns), ``y`` and ``x``
        = ``dx * k`` (µm).

    Raises
    ------
    ValueError
        If ``array`` is not 5-D or ``len(fields)`` differs from its fields axis.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((2, 4, 6, 3, 5))
    >>> ds = from_reference_arrays(a, ["temperature", "pressure", "microstructure"],
    ...                            dt=2.0, dx=1.0)
    >>> dict(ds["temperature"].sizes)
    {'sample': 2, 'time': 5, 'y': 4, 'x': 6}
    >>> ds["pressure"].attrs["units"], float(ds["time"][-1])
    ('GPa', 8.0)
    """
    if not hasattr(array, "ndim"):
        array = np.asarray(array)
    if array.ndim != 5:
        raise ValueError(
            f"array must be 5-D (samples, H, W, fields, time) as in the reference "
            f"repository, got {array.ndim}-D with shape {tuple(array.shape)}."
        )
    fields = [str(f) for f in fields]
    n_samples, height, width, n_fields, n_times = array.shape
    if len(fields) != n_fields:
        raise ValueError(
            f"fields names {len(fields)} fields {fields} but the array's fields axis "
            f"(axis 3 of shape {tuple(array.shape)}) has {n_fields}."
        )
    if len(set(fields)) != len(fields):
        raise ValueError(f"fields must be unique, got {fields}.")
    units = dict(units or {})
    unknown = [f for f in units if f not in fields]
    if unknown:
        raise ValueError(f"units names fields {unknown} that are not in fields {fields}.")
    data_vars = {}
    for k, name in enumerate(fields):
        # (S, H, W, T) -> (S, T, H, W): a view for numpy, lazy for dask.
        values = np.moveaxis(array[:, :, :, k, :], -1, 1)
        unit = units.get(name, DEFAULT_UNITS.get(name))
        attrs = {} if unit is None else {"units": unit}
        data_vars[name] = (("sample", "time", "y", "x"), values, attrs)
    coords = {
        "sample": np.arange(n_samples),
        "time": ("time", t0 + dt * np.arange(n_times), {"units": "ns"}),
        "y": ("y", dx * np.arange(height), {"units": "µm"}),
        "x": ("x", dx * np.arange(width), {"units": "µm"}),
    }
    return xr.Dataset(data_vars, coords=coords)
