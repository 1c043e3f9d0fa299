"""Rollout benchmark: 19-step micro and 37-step meso rollouts, and the bf16 prediction difference.

For each scale, batch (1, 8), with and without ``return_std`` (16 draws),
precision (float32, mixed_bfloat16) and compilation (graph; XLA with
``--compile graph xla``): time per rollout, useful FLOPs (encode
the initial frame, step, decode the mean and every draw at every step),
executed FLOPs (from the traced graph), their ratio, and useful GFLOP/s as a
fraction of the matmul rates timed in the same process.

A full paper-size rollout can take many minutes on a small CPU (a meso
rollout with 16 draws at batch 8 decodes 5 168 fields of 320 × 480 per
field). Its work is the same per step, so each configuration is timed on its
first ``steps_run`` steps (and, if even that is too much, with ``draws_run``
< 16 draws, then at a smaller batch ``batch_run``) such that one call does at
most ``--cap`` useful GFLOP; the full rollout's time is extrapolated at the
measured rate (``full_s_extrapolated``).

Also: the field RMSE between float32 and mixed_bfloat16 predictions of the
same networks (weights copied) on ``make_pore_collapse`` data.

Run alone: ``python benchmarks/perf/bench_rollout.py [--quick]``; writes
``benchmarks/results/perf[_quick]/rollout.json``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import time

import _harness as H


def _truncate(cnt, r, n_steps, n_draws, batch, cap):
    """Steps, draws and batch of a timed call of at most ``cap`` useful FLOPs (as close to the real one as can be)."""
    steps, draws = n_steps, n_draws
    while steps > 0 and cnt.rollout(r, steps, draws, batch)["total"] > cap:
        steps -= 1
    while draws > 2 and cnt.rollout(r, steps, draws, batch)["total"] > cap:
        draws -= 1
    while batch > 1 and cnt.rollout(r, steps, draws, batch)["total"] > cap:
        batch -= 1
    return steps, draws, batch


def pore_collapse_tokens(shape, n_samples: int, n_steps: int, seed: int = 0):
    """``make_pore_collapse("micro")`` at ``shape``, each field min–max scaled: ``(N, T, H, W, F)`` float32."""
    import numpy as np

    from skmld import as_fields
    from skmld.datasets import make_pore_collapse

    da = as_fields(make_pore_collapse("micro", n_samples, shape=shape, n_steps=n_steps, random_state=seed))
    x = np.asarray(da.transpose("sample", "time", "y", "x", "field").values, np.float32)
    lo, hi = x.min(axis=(0, 1, 2, 3)), x.max(axis=(0, 1, 2, 3))
    return (x - lo) / np.where(hi > lo, hi - lo, 1)


def bf16_difference(quick: bool) -> dict:
    """Field RMSE between float32 and mixed_bfloat16 rollouts of the same *trained* networks.

    A small micro model (filters 16, or 4 with ``quick``) is fitted in float32
    on ``make_pore_collapse`` data; its weights are copied into networks built
    with the bfloat16 policy and both roll out from the held-out samples' first
    frames over the whole trajectory.
    """
    import numpy as np

    filters = 4 if quick else 16
    shape = (32, 64) if quick else (64, 96)
    x = pore_collapse_tokens(shape, 6 if quick else 20, 20)
    train, test = x[:-2], x[-2:]
    t0 = time.perf_counter()
    nets32 = H.fit_small_model(train, filters=filters, vae_epochs=2 if quick else 4, dynamics_epochs=1)
    fit_s = time.perf_counter() - t0
    s = {"filters": filters, "dynamics_filters": filters, "latent_channels": 4}
    nets16 = H.build_nets(s, "mixed_bfloat16")
    H.copy_weights(nets32, nets16)
    n_steps = test.shape[1] - 1
    preds = {p: H.make_rollout(n, 1)[0](test[:, 0], n_steps, 0)[0].astype(np.float64)
             for p, n in (("float32", nets32), ("mixed_bfloat16", nets16))}
    a, b = preds["float32"], preds["mixed_bfloat16"]
    rmse = np.sqrt(np.mean((a - b) ** 2, axis=(0, 1, 2, 3)))
    rmse_truth = np.sqrt(np.mean((a[:, 1:] - test[:, 1:]) ** 2, axis=(0, 1, 2, 3)))
    return {"data": f"make_pore_collapse('micro', shape={shape}, 20 steps), fields min-max scaled to [0, 1]; "
                    f"{len(train)} training and {len(test)} test samples",
            "model": f"MicroDynamicsEstimator(filters={filters}, dynamics_filters={filters}) fitted in float32 "
                     f"({fit_s:.0f} s); weights copied into mixed_bfloat16 networks",
            "n_steps": n_steps, "fields": list(H.FIELDS),
            "rmse_fp32_vs_bf16": rmse.tolist(), "rmse_fp32_vs_truth": rmse_truth.tolist(),
            "max_abs_diff": float(np.abs(a - b).max()), "loadavg": H.os.getloadavg()}


def run(quick: bool, scales, batches, draws_opts, precisions, cap: float, budget: float,
        compiles=("graph",), difference: bool = True) -> dict:
    import numpy as np

    s = H.sizes(quick)
    draws_opts = draws_opts or [0, s["draws"]]
    log = logging.getLogger("bench_rollout")
    rates = H.rates(quick)
    log.info("rates: %s", {k: round(v) for k, v in rates.items() if k.endswith("gflops")})
    nets = {p: H.build_nets(s, p) for p in precisions}
    for p in precisions[1:]:
        H.copy_weights(nets[precisions[0]], nets[p])
    rows = []
    for scale in scales:
        shape = s[scale]
        r, n_steps = (2, s["meso_steps"]) if scale == "meso" else (1, s["micro_steps"])
        cnt = H.Counter(nets[precisions[0]], shape)
        for batch in batches:
            for n_draws in draws_opts:
                steps_run, draws_run, batch_run = _truncate(cnt, r, n_steps, n_draws, batch, cap * H.GIGA)
                x0 = np.random.default_rng(0).random((batch_run, *shape, len(H.FIELDS)), dtype=np.float32)
                useful = cnt.rollout(r, steps_run, draws_run, batch_run)
                full = cnt.rollout(r, n_steps, n_draws, batch)
                ex = None
                for precision in precisions:
                    for mode in compiles:
                        fn, concrete = H.make_rollout(nets[precision], r, jit=mode == "xla")
                        if ex is None:
                            t0 = time.perf_counter()
                            ex = H.executed(concrete(x0.shape, steps_run, draws_run),
                                            trips=(steps_run + 1, draws_run), if_fraction=steps_run / (steps_run + 1))
                            ex["trace_s"] = time.perf_counter() - t0
                        # XLA compiles per value of n_steps/n_draws (they size the outputs): its
                        # warm-up is the timed call itself.
                        warmup = None if mode == "xla" else lambda: fn(x0, 0, min(draws_run, 1))  # noqa: B023
                        timing = H.timeit(lambda: fn(x0, steps_run, draws_run), warmup=warmup,  # noqa: B023
                                          min_reps=2 if quick else 3, max_reps=3 if quick else 6,
                                          min_time=0.5 if quick else 5.0, budget=budget)
                        rate = useful["total"] / timing["median_s"]
                        row = {"scale": scale, "field_shape": list(shape), "batch": batch, "batch_run": batch_run,
                               "n_steps": n_steps,
                               "n_draws": n_draws, "return_std": n_draws > 0, "steps_run": steps_run,
                               "draws_run": draws_run, "precision": precision, "compile": mode, **timing,
                               "useful_gflop": useful["total"] / H.GIGA,
                               "useful_parts_gflop": {k: v / H.GIGA for k, v in useful.items()},
                               "full_useful_gflop": full["total"] / H.GIGA,
                               "full_s_extrapolated": full["total"] / rate,
                               "samples_per_s": batch / (full["total"] / rate),  # at the measured rate
                               "executed_gflop": ex["total"] / H.GIGA,
                               "executed_by_type_gflop": {k: (v / H.GIGA if k != "unknown_shape_ops" else v)
                                                          for k, v in ex["by_type"].items()},
                               "executed_over_useful": ex["total"] / useful["total"],
                               **H.utilisation(useful["total"], timing["median_s"], rates, precision)}
                        rows.append(row)
                        log.info("%s b=%d draws=%d (run %d steps, %d draws) %s %s: %.2f s/call (%d reps), full ≈ "
                                 "%.0f s, exec/useful %.2f, %.2f× fp32 matmul, load %s", scale, batch, n_draws,
                                 steps_run, draws_run, precision, mode, timing["median_s"], timing["reps"],
                                 row["full_s_extrapolated"], row["executed_over_useful"], row["frac_fp32_matmul"],
                                 timing["loadavg_after"])
                        gc.collect()
    out = {"benchmark": "rollout", "quick": quick, "sizes": s, "machine": H.machine(), "rates": rates, "rows": rows,
           "cap_gflop": cap}
    if difference and "mixed_bfloat16" in precisions:
        out["bf16_difference"] = bf16_difference(quick)
        log.info("bf16 vs fp32 field RMSE: %s", out["bf16_difference"])
    out["rates_end"] = H.rates(quick)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--scales", nargs="+", default=["micro", "meso"])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--draws", type=int, nargs="+", help="0: no return_std; default 0 16 (--quick: 0 4)")
    p.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    p.add_argument("--compile", nargs="+", default=["graph"], choices=["graph", "xla"],
                   help="graph: tf.function; xla: jit_compile=True")
    p.add_argument("--tag", help="write rollout_TAG.json (e.g. xla: rendered as its own table; no bf16 difference)")
    p.add_argument("--cap", type=float, default=2500.0, help="useful GFLOP per timed call at most")
    p.add_argument("--budget", type=float, default=25.0, help="seconds of timed calls per configuration")
    args = p.parse_args(argv)
    if args.quick:
        args.batches = [2] if args.batches == [1, 8] else args.batches
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = run(args.quick, args.scales, args.batches, args.draws, args.precisions, args.cap, args.budget,
                 args.compile, difference=not args.tag)
    result["settings"] = vars(args)
    path = H.write_json("rollout" + (f"_{args.tag}" if args.tag else ""), result, args.quick)
    logging.getLogger("bench_rollout").info("-> %s", path)
    return result


if __name__ == "__main__":
    main()
