"""Training-step benchmark: micro decoupled, micro coupled and meso stages.

For each stage, horizon (1, 3), batch (1, 8), precision (float32,
mixed_bfloat16) and compilation (graph; XLA with ``--compile graph xla``):
the median step time, samples/s, useful FLOPs (from the layer shapes),
executed FLOPs (from the traced graph), their ratio, and the useful GFLOP/s
as a fraction of the matmul rates timed in the same process.

A batch whose back-propagation through the frozen decoders would not fit in
half (``--memory-fraction``) the memory available at the start is back-propagated in chunks of the
largest number of rows that does (``gradient_chunk_size``; column ``chunk``).
Slow steps are timed fewer times (``reps``).

Run alone: ``python benchmarks/perf/bench_train.py [--quick]``; writes
``benchmarks/results/perf[_quick]/train.json``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import re
import time

import _harness as H


def _short(error: Exception) -> str:
    """An error's first line, or for an XLA dump the line that says what failed, without the HLO."""
    lines = str(error).splitlines() or [""]
    line = next((x for x in lines if "disallowed" in x), lines[0])
    return re.sub(r"%\S+ = .*?metadata=\{op_type=\"(\w+)\".*?\}", r"op \1", line)[:300]


def executed(nets, data, spec, horizon: int, batch: int, chunk, concrete) -> dict:
    """Executed FLOPs of a step; chunked: of the unchunked step on one chunk, × batch / chunk.

    Inside the chunk loop the rows have no static size, so its ops cannot be
    counted; every FLOP of a step is per row, so the scaling is exact.
    """
    if not chunk:
        return H.executed(concrete())
    _, concrete = H.make_train_step(nets, data, spec, horizon, chunk)
    ex = H.executed(concrete())
    scale = batch / chunk
    return {"by_type": {k: (v * scale if k != "unknown_shape_ops" else v) for k, v in ex["by_type"].items()},
            "total": ex["total"] * scale}


def run(quick: bool, stages, horizons, batches, precisions, compiles, budget: float,
        memory_fraction: float = 0.5) -> dict:
    s = H.sizes(quick)
    log = logging.getLogger("bench_train")
    rates = H.rates(quick)
    log.info("rates: %s", {k: round(v) for k, v in rates.items() if k.endswith("gflops")})
    rows, failures = [], []
    mem_limit = memory_fraction * H.mem_available()
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
                chunk = None if fit >= batch else fit
                data = H.fake_dynamics_data(s, shape, batch, horizon + 1)
                useful = cnt.train(spec, horizon, batch)
                ex = None
                for precision in precisions:
                    for mode in compiles:
                        step, concrete = H.make_train_step(nets[precision], data, spec, horizon, batch, precision,
                                                           jit=mode == "xla", chunk=chunk)
                        if ex is None:
                            t0 = time.perf_counter()
                            ex = executed(nets[precision], data, spec, horizon, batch, chunk, concrete)
                            ex["trace_s"] = time.perf_counter() - t0
                        try:
                            timing = H.timeit(step, min_reps=2 if quick else 3, max_reps=3 if quick else 8,
                                              min_time=0.5 if quick else 5.0, budget=budget)
                        except Exception as e:  # e.g. XLA's CPU backend and bf16 max-pool gradients
                            what = f"{stage} h={horizon} b={batch} {precision} {mode}"
                            failures.append({"what": what, "error": f"{type(e).__name__}: {_short(e)}"})
                            log.warning("%s failed: %s", what, failures[-1]["error"])
                            continue
                        row = {"stage": stage, "field_shape": list(shape), "horizon": horizon, "batch": batch,
                               "batch_run": batch, "chunk": chunk, "precision": precision, "compile": mode,
                               **timing, "samples_per_s": batch / timing["median_s"],
                               "useful_gflop": useful["total"] / H.GIGA,
                               "useful_parts_gflop": {k: v / H.GIGA for k, v in useful.items()},
                               "executed_gflop": ex["total"] / H.GIGA,
                               "executed_by_type_gflop": {k: (v / H.GIGA if k != "unknown_shape_ops" else v)
                                                          for k, v in ex["by_type"].items()},
                               "executed_over_useful": ex["total"] / useful["total"],
                               "memory_estimate_gb_per_sample": need / 2**30,
                               **H.utilisation(useful["total"], timing["median_s"], rates, precision)}
                        if chunk:
                            row["note"] = (f"batch {batch} needs ≈{need * batch / 2**30:.0f} GB for "
                                           "back-propagation through the decoders; back-propagated "
                                           f"{chunk} rows at a time (gradient_chunk_size={chunk})")
                        rows.append(row)
                        log.info("%s h=%d b=%d chunk=%s %s %s: %.3f s/step (%d reps), useful %.1f GFLOP, "
                                 "exec/useful %.2f, %.2f× fp32 matmul, load %s", stage, horizon, batch, chunk,
                                 precision, mode, timing["median_s"], timing["reps"], row["useful_gflop"],
                                 row["executed_over_useful"], row["frac_fp32_matmul"], timing["loadavg_after"])
                        del step, concrete
                        gc.collect()
    return {"benchmark": "train", "quick": quick, "sizes": s, "machine": H.machine(), "rates": rates,
            "rates_end": H.rates(quick), "rows": rows, "failures": failures}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--stages", nargs="+", default=["decoupled", "coupled", "meso"])
    p.add_argument("--horizons", type=int, nargs="+", help="default 1 3 (--quick: 1)")
    p.add_argument("--batches", type=int, nargs="+", help="default 1 8 (--quick: 2)")
    p.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    p.add_argument("--compile", nargs="+", default=["graph"], choices=["graph", "xla"],
                   help="graph: tf.function; xla: jit_compile=True")
    p.add_argument("--tag", help="write train_TAG.json (e.g. xla: rendered as its own table)")
    p.add_argument("--memory-fraction", type=float, default=0.5,
                   help="of the memory available at the start, for back-propagation through the decoders")
    p.add_argument("--budget", type=float, default=60.0, help="seconds of timed calls per configuration")
    args = p.parse_args(argv)
    if args.quick:  # a smoke run: one horizon, one batch size
        args.horizons, args.batches = args.horizons or [1], args.batches or [2]
    args.horizons, args.batches = args.horizons or [1, 3], args.batches or [1, 8]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = run(args.quick, args.stages, args.horizons, args.batches, args.precisions, args.compile, args.budget,
                 args.memory_fraction)
    result["settings"] = vars(args)
    path = H.write_json("train" + (f"_{args.tag}" if args.tag else ""), result, args.quick)
    logging.getLogger("bench_train").info("-> %s", path)
    return result


if __name__ == "__main__":
    main()
