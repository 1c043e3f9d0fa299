"""Micro estimator: fit time per stage, VAE reconstruction and rollout skill against the baselines.

Fits ``Pipeline([PatchTokenizer(), MicroDynamicsEstimator(...)])`` on
``make_pore_collapse("micro", n_micro)`` (seed ``--seed``) and evaluates it on
``--n-test`` held-out micro samples simulated with another seed (``--seed + 2``,
the demo's micro test seed), beside :class:`skmld.PersistenceBaseline` (initial
state repeated) and :class:`skmld.ClimatologyBaseline` (mean of the training
samples at each time and cell), both fitted through the same tokenizer on the
training samples. Measured, per model, in physical units over the rollout from
t = 0, time steps after the first:

- ``r2_per_field`` (:func:`skmld.metrics.r2_per_field`) and ``r2_mean``, their
  mean (the estimators' ``score``, recorded as ``score``, is the same on scaled
  tokens; equal up to the token padding);
- ``field_rmse`` per field, ``hotspot_rmse`` (T_hs, A_hs and rates at 875 K);
- ``hot_mask``: hot-mask F1 (and IoU, counts, excess heat) for T > 700, 875
  and 1200 K (:func:`skmld.metrics.hotspot_mask_scores`);

and, for the model only, ``vae_reconstruction_ratio``: per field, the RMSE of
``decode(encode(X))`` (latent means, every time step) on the held-out samples
over that field's standard deviation, in physical units (1: no better than a
constant at the mean); plus fit time per training stage and the final losses.

Defaults are the demo's micro settings (``skmld._demo.PRESETS["default"]``): 32
samples on the default grid, filters 8, horizons 1 2, 6 VAE epochs, 2 decoupled
and 2 coupled epochs per horizon, batch 8, learning rate 1e-3; 8 held-out
samples. Run alone::

    python benchmarks/micro_fit.py [--filters 16] [--vae-epochs 10] ... [--name micro_fit_f16]

Writes ``benchmarks/results/micro_fit.json`` (``--name`` renames it, ``--out DIR``
puts it in ``DIR``).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from _common import RESULTS, evaluate, machine, stage_timer, units, write_json

from skmld._demo import HOT_THRESHOLDS, PRESETS, _micro_reconstruction

DEFAULT = PRESETS["default"]
THRESHOLD = DEFAULT.hotspot_threshold  # 875 K


def parse(argv=None):
    d = DEFAULT
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-micro", "--n-samples", dest="n_micro", type=int, default=d.n_micro,
                   help="training samples")
    p.add_argument("--n-test", type=int, default=8, help="held-out samples (seed + 2)")
    p.add_argument("--shape", type=int, nargs=2, default=d.micro_shape, metavar=("Y", "X"),
                   help="grid (default: the dataset's 64 x 96)")
    p.add_argument("--n-steps", type=int, default=d.n_steps, help="snapshots per sample (default: 20)")
    p.add_argument("--filters", type=int, default=d.filters)
    p.add_argument("--dynamics-filters", type=int, default=d.dynamics_filters)
    p.add_argument("--horizons", type=int, nargs="+", default=list(d.horizons))
    p.add_argument("--vae-epochs", type=int, default=d.vae_epochs)
    p.add_argument("--dynamics-epochs", type=int, default=d.coupled_epochs,
                   help="decoupled and coupled epochs per horizon")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--seed", type=int, default=0, help="training data and model seed; held-out data seed + 2")
    p.add_argument("--grappler", action="store_true",
                   help="keep TensorFlow's graph optimiser (the demo disables it: faster tracing)")
    p.add_argument("--name", default="micro_fit", help="base name of the JSON")
    p.add_argument("--out", type=Path, default=None, help="directory of the JSON (default: benchmarks/results)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("micro_fit")
    log.info("settings: %s", vars(args))

    from skmld._demo import configure_tensorflow

    configure_tensorflow(fast_graphs=not args.grappler)
    import tensorflow as tf  # noqa: F401  (recorded in machine())
    from sklearn.pipeline import Pipeline

    from skmld import ClimatologyBaseline, MicroDynamicsEstimator, PatchTokenizer, PersistenceBaseline
    from skmld.datasets import make_pore_collapse

    data = dict(shape=args.shape, n_steps=args.n_steps)
    X_train = make_pore_collapse("micro", args.n_micro, random_state=args.seed, **data)
    X_test = make_pore_collapse("micro", args.n_test, random_state=args.seed + 2, **data)
    est = MicroDynamicsEstimator(
        filters=args.filters, dynamics_filters=args.dynamics_filters, horizons=tuple(args.horizons),
        vae_epochs=args.vae_epochs, decoupled_epochs=args.dynamics_epochs, coupled_epochs=args.dynamics_epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate, on_divergence="restore", verbose=1,
        random_state=args.seed)
    models = {"model": est, "persistence": PersistenceBaseline(), "climatology": ClimatologyBaseline()}

    metrics, pipes = {}, {}
    for key, model in models.items():
        pipe = pipes[key] = Pipeline([("tokens", PatchTokenizer()), ("model", model)])
        start = time.perf_counter()
        with stage_timer() as stages:
            pipe.fit(X_train)
        entry = {"fit_seconds": time.perf_counter() - start}
        if stages:
            entry["stage_seconds"] = dict(stages)
        pred = pipe["tokens"].inverse_transform(pipe.predict(X_test))
        entry.update(evaluate(X_test, pred, thresholds=HOT_THRESHOLDS, threshold=THRESHOLD))
        entry["score"] = float(pipe.score(X_test))
        metrics[key] = entry
    metrics["model"]["vae_reconstruction_ratio"] = _micro_reconstruction(pipes["model"], X_test)
    metrics["model"]["final_losses"] = dict(est.history_[-1])

    th = f"{THRESHOLD:g}"
    result = {
        "command": "python benchmarks/micro_fit.py",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine(),
        "data": {"train": dict(X_train.sizes), "test": dict(X_test.sizes), "train_seed": args.seed,
                 "test_seed": args.seed + 2, "token_shape": list(pipes["model"]["tokens"].token_shape_)},
        "evaluation": {
            "on": f"{args.n_test} held-out micro samples, rollout from t = 0, time steps after the first, "
                  "physical units",
            "r2_mean": "mean over fields of each field's R² (score: the same on scaled tokens)",
            "vae_reconstruction_ratio": "RMSE of decode(encode(X)) over the field's std, held-out samples",
            "hotspot_threshold_K": THRESHOLD,
            "hot_mask_thresholds_K": sorted({*HOT_THRESHOLDS, THRESHOLD}),
            "units": units(X_test, THRESHOLD),
        },
        "rollout_steps": X_test.sizes["time"] - 1,
        "metrics": metrics,
        "beats_baselines": all(metrics["model"]["r2_mean"] > metrics[k]["r2_mean"]
                               for k in ("persistence", "climatology")),
    }
    path = write_json(args.name, result, args.out if args.out is not None else RESULTS)
    for key, m in metrics.items():
        log.info("%-11s mean per-field R² %.3f %s, F1@%s K %.3f", key, m["r2_mean"],
                 {f: round(v, 3) for f, v in m["r2_per_field"].items()}, th, m["hot_mask"][th]["f1"])
    log.info("VAE reconstruction RMSE / std: %s; fit %.0f s %s -> %s",
             {f: round(v, 3) for f, v in metrics["model"]["vae_reconstruction_ratio"].items()},
             metrics["model"]["fit_seconds"], {k: round(v) for k, v in metrics["model"]["stage_seconds"].items()},
             path)
    return result


if __name__ == "__main__":
    main()
