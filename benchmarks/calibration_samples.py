"""How many meso samples the spread calibration needs, and whether a Gaussian band can fit the errors.

Loads a demo's ``meso_pipeline.pkl`` (the transfer model inside its ``CalibratedDynamics``), simulates
``--n-samples`` new meso samples (seed ``--seed + 101``, which neither the demo nor the tests use) and
rolls each out once, as a 16-member trajectory ensemble. The first ``--n-eval`` samples are the
evaluation set; the rest are split into disjoint calibration sets of 1, 2, 4, 8, ... samples.

1. **Calibration set size.** For every calibration set, ``σ² ← a²σ² + b²`` is fitted per field and lead
   time exactly as ``CalibratedDynamics(method=...)`` fits it, then scored on the evaluation set and on
   each of its halves (the demo scores 4 held-out samples): coverage at ±1σ and ±2σ and spread/skill
   over the unpinned pixels of the lead times after the first. The spread of these figures over the
   calibration sets of one size is how far a calibration of that size carries to other samples.
2. **Tails.** For every field and lead time the unpinned pixels of all samples are split into ten bins
   of the calibrated σ; in each bin the ratio of the 95.45 % and 68.27 % quantiles of |error| is 2 for
   Gaussian errors. Where it is above 2 in every bin, no σ that depends on those bins covers 68.27 %
   at ±1σ and 95.45 % at ±2σ at once: a σ that makes ±1σ nominal (the bins' 68.27 % quantile) leaves
   ±2σ short, one that makes ±2σ nominal leaves ±1σ over. Both are reported, fitted on the
   calibration pool and scored on the evaluation set.

All figures are in the estimator's scaled units (coverage and spread/skill do not depend on the
scale). Run alone: ``python benchmarks/calibration_samples.py DEMO_DIR --seed 11``; appends to
``benchmarks/results/calibration_samples.json``.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import _common  # noqa: F401 (puts the checkout on sys.path)
import joblib
import numpy as np

from skmld import CalibratedDynamics
from skmld._demo import PRESETS, configure_tensorflow
from skmld.datasets import make_pore_collapse
from skmld.metrics._pinned import _nominal

RESULTS = Path(__file__).parent / "results" / "calibration_samples.json"
NOMINAL = {1: _nominal(1.0), 2: _nominal(2.0)}


def band_scores(residual, var, keep, fields):
    """Coverage at ±1σ, ±2σ and spread/skill per field, pooled over samples, lead times >= 1 and unpinned pixels."""
    out = {}
    for i, f in enumerate(fields):
        mask = keep[:, 1:, ..., i]
        r, v = residual[:, 1:, ..., i][mask], var[:, 1:, ..., i][mask]
        sd = np.sqrt(v)
        out[f] = {"coverage_1sigma": round(float(np.mean(np.abs(r) <= sd)), 3),
                  "coverage_2sigma": round(float(np.mean(np.abs(r) <= 2 * sd)), 3),
                  "spread_skill": round(float(np.sqrt(v.mean() / np.mean(r * r))), 3)}
    return out


def calibrated_var(cal, std):
    """``a²·σ² + b²`` of ``std`` in domain layout ``(S, T, Y, X, F)``, as ``cal.calibrated_std`` maps it."""
    a, b = (x[None, :, None, None, :] for x in cal._factors(std.shape[1]))
    return a * a * std * std + b * b


def tail_bins(residual, sigma, keep, n_bins=10):
    """Per lead time and σ-decile bin: (lead, edges, q68, q95) of |error|, from unpinned pixels."""
    out = []
    for t in range(1, residual.shape[1]):
        e, s = np.abs(residual[:, t][keep[:, t]]), sigma[:, t][keep[:, t]]
        if e.size < 10 * n_bins:
            continue
        edges = np.quantile(s, np.linspace(0, 1, n_bins + 1))
        edges[0], edges[-1] = -np.inf, np.inf
        b = np.clip(np.searchsorted(edges, s, "right") - 1, 0, n_bins - 1)
        q1 = np.array([np.quantile(e[b == k], NOMINAL[1]) if (b == k).any() else np.nan for k in range(n_bins)])
        q2 = np.array([np.quantile(e[b == k], NOMINAL[2]) if (b == k).any() else np.nan for k in range(n_bins)])
        out.append((t, edges, q1, q2))
    return out


def binned_band(bins, residual, sigma, keep, which):
    """Coverage at ±1σ, ±2σ of σ = the bin's 68.27 % quantile ("k1") or half its 95.45 % quantile ("k2")."""
    hit1, hit2 = [], []
    for t, edges, q1, q2 in bins:
        e, s = np.abs(residual[:, t][keep[:, t]]), sigma[:, t][keep[:, t]]
        b = np.clip(np.searchsorted(edges, s, "right") - 1, 0, len(q1) - 1)
        sd = q1[b] if which == "k1" else q2[b] / 2
        hit1.append(e <= sd)
        hit2.append(e <= 2 * sd)
    return round(float(np.mean(np.concatenate(hit1))), 3), round(float(np.mean(np.concatenate(hit2))), 3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("demo_dir", type=Path)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--n-samples", type=int, default=24)
    ap.add_argument("--n-eval", type=int, default=8)
    ap.add_argument("--method", default="likelihood")
    args = ap.parse_args()
    configure_tensorflow(True)
    c = PRESETS["default"]
    pipe = joblib.load(args.demo_dir / "meso_pipeline.pkl")
    tok, est = pipe["tokens"], pipe[-1].estimator_
    cal = CalibratedDynamics(est, cv="prefit", n_draws=c.n_draws, method=args.method)
    cal.estimator_ = est
    t0 = time.perf_counter()
    data = make_pore_collapse("meso", args.n_samples, random_state=args.seed + 101)
    residual, std, keep = cal._errors(est, tok.transform(data))
    rollout_s = time.perf_counter() - t0
    fields = [str(f) for f in est.fields_]
    ev, pool = np.arange(args.n_eval), np.arange(args.n_eval, args.n_samples)
    halves = np.array_split(ev, 2)

    record = {"seed": args.seed, "model": str(args.demo_dir), "method": args.method, "n_draws": c.n_draws,
              "n_eval": args.n_eval, "n_pool": int(pool.size), "rollout_s": round(rollout_s, 1),
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "sizes": {}}
    sizes = [n for n in (1, 2, 4, 8, 16, 32) if n <= pool.size]
    for n in sizes:
        runs = []
        for chunk in range(pool.size // n):
            idx = pool[chunk * n:(chunk + 1) * n]
            cal._fit_maps(residual[idx], std[idx], keep[idx])
            var = calibrated_var(cal, std)
            runs.append({"samples": idx.tolist(), "eval": band_scores(residual[ev], var[ev], keep[ev], fields),
                         "eval_halves": [band_scores(residual[h], var[h], keep[h], fields) for h in halves]})
        record["sizes"][str(n)] = runs
        for f in fields:
            line = [f"n={n:2d} {f:15s}"]
            for key in ("coverage_1sigma", "coverage_2sigma", "spread_skill"):
                vals = [r["eval"][f][key] for r in runs]
                line.append(f"{key} {np.mean(vals):.3f} [{min(vals):.3f}, {max(vals):.3f}]")
            print(" | ".join(line), flush=True)

    # Tails: σ bins of the calibration fitted on the whole pool.
    cal._fit_maps(residual[pool], std[pool], keep[pool])
    sigma = np.sqrt(calibrated_var(cal, std))
    record["tails"] = {}
    for i, f in enumerate(fields):
        r, s, k = residual[..., i], sigma[..., i], keep[..., i]
        bins = tail_bins(r[pool], s[pool], k[pool])
        ratios = np.concatenate([q2 / np.where(q1 > 0, q1, np.nan) for _, _, q1, q2 in bins])
        ratios = ratios[np.isfinite(ratios)]
        record["tails"][f] = {
            "q95_over_q68_median": round(float(np.median(ratios)), 2),
            "q95_over_q68_p10_p90": [round(float(np.quantile(ratios, q)), 2) for q in (0.1, 0.9)],
            "share_of_bins_at_most_2": round(float(np.mean(ratios <= 2)), 3),
            "sigma_for_1sigma_nominal": binned_band(bins, r[ev], s[ev], k[ev], "k1"),
            "sigma_for_2sigma_nominal": binned_band(bins, r[ev], s[ev], k[ev], "k2"),
        }
        print(f, json.dumps(record["tails"][f]), flush=True)
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps(old + [record], indent=1) + "\n")


if __name__ == "__main__":
    main()
