"""Tests of ``python -m skmld demo`` (the main job), end to end on tiny sizes."""

import json
import math
import subprocess

import pytest

from skmld._demo import MODELS, PRESETS, TINY_ENV, format_table, resolve_config

PNGS = ("rollout.png", "hotspots.png", "history_micro.png", "history_meso.png")


def _finite_numbers(obj, where="results"):
    """Every number in a nested dict/list, with its path."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _finite_numbers(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _finite_numbers(v, f"{where}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield where, obj


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """``python -m skmld demo --quick --quiet`` at the tiny preset, run in this process (``main([...])``)."""
    import contextlib
    import io
    import logging

    from skmld.cli import main

    out = tmp_path_factory.mktemp("demo") / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    logger, level = logging.getLogger("skmld"), logging.getLogger("skmld").level
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        mp.setenv(TINY_ENV, "1")
        try:
            code = main(["demo", "--quick", "--quiet", "--out", str(out)])
        finally:
            logger.setLevel(level)  # the demo sets the package's log level for its process
    assert code == 0, stderr.getvalue()[-4000:]
    return out, subprocess.CompletedProcess(["skmld", "demo"], code, stdout.getvalue(), stderr.getvalue())


@pytest.mark.slow
def test_demo_runs_end_to_end(demo_run):
    out, result = demo_run
    results = json.loads((out / "results.json").read_text())
    assert results["preset"] == "tiny"
    assert {"settings", "data", "metrics", "timings_s", "versions", "files", "seed", "evaluation"} <= set(results)
    assert set(results["metrics"]) == set(MODELS)
    fields = {"temperature", "pressure", "microstructure"}
    for name, m in results["metrics"].items():
        assert set(m["field_rmse"]) == fields, name
        assert set(m["hotspot_rmse"]) == {"T_hs", "A_hs", "dT_hs_dt", "dA_hs_dt"}, name
        assert math.isfinite(m["r2"]) and m["r2"] <= 1.0, name
    for name in ("transfer", "from scratch"):
        m = results["metrics"][name]
        for k in (1, 2):
            assert 0.0 <= m[f"coverage_{k}sigma"] <= 1.0
        assert m["fit_time_s"] > 0
    # The persistence baseline repeats the truth's first frame: no coverage, no fit.
    assert "coverage_1sigma" not in results["metrics"]["persistence"]
    for where, value in _finite_numbers(results):
        assert math.isfinite(value), where
    assert {"simulate", "fit_micro", "fit_meso_transfer", "fit_meso_from_scratch", "total"} <= set(results["timings_s"])
    assert results["versions"]["tensorflow"]
    # Files: figures (real PNGs), the pickled pipeline, and the safe format when persistence exists.
    for png in PNGS:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert (out / "meso_pipeline.pkl").stat().st_size > 0
    for name in results["files"].values():
        assert (out / name).exists(), name
    # The table is on stdout, one row per metric, one column per model.
    assert "transfer" in result.stdout and "from scratch" in result.stdout and "persistence" in result.stdout
    assert "RMSE temperature" in result.stdout and "coverage ±1σ" in result.stdout


def test_help_explains_every_option(capsys):
    from skmld.cli import main

    with pytest.raises(SystemExit) as info:
        main(["demo", "--help"])
    assert info.value.code == 0
    demo = capsys.readouterr().out
    for option in ("--quick", "--out", "--verbose", "--seed", "--quiet", "--n-micro", "--n-meso",
                   "--n-meso-test", "--hotspot-threshold"):
        assert option in demo, option
    assert "--tiny" not in demo  # tests only


def test_bad_demo_option_is_a_usage_error(capsys):
    from skmld.cli import main

    with pytest.raises(SystemExit) as info:
        main(["demo", "--n-micro", "0"])
    assert info.value.code == 2 and "usage" in capsys.readouterr().err


def test_resolve_config(monkeypatch):
    monkeypatch.delenv(TINY_ENV, raising=False)
    assert resolve_config() == ("default", PRESETS["default"])
    assert resolve_config(quick=True) == ("quick", PRESETS["quick"])
    name, config = resolve_config(quick=True, n_micro=3, n_meso_test=None)
    assert name == "quick" and config.n_micro == 3 and config.n_meso_test == PRESETS["quick"].n_meso_test
    monkeypatch.setenv(TINY_ENV, "1")
    assert resolve_config(quick=True)[0] == "tiny"
    monkeypatch.setenv(TINY_ENV, "0")
    assert resolve_config()[0] == "default"


def test_presets_fit_the_networks():
    # Token sides must be multiples of 32 (VAE /8, U-Net /4) and meso grids whole 2 x 2 micro tiles.
    for name, c in PRESETS.items():
        micro = c.micro_shape or (64, 96)
        meso = c.meso_shape or (128, 192)
        assert all(s % 32 == 0 for s in micro), name
        assert (meso[0] // micro[0], meso[1] // micro[1]) == (2, 2) and meso[0] % micro[0] == meso[1] % micro[1] == 0
        assert (c.n_steps or 20) - 1 >= max(c.horizons), name


def test_format_table_is_aligned():
    def model(r2, cov=True):
        m = {"r2": r2, "r2_per_field": {"temperature": r2, "pressure": 0.5, "microstructure": -0.25},
             "field_rmse": {"temperature": 123.456, "pressure": 1.5, "microstructure": 0.01},
             "field_rmse_units": {"temperature": "K", "pressure": "GPa", "microstructure": "1"},
             "hotspot_rmse": {"T_hs": 10.0, "A_hs": 2.0, "dT_hs_dt": 0.5, "dA_hs_dt": 12345.0},
             "hotspot_rmse_units": {"T_hs": "K", "A_hs": "µm^2", "dT_hs_dt": "K/ns", "dA_hs_dt": "µm^2/ns"},
             "hot_mask": {th: {"f1": 0.5, "iou": 0.3, "n_hotspots_pred": 2.0, "n_hotspots_true": 3.0,
                               "n_hotspots_rmse": 1.0, "excess_heat_rmse": 5e5} for th in ("700", "875", "1200")}}
        if cov:
            m.update(coverage_1sigma=0.6, coverage_2sigma=0.9, coverage_1sigma_nominal=0.6827,
                     coverage_2sigma_nominal=0.9545, fit_time_s=12.0)
        return m

    results = {
        "preset": "default",
        "metrics": {"transfer": model(0.9), "from scratch": model(-0.25), "persistence": model(0.1, cov=False),
                    "climatology": model(0.4, cov=False)},
        "data": {"micro": {"sample": 48}, "micro_test": {"sample": 4}, "meso_train": {"sample": 4},
                 "meso_test": {"sample": 4, "time": 20, "y": 128, "x": 192}},
        "evaluation": {"hotspot_threshold_K": 875.0, "no_hotspot_rmse": {"T_hs": 1000.0, "A_hs": 3000.0},
                       "micro_reconstruction_rmse_ratio": {"temperature": 0.2, "pressure": 0.1,
                                                           "microstructure": 0.3}},
        "timings_s": {"fit_micro": 300.0, "simulate": 20.0, "total": 600.0},
    }
    table = format_table(results)
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("metric"))
    rows = [line for line in lines
            if line.startswith(("R²", "mean per-field", "RMSE", "hot-mask", "hotspots", "coverage", "meso fit"))]
    # R² per field and their mean, RMSE per field, F1 at 3 thresholds, hotspot count, excess heat,
    # 4 hotspot RMSEs, 2 coverages, fit time.
    assert len(rows) == 3 + 1 + 3 + 3 + 1 + 1 + 4 + 2 + 1
    # Right-aligned number columns end where the header's column names end.
    for row in rows:
        assert len(row) == len(header)
    assert "-0.250" in table and "1.23e+04" in table


def test_tensorflow_settings_last_for_the_block_only():
    """The demo skips TensorFlow's graph optimiser while it runs, and leaves the process as it found it."""
    import logging

    import tensorflow as tf

    from skmld._demo._config import tensorflow_settings

    options = tf.config.optimizer.get_experimental_options
    before, level = options().get("disable_meta_optimizer", False), logging.getLogger("tensorflow").level
    with pytest.raises(RuntimeError, match="inside"), tensorflow_settings(fast_graphs=True):
        assert options()["disable_meta_optimizer"] is True
        raise RuntimeError("inside")
    assert options().get("disable_meta_optimizer", False) == before
    assert logging.getLogger("tensorflow").level == level
