"""Tests of the field data model (skmld.fields) and the reference-array reader."""


import warnings

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from skmld._files import netcdf_engine
from skmld.datasets import from_reference_arrays
from skmld.fields import (
    FIELD_DIMS,
    as_fields,
    open_fields,
    to_dataset,
    validate_fields,
    write_fields,
)

UNITS = {"temperature": "K", "pressure": "GPa", "microstructure": "-"}


def make_dataset(n_samples=2, n_times=3, ny=4, nx=5, fields=tuple(UNITS), seed=0, chunk=False):
    rng = np.random.RandomState(seed)
    data_vars = {}
    for f in fields:
        values = rng.rand(n_samples, n_times, ny, nx)
        if UNITS.get(f) == "K":  # a temperature in K cannot lie in [0, 1]: skmld would warn
            values = 300.0 + 4700.0 * values
        if chunk:
            values = dsa.from_array(values, chunks=(1, n_times, ny, nx))
        attrs = {"units": UNITS[f]} if f in UNITS else {}
        data_vars[f] = (("sample", "time", "y", "x"), values, attrs)
    coords = {
        "sample": np.arange(10, 10 + n_samples),
        "time": ("time", 2.0 * np.arange(n_times), {"units": "ns"}),
        "y": ("y", 0.5 * np.arange(ny), {"units": "µm"}),
        "x": ("x", 0.5 * np.arange(nx), {"units": "µm"}),
    }
    return xr.Dataset(data_vars, coords=coords, attrs={"source": "test"})


# ------------------------------------------------------------------ as_fields


def test_as_fields_dataset_layout_and_round_trip():
    ds = make_dataset()
    da = as_fields(ds)
    assert da.dims == FIELD_DIMS
    assert da["field"].values.tolist() == list(UNITS)
    assert da["units"].values.tolist() == list(UNITS.values())
    assert da.attrs == {"source": "test"}
    for f in UNITS:
        np.testing.assert_array_equal(da.sel(field=f).values, ds[f].values)
    assert da["time"].attrs == {"units": "ns"}
    xr.testing.assert_identical(to_dataset(da), ds)


def test_as_fields_transposes_dataarray_by_name():
    da = as_fields(make_dataset())
    shuffled = da.transpose("x", "field", "time", "y", "sample")
    out = as_fields(shuffled)
    assert out.dims == FIELD_DIMS
    xr.testing.assert_identical(out, da)


def test_as_fields_dataset_with_transposed_variable():
    ds = make_dataset()
    ds["pressure"] = ds["pressure"].transpose("x", "y", "time", "sample")
    da = as_fields(ds)
    np.testing.assert_array_equal(da.sel(field="pressure").values,
                                  ds["pressure"].transpose("sample", "time", "y", "x").values)


def test_as_fields_units_from_attrs_mapping_and_missing_units():
    da = as_fields(make_dataset()).drop_vars("units")
    da.attrs["units"] = {"temperature": "K"}
    ds = to_dataset(da)
    assert ds["temperature"].attrs == {"units": "K"}
    assert "units" not in ds["pressure"].attrs
    assert "units" not in ds.attrs


@pytest.mark.parametrize("obj", [np.zeros((1, 2, 1, 3, 3)), {"temperature": 1}, [1, 2]])
def test_as_fields_type_error_names_type(obj):
    with pytest.raises(TypeError, match=type(obj).__name__):
        as_fields(obj)


def test_as_fields_dataarray_needs_field_names():
    da = as_fields(make_dataset()).drop_vars(["field", "units"])
    with pytest.raises(ValueError, match="no 'field' coordinate"):
        as_fields(da)


def test_as_fields_stays_lazy(raise_if_dask_computes):
    ds = make_dataset(chunk=True)
    with raise_if_dask_computes():
        da = as_fields(ds)
        back = to_dataset(da)
        again = as_fields(da.transpose("y", "x", "field", "sample", "time"))
    assert isinstance(da.data, dsa.Array)
    assert isinstance(back["pressure"].data, dsa.Array)
    assert isinstance(again.data, dsa.Array)
    xr.testing.assert_identical(back.compute(), make_dataset())


# ------------------------------------------------------------ validate_fields


def test_validate_fields_accepts_good_data_and_returns_canonical():
    ds = make_dataset()
    xr.testing.assert_identical(validate_fields(ds), as_fields(ds))
    xr.testing.assert_identical(validate_fields(as_fields(ds)), as_fields(ds))


def test_validate_fields_dask_computes_only_once(raise_if_dask_computes):
    ds = make_dataset(n_samples=3, chunk=True)
    with raise_if_dask_computes(max_computes=1) as scheduler:
        out = validate_fields(ds)
    assert scheduler.total == 1
    assert isinstance(out.data, dsa.Array)


def test_validate_fields_missing_dim():
    ds = make_dataset().isel(time=0)
    with pytest.raises(ValueError, match=r"missing dims \['time'\].*expected dims"):
        validate_fields(ds)
    with pytest.raises(ValueError, match=r"missing dims \['time'\]"):
        validate_fields(as_fields(make_dataset()).isel(time=0))


def test_validate_fields_extra_dim():
    da = as_fields(make_dataset()).expand_dims(member=2)
    with pytest.raises(ValueError, match=r"unexpected dims \['member'\]"):
        validate_fields(da)
    ds = make_dataset()
    ds["porosity"] = ds["pressure"].expand_dims(z=3)
    with pytest.raises(ValueError, match=r"variable 'porosity' has unexpected dims \['z'\]"):
        validate_fields(ds)


def test_validate_fields_name_used_in_messages():
    with pytest.raises(ValueError, match=r"^meso_X variable 'temperature' is missing dims \['x'\]"):
        validate_fields(make_dataset().isel(x=0), name="meso_X")


def test_validate_fields_empty_dim():
    ds = make_dataset().isel(sample=slice(0, 0))
    with pytest.raises(ValueError, match=r"empty dims \['sample'\]"):
        validate_fields(ds)
    with pytest.raises(ValueError, match="without data variables"):
        validate_fields(xr.Dataset())


def test_validate_fields_non_numeric():
    ds = make_dataset()
    ds["label"] = ds["pressure"].astype(str)
    with pytest.raises(ValueError, match="field 'label' has non-numeric dtype"):
        validate_fields(ds)
    with pytest.raises(ValueError, match="non-numeric dtype complex"):
        validate_fields(ds.drop_vars("label").assign(pressure=ds["pressure"] + 0j))


def test_validate_fields_single_time_step():
    ds = make_dataset().isel(time=[0])
    with pytest.raises(ValueError, match="1 time step; at least 2"):
        validate_fields(ds)


def test_validate_fields_time_not_increasing():
    ds = make_dataset(n_times=4).assign_coords(time=[0.0, 2.0, 2.0, 4.0])
    with pytest.raises(ValueError, match=r"strictly increasing; time\[1\]=2.0"):
        validate_fields(ds)
    ds = make_dataset(n_times=3).assign_coords(time=[4.0, 2.0, 0.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        validate_fields(ds)


def test_validate_fields_time_not_uniform():
    ds = make_dataset(n_times=4).assign_coords(time=[0.0, 2.0, 4.0, 6.5])
    with pytest.raises(ValueError, match=r"uniformly spaced.*step 2 .*is 2.5"):
        validate_fields(ds)


def test_validate_fields_time_tolerances():
    # float32 rounding of a long uniform axis is not an irregular step.
    ds = make_dataset(n_times=200, nx=2, ny=2)
    validate_fields(ds.assign_coords(time=(np.arange(200) * 0.1).astype(np.float32)))
    validate_fields(ds.assign_coords(time=np.datetime64("2025-01-01") + np.arange(200)
                                    * np.timedelta64(2, "ns")))
    validate_fields(ds.drop_vars("time"))  # no coordinate: nothing to check
    irregular = 2.0 * np.arange(200)
    irregular[100:] += 1e-4  # a relative jump of 5e-5 in one step
    with pytest.raises(ValueError, match="uniformly spaced"):
        validate_fields(ds.assign_coords(time=irregular))


@st.composite
def _bad_positions(draw):
    n_samples = draw(st.integers(1, 3))
    n_times = draw(st.integers(2, 4))
    n_fields = draw(st.integers(1, 3))
    ny, nx = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pos = st.tuples(st.integers(0, n_samples - 1), st.integers(0, n_times - 1),
                    st.integers(0, n_fields - 1), st.integers(0, ny - 1), st.integers(0, nx - 1))
    positions = draw(st.lists(pos, min_size=1, max_size=3, unique=True))
    values = draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf]),
                           min_size=len(positions), max_size=len(positions)))
    return (n_samples, n_times, n_fields, ny, nx), positions, values


@settings(max_examples=25, deadline=None)
@given(case=_bad_positions(), lazy=st.booleans(), as_array=st.booleans())
def test_validate_fields_names_first_non_finite_value(case, lazy, as_array):
    (n_samples, n_times, n_fields, ny, nx), positions, values = case
    fields = [f"f{k}" for k in range(n_fields)]
    data = np.zeros((n_samples, n_times, n_fields, ny, nx))
    for p, v in zip(positions, values):
        data[p] = v
    if lazy:
        data = dsa.from_array(data, chunks=(1, -1, 1, -1, -1))
    da = xr.DataArray(data, dims=FIELD_DIMS, coords={
        "field": fields, "sample": np.arange(n_samples) + 100, "time": 0.5 * np.arange(n_times)})
    obj = da if as_array else to_dataset(da)
    # The first bad value in (sample, time, field) order, and its kind.
    s, t, f = min(p[:3] for p in positions)
    slice_values = [v for p, v in zip(positions, values) if p[:3] == (s, t, f)]
    kind = "NaN" if any(np.isnan(v) for v in slice_values) else "inf"
    with pytest.raises(ValueError) as info:
        validate_fields(obj)
    msg = str(info.value)
    assert f"contains {kind} in field 'f{f}'" in msg
    assert f"sample index {s} (sample={100 + s})" in msg
    assert f"time index {t} (time={0.5 * t})" in msg
    n_bad_slices = len({p[:3] for p in positions})
    assert ("more (sample, time, field)" in msg) == (n_bad_slices > 1)


def test_validate_fields_integer_fields_skip_finite_check():
    ds = make_dataset().assign(microstructure=lambda d: (d["microstructure"] > 0.5).astype(int))
    assert validate_fields(ds).sizes["field"] == 3


# ------------------------------------------------------------------ file I/O


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_write_open_round_trip(tmp_path, suffix):
    if suffix == ".zarr":
        pytest.importorskip("zarr")
    ds = make_dataset(n_samples=3)
    path = tmp_path / f"fields{suffix}"
    write_fields(ds, path)
    da = open_fields(path)
    assert da.dims == FIELD_DIMS
    assert isinstance(da.data, dsa.Array)
    assert da.chunks[0] == (1, 1, 1)  # one chunk per sample
    back = to_dataset(da).compute()
    xr.testing.assert_identical(back, ds)
    eager = open_fields(path, chunks=None)
    assert isinstance(eager.data, np.ndarray)
    xr.testing.assert_identical(to_dataset(eager), ds)


def test_write_fields_accepts_dataarray(tmp_path):
    ds = make_dataset()
    write_fields(as_fields(ds), tmp_path / "a.nc")
    xr.testing.assert_identical(to_dataset(open_fields(tmp_path / "a.nc")).compute(), ds)


@pytest.mark.parametrize("name", ["fields.h5", "fields", "fields.csv"])
def test_unknown_suffix(tmp_path, name):
    with pytest.raises(ValueError, match=r"suffix.*\.nc.*\.zarr"):
        write_fields(make_dataset(), tmp_path / name)
    with pytest.raises(ValueError, match="suffix"):
        open_fields(tmp_path / name)


def test_write_fields_refuses_numpy_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"suffix '\.npy'; use one of \['\.nc', '\.nc4', '\.zarr'\]"):
        write_fields(make_dataset(), tmp_path / "a.npy")


def _file_names(ds):
    """ds as another code writes it: variables T, P, mu."""
    return ds.rename(temperature="T", pressure="P", microstructure="mu")


def test_open_netcdf3_picks_engine_from_magic_bytes(tmp_path):
    ds = make_dataset()
    nc3, nc4 = tmp_path / "a.nc", tmp_path / "b.nc"
    ds.to_netcdf(nc3, engine="scipy")  # NetCDF-3: h5netcdf cannot read it
    write_fields(ds, nc4)
    assert nc3.read_bytes()[:3] == b"CDF"
    assert netcdf_engine(nc3) == "scipy" and netcdf_engine(nc4) == "h5netcdf"
    for path in (nc3, nc4):
        xr.testing.assert_identical(to_dataset(open_fields(path)).compute(), ds)
        xr.testing.assert_identical(to_dataset(open_fields(path, engine="scipy" if path == nc3 else "h5netcdf",
                                                           chunks=None)), ds)


def test_open_fields_prefers_netcdf4_for_netcdf3_when_installed(tmp_path, monkeypatch):
    import importlib.util

    path = tmp_path / "a.nc"
    make_dataset().to_netcdf(path, engine="scipy")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "netCDF4"
                        else find_spec(name, *a))
    assert netcdf_engine(path) == "netcdf4"


def test_open_fields_user_engine_wins(tmp_path, monkeypatch):
    path = tmp_path / "a.nc"
    make_dataset().to_netcdf(path, engine="scipy")
    engines, open_dataset = [], xr.open_dataset
    monkeypatch.setattr(xr, "open_dataset", lambda *a, engine, **kw: engines.append(engine) or open_dataset(
        *a, engine=engine, **kw))
    open_fields(path, engine="scipy", mask_and_scale=False)  # keywords pass through to xarray
    open_fields(path)
    assert engines == ["scipy", "scipy"]
    with pytest.raises(Exception, match="NetCDF|netcdf|HDF|signature"):  # h5netcdf on NetCDF-3: the user's choice
        open_fields(path, engine="h5netcdf")


def test_open_fields_rename_select_units(tmp_path):
    ds = make_dataset()
    path = tmp_path / "a.nc"
    write_fields(_file_names(ds).assign(extra=ds["pressure"] * 2), path)
    names = {"T": "temperature", "P": "pressure", "mu": "microstructure"}
    da = open_fields(path, rename=names, fields=list(UNITS), units={"microstructure": "1"})
    assert da["field"].values.tolist() == list(UNITS)
    assert da["units"].values.tolist() == ["K", "GPa", "1"]
    np.testing.assert_array_equal(da.sel(field="temperature").values, ds["temperature"].values)
    # dims too: a file with dims ("run", "time", "y", "x")
    other = tmp_path / "b.nc"
    _file_names(ds).rename(sample="run").to_netcdf(other, engine="h5netcdf")
    da = open_fields(other, rename={**names, "run": "sample"})
    assert da.dims == FIELD_DIMS and da.chunks[0] == (1, 1)
    file_vars = r"its variables are \['T', 'P', 'mu', 'extra'\]"
    with pytest.raises(ValueError, match=r"rename names \['Q'\], which .* " + file_vars):
        open_fields(path, rename={"Q": "temperature"})
    with pytest.raises(ValueError, match=r"has no variables \['temperature'\]; " + file_vars
                       + r" \(map other names with rename=\)"):
        open_fields(path, fields=["temperature"])
    with pytest.raises(ValueError, match=r"\['dt', 'key'\] describe \.npy/\.npz arrays"):
        open_fields(path, dt=1.0, key="x")


def reference_array(n_samples=2, seed=0):
    """(samples, H, W, fields, time) values in physical units."""
    array = np.random.RandomState(seed).rand(n_samples, 4, 5, 3, 3)
    array[:, :, :, 0] = 300.0 + 4700.0 * array[:, :, :, 0]
    return array


def test_open_npy_like_from_reference_arrays(tmp_path):
    array = reference_array()
    np.save(tmp_path / "a.npy", array)
    expected = as_fields(from_reference_arrays(array, list(UNITS), dt=2.0, dx=0.5, t0=1.0))
    da = open_fields(tmp_path / "a.npy", fields=list(UNITS), dt=2.0, dx=0.5, t0=1.0)
    assert isinstance(da.data, dsa.Array) and da.chunks[0] == (1, 1)
    xr.testing.assert_identical(da.compute(), expected)
    eager = open_fields(tmp_path / "a.npy", fields=["T", "P", "mu"], rename={"T": "temperature", "P": "pressure",
                        "mu": "microstructure"}, dt=2.0, dx=0.5, t0=1.0, chunks=None)
    assert isinstance(eager.data, np.ndarray)
    xr.testing.assert_identical(eager, expected)
    assert open_fields(tmp_path / "a.npy", fields=list(UNITS), dt=2.0, dx=0.5, chunks={"time": 1}).chunks[1] == (1,) * 3
    with pytest.raises(ValueError, match=r"holds a bare \(samples, H, W, fields, time\) array: pass \['dt', 'dx'\]"):
        open_fields(tmp_path / "a.npy", fields=list(UNITS))
    with pytest.raises(ValueError, match=r"rename names \['T'\], which are not in fields \['temperature', "):
        open_fields(tmp_path / "a.npy", fields=list(UNITS), dt=2.0, dx=0.5, rename={"T": "temperature"})
    with pytest.raises(ValueError, match=r"engine= and xarray options \[\] apply to NetCDF and Zarr"):
        open_fields(tmp_path / "a.npy", fields=list(UNITS), dt=2.0, dx=0.5, engine="scipy")


def test_open_npz_one_array_or_by_key(tmp_path):
    array = reference_array()
    np.savez(tmp_path / "one.npz", array)
    np.savez(tmp_path / "two.npz", micro=array, meso=reference_array(1, seed=1))
    meta = {"fields": list(UNITS), "dt": 2.0, "dx": 1.0}
    expected = as_fields(from_reference_arrays(array, **meta))
    xr.testing.assert_identical(open_fields(tmp_path / "one.npz", **meta).compute(), expected)
    xr.testing.assert_identical(open_fields(tmp_path / "two.npz", key="micro", **meta).compute(), expected)
    with pytest.raises(ValueError, match=r"holds 2 arrays \['micro', 'meso'\]; name one with key="):
        open_fields(tmp_path / "two.npz", **meta)
    with pytest.raises(ValueError, match=r"has no array 'x'; its arrays are \['micro', 'meso'\]"):
        open_fields(tmp_path / "two.npz", key="x", **meta)


@pytest.mark.parametrize("lazy", [True, False])
def test_open_fields_warns_about_normalised_kelvin(tmp_path, lazy):
    from skmld.exceptions import UnitsWarning

    ds = make_dataset()
    ds["temperature"] = (ds["temperature"] - 300.0) / 4700.0  # min-max normalised, still labelled K
    path = tmp_path / "a.nc"
    write_fields(ds, path)
    chunks = "auto" if lazy else None
    with pytest.warns(UnitsWarning, match=r"^Field 'temperature' is declared in 'K' but all its values .*lie in "
                                          r"\[0, 1\] .*it looks min-max normalised.*normalised_from="):
        open_fields(path, chunks=chunks)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        da = open_fields(path, chunks=chunks, normalised_from={"temperature": (300.0, 4700.0 + 300.0)})
    np.testing.assert_allclose(da.sel(field="temperature").values, make_dataset()["temperature"].values)


# ------------------------------------------------------- from_reference_arrays


@settings(max_examples=25, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 4)] * 5), data=st.data())
def test_from_reference_arrays_maps_axes(shape, data):
    s, h, w, f, t = (data.draw(st.integers(0, n - 1)) for n in shape)
    array = np.zeros(shape)
    array[s, h, w, f, t] = 7.0
    fields = [f"f{k}" for k in range(shape[3])]
    ds = from_reference_arrays(array, fields, dt=0.5, dx=2.0, t0=1.0)
    hits = [(name, *np.argwhere(ds[name].values == 7.0).tolist())
            for name in fields if (ds[name].values == 7.0).any()]
    # dims are (sample, time, y, x)
    assert hits == [(f"f{f}", [s, t, h, w])]
    assert ds[f"f{f}"].dims == ("sample", "time", "y", "x")
    np.testing.assert_allclose(ds["time"], 1.0 + 0.5 * np.arange(shape[4]))
    np.testing.assert_allclose(ds["y"], 2.0 * np.arange(shape[1]))
    np.testing.assert_allclose(ds["x"], 2.0 * np.arange(shape[2]))


def test_from_reference_arrays_units_and_validity():
    array = np.random.RandomState(0).rand(2, 4, 5, 3, 3)
    array[:, :, :, 0] = 300.0 + 4700.0 * array[:, :, :, 0]  # temperature in K
    ds = from_reference_arrays(array, list(UNITS), dt=2.0, dx=1.0, units={"pressure": "Pa"})
    assert [ds[f].attrs["units"] for f in UNITS] == ["K", "Pa", "1"]  # CF: "1" for dimensionless, as the simulator writes it
    validate_fields(ds)
    other = from_reference_arrays(array, ["a", "b", "c"], dt=2.0, dx=1.0)
    assert all("units" not in other[f].attrs for f in "abc")


def test_from_reference_arrays_lazy(raise_if_dask_computes):
    array = dsa.full((2, 4, 5, 3, 3), 300.0, chunks=1)
    with raise_if_dask_computes():
        ds = from_reference_arrays(array, ["a", "b", "c"], dt=2.0, dx=1.0)
    # A field in K: only its first snapshot is computed, for the unit check.
    with raise_if_dask_computes(max_computes=1):
        ds = from_reference_arrays(array, list(UNITS), dt=2.0, dx=1.0)
    assert isinstance(ds["temperature"].data, dsa.Array)


def test_from_reference_arrays_errors():
    with pytest.raises(ValueError, match=r"fields axis .* has 3"):
        from_reference_arrays(np.zeros((1, 2, 2, 3, 2)), ["a", "b"], dt=1.0, dx=1.0)
    with pytest.raises(ValueError, match="must be 5-D.*got 4-D"):
        from_reference_arrays(np.zeros((1, 2, 2, 3)), ["a", "b", "c"], dt=1.0, dx=1.0)
    with pytest.raises(ValueError, match=r"units names fields \['d'\]"):
        from_reference_arrays(np.zeros((1, 2, 2, 1, 2)), ["a"], dt=1.0, dx=1.0, units={"d": "K"})
