"""Inference time of a guided model (feature network + exact solve) vs the colour graph, on CPU.

    python benchmarks/guided_model_speed.py [--sizes 512 1024] [--scales 4 8 16] [--threads 2]
                                           [--model PATH.safetensors] [--repeat 2]

Procedural scenes (no data files), float32, area operator, tol 1e-4 (the default). Prints a
markdown table: network time, solve time, total, and the colour graph's total.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from optisr.data.synthetic import make_scene
from optisr.guided.api import color_weights
from optisr.guided.layer import graph_solve
from optisr.guided.model import default_model_path, load_guided_model
from optisr.ops.operators import make_operator


def _best(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None, help="guided model file (default: the shipped one)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_guided_model(args.model or default_model_path())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.model or default_model_path()}\n")
    print("| size | scale | network s | solve s | model total s | colour graph total s |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        sc = make_scene(n, n, seed=7)
        guide = torch.from_numpy(sc.guide).permute(2, 0, 1)[None].contiguous()
        depth = torch.from_numpy(sc.depth_clean)[None, None]
        for f in args.scales:
            src = make_operator("area", (n, n), f).apply(depth)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_net, w = _best(lambda: model.weights(guide, src, f), args.repeat)
                t_solve, _ = _best(lambda w=w: graph_solve(src, w, f, floor=model.config.floor), args.repeat)
                t_color, _ = _best(lambda: graph_solve(src, color_weights(guide), f, floor=1e-3), args.repeat)
            print(f"| {n}² | ×{f} | {t_net:.2f} | {t_solve:.2f} | "
                  f"**{t_net + t_solve:.2f}** | {t_color:.2f} |", flush=True)


if __name__ == "__main__":
    main()
