"""The main job, ``python -m skmld demo``: micro model → meso transfer vs from scratch.

Steps (see ``docs/user_guide.md`` for the same in code):

1. simulate micro (one pore) and meso (many pores) pore-collapse data;
2. fit the micro pipeline ``PatchTokenizer → MicroDynamicsEstimator``;
3. fit the meso pipeline on a few meso samples twice: with the micro model as
   backbone (transfer) and without (from scratch), same data and meso epochs;
4. evaluate both, and the persistence and climatology baselines, on held-out
   meso samples: per-field R² and RMSE in physical units, graded and paper
   hotspot metrics, ±1σ/±2σ coverage, fit times; and the micro VAE's
   reconstruction of held-out micro samples;
5. calibrate the transfer model's ensemble spread on meso samples of its own
   (:class:`~skmld.CalibratedDynamics`) and score coverage, spread–skill and
   CRPS before and after, on the held-out and on the calibration samples;
6. print the tables, write figures, ``results.json`` and the fitted,
   calibrated meso pipeline.

Sizes come from presets (``PRESETS``): ``"default"`` (9–24 min on the 2-core CPUs measured),
``"quick"`` (≤ 3 min) and ``"tiny"`` (tests only; ``SKMLD_DEMO_TINY=1``).
"""

from skmld._demo._config import PRESETS, TINY_ENV, DemoConfig, configure_tensorflow, resolve_config
from skmld._demo._evaluate import HOT_THRESHOLDS, _micro_reconstruction, _physical_std  # noqa: F401 (benchmarks)
from skmld._demo._report import MODELS, format_table, format_uncertainty_table
from skmld._demo._run import main, run_demo

__all__ = ["DemoConfig", "HOT_THRESHOLDS", "MODELS", "PRESETS", "TINY_ENV", "configure_tensorflow", "format_table",
           "format_uncertainty_table", "main", "resolve_config", "run_demo"]
