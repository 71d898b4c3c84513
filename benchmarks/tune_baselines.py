"""Choose the default parameters of the guided-filter and JBU baselines on procedural scenes only.

Never uses benchmark data (the evaluation sets, Middlebury included, stay untouched). Each
scene comes from :func:`optisr.data.synthetic.make_scene` (seeds 2000+, disjoint from the
seeds of ``tune_color.py``); the LR source is protocol A: PIL bicubic downsampling of the clean
float depth (``make_operator("bicubic", ...)`` is PIL-exact). Prints, for each baseline, a
markdown table of the mean RMSE (mm, full HR image) over the scenes per setting and scale, the
best setting of each scale in bold, and a summary of the best settings.

    python benchmarks/tune_baselines.py [--scenes 16] [--size 256] [--scales 4 8 16]

The default grids bracket the optimum of a coarser first pass (GF radius 1-16, eps 1e-5 to
1e-1; JBU radius 1-3, sigma_spatial 0.5-2, sigma_range 0.04-0.32). Runs in about 5 minutes on
2 CPU cores with the default grids.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch

from optisr.data.synthetic import make_scene
from optisr.guided.baselines import bicubic, guided_filter, jbu
from optisr.ops.operators import make_operator


def _rmse(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((x - y.astype(np.float64)) ** 2)))


def _table(title: str, names: list[str], scales: list[int], errs: dict[tuple[str, int], float]) -> dict[int, str]:
    """Print a markdown table (rows = settings, columns = scales); return the best per scale."""
    best = {f: min(names, key=lambda n: errs[n, f]) for f in scales}
    print(f"\n### {title}\n")
    print("| setting | " + " | ".join(f"×{f}" for f in scales) + " |")
    print("|---|" + "---:|" * len(scales))
    for n in names:
        cells = [f"**{errs[n, f]:.2f}**" if best[f] == n else f"{errs[n, f]:.2f}" for f in scales]
        print(f"| {n} | " + " | ".join(cells) + " |")
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed0", type=int, default=2000)
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--gf-radii", type=int, nargs="+", default=[2, 3, 4, 6, 8, 10, 12, 16])
    ap.add_argument("--gf-eps", type=float, nargs="+", default=[1e-6, 1e-5, 3e-5, 1e-4, 1e-3])
    ap.add_argument("--jbu-radii", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--jbu-sigma-spatial", type=float, nargs="+", default=[0.35, 0.5, 0.7, 1.0])
    ap.add_argument("--jbu-sigma-range", type=float, nargs="+", default=[0.02, 0.03, 0.04, 0.06, 0.08])
    args = ap.parse_args()

    t0 = time.perf_counter()
    size = args.size
    scenes = [make_scene(size, size, seed=args.seed0 + i) for i in range(args.scenes)]
    # Protocol A sources: PIL bicubic downsampling of the clean float depth, per scale.
    sources = {
        f: [make_operator("bicubic", (size, size), f).apply(torch.from_numpy(sc.depth_clean)).numpy() for sc in scenes]
        for f in args.scales
    }
    print(
        f"{args.scenes} procedural scenes {size}×{size} (seeds {args.seed0}..{args.seed0 + args.scenes - 1}), "
        "protocol A (PIL bicubic LR of the clean depth); mean RMSE in mm over scenes."
    )

    def mean_err(fn, f: int, **kw) -> float:
        return float(np.mean([_rmse(fn(s, sc.guide, f, **kw), sc.depth_clean) for s, sc in zip(sources[f], scenes)]))

    ref = {f: mean_err(bicubic, f) for f in args.scales}
    print("\nbicubic (reference): " + ", ".join(f"×{f}: {ref[f]:.2f}" for f in args.scales))

    gf_grid = list(itertools.product(args.gf_radii, args.gf_eps))
    gf_names = [f"r={r} eps={e:g}" for r, e in gf_grid]
    gf_errs = {}
    for (r, e), n in zip(gf_grid, gf_names):
        for f in args.scales:
            gf_errs[n, f] = mean_err(guided_filter, f, radius=r, eps=e)
    gf_best = _table("Guided filter (radius in HR px, eps)", gf_names, args.scales, gf_errs)
    print(f"\n(elapsed {time.perf_counter() - t0:.0f} s)", flush=True)

    jbu_grid = list(itertools.product(args.jbu_radii, args.jbu_sigma_spatial, args.jbu_sigma_range))
    jbu_names = [f"r={r} σs={ss:g} σr={sr:g}" for r, ss, sr in jbu_grid]
    jbu_errs = {}
    for (r, ss, sr), n in zip(jbu_grid, jbu_names):
        for f in args.scales:
            jbu_errs[n, f] = mean_err(jbu, f, radius=r, sigma_spatial=ss, sigma_range=sr)
    jbu_best = _table("JBU (radius in LR px, sigma_spatial in LR px, sigma_range)", jbu_names, args.scales, jbu_errs)

    print("\n### Best settings\n")
    print("| scale | bicubic | guided filter | RMSE | JBU | RMSE |")
    print("|---|---:|---|---:|---|---:|")
    for f in args.scales:
        g, j = gf_best[f], jbu_best[f]
        print(f"| ×{f} | {ref[f]:.2f} | {g} | {gf_errs[g, f]:.2f} | {j} | {jbu_errs[j, f]:.2f} |")
    print("\nCurrent defaults of optisr.guided.baselines: " + ", ".join(
        f"×{f}: guided filter {mean_err(guided_filter, f):.2f}, JBU {mean_err(jbu, f):.2f}" for f in args.scales
    ))
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
