"""Noisy sources: the learned graph, the colour graph, and their blend in ``fidelity="auto"`` (allowed data only).

For the cases of ``benchmarks/noisy_floor.py`` (RGB-D-D test405 images with area LR + σ = 3 cm noise,
``--rgbdd DIR``; procedural scenes, σ = 6 on 0–255) and each scale, the default call
(``fidelity="auto"``: GCV λ and floor, refinement) is run with the edge weights
``w_model^a · w_colour^(1−a)`` for each ``--alphas`` a (1 = the learned graph alone, 0 = the colour
graph), passed as a callable with the default call's refinement, and the package's default call
(``default`` column: the learned graph alone). Prints per-case RMSE and a table of means (RGB-D-D in
cm, procedural on 0–255). Measured 2026-12-02 (all 8 + 4 cases, ×2/×4/×8/×16; a = 1 / 0.5 / 0):
×8 RGB-D-D 2.634 / 2.567 / 2.579, procedural 6.302 / 6.204 / 6.229; ×4 1.808 / 1.826 / 1.863 and
4.564 / 4.603 / 4.708. The blend was not made a default (see ``SOFT_COLOUR_SHARE``).

    python benchmarks/noisy_blend.py --rgbdd ../shared/data/depth_rgbdd_test405 --scales 2 4 8 16
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections import defaultdict

import numpy as np
import torch

import optisr
from optisr.guided.graph_weights import colour_blended, resolve_weights

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from noisy_floor import _rmse, add_case_arguments, cases  # the same images, noise and seeds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_case_arguments(ap)
    ap.add_argument("--alphas", type=float, nargs="+", default=[1.0, 0.5, 0.0], help="share of the learned graph")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    table: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    cols = [f"a={a:g}" for a in args.alphas] + ["default"]
    for scale in args.scales:
        for name, i, hr, ok, guide, lr in cases(args, scale):
            fn, learned = resolve_weights("default", scale, lr, None)
            if not learned:
                raise SystemExit("no learned model is installed")
            row = table[(name, scale)]
            x, info = optisr.guided_upsample(lr, guide, scale, return_info=True)
            row["default"].append(_rmse(x, hr, ok))
            for a, col in zip(args.alphas, cols):
                w = fn if a == 1.0 else colour_blended(fn, share=1.0 - a)
                # callables are solved unrefined unless asked: the default call's refinement, as for a model
                x = optisr.guided_upsample(lr, guide, scale, weights=w, refine=info.refine)
                row[col].append(_rmse(x, hr, ok))
            print(name, i, f"x{scale}", {c: round(row[c][-1], 3) for c in cols}, flush=True)
    print("\n| set | scale | n | " + " | ".join(cols) + " |")
    print("|---|---:|---:|" + "---:|" * len(cols))
    for (name, scale), row in table.items():
        print(
            f"| {name} | ×{scale} | {len(row['default'])} | "
            + " | ".join(f"{np.mean(row[c]):.3f}" for c in cols)
            + " |"
        )


if __name__ == "__main__":
    main()
