"""The command line's jobs on a user's files: fit from a config file, predict, evaluate, convert.

A fit is described by a TOML file (read with the standard library's
:mod:`tomllib`), checked whole before any data is read; every bad key or value
is named with its section. See docs/your_data.md.
"""

from __future__ import annotations

import difflib
import json
import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("skmld.jobs")

# Section → keys it may hold. "open": open_fields keywords; "tokenizer"/"estimator": parameters.
_SECTIONS = {
    "micro": {"data", "open", "tokenizer", "estimator"},
    "meso": {"data", "open", "tokenizer", "estimator"},
    "calibration": {"data", "open", "estimator"},
}
_TOP = {"output", *_SECTIONS}
_OPEN_KEYS = {"chunks", "engine", "rename", "fields", "units", "normalised_from", "dt", "dx", "t0", "key"}


class ConfigError(ValueError):
    """A fit config with bad keys or values; the message lists each, with its section."""


@dataclass
class FitConfig:
    """A checked fit config: paths resolved against the config file's folder."""

    output: Path
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)


def _unknown(where: str, keys, allowed) -> list[str]:
    problems = []
    for key in sorted(set(keys) - set(allowed)):
        close = difflib.get_close_matches(key, sorted(allowed), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; allowed: {', '.join(sorted(allowed))}"
        problems.append(f"{where}: unknown key {key!r}{hint}")
    return problems


def _tuples(params: dict) -> dict:
    # TOML has arrays, the estimators take tuples (horizons, patch sizes, ranges).
    def convert(v):
        if isinstance(v, list):
            return tuple(convert(x) for x in v)
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        return v

    return {k: convert(v) for k, v in params.items()}


def _estimator(kind: str, params: dict, backbone=None):
    from skmld import CalibratedDynamics, MesoDynamicsEstimator, MicroDynamicsEstimator, PatchTokenizer

    if kind == "tokenizer":
        return PatchTokenizer(**params)
    if kind == "micro":
        return MicroDynamicsEstimator(**params)
    if kind == "meso":
        return MesoDynamicsEstimator(backbone=backbone, **params)
    return CalibratedDynamics(backbone, cv="prefit", **params)


def _check_params(where: str, kind: str, params: Any) -> list[str]:
    """Problems with ``params`` of the estimator ``kind``: unknown names, then sklearn's own value checks."""
    from sklearn.utils._param_validation import InvalidParameterError

    if not isinstance(params, dict):
        return [f"{where}: expected a table of parameters, got {params!r}"]
    # CalibratedDynamics' estimator is the meso model fitted first: an unfitted one stands in.
    stand_in = _estimator("meso", {}) if kind == "calibration" else None
    probe = _estimator(kind, {}, stand_in)
    reserved = {"meso": {"backbone"}, "calibration": {"estimator", "cv"}}.get(kind, set())
    allowed = set(probe.get_params(deep=False)) - reserved
    problems = _unknown(where, params, allowed)
    problems += [f"{where}: {k!r} is set by `skmld fit` itself" for k in sorted(reserved & set(params))]
    if problems:
        return problems
    try:
        _estimator(kind, _tuples(params), stand_in)._validate_params()
    except InvalidParameterError as e:
        return [f"{where}: {e}"]
    return []


def read_config(path: str | Path) -> FitConfig:
    """Read and check a fit config (TOML); raise :class:`ConfigError` naming every problem.

    Parameters
    ----------
    path : str or Path
        The TOML file. Relative paths in it are taken from its folder.

    Returns
    -------
    FitConfig
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    problems = _unknown(str(path), raw, _TOP)
    if "output" not in raw:
        problems.append(f"{path}: missing key 'output' (the model file to write, e.g. output = \"model.skmld\")")
    if "micro" not in raw and "meso" not in raw:
        problems.append(f"{path}: needs a [micro] section, a [meso] one, or both")
    if "calibration" in raw and "meso" not in raw:
        problems.append(f"{path}: [calibration] calibrates the meso model: add a [meso] section")
    sections = {}
    for name in ("micro", "meso", "calibration"):
        section = raw.get(name)
        if section is None:
            continue
        where = f"{path} [{name}]"
        if not isinstance(section, dict):
            problems.append(f"{where}: expected a table, got {section!r}")
            continue
        problems += _unknown(where, section, _SECTIONS[name])
        if not isinstance(section.get("data"), str):
            problems.append(f"{where}: 'data' must name a field file (NetCDF, Zarr, .npy or .npz)")
        elif not (path.parent / section["data"]).exists():
            problems.append(f"{where}: data file {str(path.parent / section['data'])!r} does not exist")
        opened = section.get("open", {})
        if not isinstance(opened, dict):
            problems.append(f"{where}.open: expected a table of open_fields keywords, got {opened!r}")
        else:
            problems += _unknown(f"{where}.open", opened, _OPEN_KEYS)
        if "tokenizer" in section:
            problems += _check_params(f"{where}.tokenizer", "tokenizer", section["tokenizer"])
        problems += _check_params(f"{where}.estimator", name, section.get("estimator", {}))
        sections[name] = section
    if problems:
        raise ConfigError("invalid fit config:\n  " + "\n  ".join(problems))
    return FitConfig(output=path.parent / raw["output"], sections={
        name: {**s, "data": path.parent / s["data"]} for name, s in sections.items()})


def _open(section: dict):
    from skmld import open_fields

    return open_fields(section["data"], **_tuples(section.get("open", {})))


def fit(config: FitConfig):
    """Fit what ``config`` describes and save it to ``config.output``; the fitted pipeline.

    ``[micro]`` alone: a micro pipeline. ``[meso]``: a meso pipeline, on the
    ``[micro]`` model as backbone when there is one (transfer), else from
    scratch; its tokenizer takes the micro tokenizer's patch size and ranges
    unless ``[meso.tokenizer]`` sets them. ``[calibration]``: the meso model's
    spread calibrated on samples of its own (``CalibratedDynamics``, prefit).
    """
    from sklearn.pipeline import Pipeline

    from skmld.persistence import save

    s = config.sections
    micro = None
    if "micro" in s:
        micro = Pipeline([("tokens", _estimator("tokenizer", _tuples(s["micro"].get("tokenizer", {})))),
                          ("micro", _estimator("micro", _tuples(s["micro"].get("estimator", {}))))])
        logger.info("fitting the micro pipeline on %s", s["micro"]["data"])
        micro.fit(_open(s["micro"]))
        pipe = micro
    if "meso" in s:
        tok_params = _tuples(s["meso"].get("tokenizer", {}))
        if micro is not None:
            tok_params = {"patch_size": micro["tokens"].token_shape_, "ranges": micro["tokens"].ranges_,
                          **tok_params}
        backbone = None if micro is None else micro["micro"]
        pipe = Pipeline([("tokens", _estimator("tokenizer", tok_params)),
                         ("meso", _estimator("meso", _tuples(s["meso"].get("estimator", {})), backbone))])
        logger.info("fitting the meso pipeline on %s", s["meso"]["data"])
        pipe.fit(_open(s["meso"]))
    if "calibration" in s:
        calibrated = _estimator("calibration", _tuples(s["calibration"].get("estimator", {})), pipe["meso"])
        calibrated.fit(pipe["tokens"].transform(_open(s["calibration"])))
        pipe = Pipeline([("tokens", pipe["tokens"]), ("meso", calibrated)])
    config.output.parent.mkdir(parents=True, exist_ok=True)
    save(pipe, config.output)
    return pipe


def predict(model_path, data_path, out_path, coverage=(), n_draws: int = 0):
    """Physical mean and std (and central intervals, draws) of a saved pipeline's rollout of a field file.

    Written as :func:`skmld.outputs.predict_fields` returns them: variables
    ``mean``, ``std`` (``lower``, ``upper``, ``draws``) on dims ``(sample,
    time, field, y, x)`` with the units on ``field``; ``xarray.open_dataset``
    reads them back.
    """
    from skmld import open_fields
    from skmld.outputs import predict_fields
    from skmld.persistence import load

    pipe = load(model_path)
    out = predict_fields(pipe, open_fields(data_path), return_std=True, coverage=list(coverage) or None,
                         n_draws=n_draws)
    out_path = Path(out_path)
    if out_path.suffix.lower() == ".zarr":
        out.to_zarr(out_path, mode="w")
    else:
        out.to_netcdf(out_path, engine="h5netcdf")
    return out


def evaluate(model_path, data_path, out_dir, threshold: float) -> dict:
    """The saved pipeline and persistence, scored per field and on hotspots against a field file; results.json."""
    from skmld import PersistenceBaseline, open_fields
    from skmld._demo._evaluate import _evaluate
    from skmld.outputs import predict_fields
    from skmld.persistence import load
    from skmld.plotting import plot_hotspots, plot_rollout

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe = load(model_path)
    truth = open_fields(data_path).load()
    out = predict_fields(pipe, truth, return_std=True)
    truth_ds = truth.to_dataset("field")
    pred, std = out["mean"].to_dataset("field"), out["std"].to_dataset("field")
    persistence = PersistenceBaseline().fit(truth).predict(truth).to_dataset("field")
    metrics = {"model": _evaluate("model", truth_ds, pred, std, threshold),
               "persistence": _evaluate("persistence", truth_ds, persistence, None, threshold)}
    files = {"rollout": "rollout.png", "hotspots": "hotspots.png", "results": "results.json"}
    plot_rollout(truth_ds, pred, std, sample=0, path=out_dir / files["rollout"])
    plot_hotspots(truth_ds, pred, std, threshold=threshold, path=out_dir / files["hotspots"])
    results = {"command": "skmld evaluate", "model": str(model_path), "data": str(data_path),
               "sizes": dict(truth.sizes), "hotspot_threshold_K": threshold,
               "on": "time steps after the first, physical units", "metrics": metrics, "files": files}
    (out_dir / files["results"]).write_text(json.dumps(results, indent=2, allow_nan=True) + "\n")
    return results


def convert(in_path, out_path, **open_options) -> None:
    """Read ``in_path`` with :func:`skmld.open_fields` and its options; write it as NetCDF or Zarr."""
    from skmld import open_fields, write_fields

    write_fields(open_fields(in_path, **{k: v for k, v in open_options.items() if v is not None}), out_path)
