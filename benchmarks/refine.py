"""Refinement (re-weighting the graph by its first solution): sweep μ and β on data allowed for tuning.

Data: RGB-D-D test405 (``--rgbdd DIR``; every ``--step``-th image from ``--first``, depth in cm;
allowed for training and tuning, so RGB-D-D numbers after this are not zero-shot) and procedural
scenes (:func:`optisr.data.synthetic.make_scene`, seeds 7100+, 384×480, a Middlebury-like 8-bit
disparity ``d = 220 · z_min / z``). Protocol-A LR (antialiased bicubic, ``operator="bicubic"``),
exact mode. For each graph (``color`` and the shipped ``model``) it solves once without refinement,
then once per (μ, β) with :func:`optisr.guided.refine.refined_weights` of that first solution, and
prints the mean RMSE per set and scale and the mean ratio to the unrefined solve, best first.
``--save FILE`` writes every per-image RMSE as JSON.

    python benchmarks/refine.py --rgbdd ../shared/data/depth_rgbdd_test405 [--n 8] [--step 50]
        [--scenes 6] [--scales 4 8 16] [--mu 2 3 4 6 8] [--beta 0 0.5 1] [--passes 1]

Measured (2 cores, one thread per process): see README, "Refinement".
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import torch

import optisr
from optisr.bench.guided_protocols import make_lr
from optisr.guided.graph_weights import color_weights, model_weights
from optisr.guided.model import default_model_path, load_guided_model
from optisr.guided.refine import Refinement, range_to_255, refined_weights


def cases(args: argparse.Namespace, scale: int) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """``(set, hr, valid, guide)`` of every image, HR cropped to a multiple of ``scale``."""
    if args.rgbdd:
        from optisr.data.rgbdd import RGBDD

        ds = RGBDD(args.rgbdd)
        for i in list(range(args.first, len(ds), args.step))[: args.n]:
            smp = ds[i]
            H, W = (n - n % scale for n in smp.depth.shape)
            yield "rgbdd", smp.depth[:H, :W].astype(np.float64) / 10.0, smp.mask[:H, :W], smp.guide[:H, :W]
    from optisr.data.synthetic import disparity_255, make_scene

    for i in range(args.scenes):
        sc = make_scene(384, 480, seed=7100 + i)
        hr = disparity_255(sc.depth_clean)
        yield "procedural", hr, np.ones(hr.shape, bool), sc.guide.astype(np.float32)


def first_weights(kind: str, guide: np.ndarray, lr: np.ndarray, scale: int, model) -> torch.Tensor:
    """(1, 2, H, W) float64 weights of the colour graph or the model."""
    g = torch.from_numpy(np.ascontiguousarray(np.atleast_3d(guide).transpose(2, 0, 1))).float()[None]
    if guide.dtype == np.uint8:
        g = g / 255.0
    elif guide.dtype == np.uint16:
        g = g / 65535.0
    if kind == "color":
        return color_weights(g).double()
    return model_weights(model, scale)(g, torch.from_numpy(lr).float()[None, None]).double()


def solve(lr: np.ndarray, guide: np.ndarray, scale: int, w: torch.Tensor) -> np.ndarray:
    """The exact protocol-A solve with explicit (1, 2, H, W) weights, no refinement of its own."""
    return optisr.guided_upsample(
        lr, guide, scale, operator="bicubic", weights=w[0].numpy(), fidelity="exact", refine=0
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rgbdd", default=None, help="RGB-D-D test405 folder (skipped when not given)")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--first", type=int, default=7)
    ap.add_argument("--step", type=int, default=50)
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--mu", type=float, nargs="+", default=[2.0, 3.0, 4.0, 6.0, 8.0])
    ap.add_argument("--beta", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    ap.add_argument("--passes", type=int, default=1)
    ap.add_argument("--graphs", nargs="+", default=["color", "model"], choices=("color", "model"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_guided_model(default_model_path())[0]
    grid = list(itertools.product(args.mu, args.beta))
    errs: dict[tuple[str, str, int, str], list[float]] = defaultdict(list)
    for scale in args.scales:
        for name, hr, ok, guide in cases(args, scale):
            lr, lr_ok = make_lr(np.nan_to_num(hr), ok, "bicubic", scale)
            lr = np.where(lr_ok, lr, np.nan)
            k = range_to_255(lr)
            filled = np.nan_to_num(lr, nan=float(np.nanmean(lr)))

            for kind in args.graphs:
                w0 = first_weights(kind, guide, filled, scale, model)
                x0 = solve(lr, guide, scale, w0)
                errs[(name, kind, scale, "unrefined")].append(float(np.sqrt(np.mean((x0[ok] - hr[ok]) ** 2))))
                for mu, beta in grid:
                    x = x0
                    for _ in range(args.passes):
                        ref = Refinement(passes=1, mu=mu, beta=beta, to_255=float(k))
                        x = solve(lr, guide, scale, refined_weights(w0, torch.from_numpy(x)[None, None], ref))
                    errs[(name, kind, scale, f"mu {mu:g} beta {beta:g}")].append(
                        float(np.sqrt(np.mean((x[ok] - hr[ok]) ** 2)))
                    )
            print(f"×{scale} {name}: done", flush=True)
    if args.save:
        with open(args.save, "w") as fh:
            json.dump({"|".join(map(str, key)): v for key, v in errs.items()}, fh)
    sets = sorted({key[0] for key in errs})
    for kind in args.graphs:
        print(f"\n{kind} graph, {args.passes} pass(es): mean RMSE (ratio to unrefined); best mean ratio first\n")
        cols = [(s, f) for s in sets for f in args.scales]
        configs = sorted({key[3] for key in errs if key[1] == kind})

        def ratio(cfg: str, s: str, f: int, kind: str = kind) -> float:
            return float(np.mean(errs[(s, kind, f, cfg)]) / np.mean(errs[(s, kind, f, "unrefined")]))

        configs.sort(key=lambda c: np.mean([ratio(c, s, f) for s, f in cols]))
        print("| config | " + " | ".join(f"{s} ×{f}" for s, f in cols) + " | mean ratio |")
        print("|---|" + "---:|" * (len(cols) + 1))
        for c in configs:
            cells = [f"{np.mean(errs[(s, kind, f, c)]):.3f} ({ratio(c, s, f):.2f})" for s, f in cols]
            print(f"| {c} | " + " | ".join(cells) + f" | {np.mean([ratio(c, s, f) for s, f in cols]):.3f} |")


if __name__ == "__main__":
    main()
