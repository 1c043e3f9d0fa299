"""Test-wide settings: quiet TensorFlow, and run the tiny test models eagerly.

The tiny test models spend most of their time being traced, not running: a
fit of one batch per stage costs about 27 s traced and 15 s eager on the
2-core machine, and a first prediction 7-10 s traced and 2-4 s eager, because
each training step and rollout is traced for one or two calls. So the tests
run TensorFlow's functions eagerly (``tf.config.run_functions_eagerly``).
Tests marked ``traced`` run traced: those that check tracing itself (trace
counts, XLA, freed graphs), the learning fits, whose hundred-odd steps run
~3x slower eagerly, and the tests that draw many trajectory ensembles from
one shared model (~20x faster traced once traced). Every test that starts a Python process of its own
(determinism, SIGKILL, distribution, out-of-core, loky workers, fresh-process
pickles) runs traced there, so the graph path is exercised end to end.
``SKMLD_TESTS_TRACED=1`` runs every test traced. The shared models are fitted
eagerly whatever the test that first asks for them (``eagerly``). Each xdist
worker sizes TensorFlow to its share of the cores, and heavy tests run first.

Grappler's graph rewrites are off: they change no results beyond float
rounding but cost seconds per trace.
"""

import os
import sys
from contextlib import contextmanager

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

ALL_TRACED = os.environ.get("SKMLD_TESTS_TRACED", "") not in ("", "0")


def _share_the_cores():
    """Each xdist worker (and every process it starts) gets its share of the cores, as joblib's workers do.

    TensorFlow sizes its pools by all the cores; two workers on two cores then run
    four busy threads, which cost the tiny test models ~10 % of the suite's time.
    skmld sizes TensorFlow's pools by ``OMP_NUM_THREADS`` (``skmld._engine``).
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        import joblib  # its count of the cores, as its own workers use: CPU quotas and affinity included

        os.environ["OMP_NUM_THREADS"] = str(max(1, joblib.cpu_count() // workers))


def pytest_configure(config):
    _share_the_cores()
    try:
        import tensorflow as tf
    except ImportError:  # the data layer's tests need no TensorFlow
        return
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    tf.config.run_functions_eagerly(not ALL_TRACED)


def pytest_collection_modifyitems(config, items):
    """Heavy tests (marked slow or traced) first, so that xdist's workers run out of work together.

    The demo's tests come right after them: the demo is one Python thread of
    eager Keras calls, slowed most by the subprocess tests, which start two
    busy processes each; beside in-process tests it shares the cores evenly.
    """
    def order(item):
        if item.path.name == "test_demo.py":
            return 1
        return 0 if item.get_closest_marker("slow") or item.get_closest_marker("traced") else 2

    items.sort(key=order)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Eager or traced for the whole test, its fixtures included (before any fixture is set up)."""
    if "tensorflow" in sys.modules:
        sys.modules["tensorflow"].config.run_functions_eagerly(
            not ALL_TRACED and item.get_closest_marker("traced") is None)


@contextmanager
def eagerly():
    """TensorFlow functions run eagerly inside (unless every test is traced), whatever the test's marker.

    The shared models are fitted this way: a tiny fit costs about half as much
    eagerly, and a traced test that uses them still predicts traced.
    """
    import tensorflow as tf

    was = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(not ALL_TRACED)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(was)


# -- shared tiny fitted models (built once per test process) -----------------------
TINY = dict(filters=2, dynamics_filters=2, horizons=(1,), vae_epochs=1, batch_size=8, random_state=0)


@pytest.fixture(scope="session")
def micro_X():
    """3 micro samples, 32 × 64 grid: two 32 × 32 tokens each."""
    from skmld.datasets import make_pore_collapse

    return make_pore_collapse("micro", 3, shape=(32, 64), n_steps=4, random_state=0)


@pytest.fixture(scope="session")
def micro_T_only(micro_X):
    """The micro samples' temperature alone: one field's networks instead of three fields', so a tiny fit costs
    about half (eager 9 s against 18 s, traced 15 s against 32 s). For tests whose assertion needs no second field."""
    return micro_X[["temperature"]]


@pytest.fixture(scope="session")
def meso_X():
    """4 meso samples, 64 × 64 grid: 2 × 2 tokens of the micro size."""
    from skmld.datasets import make_pore_collapse

    return make_pore_collapse("meso", 4, shape=(64, 64), n_steps=4, random_state=1)


@pytest.fixture(scope="session")
def micro_pipe(micro_X):
    from sklearn.pipeline import Pipeline

    from skmld import MicroDynamicsEstimator, PatchTokenizer

    est = MicroDynamicsEstimator(decoupled_epochs=1, coupled_epochs=1, **TINY)
    with eagerly():
        return Pipeline([("tokens", PatchTokenizer(patch_size=32)), ("micro", est)]).fit(micro_X)


@pytest.fixture(scope="session")
def meso_pipe(micro_pipe, meso_X):
    from sklearn.pipeline import Pipeline

    from skmld import MesoDynamicsEstimator, PatchTokenizer

    tokens = PatchTokenizer(patch_size=micro_pipe["tokens"].token_shape_, ranges=micro_pipe["tokens"].ranges_)
    est = MesoDynamicsEstimator(micro_pipe["micro"], epochs=1, horizons=(1,), batch_size=8, random_state=0)
    with eagerly():
        return Pipeline([("tokens", tokens), ("meso", est)]).fit(meso_X)


@pytest.fixture
def raise_if_dask_computes():
    """Context manager factory: fail once dask computes more than ``max_computes`` times (as in xarray's tests)."""
    from contextlib import contextmanager

    import dask

    class CountingScheduler:
        def __init__(self, max_computes):
            self.max_computes, self.total = max_computes, 0

        def __call__(self, dsk, keys, **kwargs):
            self.total += 1
            if self.total > self.max_computes:
                raise RuntimeError(f"Too many dask computes: {self.total} > {self.max_computes}")
            return dask.get(dsk, keys, **kwargs)

    @contextmanager
    def limit(max_computes=0):
        scheduler = CountingScheduler(max_computes)
        with dask.config.set(scheduler=scheduler):
            yield scheduler

    return limit


@pytest.fixture
def predict_in_fresh_process(tmp_path):
    """``f(model, X) -> ndarray``: unpickle ``model`` in a new Python process and predict ``X`` there."""
    import pickle
    import subprocess
    import sys
    import textwrap

    import numpy as np

    def run(model, X):
        (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
        (tmp_path / "X.pkl").write_bytes(pickle.dumps(X))
        code = textwrap.dedent(f"""
            import pickle, numpy as np
            model = pickle.load(open({str(tmp_path / 'model.pkl')!r}, "rb"))
            X = pickle.load(open({str(tmp_path / 'X.pkl')!r}, "rb"))
            np.save({str(tmp_path / 'pred.npy')!r}, model.predict(X).values)
        """)
        subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
        return np.load(tmp_path / "pred.npy")

    return run
