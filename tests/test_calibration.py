"""CalibratedDynamics: the variance map, prefit and cross-validated calibration, the sklearn face."""

import pickle

import numpy as np
import pytest
import xarray as xr
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline

from skmld import MicroDynamicsEstimator
from skmld.calibration import CalibratedDynamics, fit_variance_map, fit_variance_map_coverage

TINY = dict(filters=2, dynamics_filters=2, horizons=(1,), vae_epochs=1, batch_size=8, random_state=0)


def test_fit_variance_map_recovers_scale_and_floor():
    rng = np.random.default_rng(0)
    std = rng.uniform(0.0, 2.0, 200_000)
    residual = rng.standard_normal(std.size) * np.sqrt(3.0**2 * std**2 + 0.5**2)
    a, b = fit_variance_map(residual, std)
    assert a == pytest.approx(3.0, rel=0.03) and b == pytest.approx(0.5, rel=0.1)


def test_fit_variance_map_without_spread_fits_the_floor():
    rng = np.random.default_rng(1)
    residual = rng.standard_normal(50_000) * 0.2
    a, b = fit_variance_map(residual, np.zeros_like(residual))
    assert b == pytest.approx(np.sqrt(np.mean(residual**2)), rel=1e-3)
    with pytest.raises(ValueError, match="no pixels"):
        fit_variance_map(np.array([]), np.array([]))


def test_fit_variance_map_coverage_matches_variance_and_2sigma_on_heavy_tails():
    """Heavy-tailed (Student-t, 3 dof) and Gaussian errors: variance and ±2σ matched; ±1σ too if Gaussian."""
    rng = np.random.default_rng(2)
    std = rng.uniform(0.1, 2.0, 200_000)
    residual = rng.standard_t(3, std.size) * std
    a, b = fit_variance_map_coverage(residual, std)
    sigma = np.sqrt(a**2 * std**2 + b**2)
    assert np.mean(sigma**2) == pytest.approx(np.mean(residual**2), rel=1e-6)  # spread/skill 1
    assert np.mean(np.abs(residual) <= 2 * sigma) == pytest.approx(0.9545, abs=0.01)
    assert np.mean(np.abs(residual) <= sigma) > 0.75  # heavy tails: ±1σ cannot be nominal as well
    # Gaussian errors: the line holds the true map, whose ±2σ is nominal.
    residual = rng.standard_normal(std.size) * np.sqrt(1.5**2 * std**2 + 0.3**2)
    a, b = fit_variance_map_coverage(residual, std)
    sigma = np.sqrt(a**2 * std**2 + b**2)
    assert np.mean(np.abs(residual) <= 2 * sigma) == pytest.approx(0.9545, abs=0.005)
    assert np.mean(np.abs(residual) <= sigma) == pytest.approx(0.6827, abs=0.01)
    assert fit_variance_map_coverage(np.zeros(10), np.ones(10)) == (0.0, 0.0)
    with pytest.raises(ValueError, match="no pixels"):
        fit_variance_map_coverage(np.array([]), np.array([]))


# Trajectory ensembles run ~20x faster traced than eagerly once traced (tests/conftest.py): the
# tests of the calibrated ensemble run traced, and share its traces.
ENSEMBLES = pytest.mark.traced


@pytest.fixture(scope="module")
def held_out(micro_pipe):
    from skmld.datasets import make_pore_collapse

    X = make_pore_collapse("micro", 2, shape=(32, 64), n_steps=4, random_state=5)
    return micro_pipe["tokens"].transform(X)


@pytest.fixture(scope="module")
def prefit(micro_pipe, held_out):
    return CalibratedDynamics(micro_pipe["micro"], cv="prefit", n_draws=3).fit(held_out)


def _nll(residual, var):
    return float(np.mean(np.log(var) + residual**2 / var))


@ENSEMBLES
def test_prefit_maps_the_ensemble_spread(micro_pipe, held_out, prefit):
    est = micro_pipe["micro"]
    assert prefit.estimator_ is est
    n_times = held_out.sizes["time"]
    assert prefit.scale_.shape == prefit.offset_.shape == (len(est.fields_), n_times)
    assert (prefit.scale_ >= 0).all() and (prefit.offset_ >= 0).all()
    mean, std = prefit.predict(held_out, return_std=True)
    raw_mean, raw_std = est.predict(held_out, return_std=True, n_draws=3)
    np.testing.assert_array_equal(mean.values, raw_mean.values)
    a = prefit.scale_.T[None, :, :, None, None, None, None]  # (1, time, field, ...)
    b = prefit.offset_.T[None, :, :, None, None, None, None]
    np.testing.assert_allclose(std.values, np.sqrt(a**2 * raw_std.values**2 + b**2), rtol=1e-5, atol=1e-7)
    # Lead times beyond the calibrated ones keep the last pair.
    _, longer = prefit.predict(held_out, n_steps=n_times + 1, return_std=True)
    assert longer.sizes["time"] == n_times + 2


@ENSEMBLES
def test_prefit_calibration_lowers_the_likelihood_loss_on_its_data(micro_pipe, held_out, prefit):
    """The fitted map is optimal on the data it was fitted on, so no worse than the identity map there."""
    est = micro_pipe["micro"]
    mean, raw_std = est.predict(held_out, return_std=True, n_draws=3)
    _, cal_std = prefit.predict(held_out, return_std=True)
    residual = (held_out - mean).values
    i = est.fields_.index("temperature")
    r, s0, s1 = (v[:, :, i].ravel() for v in (residual, raw_std.values, cal_std.values))
    assert _nll(r, s1**2) <= _nll(r, s0**2 + 1e-12)


class _NoisyTruth(BaseEstimator):
    """Predicts X itself plus noise, except where the solid fraction sits at its bound of 1."""

    def fit(self, X, y=None):
        self.fields_ = [str(f) for f in X["field"].values]
        self.ranges_ = dict(zip(self.fields_, map(tuple, X.attrs["skmld_ranges"])))
        self.bounds_ = {f: (0.0, 1.0) if f == "microstructure" else (None, None) for f in self.fields_}
        return self

    def predict(self, X, n_steps=None, return_std=False, n_draws=16):
        # At least 0.05 off: no noisy pixel lands within the pinning tolerance of a bound by chance.
        noise = np.random.default_rng(0).choice([-1.0, 1.0], X.shape) * (0.05 + 0.1 * np.random.default_rng(1).random(X.shape))
        at_bound = (X.sel(field="microstructure") >= 1.0 - 1e-6).broadcast_like(X).transpose(*X.dims)
        at_bound = at_bound & (X["field"] == "microstructure")
        mean = X + np.where(at_bound.values, 0.0, noise)
        return mean, xr.full_like(X, 0.1)


def test_pinned_pixels_are_left_out(held_out):
    cal = CalibratedDynamics(_NoisyTruth().fit(held_out), cv="prefit").fit(held_out)
    fields = cal.fields_
    mu = held_out.sel(field="microstructure")
    lo, hi = cal.estimator_.ranges_["microstructure"]
    solid = int((mu.isel(time=0) * (hi - lo) + lo >= 1.0 - 1e-6).sum())  # predicted exactly, so pinned
    n_pixels = mu.isel(time=0).size
    assert 0 < solid < n_pixels
    assert cal.n_calibration_pixels_[fields.index("microstructure"), 0] == n_pixels - solid
    assert (cal.n_calibration_pixels_[fields.index("temperature")] == n_pixels).all()


@ENSEMBLES
def test_predict_draws_within_bounds(prefit, held_out):
    draws = prefit.predict_draws(held_out, n_draws=3, random_state=0)
    assert draws.dims == ("draw",) + held_out.dims
    est = prefit.estimator_
    lo, hi = est.ranges_["microstructure"]
    mu = draws.sel(field="microstructure").values * (hi - lo) + lo
    assert mu.min() >= -1e-6 and mu.max() <= 1 + 1e-6


@ENSEMBLES
def test_clone_pickle_and_pipeline(micro_pipe, held_out, prefit, micro_X):
    twin = clone(prefit)
    assert twin.estimator is prefit.estimator and not hasattr(twin, "scale_")
    back = pickle.loads(pickle.dumps(prefit))
    np.testing.assert_array_equal(back.scale_, prefit.scale_)
    pipe = Pipeline([("tokens", micro_pipe["tokens"]), ("dynamics", prefit)])
    mean, std = pipe.predict(micro_X, return_std=True)
    assert mean.dims == std.dims and (std.values >= 0).all()
    assert prefit.score(held_out) == pytest.approx(micro_pipe["micro"].score(held_out))


def test_prefit_needs_a_fitted_estimator(held_out):
    with pytest.raises(NotFittedError, match="prefit"):
        CalibratedDynamics(MicroDynamicsEstimator(**TINY), cv="prefit").fit(held_out)
    with pytest.raises(NotFittedError):
        CalibratedDynamics(MicroDynamicsEstimator(**TINY)).predict(held_out)
