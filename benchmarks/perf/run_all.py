"""Run every performance benchmark (each in its own process) and render docs/performance.md.

``python benchmarks/perf/run_all.py [--quick] [--only train rollout ...] [--render-only]``

``--quick`` runs tiny sizes (a smoke run of every code path), writes
``benchmarks/results/perf_quick/`` and renders
``benchmarks/results/perf_quick/performance.md``; the default runs the
paper's sizes, writes ``benchmarks/results/perf/`` and renders
``docs/performance.md``. ``--render-only`` re-renders from the JSON files.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BENCHMARKS = {"train": "bench_train.py", "rollout": "bench_rollout.py", "memory": "bench_memory.py",
              "profile": "profile_steps.py"}
NOTES = HERE / "notes.md"  # hand-written findings, included in the rendered page


def _load(results: Path, name: str):
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _f(x, digits=2):
    if x is None:
        return "–"
    if isinstance(x, float):
        if abs(x) >= 100:
            return f"{x:,.0f}"
        if x and abs(x) < 0.1:
            return f"{x:.2g}"
        return f"{x:.{digits}f}"
    return str(x)


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_f(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _best(d, key):
    """Best (peak) rate of a reference kernel over the start and end timings of a benchmark process."""
    out = 0.0
    for r in (d["rates"], d.get("rates_end") or d["rates"]):
        t = r[f"{key}_timing"]
        out = max(out, r[f"{key}_gflops"] * t["median_s"] / min(t["times_s"]))
    return out


def _batch(row) -> str:
    """The batch of a training row, with how it ran when not whole."""
    if row.get("chunk"):
        return f"{row['batch']} (chunks of {row['chunk']})"
    if row["batch_run"] != row["batch"]:  # results from before gradient_chunk_size
        return f"{row['batch']} (ran {row['batch_run']})"
    return str(row["batch"])


def _load_str(t):
    return "/".join(f"{v:.1f}" for v in t)


def _train_section(d: dict, title: str) -> list:
    """The table of a training benchmark's rows."""
    p32, p16 = _best(d, "matmul_fp32"), _best(d, "matmul_bf16")
    rows = [[r["stage"], "×".join(map(str, r["field_shape"])), r["horizon"],
             _batch(r), r["precision"].replace("mixed_", ""), r.get("compile", "graph"), r["median_s"], r["reps"],
             r["samples_per_s"], r["useful_gflop"], r["executed_gflop"], r["executed_over_useful"],
             r["useful_gflops_per_s"], r["useful_gflops_per_s"] / p32,
             r["useful_gflops_per_s"] / p16 if "frac_bf16_matmul" in r else None, _f(r["loadavg_after"][0], 1)]
            for r in d["rows"]]
    parts = [f"## {title}", "",
             ("One optimiser step of a dynamics stage on random windows (cost does not depend on values): "
             "micro decoupled, micro coupled, meso (time ratio 2, frozen backbone). Useful FLOPs: trained "
             "networks 3× forward, frozen networks 2× where a trained one lies upstream and 1× otherwise, "
             "decoders of the predicted steps only. Executed FLOPs: the convolutions and matmuls of the "
             "traced step that feed its outputs or updates."), "",
             _table(["stage", "fields", "horizon", "batch", "precision", "compile", "s/step", "reps", "samples/s",
                     "useful GFLOP", "executed GFLOP", "exec/useful", "useful GFLOP/s", "× fp32 peak",
                     "× bf16 peak", "load"], rows), ""]
    notes = sorted({r["note"] for r in d["rows"] if "note" in r})
    parts += [f"- {n}" for n in notes] + ([""] if notes else [])
    return parts


def _rollout_section(d: dict, title: str) -> list:
    """The table of a rollout benchmark's rows."""
    p32, p16 = _best(d, "matmul_fp32"), _best(d, "matmul_bf16")
    rows = [[r["scale"], "×".join(map(str, r["field_shape"])), r["batch"], r["n_steps"], r["n_draws"],
             r["precision"].replace("mixed_", ""), r.get("compile", "graph"),
             f"{r['steps_run']} steps, {r['draws_run']} draws, batch {r['batch_run']}"
             if (r["steps_run"], r["draws_run"], r["batch_run"]) != (r["n_steps"], r["n_draws"], r["batch"])
             else "whole", r["median_s"], r["reps"], r["full_s_extrapolated"],
             r["useful_gflop"], r["executed_over_useful"], r["useful_gflops_per_s"],
             r["useful_gflops_per_s"] / p32, r["useful_gflops_per_s"] / p16 if "frac_bf16_matmul" in r else None,
             _f(r["loadavg_after"][0], 1)] for r in d["rows"]]
    parts = [f"## {title}", "",
             ("Encode the initial frames, step the latent model, decode the mean (and every draw with "
             "`return_std`) at every step. Where a whole paper-size rollout would take too long, the "
             f"timed call covers its first steps (at most {d['cap_gflop']:,.0f} useful GFLOP; fewer draws, "
             "then a smaller batch, if even the first frame is more); the rollout's work is the same at every "
             "step, so the whole rollout's time is extrapolated at the measured rate."), "",
             _table(["scale", "fields", "batch", "steps", "draws", "precision", "compile", "timed", "s/call",
                     "reps", "whole rollout s (extrap.)", "useful GFLOP/call", "exec/useful", "useful GFLOP/s",
                     "× fp32 peak", "× bf16 peak", "load"], rows), ""]
    return parts


def _xla_section(d: dict, what: str) -> list:
    """Graph mode against XLA (``--compile graph xla --tag xla``), with the time ratio."""
    parts = (_train_section if d["benchmark"] == "train" else _rollout_section)(d, f"{what}: graph mode against XLA")
    key = (lambda r: (r["stage"], r["horizon"], r["batch"], r["precision"])) if d["benchmark"] == "train" else \
        (lambda r: (r["scale"], r["batch"], r["n_draws"], r["precision"]))
    graph = {key(r): r for r in d["rows"] if r.get("compile") == "graph"}
    ratios = [f"{' '.join(map(str, key(r)))}: {r['median_s'] / graph[key(r)]['median_s']:.2f}"
              for r in d["rows"] if r.get("compile") == "xla" and key(r) in graph]
    if ratios:
        parts += ["XLA time / graph time: " + "; ".join(ratios) + ".", ""]
    parts += [f"- {f['what']}: {f['error']}" for f in d.get("failures", [])]
    return parts + ([""] if d.get("failures") else [])


def render(results: Path, out: Path, quick: bool) -> str:
    """Markdown of every JSON result under ``results``."""
    data = {k: _load(results, k) for k in (*BENCHMARKS, "train_xla", "rollout_xla")}
    any_ = next((d for d in data.values() if d), None)
    if any_ is None:
        raise SystemExit(f"no results under {results}")
    m = any_["machine"]
    parts = ["# Performance", "",
             "Generated by `python benchmarks/perf/run_all.py" + (" --quick" if quick else "") + "` from the JSON "
             f"files in `{results.relative_to(ROOT)}/`. Yardstick: the *useful* FLOPs the method needs "
             "(counted from the layer shapes) per second, as a fraction of the dense `tf.matmul` rate "
             "timed in the same process.", "",
             "## Machine", "",
             _table(["", ""], [["CPU", m["cpu_model"]], ["usable cores", m["usable_cores"]],
                               ["SIMD flags", " ".join(m["simd_flags"])],
                               [f"memory available at the end of the {any_['benchmark']} run (GB)",
                                m["mem_available_gb"]],
                               ["TensorFlow / Keras", f"{m['tensorflow']} / {m['keras']}"],
                               ["oneDNN", m["onednn"]], ["GPUs", ", ".join(m["gpus"]) or "none"],
                               [f"load average (1/5/15 min) at the end of the {any_['benchmark']} run",
                                _load_str(m["loadavg"])]]), "",
             ("The machine may be shared with other jobs: every timing row records the 1-min load average "
             "after it (a benchmark's own two threads make it ≈ 2), and the reference rates were timed at the "
             "start and the end of each benchmark process. Compare fractions of the matmul rate, not "
             "absolute times."), ""]
    if NOTES.exists() and not quick:
        parts += [NOTES.read_text().strip(), ""]
    for name in ("train", "rollout", "train_xla", "rollout_xla"):
        d = data[name]
        if d:
            r0, r1 = d["rates"], d.get("rates_end", d["rates"])
            parts += [f"## Reference rates ({name} process)", "",
                      ("Median GFLOP/s at the start and at the end of the process, and the best single call "
                      "over both (**peak**, the yardstick of the fractions below: on a shared machine the "
                      "median is pulled down by other processes)."), "",
                      _table(["", "fp32 start", "fp32 end", "fp32 peak", "bf16 start", "bf16 end", "bf16 peak"],
                             [[f"`tf.matmul` {r0['matmul_n']}³", r0["matmul_fp32_gflops"],
                               r1["matmul_fp32_gflops"], _best(d, "matmul_fp32"), r0["matmul_bf16_gflops"],
                               r1["matmul_bf16_gflops"], _best(d, "matmul_bf16")],
                              ["3×3 conv " + "×".join(map(str, r0["conv_shape"][:3])) + f", {r0['conv_shape'][3]}"
                               f"→{r0['conv_shape'][4]}", r0["conv_fp32_gflops"], r1["conv_fp32_gflops"],
                               _best(d, "conv_fp32"), r0["conv_bf16_gflops"], r1["conv_bf16_gflops"],
                               _best(d, "conv_bf16")]]), ""]
    if data["train"]:
        parts += _train_section(data["train"], "Training steps")
    if data["rollout"]:
        parts += _rollout_section(data["rollout"], "Rollouts")
    d = data["rollout"]
    if d:
        b = d.get("bf16_difference")
        if b:
            parts += ["### bf16 against fp32 predictions", "", (f"{b['model']}; data: {b['data']}; "
                      f"{b['n_steps']}-step rollouts from the test samples' first frames."), "",
                      _table(["field", "RMSE fp32 vs bf16", "RMSE fp32 vs truth"],
                             [[f, a, c] for f, a, c in zip(b["fields"], b["rmse_fp32_vs_bf16"],
                                                          b["rmse_fp32_vs_truth"])]),
                      "", f"Largest absolute difference: {b['max_abs_diff']:.3g} (fields scaled to [0, 1]).", ""]
    for name, what in (("train_xla", "Training steps"), ("rollout_xla", "Rollouts")):
        if data[name]:
            parts += _xla_section(data[name], what)
    d = data["memory"]
    if d:
        gb = 2**30
        runs = d.get("runs") or [{**d, "gradient_chunk_size": None}]  # results from before the runs list
        parts += ["## Peak memory of `fit`", "",
                  (f"`MicroDynamicsEstimator(filters={d['settings']['filters']}, batch_size="
                  f"{d['settings']['batch_size']})`, one epoch per stage (VAE, decoupled, coupled at horizon 1) "
                  f"on {' × '.join(map(str, d['data_shape']))} float32 fields, each fit in a fresh process "
                  "(`ru_maxrss`)."), "",
                  _table(["gradient_chunk_size", "data GiB", "RSS after import GiB", "RSS with data GiB",
                          "peak RSS GiB", "peak / data", "(peak − with data) / data", "fit s", "load"],
                         [[r["gradient_chunk_size"] or "None", r["data_gb"], r["rss_after_import"] / gb,
                           r["rss_after_data"] / gb, r["peak_rss_gb"], r["peak_over_data"],
                           r["fit_overhead_over_data"], r["fit_s"], _f(r["loadavg"][0], 1)] for r in runs]), ""]
    d = data["profile"]
    if d:
        parts += ["## Profile", "", ("TensorFlow profiler trace (`tf.profiler.experimental`), op time summed by "
                  f"op type over {d['settings']['calls']} calls after a warm-up (2 inter-op threads: shares "
                  "are of summed op time)."), ""]
        for key in ("train", "rollout"):
            p = d[key]
            parts += [f"### {p['what']}", "",
                      "Useful GFLOP: " + ", ".join(f"{k} {v:.1f}" for k, v in p["useful_parts_gflop"].items())
                      + ". Executed GFLOP: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                          p["executed_by_type_gflop"].items()) + ".", "",
                      _table(["kind of work", "ms", "share"], [[r["name"], r["ms"], r["share"]]
                                                               for r in p["by_kind"]]), "",
                      _table(["op type", "ms", "share"], [[r["name"], r["ms"], r["share"]]
                                                          for r in p["by_type"][:12]]), "",
                      _table(["network (pass)", "ms", "share"], [[r["name"].strip() if r["name"].strip() != "forward" else
                                                                  "forward (inside the rollout loop)", r["ms"],
                                                                  r["share"]]
                                                                 for r in p["by_network"][:12]]), ""]
    parts += ["## Reproduce", "",
              "```", "python benchmarks/perf/run_all.py            # paper sizes, renders docs/performance.md",
              "python benchmarks/perf/run_all.py --quick    # tiny sizes, a smoke run",
              ("python benchmarks/perf/bench_train.py --stages coupled --horizons 1 --batches 8  # one table, "
              "a subset"), "pytest tests/test_perf_flops.py             # the FLOP counter", "```", "",
              ("Each script runs alone and writes its JSON (with every timing, the executed FLOPs by op type and "
              "the load average) to `benchmarks/results/perf/`. The calls into skmld's engine are isolated in "
              "the adapters of `benchmarks/perf/_harness.py` (`build_nets`, `make_train_step`, `make_rollout`, "
              "`fit_small_model`)."), ""]
    text = "\n".join(parts)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    p.add_argument("--render-only", action="store_true")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    results = ROOT / "benchmarks" / "results" / ("perf_quick" if args.quick else "perf")
    out = args.out or (results / "performance.md" if args.quick else ROOT / "docs" / "performance.md")
    if not args.render_only:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        for name in args.only:
            t0 = time.perf_counter()
            cmd = [sys.executable, str(HERE / BENCHMARKS[name])] + (["--quick"] if args.quick else [])
            print(f"== {name}: {' '.join(cmd)}  (load {os.getloadavg()})", flush=True)
            subprocess.run(cmd, check=True, env=env)
            print(f"== {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    render(results, out, args.quick)
    print(f"-> {out}")


if __name__ == "__main__":
    main()
