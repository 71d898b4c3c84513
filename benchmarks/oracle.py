"""How much of the gap between the colour graph and the layer's ceiling the learned model closes.

    python benchmarks/oracle.py [--scenes 6] [--size 192] [--scales 4 8 16] [--operator bicubic]

Procedural validation scenes (seeds 900000+, no data files), exact mode, float32. Methods: the
colour graph, the shipped learned model, and the *oracle* -- the same exact layer with edge
weights from the ground-truth HR depth (``optisr.bench.guided_protocols.oracle_weights``: μ = 1 in
0–255 units after mapping each scene's depth range onto 0–255, floor 1e-3). Prints a markdown
table of the normalised RMSE (RMSE / std of the HR depth, mean over scenes) and the fraction of the
colour→oracle gap the model closes: (colour − model) / (colour − oracle).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from optisr import guided_upsample
from optisr.bench.guided_protocols import oracle_weights
from optisr.data.synthetic import make_scene
from optisr.guided.model import default_model_path, load_guided_model
from optisr.ops.operators import make_operator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--operator", default="bicubic", choices=("area", "bicubic"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_guided_model(default_model_path())
    methods = ("color", "model", "oracle")
    errs: dict[tuple[str, int], list[float]] = {}
    for i in range(args.scenes):
        sc = make_scene(args.size, args.size, seed=900_000 + i)
        depth = sc.depth_clean.astype(np.float64)
        valid = np.ones(depth.shape, bool)
        for f in args.scales:
            src = make_operator(args.operator, depth.shape, f).apply(torch.from_numpy(depth)).numpy()
            weights = {"color": "color", "model": model, "oracle": oracle_weights(depth, valid)}
            for m in methods:
                x = guided_upsample(src, sc.guide, f, operator=args.operator, weights=weights[m], fidelity="exact")
                errs.setdefault((m, f), []).append(float(np.sqrt(np.mean((x - depth) ** 2)) / depth.std()))
    print(f"{args.scenes} procedural scenes of {args.size}², {args.operator} operator, exact mode, nRMSE\n")
    print("| scale | colour graph | learned model | oracle | gap closed by the model |")
    print("|---|---:|---:|---:|---:|")
    for f in args.scales:
        c, m, o = (float(np.mean(errs[(k, f)])) for k in methods)
        print(f"| ×{f} | {c:.4f} | {m:.4f} | {o:.4f} | {(c - m) / (c - o):.0%} |")


if __name__ == "__main__":
    main()
