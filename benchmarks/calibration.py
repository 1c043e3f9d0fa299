"""Calibration of the transfer model's spread: how each fitting method holds on other samples.

Loads a demo's ``meso_pipeline.pkl`` (its ``meso`` step is a ``CalibratedDynamics`` around the fitted
transfer model), re-simulates the demo's meso samples (seed ``--seed + 1``: 4 training, 4 held out,
4 for calibration) and, for each method, fits the calibration on one set and scores both sets:
coverage at ±1σ and ±2σ, spread–skill ratio and fair ensemble CRPS per field, against the
uncalibrated ensemble and a zero-spread prediction. Both directions are run (fit on the calibration
samples, then on the held-out ones).

Run alone: ``python benchmarks/calibration.py DEMO_DIR --seed 11``;
appends to ``benchmarks/results/calibration.json``.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import joblib  # noqa: E402
import xarray as xr  # noqa: E402

from skmld import CalibratedDynamics  # noqa: E402
from skmld._demo import PRESETS, configure_tensorflow, _physical_std  # noqa: E402
from skmld.datasets import make_pore_collapse  # noqa: E402
from skmld.metrics import probabilistic_scores  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "calibration.json"


def summary(ds) -> dict:
    fields = [str(f) for f in ds["field"].values]
    return {f: {"coverage_1sigma": round(float(ds["coverage_overall"].sel(field=f, k=1.0)), 3),
                "coverage_2sigma": round(float(ds["coverage_overall"].sel(field=f, k=2.0)), 3),
                "spread_skill": round(float(ds["spread_skill_overall"].sel(field=f)), 3),
                "crps": float(ds["crps_overall"].sel(field=f))} for f in fields}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("demo_dir", type=Path)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--methods", nargs="+", default=["likelihood", "crps"])
    args = ap.parse_args()
    configure_tensorflow(True)
    c = PRESETS["default"]
    pipe = joblib.load(args.demo_dir / "meso_pipeline.pkl")
    tok, est = pipe["tokens"], pipe[-1].estimator_
    n_fit = c.n_meso_train + c.n_meso_test
    meso = make_pore_collapse("meso", n_fit + c.n_meso_calibration, random_state=args.seed + 1)
    sets = {"held_out": meso.isel(sample=slice(c.n_meso_train, n_fit)), "calibration": meso.isel(sample=slice(n_fit, None))}

    # One ensemble per set, shared by every calibration (each applies its map to the same members).
    rollouts = {}
    for name, data in sets.items():
        tokens = tok.transform(data)
        mean_t = est.predict(tokens)
        draws_t = est.predict_draws(tokens, n_draws=c.n_draws)
        rollouts[name] = (tokens, mean_t, draws_t)

    def physical(tokens_like):
        return tok.inverse_transform(tokens_like).isel(time=slice(1, None))

    def scores(name, std_t, draws_t):
        _, mean_t, _ = rollouts[name]
        truth = sets[name].isel(time=slice(1, None))
        std = _physical_std(tok, mean_t, std_t).isel(time=slice(1, None))
        draws = xr.concat([physical(draws_t.isel(draw=d)) for d in range(draws_t.sizes["draw"])], "draw")
        return summary(probabilistic_scores(truth, physical(mean_t), std, draws=draws))

    record = {"seed": args.seed, "model": str(args.demo_dir), "n_draws": c.n_draws, "cpu": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "uncalibrated": {}, "zero_spread": {}, "calibrated": []}
    for name, (tokens, mean_t, draws_t) in rollouts.items():
        record["uncalibrated"][name] = scores(name, draws_t.std("draw", ddof=1), draws_t)
        truth = sets[name].isel(time=slice(1, None))
        zero = probabilistic_scores(truth, physical(mean_t), xr.zeros_like(physical(mean_t)))
        record["zero_spread"][name] = {f: float(zero["crps_overall"].sel(field=f)) for f in map(str, zero["field"].values)}
    for method in args.methods:
        for fitted_on in sets:
            t0 = time.perf_counter()
            cal = CalibratedDynamics(est, cv="prefit", n_draws=c.n_draws, method=method).fit(rollouts[fitted_on][0])
            fit_s = time.perf_counter() - t0
            entry = {"method": method, "fitted_on": fitted_on, "fit_s": round(fit_s, 1),
                     "scale": cal.scale_.round(3).tolist(), "offset": cal.offset_.round(5).tolist()}
            for name, (tokens, mean_t, draws_t) in rollouts.items():
                std_t = cal.calibrated_std(draws_t.std("draw", ddof=1))
                entry[name] = scores(name, std_t, cal.calibrated_draws(draws_t, mean_t, random_state=0))
            record["calibrated"].append(entry)
            print(json.dumps({k: entry[k] for k in ("method", "fitted_on", "held_out", "calibration")}))
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps(old + [record], indent=1) + "\n")
    print(json.dumps({k: record[k] for k in ("uncalibrated", "zero_spread")}))


if __name__ == "__main__":
    main()
