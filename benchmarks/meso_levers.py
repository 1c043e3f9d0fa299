"""Meso-stage levers on one fitted micro backbone: per-field R² and hot-mask F1 of held-out meso rollouts.

Fits the demo's micro pipeline once (seed ``--seed``; pickled to ``--micro`` and reused when
that file exists), then the transfer pipeline with the demo's settings updated by ``--params``
(JSON of ``MesoDynamicsEstimator`` parameters) on the demo's 4 meso training samples, and scores
the demo's 4 held-out ones (meso seed ``--seed + 1``) as the demo does.

Run alone: ``python benchmarks/meso_levers.py --seed 11 --micro /tmp/micro11.pkl --tag NAME
--params '{"freeze": ["vae"]}'``; appends to ``benchmarks/results/meso_levers.json``.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import joblib  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402

from skmld import MesoDynamicsEstimator, MicroDynamicsEstimator, PatchTokenizer  # noqa: E402
from skmld._demo import PRESETS, configure_tensorflow  # noqa: E402
from skmld.datasets import make_pore_collapse  # noqa: E402
from skmld.metrics import hotspot_mask_scores, hotspot_rmse, r2_per_field  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "meso_levers.json"


def fit_micro(seed: int, path: Path):
    c = PRESETS["default"]
    X = make_pore_collapse("micro", c.n_micro, random_state=seed)
    micro = Pipeline([("tokens", PatchTokenizer()), ("micro", MicroDynamicsEstimator(
        filters=c.filters, dynamics_filters=c.dynamics_filters, vae_epochs=c.vae_epochs,
        decoupled_epochs=c.decoupled_epochs, coupled_epochs=c.coupled_epochs, horizons=c.horizons,
        batch_size=c.batch_size, learning_rate=c.learning_rate, on_divergence="restore", random_state=seed))])
    micro.fit(X)
    joblib.dump(micro, path)
    return micro


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--micro", type=Path, required=True, help="micro pipeline pickle (fitted here if missing)")
    ap.add_argument("--tag", required=True)
    ap.add_argument("--params", default="{}", help="JSON of MesoDynamicsEstimator parameters")
    args = ap.parse_args()
    c = PRESETS["default"]
    configure_tensorflow(True)
    micro = joblib.load(args.micro) if args.micro.exists() else fit_micro(args.seed, args.micro)
    params = json.loads(args.params)
    meso = make_pore_collapse("meso", c.n_meso_train + c.n_meso_test, random_state=args.seed + 1)
    train, test = meso.isel(sample=slice(0, c.n_meso_train)), meso.isel(sample=slice(c.n_meso_train, None))
    kw = dict(horizons=c.horizons, batch_size=c.batch_size, learning_rate=c.learning_rate,
              on_divergence="restore", random_state=args.seed, epochs=c.meso_epochs)
    kw.update({k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
    pipe = Pipeline([
        ("tokens", PatchTokenizer(patch_size=micro["tokens"].token_shape_, ranges=micro["tokens"].ranges_)),
        ("meso", MesoDynamicsEstimator(backbone=micro["micro"], **kw)),
    ])
    t0 = time.perf_counter()
    pipe.fit(train)
    fit_s = time.perf_counter() - t0
    truth = test.isel(time=slice(1, None))
    pred = pipe["tokens"].inverse_transform(pipe.predict(test)).isel(time=slice(1, None))
    r2 = r2_per_field(truth, pred)
    graded = hotspot_mask_scores(truth, pred, thresholds=(700.0, 875.0))
    hs = hotspot_rmse(truth, pred)
    cold = hotspot_rmse(truth, truth.assign(temperature=truth["temperature"].clip(max=875.0)))
    per = [d for d in truth["pressure"].dims if d != "time"]
    err = ((truth["pressure"] - pred["pressure"]) ** 2).mean(per)
    record = {
        "tag": args.tag, "seed": args.seed, "params": params, "fit_s": round(fit_s, 1),
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "r2_per_field": {str(f): round(float(r2.sel(field=f)), 3) for f in r2["field"].values},
        "mean_r2": round(float(r2.mean()), 3),
        "hot_f1": {f"{t:g}": round(float(v), 3) for t, v in zip(graded["threshold"].values, graded["f1"].values)},
        "T_hs_over_no_hotspot": round(float(hs["T_hs_overall"] / cold["T_hs_overall"]), 3),
        "A_hs_over_no_hotspot": round(float(hs["A_hs_overall"] / cold["A_hs_overall"]), 3),
        "pressure_r2_per_step": [round(float(v), 2) for v in (1 - err / truth["pressure"].var(per)).values],
    }
    print(json.dumps(record))
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps(old + [record], indent=1) + "\n")


if __name__ == "__main__":
    main()
