"""What ``optisr upscale`` does by default on a real photo: input ×4 nearest | RealSR DF2K | the automatic choice.

    OMP_NUM_THREADS=1 python benchmarks/upscale_auto_figure.py oldphoto2 Lincoln -o docs/figures

For each named RealSRSet+5 image (``../shared/data/sr_realworld_lr_noGT``; evaluation only, nothing
is tuned here) it prints the one-line estimate-and-choice that ``optisr upscale`` prints, and writes
``OUT/upscale_auto_<name>.png``: the input (nearest ×4), RealSR DF2K without pre-filter (the old
default) and ``optisr.upscale(model="auto")``, which is what the CLI runs without ``-n``. The choice
depends on what is installed (Real-ESRGAN x4plus comes with the ``[models]`` extra); the caption
names the model used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    from optisr.bench.blind_report import comparison_panel
    from optisr.blind.api import upscale
    from optisr.blind.choice import choose_model
    from optisr.data.sr_sets import load_dataset
    from optisr.degrade.estimate import estimate_degradation
    from optisr.io.images import write_image

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="+", help="RealSRSet+5 image names (file stems)")
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("-o", "--out", type=Path, default=REPO / "docs" / "figures")
    args = p.parse_args()
    torch.set_num_threads(1)
    samples = {s.name: s for s in load_dataset("realsrset", args.data_dir, scale=4)[0]}
    missing = [n for n in args.names if n not in samples]
    if missing:
        raise SystemExit(f"not in RealSRSet+5: {', '.join(missing)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        s = samples[name]
        # The estimate of the file (its JPEG tables too), as the CLI makes it; a PNG has none.
        choice = choose_model(estimate_degradation(s.lr))
        print(f"{name}: {choice.describe()}")
        auto = upscale(s.lr, "auto", device="cpu")
        label = f"auto: {choice.model}" + (f" + {choice.prefilter}" if choice.prefilter != "none" else "")
        outputs = {"RealSR DF2K": upscale(s.lr, "realsr-df2k-x4", prefilter="none", device="cpu"), label: auto}
        panel = comparison_panel(s, outputs, 4, 256)
        write_image(args.out / f"upscale_auto_{name}.png", np.ascontiguousarray(panel), overwrite=True)


if __name__ == "__main__":
    main()
