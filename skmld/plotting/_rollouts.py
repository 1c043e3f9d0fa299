"""Figures of rollouts: fields over time, and hotspot metrics against time."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from skmld._constants import HOTSPOT_THRESHOLD
from skmld.metrics import _as_array, _field_units, hotspot_metrics
from skmld.plotting._common import _check_physical, _extent, _limits, _save


def plot_rollout(
    truth: xr.Dataset | xr.DataArray,
    pred: xr.Dataset | xr.DataArray,
    std: xr.Dataset | xr.DataArray | None = None,
    *,
    sample: int = 0,
    times: Sequence[int] | None = None,
    fields: Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Truth, prediction, absolute error and predicted std of one sample over time.

    One block of rows per field — truth, prediction, ``|truth - prediction|`` and,
    when ``std`` is given, the predicted standard deviation — and one column per
    chosen time. Truth and prediction share one colour scale per field; error
    and std share a second one (both in the field's units), so the uncertainty
    can be read against the error. Colourbar labels carry the units.

    Parameters
    ----------
    truth, pred : xarray.DataArray or xarray.Dataset
        Physical fields, dims ``("sample", "time", "field", "y", "x")`` or a
        field Dataset; ``pred`` as returned by ``inverse_transform(predict(X))``.
    std : xarray.DataArray or xarray.Dataset, default=None
        Predicted standard deviation in the same layout, or None. The tokenizer's
        scaling is affine, so a token std converts to physical units as
        ``inv(mean + std) - inv(mean)`` with ``inv = pipe["tokens"].inverse_transform``.
    sample : int, default=0
        Position of the sample to show.
    times : sequence of int, default=None
        Positions along ``time`` (not time values) of the columns; ``None`` picks
        up to 5 evenly spaced steps, first and last included.
    fields : sequence of str, default=None
        Fields to show, in order; all by default.
    path : str or path-like, default=None
        Save the figure there as PNG.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> X = xr.DataArray(np.random.default_rng(0).random((1, 3, 1, 8, 8)),
    ...                  dims=("sample", "time", "field", "y", "x"),
    ...                  coords={"field": ["pressure"], "time": [0.0, 2.0, 4.0]})
    >>> fig = plot_rollout(X, X * 0.9, std=X * 0.1)
    >>> len(fig.axes) > 0
    True
    """
    t_arr, p_arr = _as_array(truth, "truth"), _as_array(pred, "pred")
    _check_physical(t_arr, "truth")
    _check_physical(p_arr, "pred")
    s_arr = None if std is None else _as_array(std, "std")
    # Only the common time steps can be compared.
    keep = ["field", "y", "x", "sample"]
    if s_arr is not None:
        t_arr, p_arr, s_arr = xr.align(t_arr, p_arr, s_arr, join="inner", exclude=keep)
    else:
        t_arr, p_arr = xr.align(t_arr, p_arr, join="inner", exclude=keep)
    units = _field_units(t_arr)
    names = [str(f) for f in t_arr["field"].values] if fields is None else list(fields)
    unknown = [f for f in names if f not in units]
    if unknown:
        raise ValueError(f"unknown fields {unknown}; fields are {list(units)}.")
    n_time = t_arr.sizes["time"]
    if times is None:
        times = sorted(set(np.linspace(0, n_time - 1, min(n_time, 5)).round().astype(int).tolist()))
    times = [int(t) for t in times]
    bad = [t for t in times if not -n_time <= t < n_time]
    if bad:
        raise ValueError(
            f"times {bad} out of range for {n_time} time steps (positions, not values)."
        )

    def pick(arr: xr.DataArray, field: str) -> xr.DataArray:
        sel = arr.sel(field=field)
        if "sample" in sel.dims:
            sel = sel.isel(sample=sample)
        return sel.isel(time=times).transpose("time", "y", "x").compute()

    kinds = ["truth", "prediction", "|error|"] + (["predicted std"] if s_arr is not None else [])
    n_rows, n_cols = len(names) * len(kinds), len(times)
    fig = Figure(figsize=(2.3 * n_cols + 1.2, 1.9 * n_rows + 0.4), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharex=True, sharey=True)
    extent = _extent(t_arr)
    time_units = t_arr["time"].attrs.get("units", "ns") if "time" in t_arr.coords else ""
    for b, field in enumerate(names):
        tr, pr = pick(t_arr, field), pick(p_arr, field)
        panels = {"truth": tr, "prediction": pr, "|error|": np.abs(tr - pr)}
        if s_arr is not None:
            panels["predicted std"] = pick(s_arr, field)
        value_lim = _limits([tr, pr])
        spread_lim = _limits([panels[k] for k in kinds[2:]], zero=True)
        unit = units[field] or "-"
        for r, kind in enumerate(kinds):
            row = b * len(kinds) + r
            vmin, vmax = value_lim if r < 2 else spread_lim
            cmap = "inferno" if r < 2 else "viridis"
            for c in range(n_cols):
                ax = axes[row, c]
                im = ax.imshow(
                    panels[kind].isel(time=c).values,
                    origin="lower", extent=extent, vmin=vmin, vmax=vmax, cmap=cmap,
                    interpolation="nearest", aspect="auto",
                )
                ax.tick_params(labelsize=6)
                if row == 0:
                    t = tr["time"].values[c] if "time" in tr.coords else times[c]
                    ax.set_title(f"t = {t:g} {time_units}".rstrip(), fontsize=8)
                if c == 0:
                    ax.set_ylabel(f"{field}\n{kind}", fontsize=7)
            fig.colorbar(im, ax=axes[row, :].tolist(), shrink=0.9, pad=0.01).set_label(
                f"{field} [{unit}]", fontsize=7
            )
    fig.suptitle(f"rollout, sample {sample}", fontsize=9)
    return _save(fig, path)


def plot_hotspots(
    truth: xr.Dataset | xr.DataArray,
    pred: xr.Dataset | xr.DataArray,
    std: xr.Dataset | xr.DataArray | None = None,
    *,
    threshold: float = HOTSPOT_THRESHOLD,
    sample: int | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Hotspot temperature ``T_hs`` and area ``A_hs`` versus time, truth vs prediction.

    The uncertainty band, when ``std`` is given, is the envelope of the hotspot
    metrics of the two fields ``pred - std`` and ``pred + std``: cheap,
    deterministic and available from ``predict(X, return_std=True)`` alone (no
    draws). For ``A_hs`` it is an exact ±1σ band of the pixel-wise band, because
    the hot area grows monotonically with temperature; for ``T_hs`` it is an
    approximation (the mean over hot pixels is not monotonic in the field).

    Parameters
    ----------
    truth, pred : xarray.DataArray or xarray.Dataset
        Physical fields (canonical array or Dataset) or temperature on
        ``(..., "time", "y", "x")``.
    std : xarray.DataArray or xarray.Dataset, default=None
        Predicted standard deviation in the layout of ``pred``.
    threshold : float, default=875.0
        Hotspot threshold in K.
    sample : int, default=None
        Position of one sample to show; ``None`` shows the mean over samples.
    path : str or path-like, default=None
        Save the figure there as PNG.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> T = 300 + 1000 * np.random.default_rng(0).random((2, 4, 8, 8))
    >>> T = xr.DataArray(T, dims=("sample", "time", "y", "x"),
    ...                  coords={"time": np.arange(4.0), "x": np.arange(8.0), "y": np.arange(8.0)})
    >>> fig = plot_hotspots(T, T * 1.05, std=T * 0.02)
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['T_hs [K]', 'A_hs [µm^2]']
    """
    def metrics(obj: Any) -> xr.Dataset:
        ds = hotspot_metrics(obj, threshold=threshold)
        if "sample" in ds.dims:
            if sample is not None:
                ds = ds.isel(sample=sample)
            else:
                ds = ds.mean("sample", keep_attrs=True)
        return ds.compute()

    m_true, m_pred = metrics(truth), metrics(pred)
    band = None
    if std is not None:
        lo = metrics(_shift(pred, std, -1.0))
        hi = metrics(_shift(pred, std, +1.0))
        band = (np.minimum(lo, hi), np.maximum(lo, hi))

    fig = Figure(figsize=(9.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 2, squeeze=False)[0]
    for ax, name, label in zip(axes, ("T_hs", "A_hs"), ("hotspot temperature", "hotspot area")):
        t = m_true["time"].values if "time" in m_true.coords else np.arange(m_true.sizes["time"])
        tp = m_pred["time"].values if "time" in m_pred.coords else np.arange(m_pred.sizes["time"])
        ax.plot(t, m_true[name].values, "k-o", ms=3, label="truth")
        ax.plot(tp, m_pred[name].values, "C1-s", ms=3, label="prediction")
        if band is not None:
            ax.fill_between(tp, band[0][name].values, band[1][name].values,
                            color="C1", alpha=0.25, label="prediction ± std")
        has_time = "time" in m_true.coords
        ax.set_xlabel(f"time [{m_true['time'].attrs.get('units', 'ns')}]" if has_time else "step")
        ax.set_ylabel(f"{name} [{m_true[name].attrs['units']}]")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    who = f"sample {sample}" if sample is not None else "mean over samples"
    fig.suptitle(f"hotspot metrics (T > {threshold:g} K), {who}", fontsize=9)
    return _save(fig, path)


def _shift(pred: Any, std: Any, sign: float) -> Any:
    """``pred + sign * std`` for matching Datasets or DataArrays (keeps coords/attrs)."""
    if isinstance(pred, xr.Dataset) != isinstance(std, xr.Dataset):
        pred, std = _as_array(pred, "pred"), _as_array(std, "std")
    return xr.apply_ufunc(lambda p, s: p + sign * s, pred, std, keep_attrs=True, dask="allowed")
