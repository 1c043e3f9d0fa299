"""Training-step benchmark: micro decoupled, micro coupled and meso stages.

For each stage, horizon (1, 3), batch (1, 8) and precision (float32,
mixed_bfloat16): the median step time, samples/s, useful FLOPs (from the
layer shapes), executed FLOPs (from the traced graph), their ratio, and the
useful GFLOP/s as a fraction of the matmul rates timed in the same process.

A configuration whose back-propagation through the frozen decoders would not
fit in half the memory available at the start runs at the largest batch that does,
and says so (``batch_run`` < ``batch``). Slow steps are timed fewer times
(``reps``).

Run alone: ``python benchmarks/perf/bench_train.py [--quick]``; writes
``benchmarks/results/perf[_quick]/train.json``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import time

import _harness as H


def run(quick: bool, stages, horizons, batches, precisions, budget: float) -> dict:
    s = H.sizes(quick)
    log = logging.getLogger("bench_train")
    rates = H.rates(quick)
    log.info("rates: %s", {k: round(v) for k, v in rates.items() if k.endswith("gflops")})
    rows = []
    mem_limit = 0.5 * H.mem_available()
    nets = {p: H.build_nets(s, p) for p in precisions}
    counter = {}
    for stage in stages:
        spec = H.stage_spec(stage)
        shape = s["meso"] if stage == "meso" else s["micro"]
        if shape not in counter:
            counter[shape] = H.Counter(nets[precisions[0]], shape)
        cnt = counter[shape]
        for horizon in horizons:
            for batch in batches:
                need = cnt.train_memory(horizon, 1)
                fit = max(1, int(mem_limit // need)) if mem_limit else batch
                batch_run = min(batch, fit)
                data = H.fake_dynamics_data(s, shape, batch_run, horizon + 1)
                useful = cnt.train(spec, horizon, batch_run)
                ex = None
                for precision in precisions:
                    step, concrete = H.make_train_step(nets[precision], data, spec, horizon, batch_run, precision)
                    if ex is None:
                        t0 = time.perf_counter()
                        ex = H.executed(concrete())
                        ex["trace_s"] = time.perf_counter() - t0
                    timing = H.timeit(step, min_reps=2 if quick else 3, max_reps=3 if quick else 8,
                                      min_time=0.5 if quick else 5.0, budget=budget)
                    row = {"stage": stage, "field_shape": list(shape), "horizon": horizon, "batch": batch,
                           "batch_run": batch_run, "precision": precision, **timing,
                           "samples_per_s": batch_run / timing["median_s"],
                           "useful_gflop": useful["total"] / H.GIGA,
                           "useful_parts_gflop": {k: v / H.GIGA for k, v in useful.items()},
                           "executed_gflop": ex["total"] / H.GIGA,
                           "executed_by_type_gflop": {k: (v / H.GIGA if k != "unknown_shape_ops" else v)
                                                      for k, v in ex["by_type"].items()},
                           "executed_over_useful": ex["total"] / useful["total"],
                           "memory_estimate_gb_per_sample": need / 2**30,
                           **H.utilisation(useful["total"], timing["median_s"], rates, precision)}
                    if batch_run < batch:
                        row["note"] = (f"batch {batch} needs ≈{need * batch / 2**30:.0f} GB for back-propagation "
                                       f"through the decoders; measured at batch {batch_run}")
                    rows.append(row)
                    log.info("%s h=%d b=%d(%d) %s: %.3f s/step (%d reps), useful %.1f GFLOP, exec/useful %.2f, "
                             "%.2f× fp32 matmul, load %s", stage, horizon, batch, batch_run, precision,
                             timing["median_s"], timing["reps"], row["useful_gflop"], row["executed_over_useful"],
                             row["frac_fp32_matmul"], timing["loadavg_after"])
                    del step, concrete
                    gc.collect()
    return {"benchmark": "train", "quick": quick, "sizes": s, "machine": H.machine(), "rates": rates,
            "rates_end": H.rates(quick), "rows": rows}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--stages", nargs="+", default=["decoupled", "coupled", "meso"])
    p.add_argument("--horizons", type=int, nargs="+", help="default 1 3 (--quick: 1)")
    p.add_argument("--batches", type=int, nargs="+", help="default 1 8 (--quick: 2)")
    p.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    p.add_argument("--budget", type=float, default=60.0, help="seconds of timed calls per configuration")
    args = p.parse_args(argv)
    if args.quick:  # a smoke run: one horizon, one batch size
        args.horizons, args.batches = args.horizons or [1], args.batches or [2]
    args.horizons, args.batches = args.horizons or [1, 3], args.batches or [1, 8]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = run(args.quick, args.stages, args.horizons, args.batches, args.precisions, args.budget)
    result["settings"] = vars(args)
    path = H.write_json("train", result, args.quick)
    logging.getLogger("bench_train").info("-> %s", path)
    return result


if __name__ == "__main__":
    main()
