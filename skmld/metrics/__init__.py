"""Evaluation metrics for field rollouts: field errors and skill, hotspot metrics, calibration, scorers.

Everything here takes xarray objects and returns xarray objects, addresses
dimensions by name, and is built only from lazy xarray operations, so dask-backed
inputs stay lazy until ``.compute()`` (or ``float(...)``) is called. No TensorFlow.

The hotspot definitions follow the energetic-materials literature and the
reference implementation of Azarfar et al. (2025): a pixel is *hot* when its
temperature is strictly above ``threshold``; the hotspot temperature ``T_hs`` is
the mean temperature of the hot pixels (0 when there are none), the hotspot area
``A_hs`` is the hot-pixel count times the pixel area, and their rates are forward
differences over the time coordinate. Beside these all-or-nothing metrics,
:func:`hotspot_mask_scores` grades a prediction by the overlap of its hot pixels
with the true ones (F1, IoU), its number of hotspots and its excess heat
∫(T − θ)⁺ dA; :func:`skill_score` measures each field against a baseline.
Probabilistic rollouts — a mean and a std, or an ensemble of draws — are scored
by :func:`probabilistic_scores` (coverage, spread-skill ratio, CRPS), leaving
out the pixels :func:`pinned_mask` finds on a field's bound.

Modules: ``_common`` (input checks, alignment, units), ``_fields`` (field
errors and skill), ``_hotspots`` and ``_hotspot_masks`` (hotspot metrics),
``_pinned`` and ``_probabilistic`` (probabilistic rollouts), ``_scorers``.
"""

from skmld.metrics._common import (
    _HOTSPOT_VARS,
    _TOKEN_DIMS,
    DEFAULT_UNITS,
    INTERVAL_DIM,
    _align_time,
    _as_array,
    _as_array_unchecked,
    _check_result,
    _check_values,
    _coord_spacing,
    _field_units,
    _is_lazy,
    _pixel_area,
    _real,
    _temperature,
    _time_units,
)
from skmld.metrics._fields import field_rmse, r2_per_field, skill_score
from skmld.metrics._hotspot_masks import (
    _excess_heat,
    _f1_iou,
    _thresholds,
    hotspot_mask_scores,
)
from skmld.metrics._hotspots import (
    HOTSPOT_CONNECTIVITY,
    _count_regions,
    _forward_rate,
    _n_hotspots,
    hotspot_counts,
    hotspot_metrics,
    hotspot_rmse,
)
from skmld.metrics._pinned import pinned_mask
from skmld.metrics._probabilistic import (
    coverage,
    crps_ensemble,
    crps_gaussian,
    probabilistic_scores,
)
from skmld.metrics._scorers import (
    _FIELD_KINDS,
    _SCORERS,
    _THRESHOLD_KINDS,
    _after_first,
    _physical_std,
    _r2_physical,
    _rollout,
    _rollout_with_std,
    _Scorer,
    get_scorer,
    get_scorer_names,
)

__all__ = [
    "coverage",
    "crps_ensemble",
    "crps_gaussian",
    "field_rmse",
    "get_scorer",
    "get_scorer_names",
    "hotspot_counts",
    "hotspot_mask_scores",
    "hotspot_metrics",
    "hotspot_rmse",
    "pinned_mask",
    "probabilistic_scores",
    "r2_per_field",
    "skill_score",
]
