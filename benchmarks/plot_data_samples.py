"""Plot one micro and one meso sample of the synthetic pore-collapse data.

Rows T, p, μ at several times for each scale; writes
``docs/figures/pore_collapse_samples.png``. Run alone:
``python benchmarks/plot_data_samples.py [--seed 0] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from skmld.datasets import make_pore_collapse  # noqa: E402

log = logging.getLogger("plot_data_samples")
ROWS = (("temperature", "T [K]", "inferno", (300, 5000)), ("pressure", "p [GPa]", "viridis", (0, 35)),
        ("microstructure", "μ [-]", "gray", (0, 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="pore geometry seed (default: 0)")
    parser.add_argument("--n-times", type=int, default=6, help="snapshots shown per scale (default: 6)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "pore_collapse_samples.png",
                        help="PNG output path")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    log.info("settings %s", vars(args))

    # Micro: pick an igniting sample so the figure shows the whole story.
    micro = make_pore_collapse("micro", 8, random_state=args.seed)
    i_micro = int(np.argmax(micro["temperature"].isel(time=-1).max(("y", "x")).values))
    meso = make_pore_collapse("meso", 1, random_state=args.seed)
    panels = [("micro", micro.isel(sample=i_micro)), ("meso", meso.isel(sample=0))]

    fig, axes = plt.subplots(6, args.n_times, figsize=(2.1 * args.n_times, 9.5), constrained_layout=True)
    for block, (scale, ds) in enumerate(panels):
        times = np.linspace(0, ds.sizes["time"] - 1, args.n_times).round().astype(int)
        for r, (name, label, cmap, (lo, hi)) in enumerate(ROWS):
            row = 3 * block + r
            for c, t in enumerate(times):
                ax = axes[row, c]
                da = ds[name].isel(time=t)
                im = ax.imshow(da.values, cmap=cmap, vmin=lo, vmax=hi, origin="lower",
                               extent=(0, float(ds.x[-1] + 0.5), 0, float(ds.y[-1] + 0.5)))
                ax.set_xticks([]), ax.set_yticks([])
                if row == 0 or row == 3:
                    ax.set_title(f"{scale}, t = {float(ds.time[t]):g} ns", fontsize=8)
                if c == 0:
                    ax.set_ylabel(f"{scale}\n{label}", fontsize=8)
            fig.colorbar(im, ax=axes[row, :], shrink=0.9, pad=0.01)
    fig.suptitle("Synthetic shock-induced pore collapse (shock enters from the left)", fontsize=10)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    log.info("wrote %s (micro sample %d, meso sample 0)", args.out, i_micro)


if __name__ == "__main__":
    main()
