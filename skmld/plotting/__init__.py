"""Figures for rollouts, hotspot metrics, probabilistic scores and training histories.

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot, so
no display or GUI backend is needed and no global figure state is kept), returns
it, and saves it as PNG when given ``path``. Inputs are physical fields: convert
tokens with ``tokenizer.inverse_transform(...)`` first. :func:`plot_reliability`
and :func:`plot_spread_skill` take the Dataset of
:func:`skmld.metrics.probabilistic_scores`.
"""

from skmld.metrics import _as_array, _field_units, hotspot_metrics
from skmld.plotting._common import _DPI, _check_physical, _extent, _limits, _save
from skmld.plotting._history import plot_history
from skmld.plotting._probabilistic import plot_reliability, plot_spread_skill
from skmld.plotting._rollouts import _shift, plot_hotspots, plot_rollout

__all__ = ["plot_history", "plot_hotspots", "plot_reliability", "plot_rollout", "plot_spread_skill"]
