"""The demo's numbers: one model's scores on held-out data, its ensemble's coverage and CRPS."""

from __future__ import annotations

import logging

import numpy as np

from skmld._constants import HOTSPOT_THRESHOLD

logger = logging.getLogger("skmld.demo")

HOT_THRESHOLDS = (700.0, HOTSPOT_THRESHOLD, 1200.0)  # graded hotspot metrics; the paper's 875 K in the middle


def _after_first(data):
    return data.isel(time=slice(1, None))


def _float(value) -> float:
    return float(np.asarray(value))


def _evaluate(name, truth, pred, std, threshold) -> dict:
    """All numbers of one model on the held-out data (physical units, times after the first)."""
    from skmld.metrics import (
        coverage,
        field_rmse,
        hotspot_mask_scores,
        hotspot_rmse,
        r2_per_field,
    )

    t1, p1 = _after_first(truth), _after_first(pred)
    rmse = field_rmse(t1, p1, dim=None)
    rmse = np.sqrt((rmse**2).mean("time"))  # over samples, space and times
    r2 = r2_per_field(t1, p1)
    hs = hotspot_rmse(t1, p1, threshold=threshold)
    graded = hotspot_mask_scores(t1, p1, thresholds=sorted({*HOT_THRESHOLDS, threshold}))
    out = {
        "r2_per_field": {str(f): _float(r2.sel(field=f)) for f in r2["field"].values},
        "field_rmse": {str(f): _float(rmse.sel(field=f)) for f in rmse["field"].values},
        "field_rmse_units": {str(f): str(u) for f, u in zip(rmse["field"].values, rmse["units"].values)},
        "hotspot_rmse": {k: _float(hs[f"{k}_overall"]) for k in ("T_hs", "A_hs", "dT_hs_dt", "dA_hs_dt")},
        "hotspot_rmse_units": {k: str(hs[f"{k}_overall"].attrs["units"])
                               for k in ("T_hs", "A_hs", "dT_hs_dt", "dA_hs_dt")},
        "hot_mask": {f"{float(th):g}": {k: _float(graded[k].sel(threshold=th))
                                        for k in ("f1", "iou", "n_hotspots_pred", "n_hotspots_true",
                                                  "n_hotspots_rmse", "excess_heat_rmse")}
                     for th in graded["threshold"].values},
    }
    out["r2"] = float(np.mean(list(out["r2_per_field"].values())))
    if std is not None:
        s1 = _after_first(std)
        for k in (1, 2):
            cov = coverage(t1, p1, s1, k=k)
            out[f"coverage_{k}sigma"] = _float(cov["coverage_overall"])
            out[f"coverage_{k}sigma_per_field"] = {str(f): _float(cov["coverage"].sel(field=f))
                                                   for f in cov["field"].values}
            out[f"coverage_{k}sigma_nominal"] = float(cov.attrs["nominal"])
    logger.info("%s: %s", name, out)
    return out


def _probabilistic(tokenizer, calibrated, data, mean_t, draws) -> tuple[dict, dict]:
    """Coverage, spread–skill and CRPS of the transfer model's ensemble ``draws`` of ``data``, calibrated or not.

    ``mean_t`` is the model's mean rollout of ``data``, in tokens.

    Also the CRPS of a zero-spread prediction. Returns the per-field summary and
    the score Datasets (for the plots).
    """
    import xarray as xr

    from skmld.metrics import probabilistic_scores

    truth = _after_first(data)
    mean = _after_first(tokenizer.inverse_transform(mean_t))
    spreads = {"uncalibrated": (draws.std("draw", ddof=1), draws),
               "calibrated": (calibrated.calibrated_std(draws.std("draw", ddof=1)),
                              calibrated.calibrated_draws(draws, mean_t, random_state=0))}
    summary, datasets = {}, {}
    for name, (std_t, draws_t) in spreads.items():
        std = _after_first(_physical_std(tokenizer, mean_t, std_t))
        members = xr.concat([_after_first(tokenizer.inverse_transform(draws_t.isel(draw=d)))
                             for d in range(draws_t.sizes["draw"])], "draw")
        ds = probabilistic_scores(truth, mean, std, draws=members)
        datasets[name], summary[name] = ds, _probabilistic_summary(ds)
    zero = probabilistic_scores(truth, mean, xr.zeros_like(mean))
    summary["zero spread"] = {"crps": {str(f): _float(zero["crps_overall"].sel(field=f)) for f in zero["field"].values}}
    logger.info("uncertainty: %s", summary)
    return summary, datasets


def _probabilistic_summary(ds) -> dict:
    fields = [str(f) for f in ds["field"].values]
    out = {f"coverage_{k:g}sigma": {f: _float(ds["coverage_overall"].sel(field=f, k=k)) for f in fields}
           for k in ds["k"].values}
    out["spread_skill"] = {f: _float(ds["spread_skill_overall"].sel(field=f)) for f in fields}
    out["crps"] = {f: _float(ds["crps_overall"].sel(field=f)) for f in fields}
    return out


def _no_hotspot_rmse(truth, threshold) -> dict:
    """RMSE of T_hs and A_hs of a prediction without any hotspot: the truth's RMS, the bar to clear."""
    from skmld.metrics import hotspot_rmse

    t1 = _after_first(truth)
    cold = t1.assign(temperature=t1["temperature"].clip(max=threshold))
    hs = hotspot_rmse(t1, cold, threshold=threshold)
    return {k: _float(hs[f"{k}_overall"]) for k in ("T_hs", "A_hs")}


def _physical_std(tokenizer, pred_tokens, std_tokens):
    """Token std → physical units: ``inv(mean + std) - inv(mean)`` (the scaling is affine)."""
    upper = tokenizer.inverse_transform(pred_tokens.copy(data=pred_tokens.values + std_tokens.values))
    return abs(upper - tokenizer.inverse_transform(pred_tokens))


def _micro_reconstruction(micro, X) -> dict:
    """Per field, RMSE of the micro VAE's reconstruction of ``X`` (latent means decoded) over a constant's."""
    tokens, est = micro["tokens"], micro[-1]
    rec = tokens.inverse_transform(est.decode(est.encode(tokens.transform(X))))
    out = {}
    for f in X.data_vars:
        truth = X[f].values.astype(np.float64)
        out[str(f)] = float(np.sqrt(np.mean((rec[f].values - truth) ** 2)) / truth.std())
    return out
