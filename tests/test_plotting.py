"""Tests of skmld.plotting: every figure renders to a non-trivial PNG without a display."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from skmld.metrics import probabilistic_scores  # noqa: E402
from skmld.plotting import (  # noqa: E402
    plot_history,
    plot_hotspots,
    plot_reliability,
    plot_rollout,
    plot_spread_skill,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_fields(n_samples=2, n_time=4, n=24, seed=0):
    """Canonical fields: a hot disc growing over a noisy background."""
    rng = np.random.RandomState(seed)
    y = np.arange(n) * 0.5
    x = np.arange(n) * 0.5
    r = np.hypot(*np.meshgrid(y - y.mean(), x - x.mean(), indexing="ij"))
    out = np.empty((n_samples, n_time, 3, n, n))
    for s in range(n_samples):
        for t in range(n_time):
            radius = 1.0 + 0.2 * s + 0.8 * t
            out[s, t, 0] = 300 + 1800 * (r < radius) + 50 * rng.rand(n, n)
            out[s, t, 1] = 5 + 4 * np.exp(-((r - radius) ** 2)) + rng.rand(n, n)
            out[s, t, 2] = (r > 3.0 - 0.5 * t).astype(float)
    return xr.DataArray(
        out,
        dims=("sample", "time", "field", "y", "x"),
        coords={
            "time": ("time", np.arange(n_time) * 2.0, {"units": "ns"}),
            "field": ["temperature", "pressure", "microstructure"],
            "units": ("field", ["K", "GPa", "-"]),
            "y": ("y", y, {"units": "µm"}),
            "x": ("x", x, {"units": "µm"}),
        },
    )


def _check_png(path, min_bytes=10_000):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_bytes, len(data)


def test_plot_rollout_png_and_layout(tmp_path):
    X = make_fields()
    pred = X * 0.95 + 3.0
    std = np.abs(X - pred) * 0.5 + 0.1
    path = tmp_path / "rollout.png"
    fig = plot_rollout(X, pred, std, sample=1, path=path)
    assert isinstance(fig, Figure)
    _check_png(path)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 3 * 4 * 4  # fields × (truth, pred, error, std) × times
    labels = {ax.get_ylabel() for ax in fig.axes}
    assert any("[K]" in label for label in labels)  # colourbar carries the units
    assert any("[GPa]" in label for label in labels)


def test_plot_rollout_selection_and_dataset(tmp_path):
    X = make_fields()
    ds = X.to_dataset(dim="field")
    fig = plot_rollout(ds, ds * 1.1, times=[0, 3], fields=["pressure"], path=tmp_path / "r.png")
    assert len([ax for ax in fig.axes if ax.images]) == 3 * 2
    _check_png(tmp_path / "r.png")
    with pytest.raises(ValueError, match="unknown fields"):
        plot_rollout(X, X, fields=["density"])
    with pytest.raises(ValueError, match="out of range"):
        plot_rollout(X, X, times=[7])
    tokens = X.rename(y="patch_y", x="patch_x")
    with pytest.raises(ValueError, match="inverse_transform"):
        plot_rollout(tokens, tokens)


@pytest.mark.parametrize("sample", [None, 0])
def test_plot_hotspots_png(tmp_path, sample):
    X = make_fields()
    pred = X.copy()
    pred.loc[{"field": "temperature"}] = X.sel(field="temperature") * 1.05
    std = xr.full_like(X, 80.0)
    path = tmp_path / "hotspots.png"
    fig = plot_hotspots(X, pred, std, sample=sample, path=path)
    _check_png(path)
    assert [ax.get_ylabel() for ax in fig.axes] == ["T_hs [K]", "A_hs [µm^2]"]
    # truth, prediction and the ±std band in each panel
    assert all(len(ax.lines) == 2 and len(ax.collections) == 1 for ax in fig.axes)


def _history():
    hist = []
    for e in range(4):
        hist.append({"stage": "vae", "horizon": 0, "epoch": e, "loss": 2.0 / (e + 1),
                     "reconstruction": 1.5 / (e + 1), "kl": 0.1 + 0.01 * e, "edge": 0.3 / (e + 1),
                     "val_loss": 2.2 / (e + 1)})
    for stage in ("decoupled", "coupled"):
        for h in (1, 2, 3):
            for e in range(3):
                hist.append({"stage": stage, "horizon": h, "epoch": e,
                             "loss": 0.5 * h / (e + 1), "latent_mean": 0.1 / (e + 1),
                             "latent_log_var": 0.05 * h, "reconstruction": 0.2 / (e + 1),
                             "val_loss": 0.6 * h / (e + 1)})
    return hist


def test_plot_history_png(tmp_path):
    path = tmp_path / "history.png"
    fig = plot_history(_history(), path=path)
    _check_png(path)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == [
        "loss", "reconstruction", "kl", "edge", "latent_mean", "latent_log_var"
    ]
    # Log where a panel's losses span a decade or more (loss, reconstruction here), linear within one.
    history = _history()
    for ax in visible:
        term = ax.get_title()
        values = [r[k] for r in history for k in (term, f"val_{term}") if k in r]
        assert ax.get_yscale() == ("log" if max(values) >= 10 * min(values) else "linear"), term
    assert {ax.get_title() for ax in visible if ax.get_yscale() == "log"} == {"loss", "reconstruction"}
    # 6 (stage, horizon) segments -> 6 boundaries in every panel, 3 stages coloured.
    loss = visible[0]
    assert len([ln for ln in loss.lines if ln.get_linestyle() == ":"]) == 6
    assert len({ln.get_color() for ln in loss.lines if ln.get_linestyle() == "-"}) == 3
    assert any(ln.get_linestyle() == "--" for ln in loss.lines)  # validation curve


def test_plot_history_from_estimator_and_errors():
    class Fitted:
        history_ = _history()

    fig = plot_history(Fitted())
    assert fig.axes[0].get_title() == "loss"
    # A zero loss cannot go on a log axis: symlog keeps it visible.
    fig = plot_history([{"stage": "vae", "horizon": 0, "epoch": 0, "kl": 0.0},
                        {"stage": "vae", "horizon": 0, "epoch": 1, "kl": 1.0}])
    assert fig.axes[0].get_yscale() == "symlog"
    with pytest.raises(ValueError, match="empty"):
        plot_history([])
    with pytest.raises(TypeError, match="history_"):
        plot_history(object())


def _scores(n_time=4, seed=0):
    """probabilistic_scores of a rollout whose std is right for temperature, too small for pressure."""
    X = make_fields(n_time=n_time, seed=seed)
    rng = np.random.RandomState(seed)
    sigma = xr.DataArray([30.0, 0.3, 0.05], dims="field", coords={"field": X["field"]})
    std = xr.ones_like(X) * sigma * (1 + 0.1 * xr.DataArray(np.arange(n_time), dims="time"))
    mean = X + std * rng.randn(*X.shape) * xr.DataArray([1.0, 2.0, 1.0], dims="field",
                                                         coords={"field": X["field"]})
    return probabilistic_scores(X, mean, std, ks=(0.5, 1.0, 1.5, 2.0))


def test_plot_reliability_png_panels_and_curves(tmp_path):
    scores = _scores()
    path = tmp_path / "reliability.png"
    fig = plot_reliability(scores, path=path)
    assert isinstance(fig, Figure)
    _check_png(path)
    panels = [ax for ax in fig.axes if ax.get_xlabel()]
    assert len(panels) == 3 and len(fig.axes) == 3 + 1  # a panel per field and the colourbar
    assert [ax.get_title() for ax in panels] == ["temperature", "pressure", "microstructure"]
    for ax in panels:
        # the diagonal, one curve per lead time, the curve over all lead times
        assert len(ax.lines) == 1 + 4 + 1
        np.testing.assert_allclose(ax.lines[0].get_xydata(), [[0, 0], [1, 1]])
        assert len(ax.lines[-1].get_xdata()) == 4  # one point per k
    # Over-confident pressure: its overall curve lies below the diagonal.
    x, y = panels[1].lines[-1].get_xydata().T
    assert (y < x).all()
    fig = plot_reliability(scores, by_time=False)
    assert len(fig.axes) == 3 and all(len(ax.lines) == 2 for ax in fig.axes)


def test_plot_spread_skill_png_rows_and_lines(tmp_path):
    scores = _scores()
    path = tmp_path / "spread_skill.png"
    fig = plot_spread_skill(scores, path=path)
    _check_png(path)
    assert len(fig.axes) == 2 * 3
    top, bottom = fig.axes[:3], fig.axes[3:]
    assert [ax.get_ylabel() for ax in top] == ["temperature [K]", "pressure [GPa]", "microstructure [-]"]
    assert all(len(ax.lines) == 2 for ax in top)  # spread and RMSE
    assert all(len(ax.lines) == 3 for ax in bottom)  # ratio, 1 and the overall ratio
    ratio = bottom[1].lines[0].get_ydata()
    np.testing.assert_allclose(ratio, scores["spread_skill"].sel(field="pressure").values)
    assert (ratio < 0.75).all()


def test_probabilistic_plots_reject_other_inputs():
    with pytest.raises(TypeError, match="probabilistic_scores"):
        plot_reliability(make_fields())
    with pytest.raises(ValueError, match="coverage"):
        plot_reliability(xr.Dataset({"rmse": ("field", [1.0])}))
    with pytest.raises(ValueError, match=r"\['spread'\]"):
        plot_spread_skill(xr.Dataset({"rmse": ("field", [1.0])}))
