"""skmld: multiscale latent dynamics of coupled physical fields, the scikit-learn way.

The data layer (fields, tokenizer, datasets, metrics) needs no TensorFlow; the
estimators import it lazily so ``import skmld`` stays fast.
"""

from skmld.baselines import ClimatologyBaseline, PersistenceBaseline
from skmld.fields import as_fields, open_fields, validate_fields, write_fields
from skmld.tokenizer import PatchTokenizer

__version__ = "0.1.0"

_LAZY = {
    "CalibratedDynamics": "skmld.calibration",
    "MicroDynamicsEstimator": "skmld.micro",
    "MesoDynamicsEstimator": "skmld.meso",
    "load": "skmld.persistence",
}

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
    "validate_fields",
    "write_fields",
]


def __getattr__(name):
    # Import TensorFlow-backed parts only when first used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'skmld' has no attribute {name!r}")
