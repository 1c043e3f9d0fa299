"""Persistence: the initial state, repeated."""

from __future__ import annotations

import numpy as np

from skmld.baselines._base import _Baseline
from skmld.fields import is_lazy as _is_lazy


class PersistenceBaseline(_Baseline):
    """Persistence forecast: the initial state of ``X``, repeated at every time.

    The zero-skill reference of a rollout: a dynamics model that learned
    nothing about how the fields evolve predicts ``X``'s first time step for
    ever. It has no parameters, works on any grid and needs no training data
    (``fit`` only records the field names and, for tokens, the token layout).

    Attributes
    ----------
    fields_ : list of str
        Field names seen in ``fit``, in order; ``predict`` and ``score`` need
        the same.
    token_shape_ : (int, int) or None
        Token (patch) shape of the tokens seen in ``fit``; ``None`` for plain
        field data.
    grid_shape_ : (int, int) or None
        Token grid ``(token_y, token_x)`` seen in ``fit``; ``None`` for plain
        field data.

    See Also
    --------
    ClimatologyBaseline : The training mean at each time and cell.
    skmld.metrics.r2_per_field : The per-field R² behind ``score``.

    Examples
    --------
    >>> import numpy as np, skmld
    >>> from skmld.baselines import PersistenceBaseline
    >>> from skmld.datasets import make_pore_collapse
    >>> X = skmld.as_fields(make_pore_collapse("micro", 2, shape=(32, 32), n_steps=4, random_state=0))
    >>> pers = PersistenceBaseline().fit(X)
    >>> pred = pers.predict(X, n_steps=6)
    >>> pred.sizes["time"], pred["time"].values.tolist()
    (7, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0])
    >>> bool((pred.isel(time=-1) == X.isel(time=0)).all())
    True
    >>> bool(pers.score(X) < 1)
    True
    """

    def __init__(self):
        pass

    def _fit_domain(self, x, layout) -> None:
        pass

    def _predict_domain(self, x, layout, n_steps, return_std):
        shape = (x.shape[0], n_steps + 1) + tuple(x.shape[2:])
        if _is_lazy(x):
            mean = x[:, np.zeros(n_steps + 1, dtype=int)]
            std = None
            if return_std:
                import dask.array as da

                std = da.zeros(shape, dtype=x.dtype, chunks=mean.chunks)
            return mean, std
        mean = np.broadcast_to(x[:, :1], shape)
        return mean, (np.broadcast_to(np.zeros((), x.dtype), shape) if return_std else None)

    def predict(self, X, n_steps: int | None = None, return_std: bool = False):
        """Repeat ``X``'s first time step ``n_steps + 1`` times.

        Parameters
        ----------
        X : xarray.DataArray or xarray.Dataset
            Tokens from :class:`~skmld.PatchTokenizer`, or plain field data, with
            the fitted fields in the fitted order; any grid.
        n_steps : int, default=None
            Steps to predict; ``None`` means ``X``'s time length − 1. Longer
            rollouts extend the time coordinate with its spacing.
        return_std : bool, default=False
            Also return a standard deviation: zeros (persistence is
            deterministic).

        Returns
        -------
        pred : same type and layout as ``X``
            float32, ``n_steps + 1`` times, each equal to ``X``'s first time
            step. Tokens keep ``X``'s attrs, so the pipeline's
            ``PatchTokenizer.inverse_transform`` maps them back to physical units.
            Lazy if ``X`` is dask-backed.
        std : same type and layout as ``X``
            Zeros; only when ``return_std``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        ValueError
            If ``X``'s fields differ from the fitted ones, or ``n_steps`` is not
            a positive int.
        """
        return self._predict(X, n_steps, return_std)
