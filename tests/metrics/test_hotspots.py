"""Tests of skmld.metrics._hotspots: hotspot_metrics, hotspot_rmse and hotspot_counts (closed forms, invariants)."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from skmld.metrics import hotspot_counts, hotspot_mask_scores, hotspot_metrics, hotspot_rmse

sys.path.insert(0, os.path.dirname(__file__))
from _helpers import THETA, cold, make_fields, temperature_array


# ---------------------------------------------------------------------------
# hotspot_metrics: hand-computed values
# ---------------------------------------------------------------------------

def test_no_hotspot_gives_zero_temperature_and_area():
    T = temperature_array(np.full((2, 3, 4, 5), 875.0))  # at, not above, the threshold
    hs = hotspot_metrics(T)
    np.testing.assert_array_equal(hs["T_hs"], 0.0)
    np.testing.assert_array_equal(hs["A_hs"], 0.0)
    np.testing.assert_array_equal(hs["dT_hs_dt"], 0.0)
    assert hs["T_hs"].dims == ("sample", "time")
    assert hs["dT_hs_dt"].dims == ("sample", "interval")


def test_one_hot_pixel():
    values = np.full((1, 2, 4, 4), 300.0)
    values[0, 1, 2, 3] = 1500.0
    hs = hotspot_metrics(temperature_array(values, dx=2.0, dy=0.5, time=[0.0, 4.0]))
    assert hs["T_hs"].values.tolist() == [[0.0, 1500.0]]
    assert hs["A_hs"].values.tolist() == [[0.0, 1.0]]  # one pixel of 2 µm × 0.5 µm
    assert hs["dT_hs_dt"].values.tolist() == [[1500.0 / 4.0]]
    assert hs["dA_hs_dt"].values.tolist() == [[1.0 / 4.0]]
    assert hs["interval"].values.tolist() == [0.0]
    assert hs.attrs["pixel_area"] == 1.0


def test_growing_hot_square_non_uniform_time():
    # Sides 0, 1, 2, 3 px of 1 µm × 0.5 µm at non-uniform times.
    time = [0.0, 0.5, 1.5, 3.0]
    values = np.full((1, 4, 10, 10), 300.0)
    for t, side in enumerate(range(4)):
        values[0, t, :side, :side] = 1000.0 + 100.0 * t
    hs = hotspot_metrics(temperature_array(values, dx=1.0, dy=0.5, time=time))
    np.testing.assert_allclose(hs["A_hs"][0], [0.0, 0.5, 2.0, 4.5])
    np.testing.assert_allclose(hs["T_hs"][0], [0.0, 1100.0, 1200.0, 1300.0])
    np.testing.assert_allclose(hs["dA_hs_dt"][0], [0.5 / 0.5, 1.5 / 1.0, 2.5 / 1.5])
    np.testing.assert_allclose(hs["dT_hs_dt"][0], [1100.0 / 0.5, 100.0, 100.0 / 1.5])
    np.testing.assert_allclose(hs["interval"], time[:-1])


def test_growing_hot_disc_area_and_rate():
    dx = 0.25  # µm, 200 × 200 px
    n = 200
    c = (np.arange(n) - n / 2 + 0.5) * dx
    r = np.hypot(*np.meshgrid(c, c, indexing="ij"))
    time = np.arange(4) * 2.0  # ns
    radii = 5.0 + 1.5 * time  # µm
    values = np.stack([np.where(r < rad, 2000.0, 300.0) for rad in radii])[None]
    hs = hotspot_metrics(temperature_array(values, dx=dx, dy=dx, time=time))
    area = np.pi * radii**2
    np.testing.assert_allclose(hs["A_hs"][0], area, rtol=0.02)
    np.testing.assert_allclose(hs["dA_hs_dt"][0], np.diff(area) / 2.0, rtol=0.03)
    np.testing.assert_allclose(hs["T_hs"][0], 2000.0)
    np.testing.assert_allclose(hs["dT_hs_dt"][0], 0.0)
    assert hs["A_hs"].attrs["units"] == "µm^2"
    assert hs["dA_hs_dt"].attrs["units"] == "µm^2/ns"
    assert hs["dT_hs_dt"].attrs["units"] == "K/ns"


def test_threshold_pixel_area_and_dt_arguments():
    values = np.full((1, 2, 3, 3), 300.0)
    values[0, 1, 0, :2] = 600.0
    T = temperature_array(values)
    hs = hotspot_metrics(T, threshold=500.0, pixel_area=3.0, dt=0.5)
    assert hs["A_hs"].values.tolist() == [[0.0, 6.0]]
    assert hs["dA_hs_dt"].values.tolist() == [[12.0]]
    assert hs.attrs["threshold"] == 500.0


def test_pixel_area_without_coordinates_warns_and_counts_pixels():
    values = np.full((1, 1, 3, 3), 1000.0)
    T = xr.DataArray(values, dims=("sample", "time", "y", "x"))
    with pytest.warns(UserWarning, match="pixel area"):
        hs = hotspot_metrics(T)
    assert hs["A_hs"].values.tolist() == [[9.0]]
    assert hs["A_hs"].attrs["units"] == "pixel"
    assert "note" in hs.attrs
    assert hs.sizes["interval"] == 0  # one snapshot, no rate


def test_hotspot_metrics_accepts_fields_and_dataset():
    X = make_fields()
    temperature = X.sel(field="temperature", drop=True).drop_vars("units", errors="ignore")
    expected = hotspot_metrics(temperature)
    from_array = hotspot_metrics(X)
    from_dataset = hotspot_metrics(X.to_dataset(dim="field"))
    xr.testing.assert_allclose(from_array, expected)
    xr.testing.assert_allclose(from_dataset, expected)
    assert from_array["T_hs"].attrs["units"] == "K"


def test_hotspot_metrics_rejects_tokens_with_hint():
    tokens = xr.DataArray(
        np.zeros((1, 2, 1, 1, 1, 4, 4)),
        dims=("sample", "time", "field", "token_y", "token_x", "patch_y", "patch_x"),
        coords={"field": ["temperature"]},
    )
    with pytest.raises(ValueError, match="inverse_transform"):
        hotspot_metrics(tokens)
    with pytest.raises(ValueError, match="'temperature'"):
        hotspot_metrics(make_fields().sel(field=["pressure"]))


# ---------------------------------------------------------------------------
# hotspot_metrics: properties
# ---------------------------------------------------------------------------

temperatures = arrays(
    np.float64,
    st.tuples(
        st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5)
    ),
    elements=st.floats(250.0, 2500.0),
)


@settings(max_examples=60, deadline=None)
@given(values=temperatures, data=st.data())
def test_hotspot_properties(values, data):
    n_s, n_t = values.shape[:2]
    steps = data.draw(st.lists(st.floats(0.1, 5.0), min_size=n_t, max_size=n_t))
    time = np.cumsum(steps)
    threshold = 875.0
    # Explicit pixel area: a single row or column has no spacing to derive it from.
    hs = hotspot_metrics(temperature_array(values, time=time), threshold, pixel_area=1.0)

    # Areas are non-negative; T_hs is above the threshold or exactly 0.
    assert (hs["A_hs"] >= 0).all()
    t_hs = hs["T_hs"].values
    assert np.all((t_hs > threshold) | (t_hs == 0.0))
    # A hotspot exists exactly where the area is positive.
    np.testing.assert_array_equal(t_hs > 0, hs["A_hs"].values > 0)

    # Rates integrate back to the values: M[0] + cumsum(rate * dt) == M[1:].
    dt = np.diff(time)
    for value, rate in (("T_hs", "dT_hs_dt"), ("A_hs", "dA_hs_dt")):
        m = hs[value].values
        rebuilt = m[:, :1] + np.cumsum(hs[rate].values * dt, axis=1)
        np.testing.assert_allclose(rebuilt, m[:, 1:], rtol=1e-9, atol=1e-6)

    # Reordering samples reorders the metrics and nothing else.
    perm = data.draw(st.permutations(range(n_s)))
    hs_perm = hotspot_metrics(
        temperature_array(values[list(perm)], time=time), threshold, pixel_area=1.0
    )
    for name in hs.data_vars:
        np.testing.assert_allclose(hs_perm[name].values, hs[name].values[list(perm)])


# ---------------------------------------------------------------------------
# hotspot_rmse and hotspot_counts
# ---------------------------------------------------------------------------

def test_hotspot_rmse_closed_form():
    values = np.full((2, 3, 4, 4), 1000.0)
    truth = temperature_array(values, time=[0.0, 2.0, 4.0])
    pred_values = values.copy()
    pred_values[0] += 10.0  # sample 0: T_hs off by 10 everywhere
    pred_values[1, 2, 0, 0] = 300.0  # sample 1, last time: one pixel lost
    pred = temperature_array(pred_values, time=[0.0, 2.0, 4.0])
    r = hotspot_rmse(truth, pred)
    np.testing.assert_allclose(r["T_hs"], [math.sqrt(100 / 2)] * 3)
    np.testing.assert_allclose(r["A_hs"], [0.0, 0.0, math.sqrt(1 / 2)])
    np.testing.assert_allclose(r["A_hs_overall"], math.sqrt(1 / 6))
    np.testing.assert_allclose(r["T_hs_overall"], math.sqrt(100 / 2))
    # Rates: only the last interval of sample 1 changes, by -1 µm² / 2 ns.
    np.testing.assert_allclose(r["dA_hs_dt"], [0.0, math.sqrt(0.25 / 2)])
    assert r["dA_hs_dt"].dims == ("interval",)
    assert r["T_hs_overall"].ndim == 0
    assert r["T_hs"].attrs["units"] == "K"


def test_hotspot_counts_blobs_and_4_connectivity():
    T = cold(n_samples=1, n_time=3, n_y=5, n_x=6)
    T[0, 0, 0:2, 0:2] = 1000.0  # two separated blobs
    T[0, 0, 3:5, 3:6] = 1000.0
    T[0, 1, 0, 0] = T[0, 1, 1, 1] = 1000.0  # touch at a corner only: two hotspots
    T[0, 2, 0, 0] = T[0, 2, 0, 1] = 1000.0  # share an edge: one hotspot
    n = hotspot_counts(T)
    assert n.name == "n_hotspots" and n.dims == ("sample", "time")
    assert n.values.tolist() == [[2, 2, 1]]
    assert n.attrs["connectivity"] == 4 and n.attrs["threshold"] == THETA
    assert hotspot_counts(T, threshold=1000.0).values.tolist() == [[0, 0, 0]]  # strictly above
    s = hotspot_mask_scores(T, T)
    assert s["n_hotspots_true"].item() == pytest.approx(5 / 3)


# ---------------------------------------------------------------------------
# temperature=: data that name the temperature field otherwise
# ---------------------------------------------------------------------------

def _as_t(X):
    """X with its fields called T, P, mu."""
    return X.assign_coords(field=["T", "P", "mu"])


def test_temperature_name_selects_the_field():
    X = make_fields(n_samples=2, n_time=3)
    pred = X + 60.0
    for obj, obj_pred in ((_as_t(X), _as_t(pred)), (_as_t(X).to_dataset(dim="field"), _as_t(pred))):
        xr.testing.assert_allclose(hotspot_metrics(obj, temperature="T"), hotspot_metrics(X))
        xr.testing.assert_equal(hotspot_counts(obj, temperature="T"), hotspot_counts(X))
        xr.testing.assert_allclose(hotspot_rmse(obj, obj_pred, temperature="T"), hotspot_rmse(X, pred))
    # A bare temperature array has no names to pick from: temperature= is not used.
    T = X.sel(field="temperature", drop=True)
    xr.testing.assert_allclose(hotspot_metrics(T, temperature="T"), hotspot_metrics(T))


def test_missing_temperature_error_names_the_argument():
    values = np.full((1, 2, 3, 3), 300.0)
    dims = ("sample", "time", "y", "x")
    ds = xr.Dataset({"T": (dims, values, {"units": "K"}), "P": (dims, values)})
    message = "Dataset has no 'temperature' variable; variables are ['T', 'P']; pass temperature='T'."
    for call in (lambda: hotspot_metrics(ds), lambda: hotspot_counts(ds), lambda: hotspot_rmse(ds, ds)):
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == message
    # The guess: the variable in K, else a name like a temperature; else a placeholder.
    theta = ds.rename(T="theta")
    with pytest.raises(ValueError, match=r"variables are \['theta', 'P'\]; pass temperature='theta'\.$"):
        hotspot_metrics(theta)
    with pytest.raises(ValueError, match=r"pass temperature='Temp'\.$"):
        hotspot_metrics(ds.drop_vars("T").assign(Temp=(dims, values)))
    with pytest.raises(ValueError, match=r"variables are \['P'\]; pass temperature='<its name>'\.$"):
        hotspot_metrics(ds[["P"]])
    with pytest.raises(ValueError, match=r"no 'temperature' along dim 'field'; fields are \['T', 'P', 'mu'\]; "
                                         r"pass temperature='T'\.$"):
        hotspot_metrics(_as_t(make_fields()))
    with pytest.raises(ValueError, match=r"Dataset has no 'temp' variable; variables are \['T', 'P'\]"):
        hotspot_rmse(ds, ds, temperature="temp")
    with pytest.raises(TypeError, match="temperature= names the temperature variable .*, got a DataArray; pass"):
        hotspot_counts(ds, temperature=ds["T"])
