"""Field errors and skill: RMSE per field and time, R² per field, MSE skill against a baseline."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import xarray as xr

from skmld.metrics._common import _align_time, _as_array, _check_result, _field_units


def field_rmse(
    truth: xr.Dataset | xr.DataArray,
    pred: xr.Dataset | xr.DataArray,
    *,
    dim: str | Iterable[str] | None = None,
) -> xr.DataArray:
    """Root-mean-square error per field and time step.

    Parameters
    ----------
    truth, pred : xarray.DataArray or xarray.Dataset
        Fields in the same layout: canonical ``("sample", "time", "field", "y",
        "x")``, a field Dataset, or token layout. Only the time steps both have
        are compared (a rollout may be shorter than the truth).
    dim : str or iterable of str, default=None
        Dimensions to average over. ``None`` averages over every dimension except
        ``"field"`` and ``"time"`` (samples, space, and token dims if present).

    Returns
    -------
    xarray.DataArray
        Named ``"field_rmse"`` with dims ``("field", "time")`` (those present),
        in the units of the inputs: K, GPa and - for physical fields, and a
        ``units`` coordinate along ``field``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> truth = xr.DataArray(np.zeros((2, 3, 1, 4, 4)),
    ...                      dims=("sample", "time", "field", "y", "x"),
    ...                      coords={"field": ["temperature"]})
    >>> field_rmse(truth, truth + 5.0).values.tolist()
    [[5.0, 5.0, 5.0]]
    """
    t_arr, p_arr = _align_time(
        _as_array(truth, "truth"), _as_array(pred, "pred"), ("truth", "pred")
    )
    if dim is None:
        dims = [d for d in t_arr.dims if d not in ("field", "time")]
    else:
        if not isinstance(dim, str) and (
            not isinstance(dim, Iterable) or not all(isinstance(d, str) for d in dim)
        ):
            raise TypeError(f"dim must be a dimension name or a sequence of names, got {dim!r}.")
        dims = [dim] if isinstance(dim, str) else list(dim)
        missing = [d for d in dims if d not in t_arr.dims]
        if missing:
            raise ValueError(f"cannot reduce over {missing}: dims are {t_arr.dims}.")
    err = t_arr - p_arr
    rmse = np.sqrt((err**2).mean(dims))
    units = _field_units(t_arr)
    if units and "field" in rmse.dims:
        rmse = rmse.assign_coords(units=("field", [units.get(f, "") for f in rmse["field"].values]))
    order = [d for d in ("field", "time") if d in rmse.dims]
    rmse = rmse.transpose(*order, ...)
    rmse.name = "field_rmse"
    rmse.attrs = {"long_name": "root-mean-square error", "reduced_over": ", ".join(map(str, dims))}
    _check_result(rmse, "field_rmse")
    return rmse


def r2_per_field(
    truth: xr.Dataset | xr.DataArray,
    pred: xr.Dataset | xr.DataArray,
) -> xr.DataArray:
    """Coefficient of determination of each field, over every other dimension.

    ``R²_f = 1 − Σ(truth − pred)² / Σ(truth − mean_f)²`` with the sums and the
    mean over all samples, times, cells (and token dims) of field ``f``. Each
    field is judged on its own: 0 is the score of predicting the field's mean
    everywhere, whatever the other fields do. A field that is constant in
    ``truth`` scores 1 if predicted exactly, else NaN.

    Parameters
    ----------
    truth, pred : xarray.DataArray or xarray.Dataset
        Fields in the same layout (canonical, field Dataset or tokens); only the
        time steps both have are compared. Drop the initial state first when
        scoring a rollout (it is given, not predicted).

    Returns
    -------
    xarray.DataArray
        Named ``"r2"`` on dim ``"field"``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> truth = xr.DataArray(np.arange(8.0).reshape(2, 1, 2, 2), dims=("sample", "time", "field", "x"),
    ...                      coords={"field": ["a", "b"]})
    >>> r2_per_field(truth, truth).values.tolist()
    [1.0, 1.0]
    """
    t_arr, p_arr = _align_time(_as_array(truth, "truth"), _as_array(pred, "pred"), ("truth", "pred"))
    if "field" not in t_arr.dims:
        raise ValueError(f"r2_per_field needs a 'field' dim; truth has dims {t_arr.dims}.")
    per = [d for d in t_arr.dims if d != "field"]
    t64, p64 = t_arr.astype(np.float64), p_arr.astype(np.float64)
    ss_res = ((t64 - p64) ** 2).sum(per)
    ss_tot = ((t64 - t64.mean(per)) ** 2).sum(per)
    r2 = xr.where(ss_tot > 0, 1.0 - ss_res / ss_tot.where(ss_tot > 0), xr.where(ss_res == 0, 1.0, np.nan))
    r2.name = "r2"
    r2.attrs = {"long_name": "coefficient of determination per field", "reduced_over": ", ".join(map(str, per))}
    return r2


def skill_score(
    truth: xr.Dataset | xr.DataArray,
    pred: xr.Dataset | xr.DataArray,
    reference: xr.Dataset | xr.DataArray,
) -> xr.DataArray:
    """MSE skill score of each field against a reference forecast.

    ``skill_f = 1 − MSE_f(pred) / MSE_f(reference)``, each MSE over every dim
    but ``field`` (samples, times, cells, token dims). The reference is a
    baseline such as persistence (the initial state repeated) or climatology
    (the training mean at each time and cell): 1 is a perfect prediction, 0 one
    as good as the reference, and a negative skill one worse than it.

    Parameters
    ----------
    truth, pred, reference : xarray.DataArray or xarray.Dataset
        Fields in the same layout (canonical, field Dataset or tokens); only
        the time steps all three have are compared. Drop the initial state
        first when scoring a rollout against persistence, which is exact there.

    Returns
    -------
    xarray.DataArray
        Named ``"skill"`` on dim ``"field"`` (a scalar for inputs without one),
        dimensionless. NaN for a field the reference predicts exactly (its MSE
        is 0, so no skill can be measured against it).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> truth = xr.DataArray(np.arange(6.0).reshape(1, 3, 2), dims=("sample", "time", "field"),
    ...                      coords={"field": ["temperature", "pressure"]})
    >>> reference = truth.isel(time=[0, 0, 0]).assign_coords(time=truth["time"])
    >>> skill_score(truth, truth, reference).values.tolist()
    [1.0, 1.0]
    >>> skill_score(truth, reference, reference).values.tolist()
    [0.0, 0.0]
    """
    t_arr = _as_array(truth, "truth")
    p_arr = _as_array(pred, "pred")
    r_arr = _as_array(reference, "reference")
    t_arr, p_arr = _align_time(t_arr, p_arr, ("truth", "pred"))
    t_arr, r_arr = _align_time(t_arr, r_arr, ("truth", "reference"))
    if "time" in t_arr.dims and "time" in t_arr.coords:
        p_arr = p_arr.sel(time=t_arr["time"])
    per = [d for d in t_arr.dims if d != "field"]
    t64 = t_arr.astype(np.float64)
    mse_pred = ((t64 - p_arr.astype(np.float64)) ** 2).mean(per)
    mse_ref = ((t64 - r_arr.astype(np.float64)) ** 2).mean(per)
    skill = 1.0 - mse_pred / mse_ref.where(mse_ref > 0)
    # The score is dimensionless: drop the inputs' per-field units coordinate.
    skill = skill.drop_vars("units", errors="ignore")
    skill.name = "skill"
    skill.attrs = {
        "units": "1",
        "long_name": "MSE skill score against the reference",
        "reduced_over": ", ".join(map(str, per)),
    }
    return skill
