"""Climatology: the training simulations' mean at each time and cell."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import xarray as xr

from skmld.baselines._base import _Baseline, _broadcast, _computed, _same_times
from skmld.fields import is_lazy as _is_lazy


class ClimatologyBaseline(_Baseline):
    """Climatology forecast: the training simulations' mean at each time and cell.

    Ignores the initial state of ``X``: every sample is predicted as the mean
    over the training samples at the same time index (time index 0 included,
    although ``score`` excludes it) and cell. It is the best forecast that
    knows only *when*, not *which* simulation: a dynamics model must beat it
    to show that it uses the initial state.

    Attributes
    ----------
    fields_ : list of str
        Field names seen in ``fit``, in order; ``predict`` and ``score`` need
        the same.
    token_shape_ : (int, int) or None
        Token (patch) shape seen in ``fit``; ``None`` for plain field data.
    grid_shape_ : (int, int) or None
        Token grid ``(token_y, token_x)`` seen in ``fit``; ``None`` for plain
        field data.
    ranges_ : dict of str to (float, float) or None
        The tokenizer's scaling range per field recorded in the fitted tokens'
        attrs; ``None`` for plain field data (or tokens without ranges).
    time_ : numpy.ndarray
        Time coordinate of the training data, ``(n_times,)``.
    climatology_ : numpy.ndarray
        float32 ``(n_times, Y, X, n_fields)``: the mean over training samples at
        each time and cell. ``Y, X`` is the grid (for tokens the stitched,
        padded token grid ``token_y * patch_y, token_x * patch_x``), fields last.
    std_ : numpy.ndarray
        float32, shape of ``climatology_``: the standard deviation over training
        samples (``ddof=0``, so 0 for a single sample).

    See Also
    --------
    PersistenceBaseline : The initial state, repeated.
    skmld.metrics.r2_per_field : The per-field R² behind ``score``.

    Notes
    -----
    The climatology is aligned with ``X`` by time index from ``X``'s first time
    step, so ``X`` must start where the training simulations started and have
    their time step (checked on the time coordinate); it can predict at most the
    fitted number of times. Inside a pipeline it is fitted on, and predicts, the
    tokenizer's scaled tokens.

    Examples
    --------
    >>> import numpy as np, skmld
    >>> from sklearn.pipeline import Pipeline
    >>> from skmld.baselines import ClimatologyBaseline
    >>> from skmld.datasets import make_pore_collapse
    >>> ds = make_pore_collapse("micro", 2, shape=(32, 32), n_steps=4, random_state=0)
    >>> clim = ClimatologyBaseline().fit(skmld.as_fields(ds))
    >>> clim.climatology_.shape
    (4, 32, 32, 3)
    >>> pipe = Pipeline([("tokens", skmld.PatchTokenizer(patch_size=16, multiple_of=8)),
    ...                  ("baseline", ClimatologyBaseline())]).fit(ds)
    >>> fields = pipe["tokens"].inverse_transform(pipe.predict(ds))
    >>> dict(fields.sizes)
    {'sample': 2, 'time': 4, 'y': 32, 'x': 32}
    >>> bool(np.allclose(fields["temperature"].isel(sample=0), ds["temperature"].mean("sample"), rtol=1e-5))
    True
    >>> one = ds.isel(sample=[0])  # the mean of one simulation is that simulation
    >>> ClimatologyBaseline().fit(one).score(one)
    1.0
    """

    def __init__(self):
        pass

    def _fit_domain(self, x, layout) -> None:
        self.ranges_ = (
            {f: (float(lo), float(hi)) for f, (lo, hi) in zip(layout.fields, layout.ranges)}
            if layout.ranges is not None else None
        )
        self.time_ = np.asarray(layout.time.values).copy()
        # C order: the memory layout (hence the summation order in score) survives pickling.
        self.climatology_ = np.ascontiguousarray(_computed(x.mean(axis=0, dtype=np.float64)), dtype=np.float32)
        self.std_ = np.ascontiguousarray(_computed(x.std(axis=0, dtype=np.float64)), dtype=np.float32)

    def _check_compatible(self, layout, name: str) -> None:
        fitted = "tokens" if self.token_shape_ is not None else "plain field data"
        given = "tokens" if layout.tokens else "plain field data"
        if fitted != given:
            raise ValueError(
                f"{name} is {given} but ClimatologyBaseline was fitted on {fitted}; predict the layout it was "
                "fitted on (in a pipeline, pass the raw fields to the pipeline, not to its last step)."
            )
        if layout.tokens:
            for what, got, want in (("token shape (patch_y, patch_x)", layout.token_shape, self.token_shape_),
                                    ("token grid (token_y, token_x)", layout.grid_shape, self.grid_shape_)):
                if tuple(got) != tuple(want):
                    raise ValueError(
                        f"{name} has {what} {tuple(got)} but ClimatologyBaseline was fitted on {tuple(want)}; "
                        "the climatology is per cell, so the grid must match."
                    )
            if self.ranges_ is not None and layout.ranges is not None:
                got = np.asarray(layout.ranges, dtype=float)
                want = np.asarray([self.ranges_[f] for f in self.fields_], dtype=float)
                if not np.allclose(got, want, rtol=1e-6, atol=0):
                    raise ValueError(
                        f"{name}'s tokens were scaled with ranges {got.tolist()} but ClimatologyBaseline was "
                        f"fitted on tokens scaled with {want.tolist()}; use the same tokenizer."
                    )
        else:
            shape = tuple(layout.domain_shape)
            want = tuple(self.climatology_.shape[1:3])
            if shape != want:
                raise ValueError(
                    f"{name} has grid shape {shape} (y, x) but ClimatologyBaseline was fitted on {want}; "
                    "the climatology is per cell, so the grid must match."
                )

    def _output_layout(self, layout):
        # X's own times, then the fitted ones (a single-step X has no spacing to extend).
        own = np.asarray(layout.time.values)
        if own.size >= self.time_.size:
            return layout
        values = np.concatenate([own, self.time_[own.size:].astype(own.dtype)])
        return replace(layout, time=xr.DataArray(values, dims="time", attrs=layout.time.attrs, name="time"))

    def _predict_domain(self, x, layout, n_steps, return_std):
        n_times = self.climatology_.shape[0]
        if n_steps + 1 > n_times:
            raise ValueError(
                f"n_steps={n_steps} asks for {n_steps + 1} time steps but ClimatologyBaseline was fitted on "
                f"{n_times} time steps; predict at most n_steps={n_times - 1}."
            )
        # X's own times must be the fitted ones; beyond them the fitted times continue (_output_layout).
        times = np.asarray(layout.time.values[: n_steps + 1])
        if not _same_times(times, self.time_[: times.size]):
            raise ValueError(
                f"X's time coordinate {times.tolist()} differs from the fitted one "
                f"{self.time_[: times.size].tolist()}; the climatology is aligned by time index, so X must "
                "start at the training data's first time and share its time step."
            )
        shape = (x.shape[0], n_steps + 1) + self.climatology_.shape[1:]
        lazy = _is_lazy(x)
        mean = _broadcast(self.climatology_[: n_steps + 1], shape, lazy)
        std = _broadcast(self.std_[: n_steps + 1], shape, lazy) if return_std else None
        return mean, std

    def predict(self, X, n_steps: int | None = None, return_std: bool = False):
        """The climatology's first ``n_steps + 1`` times, for every sample of ``X``.

        Parameters
        ----------
        X : xarray.DataArray or xarray.Dataset
            Data in the layout seen in ``fit`` (tokens with the same token shape,
            token grid and scaling ranges, or plain field data on the same grid),
            with the fitted fields in the fitted order. Only its samples, grid
            and time coordinate are used, not its values.
        n_steps : int, default=None
            Steps to predict; ``None`` means ``X``'s time length − 1. At most the
            fitted number of times − 1.
        return_std : bool, default=False
            Also return the standard deviation over the training samples.

        Returns
        -------
        pred : same type and layout as ``X``
            float32, ``n_steps + 1`` times, the training mean at each time
            (time index 0 included) and cell, the same for every sample. Tokens
            keep ``X``'s attrs, so the pipeline's
            ``PatchTokenizer.inverse_transform`` maps them back to physical units.
        std : same type and layout as ``X``
            Only when ``return_std``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        ValueError
            If ``n_steps + 1`` exceeds the fitted number of times, if ``X``'s
            fields, layout, grid, token scaling or time coordinate differ from
            the fitted ones, or ``n_steps`` is not a positive int.
        """
        return self._predict(X, n_steps, return_std)
