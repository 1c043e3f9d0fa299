"""Field files: read NetCDF-3/4, Zarr and reference ``.npy``/``.npz`` arrays; write NetCDF-4 and Zarr.

The public names are re-exported by :mod:`skmld.fields` (and :mod:`skmld`).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from skmld._constants import FIELD_UNITS
from skmld.fields import as_fields, to_dataset

_SUFFIXES = {".nc": "netcdf", ".nc4": "netcdf", ".zarr": "zarr", ".npy": "array", ".npz": "array"}
_WRITABLE = (".nc", ".nc4", ".zarr")
# The first bytes of a NetCDF file: NetCDF-3 (classic, 64-bit offset, CDF-5), NetCDF-4 (an HDF5 file).
_CDF_MAGIC, _HDF5_MAGIC = b"CDF", b"\x89HDF\r\n\x1a\n"


def _format(path: Path, suffixes: Sequence[str] = tuple(_SUFFIXES)) -> str:
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None or path.suffix.lower() not in suffixes:
        raise ValueError(f"Cannot tell the format of {str(path)!r} from its suffix {path.suffix!r}; "
                         f"use one of {sorted(suffixes)}.")
    return fmt


def netcdf_engine(path: str | os.PathLike) -> str:
    """The xarray engine that reads the NetCDF file at ``path``, from its first bytes.

    NetCDF-3 (``b"CDF"``): ``"netcdf4"`` when the netCDF4 package is installed
    (it also reads CDF-5), else ``"scipy"``. NetCDF-4 (HDF5) and anything
    else: ``"h5netcdf"``.
    """
    with open(path, "rb") as f:
        magic = f.read(len(_HDF5_MAGIC))
    if magic.startswith(_CDF_MAGIC):
        return "netcdf4" if importlib.util.find_spec("netCDF4") is not None else "scipy"
    return "h5netcdf"


def _zarr_consolidated(path: Path) -> bool | None:
    """Whether a Zarr store has consolidated metadata (None: let xarray find out)."""
    if (path / ".zmetadata").exists():
        return True
    meta = path / "zarr.json"
    if meta.exists():
        return json.loads(meta.read_text()).get("consolidated_metadata") is not None
    return None


def _rename(ds: xr.Dataset, rename: Mapping[str, str] | None, path: Path) -> xr.Dataset:
    if not rename:
        return ds
    names = [*ds.variables, *ds.dims]
    unknown = [k for k in rename if k not in names]
    if unknown:
        raise ValueError(f"rename names {unknown}, which {str(path)!r} does not have; its variables are "
                         f"{list(ds.data_vars)}, its dims {list(ds.dims)}.")
    return ds.rename(dict(rename))


def _select(ds: xr.Dataset, fields: Sequence[str] | None, units: Mapping[str, str] | None, path: Path) -> xr.Dataset:
    """The data variables named by ``fields`` (all when None), with ``units`` set and canonical defaults."""
    if fields is not None:
        missing = [f for f in fields if f not in ds.data_vars]
        if missing:
            raise ValueError(f"{str(path)!r} has no variables {missing}; its variables are {list(ds.data_vars)}"
                             f" (map other names with rename=).")
        ds = ds[list(fields)]
    unknown = [f for f in units or {} if f not in ds.data_vars]
    if unknown:
        raise ValueError(f"units names fields {unknown} that are not in {str(path)!r}; fields are "
                         f"{list(ds.data_vars)}.")
    for name, arr in ds.data_vars.items():
        unit = (units or {}).get(name, arr.attrs.get("units", FIELD_UNITS.get(str(name))))
        if unit is not None:
            arr.attrs["units"] = unit
    return ds


def _open_arrays(path: Path, chunks: Any, fields, dt, dx, t0, key, rename) -> xr.Dataset:
    from skmld.datasets._reference import read_reference_file, reference_dataset

    missing = [n for n, v in (("fields", fields), ("dt", dt), ("dx", dx)) if v is None]
    if missing:
        raise ValueError(f"{str(path)!r} holds a bare (samples, H, W, fields, time) array: pass {missing} "
                         "(fields: the names along its fields axis, dt: ns between snapshots, dx: µm per cell), as "
                         "for skmld.datasets.from_reference_arrays.")
    unknown = [k for k in rename or {} if k not in fields]
    if unknown:
        raise ValueError(f"rename names {unknown}, which are not in fields {list(fields)}.")
    array = read_reference_file(path, key, lazy=chunks is not None)
    names = [(rename or {}).get(f, f) for f in fields]
    return reference_dataset(array, names, dt, dx, t0=0.0 if t0 is None else t0)


def open_fields(
    path: str | os.PathLike,
    *,
    chunks: Mapping[str, int] | str | None = "auto",
    engine: str | None = None,
    rename: Mapping[str, str] | None = None,
    fields: Sequence[str] | None = None,
    units: Mapping[str, str] | None = None,
    normalised_from: Mapping[str, tuple[float, float]] | None = None,
    dt: float | None = None,
    dx: float | None = None,
    t0: float | None = None,
    key: str | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Open a NetCDF, Zarr or ``.npy``/``.npz`` field dataset, lazily by default.

    Parameters
    ----------
    path : str or path-like
        A NetCDF-3 or NetCDF-4 file (``.nc``, ``.nc4``), a Zarr store
        (``.zarr``), or a ``.npy`` / ``.npz`` file holding one array in the
        reference repository's layout ``(samples, H, W, fields, time)`` (see
        :func:`skmld.datasets.from_reference_arrays`).
    chunks : mapping, str or None, default="auto"
        ``"auto"`` makes one dask chunk per sample (whole time series and
        grid), the unit that training windows read (a ``.npy`` is
        memory-mapped). ``None`` loads numpy arrays. Any other value is passed
        to :func:`xarray.open_dataset` (in the file's names), or, for arrays,
        to :meth:`xarray.Dataset.chunk`.
    engine : str, default=None
        xarray engine for NetCDF and Zarr. ``None`` picks it from the file's
        first bytes: NetCDF-3 (``b"CDF"``) with ``"netcdf4"`` when installed,
        else ``"scipy"``; NetCDF-4 (HDF5) with ``"h5netcdf"``; ``.zarr`` with
        ``"zarr"``. A given engine is used as is.
    rename : dict of str to str, default=None
        Names in the file (variables, coordinates or dims) to skmld's names,
        e.g. ``{"T": "temperature", "P": "pressure", "mu": "microstructure"}``
        or ``{"run": "sample"}``; applied first, so ``fields``, ``units`` and
        ``normalised_from`` use the new names. For arrays it renames ``fields``.
    fields : sequence of str, default=None
        NetCDF/Zarr: the data variables to keep, in this order (``None``: all).
        Arrays (required): the names along the fields axis, in order.
    units : dict of str to str, default=None
        Units per field, replacing the file's ``units`` attributes. Fields
        without units get the paper's units when named ``temperature`` (K),
        ``pressure`` (GPa) or ``microstructure`` (1).
    normalised_from : dict of str to (float, float), default=None
        Fields stored min-max normalised to [0, 1] and the physical range
        ``(lo, hi)`` they were scaled from: their values become
        ``x * (hi - lo) + lo`` (lazily), e.g. ``{"temperature": (300.0, 5000.0)}``.
    dt, dx, t0, key : float, float, float, str, default=None
        Arrays only: time between snapshots (ns, required), grid spacing (µm,
        required), time of the first snapshot (ns, default 0) and, for a
        ``.npz`` holding several arrays, the name of the one to read.
    **kwargs
        Passed to :func:`xarray.open_dataset` (NetCDF and Zarr).

    Returns
    -------
    xarray.DataArray
        Canonical field DataArray (see :func:`skmld.as_fields`), dask-backed
        unless ``chunks=None``.

    Raises
    ------
    ValueError
        For an unknown suffix, names in ``rename``, ``fields``, ``units`` or
        ``normalised_from`` that the file lacks, missing ``fields``/``dt``/``dx``
        for arrays, or array-only arguments given for NetCDF/Zarr.

    Warns
    -----
    skmld.exceptions.UnitsWarning
        When a field's values cannot be in its units: a field in K that is
        negative or lies wholly in [0, 1], which looks min-max normalised
        (pass ``normalised_from``). Eager data are checked whole; of lazy data
        only the first snapshot (sample 0, time 0) is read, so the check
        costs at most one chunk.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, xarray as xr
    >>> ds = xr.Dataset({"P": (("sample", "time", "y", "x"), np.ones((2, 2, 3, 3)),
    ...                        {"units": "GPa"})})
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "fields.nc"
    >>> write_fields(ds, path)
    >>> da = open_fields(path, rename={"P": "pressure"})
    >>> da.chunks[0], da["field"].values.tolist(), da["units"].values.tolist()
    ((1, 1), ['pressure'], ['GPa'])
    >>> np.save(path.with_suffix(".npy"), np.zeros((2, 3, 3, 1, 4)))   # (samples, H, W, fields, time)
    >>> open_fields(path.with_suffix(".npy"), fields=["pressure"], dt=2.0, dx=1.0).sizes["time"]
    4
    """
    from skmld._units import check_units, restore_normalised

    path = Path(path)
    fmt = _format(path)
    auto = isinstance(chunks, str) and chunks == "auto"
    if fmt == "array":
        if engine is not None or kwargs:
            raise ValueError(f"engine= and xarray options {sorted(kwargs)} apply to NetCDF and Zarr; "
                             f"{str(path)!r} is a numpy file.")
        ds = _open_arrays(path, chunks, fields, dt, dx, t0, key, rename)
        if chunks is not None and not auto:
            ds = ds.chunk(chunks)
    else:
        given = [n for n, v in (("dt", dt), ("dx", dx), ("t0", t0), ("key", key)) if v is not None]
        if given:
            raise ValueError(f"{given} describe .npy/.npz arrays; {str(path)!r} carries its own coordinates.")
        if engine is None:
            engine = "zarr" if fmt == "zarr" else netcdf_engine(path)
        if engine == "zarr":
            kwargs.setdefault("consolidated", _zarr_consolidated(path))
        ds = _rename(xr.open_dataset(path, engine=engine, chunks=None if auto else chunks, **kwargs), rename, path)
        if auto and "sample" in ds.dims:
            ds = ds.chunk({"sample": 1})
    ds = restore_normalised(_select(ds, fields if fmt != "array" else None, units, path), normalised_from,
                            stacklevel=3)
    out = as_fields(ds)  # dims checked before any value is read
    check_units(ds, stacklevel=3)
    return out


def write_fields(obj: xr.Dataset | xr.DataArray, path: str | os.PathLike, **kwargs: Any) -> None:
    """Write field data as a Dataset (one variable per field, ``units`` attrs).

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        Field data, see :func:`skmld.as_fields`.
    path : str or path-like
        ``.nc``/``.nc4`` writes NetCDF4 with h5netcdf; ``.zarr`` writes (and
        overwrites) a Zarr store.
    **kwargs
        Passed to :meth:`xarray.Dataset.to_netcdf` or :meth:`xarray.Dataset.to_zarr`.

    Raises
    ------
    ValueError
        If the suffix is not one of the above.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, xarray as xr
    >>> ds = xr.Dataset({"pressure": (("sample", "time", "y", "x"), np.ones((1, 2, 3, 3)))})
    >>> write_fields(ds, pathlib.Path(tempfile.mkdtemp()) / "fields.zarr")
    """
    path = Path(path)
    fmt = _format(path, _WRITABLE)
    ds = to_dataset(obj)
    if fmt == "netcdf":
        ds.to_netcdf(path, engine="h5netcdf", **kwargs)
    else:
        kwargs.setdefault("mode", "w")
        # Metadata consolidation is not part of Zarr format 3; skip it (and its warning).
        kwargs.setdefault("consolidated", False)
        if "encoding" not in kwargs and not any(v.chunks for v in ds.data_vars.values()):
            # Store one chunk per sample, the unit open_fields reads.
            try:
                ds = ds.chunk({"sample": 1})
            except ImportError:  # no dask: one chunk per variable
                pass
        ds.to_zarr(path, **kwargs)
