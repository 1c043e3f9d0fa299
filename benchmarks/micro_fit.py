"""Micro estimator: fit time per stage and 19-step rollout R² against persistence.

Simulates ``make_pore_collapse("micro", n_samples)``, fits
``Pipeline([PatchTokenizer(), MicroDynamicsEstimator(...)])`` on all but
``--n-test`` samples and scores the rollout from t = 0 over all remaining time
steps on the held-out ones, beside the persistence baseline (initial state
repeated). Defaults are the paper's network size; shrink with the options.

Run alone: ``python benchmarks/micro_fit.py [--filters 64] [--vae-epochs 10] ...``;
writes ``benchmarks/results/micro_fit.json`` (or ``--name``).
"""

from __future__ import annotations

import argparse
import logging
import time

from _common import machine, persistence_r2, stage_timer, write_json


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-samples", type=int, default=64)
    p.add_argument("--n-test", type=int, default=16)
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--dynamics-filters", type=int, default=64)
    p.add_argument("--horizons", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--vae-epochs", type=int, default=10)
    p.add_argument("--dynamics-epochs", type=int, default=3, help="decoupled and coupled epochs per horizon")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="micro_fit")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("micro_fit")
    log.info("settings: %s", vars(args))

    import tensorflow as tf  # noqa: F401  (recorded in machine())
    from sklearn.pipeline import Pipeline

    from skmld import MicroDynamicsEstimator, PatchTokenizer, as_fields
    from skmld.datasets import make_pore_collapse
    from skmld.metrics import field_rmse

    X = as_fields(make_pore_collapse("micro", args.n_samples, random_state=args.seed))
    X_train, X_test = X.isel(sample=slice(args.n_test, None)), X.isel(sample=slice(0, args.n_test))
    est = MicroDynamicsEstimator(
        filters=args.filters, dynamics_filters=args.dynamics_filters, horizons=tuple(args.horizons),
        vae_epochs=args.vae_epochs, decoupled_epochs=args.dynamics_epochs, coupled_epochs=args.dynamics_epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate, on_divergence="restore", verbose=1,
        random_state=args.seed)
    pipe = Pipeline([("tokens", PatchTokenizer()), ("micro", est)])
    start = time.perf_counter()
    with stage_timer() as stage_times:
        pipe.fit(X_train)
    fit_time = time.perf_counter() - start

    tokens = pipe["tokens"].transform(X_test)
    pred = pipe["tokens"].inverse_transform(pipe.predict(X_test))
    persistence = X_test.isel(time=[0] * X_test.sizes["time"]).assign_coords(time=X_test["time"])
    rmse = field_rmse(X_test, pred).isel(time=slice(1, None)).mean("time")
    rmse_p = field_rmse(X_test, persistence).isel(time=slice(1, None)).mean("time")
    result = {
        "settings": vars(args),
        "machine": machine(),
        "fit_seconds": fit_time,
        "stage_seconds": dict(stage_times),
        "rollout_steps": X_test.sizes["time"] - 1,
        "r2": pipe.score(X_test),
        "r2_persistence": persistence_r2(tokens),
        "field_rmse": {str(f): float(v) for f, v in zip(rmse["field"].values, rmse.values)},
        "field_rmse_persistence": {str(f): float(v) for f, v in zip(rmse_p["field"].values, rmse_p.values)},
        "final_losses": {k: v for k, v in est.history_[-1].items()},
    }
    result["beats_persistence"] = result["r2"] > result["r2_persistence"]
    path = write_json(args.name, result)
    log.info("R² %.3f vs persistence %.3f; fit %.0f s %s -> %s", result["r2"], result["r2_persistence"], fit_time,
             {k: round(v) for k, v in stage_times.items()}, path)
    return result


if __name__ == "__main__":
    main()
