"""``python -m skmld demo``: simulate, fit, evaluate, calibrate, write the files."""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from skmld._demo._config import (
    DemoConfig,
    resolve_config,
    tensorflow_settings,
    versions,
)
from skmld._demo._evaluate import (
    _evaluate,
    _micro_reconstruction,
    _no_hotspot_rmse,
    _physical_std,
    _probabilistic,
)
from skmld._demo._report import format_table, format_uncertainty_table
from skmld.persistence import save

logger = logging.getLogger("skmld.demo")


def run_demo(config: DemoConfig, out_dir, *, seed: int = 0, progress: bool = True, preset: str = "custom") -> dict:
    """Run the whole demo; write its files to ``out_dir`` and return the results dict.

    TensorFlow's settings (``config.fast_graphs``) change for the run only.
    """
    with tensorflow_settings(config.fast_graphs):
        return _run_demo(config, out_dir, seed=seed, progress=progress, preset=preset)


def _run_demo(config: DemoConfig, out_dir, *, seed: int, progress: bool, preset: str) -> dict:
    started = time.perf_counter()
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
    from skmld.plotting import (
        plot_history,
        plot_hotspots,
        plot_reliability,
        plot_rollout,
        plot_spread_skill,
    )

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
    # Each set's mean rollout and ensemble made once (the held-out ones above).
    ensembles = {"held_out": (meso_test, transfer_tokens, draws_test),
                 "calibration": (meso_calibration, est.predict(calibration_tokens),
                                 est.predict_draws(calibration_tokens, n_draws=config.n_draws))}
    uncertainty, scores = {}, {}
    for set_name, (data, mean_tokens, draws) in ensembles.items():
        uncertainty[set_name], scores[set_name] = _probabilistic(tokenizer, calibrated["meso"], data, mean_tokens,
                                                                 draws)
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
        "versions": versions(),
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


def _save_safe(pipe, path) -> bool:
    """Also write skmld's pickle-free format; a failure is logged, the demo's numbers are kept."""
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
