"""skmld._state: the fitted state declared once (FittedState, Slot) and the checks of stored attributes.

A small fake estimator stands in for skmld's classes, so no network is fitted here.
"""

import pickle

import numpy as np
import pytest
import xarray as xr
from sklearn.base import BaseEstimator

from skmld import PatchTokenizer
from skmld import _state
from skmld._state import FittedState, Slot, short


class Strategy:
    """Stands in for a runtime resource of this process (a distribute strategy)."""


class Fake(FittedState, BaseEstimator):
    _fitted_attrs = {"n_": ("an int", _state.is_int), "names_": ("a list of field names", _state.str_list)}
    _optional_fitted_attrs = {"scale_": ("a number", _state.is_num)}
    _runtime_attrs = ("_cache",)
    _runtime_params = ("strategy",)

    def __init__(self, alpha=1.0, strategy=None):
        self.alpha = alpha
        self.strategy = strategy

    def fit(self, X=None):
        self.n_, self.names_, self.scale_ = 3, ["temperature", "pressure"], 0.5
        self._cache = object()  # rebuilt on use: never stored
        return self


class FakeWithNetworks(Fake):
    """Records the network state it is given back; its networks are plain strings."""

    def _network_state(self):
        return {"fields": ["temperature"], "latent_channels": 2, "models": {"encoder": "enc", "decoder": "dec"}}

    def _set_network_state(self, state):
        self.restored_ = state


def test_state_is_params_and_fitted_attrs_without_runtime_ones():
    est = Fake(alpha=2.5, strategy=Strategy()).fit()
    expected = {"alpha": 2.5, "strategy": None, "n_": 3, "names_": ["temperature", "pressure"], "scale_": 0.5}
    assert est.__getstate__() == expected
    assert est._fitted_state() == {k: expected[k] for k in ("n_", "names_", "scale_")}
    again = pickle.loads(pickle.dumps(est))
    # The runtime parameter comes back as None and the cache not at all; the instance keeps both.
    assert vars(again) == expected
    assert again.get_params() == {"alpha": 2.5, "strategy": None}
    assert isinstance(est.strategy, Strategy) and "_cache" in vars(est)


def test_network_state_is_serialized_per_model_and_restored(monkeypatch):
    import skmld._base

    monkeypatch.setattr(skmld._base, "_serialize", lambda m: ("serialized", m))
    monkeypatch.setattr(skmld._base, "_deserialize", lambda s: ("restored", s[1]))
    est = FakeWithNetworks().fit()
    state = est.__getstate__()
    assert state["_networks_state"] == {"fields": ["temperature"], "latent_channels": 2,
                                        "models": {"encoder": ("serialized", "enc"), "decoder": ("serialized", "dec")}}
    again = FakeWithNetworks.__new__(FakeWithNetworks)
    again.__setstate__(state)
    # The networks go to _set_network_state, not into the instance's attributes.
    assert again.restored_ == {"fields": ["temperature"], "latent_channels": 2,
                               "models": {"encoder": ("restored", "enc"), "decoder": ("restored", "dec")}}
    assert "_networks_state" not in vars(again) and again.n_ == 3
    with pytest.raises(TypeError, match="a Fake has no networks"):
        Fake()._set_network_state({})


def test_state_problem_names_the_attribute_and_what_it_must_be():
    good = {"n_": 3, "names_": ["temperature"]}
    assert Fake._state_problem(good) is None
    assert Fake._state_problem({**good, "scale_": 2.0}) is None  # optional: checked where present
    assert Fake._state_problem({"names_": []}) == "fitted attribute 'n_' is missing; expected an int."
    assert Fake._state_problem({**good, "n_": "3"}) == f"fitted attribute 'n_' must be an int, got {short('3')}."
    assert Fake._state_problem({**good, "names_": ["a", 1]}) == (
        f"fitted attribute 'names_' must be a list of field names, got {short(['a', 1])}.")
    assert Fake._state_problem({**good, "scale_": True}) == (
        f"fitted attribute 'scale_' must be a number, got {short(True)}.")


def test_short_names_the_type_and_cuts_long_reprs():
    assert short(3) == "int 3" and short("3") == "str '3'" and short([1, None]) == "list [1, None]"
    long = "x" * 100
    assert short(long) == "str '" + "x" * 79 + "..."  # the repr's first 80 characters
    assert short("x" * 78) == "str '" + "x" * 78 + "'"  # exactly 80: not cut


def test_fitted_tokenizer_state_passes_its_own_checks_and_each_missing_attr_is_named(micro_X):
    # Every declared attribute is in a real fitted state, and a state without one is refused by its name.
    state = PatchTokenizer(patch_size=32).fit(micro_X).__getstate__()
    assert PatchTokenizer._state_problem(state) is None
    for name, (what, _) in PatchTokenizer._fitted_attrs.items():
        assert name in state
        rest = {k: v for k, v in state.items() if k != name}
        assert PatchTokenizer._state_problem(rest) == f"fitted attribute {name!r} is missing; expected {what}."


def test_slot_defaults_to_a_fitted_estimator():
    slot = Slot(("MicroDynamicsEstimator",))
    assert slot.classes == ("MicroDynamicsEstimator",) and slot.unfitted is False
    assert Slot(("A", "B"), unfitted=True) == (("A", "B"), True)


NAN = float("nan")
CHECKS = [
    # (check, accepted stored values, refused near misses)
    (_state.is_int, [0, 7, -2], [True, 1.0, "1", None]),
    (_state.is_num, [0, 2.5, -1], [False, "1", None, [1]]),
    (_state.int_tuple(2), [(0, 3), (32, 32)], [[0, 3], (1,), (1, 2, 3), (1, -1), (1, True), (1.0, 2)]),
    (_state.str_list, [[], ["a", "b"]], [("a",), ["a", 1], "ab"]),
    (_state.str_dict, [{}, {"a": "K"}], [{"a": 1}, {1: "K"}, [("a", "K")]]),
    (_state.ranges, [{"t": (0, 1.5)}], [{"t": [0, 1]}, {"t": (0,)}, {"t": (0, "1")}, {"t": (True, 1)}, {1: (0, 1)}]),
    (_state.bounds, [{"t": (None, 1.0)}, {"t": [0.0, None]}],
     [{"t": (0, 1.0)}, {"t": (NAN, None)}, {"t": (None,)}, {"t": (None, float("inf"))}]),
    (_state.history, [[], [{"loss": 0.5, "stage": "vae"}]], [[{"loss": None}], [[1]], {"loss": 1.0}]),
    (_state.variables, [{"a": xr.Variable("x", [1])}], [{"a": np.array([1])}, {1: xr.Variable("x", [1])}]),
    (_state.latent_range, [np.array([[0.0, -1.0], [1.0, -1.0]])],
     [np.array([[0.0], [1.0]], np.float32), np.array([[1.0], [0.0]]), np.array([[NAN], [1.0]]),
      np.zeros((3, 2)), np.zeros((2, 0)), [[0.0], [1.0]]]),
    (_state.matrix("f"), [np.zeros((2, 1)), np.ones((1, 3))],
     [-np.ones((2, 1)), np.zeros((2, 1), np.int64), np.zeros((2, 1), np.float32), np.zeros(2),
      np.full((1, 1), np.inf), np.zeros((2, 0))]),
    (_state.matrix("i"), [np.zeros((1, 1), np.int64)], [np.zeros((1, 1)), np.zeros((1, 1), np.int32)]),
]


@pytest.mark.parametrize("check, good, bad", CHECKS, ids=[str(i) for i in range(len(CHECKS))])
def test_checks_accept_the_stored_forms_and_refuse_near_misses(check, good, bad):
    assert [check(v) for v in good] == [True] * len(good)
    assert [check(v) for v in bad] == [False] * len(bad)
