"""Figure of a training history: every loss term against epochs, by stage and horizon."""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from skmld.plotting._common import _save


def plot_history(
    history: Sequence[Mapping[str, Any]] | Any,
    *,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Every loss term of a training history, one panel per term.

    A panel's y axis is logarithmic where its losses span a decade or more,
    linear where they stay within one (a log axis would show no labelled power
    of ten there), and symmetric-log where a loss is zero or negative.

    Epochs run along x in training order; stages have their own colours and a
    dotted vertical line marks the start of every (stage, horizon) segment, so
    the curriculum over prediction horizons is visible. Validation terms
    (``val_<term>``) are drawn dashed in the panel of ``<term>``.

    Parameters
    ----------
    history : list of dict or fitted estimator
        ``estimator.history_`` — dicts with ``"stage"``, ``"horizon"``,
        ``"epoch"`` and float loss terms — or an object with a ``history_``
        attribute (a Pipeline's last step is used).
    path : str or path-like, default=None
        Save the figure there as PNG.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> hist = [{"stage": "vae", "horizon": 0, "epoch": e, "loss": 1.0 / (e + 1)} for e in range(3)]
    >>> hist += [{"stage": "coupled", "horizon": h, "epoch": 0, "loss": 0.1 / h} for h in (1, 2)]
    >>> fig = plot_history(hist)
    >>> fig.axes[0].get_title(), fig.axes[0].get_yscale()
    ('loss', 'log')
    """
    if not isinstance(history, (list, tuple)):
        est = history[-1] if hasattr(history, "steps") else history
        if not hasattr(est, "history_"):
            raise TypeError("history must be a list of dicts or a fitted estimator with history_.")
        history = est.history_
    if len(history) == 0:
        raise ValueError("history is empty: nothing to plot.")
    meta = ("stage", "horizon", "epoch")
    keys: list[str] = []
    for rec in history:
        for key, value in rec.items():
            base = key[4:] if key.startswith("val_") else key
            if key not in meta and np.isscalar(value) and base not in keys:
                keys.append(base)
    if not keys:
        raise ValueError("history has no loss terms (only 'stage', 'horizon', 'epoch').")
    # Per-field terms (``<term>_<field>``) and the KL per latent channel
    # (``kl_<field>_c<k>``) share a panel, one line per field or channel.
    groups: dict[str, list[tuple[str, str]]] = {}
    for key in keys:
        channel = re.fullmatch(r"kl_(.+)_c(\d+)", key)
        total = next((t for t in (*keys, "mse") if key.startswith(f"{t}_")
                      and not re.fullmatch(r"kl_(.+)_c(\d+)", t)), None)
        if channel:
            groups.setdefault(f"KL per channel: {channel.group(1)}", []).append((key, f"c{channel.group(2)}"))
        elif total is not None:
            groups.setdefault(f"{total} per field", []).append((key, key[len(total) + 1:]))
        else:
            groups.setdefault(key, [])
    terms = list(groups)
    # The total loss first, the terms it is made of after it.
    terms.sort(key=lambda term: term != "loss")

    stages = list(dict.fromkeys(str(r.get("stage", "")) for r in history))
    colours = {s: f"C{i % 10}" for i, s in enumerate(stages)}
    step = np.arange(len(history))
    segments: list[tuple[int, str]] = []  # (first record, label) per (stage, horizon)
    for i, rec in enumerate(history):
        key = f"{rec.get('stage', '')} h={rec.get('horizon', 0)}"
        if not segments or segments[-1][1] != key:
            segments.append((i, key))

    n_cols = min(3, len(terms))
    n_rows = -(-len(terms) // n_cols)
    fig = Figure(figsize=(4.2 * n_cols, 3.0 * n_rows + 0.4), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharex=True).ravel()
    bounds = [start for start, _ in segments] + [len(history)]
    for ax, term in zip(axes, terms):
        values = []  # the panel's finite losses
        series = groups[term] or [(term, None)]
        for n, (name, series_label) in enumerate(series):
            for key, style, suffix in ((name, "-", ""), (f"val_{name}", "--", " (val)")):
                labelled: set[str] = set()
                # One line per (stage, horizon) segment: a new horizon restarts the curve.
                for lo, hi in zip(bounds[:-1], bounds[1:]):
                    idx = [i for i in range(lo, hi) if key in history[i]]
                    if not idx:
                        continue
                    stage = str(history[lo].get("stage", ""))
                    y = np.array([float(history[i][key]) for i in idx])
                    values.append(y[np.isfinite(y)])
                    tag = stage if series_label is None else series_label
                    label = None if tag in labelled else f"{tag}{suffix}"
                    labelled.add(tag)
                    colour = colours[stage] if series_label is None else f"C{n % 10}"
                    ax.plot(step[idx], y, style, color=colour, marker=".", ms=3, label=label)
        for start, label in segments:
            if start > 0:
                ax.axvline(start - 0.5, color="0.6", ls=":", lw=0.8)
            ax.text(start - 0.4, 1.0, label.split()[-1], transform=ax.get_xaxis_transform(),
                    fontsize=6, color="0.4", va="bottom")
        # Losses spanning a decade or more on a log axis; a log axis cannot show zero or
        # negative losses (symlog keeps them visible), and one within a decade has no
        # labelled power of ten, only crowded minor labels: linear there.
        finite = np.concatenate(values) if values else np.array([])
        positive = bool(np.all(finite > 0))
        within_a_decade = finite.size > 0 and positive and finite.max() < 10 * finite.min()
        ax.set_yscale("linear" if within_a_decade else "log" if positive else "symlog")
        ax.set_title(term, fontsize=9, pad=10)
        ax.set_xlabel("epoch (training order)", fontsize=8)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    for ax in axes[len(terms):]:
        ax.set_visible(False)
    labels = ", ".join(label for _, label in segments)
    fig.suptitle(f"training history — segments: {labels}", fontsize=8, wrap=True)
    return _save(fig, path)
