"""Cross-process determinism: the same random_state gives the same fit and predictions (CPU).

Two fresh Python processes fit the same tiny micro pipeline on the same data
with the same ``random_state``; their ``history_`` must be equal float for float
and their predictions (mean and the sampled standard deviation) bit for bit.
The contract and its limits (GPU, oneDNN, thread counts) are in docs/reliability.md.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import TINY

SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # CPU: the determinism contract
    import numpy as np
    import tensorflow as tf
    tf.config.optimizer.set_experimental_options({{"disable_meta_optimizer": True}})  # as in the test session
    from sklearn.pipeline import Pipeline
    from skmld import MicroDynamicsEstimator, PatchTokenizer
    from skmld.datasets import make_pore_collapse

    out = sys.argv[1]
    X = make_pore_collapse("micro", 3, shape=(32, 32), n_steps=3, random_state=0)
    X = X[["temperature"]]  # one field: half the cost of three
    # The VAE and the coupled stage: the decoupled stage runs the coupled stage's training step.
    est = MicroDynamicsEstimator(decoupled_epochs=0, coupled_epochs=1, validation_fraction=0.34, **{tiny!r})
    pipe = Pipeline([("tokens", PatchTokenizer(patch_size=32)), ("micro", est)]).fit(X)
    mean, std = pipe["micro"].predict(pipe["tokens"].transform(X), return_std=True, n_draws=3)
    with open(os.path.join(out, "history.json"), "w") as f:
        json.dump(pipe["micro"].history_, f)
    np.save(os.path.join(out, "mean.npy"), mean.values)
    np.save(os.path.join(out, "std.npy"), std.values)
""")


def _fit_in_processes(tmp_path, n=2):
    """Start ``n`` processes at once (each one short fit) and return their output folders."""
    code = SCRIPT.format(tiny=TINY)
    outs = [tmp_path / f"run{i}" for i in range(n)]
    procs = []
    for out in outs:
        out.mkdir()
        procs.append(subprocess.Popen([sys.executable, "-c", code, str(out)], stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-3000:]
    return outs


@pytest.mark.slow
def test_same_random_state_same_history_and_predictions_across_processes(tmp_path):
    a, b = _fit_in_processes(tmp_path)
    history_a = json.loads((a / "history.json").read_text())
    history_b = json.loads((b / "history.json").read_text())
    assert [r["stage"] for r in history_a] == ["vae", "coupled"]
    assert "val_loss" in history_a[0]  # the validation split is seeded too
    assert history_a == history_b  # exact float equality, every loss term of every epoch
    for name in ("mean.npy", "std.npy"):
        pa, pb = np.load(a / name), np.load(b / name)
        assert np.isfinite(pa).all()
        assert np.array_equal(pa, pb), name
