"""Import arrays laid out like the reference repository's: (samples, H, W, fields, time)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from skmld._constants import FIELD_UNITS
from skmld._units import check_units, restore_normalised

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
    normalised_from: Mapping[str, tuple[float, float]] | None = None,
) -> xr.Dataset:
    """Wrap a ``(samples, H, W, fields, time)`` array as a field Dataset.

    Parameters
    ----------
    array : array-like of shape (n_samples, H, W, n_fields, n_times)
        Field values in the reference repository's layout. numpy and dask
        arrays are wrapped without copying (axes are only moved); of a dask
        array, only the first snapshot of a field in K is computed, for the
        unit check below.
    fields : sequence of str
        Field names, in the order of the array's fields axis.
    dt : float
        Time between snapshots (ns).
    dx : float
        Grid spacing (µm), the same along ``y`` and ``x``.
    units : dict of str to str, default=None
        Units per field; fields not listed get the paper's units when their
        name is ``temperature`` (K), ``pressure`` (GPa) or ``microstructure`` (1).
    t0 : float, default=0.0
        Time of the first snapshot (ns).
    normalised_from : dict of str to (float, float), default=None
        Fields stored min-max normalised to [0, 1], with the physical range
        ``(lo, hi)`` they were scaled from; their values become
        ``x * (hi - lo) + lo``. The reference data scale temperature from
        ``(300.0, 5000.0)`` K.

    Returns
    -------
    xarray.Dataset
        One variable per field, dims ``("sample", "time", "y", "x")``, coords
        ``sample`` (0, 1, ...), ``time`` = ``t0 + dt * k`` (ns), ``y`` and ``x``
        = ``dx * k`` (µm).

    Raises
    ------
    ValueError
        If ``array`` is not 5-D, ``len(fields)`` differs from its fields axis,
        or ``units`` / ``normalised_from`` name other fields.

    Warns
    -----
    skmld.exceptions.UnitsWarning
        If a field's values cannot be in its unit: a field in K that is
        negative or lies wholly within [0, 1] (normalised data: pass
        ``normalised_from``), or a field of ``normalised_from`` whose values are
        not within [0, 1]. NumPy values are checked whole, dask values on
        their first snapshot only (sample 0, time 0).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((2, 4, 6, 3, 5))              # temperature scaled to [0, 1]
    >>> a[..., 0, -1] = 1.0
    >>> ds = from_reference_arrays(a, ["temperature", "pressure", "microstructure"],
    ...                            dt=2.0, dx=1.0,
    ...                            normalised_from={"temperature": (300.0, 5000.0)})
    >>> dict(ds["temperature"].sizes)
    {'sample': 2, 'time': 5, 'y': 4, 'x': 6}
    >>> float(ds["temperature"].min()), float(ds["temperature"].max())
    (300.0, 5000.0)
    >>> ds["pressure"].attrs["units"], float(ds["time"][-1])
    ('GPa', 8.0)
    """
    ds = reference_dataset(array, fields, dt, dx, units=units, t0=t0)
    ds = restore_normalised(ds, normalised_from, stacklevel=3)
    check_units(ds, stacklevel=3)
    return ds


def reference_dataset(array, fields: Sequence[str], dt: float, dx: float, *,
                      units: Mapping[str, str] | None = None, t0: float = 0.0) -> xr.Dataset:
    """:func:`from_reference_arrays` without ``normalised_from`` and the unit check."""
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


def read_reference_file(path: str | os.PathLike, key: str | None = None, *, lazy: bool = True):
    """The ``(samples, H, W, fields, time)`` array of a ``.npy`` file or one member of a ``.npz``.

    ``lazy``: a dask array with one chunk per sample (``.npy`` memory-mapped,
    read chunk by chunk; ``.npz`` members are read into memory first), else numpy.
    Pickled (object) arrays are refused.
    """
    if str(path).lower().endswith(".npz"):
        with np.load(path) as npz:
            names = list(npz.files)
            if key is None and len(names) != 1:
                raise ValueError(f"{os.fspath(path)!r} holds {len(names)} arrays {names}; name one with key=.")
            if key is not None and key not in names:
                raise ValueError(f"{os.fspath(path)!r} has no array {key!r}; its arrays are {names}.")
            array = npz[names[0] if key is None else key]
    else:
        if key is not None:
            raise ValueError(f"key= selects an array of a .npz file; {os.fspath(path)!r} is a .npy file.")
        array = np.load(path, mmap_mode="r" if lazy else None)
    if not lazy:
        return array
    import dask.array as dsa

    return dsa.from_array(array, chunks=(1,) + array.shape[1:]) if array.ndim else array
