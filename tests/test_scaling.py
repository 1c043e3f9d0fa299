"""Scaling out: tf.distribute replicas, several worker processes, data larger than memory, joblib workers.

The TensorFlow runtime can be split into logical devices only before it
starts: those tests run a child Python process. Data larger than memory is
checked by what the workflow holds of its input at once; the resident memory
of a process on a store larger than a cap is a benchmark
(``benchmarks/scaling.py --only cap``).
"""

import json
import os
import subprocess
import sys
import textwrap
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def quiet_env(**extra) -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def run_python(code: str, *args: str, timeout: float = 600, env=None) -> dict:
    """Run ``code`` (with ``sys.argv[1:]`` = ``args``) in a fresh interpreter; its last line, JSON, as a dict."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          check=False, timeout=timeout, env=quiet_env(**(env or {})))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


MIRRORED = """
import json, sys, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
from skmld import MicroDynamicsEstimator, MesoDynamicsEstimator, PatchTokenizer
from skmld.datasets import make_pore_collapse

# One field: the replicas split every network's batch alike, and one field's networks trace in half the time.
X = make_pore_collapse("micro", 3, shape=(32, 64), n_steps=4, random_state=0)[["temperature"]]
M = make_pore_collapse("meso", 2, shape=(64, 64), n_steps=3, random_state=1)[["temperature"]]
tok = PatchTokenizer(patch_size=32).fit(X)
tokens = tok.transform(X)
meso_tokens = PatchTokenizer(patch_size=32, ranges=tok.ranges_).fit_transform(M)
# batch 5 splits 3 + 2 across the replicas, and the last batches are partial.
# vae_loss="sse": the calibrated VAE loss estimates its pixel variance on each replica's rows (documented).
# The micro fit trains its VAEs, the meso fit its dynamics: each kind of training step once
# (the decoupled and coupled stages run the meso stage's code).
params = dict(filters=2, dynamics_filters=2, dropout=0.0, horizons=(1,), vae_epochs=1, decoupled_epochs=0,
              coupled_epochs=0, batch_size=5, validation_fraction=0.34, learning_rate=1e-3, random_state=0,
              vae_loss="sse")
strategies = [("single", None), ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))]
out = {}
if sys.argv[1] == "micro":
    for name, strategy in strategies:
        micro = MicroDynamicsEstimator(**params, distribute=strategy).fit(tokens)
        out[name] = {"history": micro.history_, "pred": micro.predict(tokens).values.ravel()[::7].tolist(),
                     "replicas": 1 if strategy is None else strategy.num_replicas_in_sync}
else:  # both meso fits start from one micro backbone, built and not trained (the meso fits are compared)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an untrained VAE is named as not learnt
        micro = MicroDynamicsEstimator(**{**params, "vae_epochs": 0}).fit(tokens)
    for name, strategy in strategies:
        meso = MesoDynamicsEstimator(micro, epochs=1, horizons=(1,), batch_size=3, random_state=0,
                                     distribute=strategy).fit(meso_tokens)
        out[name] = {"history": meso.history_, "pred": meso.predict(meso_tokens).values.ravel()[::7].tolist(),
                     "replicas": 1 if strategy is None else strategy.num_replicas_in_sync}
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.parametrize("scale", ["micro", "meso"])
def test_mirrored_strategy_matches_single_device(scale):
    """Same global batch on 2 replicas and on 1 device: same losses, weights and predictions to float rounding.

    oneDNN is off: its CPU kernels fail ("input depth must be evenly divisible by
    filter depth") when two logical CPU devices run different batch shapes at
    once, a TensorFlow issue of logical CPU devices only (docs/scaling.md).
    """
    out = run_python(MIRRORED, scale, env={"TF_ENABLE_ONEDNN_OPTS": "0"})
    single, mirrored = out["single"], out["mirrored"]
    assert mirrored["replicas"] == 2
    assert len(single["history"]) == len(mirrored["history"]) > 0
    for a, b in zip(single["history"], mirrored["history"]):
        assert a.keys() == b.keys()
        for term in a:
            if isinstance(a[term], float):
                np.testing.assert_allclose(b[term], a[term], rtol=1e-4, err_msg=f"{scale} {a} {term}")
            else:
                assert a[term] == b[term]
    np.testing.assert_allclose(mirrored["pred"], single["pred"], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_multi_worker_example_on_localhost(tmp_path):
    """examples/multi_worker.py: two worker processes over loopback train one model together (one field's)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "multi_worker.py"), "--launch", "2", "--out", str(tmp_path),
         "--timeout", "420", "--fields", "temperature"],
        capture_output=True, text=True, check=False, timeout=480, env=quiet_env(),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    workers = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    assert [w["replicas"] for w in workers] == [2, 2]
    # Both workers hold the same synchronised model and report the same global losses.
    assert workers[0]["history"] == workers[1]["history"]
    assert workers[0]["prediction_sum"] == workers[1]["prediction_sum"]
    assert (tmp_path / "model.skmld").exists()


class _LiveBlocks:
    """Blocks of a dask array tracked while they are alive: how many bytes of it were held at once."""

    def __init__(self):
        self.live = self.peak = 0
        self._lock = threading.Lock()

    def _add(self, nbytes: int) -> None:
        with self._lock:
            self.live += nbytes
            self.peak = max(self.peak, self.live)

    def track(self, block: np.ndarray) -> np.ndarray:
        # A fresh array per block: released when nothing (no view, no list, no concatenation
        # still waiting for its other blocks) refers to it any more.
        out = np.array(block, copy=True)
        self._add(out.nbytes)
        weakref.finalize(out, self._add, -out.nbytes)
        return out

    def wrap(self, da):
        """``da`` (a lazy DataArray) whose every computed block is tracked."""
        return da.copy(data=da.data.map_blocks(self.track, dtype=da.dtype))


def test_out_of_core_workflow_holds_a_bounded_part_of_the_tokens_at_once(tmp_path, monkeypatch):
    """Fit (every stage), score and a chunk-by-chunk prediction of a lazy Zarr store hold a few blocks at once.

    Every block of the tokens the estimator reads is tracked from when dask
    computes it until the last reference to it goes: what the workflow holds of
    its input, exactly, whatever the allocator does. The fit may hold one group
    of blocks shuffled together (``GROUP_BYTES``, two blocks here); scoring and
    prediction the samples rolled out at once (8), under dask's synchronous
    scheduler (with threads, one such block per thread). The control shows the
    instrument sees a materialised array. The process's resident memory on a
    store larger than a cap is measured by ``benchmarks/scaling.py --only
    cap`` (docs/scaling.md).
    """
    import dask

    import skmld._data
    from skmld import MicroDynamicsEstimator, PatchTokenizer, open_fields, write_fields
    from skmld.datasets import make_pore_collapse

    X = make_pore_collapse("micro", 24, shape=(32, 32), n_steps=4, random_state=0)[["temperature"]]
    write_fields(X.chunk({"sample": 1}), tmp_path / "store.zarr")
    X = open_fields(tmp_path / "store.zarr")
    tokens = PatchTokenizer(patch_size=None).fit(X)
    T = tokens.transform(X)
    sample_bytes = T.nbytes // T.sizes["sample"]  # one dask block
    monkeypatch.setattr(skmld._data, "GROUP_BYTES", 2 * sample_bytes)

    control = _LiveBlocks()
    np.asarray(control.wrap(T))
    assert control.peak == T.nbytes  # a materialised store: every block held at once

    live = _LiveBlocks()
    est = MicroDynamicsEstimator(filters=2, dynamics_filters=2, horizons=(1,), vae_epochs=1, decoupled_epochs=1,
                                 coupled_epochs=1, batch_size=8, random_state=0).fit(live.wrap(T))
    assert [r["stage"] for r in est.history_] == ["vae", "decoupled", "coupled"]
    assert 0 < live.peak <= 2 * sample_bytes, live.peak / sample_bytes
    with dask.config.set(scheduler="synchronous"):
        assert np.isfinite(est.score(live.wrap(T)))
        pred = tokens.inverse_transform(est.predict(live.wrap(T)))
        assert pred.chunks  # lazy (dask-backed): each block rolled out when it is written
        write_fields(pred, tmp_path / "pred.zarr")
    assert open_fields(tmp_path / "pred.zarr").sizes["sample"] == 24
    assert live.peak <= 8 * sample_bytes == T.nbytes / 3, live.peak / sample_bytes


def _intra_op_threads(estimator, X, y=None):
    """A 'scorer' reporting the TensorFlow thread pool size of the process that scores."""
    import tensorflow as tf

    return float(tf.config.threading.get_intra_op_parallelism_threads())


@pytest.mark.slow
def test_cross_validation_in_loky_workers(micro_T_only):
    """n_jobs=2 (loky): the scores of the folds fitted here, and each worker's TensorFlow sized to its share of cores."""
    import joblib
    from sklearn.model_selection import KFold, cross_validate
    from sklearn.pipeline import Pipeline

    from skmld import MicroDynamicsEstimator, PatchTokenizer, as_fields

    # The VAE stage only: the folds need a fitted model whose scores differ, not every stage.
    est = MicroDynamicsEstimator(filters=2, dynamics_filters=2, horizons=(1,), vae_epochs=1, decoupled_epochs=0,
                                 coupled_epochs=0, batch_size=8, random_state=0)
    pipe = Pipeline([("tokens", PatchTokenizer(patch_size=32)), ("micro", est)])
    X = as_fields(micro_T_only)  # a DataArray: sklearn indexes its first dim, the samples
    serial = cross_validate(pipe, X, cv=KFold(2), return_estimator=True, return_indices=True)
    # Each fold's score is its fitted pipeline's score on that fold's held-out samples.
    folds = zip(serial["estimator"], serial["indices"]["train"], serial["indices"]["test"])
    expected = [fitted.score(X.isel(sample=test)) for fitted, train, test in folds]
    np.testing.assert_array_equal(serial["test_score"], expected)
    assert [len(t) for t in serial["indices"]["test"]] == [2, 1] and np.isfinite(expected).all()
    assert serial["estimator"][0]["micro"].history_ != serial["estimator"][1]["micro"].history_
    parallel = cross_validate(pipe, X, cv=KFold(2), n_jobs=2,
                              scoring={"score": lambda est, X, y=None: est.score(X), "threads": _intra_op_threads})
    np.testing.assert_allclose(parallel["test_score"], serial["test_score"], rtol=1e-5)
    # joblib sets OMP_NUM_THREADS = cores // n_jobs in its workers, unless this process has it set (as
    # tests/conftest.py does under xdist); skmld sizes TensorFlow's pool by it.
    share = int(os.environ.get("OMP_NUM_THREADS", max(1, joblib.cpu_count() // 2)))
    assert set(parallel["test_threads"]) == {float(share)}


@pytest.mark.traced
def test_repeated_fits_in_one_process_free_their_graphs(micro_T_only):
    """A fitted estimator, once dropped, leaves no traced graph behind, so a long model search does not grow.

    Keras's replica all-reduce of the gradients used to pin every traced train
    step in a process-wide registry (tensorflow/tensorflow#62854).
    """
    import gc

    from tensorflow.python.framework.func_graph import FuncGraph

    from skmld import MicroDynamicsEstimator, PatchTokenizer

    T = PatchTokenizer(patch_size=32).fit_transform(micro_T_only)

    def graphs_after_fit():
        # A VAE and a dynamics training step each: every kind of traced step.
        MicroDynamicsEstimator(filters=2, dynamics_filters=2, horizons=(1,), vae_epochs=1, decoupled_epochs=0,
                               coupled_epochs=1, batch_size=8, random_state=0).fit(T).score(T)
        gc.collect()
        return sum(isinstance(o, FuncGraph) for o in gc.get_objects())

    first = graphs_after_fit()
    assert graphs_after_fit() == first
