"""Safe model files: round trips, determinism and refusal of bad files."""

import io
import json
import pickle
import warnings
import zipfile

import keras
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import skmld
from skmld import MesoDynamicsEstimator, MicroDynamicsEstimator, PatchTokenizer, persistence
from skmld.calibration import CalibratedDynamics
from skmld.datasets import make_pore_collapse

# One xdist worker: the module's fitted models are built once.
pytestmark = pytest.mark.xdist_group("persistence")

TINY = dict(filters=2, dynamics_filters=2, horizons=(1,), batch_size=4, random_state=0)
# A network is its Keras config and its weights.
NETWORK = "root/steps/1/models/coupled_mean.json"
WEIGHTS = "root/steps/1/models/coupled_mean.npz"


# ----------------------------------------------------------------------- fixtures
class _Fitted(dict):
    """Models fitted on first use, once per module; the micro and meso pipelines are the session's (tests/conftest.py).

    What is saved and loaded here is plumbing, not skill: the models of this
    module train for zero or one epoch.
    """

    def __init__(self, request):
        super().__init__()
        self.request = request

    def __missing__(self, key):
        shared = {"micro_X": "micro_X", "micro": "micro_pipe", "meso_X": "meso_X", "meso": "meso_pipe"}
        if key in shared:
            self[key] = self.request.getfixturevalue(shared[key])
        elif key == "meso_tokens":
            self["meso_tokens"] = self["meso"]["tokens"].transform(self["meso_X"])
        elif key in ("cal", "cal_X"):
            micro = self["micro"]
            X = make_pore_collapse("micro", 2, shape=(32, 64), n_steps=3, random_state=5)  # held out
            cal = CalibratedDynamics(micro["micro"], cv="prefit", n_draws=2).fit(micro["tokens"].transform(X))
            self["cal_X"] = X
            self["cal"] = Pipeline([("tokens", micro["tokens"]), ("meso", cal)])
        elif key == "cal_cv":
            tokens = self["micro"]["tokens"].transform(self["micro_X"])
            untrained = MicroDynamicsEstimator(vae_epochs=0, decoupled_epochs=0, coupled_epochs=0, **TINY)
            with pytest.warns(UserWarning, match="not clearly better"):  # no VAE epoch: named as not learnt
                self["cal_cv"] = CalibratedDynamics(untrained, cv=2, n_draws=2).fit(tokens)
        elif key == "scratch":
            scratch = MesoDynamicsEstimator(vae_epochs=1, decoupled_epochs=0, epochs=0, **TINY)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # a one-epoch VAE may be named as not learnt
                self["scratch"] = scratch.fit(self["meso_tokens"])
        else:
            raise KeyError(key)
        return self[key]


@pytest.fixture(scope="session")  # session: kept while the worker runs other modules' tests in between
def fitted(request):
    """Micro and meso pipelines and a from-scratch meso estimator, each fitted once when first used."""
    return _Fitted(request)


@pytest.fixture(scope="session")
def micro_file(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("files") / "micro.skmld"
    persistence.save(fitted["micro"], path)
    return path.read_bytes()


@pytest.fixture(scope="session")
def cal_file(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("files") / "cal.skmld"
    persistence.save(fitted["cal"], path)
    return path.read_bytes()


def _members(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _rezip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _edit_json(data: bytes, member: str, edit) -> bytes:
    members = _members(data)
    doc = json.loads(members[member])
    edit(doc)
    members[member] = json.dumps(doc).encode()
    return _rezip(members)


def _with_network(data: bytes, model: keras.Model) -> bytes:
    members = _members(data)
    members[NETWORK] = json.dumps(keras.saving.serialize_keras_object(model)).encode()
    return _rezip(members)


def _load_bytes(data: bytes, tmp_path):
    path = tmp_path / "model.skmld"
    path.write_bytes(data)
    return skmld.load(path)


# --------------------------------------------------------------------- comparisons
def _assert_same_value(a, b, where):
    assert type(a) is type(b), where
    if isinstance(a, xr.Variable):
        assert a.identical(b), where
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
        assert a.dtype == b.dtype, where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same_value(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_value(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _assert_same_estimator(a, b):
    assert type(a) is type(b)
    pa, pb = a.get_params(deep=False), b.get_params(deep=False)
    assert list(pa) == list(pb)
    for name in ("backbone", "estimator"):  # nested estimators
        if name in pa:
            if pa[name] is None:
                assert pb.pop(name) is None
                pa.pop(name)
            else:
                _assert_same_estimator(pa.pop(name), pb.pop(name))
    _assert_same_value(pa, pb, f"{type(a).__name__} params")
    skip = {"_networks", "_rollout_fn", *pa}
    sa = {k: v for k, v in vars(a).items() if k not in skip}
    sb = {k: v for k, v in vars(b).items() if k not in skip}
    _assert_same_value(sorted(sa), sorted(sb), "attribute names")
    for k in sa:
        if k in ("backbone", "estimator"):
            continue
        if k == "estimator_":
            _assert_same_estimator(sa[k], sb[k])
        else:
            _assert_same_value(sa[k], sb[k], f"{type(a).__name__}.{k}")
    if hasattr(a, "_networks"):
        na, nb = a._networks, b._networks
        assert sorted(na.models) == sorted(nb.models)
        assert (na.fields, na.latent_channels) == (nb.fields, nb.latent_channels)
        for name in na.models:
            for wa, wb in zip(na.models[name].get_weights(), nb.models[name].get_weights(), strict=True):
                np.testing.assert_array_equal(wa, wb, err_msg=name)


def _assert_same_pipeline(a, b):
    assert isinstance(b, Pipeline)
    assert [n for n, _ in a.steps] == [n for n, _ in b.steps]
    for (_, sa), (_, sb) in zip(a.steps, b.steps):
        _assert_same_estimator(sa, sb)
    assert {k: v for k, v in a.get_params(deep=False).items() if k != "steps"} == \
        {k: v for k, v in b.get_params(deep=False).items() if k != "steps"}


# ---------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name, data", [("micro", "micro_X"), ("meso", "meso_X")])
def test_pipeline_round_trip(fitted, tmp_path, name, data):
    pipe, X = fitted[name], fitted[data]
    path = tmp_path / f"{name}.skmld"
    persistence.save(pipe, path)
    back = skmld.load(path)
    _assert_same_pipeline(pipe, back)
    pred, pred_back = pipe.predict(X), back.predict(X)
    assert pred.identical(pred_back)
    assert pipe[0].inverse_transform(pred).identical(back[0].inverse_transform(pred_back))


def test_estimator_round_trip(fitted, tmp_path):
    micro = fitted["micro"]["micro"]
    tokens = fitted["micro"]["tokens"].transform(fitted["micro_X"])
    micro.save(tmp_path / "micro.skmld")
    back = skmld.load(tmp_path / "micro.skmld")
    _assert_same_estimator(micro, back)
    mean, std = micro.predict(tokens, return_std=True, n_draws=2)
    mean_back, std_back = back.predict(tokens, return_std=True, n_draws=2)
    assert mean.identical(mean_back) and std.identical(std_back)


def test_distribute_strategy_is_saved_and_pickled_as_none(fitted, tmp_path):
    """A strategy belongs to the process that made it: files and pickles hold distribute=None."""
    import copy

    import tensorflow as tf

    micro = copy.copy(fitted["micro"]["micro"])
    micro.distribute = tf.distribute.get_strategy()
    micro.save(tmp_path / "micro.skmld")
    assert skmld.load(tmp_path / "micro.skmld").distribute is None
    assert pickle.loads(pickle.dumps(micro)).distribute is None
    assert micro.distribute is not None  # the estimator itself keeps it


def test_meso_round_trip_keeps_backbone(fitted, tmp_path):
    meso = fitted["meso"]["meso"]
    meso.save(tmp_path / "meso.skmld")
    names = zipfile.ZipFile(tmp_path / "meso.skmld").namelist()
    # The meso estimator stores only the networks it trained; its backbone is a nested entry.
    assert sorted(n for n in names if n.startswith("root/models/")) == sorted(
        f"root/models/{name}.{ext}" for name in meso._owned_names() for ext in ("json", "npz"))
    assert "root/models/coupled_mean.json" in names
    if "vae" in meso.freeze:  # a frozen VAE is the backbone's, stored once with it
        assert not [n for n in names if n.startswith("root/models/encoder/")]
    assert "root/backbone/estimator.json" in names
    back = skmld.load(tmp_path / "meso.skmld")
    _assert_same_estimator(meso, back)
    # The loaded meso estimator runs on its loaded backbone's frozen networks.
    assert back._networks.models["encoder/temperature"] is back.backbone._networks.models["encoder/temperature"]
    assert meso.predict(fitted["meso_tokens"]).identical(back.predict(fitted["meso_tokens"]))


def test_meso_from_scratch_round_trip(fitted, tmp_path):
    scratch = fitted["scratch"]
    scratch.save(tmp_path / "scratch.skmld")
    back = skmld.load(tmp_path / "scratch.skmld")
    assert back.backbone is None
    _assert_same_estimator(scratch, back)
    assert scratch.predict(fitted["meso_tokens"]).identical(back.predict(fitted["meso_tokens"]))


def test_tokenizer_round_trip(fitted, tmp_path):
    tok = fitted["meso"]["tokens"]  # fixed ranges and patch size given as parameters
    persistence.save(tok, tmp_path / "tok.skmld")
    back = skmld.load(tmp_path / "tok.skmld")
    _assert_same_estimator(tok, back)
    X = fitted["meso_X"]
    assert tok.transform(X).identical(back.transform(X))
    assert back.inverse_transform(back.transform(X)).identical(tok.inverse_transform(tok.transform(X)))


def test_tokenizer_of_a_dataarray_round_trip(tmp_path):
    X = skmld.as_fields(make_pore_collapse("micro", 1, shape=(32, 32), n_steps=2, random_state=0))
    tok = PatchTokenizer(patch_size=(32, 32), pad_mode="reflect").fit(X)
    buf = io.BytesIO()
    persistence.save(tok, buf)
    back = skmld.load(io.BytesIO(buf.getvalue()))
    _assert_same_estimator(tok, back)
    assert back.inverse_transform(back.transform(X)).identical(tok.inverse_transform(tok.transform(X)))


def test_files_are_bit_identical(fitted, tmp_path, micro_file):
    persistence.save(fitted["micro"], tmp_path / "again.skmld")
    assert (tmp_path / "again.skmld").read_bytes() == micro_file
    # A loaded model writes the very same file.
    persistence.save(skmld.load(tmp_path / "again.skmld"), tmp_path / "reloaded.skmld")
    assert (tmp_path / "reloaded.skmld").read_bytes() == micro_file
    with zipfile.ZipFile(io.BytesIO(micro_file)) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == sorted(i.filename for i in infos)
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        manifest = json.loads(zf.read("manifest.json"))
        inner = zipfile.ZipFile(io.BytesIO(zf.read(WEIGHTS)))
        assert {i.date_time for i in inner.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert manifest["format_version"] == persistence.FORMAT_VERSION == 1
    assert manifest["object"]["class"] == "Pipeline"
    assert [s[1]["class"] for s in manifest["object"]["steps"]] == ["PatchTokenizer", "MicroDynamicsEstimator"]


def test_load_never_unpickles(fitted, tmp_path, monkeypatch, micro_file):
    persistence.save(fitted["meso"], tmp_path / "meso.skmld")

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    skmld.load(tmp_path / "meso.skmld")
    _load_bytes(micro_file, tmp_path)


def test_calibrated_pipeline_round_trip(fitted, tmp_path, cal_file):
    pipe, X = fitted["cal"], fitted["cal_X"]
    back = _load_bytes(cal_file, tmp_path)
    _assert_same_pipeline(pipe, back)
    cal, cal_back = pipe["meso"], back["meso"]
    assert type(cal_back) is CalibratedDynamics and cal_back.cv == "prefit"
    # cv="prefit": estimator_ is estimator, in the file (written once) and after loading.
    assert cal_back.estimator_ is cal_back.estimator
    manifest = json.loads(_members(cal_file)["manifest.json"])
    assert manifest["object"]["steps"][1][1]["estimator_"] == {"same_as": "root/steps/1/estimator/"}
    assert not [n for n in _members(cal_file) if n.startswith("root/steps/1/estimator_/")]
    for name in ("scale_", "offset_", "n_calibration_pixels_"):
        a, b = getattr(cal, name), getattr(cal_back, name)
        assert a.dtype == b.dtype and a.shape == b.shape == (3, X.sizes["time"])
        np.testing.assert_array_equal(a, b)
    mean, std = pipe.predict(X, return_std=True, n_draws=2)
    mean_back, std_back = back.predict(X, return_std=True, n_draws=2)
    np.testing.assert_allclose(mean_back.values, mean.values, rtol=0, atol=1e-6)
    np.testing.assert_allclose(std_back.values, std.values, rtol=0, atol=1e-6)
    # A loaded model writes the very same file.
    persistence.save(back, tmp_path / "again.skmld")
    assert (tmp_path / "again.skmld").read_bytes() == cal_file


def test_calibrated_cross_validated_round_trip(fitted, tmp_path):
    cal = fitted["cal_cv"]
    assert cal.estimator_ is not cal.estimator and not hasattr(cal.estimator, "fields_")
    persistence.save(cal, tmp_path / "cal.skmld")
    members = _members((tmp_path / "cal.skmld").read_bytes())
    manifest = json.loads(members["manifest.json"])
    assert manifest["object"]["estimator"]["fitted"] is False
    # The unfitted estimator is its parameters only; estimator_ has its own networks.
    assert [n for n in members if n.startswith("root/estimator/")] == ["root/estimator/estimator.json"]
    assert "root/estimator_/models/coupled_mean.json" in members
    back = skmld.load(tmp_path / "cal.skmld")
    _assert_same_estimator(cal, back)
    assert back.cv == 2 and back.estimator_ is not back.estimator
    with pytest.raises(NotFittedError):
        back.estimator.predict(fitted["cal_X"])
    tokens = fitted["micro"]["tokens"].transform(fitted["cal_X"])
    mean, std = cal.predict(tokens, return_std=True, n_draws=2)
    mean_back, std_back = back.predict(tokens, return_std=True, n_draws=2)
    np.testing.assert_allclose(mean_back.values, mean.values, rtol=0, atol=1e-6)
    np.testing.assert_allclose(std_back.values, std.values, rtol=0, atol=1e-6)

    # The unfitted estimator is allowed only there (one fixture: the cross-validated fit is the slow part).
    data = (tmp_path / "cal.skmld").read_bytes()
    # estimator_ pointing at the unfitted estimator: refused, it must be fitted.
    bad = _edit_json(data, "manifest.json", _set(["object", "estimator_"], {"same_as": "root/estimator/"}))
    with pytest.raises(ValueError, match=r"entry 'root/estimator_/' refers to 'root/estimator/', which is stored "
                                         r"unfitted"):
        _load_bytes(bad, tmp_path)
    bad = _edit_json(data, "root/estimator/estimator.json", _set(["fitted"], {}))
    with pytest.raises(ValueError, match=r"member 'root/estimator/estimator.json': an unfitted "
                                         r"MicroDynamicsEstimator holds parameters only"):
        _load_bytes(bad, tmp_path)


# --------------------------------------------------------------------- save errors
def test_save_calibrated_with_a_splitter_cv_raises(fitted, tmp_path):
    import copy

    from sklearn.model_selection import KFold

    pipe = fitted["cal"]
    cal = copy.copy(pipe["meso"])
    for cv in (KFold(2), [([0], [1])]):
        cal.cv = cv
        with pytest.raises(TypeError, match=r"CalibratedDynamics has cv=.* cannot store.* cv='prefit' or an int"):
            persistence.save(cal, tmp_path / "cal.skmld")
    with pytest.raises(TypeError, match=r"step 'meso' has cv=KFold"):
        persistence.save(Pipeline([("tokens", pipe["tokens"]), ("meso", copy.copy(cal).set_params(cv=KFold(2)))]),
                         tmp_path / "pipe.skmld")
    # Unfitted, the splitter is reported first; and only skmld's dynamics estimators can be calibrated.
    with pytest.raises(TypeError, match=r"has cv=KFold"):
        persistence.save(CalibratedDynamics(MicroDynamicsEstimator(), cv=KFold(2)), tmp_path / "u.skmld")
    cal.cv = "prefit"
    cal.estimator = cal.estimator_ = pipe["tokens"]
    with pytest.raises(TypeError, match=r"CalibratedDynamics's estimator is a skmld.tokenizer.PatchTokenizer"):
        persistence.save(cal, tmp_path / "cal.skmld")
    assert not list(tmp_path.iterdir())


def test_save_unfitted_raises(tmp_path):
    with pytest.raises(NotFittedError):
        MicroDynamicsEstimator().save(tmp_path / "m.skmld")
    with pytest.raises(NotFittedError):
        persistence.save(PatchTokenizer(), tmp_path / "t.skmld")
    with pytest.raises(NotFittedError):
        persistence.save(Pipeline([("tokens", PatchTokenizer()), ("micro", MicroDynamicsEstimator())]),
                         tmp_path / "p.skmld")
    assert not list(tmp_path.iterdir())


def test_save_refuses_foreign_objects(tmp_path):
    with pytest.raises(TypeError, match="step 'scale' is a sklearn.preprocessing._data.StandardScaler"):
        persistence.save(Pipeline([("scale", StandardScaler())]), tmp_path / "p.skmld")


# ----------------------------------------------------------------------- bad files
def _set(path, value):
    def edit(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


BAD_JSON = [
    ("manifest.json", _set(["format_version"], "1"), r"'format_version' must be an int, got str"),
    ("manifest.json", _set(["format"], "pickle"), r"'format' must be 'skmld'"),
    ("manifest.json", _set(["object", "steps"], {"tokens": 1}), r"must list the Pipeline's steps"),
    ("root/steps/1/estimator.json", _set(["fitted", "token_shape_"], "32x32"),
     r"member 'root/steps/1/estimator.json': fitted attribute 'token_shape_' must be a pair of ints, got str"),
    ("root/steps/1/estimator.json", _set(["fitted", "history_"], {"__tuple__": 3}),
     r"member 'root/steps/1/estimator.json': fitted.history_: expected a list, got int"),
    ("root/steps/1/estimator.json", _set(["fitted", "ranges_"], [1, 2]),
     r"fitted attribute 'ranges_' must be None or a dict of field -> \(min, max\), got list"),
    ("root/steps/1/estimator.json", _set(["params", "batch_size"], "4"),
     r"member 'root/steps/1/estimator.json': invalid MicroDynamicsEstimator parameters: .*batch_size"),
    ("root/steps/1/estimator.json", _set(["params", "evil"], 1),
     r"invalid MicroDynamicsEstimator parameters: .*evil"),
    ("root/steps/1/estimator.json", _set(["fitted", "predict"], 1), r"'predict' would shadow"),
    ("root/steps/1/estimator.json", _set(["networks", "models"], ["../../etc/passwd"]),
     r"networks.models names list \[.\.\./\.\./etc/passwd.\]; expected exactly \['coupled_log_var'"),
    ("root/steps/0/estimator.json", _set(["fitted", "_spatial_coords"], {"__dict__": [["y", {"__ndarray__": {
        "dtype": "float64", "shape": [3], "data": [1.0]}}]]}),
     r"member 'root/steps/0/estimator.json': fitted._spatial_coords: array of shape \[3\] needs 3 values, got 1"),
    ("root/steps/0/estimator.json", _set(["fitted", "_fit_kind"], "os.system"),
     r"fitted attribute '_fit_kind' must be 'Dataset' or 'DataArray'"),
    ("root/steps/0/estimator.json", _set(["fitted", "units_"], {"__evil__": 1}),
     r"fitted.units_: unknown tag '__evil__'"),
    ("root/steps/1/estimator.json", _set(["fitted", "latent_range_"], [[0.0], [1.0]]),
     r"fitted attribute 'latent_range_' must be a finite float64 array of shape \(2, n_latent_channels\)"),
]


@pytest.mark.parametrize("member, edit, match", BAD_JSON)
def test_wrong_json_types(micro_file, tmp_path, member, edit, match):
    with pytest.raises(ValueError, match=match):
        _load_bytes(_edit_json(micro_file, member, edit), tmp_path)


def test_file_without_latent_range_loads_with_unbounded_rollouts(micro_file, tmp_path):
    """Files of an earlier version have no ``latent_range_``: they load, and their rollouts are not bounded."""
    loaded = _load_bytes(_edit_json(micro_file, "root/steps/1/estimator.json",
                                    lambda doc: doc["fitted"].pop("latent_range_")), tmp_path)
    est = loaded[-1]
    assert "latent_range_" not in vars(est) and est._latent_limits() == (None, None)
    swapped = _edit_json(micro_file, "root/steps/1/estimator.json", lambda doc: doc["fitted"]["latent_range_"][
        "__ndarray__"]["data"].reverse())  # minima above maxima
    with pytest.raises(ValueError, match=r"fitted attribute 'latent_range_' must be .* minima <= maxima"):
        _load_bytes(swapped, tmp_path)


def _set_array(name, edit):
    def apply(doc):
        edit(doc["fitted"][name]["__ndarray__"])
    return apply


def _wrong_shape(body):
    n_fields, n_lead = body["shape"]
    body["shape"], body["data"] = [n_fields, n_lead - 1], body["data"][: n_fields * (n_lead - 1)]


CAL = "root/steps/1/estimator.json"
BAD_CALIBRATION = [
    (CAL, _set_array("scale_", _wrong_shape),
     r"member 'root/steps/1/estimator.json': fitted attribute 'scale_' has shape \(3, \d\); scale_, offset_ and "
     r"n_calibration_pixels_ must all have shape \(n_fields, n_lead_times\)"),
    (CAL, _set_array("scale_", lambda b: b["data"].__setitem__(0, -1.0)),
     r"member 'root/steps/1/estimator.json': fitted attribute 'scale_' must be a finite, non-negative float64 "
     r"array"),
    (CAL, _set_array("offset_", lambda b: b["data"].__setitem__(1, {"__float__": "nan"})),
     r"fitted attribute 'offset_' must be a finite, non-negative float64 array"),
    (CAL, _set_array("scale_", lambda b: b.__setitem__("dtype", "<f4")),
     r"fitted attribute 'scale_' must be a finite, non-negative float64 array"),
    (CAL, _set_array("n_calibration_pixels_", lambda b: b.__setitem__("dtype", "<f8")),
     r"fitted attribute 'n_calibration_pixels_' must be a non-negative int64 array"),
    (CAL, _set_array("offset_", lambda b: b.update(shape=[len(b["data"])])),
     r"fitted attribute 'offset_' must be a finite, non-negative float64 array of shape \(n_fields, n_lead_times\)"),
    (CAL, lambda doc: doc["fitted"]["fields_"].pop(),
     r"fitted attribute 'scale_' has shape \(3, \d\); .* with n_fields = len\(fields_\) = 2"),
    (CAL, lambda doc: doc["fitted"].pop("offset_"), r"fitted attribute 'offset_' is missing"),
    (CAL, _set(["fitted", "estimator_"], 1), r"fitted attribute 'estimator_' must not be here"),
    (CAL, _set(["params", "cv"], [[[0], [1]]]), r"param 'cv' must be 'prefit', an int or None"),
    ("manifest.json", _set(["object", "steps", 1, 1, "estimator_"], {"same_as": "root/steps/0/"}),
     r"the CalibratedDynamics's estimator_ must be a MicroDynamicsEstimator or MesoDynamicsEstimator, got a "
     r"PatchTokenizer"),
    ("manifest.json", _set(["object", "steps", 1, 1, "estimator_"], {"same_as": "root/elsewhere/"}),
     r"entry 'root/steps/1/estimator_/' must be \{\"same_as\": path\} with the path of an object stored before it"),
    ("manifest.json", _set(["object", "steps", 1, 1, "fitted"], False),
     r"entry 'root/steps/1/' has fitted=bool false; only a CalibratedDynamics's estimator may be stored unfitted"),
    ("manifest.json", _set(["object", "steps", 1, 1, "class"], "MicroDynamicsEstimator"),
     r"only a CalibratedDynamics has an estimator"),
]


@pytest.mark.parametrize("member, edit, match", BAD_CALIBRATION)
def test_damaged_calibration_is_refused(cal_file, tmp_path, member, edit, match):
    with pytest.raises(ValueError, match=match):
        _load_bytes(_edit_json(cal_file, member, edit), tmp_path)


def test_not_json(micro_file, tmp_path):
    members = _members(micro_file)
    members["root/steps/0/estimator.json"] = b"{not json"
    with pytest.raises(ValueError, match=r"member 'root/steps/0/estimator.json' .* is not valid JSON"):
        _load_bytes(_rezip(members), tmp_path)


@pytest.mark.parametrize("cls", ["Evil", "posix.system", "StandardScaler", None])
def test_unknown_class(micro_file, tmp_path, cls):
    data = _edit_json(micro_file, "manifest.json", _set(["object", "steps", 1, 1, "class"], cls))
    with pytest.raises(ValueError, match=rf"names class {cls!r}, which skmld does not load; allowed classes: "):
        _load_bytes(data, tmp_path)


def test_newer_format_version(micro_file, tmp_path):
    data = _edit_json(micro_file, "manifest.json", _set(["format_version"], 2))
    with pytest.raises(ValueError, match=r"has format_version 2, but this skmld \(.*\) reads format_version 1 "
                                         r"and older; upgrade skmld"):
        _load_bytes(data, tmp_path)


def test_not_a_zip(tmp_path):
    with pytest.raises(ValueError, match="not an skmld model file: not a readable zip archive"):
        _load_bytes(b"\x80\x04\x95 a pickle, maybe", tmp_path)


def test_truncated(micro_file, tmp_path):
    for size in (len(micro_file) // 2, len(micro_file) - 10, 100):
        with pytest.raises(ValueError, match=r"not an skmld model file.* truncated"):
            _load_bytes(micro_file[:size], tmp_path)


def test_corrupted_member(micro_file, tmp_path):
    info = zipfile.ZipFile(io.BytesIO(micro_file)).getinfo("root/steps/1/estimator.json")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data = bytearray(micro_file)
    data[start + 5] ^= 0xFF
    with pytest.raises(ValueError, match=r"member 'root/steps/1/estimator.json' \(parameters of the "
                                         r"MicroDynamicsEstimator\) is corrupted"):
        _load_bytes(bytes(data), tmp_path)


def test_every_single_bit_flip_loads_the_same_model_or_names_the_file(tmp_path):
    """A flipped bit anywhere (zip headers, directory, members) never escapes as a raw zipfile/numpy error."""
    X = xr.Dataset({"temperature": (("sample", "time", "y", "x"), np.linspace(300, 900, 2048).reshape(1, 2, 32, 32))})
    buf = io.BytesIO()
    persistence.save(PatchTokenizer().fit(X), buf)
    data = buf.getvalue()
    rng = np.random.default_rng(0)
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 1 << int(rng.integers(8))
        try:
            loaded = _load_bytes(bytes(flipped), tmp_path)
        except ValueError as e:
            assert "model file" in str(e) or "member" in str(e), (i, str(e))
        else:  # a bit no reader looks at (a timestamp, an unused header field)
            assert loaded.ranges_ == {"temperature": (300.0, 900.0)}, i


@pytest.mark.parametrize("member, what", [
    (NETWORK, "the Keras config of network 'coupled_mean'"),
    (WEIGHTS, "the weights of network 'coupled_mean'"),
    ("root/steps/0/estimator.json", "parameters of the PatchTokenizer"),
])
def test_missing_member(micro_file, tmp_path, member, what):
    members = _members(micro_file)
    del members[member]
    with pytest.raises(ValueError, match=rf"member {member!r} \({what}\) is missing"):
        _load_bytes(_rezip(members), tmp_path)


def test_missing_manifest(micro_file, tmp_path):
    members = _members(micro_file)
    del members["manifest.json"]
    with pytest.raises(ValueError, match="not an skmld model file, or it is truncated: member 'manifest.json' is "
                                         "missing"):
        _load_bytes(_rezip(members), tmp_path)


def test_network_member_not_keras(micro_file, tmp_path):
    members = _members(micro_file)
    members[WEIGHTS] = b"garbage"
    with pytest.raises(ValueError, match=rf"member {WEIGHTS!r}: not a valid .npz archive of weights"):
        _load_bytes(_rezip(members), tmp_path)


def test_network_with_bad_weights(micro_file, tmp_path):
    members = _members(micro_file)
    inner = _members(members[WEIGHTS])
    del inner[f"arr_{len(inner) - 1}.npy"]
    members[WEIGHTS] = _rezip(inner)
    with pytest.raises(ValueError, match=rf"member {WEIGHTS!r}: the weights do not fit the network"):
        _load_bytes(_rezip(members), tmp_path)


def _lambda_model():
    inputs = keras.Input((None, None, 8))
    return keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))


class Unregistered(keras.layers.Layer):
    def call(self, x):
        return x * 2


def _custom_model():
    inputs = keras.Input((None, None, 8))
    return keras.Model(inputs, Unregistered()(inputs))


@pytest.mark.parametrize("make, match", [
    (_lambda_model, "the network holds a Lambda layer, which stores Python bytecode"),
    (_custom_model, r"the network holds object 'Unregistered' .* neither a Keras built-in nor a custom object "
                    "registered by skmld"),
])
def test_network_with_code_is_refused(micro_file, tmp_path, monkeypatch, make, match):
    data = _with_network(micro_file, make())
    with pytest.raises(ValueError, match=rf"member {NETWORK!r}: {match}"):
        _load_bytes(data, tmp_path)
    # Keras's safe mode refuses them too: the config check is a second line, not the only one.
    monkeypatch.setattr(persistence._networks, "check_config", lambda *args: None)
    with pytest.raises(ValueError, match=rf"member {NETWORK!r}: Keras could not load the network in safe mode"):
        _load_bytes(data, tmp_path)


def test_unknown_skmld_object_is_a_keras_error(micro_file, tmp_path):
    members = _members(micro_file)
    assert b'"skmld>leaky_relu"' in members[NETWORK]
    members[NETWORK] = members[NETWORK].replace(b'"skmld>leaky_relu"', b'"skmld>no_such_thing"')
    with pytest.raises(ValueError, match=rf"member {NETWORK!r}: Keras could not load the network in safe mode"):
        _load_bytes(_rezip(members), tmp_path)


# ---------------------------------------------------------------------- JSON values
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=3) | st.integers(), children, max_size=3),
    max_leaves=10,
)


def _same(a, b):
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b


@settings(max_examples=200, deadline=None)
@given(values)
def test_json_values_round_trip(value):
    text = json.dumps(persistence._values.encode(value, "v"), sort_keys=True, allow_nan=False)
    assert _same(persistence._values.decode(json.loads(text), "v"), value)


@pytest.mark.parametrize("array", [
    np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
    np.array([np.nan, -np.inf, 1e-300]),
    np.array([1, -2], dtype=np.int8),
    np.array([True, False]),
    np.array(["a", "µm"]),
    np.array(["a", "b"], dtype=object),
    np.array(["2020-01-01T00:00:01"], dtype="datetime64[ns]"),
])
def test_arrays_round_trip(array):
    text = json.dumps(persistence._values.encode(array, "a"), allow_nan=False)
    back = persistence._values.decode(json.loads(text), "a")
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_random_state_round_trip():
    rs = np.random.RandomState(3)
    rs.rand(5)
    back = persistence._values.decode(json.loads(json.dumps(persistence._values.encode(rs, "r"))), "r")
    assert back.randint(0, 2**31 - 1) == rs.randint(0, 2**31 - 1)
