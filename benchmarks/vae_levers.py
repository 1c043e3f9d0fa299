"""VAE levers on held-out micro samples: reconstruction RMSE per field against a constant, hot-mask F1.

Run alone: ``python benchmarks/vae_levers.py --tag NAME [--vae-loss calibrated] [--kl-weight 1] ...``;
appends one JSON record per run to ``benchmarks/results/vae_levers.json``.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from skmld import MicroDynamicsEstimator, PatchTokenizer  # noqa: E402
from skmld.datasets import make_pore_collapse  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "vae_levers.json"


def cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def reconstruction_scores(est, tok, X, threshold=875.0):
    tokens = tok.transform(X)
    rec = tok.inverse_transform(est.decode(est.encode(tokens)))
    out = {}
    for f in X.data_vars:
        truth, pred = X[f].values.astype(np.float64), rec[f].values.astype(np.float64)
        rmse = float(np.sqrt(np.mean((truth - pred) ** 2)))
        out[f] = {"rmse": rmse, "ratio_to_constant": rmse / float(truth.std())}
    t, p = X["temperature"].values > threshold, rec["temperature"].values > threshold
    tp, fp, fn = int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum())
    out["hot_f1"] = 2 * tp / max(2 * tp + fp + fn, 1)
    out["pred_max_T"] = float(rec["temperature"].max())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tag", required=True)
    ap.add_argument("--n-micro", type=int, default=32)
    ap.add_argument("--n-test", type=int, default=6)
    ap.add_argument("--vae-epochs", type=int, default=6)
    ap.add_argument("--vae-loss", default="calibrated")
    ap.add_argument("--kl-weight", type=float, default=1.0)
    ap.add_argument("--edge-weight", type=float, default=1.0)
    ap.add_argument("--t-max", type=float, default=None, help="fixed temperature range (300, T_MAX)")
    ap.add_argument("--filters", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--precision", default="float32")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    X = make_pore_collapse("micro", args.n_micro, random_state=args.seed)
    X_test = make_pore_collapse("micro", args.n_test, random_state=1000 + args.seed)
    ranges = None if args.t_max is None else {"temperature": (300.0, args.t_max)}
    tok = PatchTokenizer(ranges=ranges).fit(X)
    est = MicroDynamicsEstimator(
        filters=args.filters, dynamics_filters=4, horizons=(1,), vae_epochs=args.vae_epochs,
        decoupled_epochs=0, coupled_epochs=0, batch_size=args.batch_size, learning_rate=args.lr,
        vae_loss=args.vae_loss, kl_weight=args.kl_weight, edge_weight=args.edge_weight,
        precision=args.precision, random_state=args.seed)
    t0 = time.perf_counter()
    est.fit(tok.transform(X))
    fit_s = time.perf_counter() - t0
    last = est.history_[-1]
    record = {"tag": args.tag, "args": vars(args), "fit_s": fit_s, "cpu": cpu(),
              "held_out": reconstruction_scores(est, tok, X_test),
              "train": reconstruction_scores(est, tok, X.isel(sample=slice(0, 6))),
              "last_epoch": {k: float(v) for k, v in last.items() if isinstance(v, float)},
              "mse_per_epoch": {f: [float(r[f"mse_{f}"]) for r in est.history_ if f"mse_{f}" in r]
                                for f in X.data_vars}}
    print(json.dumps(record, indent=1))
    RESULTS.parent.mkdir(exist_ok=True)
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps(old + [record], indent=1) + "\n")


if __name__ == "__main__":
    main()
