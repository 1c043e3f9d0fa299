"""Tests of skmld.metrics._probabilistic: coverage, crps_ensemble, crps_gaussian and probabilistic_scores."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
import xarray as xr

from skmld.metrics import coverage, crps_ensemble, crps_gaussian, pinned_mask, probabilistic_scores

sys.path.insert(0, os.path.dirname(__file__))
from _helpers import FIELDS, _dataset, _raising_scheduler, gaussian_case, make_fields


# ---------------------------------------------------------------------------
# coverage
# ---------------------------------------------------------------------------

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
# probabilistic_scores: coverage, spread-skill, CRPS
# ---------------------------------------------------------------------------

def _binomial_tol(p, n, sigmas=5.0):
    return sigmas * np.sqrt(p * (1 - p) / n)


def test_gaussian_truth_gives_nominal_coverage_and_unit_spread_skill():
    truth, mean, std = gaussian_case()
    s = probabilistic_scores(truth, mean, std, ks=(0.5, 1.0, 2.0))
    assert s["coverage"].dims == ("field", "k", "time")
    assert s["coverage_overall"].dims == ("field", "k")
    for name in ("spread", "rmse", "spread_skill", "crps", "n_pixels"):
        assert s[name].dims == ("field", "time"), name
    assert s["spread_skill_overall"].dims == s["crps_overall"].dims == ("field",)
    nominal = np.array([math.erf(k / math.sqrt(2)) for k in (0.5, 1.0, 2.0)])
    np.testing.assert_allclose(s["nominal"], nominal)
    n = 8 * 50 * 50  # pixels per (field, time)
    assert (s["n_pixels"] == n).all()
    tol = _binomial_tol(nominal, n)[None, :, None]
    assert (np.abs(s["coverage"].values - nominal[None, :, None]) < tol).all()
    tol_all = _binomial_tol(nominal, 3 * n)[None, :]
    assert (np.abs(s["coverage_overall"].values - nominal[None, :]) < tol_all).all()
    # The ratio of sqrt(mean σ²) to sqrt(mean σ²ε²): relative std ≈ sqrt(2 Σσ⁴) / (2 Σσ²).
    s4, s2 = (std.values**4).sum((0, 3, 4)), (std.values**2).sum((0, 3, 4))
    rel = np.sqrt(2 * s4) / (2 * s2)
    assert (np.abs(s["spread_skill"].values.T - 1) < 5 * rel).all()
    np.testing.assert_allclose(s["spread_skill_overall"], 1.0, atol=0.02)
    assert s["units"].values.tolist() == ["K", "GPa"]


def test_overconfident_std_lowers_coverage_and_spread_skill():
    truth, mean, std = gaussian_case(n_samples=4)
    good = probabilistic_scores(truth, mean, std)
    over = probabilistic_scores(truth, mean, std / 2)
    under = probabilistic_scores(truth, mean, std * 2)
    n = 4 * 50 * 50
    nominal = good["nominal"].values[None, :, None]
    assert (over["coverage"].values < nominal - _binomial_tol(nominal, n)).all()
    assert (under["coverage"].values > nominal + _binomial_tol(nominal, n)).all()
    np.testing.assert_allclose(over["spread_skill_overall"], 0.5, atol=0.02)
    np.testing.assert_allclose(under["spread_skill_overall"], 2.0, atol=0.05)
    # The CRPS is proper: the true distribution scores best.
    assert (good["crps_overall"] < over["crps_overall"]).all()
    assert (good["crps_overall"] < under["crps_overall"]).all()
    # RMSE is the mean's: the std does not change it.
    xr.testing.assert_allclose(good["rmse"], over["rmse"])


# ---------------------------------------------------------------------------
# crps_ensemble and crps_gaussian
# ---------------------------------------------------------------------------

def _brute_crps(y, x, fair):
    """Ensemble CRPS per pixel by the O(m²) definition; members on the last axis."""
    m = x.shape[-1]
    pairs = np.abs(x[..., :, None] - x[..., None, :]).sum((-1, -2))
    return np.abs(x - y[..., None]).mean(-1) - pairs / (2 * m * (m - 1) if fair else 2 * m * m)


@pytest.mark.parametrize("fair", [True, False])
def test_crps_ensemble_equals_brute_force(fair):
    rng = np.random.RandomState(1)
    truth = xr.DataArray(rng.randn(2, 3, 4, 5), dims=("field", "time", "sample", "x"),
                         coords={"field": ["a", "b"], "time": [1.0, 2.0, 3.0]})
    x = rng.randn(2, 3, 4, 5, 7) * 2 + 0.5
    x[..., 3] = x[..., 1]  # ties among members
    draws = xr.DataArray(x, dims=(*truth.dims, "draw"), coords=truth.coords)
    expected = _brute_crps(truth.values, x, fair).mean((2, 3))
    out = crps_ensemble(truth, draws, fair=fair)
    assert out.dims == ("field", "time")
    np.testing.assert_allclose(out.values, expected, rtol=1e-12)
    # The member order does not matter, nor where the member dim sits.
    shuffled = draws.isel(draw=rng.permutation(7)).transpose("draw", ...)
    np.testing.assert_allclose(crps_ensemble(truth, shuffled, fair=fair).values, expected, rtol=1e-12)


def test_crps_ensemble_of_one_or_identical_members_is_the_mae():
    truth, mean, _ = gaussian_case(n_samples=2, n=8)
    mae = np.abs(truth - mean).mean(("sample", "y", "x")).transpose("field", "time")
    one = mean.expand_dims(draw=1, axis=-1)
    np.testing.assert_allclose(crps_ensemble(truth, one, fair=False).values, mae.values, rtol=1e-12)
    same = mean.expand_dims(draw=4, axis=-1)
    for fair in (True, False):
        np.testing.assert_allclose(crps_ensemble(truth, same, fair=fair).values, mae.values, rtol=1e-12)
    with pytest.raises(ValueError, match="at least two members"):
        crps_ensemble(truth, one)


def test_crps_gaussian_zero_std_is_mae_and_matches_monte_carlo():
    truth, mean, std = gaussian_case(n_samples=2, n=8)
    mae = np.abs(truth - mean).mean(("sample", "y", "x")).transpose("field", "time")
    np.testing.assert_allclose(crps_gaussian(truth, mean, xr.zeros_like(std)).values, mae.values, rtol=1e-12)
    # Monte Carlo: E|X − y| − E|X − X'| / 2 with X, X' ~ N(μ, σ²), at a few pixels.
    rng = np.random.RandomState(2)
    y, mu, sigma = np.array([0.0, 1.5, -3.0]), np.array([0.3, 0.0, -1.0]), np.array([1.0, 0.5, 2.0])
    x1 = mu + sigma * rng.randn(400_000, 3)
    x2 = mu + sigma * rng.randn(400_000, 3)
    mc = np.abs(x1 - y).mean(0) - 0.5 * np.abs(x1 - x2).mean(0)
    da = lambda v: xr.DataArray(v[:, None], dims=("field", "time"), coords={"field": ["a", "b", "c"]})  # noqa: E731
    np.testing.assert_allclose(crps_gaussian(da(y), da(mu), da(sigma)).values[:, 0], mc, rtol=1e-2)
    # The fair ensemble CRPS of many draws estimates the same value.
    draws = xr.DataArray(x1.T[:, None, :2000], dims=("field", "time", "draw"), coords={"field": ["a", "b", "c"]})
    np.testing.assert_allclose(crps_ensemble(da(y), draws).values[:, 0],
                               crps_gaussian(da(y), da(mu), da(sigma)).values[:, 0], rtol=0.05)


# ---------------------------------------------------------------------------
# Input checks, Datasets, dask
# ---------------------------------------------------------------------------

def test_probabilistic_inputs_errors_name_the_problem():
    truth, mean, std = gaussian_case(n_samples=2, n=6, fields=FIELDS)
    with pytest.raises(ValueError, match="'microstructure'"):
        probabilistic_scores(truth, mean.sel(field=["temperature", "pressure"]), std)
    with pytest.raises(ValueError, match="std has no field 'pressure'"):
        probabilistic_scores(truth, mean, std.sel(field=["temperature", "microstructure"]))
    with pytest.raises(ValueError, match="share no time step"):
        probabilistic_scores(truth, mean.assign_coords(time=mean["time"] + 100), std)
    with pytest.raises(ValueError, match=r"std has no time step\(s\) \[3.0\]"):
        probabilistic_scores(truth, mean, std.isel(time=[0, 1]))
    with pytest.raises(ValueError, match="'sample' coordinates"):
        probabilistic_scores(truth.assign_coords(sample=[5, 6]), mean.assign_coords(sample=[0, 1]), std)
    with pytest.raises(ValueError, match="non-negative"):
        probabilistic_scores(truth, mean, -std)
    with pytest.raises(ValueError, match="ks must be"):
        probabilistic_scores(truth, mean, std, ks=(1.0, -2.0))
    with pytest.raises(ValueError, match="bounds names field 'density'"):
        probabilistic_scores(truth, mean, std, bounds={"density": (0.0, 1.0)})
    with pytest.raises(ValueError, match=r"bounds\['pressure'\]"):
        pinned_mask(truth, mean, {"pressure": (2.0, 1.0)})
    with pytest.raises(ValueError, match="no 'draw' dim"):
        probabilistic_scores(truth, mean, std, draws=mean)
    with pytest.raises(ValueError, match="'x' is only in"):
        crps_gaussian(truth, mean.isel(x=0), std)
    with pytest.raises(ValueError, match="share no time step"):
        crps_ensemble(truth, mean.assign_coords(time=mean["time"] + 100).expand_dims(draw=2, axis=-1))
    # A shorter rollout is scored on the common steps, and says how many pixels it used.
    short = probabilistic_scores(truth, mean.isel(time=[1, 2]), std)
    assert short["time"].values.tolist() == [2.0, 3.0]


def test_probabilistic_scores_dataset_dask_and_draws():
    dask = pytest.importorskip("dask")
    truth, mean, std = gaussian_case(n_samples=4, n=10)
    ref = probabilistic_scores(truth, mean, std)
    lazy = [_dataset(a).chunk({"sample": 2}) for a in (truth, mean, std)]
    with dask.config.set(scheduler=_raising_scheduler):
        out = probabilistic_scores(*lazy)
    xr.testing.assert_allclose(out.compute(), ref)
    # With draws the CRPS is the fair ensemble one; the other statistics do not change.
    rng = np.random.RandomState(4)
    draws = mean + std * xr.DataArray(rng.randn(*mean.shape, 6), dims=(*mean.dims, "draw"))
    with_draws = probabilistic_scores(truth, mean, std, draws=draws)
    xr.testing.assert_allclose(with_draws["crps"], crps_ensemble(truth, draws, bounds={}))
    xr.testing.assert_allclose(with_draws.drop_vars(["crps", "crps_overall"]), ref.drop_vars(["crps", "crps_overall"]))
    assert with_draws.attrs["n_members"] == 6
    xr.testing.assert_allclose(ref["crps"], crps_gaussian(truth, mean, std))
