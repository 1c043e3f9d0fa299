"""Fuzzing at scale: the properties of tests/test_fuzz.py with many more examples.

Every target of ``tests/_strategies.py`` (fields, tokenizer, estimator
predict/score/encode/decode and fit validation, metrics, model files) runs
``--examples`` generated examples; each example must either succeed with finite
output or raise one of :data:`skmld.exceptions.DOCUMENTED_ERRORS`. Failures do
not stop the run: each is recorded with its message (no shrinking).

Run alone: ``python benchmarks/fuzz.py --examples 2000 [--slow-examples 300] [--targets metrics] [--seed 0]``;
writes ``benchmarks/results/fuzz.json`` (per target: examples tried, failures,
distinct failure messages, seconds).
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

from _common import machine, write_json

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def build_context(cache: str | None = None):
    """Tiny fitted micro and meso pipelines (the test session's), optionally cached with pickle."""
    from _strategies import Context, model_files

    if cache and os.path.exists(cache):
        with open(cache, "rb") as f:  # a file this script wrote itself
            parts = pickle.load(f)
    else:
        from conftest import TINY
        from sklearn.pipeline import Pipeline

        from skmld import MesoDynamicsEstimator, MicroDynamicsEstimator, PatchTokenizer
        from skmld.datasets import make_pore_collapse

        micro_X = make_pore_collapse("micro", 3, shape=(32, 64), n_steps=4, random_state=0)
        meso_X = make_pore_collapse("meso", 4, shape=(64, 64), n_steps=4, random_state=1)
        micro = Pipeline([("tokens", PatchTokenizer(patch_size=32)), (
            "micro", MicroDynamicsEstimator(decoupled_epochs=1, coupled_epochs=1, **TINY))]).fit(micro_X)
        meso = Pipeline([
            ("tokens", PatchTokenizer(patch_size=micro["tokens"].token_shape_, ranges=micro["tokens"].ranges_)),
            ("meso", MesoDynamicsEstimator(micro["micro"], epochs=1, horizons=(1,), batch_size=8, random_state=0)),
        ]).fit(meso_X)
        parts = (micro, meso, micro_X, meso_X)
        if cache:
            with open(cache, "wb") as f:
                pickle.dump(parts, f)
    return Context(*parts, model_files(parts[0]))


def run_target(name: str, target, ctx, examples: int, seed: int) -> dict:
    """Run ``examples`` examples of one target; count tries and failures without stopping."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    tried, failures = 0, Counter()

    @hseed(seed)
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data):
        nonlocal tried
        tried += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                target(data.draw, ctx)
            except AssertionError as e:
                failures[str(e).splitlines()[0][:300]] += 1

    start = time.perf_counter()
    run()
    return {"tried": tried, "failures": sum(failures.values()), "distinct_failures": len(failures),
            "messages": dict(failures.most_common(20)), "seconds": round(time.perf_counter() - start, 1)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=2000, help="examples per target")
    p.add_argument("--slow-examples", type=int, default=None,
                   help="examples per slow target (model predictions, model files); default --examples")
    p.add_argument("--targets", nargs="*", default=None, help="substrings of target names to run (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--context-cache", default=None, help="pickle the fitted tiny models here and reuse them")
    p.add_argument("--name", default="fuzz", help="results/<name>.json")
    args = p.parse_args(argv)

    from _strategies import SLOW_TARGETS, TARGETS

    start = time.perf_counter()
    ctx = build_context(args.context_cache)
    setup = time.perf_counter() - start
    results = {}
    for name, target in TARGETS.items():
        if args.targets and not any(t in name for t in args.targets):
            continue
        n = args.examples if name not in SLOW_TARGETS or args.slow_examples is None else args.slow_examples
        results[name] = run_target(name, target, ctx, n, args.seed)
        r = results[name]
        print(f"{name:50s} tried {r['tried']:6d}  failures {r['failures']:5d}  {r['seconds']:7.1f} s", flush=True)
        for msg, n in r["messages"].items():
            print(f"    {n:5d} x {msg}", flush=True)
    out = {
        "examples_per_target": args.examples,
        "examples_per_slow_target": args.slow_examples or args.examples,
        "seed": args.seed,
        "setup_seconds": round(setup, 1),
        "total_tried": sum(r["tried"] for r in results.values()),
        "total_failures": sum(r["failures"] for r in results.values()),
        "total_seconds": round(time.perf_counter() - start, 1),
        "targets": results,
        "machine": machine(),
    }
    write_json(args.name, out)
    return out


if __name__ == "__main__":
    main()
