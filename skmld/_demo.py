"""The main job, ``python -m skmld demo``: micro model → meso transfer vs from scratch.

Steps (see ``docs/user_guide.md`` for the same in code):

1. simulate micro (one pore) and meso (many pores) pore-collapse data;
2. fit the micro pipeline ``PatchTokenizer → MicroDynamicsEstimator``;
3. fit the meso pipeline on a few meso samples twice: with the micro model as
   backbone (transfer) and without (from scratch), same data and meso epochs;
4. evaluate both, and the persistence and climatology baselines, on held-out
   meso samples: per-field R² and RMSE in physical units, graded and paper
   hotspot metrics, ±1σ/±2σ coverage, fit times; and the micro VAE's
   reconstruction of held-out micro samples;
5. calibrate the transfer model's ensemble spread on meso samples of its own
   (:class:`~skmld.CalibratedDynamics`) and score coverage, spread–skill and
   CRPS before and after, on the held-out and on the calibration samples;
6. print the tables, write figures, ``results.json`` and the fitted,
   calibrated meso pipeline.

Sizes come from presets (``PRESETS``): ``"default"`` (≤ 15 min on a 2-core CPU),
``"quick"`` (≤ 3 min) and ``"tiny"`` (tests only; ``SKMLD_DEMO_TINY=1``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

logger = logging.getLogger("skmld.demo")

TINY_ENV = "SKMLD_DEMO_TINY"
MODELS = ("transfer", "from scratch", "persistence", "climatology")
HOT_THRESHOLDS = (700.0, 875.0, 1200.0)  # graded hotspot metrics; the paper's 875 K in the middle


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and training settings of one demo run."""

    n_micro: int
    n_meso_train: int
    n_meso_test: int
    micro_shape: tuple | None  # None: the preset's 64 x 96
    meso_shape: tuple | None  # None: the preset's 128 x 192
    n_steps: int | None  # snapshots per sample; None: the preset's 20
    filters: int
    dynamics_filters: int
    horizons: tuple
    vae_epochs: int
    decoupled_epochs: int
    coupled_epochs: int
    meso_epochs: int
    n_micro_test: int = 4
    n_meso_calibration: int = 4  # held-out meso samples the spread is calibrated on
    batch_size: int = 8
    learning_rate: float = 1e-3
    n_draws: int = 16
    hotspot_threshold: float = 875.0
    fast_graphs: bool = True  # skip TensorFlow's graph optimiser (see _configure_tensorflow)
    notes: dict = field(default_factory=dict)


PRESETS = {
    "default": DemoConfig(
        n_micro=32, n_meso_train=4, n_meso_test=4, micro_shape=None, meso_shape=None, n_steps=None,
        filters=8, dynamics_filters=8, horizons=(1, 2),
        vae_epochs=6, decoupled_epochs=2, coupled_epochs=2, meso_epochs=3,
    ),
    "quick": DemoConfig(
        n_micro=16, n_meso_train=2, n_meso_test=2, micro_shape=(32, 64), meso_shape=(64, 128), n_steps=12,
        filters=4, dynamics_filters=4, horizons=(1,),
        vae_epochs=4, decoupled_epochs=2, coupled_epochs=2, meso_epochs=2, n_meso_calibration=2,
    ),
    "tiny": DemoConfig(
        n_micro=4, n_meso_train=1, n_meso_test=1, micro_shape=(32, 32), meso_shape=(64, 64), n_steps=4,
        filters=2, dynamics_filters=2, horizons=(1,),
        # No decoupled stage: each training stage costs seconds of tracing, whatever the data size.
        vae_epochs=1, decoupled_epochs=0, coupled_epochs=1, meso_epochs=1, n_draws=2, n_micro_test=1,
        n_meso_calibration=1,
    ),
}


def resolve_config(quick: bool = False, tiny: bool | None = None, **overrides) -> tuple[str, DemoConfig]:
    """Pick the preset (``tiny`` beats ``quick``; ``SKMLD_DEMO_TINY=1`` means tiny) and apply overrides."""
    if tiny is None:
        tiny = os.environ.get(TINY_ENV, "").strip().lower() not in ("", "0", "false", "no")
    name = "tiny" if tiny else "quick" if quick else "default"
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return name, replace(PRESETS[name], **overrides)


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def _configure_tensorflow(fast_graphs: bool) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if not logger.isEnabledFor(logging.INFO):
        # Every training stage builds its own compiled step, which TensorFlow reports as
        # "retracing"; expected here, so only shown with --verbose.
        logging.getLogger("tensorflow").setLevel(logging.ERROR)

    if fast_graphs:
        # Grappler's graph rewrites cost seconds per traced training step and change
        # nothing beyond float rounding; the demo's small models spend much of their
        # time being traced, so skip them.
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("skmld", "tensorflow", "keras", "scikit-learn", "numpy", "xarray", "matplotlib", "joblib"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def _r2(truth: np.ndarray, pred: np.ndarray) -> float:
    """R² over everything after the first time step (axis 1), as the estimators' ``score``."""
    truth, pred = truth[:, 1:].astype(np.float64), pred[:, 1:].astype(np.float64)
    ss_res = np.sum((truth - pred) ** 2)
    ss_tot = np.sum((truth - truth.mean()) ** 2)
    return float(1.0 - ss_res / ss_tot) if ss_tot > 0 else float(ss_res == 0)


def _persistence(data):
    """The initial state repeated at every time step (same coords as ``data``)."""
    return data.isel(time=np.zeros(data.sizes["time"], dtype=int)).assign_coords(time=data["time"])


def _after_first(data):
    return data.isel(time=slice(1, None))


def _float(value) -> float:
    return float(np.asarray(value))


def _evaluate(name, truth, pred, std, threshold) -> dict:
    """All numbers of one model on the held-out data (physical units, times after the first)."""
    from skmld.metrics import coverage, field_rmse, hotspot_mask_scores, hotspot_rmse, r2_per_field

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


def _probabilistic(tokenizer, calibrated, data, tokens, draws) -> tuple[dict, dict]:
    """Coverage, spread–skill and CRPS of the transfer model's ensemble ``draws`` of ``data``, calibrated or not.

    Also the CRPS of a zero-spread prediction. Returns the per-field summary and
    the score Datasets (for the plots).
    """
    import xarray as xr

    from skmld.metrics import probabilistic_scores

    truth = _after_first(data)
    mean_t = calibrated.estimator_.predict(tokens)
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


# --------------------------------------------------------------------------- #
# the demo
# --------------------------------------------------------------------------- #
def run_demo(config: DemoConfig, out_dir, *, seed: int = 0, progress: bool = True, preset: str = "custom") -> dict:
    """Run the whole demo; write its files to ``out_dir`` and return the results dict."""
    started = time.perf_counter()
    _configure_tensorflow(config.fast_graphs)
    import joblib
    from sklearn.pipeline import Pipeline

    from skmld import (
        CalibratedDynamics,
        ClimatologyBaseline,
        MesoDynamicsEstimator,
        MicroDynamicsEstimator,
        PatchTokenizer,
        PersistenceBaseline,
    )
    from skmld.datasets import make_pore_collapse
    from skmld.plotting import plot_history, plot_hotspots, plot_reliability, plot_rollout, plot_spread_skill

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    verbose = int(progress)
    timings = {}

    # 1. data -------------------------------------------------------------------
    t0 = time.perf_counter()
    logger.info("simulating %d micro samples", config.n_micro)
    micro_X = make_pore_collapse("micro", config.n_micro, shape=config.micro_shape, n_steps=config.n_steps,
                                 random_state=seed, progress=progress)
    n_meso = config.n_meso_train + config.n_meso_test + config.n_meso_calibration
    logger.info("simulating %d meso samples (%d train, %d held out, %d to calibrate the spread)", n_meso,
                config.n_meso_train, config.n_meso_test, config.n_meso_calibration)
    meso_X = make_pore_collapse("meso", n_meso, shape=config.meso_shape, n_steps=config.n_steps,
                                random_state=seed + 1, progress=progress)
    micro_test = make_pore_collapse("micro", config.n_micro_test, shape=config.micro_shape, n_steps=config.n_steps,
                                    random_state=seed + 2)
    meso_train = meso_X.isel(sample=slice(0, config.n_meso_train))
    n_fit = config.n_meso_train + config.n_meso_test
    meso_test = meso_X.isel(sample=slice(config.n_meso_train, n_fit))
    meso_calibration = meso_X.isel(sample=slice(n_fit, None))
    timings["simulate"] = time.perf_counter() - t0

    # 2. micro -------------------------------------------------------------------
    common = dict(horizons=config.horizons, batch_size=config.batch_size, learning_rate=config.learning_rate,
                  on_divergence="restore", verbose=verbose, random_state=seed)
    micro = Pipeline([
        ("tokens", PatchTokenizer()),
        ("micro", MicroDynamicsEstimator(filters=config.filters, dynamics_filters=config.dynamics_filters,
                                         vae_epochs=config.vae_epochs, decoupled_epochs=config.decoupled_epochs,
                                         coupled_epochs=config.coupled_epochs, **common)),
    ])
    logger.info("fitting the micro pipeline: %s", micro)
    t0 = time.perf_counter()
    micro.fit(micro_X)
    timings["fit_micro"] = time.perf_counter() - t0
    micro_reconstruction = _micro_reconstruction(micro, micro_test)
    logger.info("micro fit in %.1f s; token shape %s", timings["fit_micro"], micro["tokens"].token_shape_)

    # 3. meso: transfer and from scratch, same tokens, data and meso epochs ------
    def meso_tokenizer():
        return PatchTokenizer(patch_size=micro["tokens"].token_shape_, ranges=micro["tokens"].ranges_)

    pipes = {
        "transfer": Pipeline([
            ("tokens", meso_tokenizer()),
            ("meso", MesoDynamicsEstimator(backbone=micro["micro"], epochs=config.meso_epochs, **common)),
        ]),
        "from scratch": Pipeline([
            ("tokens", meso_tokenizer()),
            ("meso", MesoDynamicsEstimator(backbone=None, filters=config.filters,
                                           dynamics_filters=config.dynamics_filters, epochs=config.meso_epochs,
                                           vae_epochs=config.vae_epochs, decoupled_epochs=config.decoupled_epochs,
                                           **common)),
        ]),
    }
    for name, pipe in pipes.items():
        logger.info("fitting the meso pipeline (%s)", name)
        t0 = time.perf_counter()
        pipe.fit(meso_train)
        timings[f"fit_meso_{name.replace(' ', '_')}"] = time.perf_counter() - t0

    # 4. evaluation on held-out meso samples, beside the baselines -------------------
    t0 = time.perf_counter()
    tokenizer = pipes["transfer"]["tokens"]
    baselines = {
        "persistence": Pipeline([("tokens", meso_tokenizer()), ("baseline", PersistenceBaseline())]),
        "climatology": Pipeline([("tokens", meso_tokenizer()), ("baseline", ClimatologyBaseline())]),
    }
    for pipe in baselines.values():
        pipe.fit(meso_train)
    metrics, predictions = {}, {}
    test_tokens = tokenizer.transform(meso_test)
    # One trajectory ensemble of the transfer model per sample set, shared by every spread
    # computed from it (uncalibrated, calibrated): the ensembles are the slow part.
    draws_test = pipes["transfer"]["meso"].predict_draws(test_tokens, n_draws=config.n_draws)
    for name, pipe in {**pipes, **baselines}.items():
        pred_tokens = pipe.predict(meso_test)
        std = None
        if name in pipes:
            draws = draws_test if name == "transfer" else pipe[-1].predict_draws(test_tokens, n_draws=config.n_draws)
            std = _physical_std(tokenizer, pred_tokens, draws.std("draw", ddof=1))
        pred = tokenizer.inverse_transform(pred_tokens)
        predictions[name] = (pred, std)
        if name == "transfer":
            transfer_tokens = pred_tokens  # converts the calibrated std below
        metrics[name] = _evaluate(name, meso_test, pred, std, config.hotspot_threshold)
        if name in pipes:  # the estimator's own score: the same mean of per-field R² on scaled tokens
            metrics[name]["score"] = float(pipe.score(meso_test))
    metrics["transfer"]["fit_time_s"] = timings["fit_meso_transfer"]
    metrics["from scratch"]["fit_time_s"] = timings["fit_meso_from_scratch"]
    timings["evaluate"] = time.perf_counter() - t0

    # 5. the spread calibrated on samples of its own, judged on the held-out ones -----
    t0 = time.perf_counter()
    calibrated = Pipeline([
        ("tokens", tokenizer),
        ("meso", CalibratedDynamics(pipes["transfer"]["meso"], cv="prefit", n_draws=config.n_draws)),
    ])
    calibration_tokens = tokenizer.transform(meso_calibration)
    calibrated["meso"].fit(calibration_tokens)
    est = pipes["transfer"]["meso"]
    ensembles = {"held_out": (meso_test, test_tokens, draws_test),
                 "calibration": (meso_calibration, calibration_tokens,
                                 est.predict_draws(calibration_tokens, n_draws=config.n_draws))}
    uncertainty, scores = {}, {}
    for set_name, (data, tokens, draws) in ensembles.items():
        uncertainty[set_name], scores[set_name] = _probabilistic(tokenizer, calibrated["meso"], data, tokens, draws)
    timings["calibrate"] = time.perf_counter() - t0
    pred, _ = predictions["transfer"]
    std_tokens = calibrated["meso"].calibrated_std(draws_test.std("draw", ddof=1))
    predictions["transfer"] = (pred, _physical_std(tokenizer, transfer_tokens, std_tokens))
    no_hotspot = _no_hotspot_rmse(meso_test, config.hotspot_threshold)

    # 5. figures and files ---------------------------------------------------------------
    t0 = time.perf_counter()
    files = {}
    pred, std = predictions["transfer"]
    files["rollout"] = "rollout.png"
    plot_rollout(meso_test, pred, std, sample=0, path=out_dir / files["rollout"])
    files["hotspots"] = "hotspots.png"
    fig = plot_hotspots(meso_test, pred, std, threshold=config.hotspot_threshold)
    _add_curves(fig, predictions["from scratch"][0], config.hotspot_threshold, "from scratch", "C2--^")
    _add_curves(fig, predictions["climatology"][0], config.hotspot_threshold, "climatology", "C3:s")
    fig.axes[0].lines[1].set_label("transfer")  # plot_hotspots' "prediction"
    for band in fig.axes[0].collections[:1]:
        band.set_label("transfer ± std")
    fig.axes[0].legend(fontsize=8)
    fig.savefig(out_dir / files["hotspots"], dpi=110, format="png")
    files["reliability"] = "reliability.png"
    plot_reliability(scores["held_out"]["calibrated"], path=out_dir / files["reliability"])
    files["reliability_uncalibrated"] = "reliability_uncalibrated.png"
    plot_reliability(scores["held_out"]["uncalibrated"], path=out_dir / files["reliability_uncalibrated"])
    files["spread_skill"] = "spread_skill.png"
    plot_spread_skill(scores["held_out"]["calibrated"], path=out_dir / files["spread_skill"])
    files["spread_skill_uncalibrated"] = "spread_skill_uncalibrated.png"
    plot_spread_skill(scores["held_out"]["uncalibrated"], path=out_dir / files["spread_skill_uncalibrated"])
    files["history_micro"] = "history_micro.png"
    plot_history(micro, path=out_dir / files["history_micro"])
    files["history_meso"] = "history_meso.png"
    plot_history(pipes["transfer"], path=out_dir / files["history_meso"])
    files["history_meso_scratch"] = "history_meso_scratch.png"
    plot_history(pipes["from scratch"], path=out_dir / files["history_meso_scratch"])

    files["pipeline_pickle"] = "meso_pipeline.pkl"
    joblib.dump(calibrated, out_dir / files["pipeline_pickle"])
    saved = _save_safe(calibrated, out_dir / "meso_pipeline.skmld")
    if saved:
        files["pipeline_skmld"] = "meso_pipeline.skmld"
    timings["write"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started

    results = {
        "command": "python -m skmld demo",
        "preset": preset,
        "seed": seed,
        "settings": _jsonable(asdict(config)),
        "data": {
            "micro": dict(micro_X.sizes),
            "micro_test": dict(micro_test.sizes),
            "meso_train": dict(meso_train.sizes),
            "meso_test": dict(meso_test.sizes),
            "micro_snapshot_interval_ns": float(micro_X.time[1] - micro_X.time[0]),
            "meso_snapshot_interval_ns": float(meso_X.time[1] - meso_X.time[0]),
            "token_shape": list(micro["tokens"].token_shape_),
            "meso_token_grid": list(tokenizer.grid_shape_),
            "ranges": {k: list(map(float, v)) for k, v in micro["tokens"].ranges_.items()},
        },
        "evaluation": {
            "on": f"{config.n_meso_test} held-out meso samples, time steps after the first",
            "hotspot_threshold_K": config.hotspot_threshold,
            "r2": "mean over fields of each field's R² (the estimators' score)",
            "climatology": f"mean of the {config.n_meso_train} meso training samples at each time and cell",
            "no_hotspot_rmse": no_hotspot,
            "micro_reconstruction_rmse_ratio": micro_reconstruction,
            "micro_reconstruction": (f"{config.n_micro_test} held-out micro samples: RMSE of the VAE's "
                                     "reconstruction over that of a constant field at the mean"),
        },
        "metrics": metrics,
        "uncertainty": {
            "on": {"held_out": f"the {config.n_meso_test} held-out meso samples",
                   "calibration": f"the {config.n_meso_calibration} meso samples the spread was calibrated on"},
            "model": "transfer: ensemble of n_draws latent trajectories, spread calibrated per field and lead time",
            **uncertainty,
        },
        "timings_s": timings,
        "history_lengths": {"micro": len(micro["micro"].history_),
                            **{k: len(p["meso"].history_) for k, p in pipes.items()}},
        "files": files,
        "versions": _versions(),
    }
    (out_dir / "results.json").write_text(json.dumps(_jsonable(results), indent=2, allow_nan=True) + "\n")
    files["results"] = "results.json"
    logger.info("wrote %s", ", ".join(files.values()))
    return results


def _add_curves(fig, pred, threshold, label, style) -> None:
    """Overlay another model's (sample-mean) hotspot curves on ``plot_hotspots``' figure."""
    from skmld.metrics import hotspot_metrics

    m = hotspot_metrics(pred, threshold=threshold).mean("sample")
    t = m["time"].values
    for ax, name in zip(fig.axes[:2], ("T_hs", "A_hs")):
        ax.plot(t, m[name].values, style, ms=3, label=label)


def _micro_reconstruction(micro, X) -> dict:
    """Per field, RMSE of the micro VAE's reconstruction of ``X`` (latent means decoded) over a constant's."""
    tokens, est = micro["tokens"], micro[-1]
    rec = tokens.inverse_transform(est.decode(est.encode(tokens.transform(X))))
    out = {}
    for f in X.data_vars:
        truth = X[f].values.astype(np.float64)
        out[str(f)] = float(np.sqrt(np.mean((rec[f].values - truth) ** 2)) / truth.std())
    return out


def _save_safe(pipe, path) -> bool:
    """Also write skmld's pickle-free format when ``skmld.persistence.save`` exists."""
    try:
        from skmld.persistence import save
    except ImportError:
        logger.info("skmld.persistence.save not available; only the pickle is written")
        return False
    try:
        save(pipe, path)
    except Exception as err:  # the demo's numbers are worth more than this one file
        logger.warning("skmld.persistence.save failed (%s: %s); only the pickle is written",
                       type(err).__name__, err)
        return False
    return True


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# --------------------------------------------------------------------------- #
# the table
# --------------------------------------------------------------------------- #
def format_table(results: dict) -> str:
    """Plain-text, aligned comparison of transfer, from scratch, persistence and climatology."""
    m = results["metrics"]
    tr = m["transfer"]

    def fmt(value) -> str:
        if value is None:
            return "-"
        if not math.isfinite(value):
            return str(value)
        a = abs(value)
        return f"{value:.3g}" if (a >= 1e4 or (a < 1e-2 and a != 0)) else f"{value:.3f}" if a < 10 else f"{value:.1f}"

    rows = []
    for f in tr["r2_per_field"]:
        rows.append((f"R² {f}", "-", [m[k]["r2_per_field"][f] for k in MODELS]))
    rows.append(("mean per-field R²", "-", [m[k]["r2"] for k in MODELS]))
    for f, unit in tr["field_rmse_units"].items():
        rows.append((f"RMSE {f}", unit, [m[k]["field_rmse"][f] for k in MODELS]))
    for th in tr["hot_mask"]:
        rows.append((f"hot-mask F1, T > {th} K", "-", [m[k]["hot_mask"][th]["f1"] for k in MODELS]))
    threshold = f"{results['evaluation']['hotspot_threshold_K']:g}"
    rows.append((f"hotspots per frame (true {tr['hot_mask'][threshold]['n_hotspots_true']:.2f})", "-",
                 [m[k]["hot_mask"][threshold]["n_hotspots_pred"] for k in MODELS]))
    rows.append(("RMSE excess heat", "K µm^2", [m[k]["hot_mask"][threshold]["excess_heat_rmse"] for k in MODELS]))
    labels = {"T_hs": "RMSE T_hs", "A_hs": "RMSE A_hs", "dT_hs_dt": "RMSE dT_hs/dt", "dA_hs_dt": "RMSE dA_hs/dt"}
    for key, label in labels.items():
        rows.append((label, tr["hotspot_rmse_units"][key], [m[k]["hotspot_rmse"][key] for k in MODELS]))
    for k in (1, 2):
        rows.append((f"coverage ±{k}σ (ideal {tr[f'coverage_{k}sigma_nominal']:.3f})", "-",
                     [m[name].get(f"coverage_{k}sigma") for name in MODELS]))
    rows.append(("meso fit time", "s", [m[k].get("fit_time_s") for k in MODELS]))

    header = ("metric", "unit", *MODELS)
    body = [(label, unit, *(fmt(v) for v in values)) for label, unit, values in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(r):
        return "  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1])]
                         + [c.rjust(w) for c, w in zip(r[2:], widths[2:])]).rstrip()

    d, ev = results["data"], results["evaluation"]
    t = results["timings_s"]
    test = d["meso_test"]
    title = (f"held-out meso samples: {test['sample']} x {test['time']} snapshots of {test['y']} x {test['x']}; "
             f"meso training samples: {d['meso_train']['sample']}; micro samples: {d['micro']['sample']}")
    rule = "-" * len(line(header))
    no_hs = ev["no_hotspot_rmse"]
    rec = ", ".join(f"{f} {v:.2f}" for f, v in ev["micro_reconstruction_rmse_ratio"].items())
    footer = [
        f"predicting no hotspot: RMSE T_hs {no_hs['T_hs']:.1f} K, A_hs {no_hs['A_hs']:.1f} µm^2; "
        f"micro VAE on {d['micro_test']['sample']} held-out micro samples, RMSE / constant's: {rec}",
        f"micro fit {t['fit_micro']:.0f} s, simulation {t['simulate']:.0f} s, total {t['total']:.0f} s "
        f"(preset {results['preset']!r}); errors over time steps after the first, physical units",
    ]
    return "\n".join([title, rule, line(header), rule, *map(line, body), rule, *footer])


def format_uncertainty_table(results: dict) -> str:
    """Per field: coverage, spread–skill ratio and CRPS of the transfer model's ensemble, before and after calibration."""
    u = results["uncertainty"]
    rows = []
    for set_name in ("held_out", "calibration"):
        for model in ("uncalibrated", "calibrated"):
            m = u[set_name][model]
            for f in m["crps"]:
                rows.append((set_name.replace("_", " "), model, f, m["coverage_1sigma"][f], m["coverage_2sigma"][f],
                             m["spread_skill"][f], m["crps"][f], u[set_name]["zero spread"]["crps"][f]))
    header = ("samples", "spread", "field", "cov ±1σ (0.683)", "cov ±2σ (0.954)", "spread/skill (1)", "CRPS",
              "CRPS zero spread")
    body = [(*r[:3], *(f"{v:.3g}" for v in r[3:])) for r in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(r):
        return "  ".join([c.ljust(w) for c, w in zip(r[:3], widths[:3])] + [c.rjust(w) for c, w in zip(r[3:], widths[3:])])

    rule = "-" * len(line(header))
    note = "CRPS in each field's physical units; calibration fitted on the 'calibration' samples only"
    return "\n".join([rule, line(header), rule, *map(line, body), rule, note])


def main(args) -> int:
    """Entry point of ``python -m skmld demo`` (``args`` from the CLI parser)."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    preset, config = resolve_config(
        quick=args.quick, tiny=True if args.tiny else None, n_micro=args.n_micro, n_meso_train=args.n_meso,
        n_meso_test=args.n_meso_test, hotspot_threshold=args.hotspot_threshold,
    )
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("skmld").setLevel(logging.INFO if args.verbose else logging.WARNING)
    logger.info("preset %r: %s", preset, config)
    with logging_redirect_tqdm(loggers=[logging.getLogger("skmld")]):
        results = run_demo(config, args.out, seed=args.seed, progress=not args.quiet, preset=preset)
    print(format_table(results))
    print()
    print(format_uncertainty_table(results))
    print(f"\nfigures, results.json and the fitted meso pipeline are in {Path(args.out).resolve()}")
    return 0
