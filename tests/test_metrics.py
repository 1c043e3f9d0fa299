"""Tests of skmld.metrics: closed-form values, invariants, laziness and scorers."""

from __future__ import annotations

import importlib
import math
import pickle

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import BaseEstimator
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, cross_validate
from sklearn.pipeline import Pipeline

from skmld.metrics import (
    coverage,
    field_rmse,
    get_scorer,
    get_scorer_names,
    hotspot_counts,
    hotspot_mask_scores,
    hotspot_metrics,
    hotspot_rmse,
    r2_per_field,
    skill_score,
)

FIELDS = ["temperature", "pressure", "microstructure"]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Hotspot metrics: hand-computed values
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
# Hotspot metrics: properties
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
# RMSEs and coverage
# ---------------------------------------------------------------------------


def test_field_rmse_self_zero_and_offset_is_abs_offset():
    X = make_fields()
    zero = field_rmse(X, X)
    assert zero.dims == ("field", "time")
    np.testing.assert_array_equal(zero, 0.0)
    offset = field_rmse(X, X - 7.5)
    np.testing.assert_allclose(offset, 7.5)
    assert offset["units"].values.tolist() == ["K", "GPa", "-"]
    # A Dataset gives the same answer.
    ds = X.to_dataset(dim="field")
    xr.testing.assert_allclose(
        field_rmse(ds, ds + 2.0).drop_vars("units", errors="ignore"),
        xr.full_like(zero, 2.0).drop_vars("units", errors="ignore"),
    )


def test_field_rmse_per_field_closed_form_and_token_layout():
    truth = xr.DataArray(
        np.zeros((2, 3, 2, 1, 1, 2, 2)),
        dims=("sample", "time", "field", "token_y", "token_x", "patch_y", "patch_x"),
        coords={"field": ["temperature", "pressure"]},
    )
    pred = truth.copy()
    pred[:, :, 1, ..., 0, :] = 3.0  # half the pressure pixels off by 3
    rmse = field_rmse(truth, pred)
    np.testing.assert_allclose(rmse.sel(field="temperature"), 0.0)
    np.testing.assert_allclose(rmse.sel(field="pressure"), math.sqrt(9.0 / 2))


def test_field_rmse_compares_common_times_and_checks_dims():
    X = make_fields()
    short = X.isel(time=slice(0, 3)) + 1.0
    assert field_rmse(X, short).sizes["time"] == 3
    with pytest.raises(ValueError, match="'field'"):
        field_rmse(X, X.isel(field=0))
    with pytest.raises(ValueError, match="'x'"):
        field_rmse(X, X.isel(x=slice(0, 4)))


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


def test_coverage_closed_form():
    z = np.arange(-10.0, 11.0)  # 21 residuals
    truth = xr.DataArray(np.stack([z, z]), dims=("field", "x"), coords={"field": ["a", "b"]})
    mean = xr.zeros_like(truth)
    std = xr.DataArray([[4.0] * 21, [2.0] * 21], dims=("field", "x"), coords=truth.coords)
    cov = coverage(truth, mean, std)
    np.testing.assert_allclose(cov["coverage"], [9 / 21, 5 / 21])
    np.testing.assert_allclose(cov["coverage_overall"], 14 / 42)
    np.testing.assert_allclose(coverage(truth, mean, std, k=2)["coverage"], [17 / 21, 9 / 21])
    assert cov.attrs["nominal"] == pytest.approx(0.6827, abs=1e-4)


def test_coverage_of_calibrated_gaussian_matches_nominal():
    rng = np.random.RandomState(0)
    X = make_fields(n_samples=2, n_time=3)
    std = xr.full_like(X, 2.0)
    truth = X + rng.normal(size=X.shape) * 2.0
    for k in (1, 2):
        cov = coverage(truth, X, std, k=k)
        assert float(cov["coverage_overall"]) == pytest.approx(math.erf(k / math.sqrt(2)), abs=0.01)


# ---------------------------------------------------------------------------
# Laziness
# ---------------------------------------------------------------------------


def test_metrics_stay_lazy_on_dask_input():
    pytest.importorskip("dask")
    import dask.array  # noqa: F401
    X = make_fields()
    # Dask-backed values, in-memory coordinates: what skmld.open_fields gives.
    X = X.copy(data=dask.array.from_array(X.values, chunks=(1, 2, 3, 16, 16)))
    with dask.config.set(scheduler=_raising_scheduler):
        rmse = field_rmse(X, X + 1.0)
        hs = hotspot_metrics(X)
        hr = hotspot_rmse(X, X * 1.01)
        cov = coverage(X, X, xr.ones_like(X))
        for obj in (rmse, *hs.data_vars.values(), *hr.data_vars.values(), cov["coverage"]):
            assert obj.chunks is not None, obj.name
    np.testing.assert_allclose(rmse.compute(), 1.0)
    xr.testing.assert_allclose(hs.compute(), hotspot_metrics(X.compute()))
    assert float(cov["coverage_overall"].compute()) == 1.0


# ---------------------------------------------------------------------------
# Graded hotspot metrics and skill score
# ---------------------------------------------------------------------------

THETA = 875.0


def cold(n_samples=1, n_time=1, n_y=4, n_x=4, dx=1.0, dy=1.0):
    """A cold (300 K) temperature array, writable, with coordinates."""
    return temperature_array(np.full((n_samples, n_time, n_y, n_x), 300.0), dx=dx, dy=dy)


def test_mask_scores_identical_masks_are_perfect():
    T = make_fields(n_samples=3, n_time=4)
    s = hotspot_mask_scores(T, T)
    assert s["f1"].dims == s["iou"].dims == ("threshold",)
    assert s["f1"].values.tolist() == s["iou"].values.tolist() == [1.0]
    assert s["f1_per_time"].dims == ("threshold", "time")
    assert s["f1_per_time"].values.tolist() == [[1.0] * 4]
    assert s["n_hotspots_rmse"].item() == s["excess_heat_rmse"].item() == 0.0
    assert s["n_hotspots_true"].item() == s["n_hotspots_pred"].item() == 1.0  # one hot disc each
    assert s["excess_heat_true"].item() == s["excess_heat_pred"].item() > 0


def test_mask_scores_disjoint_masks_score_zero():
    truth, pred = cold(), cold()
    truth[0, 0, 0, 0] = 1000.0
    pred[0, 0, 3, 3] = 1000.0
    s = hotspot_mask_scores(truth, pred)
    assert s["f1"].item() == s["iou"].item() == 0.0
    assert s["n_hotspots_rmse"].item() == 0.0  # one hotspot each, in the wrong place
    assert s["excess_heat_rmse"].item() == 0.0


def test_mask_scores_pool_known_confusion_counts():
    # time 0: TP = 2, FP = 1 (F1 4/5); time 1: FN = 1 only (F1 0), in another sample.
    truth, pred = cold(n_samples=2, n_time=2), cold(n_samples=2, n_time=2)
    truth[0, 0, 0, :2] = pred[0, 0, 0, :2] = 1000.0
    pred[0, 0, 2, 2] = 1000.0
    truth[1, 1, 3, 0] = 1000.0
    s = hotspot_mask_scores(truth, pred)
    # Pooled: TP = 2, FP = 1, FN = 1, not the mean of the per-time values (0.4).
    assert s["f1"].item() == pytest.approx(2.0 / 3.0)
    assert s["iou"].item() == pytest.approx(0.5)
    np.testing.assert_allclose(s["f1_per_time"].sel(threshold=THETA), [0.8, 0.0])
    # Hotspots per image: truth (1, 0, 0, 1), pred (2, 0, 0, 0).
    assert s["n_hotspots_true"].item() == pytest.approx(0.5)
    assert s["n_hotspots_pred"].item() == pytest.approx(0.5)
    assert s["n_hotspots_rmse"].item() == pytest.approx(math.sqrt((1 + 1) / 4))


def test_mask_scores_both_empty_score_one():
    truth, pred = cold(n_time=2), cold(n_time=2)
    truth[0, 1, 1, 1] = pred[0, 1, 1, 1] = 2000.0  # hot at t = 1 only, in both
    pred[0, 1, 1, 2] = 2000.0
    s = hotspot_mask_scores(truth, pred)
    # At t = 0 neither is hot: nothing to find and nothing found is a perfect score.
    assert s["f1_per_time"].values.tolist() == [[1.0, pytest.approx(2 / 3)]]
    s = hotspot_mask_scores(cold(n_time=2), cold(n_time=2) + 500.0)  # 800 K: still cold
    assert s["f1"].item() == s["iou"].item() == 1.0
    assert s["n_hotspots_pred"].item() == s["excess_heat_pred"].item() == 0.0


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


def test_excess_heat_of_one_pixel_closed_form():
    truth, pred = cold(n_samples=2, dx=2.0, dy=2.0), cold(n_samples=2, dx=2.0, dy=2.0)
    truth[0, 0, 1, 2] = THETA + 100.0
    s = hotspot_mask_scores(truth, pred, pixel_area=4.0)
    # Per image: truth (400, 0), pred (0, 0) K·µm².
    assert s["excess_heat_true"].item() == pytest.approx(200.0)
    assert s["excess_heat_pred"].item() == 0.0
    assert s["excess_heat_rmse"].item() == pytest.approx(math.sqrt(400.0**2 / 2))
    assert s["excess_heat_true"].attrs["units"] == "K·µm^2"
    # The pixel area from the 2 µm spacing of the coordinates is the same 4 µm².
    xr.testing.assert_identical(hotspot_mask_scores(truth, pred), s)
    single = hotspot_mask_scores(truth.isel(sample=[0]), pred.isel(sample=[0]), pixel_area=4.0)
    assert single["excess_heat_true"].item() == pytest.approx(400.0)


def test_mask_scores_thresholds_inputs_and_errors():
    X = make_fields(n_samples=2, n_time=4)
    pred = X * 1.05
    s = hotspot_mask_scores(X, pred, thresholds=[500.0, 875.0, 1500.0])
    assert s["threshold"].values.tolist() == [500.0, 875.0, 1500.0]
    assert s["f1_per_time"].sizes == {"threshold": 3, "time": 4}
    # A higher threshold leaves less heat above it.
    assert np.all(np.diff(s["excess_heat_true"].values) < 0)
    for name, var in s.data_vars.items():
        assert "units" in var.attrs, name
    # A scalar threshold, the temperature DataArray and the field Dataset agree.
    one = hotspot_mask_scores(X, pred, thresholds=875.0)
    xr.testing.assert_allclose(one, s.sel(threshold=[875.0]))
    temperature = X.sel(field="temperature", drop=True)
    xr.testing.assert_allclose(hotspot_mask_scores(temperature, temperature * 1.05), one)
    xr.testing.assert_allclose(
        hotspot_mask_scores(X.to_dataset(dim="field"), pred.to_dataset(dim="field")), one
    )
    # Only the common times are compared.
    short = hotspot_mask_scores(X, pred.isel(time=slice(0, 2)))
    assert short["f1_per_time"].sizes["time"] == 2
    with pytest.raises(ValueError, match="duplicate"):
        hotspot_mask_scores(X, pred, thresholds=(875.0, 875.0))
    with pytest.raises(ValueError, match="empty"):
        hotspot_mask_scores(X, pred, thresholds=())
    with pytest.raises(TypeError, match="thresholds"):
        hotspot_mask_scores(X, pred, thresholds="875")
    with pytest.raises(ValueError, match="pixel_area"):
        hotspot_mask_scores(X, pred, pixel_area=-1.0)


def test_mask_scores_without_coordinates_warn_and_count_pixels():
    T = xr.DataArray(np.full((1, 1, 2, 2), 300.0), dims=("sample", "time", "y", "x"))
    T[0, 0, 0, 0] = THETA + 10.0
    with pytest.warns(UserWarning, match="pixel_area="):
        s = hotspot_mask_scores(T, T)
    assert s["excess_heat_true"].item() == pytest.approx(10.0)
    assert s["excess_heat_true"].attrs["units"] == "K·pixel" and "note" in s.attrs


def test_f1_iou_identity_and_symmetry():
    rng = np.random.default_rng(0)
    truth = temperature_array(rng.uniform(300, 1500, (3, 4, 8, 8)))
    pred = temperature_array(rng.uniform(300, 1500, (3, 4, 8, 8)))
    s = hotspot_mask_scores(truth, pred, thresholds=(600.0, 875.0, 1200.0))
    r = hotspot_mask_scores(pred, truth, thresholds=(600.0, 875.0, 1200.0))
    np.testing.assert_allclose(s["f1"], 2 * s["iou"] / (1 + s["iou"]))
    np.testing.assert_allclose(s["f1"], r["f1"])
    assert np.all((s["iou"] > 0) & (s["iou"] < s["f1"]) & (s["f1"] < 1))
    # The counts match a direct flood fill of the true masks.
    expected = [[sum(1 for _ in _regions(truth.values[i, t] > 875.0)) for t in range(4)] for i in range(3)]
    assert hotspot_counts(truth).values.tolist() == expected
    assert float(s["n_hotspots_true"].sel(threshold=875.0)) == pytest.approx(np.mean(expected))


def _regions(mask):
    """Yield one pixel per 4-connected region of ``mask`` (plain flood fill)."""
    seen = np.zeros_like(mask, dtype=bool)
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        stack = [start]
        seen[start] = True
        while stack:
            i, j = stack.pop()
            for a, b in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
                if 0 <= a < mask.shape[0] and 0 <= b < mask.shape[1] and mask[a, b] and not seen[a, b]:
                    seen[a, b] = True
                    stack.append((a, b))
        yield start


def test_skill_score_reference_zero_truth_one_closed_form():
    X = make_fields(n_samples=2, n_time=3)
    reference = X.isel(time=[0, 0, 0]).assign_coords(time=X["time"]).isel(time=slice(1, None))
    truth = X.isel(time=slice(1, None))
    skill = skill_score(truth, truth, reference)
    assert skill.name == "skill" and skill.dims == ("field",)
    assert skill["field"].values.tolist() == FIELDS
    np.testing.assert_allclose(skill, 1.0)
    np.testing.assert_allclose(skill_score(truth, reference, reference), 0.0, atol=1e-12)
    # Errors of 1 and 2 units: 1 - 1/4 for every field; worse than the reference is negative.
    np.testing.assert_allclose(skill_score(truth, truth + 1.0, truth + 2.0), 0.75)
    np.testing.assert_allclose(skill_score(truth, truth + 2.0, truth + 1.0), -3.0)
    # Per field: only the pressure is predicted exactly.
    pred = truth + xr.DataArray([3.0, 0.0, 1.0], dims="field", coords={"field": FIELDS})
    np.testing.assert_allclose(skill_score(truth, pred, truth - 2.0), [1 - 9 / 4, 1.0, 1 - 1 / 4])
    # An exact reference leaves nothing to measure skill against.
    assert np.isnan(skill_score(truth, pred, truth).values).tolist() == [True, True, True]
    # A Dataset gives the same; a shorter prediction is compared on the common times.
    ds = truth.to_dataset(dim="field")
    xr.testing.assert_allclose(
        skill_score(ds, (truth + 1.0).to_dataset(dim="field"), (truth + 2.0).to_dataset(dim="field")),
        skill_score(truth, truth + 1.0, truth + 2.0),
    )
    assert float(skill_score(X, X.isel(time=[0]), X + 1.0).sel(field="pressure")) == 1.0


def test_graded_metrics_stay_lazy_on_dask_input():
    pytest.importorskip("dask")
    import dask.array  # noqa: F401
    X = make_fields()
    lazy = X.copy(data=dask.array.from_array(X.values, chunks=(1, 2, 3, 8, 16)))
    with dask.config.set(scheduler=_raising_scheduler):
        s = hotspot_mask_scores(lazy, lazy * 1.02, thresholds=(875.0, 2000.0))
        n = hotspot_counts(lazy)
        skill = skill_score(lazy, lazy * 1.01, lazy * 1.02)
        for obj in (*s.data_vars.values(), n, skill):
            assert obj.chunks is not None, obj.name
    xr.testing.assert_allclose(s.compute(), hotspot_mask_scores(X, X * 1.02, thresholds=(875.0, 2000.0)))
    xr.testing.assert_equal(n.compute(), hotspot_counts(X))
    xr.testing.assert_allclose(skill.compute(), skill_score(X, X * 1.01, X * 1.02))


# ---------------------------------------------------------------------------
# Scorers
# ---------------------------------------------------------------------------


class Persistence(BaseEstimator):
    """Test-only rollout model: repeat the first state, optionally scaled."""

    def __init__(self, scale=1.0):
        self.scale = scale

    def fit(self, X, y=None):
        self.n_fields_ = X.sizes["field"]
        return self

    def _rollout(self, X):
        first = X.isel(time=[0] * X.sizes["time"])
        return first.assign_coords(time=X["time"])

    def predict(self, X, n_steps=None, return_std=False, n_draws=16):
        pred = self._rollout(X) * self.scale
        return (pred, xr.zeros_like(pred)) if return_std else pred

    def score(self, X, y=None):
        truth = X.isel(time=slice(1, None))
        pred = self.predict(X).isel(time=slice(1, None))
        ss_res = float(((truth - pred) ** 2).sum())
        return 1.0 - ss_res / float(((truth - truth.mean()) ** 2).sum())


class Oracle(Persistence):
    """Test-only model that 'predicts' the truth, optionally scaled or time-shifted.

    ``shift=0, scale=1`` is the perfect model, an upper bound for every score;
    ``shift=k`` shows the state k steps later (cyclically), a clearly wrong one.
    """

    def __init__(self, scale=1.0, shift=0):
        self.scale = scale
        self.shift = shift

    def _rollout(self, X):
        n = X.sizes["time"]
        order = [(i + self.shift) % n for i in range(n)]
        return X.isel(time=order).assign_coords(time=X["time"])


def _tokenizer():
    try:
        return importlib.import_module("skmld.tokenizer").PatchTokenizer
    except (ImportError, AttributeError):
        return None


def _models(model):
    """The bare model and, when the tokenizer exists, the tokenizer pipeline."""
    out = [model]
    tokenizer = _tokenizer()
    if tokenizer is not None:
        out.append(Pipeline([("tokens", tokenizer()), ("model", model)]))
    return out


@pytest.mark.parametrize("name", get_scorer_names())
@pytest.mark.parametrize("wrap", [0, 1], ids=["bare", "pipeline"])
def test_scorer_in_cross_val_score_higher_is_better(name, wrap):
    models = _models(Persistence())
    if wrap >= len(models):
        pytest.skip("skmld.tokenizer.PatchTokenizer is not available")
    X = make_fields(n_samples=4)
    scorer = get_scorer(name)
    cv = KFold(2)
    persistence = cross_val_score(models[wrap], X, scoring=scorer, cv=cv)
    perfect = cross_val_score(_models(Oracle())[wrap], X, scoring=scorer, cv=cv)
    wrong = cross_val_score(_models(Oracle(shift=2))[wrap], X, scoring=scorer, cv=cv)
    assert persistence.shape == (2,)
    assert np.all(np.isfinite(persistence))
    best = 1.0 if name in ("r2", "hotspot_f1") else 0.0
    # Tokens are float32: the round trip costs ~1e-7 relative, ~1e-4 K on 2000 K.
    atol = 1e-9 if wrap == 0 else (1e-6 if name == "r2" else 1e-2)
    np.testing.assert_allclose(perfect, best, atol=atol)
    assert np.all(perfect > wrong)
    assert np.all(perfect > persistence)
    assert np.all(persistence <= best + 1e-12)


def test_scorers_in_grid_search_and_multimetric():
    X = make_fields(n_samples=4)
    search = GridSearchCV(
        Oracle(), {"scale": [0.8, 1.0, 1.2]}, scoring=get_scorer("neg_field_rmse"), cv=KFold(2)
    ).fit(X)
    assert search.best_params_ == {"scale": 1.0}
    scoring = {name: get_scorer(name) for name in get_scorer_names()}
    res = cross_validate(Persistence(), X, scoring=scoring, cv=KFold(2))
    for name in scoring:
        assert np.all(np.isfinite(res[f"test_{name}"]))


def test_scorer_options_pickle_and_errors():
    X = make_fields(n_samples=2)
    model = Persistence().fit(X)
    # A scorer restricted to one field equals that field's RMSE after the first step.
    score = get_scorer("neg_field_rmse", field="pressure")(model, X)
    expected = field_rmse(X, model.predict(X)).sel(field="pressure").isel(time=slice(1, None))
    truth = X.sel(field="pressure").isel(time=slice(1, None))
    pred = model.predict(X).sel(field="pressure").isel(time=slice(1, None))
    assert score == pytest.approx(-float(np.sqrt(((truth - pred) ** 2).mean()))) != 0.0
    assert expected.sizes["time"] == X.sizes["time"] - 1
    # A lower threshold counts more hot pixels and changes the area score.
    hot = get_scorer("neg_hotspot_area_rmse", threshold=300.5)(model, X)
    assert hot != get_scorer("neg_hotspot_area_rmse")(model, X)
    scorer = pickle.loads(pickle.dumps(get_scorer("neg_hotspot_temperature_rmse")))
    assert np.isfinite(scorer(model, X))
    assert get_scorer()(model, X) == pytest.approx(model.score(X))
    with pytest.raises(ValueError, match="neg_field_rmse.*r2"):
        get_scorer("rmse")
    with pytest.raises(ValueError, match="field="):
        get_scorer("hotspot_f1", field="pressure")


class FixedPrediction:
    """Test-only 'estimator': predict returns a given array; score must not be called."""

    def __init__(self, pred):
        self.pred = pred

    def predict(self, X):
        return self.pred

    def score(self, X, y=None):
        raise AssertionError("the scorer called estimator.score")


def _perturbed(X, seed=0):
    """X with known noise on every field, the first step left exact."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 1.0, X.shape) * np.array([50.0, 0.5, 0.1])[:, None, None]
    values[:, 0] = 0.0
    return X + values


def test_r2_scorer_for_one_field_is_its_physical_r2():
    X = make_fields(n_samples=2, n_time=4)
    pred = _perturbed(X)
    for field in FIELDS:
        t = X.sel(field=field).values[:, 1:]
        p = pred.sel(field=field).values[:, 1:]
        expected = 1.0 - ((t - p) ** 2).sum() / ((t - t.mean()) ** 2).sum()
        score = get_scorer("r2", field=field)(FixedPrediction(pred), X)
        assert score == pytest.approx(expected, rel=1e-12)
        assert 0.0 < score < 1.0
    # It is r2_per_field of the rollout after the first step.
    after = slice(1, None)
    per_field = r2_per_field(X.isel(time=after), pred.isel(time=after))
    assert get_scorer("r2", field="pressure")(FixedPrediction(pred), X) == pytest.approx(
        float(per_field.sel(field="pressure"))
    )
    assert get_scorer("r2", field="temperature")(FixedPrediction(X), X) == 1.0
    assert repr(get_scorer("r2", field="pressure")) == "skmld.metrics.get_scorer('r2', field='pressure')"
    with pytest.raises(ValueError, match="bogus"):
        get_scorer("r2", field="bogus")(FixedPrediction(pred), X)


def test_hotspot_f1_scorer_closed_form_and_threshold():
    X = temperature_array(np.full((1, 2, 3, 3), 300.0)).expand_dims(field=["temperature"], axis=2)
    X[0, 1, 0, 0, :3] = 1000.0  # three hot pixels after the first step
    pred = X.copy()
    pred[0, 1, 0, 0, 2] = 800.0  # TP = 2, FN = 1 ...
    pred[0, 1, 0, 2, 2] = 900.0  # ... FP = 1
    pred[0, 0, 0, 1, 1] = 5000.0  # the first step is not scored
    scorer = get_scorer("hotspot_f1")
    assert scorer(FixedPrediction(pred), X) == pytest.approx(2.0 / 3.0)
    assert scorer(FixedPrediction(X), X) == 1.0
    # At 850 K the 900 K pixel is still hot, but not the 800 K one; at 950 K only TP = 2, FN = 1.
    assert get_scorer("hotspot_f1", threshold=850.0)(FixedPrediction(pred), X) == pytest.approx(2 / 3)
    assert get_scorer("hotspot_f1", threshold=950.0)(FixedPrediction(pred), X) == pytest.approx(0.8)
    assert get_scorer("hotspot_f1", threshold=2000.0)(FixedPrediction(pred), X) == 1.0  # both empty
    expected = hotspot_mask_scores(X.isel(time=[1]), pred.isel(time=[1]), thresholds=(950.0,))
    assert get_scorer("hotspot_f1", threshold=950.0)(FixedPrediction(pred), X) == pytest.approx(
        expected["f1"].item()
    )


def test_excess_heat_scorer_closed_form():
    X = temperature_array(np.full((2, 2, 3, 3), 300.0), dx=2.0, dy=2.0)
    X = X.expand_dims(field=["temperature"], axis=2)
    X[0, 1, 0, 1, 1] = 975.0  # 100 K above 875 K on a 4 µm² pixel: 400 K·µm²
    pred = X.copy()
    pred[0, 1, 0, 1, 1] = 300.0
    # Per (sample, time) after the first step: errors (400, 0).
    score = get_scorer("neg_excess_heat_rmse")(FixedPrediction(pred), X)
    assert score == pytest.approx(-math.sqrt(400.0**2 / 2))
    assert get_scorer("neg_excess_heat_rmse", threshold=975.0)(FixedPrediction(pred), X) == 0.0
    assert get_scorer("neg_excess_heat_rmse")(FixedPrediction(X), X) == 0.0
    assert repr(get_scorer("neg_excess_heat_rmse", threshold=900.0)) == (
        "skmld.metrics.get_scorer('neg_excess_heat_rmse', threshold=900.0)"
    )
    with pytest.raises(ValueError, match="field="):
        get_scorer("neg_excess_heat_rmse", field="temperature")
