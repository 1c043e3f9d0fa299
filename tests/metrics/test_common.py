"""Tests of skmld.metrics._common: the input checks, time alignment, units and pixel area every metric shares."""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr

from skmld.metrics._common import (
    _align_time,
    _check_values,
    _coord_spacing,
    _field_units,
    _pixel_area,
    _real,
    _time_units,
)


def _fields(values, time=None):
    values = np.asarray(values, dtype=float)
    coords = {"field": ["temperature", "pressure"][: values.shape[2]]}
    if time is not None:
        coords["time"] = time
    return xr.DataArray(values, dims=("sample", "time", "field", "y", "x"), coords=coords)


def test_check_values_names_the_first_non_finite_value_by_coordinate_or_index():
    arr = _fields(np.zeros((2, 3, 2, 2, 2)), time=[0.0, 2.0, 4.0])
    arr[1, 2, 1, 0, 1] = np.nan
    arr[1, 2, 1, 1, 1] = np.inf  # after the NaN in (sample, time, field, y, x) order
    # No 'sample' coordinate: its index; y and x are not named.
    with pytest.raises(ValueError, match=r"^truth contains NaN \(first at sample index 1, time=4\.0, "
                                         r"field='pressure'\)\.$"):
        _check_values(arr, "truth")
    arr[1, 2, 1, 0, 1] = 0.0
    with pytest.raises(ValueError, match=r"pred contains inf \(first at sample index 1, time=4\.0, field='pressure'\)"):
        _check_values(arr, "pred")
    arr[1, 2, 1, 1, 1] = 0.0
    assert _check_values(arr, "pred") is arr


def test_check_values_dtype_empty_dims_and_duplicate_coordinates():
    arr = _fields(np.zeros((1, 2, 1, 2, 2)))
    for ok in (arr.astype(bool), arr.astype(np.int8), arr.astype(np.float16)):
        assert _check_values(ok, "X") is ok
    with pytest.raises(ValueError, match=r"X must hold real numbers .*got dtype complex128"):
        _check_values(arr.astype(complex), "X")
    with pytest.raises(ValueError, match=r"X has empty dims \['x'\]"):
        _check_values(arr.isel(x=slice(0, 0)), "X")
    with pytest.raises(ValueError, match="X's 'time' coordinate has duplicate values"):
        _check_values(arr.assign_coords(time=[1.0, 1.0]), "X")


@pytest.mark.parametrize("value, positive, expected", [(2, False, 2.0), (np.float32(0.5), True, 0.5),
                                                        (-3, False, -3.0), (np.int64(7), True, 7.0)])
def test_real_accepts_finite_numbers_as_float(value, positive, expected):
    out = _real(value, "k", positive=positive)
    assert out == expected and type(out) is float


def test_real_rejects_by_name():
    assert _real(None, "dt", allow_none=True) is None
    for value in (True, np.bool_(False), "1", None, [1.0]):
        with pytest.raises(TypeError, match=re.escape(f"k must be a real number, got {value!r}.")):
            _real(value, "k")
    for value in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="k must be a finite number"):
            _real(value, "k")
    for value in (0, -1e-9):
        with pytest.raises(ValueError, match="dt must be a positive finite number"):
            _real(value, "dt", positive=True)


def test_align_time_keeps_the_common_times_and_names_mismatches():
    a = _fields(np.arange(2 * 4 * 1 * 2 * 2).reshape(2, 4, 1, 2, 2), time=[0.0, 1.0, 2.0, 3.0])
    b = _fields(np.ones((2, 3, 1, 2, 2)), time=[1.0, 2.0, 5.0])
    a2, b2 = _align_time(a, b, ("truth", "pred"))
    assert a2["time"].values.tolist() == b2["time"].values.tolist() == [1.0, 2.0]
    xr.testing.assert_identical(a2, a.sel(time=[1.0, 2.0]))
    with pytest.raises(ValueError, match=r"'x' is only in truth .*inverse_transform"):
        _align_time(a, b.isel(x=0), ("truth", "pred"))
    with pytest.raises(ValueError, match=r"differ in size along 'y': 2 vs 1"):
        _align_time(a, b.isel(y=[0]), ("truth", "pred"))
    with pytest.raises(ValueError, match="share no time coordinate values"):
        _align_time(a, b.assign_coords(time=[7.0, 8.0, 9.0]), ("truth", "pred"))


def test_field_units_from_the_units_coordinate_else_the_defaults():
    arr = _fields(np.zeros((1, 2, 2, 1, 1)))
    assert _field_units(arr) == {"temperature": "K", "pressure": "GPa"}  # skmld's defaults
    # An empty string means "no units": the default, where the field has one.
    named = arr.assign_coords(field=["temperature", "density"], units=("field", ["degC", ""]))
    assert _field_units(named) == {"temperature": "degC", "density": ""}
    assert _field_units(arr.isel(field=0, drop=True)) == {}


def test_pixel_area_from_the_coordinates_or_given_or_counted_with_a_warning():
    temp = xr.DataArray(np.zeros((1, 1, 3, 4)), dims=("sample", "time", "y", "x"),
                        coords={"y": [0.0, 2.0, 4.0], "x": ("x", [0.0, 0.5, 1.0, 1.5], {"units": "mm"})})
    assert _coord_spacing(temp, "y") == 2.0 and _coord_spacing(temp, "x") == 0.5
    assert _pixel_area(temp, None, "areas count pixels") == (1.0, "mm^2", None)  # dx · dy
    assert _pixel_area(temp, 3.0, "areas count pixels") == (3.0, "mm^2", None)
    bare = temp.drop_vars(["x", "y"])
    with pytest.warns(UserWarning, match="no x/y coordinates .*: areas count pixels; pass pixel_area="):
        area, units, note = _pixel_area(bare, None, "areas count pixels")
    assert (area, units) == (1.0, "pixel") and note.endswith("areas count pixels")
    assert _coord_spacing(temp.isel(y=[0]), "y") is None  # one row: no spacing


def test_time_units_from_the_time_coordinate():
    arr = _fields(np.zeros((1, 2, 1, 1, 1)))
    assert _time_units(arr) == "step"
    assert _time_units(arr.assign_coords(time=("time", [0.0, 1.0], {"units": "ps"}))) == "ps"
    assert _time_units(arr.assign_coords(time=[0.0, 1.0])) == "ns"  # skmld's time unit
