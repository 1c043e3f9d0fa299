"""Scaling out: tf.distribute replicas, several worker processes, data larger than memory, joblib workers.

The TensorFlow runtime can be split into logical devices only before it
starts, and a memory cap needs a process of its own: those tests run a child
Python process.
"""

import json
import os
import subprocess
import sys
import textwrap
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
M = make_pore_collapse("meso", 2, shape=(64, 64), n_steps=4, random_state=1)[["temperature"]]
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


def _out_of_core(tmp_path, *options) -> tuple[dict, dict]:
    """examples/out_of_core.py's small and big runs (5.25 MiB per copy of 4 samples in float64, one token per
    sample) on a 105 MiB store; the cap."""
    copies = 20
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "out_of_core.py"), "--out", str(tmp_path),
                           "--copies", str(copies), "--dtype", "float64", "--patch-size", "0", "--decoupled-epochs", "0",
                           "--batch-size", "8", "--group-mib", "4", *options],
                          capture_output=True, text=True, timeout=900, env=quiet_env(), check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    small, big = out["small"], out["big"]
    # The cap: the small run's peak, where every fixed cost is paid, plus a third of the big store.
    assert big["data_mib"] > 5 * copies - 1 and big["peak_mib"] < small["peak_mib"] + big["data_mib"] / 3, out
    return small, big


@pytest.mark.slow
def test_out_of_core_fit_on_data_several_times_larger_than_a_memory_cap(tmp_path):
    """A 105 MiB Zarr store fits (one epoch per stage) under a cap of a third of it.

    examples/out_of_core.py runs the workflow on an 8-sample store and on the
    big one, each in a fresh process, so both pay every fixed cost
    (TensorFlow, dask, traced networks, threads). The cap is the small run's
    peak resident memory plus a budget of a third of the big store: holding
    the store, or any copy of it, would break it. The kernel's own peak count
    (``VmHWM``) checks it. (A hard ``RLIMIT_AS`` cannot impose it: TensorFlow
    reserves far more address space than it touches.) The store holds float64
    values, twice the bytes of the float32 the networks see, and each sample is
    one token: the same bytes for half the training of float32 32 × 32 tokens;
    no decoupled epoch (the coupled stage reads the same windows). Batches of 8
    samples: the small store's 8 samples make full batches, so its peak holds a
    whole batch's activations too. See docs/scaling.md.
    """
    for run in _out_of_core(tmp_path, "--no-predict"):
        assert run["epochs"] == 2, run


@pytest.mark.slow
def test_out_of_core_score_and_predict_on_data_several_times_larger_than_a_memory_cap(tmp_path):
    """A 105 MiB store scored and predicted (lazily, written chunk by chunk) under a cap of a third of it.

    The networks are built and not trained (``--epochs 0``): scoring and
    prediction stream the same blocks whatever the weights, and the fit has its
    own test. dask computes as many blocks of 8 samples at once as it has
    threads and may hold one more finished block until it is written (≈ 10 MiB
    each), a bounded cost: the small store holds 24 samples, so that its run
    holds as many blocks at once as the big run.
    """
    for run, samples in zip(_out_of_core(tmp_path, "--epochs", "0", "--small-copies", "6"), (24, 80)):
        assert run["lazy_prediction"] and run["first_predictions_finite"], run
        assert run["predicted_samples"] == samples and run["epochs"] == 0 and np.isfinite(run["score"]), run


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
