"""The demo's sizes and training settings: one frozen dataclass and its presets."""

from __future__ import annotations

import logging
import os
import platform
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from skmld._constants import HOTSPOT_THRESHOLD

logger = logging.getLogger("skmld.demo")

TINY_ENV = "SKMLD_DEMO_TINY"


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and training settings of one demo run."""

    n_micro: int
    n_meso_train: int
    n_meso_test: int
    micro_shape: tuple | None  # None: the preset's 64 x 96
    meso_shape: tuple | None  # None: the preset's 128 x 192
    n_steps: int | None  # snapshots per sample; None: the preset's 20
    filters: int
    dynamics_filters: int
    horizons: tuple
    vae_epochs: int
    decoupled_epochs: int
    coupled_epochs: int
    meso_epochs: int
    n_micro_test: int = 4
    n_meso_calibration: int = 4  # held-out meso samples the spread is calibrated on
    batch_size: int = 8
    learning_rate: float = 1e-3
    n_draws: int = 16
    hotspot_threshold: float = HOTSPOT_THRESHOLD
    fast_graphs: bool = True  # skip TensorFlow's graph optimiser (see configure_tensorflow)
    notes: dict = field(default_factory=dict)


PRESETS = {
    "default": DemoConfig(
        n_micro=32, n_meso_train=4, n_meso_test=4, micro_shape=None, meso_shape=None, n_steps=None,
        filters=8, dynamics_filters=8, horizons=(1, 2),
        vae_epochs=6, decoupled_epochs=2, coupled_epochs=2, meso_epochs=3,
    ),
    "quick": DemoConfig(
        n_micro=16, n_meso_train=2, n_meso_test=2, micro_shape=(32, 64), meso_shape=(64, 128), n_steps=12,
        filters=4, dynamics_filters=4, horizons=(1,),
        vae_epochs=4, decoupled_epochs=2, coupled_epochs=2, meso_epochs=2, n_meso_calibration=2,
    ),
    "tiny": DemoConfig(
        n_micro=4, n_meso_train=1, n_meso_test=1, micro_shape=(32, 32), meso_shape=(64, 64), n_steps=3,
        filters=2, dynamics_filters=2, horizons=(1,), batch_size=16,
        # No decoupled stage: each training stage costs seconds of tracing, whatever the data size.
        vae_epochs=1, decoupled_epochs=0, coupled_epochs=1, meso_epochs=1, n_draws=2, n_micro_test=1,
        n_meso_calibration=1,
    ),
}


def resolve_config(quick: bool = False, tiny: bool | None = None, **overrides) -> tuple[str, DemoConfig]:
    """Pick the preset (``tiny`` beats ``quick``; ``SKMLD_DEMO_TINY=1`` means tiny) and apply overrides."""
    if tiny is None:
        tiny = os.environ.get(TINY_ENV, "").strip().lower() not in ("", "0", "false", "no")
    name = "tiny" if tiny else "quick" if quick else "default"
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return name, replace(PRESETS[name], **overrides)


def configure_tensorflow(fast_graphs: bool) -> dict:
    """Quiet TensorFlow's logs and, with ``fast_graphs``, skip its graph optimiser, process-wide.

    For scripts (the benchmarks); returns the settings it replaced, which
    :func:`tensorflow_settings` puts back.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf_logger = logging.getLogger("tensorflow")
    before = {"log_level": tf_logger.level,
              "disable_meta_optimizer": tf.config.optimizer.get_experimental_options().get(
                  "disable_meta_optimizer", False)}
    if not logger.isEnabledFor(logging.INFO):
        # Every training stage builds its own compiled step, which TensorFlow reports as
        # "retracing"; expected here, so only shown with --verbose.
        tf_logger.setLevel(logging.ERROR)
    if fast_graphs:
        # Grappler's graph rewrites cost seconds per traced training step and change
        # nothing beyond float rounding; the demo's small models spend much of their
        # time being traced, so skip them.
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    return before


@contextmanager
def tensorflow_settings(fast_graphs: bool):
    """:func:`configure_tensorflow` for the duration of a ``with`` block; the process's settings come back after."""
    import tensorflow as tf

    before = configure_tensorflow(fast_graphs)
    try:
        yield
    finally:
        logging.getLogger("tensorflow").setLevel(before["log_level"])
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before["disable_meta_optimizer"]})


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("skmld", "tensorflow", "keras", "scikit-learn", "numpy", "xarray", "matplotlib", "joblib"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out
