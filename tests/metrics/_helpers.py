"""Test data shared by the tests of skmld.metrics: small field arrays with known hotspots and noise.

Imported as ``from _helpers import ...``; each test module puts its own folder
on ``sys.path`` first (pytest runs with ``--import-mode=importlib``).
"""

from __future__ import annotations

import numpy as np
import xarray as xr


FIELDS = ["temperature", "pressure", "microstructure"]


def temperature_array(values, dx=1.0, dy=1.0, time=None):
    """(sample, time, y, x) temperature with coordinates."""
    values = np.asarray(values, dtype=float)
    n_s, n_t, n_y, n_x = values.shape
    time = np.arange(n_t, dtype=float) if time is None else np.asarray(time, dtype=float)
    return xr.DataArray(
        values,
        dims=("sample", "time", "y", "x"),
        coords={"time": time, "y": np.arange(n_y) * dy, "x": np.arange(n_x) * dx},
        attrs={"units": "K"},
    )


def make_fields(n_samples=4, n_time=5, n=16, seed=0):
    """Canonical field array: a hot disc growing around a collapsing pore."""
    rng = np.random.RandomState(seed)
    y = np.arange(n) * 0.5
    x = np.arange(n) * 0.5
    time = np.arange(n_time) * 2.0
    r = np.hypot(*np.meshgrid(y - y.mean(), x - x.mean(), indexing="ij"))
    out = np.empty((n_samples, n_time, 3, n, n))
    for s in range(n_samples):
        r0 = 0.8 + 0.3 * rng.rand()
        for t in range(n_time):
            radius = r0 + 0.35 * t
            out[s, t, 0] = 300 + 1700 * (r < radius) * (1 + 0.1 * t) + rng.rand(n, n)
            out[s, t, 1] = 5 + 3 * np.exp(-((r - radius) ** 2)) + 0.1 * rng.rand(n, n)
            out[s, t, 2] = (r > 2.5 - 0.4 * t).astype(float)
    return xr.DataArray(
        out,
        dims=("sample", "time", "field", "y", "x"),
        coords={
            "time": ("time", time, {"units": "ns"}),
            "field": FIELDS,
            "units": ("field", ["K", "GPa", "-"]),
            "y": ("y", y, {"units": "µm"}),
            "x": ("x", x, {"units": "µm"}),
        },
    )


def _raising_scheduler(dsk, keys, **kwargs):
    raise AssertionError("dask computed eagerly")


THETA = 875.0


def cold(n_samples=1, n_time=1, n_y=4, n_x=4, dx=1.0, dy=1.0):
    """A cold (300 K) temperature array, writable, with coordinates."""
    return temperature_array(np.full((n_samples, n_time, n_y, n_x), 300.0), dx=dx, dy=dy)


PROB_FIELDS = ["temperature", "pressure"]


def gaussian_case(n_samples=8, n_time=3, n=50, seed=0, fields=PROB_FIELDS):
    """(truth, mean, std): truth drawn from N(mean, std²), the std varying by pixel."""
    rng = np.random.RandomState(seed)
    shape = (n_samples, n_time, len(fields), n, n)
    scale = np.array([100.0, 0.5, 0.05][: len(fields)])[:, None, None]
    mean = np.array([800.0, 6.0, 0.5][: len(fields)])[:, None, None] + scale * rng.randn(*shape)
    std = scale * (0.2 + rng.rand(*shape))
    truth = mean + std * rng.randn(*shape)
    coords = {
        "time": ("time", 1.0 + np.arange(n_time), {"units": "ns"}),
        "field": fields,
        "units": ("field", ["K", "GPa", "-"][: len(fields)]),
    }
    dims = ("sample", "time", "field", "y", "x")
    return tuple(xr.DataArray(a, dims=dims, coords=coords) for a in (truth, mean, std))


def _dataset(arr, bounds=None):
    ds = arr.to_dataset(dim="field").drop_vars("units")
    for var in ds.data_vars:
        ds[var].attrs["units"] = str(arr["units"].sel(field=var).item())
    for var, (lo, hi) in (bounds or {}).items():
        ds[var].attrs.update(valid_min=lo, valid_max=hi)
    return ds
