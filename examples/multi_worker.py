"""Train a micro model on two worker processes with ``MultiWorkerMirroredStrategy``.

Every worker runs this same script with its own ``TF_CONFIG`` (the cluster and
its own index); the global batch is split across the workers and their
gradients are summed over the network. On a real cluster each machine runs one
worker; here ``--launch 2`` starts two on localhost (loopback only)::

    python examples/multi_worker.py --launch 2 --out /tmp/mw

and each worker writes ``worker<i>.json`` (its ``history_`` and a checksum of
its predictions) into ``--out``; the chief (worker 0) also saves the model to
``model.skmld``. Every worker ends with the same weights.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def launch(n_workers: int, out: Path, timeout: float, verbose: bool = False, fields: list | None = None) -> int:
    """Start ``n_workers`` copies of this script on localhost and wait for them."""
    ports = free_ports(n_workers)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(n_workers):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        args = [sys.executable, __file__, "--out", str(out)] + (["--verbose"] if verbose else [])
        args += ["--fields", *fields] if fields else []
        procs.append(subprocess.Popen(args, env=env))
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return max(codes)


def work(out: Path, verbose: bool = False, fields: list | None = None) -> None:
    """One worker: the same code runs on every machine of the cluster."""
    import numpy as np
    import tensorflow as tf

    from skmld import MicroDynamicsEstimator, PatchTokenizer
    from skmld.datasets import make_pore_collapse

    # Create the strategy first: it starts the collective runtime that connects the workers.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    index = strategy.cluster_resolver.task_id
    X = make_pore_collapse("micro", 3, shape=(32, 64), n_steps=4, random_state=0)
    X = X[fields] if fields else X
    tokens = PatchTokenizer(patch_size=32).fit_transform(X)
    est = MicroDynamicsEstimator(filters=2, dynamics_filters=2, dropout=0.0, horizons=(1,), vae_epochs=1,
                                 decoupled_epochs=0, coupled_epochs=1, batch_size=4, random_state=0,
                                 distribute=strategy, verbose=int(verbose)).fit(tokens)
    pred = est.predict(tokens)
    out.mkdir(parents=True, exist_ok=True)
    if index == 0:
        est.save(out / "model.skmld")
    record = {"history": est.history_, "prediction_sum": float(np.sum(pred.values, dtype=np.float64)),
              "replicas": strategy.num_replicas_in_sync}
    (out / f"worker{index}.json").write_text(json.dumps(record))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launch", type=int, metavar="N", help="start N workers on localhost and wait")
    parser.add_argument("--out", type=Path, default=Path("multi_worker_out"))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the workers")
    parser.add_argument("--verbose", action="store_true", help="progress bars")
    parser.add_argument("--fields", nargs="+", metavar="NAME",
                        help="train on these fields only (default: temperature, pressure and microstructure)")
    args = parser.parse_args(argv)
    if args.launch:
        return launch(args.launch, args.out, args.timeout, args.verbose, args.fields)
    work(args.out, args.verbose, args.fields)
    return 0


if __name__ == "__main__":
    sys.exit(main())
