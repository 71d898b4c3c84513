"""How much of the gap between the colour graph and the layer's ceiling the learned model closes.

    python benchmarks/oracle.py [--scenes 6] [--size 192] [--scales 4 8 16] [--operator bicubic]
    python benchmarks/oracle.py --models e2e=runs/guided_edge_e2e/best.safetensors kkt=runs/guided_edge_kkt/best.safetensors
    python benchmarks/oracle.py --condition dim      # the guides re-exposed as dim, noisy indoor captures

Procedural validation scenes (seeds 900000+, no data files), exact mode, float32. Methods: the
colour graph, the shipped learned model, and the *oracle* -- the same exact layer with edge
weights from the ground-truth HR depth (``optisr.bench.guided_protocols.oracle_weights``: μ = 1 in
0–255 units after mapping each scene's depth range onto 0–255, floor 1e-3). Prints a markdown
table of the normalised RMSE (RMSE / std of the HR depth, mean over scenes) and the fraction of the
colour→oracle gap the model closes: (colour − model) / (colour − oracle). ``--models NAME=PATH``
adds guided releases (e.g. the issue-10 training regimes) as further rows; ``--condition dim``
degrades the guides as the ``dim`` validation condition of ``optisr train guided`` does.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from optisr import guided_upsample
from optisr.bench.guided_protocols import oracle_weights
from optisr.guided.model import default_model_path, load_guided_model
from optisr.ops.operators import make_operator
from optisr.train.guided import GuidedValConfig, validation_scenes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--operator", default="bicubic", choices=("area", "bicubic"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", nargs="*", default=[], metavar="NAME=PATH", help="further guided releases to compare")
    ap.add_argument("--condition", default="clean", choices=("clean", "dim"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = {"model": load_guided_model(default_model_path())[0]}
    for item in args.models:
        name, _, path = item.partition("=")
        models[name] = load_guided_model(path)[0]
    methods = ("color", *models, "oracle")
    errs: dict[tuple[str, int], list[float]] = {}
    val = GuidedValConfig(scenes=args.scenes, size=args.size, seed=900_000)
    for guide_t, depth_t in validation_scenes(val, args.condition):
        guide = guide_t[0].permute(1, 2, 0).numpy()
        depth = depth_t[0, 0].numpy().astype(np.float64)
        valid = np.ones(depth.shape, bool)
        for f in args.scales:
            src = make_operator(args.operator, depth.shape, f).apply(torch.from_numpy(depth)).numpy()
            weights = {"color": "color", **models, "oracle": oracle_weights(depth, valid)}
            for m in methods:
                x = guided_upsample(src, guide, f, operator=args.operator, weights=weights[m], fidelity="exact")
                errs.setdefault((m, f), []).append(float(np.sqrt(np.mean((x - depth) ** 2)) / depth.std()))
    print(f"{args.scenes} procedural scenes of {args.size}² ({args.condition} guides), {args.operator} operator, "
          "exact mode, nRMSE; in brackets the share of the colour→oracle gap closed\n")
    names = {"color": "colour graph", "model": "shipped model", "oracle": "oracle"}
    print("| scale | " + " | ".join(names.get(m, m) for m in methods) + " |")
    print("|---|" + "---:|" * len(methods))
    for f in args.scales:
        c, o = float(np.mean(errs[("color", f)])), float(np.mean(errs[("oracle", f)]))
        cells = []
        for m in methods:
            v = float(np.mean(errs[(m, f)]))
            cells.append(f"{v:.4f}" + (f" ({(c - v) / (c - o):.0%})" if m not in ("color", "oracle") else ""))
        print(f"| ×{f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
