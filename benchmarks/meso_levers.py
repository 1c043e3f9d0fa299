"""Meso-stage levers on a fitted micro backbone: per-field R² and hot-mask F1 of held-out meso rollouts.

Loads the meso pipeline a demo run wrote (``meso_pipeline.pkl``; its backbone is the demo's
micro model), refits the meso stage with other settings on the demo's meso training samples
and scores the held-out ones, as the demo does.

Run alone: ``python benchmarks/meso_levers.py DEMO_DIR --seed 11 --tag NAME [--horizons 1 2 4]
[--epochs 3] [--freeze vae decoupled]``; appends to ``benchmarks/results/meso_levers.json``.
"""

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import joblib  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.base import clone  # noqa: E402

from skmld.datasets import make_pore_collapse  # noqa: E402
from skmld.metrics import hotspot_mask_scores, hotspot_rmse, r2_per_field  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "meso_levers.json"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("demo_dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--horizons", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--freeze", nargs="*", default=["vae", "decoupled"])
    ap.add_argument("--n-train", type=int, default=4)
    ap.add_argument("--n-test", type=int, default=4)
    args = ap.parse_args()

    pipe = clone(joblib.load(Path(args.demo_dir) / "meso_pipeline.pkl"))
    pipe.set_params(meso__horizons=tuple(args.horizons), meso__epochs=args.epochs, meso__freeze=tuple(args.freeze),
                    meso__verbose=0)
    meso = make_pore_collapse("meso", args.n_train + args.n_test, random_state=args.seed + 1)
    train, test = meso.isel(sample=slice(0, args.n_train)), meso.isel(sample=slice(args.n_train, None))
    t0 = time.perf_counter()
    pipe.fit(train)
    fit_s = time.perf_counter() - t0
    pred = pipe["tokens"].inverse_transform(pipe.predict(test)).isel(time=slice(1, None))
    truth = test.isel(time=slice(1, None))
    r2 = r2_per_field(truth, pred)
    graded = hotspot_mask_scores(truth, pred, thresholds=(700.0, 875.0))
    hs = hotspot_rmse(truth, pred)
    cold = hotspot_rmse(truth, truth.assign(temperature=truth["temperature"].clip(max=875.0)))
    record = {"tag": args.tag, "args": vars(args), "fit_s": fit_s,
              "r2_per_field": {str(f): float(r2.sel(field=f)) for f in r2["field"].values},
              "mean_r2": float(r2.mean()),
              "hot_f1": {f"{t:g}": float(v) for t, v in zip(graded["threshold"].values, graded["f1"].values)},
              "T_hs_over_no_hotspot": float(hs["T_hs_overall"] / cold["T_hs_overall"]),
              "A_hs_over_no_hotspot": float(hs["A_hs_overall"] / cold["A_hs_overall"])}
    print(json.dumps(record, indent=1))
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps(old + [record], indent=1) + "\n")


if __name__ == "__main__":
    main()
