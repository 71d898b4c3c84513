"""Effect of linking isolated pixels (``connect``) on exact-mode accuracy and overshoot.

    python benchmarks/connect.py [--scenes 12] [--size 192] [--taus 0 0.02 0.05 0.1]

Procedural scenes (seeds 900000+, our validation scenes; no benchmark data), float64, tol 1e-6,
colour graph and the shipped learned model, ``area`` and ``bicubic`` operators, ×4/×8/×16.
Prints a markdown table: normalised RMSE (RMSE / std of the source, mean over scenes) and the
worst excursion outside the true depth range (fraction of the range, max over scenes).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

from optisr.data.synthetic import make_scene
from optisr.guided.api import color_weights
from optisr.guided.layer import graph_solve
from optisr.guided.model import load_default_model
from optisr.ops.operators import make_operator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=12)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--taus", type=float, nargs="+", default=[0.0, 0.02, 0.05, 0.1])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    model = load_default_model().double()
    rows: dict[tuple, list[tuple[float, float]]] = {}
    for i in range(args.scenes):
        sc = make_scene(args.size, args.size, seed=900_000 + i)
        guide = torch.from_numpy(sc.guide).permute(2, 0, 1)[None].double()
        depth = torch.from_numpy(sc.depth_clean)[None, None].double()
        lo, hi = float(depth.min()), float(depth.max())
        for kind in ("area", "bicubic"):
            for f in args.scales:
                op = make_operator(kind, (args.size, args.size), f)
                src = op.apply(depth)
                for name in ("colour", "model"):
                    for tau in args.taus:
                        with torch.no_grad():
                            if name == "colour":
                                w = color_weights(guide, connect=tau)
                            else:
                                model.config.connect = tau
                                w = model.weights(guide, src, f)
                        x = graph_solve(src, w, f, operator=op, tol=1e-6, max_iter=20000, floor=1e-3)
                        e = float((x - depth).pow(2).mean().sqrt() / src.std())
                        exc = max(lo - float(x.min()), float(x.max()) - hi, 0.0) / (hi - lo)
                        rows.setdefault((name, kind, tau, f), []).append((e, exc))
    print(f"{args.scenes} procedural scenes of {args.size}², float64, exact mode, tol 1e-6\n")
    print("| weights | operator | connect τ | " + " | ".join(f"nRMSE ×{f}" for f in args.scales)
          + " | " + " | ".join(f"worst excursion ×{f}" for f in args.scales) + " |")
    print("|---|---|---|" + "---:|" * (2 * len(args.scales)))
    for name in ("colour", "model"):
        for kind in ("area", "bicubic"):
            for tau in args.taus:
                r = [rows[(name, kind, tau, f)] for f in args.scales]
                e = " | ".join(f"{np.mean([a for a, _ in v]):.4f}" for v in r)
                x = " | ".join(f"{max(b for _, b in v):.2f}" for v in r)
                print(f"| {name} | {kind} | {tau:g} | {e} | {x} |")


if __name__ == "__main__":
    main()
