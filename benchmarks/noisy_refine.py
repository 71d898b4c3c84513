"""Refinement on noisy sources: the refined soft solve against the unrefined ``auto`` default.

Data allowed for tuning only: the cases of ``benchmarks/noisy_floor.py`` (RGB-D-D test405 with
``--rgbdd DIR``, σ in cm; procedural scenes, σ on 0–255), block-average LR plus seeded noise.
For every image and scale: ``auto`` without refinement (``refine=0``: GCV λ and floor), then
one refined soft solve with that λ and floor for each (μ, β) of the grid
(:func:`optisr.guided.refine.refined_weights` of the ``auto`` solution, floored at the chosen
floor). Prints the mean RMSE per set and scale, best first.

    python benchmarks/noisy_refine.py --rgbdd ../shared/data/depth_rgbdd_test405 [--n 8] [--scenes 4]
        [--mu 4 8 16] [--beta 0 1] [--scales 4 8]

Measured (2 cores, one thread per process): see README, "Refinement".
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

import numpy as np
import torch

import optisr
from optisr.guided.model import default_model_path, load_guided_model
from optisr.guided.refine import Refinement, range_to_255, refined_weights

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from noisy_floor import add_case_arguments, cases  # the same images, noise and seeds
from refine import first_weights  # the shipped model's (or the colour) weights of a guide


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_case_arguments(ap)
    ap.add_argument("--mu", type=float, nargs="+", default=[4.0, 8.0, 16.0])
    ap.add_argument("--beta", type=float, nargs="+", default=[0.0, 1.0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_guided_model(default_model_path())[0]
    errs: dict[tuple[str, int, str], list[float]] = defaultdict(list)
    for scale in args.scales:
        for name, _, hr, ok, guide, lr in cases(args, scale):

            def rmse(y: np.ndarray, hr: np.ndarray = hr, ok: np.ndarray = ok) -> float:
                return float(np.sqrt(np.mean((np.asarray(y, np.float64)[ok] - hr[ok]) ** 2)))

            x, choice = optisr.guided_upsample(lr, guide, scale, refine=0, return_info=True)
            errs[(name, scale, "auto, unrefined")].append(rmse(x))
            if choice.fidelity != "soft":
                continue
            w0 = first_weights("model", guide, np.nan_to_num(lr), scale, model)
            x_t = torch.from_numpy(np.asarray(x, np.float64))[None, None]
            for mu in args.mu:
                for beta in args.beta:
                    ref = Refinement(mu=mu, beta=beta, to_255=float(range_to_255(lr))).with_floor(choice.floor)
                    w = refined_weights(w0, x_t, ref)[0].numpy()
                    y = optisr.guided_upsample(lr, guide, scale, weights=w, fidelity="soft", lam=choice.lam)
                    errs[(name, scale, f"refined μ {mu:g} β {beta:g}")].append(rmse(y))
            print(f"×{scale} {name}: λ {choice.lam:.3g} floor {choice.floor}", flush=True)
    for name, scale in sorted({(k[0], k[1]) for k in errs}):
        rows = sorted((float(np.mean(v)), k[2]) for k, v in errs.items() if k[:2] == (name, scale))
        print(f"\n{name} ×{scale}: " + " | ".join(f"{cfg} {v:.3f}" for v, cfg in rows))


if __name__ == "__main__":
    main()
