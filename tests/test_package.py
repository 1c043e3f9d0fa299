"""Tests of the package namespace (skmld/__init__.py): lazy subpackages, a cheap ``import skmld``."""

import subprocess
import sys
import textwrap

import pytest

import skmld


def test_subpackages_load_on_first_access_without_tensorflow():
    # A fresh interpreter: this one may have imported TensorFlow or the subpackages already.
    code = textwrap.dedent("""
        import sys
        import skmld
        assert "skmld.datasets" not in sys.modules
        ds = skmld.datasets.make_pore_collapse("micro", 1, random_state=0, shape=(32, 48), n_steps=2)
        assert callable(skmld.plotting.plot_rollout) and callable(skmld.persistence.load)
        assert callable(skmld.metrics.hotspot_rmse) and skmld.exceptions.UnitsWarning
        heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
        assert not heavy, heavy
        print(dict(ds.sizes))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "'sample': 1" in out.stdout


def test_dir_lists_subpackages_and_unknown_names_raise():
    names = dir(skmld)
    for name in ("datasets", "metrics", "plotting", "persistence", "baselines", "nn", "open_fields", "load"):
        assert name in names
    assert skmld.datasets is sys.modules["skmld.datasets"]
    with pytest.raises(AttributeError, match="module 'skmld' has no attribute 'bogus'"):
        skmld.bogus  # noqa: B018
