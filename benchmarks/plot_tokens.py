"""Plot a meso sample cut into its building blocks (tokens) by PatchTokenizer.

Rows T, p, μ of one meso sample at one time: (a) the field with the token grid
of micro-sized tokens, (b) those tokens pulled apart, scaled to [0, 1], (c) a
token size that does not divide the grid, with the edge-padded part outlined.
Writes ``docs/figures/tokens.png`` and a JSON of the settings and token layouts.
Run alone: ``python benchmarks/plot_tokens.py [--seed 0] [--time 12] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from skmld import PatchTokenizer  # noqa: E402
from skmld.datasets import make_pore_collapse  # noqa: E402

log = logging.getLogger("plot_tokens")
ROWS = (("temperature", "T [K]", "inferno"), ("pressure", "p [GPa]", "viridis"),
        ("microstructure", "μ [-]", "gray"))
GAP = 8  # pixels between pulled-apart tokens
GAP_COLOR = "#9ecae1"  # gaps and token lines: visible on every colormap


def exploded(tokens: np.ndarray) -> np.ndarray:
    """Tokens (token_y, token_x, patch_y, patch_x) on one canvas with NaN gaps."""
    ty, tx, py, px = tokens.shape
    canvas = np.full((ty * py + (ty - 1) * GAP, tx * px + (tx - 1) * GAP), np.nan)
    for i in range(ty):
        for j in range(tx):
            y0, x0 = i * (py + GAP), j * (px + GAP)
            canvas[y0:y0 + py, x0:x0 + px] = tokens[i, j]
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="pore geometry seed (default: 0)")
    parser.add_argument("--time", type=int, default=12, help="snapshot index shown (default: 12)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "tokens.png",
                        help="PNG output path")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    log.info("settings %s", vars(args))

    meso = make_pore_collapse("meso", 1, random_state=args.seed)
    micro_shape = tuple(make_pore_collapse("micro", 1, n_steps=2, random_state=args.seed)
                        ["temperature"].shape[-2:])
    ranges = {"temperature": (300.0, 5000.0)}  # the paper's temperature scaling
    # Micro-sized tokens (the meso grid is 2 x 2 of them), and a size that needs padding.
    fine = PatchTokenizer(patch_size=micro_shape, ranges=ranges).fit(meso)
    padded = PatchTokenizer(patch_size=96, ranges=ranges, pad_mode="edge").fit(meso)
    T_fine = fine.transform(meso).isel(sample=0, time=args.time)
    T_pad = padded.transform(meso).isel(sample=0, time=args.time)
    snap = meso.isel(sample=0, time=args.time)
    H, W = fine.input_shape_

    fig, axes = plt.subplots(3, 3, figsize=(12, 7.2), constrained_layout=True)
    for r, (name, label, cmap) in enumerate(ROWS):
        cmap = plt.get_cmap(cmap).with_extremes(bad=GAP_COLOR)
        # (a) physical field and token boundaries
        ax = axes[r, 0]
        im = ax.imshow(snap[name].values, cmap=cmap, origin="lower")
        py, px = fine.token_shape_
        for k in range(1, fine.grid_shape_[0]):
            ax.axhline(k * py - 0.5, color=GAP_COLOR, ls="--", lw=1)
        for k in range(1, fine.grid_shape_[1]):
            ax.axvline(k * px - 0.5, color=GAP_COLOR, ls="--", lw=1)
        fig.colorbar(im, ax=ax, shrink=0.8, label=label)
        # (b) tokens pulled apart, scaled to [0, 1]
        ax = axes[r, 1]
        tok = T_fine.sel(field=name).transpose("token_y", "token_x", "patch_y", "patch_x").values
        im = ax.imshow(np.ma.masked_invalid(exploded(tok)), cmap=cmap, vmin=0, vmax=1, origin="lower")
        fig.colorbar(im, ax=ax, shrink=0.8, label="scaled [0, 1]")
        # (c) 96 x 96 tokens: the grid is padded at the top (end of y) to whole tokens
        ax = axes[r, 2]
        tok = T_pad.sel(field=name).transpose("token_y", "token_x", "patch_y", "patch_x").values
        im = ax.imshow(np.ma.masked_invalid(exploded(tok)), cmap=cmap, vmin=0, vmax=1, origin="lower")
        qy, qx = padded.token_shape_
        for i in range(padded.grid_shape_[0]):
            for j in range(padded.grid_shape_[1]):
                y0, x0 = i * (qy + GAP), j * (qx + GAP)
                y_in = min(max(H - i * qy, 0), qy)  # rows of this token inside the data
                x_in = min(max(W - j * qx, 0), qx)
                if y_in < qy:
                    ax.add_patch(Rectangle((x0 - 0.5, y0 + y_in - 0.5), qx, qy - y_in,
                                           fill=False, ec="red", lw=1.2, hatch="//"))
                if x_in < qx:
                    ax.add_patch(Rectangle((x0 + x_in - 0.5, y0 - 0.5), qx - x_in, qy,
                                           fill=False, ec="red", lw=1.2, hatch="//"))
        for ax in axes[r]:
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(name)
    t_ns = float(meso["time"][args.time])
    axes[0, 0].set_title(f"(a) meso sample, t = {t_ns:g} ns, {H}×{W} px,\n"
                         f"{fine.grid_shape_[0]}×{fine.grid_shape_[1]} tokens of "
                         f"{fine.token_shape_[0]}×{fine.token_shape_[1]} (the micro domain)",
                         fontsize=9)
    axes[0, 1].set_title("(b) the same tokens as building blocks,\neach field scaled to [0, 1]",
                         fontsize=9)
    axes[0, 2].set_title(f"(c) {padded.token_shape_[0]}×{padded.token_shape_[1]} tokens: "
                         f"{padded.padding_[0]} rows of edge padding\n(hatched) complete the "
                         f"{padded.grid_shape_[0]}×{padded.grid_shape_[1]} token grid", fontsize=9)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    log.info("wrote %s", args.out)

    record = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "micro_shape": list(micro_shape),
        "fine": {k: v for k, v in T_fine.attrs.items()},
        "padded": {**T_pad.attrs, "padding": list(padded.padding_)},
    }
    out_json = ROOT / "benchmarks" / "results" / "plot_tokens.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(record, indent=2))
    log.info("wrote %s", out_json)


if __name__ == "__main__":
    main()
