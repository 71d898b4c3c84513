"""How the CG tolerance trades solver iterations against accuracy, for the shipped guided model.

    python benchmarks/tolerance.py [--scenes 6] [--size 192] [--tols 1e-2 3e-3 1e-3 1e-4 1e-6]

Procedural validation scenes (seeds 900000+, no data files), bicubic operator, float32, exact
mode. Prints a markdown table: per scale and tolerance, the normalised RMSE (RMSE / std of the
source, mean over scenes), the mean and max CG iterations and the worst consistency error
max|Dx − s| / std(s) (which the final projection keeps at rounding level for any tolerance).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from optisr.data.synthetic import make_scene
from optisr.guided.model import load_guided_model, default_model_path
from optisr.ops.operators import make_operator
from optisr.solvers.graph import SolverOptions, solve_exact


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--tols", type=float, nargs="+", default=[1e-2, 3e-3, 1e-3, 1e-4, 1e-6])
    ap.add_argument("--model", default=None, help="guided model file (default: the shipped one)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_guided_model(args.model or default_model_path())
    rows: dict[tuple[int, float], list[tuple[float, int, float]]] = {}
    for i in range(args.scenes):
        sc = make_scene(args.size, args.size, seed=900_000 + i)
        guide = torch.from_numpy(sc.guide).permute(2, 0, 1)[None].contiguous()
        depth = torch.from_numpy(sc.depth_clean)[None, None]
        for f in args.scales:
            op = make_operator("bicubic", tuple(depth.shape[-2:]), f)
            src = op.apply(depth)
            with torch.no_grad():
                w = model.weights(guide, src, f).clamp_min(model.config.floor)
            for tol in args.tols:
                opts = SolverOptions(tol=tol, max_iter=20000, on_nonconvergence="ignore")
                x, info = solve_exact(w, src, op, options=opts)
                std = float(src.std())
                rows.setdefault((f, tol), []).append(
                    (float((x - depth).pow(2).mean().sqrt()) / std, int(info.iterations.max()),
                     float((op.apply(x) - src).abs().max()) / std)
                )
    print(f"{args.scenes} procedural scenes of {args.size}², bicubic operator, float32\n")
    print("| scale | tol | nRMSE | iterations mean / max | max consistency error / std |")
    print("|---|---|---:|---:|---:|")
    for (f, tol), r in sorted(rows.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        e, it, c = zip(*r)
        print(f"| ×{f} | {tol:g} | {np.mean(e):.4f} | {np.mean(it):.0f} / {max(it)} | {max(c):.1e} |")


if __name__ == "__main__":
    main()
