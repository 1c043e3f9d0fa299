"""Op-level profile of the micro coupled training step and of a micro rollout.

Tool: TensorFlow's profiler (``tf.profiler.experimental.start``/``stop``),
whose trace (``*.xplane.pb``) is read here with TensorFlow's own XPlane
protobuf: every executed op appears as an event ``"<node name>:<op type>"``
on a ``tf_Compute`` thread. Op time is summed by op type, by network (the
node name's first scope, ``gradient_tape/`` marking the backward pass) and
by kind of work; shares are of the summed op time.

Run alone: ``python benchmarks/perf/profile_steps.py [--quick]``; writes
``benchmarks/results/perf[_quick]/profile.json`` (the raw traces stay in
``--logdir``).
"""

from __future__ import annotations

import argparse
import collections
import glob
import logging
import os
import re
import shutil

import _harness as H

# Op types by kind of work (oneDNN kernels are named _Mkl*).
KINDS = [
    ("conv forward", r"Conv2D$|FusedConv2D"),
    ("conv input gradient", r"Conv2DBackpropInput"),
    ("conv filter gradient", r"Conv2DBackpropFilter"),
    ("LeakyRelu / grad", r"LeakyRelu"),
    ("bias add / grad", r"BiasAdd"),
    ("bilinear resize / grad", r"Resize"),
    ("max pool / grad", r"MaxPool"),
    ("concat / slice / copy", r"Concat|Slice|Split|Pack|Unpack|Identity|Transpose|Reshape|Gather|Copy"),
    ("elementwise", r"AddV2|AddN|Add$|Mul|Sub|Square|Exp|Sqrt|Maximum|Sum|Mean|Cast|RealDiv|Neg|Select|Fill"),
    ("optimizer", r"ApplyAdam"),
]


_CONTROL = {"gradient_tape", "while", "cond", "body", "then", "else"}
_CONTROL_PREFIXES = ("while_", "cond_", "PartitionedCall", "StatefulPartitionedCall", "replica_")


def _kind(op_type: str) -> str:
    for name, pattern in KINDS:
        if re.search(pattern, op_type):
            return name
    return "other"


def parse_trace(logdir: str) -> dict:
    """Summed op time by type, network and kind from the newest ``*.xplane.pb`` under ``logdir``."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = max(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")), key=os.path.getmtime)
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    by_type, by_net, by_kind = collections.Counter(), collections.Counter(), collections.Counter()
    count = collections.Counter()
    for plane in space.planes:
        md = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for e in line.events:
                name = md[e.metadata_id].name
                if ":" not in name or name.startswith(("ThreadpoolListener", "ExecutorState")):
                    continue
                node, op_type = name.rsplit(":", 1)
                ms = e.duration_ps / 1e9
                by_type[op_type] += ms
                count[op_type] += 1
                backward = "gradient_tape/" in node
                parts = [q for q in node.split("/") if q and q not in _CONTROL and not q.startswith(_CONTROL_PREFIXES)]
                scope = parts[0] if len(parts) > 1 else "(top level)"
                scope = re.sub(r"_\d+$", "", scope)  # decoder_temperature_1 -> decoder_temperature
                scope = re.sub(r"_(temperature|pressure|microstructure)$", "", scope)  # per-field nets together
                by_net[("backward " if backward else "forward ") + scope] += ms
                by_kind[_kind(op_type)] += ms
    total = sum(by_type.values())

    def table(c, n=25):
        return [{"name": k, "ms": v, "share": v / total} for k, v in c.most_common(n)]

    return {"trace": path, "total_op_ms": total, "by_type": table(by_type), "by_network": table(by_net),
            "by_kind": table(by_kind), "op_counts": dict(count.most_common(25))}


def profile(fn, logdir: str, calls: int) -> dict:
    """Warm up, then trace ``calls`` calls of ``fn``."""
    import tensorflow as tf

    fn()
    shutil.rmtree(logdir, ignore_errors=True)
    tf.profiler.experimental.start(logdir)
    for _ in range(calls):
        fn()
    tf.profiler.experimental.stop()
    out = parse_trace(logdir)
    out["calls"] = calls
    out["loadavg"] = os.getloadavg()
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--logdir", default="/tmp/skmld_perf_profile")
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--rollout-steps", type=int, default=3)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    log = logging.getLogger("profile_steps")
    import numpy as np

    s = H.sizes(args.quick)
    nets = H.build_nets(s)
    shape = s["micro"]
    cnt = H.Counter(nets, shape)
    result = {"benchmark": "profile", "quick": args.quick, "sizes": s, "machine": H.machine(), "settings": vars(args)}

    spec = H.stage_spec("coupled")
    data = H.fake_dynamics_data(s, shape, 1, 2)
    step, concrete = H.make_train_step(nets, data, spec, 1, 1)
    ex = H.executed(concrete())
    result["train"] = {"what": "micro coupled training step, horizon 1, batch 1, float32",
                       "useful_parts_gflop": {k: v / H.GIGA for k, v in cnt.train(spec, 1, 1).items()},
                       "executed_by_type_gflop": {k: v / H.GIGA for k, v in ex["by_type"].items()
                                                  if k != "unknown_shape_ops"},
                       **profile(step, os.path.join(args.logdir, "train"), args.calls)}
    log.info("train step: %s", [(r["name"], round(r["share"], 3)) for r in result["train"]["by_type"][:8]])

    run, concrete = H.make_rollout(nets, 1)
    x0 = np.random.default_rng(0).random((1, *shape, len(H.FIELDS)), dtype=np.float32)
    n = args.rollout_steps
    ex = H.executed(concrete(x0.shape, n, 0), trips=(n + 1, 0), if_fraction=n / (n + 1))
    result["rollout"] = {"what": f"micro rollout, {n} steps, batch 1, no draws, float32",
                         "useful_parts_gflop": {k: v / H.GIGA for k, v in cnt.rollout(1, n, 0, 1).items()},
                         "executed_by_type_gflop": {k: v / H.GIGA for k, v in ex["by_type"].items()
                                                    if k != "unknown_shape_ops"},
                         **profile(lambda: run(x0, n, 0), os.path.join(args.logdir, "rollout"), args.calls)}
    log.info("rollout: %s", [(r["name"], round(r["share"], 3)) for r in result["rollout"]["by_type"][:8]])
    path = H.write_json("profile", result, args.quick)
    log.info("-> %s", path)
    return result


if __name__ == "__main__":
    main()
