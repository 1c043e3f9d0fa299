"""Reference forecasts every dynamics model is judged against: persistence and climatology.

Both are estimators with the fit / predict / score interface of
:class:`~skmld.MicroDynamicsEstimator` and :class:`~skmld.MesoDynamicsEstimator`:
they take PatchTokenizer tokens, a canonical field DataArray or a field Dataset,
predict in the layout they are given, can end a ``Pipeline`` after a
:class:`~skmld.PatchTokenizer`, and can be cloned, cross-validated and pickled.
No TensorFlow here.

* :class:`PersistenceBaseline`: the initial state, repeated — what a model
  that learned no dynamics at all predicts.
* :class:`ClimatologyBaseline`: the training simulations' mean at each time
  and cell — what a model that ignores the initial state predicts at best.

``score`` is the mean over fields of each field's R² (:func:`skmld.metrics.r2_per_field`)
over samples, tokens or cells, and the times after the first, computed on ``X`` as
given (the tokenizer's [0, 1]-scaled tokens inside a pipeline).
"""

from skmld.baselines._climatology import ClimatologyBaseline
from skmld.baselines._persistence import PersistenceBaseline

__all__ = ["ClimatologyBaseline", "PersistenceBaseline"]
