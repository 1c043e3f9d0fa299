"""Predictive spreads recalibrated on held-out rollouts, per field and lead time.

A latent dynamics model's trajectory ensemble (``predict(X, return_std=True)``)
has a spread that grows with the lead time, but nothing makes it the size of
the model's errors. :class:`CalibratedDynamics` fits, for every field and lead
time, the map ``σ² ← a²·σ² + b²`` that makes the spread fit the errors of
rollouts the model was not fitted on, the way
:class:`sklearn.calibration.CalibratedClassifierCV` fits a map of a
classifier's scores: on a held-out set (``cv="prefit"``) or on
cross-validation folds over samples.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import xarray as xr
from scipy.optimize import minimize
from scipy.special import erf
from sklearn.base import BaseEstimator, MetaEstimatorMixin, _fit_context, clone
from sklearn.model_selection import check_cv
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from skmld import _state
from skmld.fields import is_lazy
from skmld._layout import from_domain, to_domain
from skmld._rollout import scaled_bounds
from skmld._tags import FieldDataTags
from skmld.metrics._pinned import _nominal

__all__ = ["CalibratedDynamics"]

# Pixels sampled per (field, lead time) to fit a and b: the fit has two parameters.
_MAX_PIXELS = 200_000
# A truth and a prediction both within this share of the field's scaled range of a
# bound are pinned there (e.g. solid material at solid fraction 1): trivially right,
# they are left out of the fit.
PINNED_RTOL = 1e-3


def _values(a) -> np.ndarray:
    return np.asarray(a.compute() if is_lazy(a) else a, dtype=np.float64)


def fit_variance_map(residual: np.ndarray, std: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` maximising the Gaussian likelihood of ``residual`` under ``N(0, a²·std² + b²)``.

    Parameters
    ----------
    residual, std : numpy.ndarray
        Errors of the predicted mean and predicted standard deviations, paired
        element by element (any shape).

    Returns
    -------
    a, b : float
        Non-negative scale of the spread and floor added to it.
    """
    r2, s2 = np.square(residual).ravel(), np.square(std).ravel()
    if r2.size == 0:
        raise ValueError("no pixels to fit the calibration on.")
    mse = float(r2.mean())
    if mse == 0.0:
        return 0.0, 0.0
    # Optimise the log of a² and b² in units of the MSE: scale-free and unconstrained.
    s2n, r2n = s2 / mse, r2 / mse

    def nll(theta):
        a2, b2 = np.exp(theta)
        var = a2 * s2n + b2
        ratio = r2n / var
        value = np.mean(np.log(var) + ratio)
        common = (1.0 - ratio) / var
        return value, np.array([np.mean(common * a2 * s2n), np.mean(common * b2)])

    mean_s2 = float(s2n.mean())
    starts = [np.log([1.0 / mean_s2, 1e-3])] if mean_s2 > 0 else []
    starts.append(np.log([1.0, 1.0]) if mean_s2 > 0 else np.log([1e-12, 1.0]))
    best = min((minimize(nll, x0, jac=True, method="L-BFGS-B", bounds=[(-30, 30)] * 2) for x0 in starts),
               key=lambda res: res.fun)
    a2, b2 = np.exp(best.x)
    return float(np.sqrt(a2)), float(np.sqrt(b2 * mse))


def _gaussian_crps(err: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CRPS of N(0, σ²) at ``err`` and its derivative in σ (σ > 0)."""
    z = err / sigma
    pdf = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
    cdf_term = z * erf(z / np.sqrt(2.0))
    crps = sigma * (cdf_term + 2.0 * pdf - 1.0 / np.sqrt(np.pi))
    return crps, 2.0 * pdf - 1.0 / np.sqrt(np.pi)


def fit_variance_map_crps(residual: np.ndarray, std: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` minimising the mean CRPS of ``N(0, a²·std² + b²)`` at ``residual``.

    Minimum-CRPS estimation, as in ensemble model output statistics (Gneiting et
    al. 2005): a proper score that, unlike the likelihood, is not dominated by
    the few pixels whose errors are far in the tails. ``a = b = 0`` (a point
    forecast, CRPS = MAE) and ``a = 1, b = 0`` (the spread as it is) are in the
    family, so on the data it is fitted on the result is never worse than either.
    """
    r, s = np.asarray(residual, np.float64).ravel(), np.asarray(std, np.float64).ravel()
    if r.size == 0:
        raise ValueError("no pixels to fit the calibration on.")
    scale = float(np.sqrt(np.mean(r * r)))
    if scale == 0.0:
        return 0.0, 0.0
    r, s = r / scale, s / scale
    tiny = 1e-12

    def loss(theta):
        a, b = theta
        sigma = np.sqrt(a * a * s * s + b * b + tiny)
        crps, dsigma = _gaussian_crps(r, sigma)
        grad_sigma = dsigma / sigma
        return float(np.mean(crps)), np.array([np.mean(grad_sigma * a * s * s), np.mean(grad_sigma * b)])

    starts = [np.array([1.0, 0.0]), np.array([0.0, 0.5]), np.array([0.5, 0.1])]
    best = min((minimize(loss, x0, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * 2) for x0 in starts),
               key=lambda res: res.fun)
    a, b = best.x
    return float(a), float(b * scale)


def fit_variance_map_coverage(residual: np.ndarray, std: np.ndarray, n_grid: int = 201) -> tuple[float, float]:
    """``(a, b)`` with ``mean(a²·std² + b²) = mean(residual²)`` whose ±2σ band covers 95.45 % of ``residual``.

    Along the line of maps whose mean variance is the mean squared error (a
    spread/skill ratio of 1), the one whose band ``|residual| <= 2·sqrt(a²·std² + b²)``
    covers the nominal 95.45 % most nearly, closeness to 68.27 % at ±1σ breaking
    ties. Heavy-tailed errors cannot match the variance and both quantiles with
    one Gaussian band; this gives up ±1σ (which then covers too much) where the
    likelihood gives up the variance.
    """
    r, s = np.abs(np.asarray(residual, np.float64).ravel()), np.asarray(std, np.float64).ravel()
    if r.size == 0:
        raise ValueError("no pixels to fit the calibration on.")
    mse, ms2 = float(np.mean(r * r)), float(np.mean(s * s))
    if mse == 0.0:
        return 0.0, 0.0
    grid = np.linspace(0.0, np.sqrt(mse / ms2), n_grid) if ms2 > 0 else np.zeros(1)
    nominal1, nominal2 = _nominal(1.0), _nominal(2.0)
    miss = np.empty((grid.size, 2))
    for i, a in enumerate(grid):
        sigma = np.sqrt(a * a * s * s + max(mse - a * a * ms2, 0.0))
        miss[i] = abs(np.mean(r <= 2 * sigma) - nominal2), abs(np.mean(r <= sigma) - nominal1)
    # Within 0.002 of the best ±2σ, the map whose ±1σ is nearest nominal.
    near = np.flatnonzero(miss[:, 0] <= miss[:, 0].min() + 0.002)
    a = float(grid[near[np.argmin(miss[near, 1])]])
    return a, float(np.sqrt(max(mse - a * a * ms2, 0.0)))


class CalibratedDynamics(_state.FittedState, FieldDataTags, MetaEstimatorMixin, BaseEstimator):
    """A latent dynamics estimator whose predicted spread is fitted to held-out errors.

    For every field and lead time ``t`` (steps after the initial frame, 0
    included) the ensemble standard deviation ``σ`` of
    ``estimator.predict(X, return_std=True)`` becomes ``sqrt(a²·σ² + b²)``, with
    ``a`` and ``b`` fitted (by default: spread/skill 1 and ±2σ nominal) to the errors of the
    mean rollout on rollouts the estimator was not fitted on. Lead times past
    the longest calibrated one use its ``a`` and ``b``. Pixels where truth and
    prediction both sit at a bound of the field (``bounds_``, e.g. solid
    material at solid fraction 1) are left out of the fit.

    Parameters
    ----------
    estimator : MicroDynamicsEstimator or MesoDynamicsEstimator
        The dynamics estimator, fitted when ``cv="prefit"``.
    cv : "prefit", int, cross-validation generator or iterable, default=3
        ``"prefit"``: ``estimator`` is fitted and ``fit(X)`` only calibrates it,
        on ``X`` (samples it was not fitted on). Otherwise splits of the
        samples as for :func:`sklearn.model_selection.check_cv`: a clone is
        fitted on each training part and rolled out on the held-out part, the
        calibration is fitted on all held-out rollouts together, and
        ``estimator_`` is a clone fitted on all of ``X``.
    n_draws : int, default=16
        Members of the trajectory ensembles, in ``fit`` and in ``predict``.
    method : {"coverage", "likelihood", "crps", "scale"}, default="coverage"
        How ``a`` and ``b`` are fitted: ``"coverage"`` makes the mean variance the
        mean squared error and ±2σ cover 95.45 % (:func:`fit_variance_map_coverage`;
        heavy-tailed errors then leave ±1σ covering too much); ``"likelihood"``
        maximises the Gaussian likelihood of the errors under
        ``N(mean, a²·σ² + b²)`` (:func:`fit_variance_map`: on the demo, a
        microstructure spread twice its RMSE); ``"crps"`` minimises its mean CRPS
        (:func:`fit_variance_map_crps`: about as low a CRPS, but bands that
        cover less in the demo, see docs/model.md); ``"scale"`` sets ``b = 0``
        and ``a`` to the ratio of the RMS error to the RMS spread.

    Attributes
    ----------
    estimator_ : estimator
        The fitted dynamics estimator that predicts.
    fields_ : list of str
        Field names, in order.
    scale_, offset_ : numpy.ndarray of shape (n_fields, n_lead_times)
        ``a`` and ``b`` per field and lead time; ``b`` is in the estimator's
        (scaled) units.
    n_calibration_pixels_ : numpy.ndarray of shape (n_fields, n_lead_times)
        Pixels each pair was fitted on.

    Examples
    --------
    >>> from sklearn.pipeline import Pipeline
    >>> from skmld import CalibratedDynamics, MicroDynamicsEstimator, PatchTokenizer
    >>> from skmld.datasets import make_pore_collapse
    >>> X = make_pore_collapse("micro", 4, shape=(32, 32), n_steps=3, random_state=0)
    >>> tokens = PatchTokenizer().fit(X)
    >>> micro = MicroDynamicsEstimator(filters=2, dynamics_filters=2, horizons=(1,), vae_epochs=1,
    ...                                decoupled_epochs=0, coupled_epochs=1, batch_size=4, random_state=0)
    >>> micro.fit(tokens.transform(X.isel(sample=slice(0, 2))))  # doctest: +ELLIPSIS
    MicroDynamicsEstimator(...)
    >>> cal = CalibratedDynamics(micro, cv="prefit", n_draws=2).fit(tokens.transform(X.isel(sample=slice(2, 4))))
    >>> cal.scale_.shape
    (3, 3)
    >>> pipe = Pipeline([("tokens", tokens), ("dynamics", cal)])
    >>> mean, std = pipe.predict(X, return_std=True)
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict"])],
        "cv": [StrOptions({"prefit"}), Interval(Integral, 2, None, closed="left"), "cv_object"],
        "n_draws": [Interval(Integral, 2, None, closed="left")],
        "method": [StrOptions({"coverage", "crps", "likelihood", "scale"})],
    }

    def __init__(self, estimator, *, cv=3, n_draws: int = 16, method: str = "coverage"):
        self.estimator = estimator
        self.cv = cv
        self.n_draws = n_draws
        self.method = method

    def __sklearn_clone__(self):
        # A prefit estimator is kept as it is (fitted), like sklearn.frozen.FrozenEstimator.
        params = self.get_params(deep=False)
        estimator = params.pop("estimator")
        return type(self)(estimator if self.cv == "prefit" else clone(estimator), **params)

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the calibration (and, unless ``cv="prefit"``, the estimator) on ``X``.

        Parameters
        ----------
        X : xarray.DataArray or xarray.Dataset
            Tokens (or plain scaled fields) with at least 2 time steps: held-out
            samples when ``cv="prefit"``, else the training samples.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        _, layout = to_domain(X, name="X", min_times=2)
        if self.cv == "prefit":
            check_is_fitted(self.estimator, msg="cv='prefit' needs a fitted estimator; fit it first or pass cv=k.")
            self.estimator_ = self.estimator
            pairs = [self._errors(self.estimator_, X)]
        else:
            n_samples = X.sizes["sample"]
            splits = list(check_cv(self.cv).split(np.zeros((n_samples, 1))))
            pairs = []
            for train, test in splits:
                est = clone(self.estimator).fit(X.isel(sample=train))
                pairs.append(self._errors(est, X.isel(sample=test)))
            self.estimator_ = clone(self.estimator).fit(X)
        self.fields_ = list(layout.fields)
        self._fit_maps(*(np.concatenate([p[i] for p in pairs]) for i in range(3)))
        return self

    def _fit_maps(self, residual, std, keep):
        """Fit ``scale_``, ``offset_`` from errors, spreads and unpinned masks ``(S, T, Y, X, F)`` (see :meth:`_errors`)."""
        n_fields, n_lead = residual.shape[-1], residual.shape[1]
        self.scale_ = np.ones((n_fields, n_lead))
        self.offset_ = np.zeros((n_fields, n_lead))
        self.n_calibration_pixels_ = np.zeros((n_fields, n_lead), dtype=np.int64)
        rng = np.random.default_rng(0)
        for f in range(n_fields):
            for t in range(n_lead):
                mask = keep[:, t, ..., f]
                r, s = residual[:, t, ..., f][mask], std[:, t, ..., f][mask]
                self.n_calibration_pixels_[f, t] = r.size
                if r.size == 0:
                    continue  # every pixel pinned: nothing to calibrate, the spread is kept
                if r.size > _MAX_PIXELS:
                    pick = rng.choice(r.size, _MAX_PIXELS, replace=False)
                    r, s = r[pick], s[pick]
                if self.method == "scale":
                    a, b = float(np.sqrt(np.mean(r**2) / max(np.mean(s**2), 1e-300))), 0.0
                elif self.method == "likelihood":
                    a, b = fit_variance_map(r, s)
                elif self.method == "coverage":
                    a, b = fit_variance_map_coverage(r, s)
                else:
                    a, b = fit_variance_map_crps(r, s)
                self.scale_[f, t], self.offset_[f, t] = a, b

    def _errors(self, est, X):
        """Errors of ``est``'s mean rollout of ``X``, its ensemble std, and the unpinned-pixel mask."""
        mean, std = est.predict(X, return_std=True, n_draws=self.n_draws)
        truth = _values(to_domain(X, name="X")[0])
        mean, std = (_values(to_domain(a, name="prediction")[0]) for a in (mean, std))
        fields = est.fields_
        lower, upper = scaled_bounds(getattr(est, "bounds_", None), getattr(est, "ranges_", None), fields)
        pinned = np.zeros(truth.shape, bool)
        for i in range(len(fields)):
            for bound in (lower[i], upper[i]):
                if np.isfinite(bound):
                    width = upper[i] - lower[i]
                    tol = PINNED_RTOL * (width if np.isfinite(width) else 1.0)
                    pinned[..., i] |= (np.abs(truth[..., i] - bound) <= tol) & (np.abs(mean[..., i] - bound) <= tol)
        return truth - mean, std, ~pinned

    # -------------------------------------------------------------- predict
    def _factors(self, n_times: int) -> tuple[np.ndarray, np.ndarray]:
        """``a`` and ``b`` as ``(n_times, n_fields)``; lead times past the calibrated ones take the last."""
        lead = np.minimum(np.arange(n_times), self.scale_.shape[1] - 1)
        return self.scale_[:, lead].T, self.offset_[:, lead].T

    def calibrated_std(self, std):
        """Map an ensemble standard deviation (the estimator's ``predict(X, return_std=True)[1]``) to ``sqrt(a²·σ² + b²)``.

        ``std``'s first time step is lead time 0; returns the same layout.
        """
        check_is_fitted(self)
        values, layout = to_domain(std, name="std")
        a, b = self._factors(values.shape[1])
        shape = (1, values.shape[1], 1, 1, values.shape[-1])
        out = np.sqrt(np.square(a.reshape(shape)) * np.square(_values(values)) + np.square(b.reshape(shape)))
        return from_domain(out.astype(np.float32), layout)

    def calibrated_draws(self, draws, mean, random_state=None):
        """Map ensemble members (``predict_draws``) to ``mean + a·(d − d̄) + b·ε``, within the fields' bounds.

        ``mean`` is the estimator's mean rollout, ``d̄`` the members' mean and ``ε``
        standard normal noise seeded by ``random_state``: the members then have the
        mean and, on average, the calibrated spread that :meth:`predict` returns.
        """
        check_is_fitted(self)
        members = [to_domain(draws.isel(draw=d), name="draws") for d in range(draws.sizes["draw"])]
        layout = members[0][1]
        x = np.stack([_values(m[0]) for m in members])  # (D, S, T, Y, X, F)
        centre = _values(to_domain(mean, name="mean")[0])[None]
        a, b = self._factors(x.shape[2])
        shape = (1, 1, x.shape[2], 1, 1, x.shape[-1])
        noise = np.random.default_rng(random_state).standard_normal(x.shape)
        out = centre + a.reshape(shape) * (x - x.mean(axis=0, keepdims=True)) + b.reshape(shape) * noise
        est = self.estimator_
        lower, upper = scaled_bounds(getattr(est, "bounds_", None), getattr(est, "ranges_", None), est.fields_)
        out = np.clip(out, lower, upper).astype(np.float32)
        return xr.concat([from_domain(o, layout) for o in out], dim="draw", coords="minimal", compat="override")

    def predict(self, X, n_steps: int | None = None, return_std: bool = False, n_draws: int | None = None):
        """Roll out from ``X``'s first time step; with ``return_std``, also the calibrated spread.

        Parameters
        ----------
        X : xarray.DataArray or xarray.Dataset
            As for the estimator's ``predict``.
        n_steps : int, default=None
            Steps to predict; ``None`` means ``X``'s time length − 1.
        return_std : bool, default=False
            Also return ``sqrt(a²·σ² + b²)`` per field and lead time.
        n_draws : int, default=None
            Ensemble members; ``None`` takes ``n_draws``.

        Returns
        -------
        pred : same type and layout as ``X``
            The estimator's mean rollout, unchanged.
        std : same type and layout as ``X``
            Only when ``return_std``.
        """
        check_is_fitted(self)
        if not return_std:
            return self.estimator_.predict(X, n_steps=n_steps)
        mean, std = self.estimator_.predict(X, n_steps=n_steps, return_std=True,
                                            n_draws=self.n_draws if n_draws is None else n_draws)
        return mean, self.calibrated_std(std)

    def predict_draws(self, X, n_steps: int | None = None, n_draws: int | None = None, random_state=None):
        """Ensemble members with the calibrated spread around the mean rollout (see :meth:`calibrated_draws`)."""
        check_is_fitted(self)
        draws = self.estimator_.predict_draws(X, n_steps=n_steps,
                                              n_draws=self.n_draws if n_draws is None else n_draws)
        return self.calibrated_draws(draws, self.estimator_.predict(X, n_steps=n_steps), random_state)

    def score(self, X, y=None) -> float:
        """The estimator's score: mean over fields of each field's R² of the rollout (the spread plays no part)."""
        check_is_fitted(self)
        return self.estimator_.score(X)

    def score_per_field(self, X) -> dict:
        """The estimator's per-field R² of the rollout against ``X``."""
        check_is_fitted(self)
        return self.estimator_.score_per_field(X)

    def save(self, path) -> None:
        """Write the fitted calibrated estimator to ``path`` in skmld's safe format (read it with :func:`skmld.load`)."""
        from skmld.persistence import save

        save(self, path)

    # -- fitted state (skmld._state) -----------------------------------------
    _MATRIX = "array of shape (n_fields, n_lead_times)"
    _fitted_attrs = {
        "fields_": ("a list of field names", _state.str_list),
        "scale_": (f"a finite, non-negative float64 {_MATRIX}", _state.matrix("f")),
        "offset_": (f"a finite, non-negative float64 {_MATRIX}", _state.matrix("f")),
        "n_calibration_pixels_": (f"a non-negative int64 {_MATRIX}", _state.matrix("i")),
    }
    _estimator_slots = {
        "estimator": _state.Slot(("MicroDynamicsEstimator", "MesoDynamicsEstimator"), unfitted=True),
        "estimator_": _state.Slot(("MicroDynamicsEstimator", "MesoDynamicsEstimator")),
    }

    @classmethod
    def _param_problem(cls, params: dict) -> str | None:
        cv = params.get("cv")
        if cv is None or (isinstance(cv, str) and cv == "prefit") or (
                isinstance(cv, Integral) and not isinstance(cv, (bool, np.bool_))):
            return None
        return (f"has cv={cv!r} (a {type(cv).__module__}.{type(cv).__qualname__}), which skmld's safe format "
                "cannot store: param 'cv' must be 'prefit', an int or None, not a cross-validation splitter or "
                "iterable of splits (an object, not data). Set cv='prefit' or an int (e.g. est.set_params(cv=5), "
                "which changes no fitted attribute) before saving.")

    @classmethod
    def _state_problem(cls, state: dict) -> str | None:
        problem = super()._state_problem(state)
        if problem is not None:
            return problem
        names = ("scale_", "offset_", "n_calibration_pixels_")
        leads = [state[name].shape[1] for name in names]
        expected = (len(state["fields_"]), max(leads, key=leads.count))  # the odd one out is wrong
        for name in names:
            if state[name].shape != expected:
                return (f"fitted attribute {name!r} has shape {state[name].shape}; {', '.join(names[:2])} and "
                        f"{names[2]} must all have shape (n_fields, n_lead_times) = {expected}, with n_fields = "
                        f"len(fields_) = {expected[0]}.")
        return None

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "scale_")
