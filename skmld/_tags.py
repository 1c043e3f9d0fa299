"""The scikit-learn tags every skmld estimator shares."""

from __future__ import annotations


class FieldDataTags:
    """Mixin: the estimator needs fitting, takes no target, and reads labelled field data, not a feature array.

    Put it before :class:`sklearn.base.BaseEstimator` in the bases.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        tags.target_tags.required = False
        # xarray fields (or token arrays), not a 2-D (or 3-D) feature array.
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = False
        return tags
