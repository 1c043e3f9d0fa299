"""The fitted state of an estimator, declared once for pickle and for skmld's safe format.

A class mixing in :class:`FittedState` says what its fitted state is, and both
``pickle`` (``__getstate__``/``__setstate__``) and :mod:`skmld.persistence`
read and write it through that one declaration. No TensorFlow here.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np

__all__ = ["FittedState", "Slot"]


class Slot(NamedTuple):
    """A parameter or fitted attribute holding an estimator (stored as its own object)."""

    #: Names of the classes it may hold.
    classes: tuple[str, ...]
    #: Whether it may be unfitted while its owner is fitted.
    unfitted: bool = False


class FittedState:
    """Mixin: an estimator's fitted state, the same for pickle and :func:`skmld.persistence.save`.

    The state is the parameters (``get_params(deep=False)``, those of
    :attr:`_runtime_params` as ``None``) and every other attribute but those of
    :attr:`_runtime_attrs`; networks, if any, come from :meth:`_network_state`.
    """

    #: Fitted attributes every fitted instance has, in their stored form: name -> (what, check).
    _fitted_attrs: dict[str, tuple[str, Callable[[Any], bool]]] = {}
    #: Fitted attributes that files written by earlier versions lack, checked where present.
    _optional_fitted_attrs: dict[str, tuple[str, Callable[[Any], bool]]] = {}
    #: Attributes rebuilt from the state or cached on first use: never stored.
    _runtime_attrs: tuple[str, ...] = ()
    #: Parameters holding a runtime resource of this process (a strategy): stored as None.
    _runtime_params: tuple[str, ...] = ()
    #: Parameters and fitted attributes holding estimators.
    _estimator_slots: dict[str, Slot] = {}

    def _stored_params(self) -> dict:
        params = self.get_params(deep=False)
        return {**params, **{k: None for k in self._runtime_params if k in params}}

    def _fitted_state(self) -> dict:
        """Fitted attributes as stored (the networks apart)."""
        skip = {*self._get_param_names(), *self._runtime_attrs}
        return {k: v for k, v in vars(self).items() if k not in skip}

    def _set_fitted_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def _network_state(self) -> dict | None:
        """``{"fields", "latent_channels", "models": {name: keras.Model}}`` of the networks it owns, or None."""
        return None

    def _set_network_state(self, state: dict) -> None:
        raise TypeError(f"a {type(self).__name__} has no networks.")

    def _network_names(self) -> list[str] | None:
        """Names of the networks a fitted instance owns (known from its fitted attributes), or None."""
        return None

    @classmethod
    def _param_problem(cls, params: dict) -> str | None:
        """Why these parameters cannot be stored as data (``"has x=..., which ..."``), or None."""
        return None

    @classmethod
    def _state_problem(cls, state: dict) -> str | None:
        """What is wrong with a stored fitted state (files may be damaged or tampered with), or None."""
        for name, (what, ok) in cls._fitted_attrs.items():
            if name not in state:
                return f"fitted attribute {name!r} is missing; expected {what}."
            if not ok(state[name]):
                return f"fitted attribute {name!r} must be {what}, got {short(state[name])}."
        for name, (what, ok) in cls._optional_fitted_attrs.items():
            if name in state and not ok(state[name]):
                return f"fitted attribute {name!r} must be {what}, got {short(state[name])}."
        return None

    def __getstate__(self) -> dict:
        state = {**self._stored_params(), **self._fitted_state()}
        nets = self._network_state()
        if nets is not None:
            from skmld._base import _serialize

            state["_networks_state"] = {**nets, "models": {k: _serialize(m) for k, m in nets["models"].items()}}
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        nets = state.pop("_networks_state", None)
        self._set_fitted_state(state)
        if nets is not None:
            from skmld._base import _deserialize

            self._set_network_state({**nets, "models": {k: _deserialize(v) for k, v in nets["models"].items()}})


def short(value: Any) -> str:
    """``"<type> <repr>"``, cut at 80 characters, for error messages."""
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"


# Checks of stored fitted attributes, for the _fitted_attrs of the classes.
def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def positive_or_none(v) -> bool:
    return v is None or (isinstance(v, float) and math.isfinite(v) and v > 0)


def positive_pair(v) -> bool:
    """A pair of finite positive floats or None (a grid spacing, unknown where None)."""
    return isinstance(v, tuple) and len(v) == 2 and all(positive_or_none(x) for x in v)


def int_tuple(n: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, tuple) and len(v) == n and all(is_int(x) and x >= 0 for x in v)


def str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def str_dict(v) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())


def ranges(v) -> bool:
    return isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(r, tuple) and len(r) == 2 and all(is_num(x) for x in r)
        for k, r in v.items())


def bounds(v) -> bool:
    return isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(b, tuple | list) and len(b) == 2
        and all(x is None or (isinstance(x, float) and math.isfinite(x)) for x in b) for k, b in v.items())


def history(v) -> bool:
    return isinstance(v, list) and all(
        isinstance(r, dict) and all(isinstance(k, str) and (is_num(x) or isinstance(x, str)) for k, x in r.items())
        for r in v)


def variables(v) -> bool:
    import xarray as xr

    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, xr.Variable) for k, x in v.items())


def latent_range(v) -> bool:
    return (isinstance(v, np.ndarray) and v.dtype == np.float64 and v.ndim == 2 and v.shape[0] == 2
            and v.shape[1] >= 1 and bool(np.isfinite(v).all()) and bool((v[0] <= v[1]).all()))


def matrix(kind: str) -> Callable[[Any], bool]:
    """A non-negative 2-D array of 8-byte ``kind`` ("f": also finite), at least one column."""
    return lambda v: (isinstance(v, np.ndarray) and v.dtype.kind == kind and v.dtype.itemsize == 8 and v.ndim == 2
                      and v.shape[1] >= 1 and bool(np.isfinite(v).all()) and bool((v >= 0).all()))
