"""skmld: multiscale latent dynamics of coupled physical fields, the scikit-learn way.

The data layer (fields, tokenizer, datasets, metrics) needs no TensorFlow; the
estimators import it lazily so ``import skmld`` stays fast. Subpackages load on
first attribute access (``skmld.datasets.make_pore_collapse(...)`` works after
a bare ``import skmld``), as in SPEC 0001's lazy loading.
"""

import importlib
from typing import Any

from skmld.baselines import ClimatologyBaseline, PersistenceBaseline
from skmld.fields import as_fields, open_fields, validate_fields, write_fields
from skmld.tokenizer import PatchTokenizer

__version__ = "0.1.0"

_LAZY = {
    "CalibratedDynamics": "skmld.calibration",
    "MicroDynamicsEstimator": "skmld.micro",
    "MesoDynamicsEstimator": "skmld.meso",
    "load": "skmld.persistence",
    "save": "skmld.persistence",
    "predict_fields": "skmld.outputs",
}

# Public submodules, imported on first access (nn, micro, meso and calibration import TensorFlow).
_SUBMODULES = frozenset({
    "baselines", "calibration", "datasets", "exceptions", "fields", "meso", "metrics", "micro", "nn",
    "outputs", "persistence", "plotting", "tokenizer",
})

__all__ = [
    "CalibratedDynamics",
    "ClimatologyBaseline",
    "MesoDynamicsEstimator",
    "MicroDynamicsEstimator",
    "PatchTokenizer",
    "PersistenceBaseline",
    "as_fields",
    "load",
    "open_fields",
    "predict_fields",
    "save",
    "validate_fields",
    "write_fields",
]


def __getattr__(name: str) -> Any:
    # Import TensorFlow-backed parts and subpackages only when first used.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"skmld.{name}")
    raise AttributeError(f"module 'skmld' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *_SUBMODULES, "__version__"})
