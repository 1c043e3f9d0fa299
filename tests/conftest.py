"""Test-wide settings: quiet TensorFlow, and skip graph optimisation to keep tiny fits fast.

Grappler's graph rewrites change no results beyond float rounding but cost
seconds per traced training step; the tiny test models spend most of their
time being traced and optimised, not running.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_configure(config):
    try:
        import tensorflow as tf
    except ImportError:  # the data layer's tests need no TensorFlow
        return
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
