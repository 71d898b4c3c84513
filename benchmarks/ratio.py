"""A source at a non-integer ratio to the guide: solving at that ratio vs resampling it onto an integer grid.

    python benchmarks/ratio.py [--scenes 6] [--size 384] [--ratios 2.667 3.333 5.333] [--operator area]

Procedural validation scenes (seeds 900000+, no data files). The LR source is made from the
ground-truth HR depth with the ``--operator`` at the ratio (``resampling_operator``: e.g. 384² HR ->
144² LR at 8/3), as a sensor beside a camera would see it. Three ways to upsample it, colour graph
and the shipped learned model, ``fidelity="auto"`` (exact on these clean sources):

* ``ratio``: ``guided_upsample(source, guide)`` -- the sizes' own ratio (the resampling operator);
* ``grid ↓``: the workaround before the ratio support: resample the source (PIL-exact bicubic)
  down onto the ×ceil(r) grid, then an integer solve (fewer, smoothed samples);
* ``grid ↑``: resample it up onto the ×floor(r) grid (more samples, interpolated ones).

Bicubic interpolation of the source straight to the HR size is the reference row. Prints a markdown
table of the normalised RMSE (RMSE / std of the HR depth, mean over scenes) per ratio, and the
exact-consistency error of the ``ratio`` solve against the source (max |Dx − s| / std).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from optisr import guided_upsample
from optisr.bench.guided_protocols import resample_bicubic
from optisr.guided.model import default_model_path, load_guided_model
from optisr.ops.operators import resampling_operator
from optisr.train.guided import GuidedValConfig, validation_scenes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--size", type=int, default=384, help="HR side (square scenes)")
    ap.add_argument("--ratios", type=float, nargs="+", default=[8 / 3, 10 / 3, 16 / 3])
    ap.add_argument("--operator", default="area", choices=("area", "bicubic", "gaussian"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_guided_model(default_model_path())[0]
    graphs = {"colour": "color", "model": model}
    errs: dict[tuple[str, float], list[float]] = {}
    worst: dict[float, float] = {}
    val = GuidedValConfig(scenes=args.scenes, size=args.size, seed=900_000)
    for guide_t, depth_t in validation_scenes(val, "clean"):
        guide = guide_t[0].permute(1, 2, 0).numpy()
        depth = depth_t[0, 0].numpy().astype(np.float64)
        H, W = depth.shape
        std = depth.std()

        def score(name: str, ratio: float, x: np.ndarray, depth: np.ndarray = depth, std: float = std) -> None:
            errs.setdefault((name, ratio), []).append(float(np.sqrt(np.mean((x - depth) ** 2)) / std))

        for r in args.ratios:
            h, w = round(H / r), round(W / r)
            op = resampling_operator(args.operator, (H, W), (h, w))
            src = op.apply(torch.from_numpy(depth)).numpy()
            score("bicubic (reference)", r, resample_bicubic(src, None, (H, W))[0].astype(np.float64))
            for gname, g in graphs.items():
                x = guided_upsample(src, guide, None, operator=args.operator, weights=g)
                cons = float(np.abs(op.apply(torch.from_numpy(x)).numpy() - src).max()) / std
                worst[r] = max(worst.get(r, 0.0), cons)
                score(f"{gname}, ratio", r, x)
                for tag, f in (("grid ↓", math.ceil(r)), ("grid ↑", math.floor(r))):
                    hf, wf = -(-H // f), -(-W // f)
                    grid = resample_bicubic(src, None, (hf, wf))[0].astype(np.float64)
                    score(f"{gname}, {tag}", r, guided_upsample(grid, guide, f, operator=args.operator, weights=g))
    names = list(dict.fromkeys(k[0] for k in errs))
    print(
        f"{args.scenes} procedural scenes of {args.size}², LR by the {args.operator} operator at each ratio, "
        "fidelity auto; normalised RMSE (mean over scenes)\n"
    )
    head = " | ".join(f"{r:.3g}" for r in args.ratios)
    print(f"| method | {head} |\n|---|" + "---:|" * len(args.ratios))
    for n in names:
        cells = [f"{np.mean(errs[(n, r)]):.4f}" if (n, r) in errs else "–" for r in args.ratios]
        print(f"| {n} | " + " | ".join(cells) + " |")
    print("\nmax |Dx − s| / std of the ratio solves: " + ", ".join(f"{r:.3g}: {worst[r]:.1e}" for r in args.ratios))


if __name__ == "__main__":
    main()
