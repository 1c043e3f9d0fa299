"""Field data sets: the synthetic pore-collapse simulator and readers of other layouts."""

from skmld.datasets._pore_collapse import make_pore_collapse
from skmld.datasets._reference import from_reference_arrays

__all__ = ["from_reference_arrays", "make_pore_collapse"]
