"""The paper's claim on the embedded data: transfer from micro beats training meso from scratch.

Fits a micro pipeline on ``make_pore_collapse("micro", n_micro)``; then for each
``n_meso`` training meso samples fits (a) ``MesoDynamicsEstimator(backbone=micro)``
and (b) ``MesoDynamicsEstimator(backbone=None)`` with the same meso-stage epochs,
and evaluates both on held-out meso samples: rollout R² (scaled), field RMSE per
field and hotspot-metric RMSEs (physical units), fit times.

Run alone: ``python benchmarks/transfer.py [--n-micro 128] [--n-meso 2 4 8] ...``;
writes ``benchmarks/results/transfer.json`` and ``docs/figures/transfer.png``.
"""

from __future__ import annotations

import argparse
import logging
import time

from _common import DOCS, machine, persistence_r2, write_json


def evaluate(pipe, X_test) -> dict:
    from skmld.metrics import field_rmse, hotspot_rmse

    pred = pipe["tokens"].inverse_transform(pipe.predict(X_test))
    rmse = field_rmse(X_test, pred).isel(time=slice(1, None)).mean("time")
    hs = hotspot_rmse(X_test.isel(time=slice(1, None)), pred.isel(time=slice(1, None)))
    return {
        "r2": pipe.score(X_test),
        "field_rmse": {str(f): float(v) for f, v in zip(rmse["field"].values, rmse.values)},
        "hotspot_rmse": {k: float(hs[k]) for k in hs.data_vars if k.endswith("_overall")},
    }


def plot(results: list, path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.2), layout="constrained")
    axes = fig.subplots(1, 3)
    n = [r["n_meso"] for r in results]
    panels = [("R² (scaled)", lambda e: e["r2"]),
              ("RMSE temperature [K]", lambda e: e["field_rmse"]["temperature"]),
              ("RMSE pressure [GPa]", lambda e: e["field_rmse"]["pressure"])]
    for ax, (title, get) in zip(axes, panels):
        for key, label, style in (("transfer", "transfer (micro backbone)", "o-"), ("scratch", "from scratch", "s--")):
            ax.plot(n, [get(r[key]) for r in results], style, label=label)
        ax.set_xlabel("meso training samples")
        ax.set_title(title)
        ax.set_xticks(n)
    axes[0].axhline(results[0]["persistence_r2"], color="gray", lw=1, ls=":", label="persistence")
    axes[0].legend(fontsize=8)
    fig.savefig(path, dpi=110)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-micro", type=int, default=128)
    p.add_argument("--n-meso", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--n-test", type=int, default=8)
    p.add_argument("--filters", type=int, default=8)
    p.add_argument("--horizons", type=int, nargs="+", default=[1, 2])
    p.add_argument("--vae-epochs", type=int, default=6)
    p.add_argument("--dynamics-epochs", type=int, default=2, help="micro decoupled/coupled epochs per horizon")
    p.add_argument("--meso-epochs", type=int, default=3, help="meso-stage epochs per horizon, both models")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("transfer")
    log.info("settings: %s", vars(args))

    import tensorflow as tf  # noqa: F401
    from sklearn.pipeline import Pipeline

    from skmld import MesoDynamicsEstimator, MicroDynamicsEstimator, PatchTokenizer
    from skmld.datasets import make_pore_collapse

    common = dict(horizons=tuple(args.horizons), learning_rate=args.learning_rate, batch_size=args.batch_size,
                  on_divergence="restore", random_state=args.seed, verbose=1)
    arch = dict(filters=args.filters, dynamics_filters=args.filters)
    micro_X = make_pore_collapse("micro", args.n_micro, random_state=args.seed)
    meso_all = make_pore_collapse("meso", max(args.n_meso) + args.n_test, random_state=args.seed + 1)
    X_test = meso_all.isel(sample=slice(0, args.n_test))

    start = time.perf_counter()
    micro = Pipeline([("tokens", PatchTokenizer()), ("micro", MicroDynamicsEstimator(
        vae_epochs=args.vae_epochs, decoupled_epochs=args.dynamics_epochs, coupled_epochs=args.dynamics_epochs,
        **arch, **common))]).fit(micro_X)
    micro_seconds = time.perf_counter() - start

    def tokenizer():
        return PatchTokenizer(patch_size=micro["tokens"].token_shape_, ranges=micro["tokens"].ranges_)

    results = []
    for n in args.n_meso:
        X_train = meso_all.isel(sample=slice(args.n_test, args.n_test + n))
        row = {"n_meso": n, "persistence_r2": persistence_r2(tokenizer().fit_transform(X_test))}
        for key, backbone, extra in (
            ("transfer", micro["micro"], {}),
            ("scratch", None, dict(vae_epochs=args.vae_epochs, decoupled_epochs=args.dynamics_epochs, **arch)),
        ):
            start = time.perf_counter()
            pipe = Pipeline([("tokens", tokenizer()), ("meso", MesoDynamicsEstimator(
                backbone, epochs=args.meso_epochs, **extra, **common))]).fit(X_train)
            row[key] = {"fit_seconds": time.perf_counter() - start, **evaluate(pipe, X_test)}
            log.info("n_meso=%d %s: %s", n, key, row[key])
        results.append(row)

    payload = {"settings": vars(args), "machine": machine(), "micro_fit_seconds": micro_seconds, "results": results}
    path = write_json("transfer", payload)
    (DOCS / "figures").mkdir(exist_ok=True)
    plot(results, DOCS / "figures" / "transfer.png")
    log.info("wrote %s and docs/figures/transfer.png", path)
    return payload


if __name__ == "__main__":
    main()
