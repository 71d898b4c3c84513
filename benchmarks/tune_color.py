"""Choose μ and the weight floor of the colour-affinity graph on procedural scenes only.

Never uses benchmark data (the evaluation sets stay untouched). Prints a table of the mean
RMSE (mm) of the exact solve over scenes, per (μ, floor), at ×4/×8/×16 with the area and
bicubic operators.

    python benchmarks/tune_color.py [--scenes 12] [--size 256]
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

from optisr.data.synthetic import make_scene
from optisr.guided.layer import graph_solve
from optisr.ops.lattice import edge_weights
from optisr.ops.operators import make_operator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=12)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--mus", type=float, nargs="+", default=[0.02, 0.04, 0.06, 0.1, 0.2])
    ap.add_argument("--floors", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2])
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--operators", nargs="+", default=["area", "bicubic"])
    args = ap.parse_args()
    scenes = [make_scene(args.size, args.size, seed=1000 + i) for i in range(args.scenes)]
    print("| operator | scale | " + " | ".join(f"μ={m:g} floor={f:g}" for m, f in itertools.product(args.mus, args.floors)) + " |")
    print("|---|---|" + "---|" * (len(args.mus) * len(args.floors)))
    for kind in args.operators:
        for f in args.scales:
            row = []
            for mu, floor in itertools.product(args.mus, args.floors):
                errs = []
                for sc in scenes:
                    depth = torch.from_numpy(sc.depth_clean)[None, None]
                    guide = torch.from_numpy(sc.guide.transpose(2, 0, 1).copy())[None]
                    op = make_operator(kind, depth.shape[-2:], f)
                    s = op.apply(depth)
                    w = edge_weights(guide, mu, floor=floor)
                    x = graph_solve(s, w, f, operator=kind, tol=1e-4, on_nonconvergence="ignore")
                    errs.append(float((x - depth).pow(2).mean().sqrt()))
                row.append(np.mean(errs))
            best = int(np.argmin(row))
            cells = [f"**{v:.1f}**" if i == best else f"{v:.1f}" for i, v in enumerate(row)]
            print(f"| {kind} | ×{f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
