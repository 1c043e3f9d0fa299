"""The paper's claim on the embedded data: transfer from micro beats training meso from scratch.

Simulates ``make_pore_collapse("micro", n_micro)`` (seed ``--seed``) and
``n_test + max(n_meso)`` meso samples (seed ``--seed + 1``) once, as the demo
(``python -m skmld demo``) does. Fits the micro pipeline
``PatchTokenizer → MicroDynamicsEstimator``; then for each ``n_meso`` takes the
first ``n_meso`` meso samples as training data and fits, through a tokenizer
with the micro model's patch shape and ranges,

- ``transfer``: ``MesoDynamicsEstimator(backbone=micro)``;
- ``from scratch``: ``MesoDynamicsEstimator(backbone=None)``, same meso epochs;
- ``persistence``: :class:`skmld.PersistenceBaseline` (initial state repeated);
- ``climatology``: :class:`skmld.ClimatologyBaseline` (mean of the ``n_meso``
  training samples at each time and cell).

Every model is evaluated on the same held-out meso samples, the *last*
``n_test`` of the simulated ones, rolled out from their initial state, in
physical units over the time steps after the first:

- ``r2_per_field`` (:func:`skmld.metrics.r2_per_field`) and ``r2_mean``, their
  mean, the "mean per-field R²" (the estimators' ``score``, recorded as
  ``score``, is the same on scaled tokens; equal up to the token padding);
- ``field_rmse``: RMSE per field over samples, cells and times (K, GPa, -);
- ``hotspot_rmse``: RMSE of the hotspot temperature ``T_hs``, area ``A_hs`` and
  their rates at 875 K (:func:`skmld.metrics.hotspot_rmse`); as reference,
  ``evaluation.no_hotspot_rmse`` is the same for a prediction without any
  hotspot (the truth with temperature clipped at 875 K);
- ``hot_mask``: hot-mask F1, IoU, hotspot counts and excess-heat RMSE for
  T > 700, 875 and 1200 K (:func:`skmld.metrics.hotspot_mask_scores`);
- ``fit_seconds`` (and ``stage_seconds`` for the dynamics models).

Defaults are the demo's ``"default"`` preset (``skmld._demo.PRESETS``): 32 micro
samples on the default grid, filters 8, horizons 1 2, 6 VAE epochs, 2 dynamics
epochs, 3 meso epochs, batch 8, learning rate 1e-3, 4 held-out meso samples;
``--n-meso 2 4 8``. Run alone::

    python benchmarks/transfer.py [--n-micro 32] [--n-meso 2 4 8] [--n-test 4] ...

Writes ``benchmarks/results/transfer.json`` and ``docs/figures/transfer.png``
(``--name`` renames both; ``--out DIR`` puts both in ``DIR`` instead). The plot
shows mean per-field R², R² of temperature and of microstructure, and hot-mask
F1 at 875 K against ``n_meso``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from _common import DOCS, RESULTS, evaluate, machine, no_hotspot_rmse, stage_timer, units, write_json

from skmld._demo import HOT_THRESHOLDS, PRESETS

DEFAULT = PRESETS["default"]
THRESHOLD = DEFAULT.hotspot_threshold  # 875 K


def plot(payload: dict, path) -> None:
    from matplotlib.figure import Figure

    rows = payload["results"]
    n = [r["n_meso"] for r in rows]
    th = f"{THRESHOLD:g}"
    second = "microstructure" if "microstructure" in rows[0]["models"]["transfer"]["r2_per_field"] else "pressure"
    panels = [("mean per-field R²", lambda m: m["r2_mean"]),
              ("R² temperature", lambda m: m["r2_per_field"]["temperature"]),
              (f"R² {second}", lambda m: m["r2_per_field"][second]),
              (f"hot-mask F1, T > {th} K", lambda m: m["hot_mask"][th]["f1"])]
    styles = {"transfer": ("C0", "o-", "transfer (micro backbone)"), "from scratch": ("C2", "s--", "from scratch"),
              "climatology": ("C3", "^:", "climatology")}
    fig = Figure(figsize=(13, 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels))
    for ax, (title, get) in zip(axes, panels):
        for key, (color, style, label) in styles.items():
            ax.plot(n, [get(r["models"][key]) for r in rows], style, color=color, label=label)
        # persistence ignores the training data: one value, a horizontal line
        ax.axhline(get(rows[0]["models"]["persistence"]), color="gray", lw=1.2, ls="-.", label="persistence")
        ax.set_xlabel("meso training samples")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(n)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    s = payload["settings"]
    fig.suptitle(f"{s['n_test']} held-out meso samples; micro model on {s['n_micro']} samples; "
                 "physical units, times after the first", fontsize=10)
    fig.savefig(path, dpi=110)


def parse(argv=None):
    d = DEFAULT
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-micro", type=int, default=d.n_micro, help="micro training samples")
    p.add_argument("--n-meso", type=int, nargs="+", default=[2, 4, 8], help="meso training sample counts")
    p.add_argument("--n-test", type=int, default=d.n_meso_test, help="held-out meso samples")
    p.add_argument("--micro-shape", type=int, nargs=2, default=d.micro_shape, metavar=("Y", "X"),
                   help="micro grid (default: the dataset's 64 x 96)")
    p.add_argument("--meso-shape", type=int, nargs=2, default=d.meso_shape, metavar=("Y", "X"),
                   help="meso grid (default: the dataset's 128 x 192)")
    p.add_argument("--n-steps", type=int, default=d.n_steps, help="snapshots per sample (default: 20)")
    p.add_argument("--filters", type=int, default=d.filters)
    p.add_argument("--dynamics-filters", type=int, default=d.dynamics_filters)
    p.add_argument("--horizons", type=int, nargs="+", default=list(d.horizons))
    p.add_argument("--vae-epochs", type=int, default=d.vae_epochs)
    p.add_argument("--dynamics-epochs", type=int, default=d.coupled_epochs,
                   help="micro decoupled and coupled epochs per horizon; decoupled epochs of from scratch")
    p.add_argument("--meso-epochs", type=int, default=d.meso_epochs, help="meso-stage epochs per horizon, both models")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--seed", type=int, default=0, help="micro data and model seed; meso data seed + 1")
    p.add_argument("--grappler", action="store_true",
                   help="keep TensorFlow's graph optimiser (the demo disables it: faster tracing)")
    p.add_argument("--name", default="transfer", help="base name of the JSON and PNG")
    p.add_argument("--out", type=Path, default=None,
                   help="directory for both files (default: benchmarks/results and docs/figures)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("transfer")
    log.info("settings: %s", vars(args))
    started = time.perf_counter()

    from skmld._demo import configure_tensorflow

    configure_tensorflow(fast_graphs=not args.grappler)
    import tensorflow as tf  # noqa: F401  (recorded in machine())
    from sklearn.pipeline import Pipeline

    from skmld import (ClimatologyBaseline, MesoDynamicsEstimator, MicroDynamicsEstimator, PatchTokenizer,
                       PersistenceBaseline)
    from skmld.datasets import make_pore_collapse

    t0 = time.perf_counter()
    micro_X = make_pore_collapse("micro", args.n_micro, shape=args.micro_shape, n_steps=args.n_steps,
                                 random_state=args.seed)
    meso_all = make_pore_collapse("meso", max(args.n_meso) + args.n_test, shape=args.meso_shape,
                                  n_steps=args.n_steps, random_state=args.seed + 1)
    X_test = meso_all.isel(sample=slice(meso_all.sizes["sample"] - args.n_test, None))  # same for every n_meso
    simulate_seconds = time.perf_counter() - t0

    common = dict(horizons=tuple(args.horizons), learning_rate=args.learning_rate, batch_size=args.batch_size,
                  on_divergence="restore", random_state=args.seed, verbose=1)
    arch = dict(filters=args.filters, dynamics_filters=args.dynamics_filters)
    start = time.perf_counter()
    with stage_timer() as micro_stages:
        micro = Pipeline([("tokens", PatchTokenizer()), ("micro", MicroDynamicsEstimator(
            vae_epochs=args.vae_epochs, decoupled_epochs=args.dynamics_epochs, coupled_epochs=args.dynamics_epochs,
            **arch, **common))]).fit(micro_X)
    micro_seconds = time.perf_counter() - start

    def tokenizer():
        return PatchTokenizer(patch_size=micro["tokens"].token_shape_, ranges=micro["tokens"].ranges_)

    def models():
        return {
            "transfer": MesoDynamicsEstimator(backbone=micro["micro"], epochs=args.meso_epochs, **common),
            "from scratch": MesoDynamicsEstimator(backbone=None, epochs=args.meso_epochs, vae_epochs=args.vae_epochs,
                                                  decoupled_epochs=args.dynamics_epochs, **arch, **common),
            "persistence": PersistenceBaseline(),
            "climatology": ClimatologyBaseline(),
        }

    results = []
    for n in args.n_meso:
        X_train = meso_all.isel(sample=slice(0, n))
        row = {"n_meso": n, "models": {}}
        for key, model in models().items():
            pipe = Pipeline([("tokens", tokenizer()), ("model", model)])
            start = time.perf_counter()
            with stage_timer() as stages:
                pipe.fit(X_train)
            entry = {"fit_seconds": time.perf_counter() - start}
            if stages:
                entry["stage_seconds"] = dict(stages)
            pred = pipe["tokens"].inverse_transform(pipe.predict(X_test))
            entry.update(evaluate(X_test, pred, thresholds=HOT_THRESHOLDS, threshold=THRESHOLD))
            entry["score"] = float(pipe.score(X_test))
            row["models"][key] = entry
            log.info("n_meso=%d %-12s mean per-field R² %.3f %s, F1@%g K %.3f, fit %.0f s", n, key,
                     entry["r2_mean"], {f: round(v, 3) for f, v in entry["r2_per_field"].items()}, THRESHOLD,
                     entry["hot_mask"][f"{THRESHOLD:g}"]["f1"], entry["fit_seconds"])
        results.append(row)

    payload = {
        "command": "python benchmarks/transfer.py",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine(),
        "data": {
            "micro": dict(micro_X.sizes),
            "meso_train_max": dict(meso_all.isel(sample=slice(0, max(args.n_meso))).sizes),
            "meso_test": dict(X_test.sizes),
            "meso_test_samples": "the last n_test of the simulated meso samples; training ones from the front",
            "token_shape": list(micro["tokens"].token_shape_),
            "micro_seed": args.seed,
            "meso_seed": args.seed + 1,
        },
        "evaluation": {
            "on": f"{args.n_test} held-out meso samples, time steps after the first, physical units",
            "r2_mean": "mean over fields of each field's R² (score: the same on scaled tokens)",
            "hotspot_threshold_K": THRESHOLD,
            "hot_mask_thresholds_K": sorted({*HOT_THRESHOLDS, THRESHOLD}),
            "units": units(X_test, THRESHOLD),
            "no_hotspot_rmse": no_hotspot_rmse(X_test, THRESHOLD),
            "climatology": "mean of the n_meso training samples at each time and cell",
        },
        "micro": {"fit_seconds": micro_seconds, "stage_seconds": dict(micro_stages),
                  "final_losses": dict(micro["micro"].history_[-1])},
        "timings_s": {"simulate": simulate_seconds, "total": time.perf_counter() - started},
        "results": results,
    }
    path = write_json(args.name, payload, args.out if args.out is not None else RESULTS)
    figure = (args.out if args.out is not None else DOCS / "figures") / f"{args.name}.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    plot(payload, figure)
    log.info("wrote %s and %s", path, figure)
    return payload


if __name__ == "__main__":
    main()
