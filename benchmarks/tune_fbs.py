"""Choose the parameters of the ``fbs`` baseline (optisr's fast bilateral solver) on procedural scenes only.

Never uses benchmark data (the evaluation sets, Middlebury included, stay untouched). Each scene
comes from :func:`optisr.data.synthetic.make_scene` (seeds 3000+, disjoint from the seeds of
``tune_color.py`` and ``tune_baselines.py``); its clean depth is turned into a Middlebury-like
8-bit disparity (``d = 220 · z_min / z``, so the nearest point is 220 and disparity falls as 1/z),
and the LR source is the noisy protocol's: block average (``area`` operator) plus Gaussian noise
of std ``--sigma`` (default 6, on 0–255), one seeded stream per scene and scale. Prints a markdown
table of the mean RMSE (0–255, full HR image) per setting and scale, the best setting of each
scale in bold, and the best settings.

    python benchmarks/tune_fbs.py [--scenes 6] [--size 512 640] [--scales 2 4 8 16]

The grid: the paper's reference-code defaults (σ_xy 8, σ_l 4, σ_uv 4, λ 128) and its neighbours
along each axis, both confidences (uniform, the paper's Gaussian bump); ``--full-grid`` for every
combination. The defaults of :func:`optisr.guided.baselines.fbs` (σ_xy 6, σ_l 16, σ_uv 8, λ 64,
uniform) came from::

    python benchmarks/tune_fbs.py --full-grid --scenes 3 --size 384 480 --sigma-spatial 3 4 6 8 12 16 \
        --sigma-luma 4 8 16 --sigma-chroma 8 --lam 8 16 32 64 128 256 --confidence uniform
    python benchmarks/tune_fbs.py --full-grid --scenes 3 --size 384 480 --sigma-spatial 6 \
        --sigma-luma 16 24 32 --sigma-chroma 8 16 --lam 64 --confidence uniform bump

(mean RMSE over ×2/×4/×8/×16: 6.33 for the chosen setting, 7.15 for the paper's defaults, 9.45 for
bicubic; about 8 minutes on a busy 2-core CPU, 1 thread).
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch

from optisr.data.synthetic import disparity_255, make_scene
from optisr.guided.baselines import bicubic, fbs
from optisr.ops.operators import make_operator
from optisr.rng import derive_seed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--size", type=int, nargs=2, default=[512, 640])
    ap.add_argument("--seed0", type=int, default=3000)
    ap.add_argument("--sigma", type=float, default=6.0)
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4, 8, 16])
    ap.add_argument("--sigma-spatial", type=float, nargs="+", default=[4.0, 8.0, 16.0])
    ap.add_argument("--sigma-luma", type=float, nargs="+", default=[4.0, 8.0, 16.0])
    ap.add_argument("--sigma-chroma", type=float, nargs="+", default=[4.0, 8.0, 16.0])
    ap.add_argument("--lam", type=float, nargs="+", default=[32.0, 128.0, 512.0])
    ap.add_argument("--confidence", nargs="+", default=["uniform", "bump"])
    ap.add_argument("--full-grid", action="store_true", help="every combination, not only one axis at a time")
    args = ap.parse_args()
    torch.set_num_threads(1)

    base = {"sigma_spatial": 8.0, "sigma_luma": 4.0, "sigma_chroma": 4.0, "lam": 128.0, "confidence": "uniform"}
    axes = {
        "sigma_spatial": args.sigma_spatial,
        "sigma_luma": args.sigma_luma,
        "sigma_chroma": args.sigma_chroma,
        "lam": args.lam,
        "confidence": args.confidence,
    }
    if args.full_grid:
        settings = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    else:
        settings = [dict(base)]
        for key, values in axes.items():
            settings += [{**base, key: v} for v in values if v != base[key]]
    names = ["bicubic"] + [", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items())
                           for s in settings]  # fmt: skip

    t0 = time.perf_counter()
    H, W = args.size
    errs: dict[tuple[str, int], list[float]] = {}
    for i in range(args.scenes):
        scene = make_scene(H, W, seed=args.seed0 + i)
        truth = disparity_255(scene.depth_clean)
        guide = scene.guide.astype(np.float64)
        for f in args.scales:
            h, w = H // f, W // f
            t, g = truth[: h * f, : w * f], guide[: h * f, : w * f]
            lr = make_operator("area", t.shape, f).apply(torch.from_numpy(t)).numpy()
            rng = np.random.default_rng(derive_seed(args.seed0, i, f))
            lr = lr + rng.standard_normal(lr.shape) * args.sigma
            errs.setdefault(("bicubic", f), []).append(float(np.sqrt(np.mean((bicubic(lr, g, f) - t) ** 2))))
            for name, s in zip(names[1:], settings, strict=True):
                out = fbs(lr, g, f, **s)
                errs.setdefault((name, f), []).append(float(np.sqrt(np.mean((out - t) ** 2))))
    mean = {k: float(np.mean(v)) for k, v in errs.items()}
    best = {f: min(names[1:], key=lambda n: mean[n, f]) for f in args.scales}
    print(f"\n### fbs on {args.scenes} procedural scenes {H}×{W}, area LR + N(0, {args.sigma:g}²), RMSE 0–255\n")
    print("| setting | " + " | ".join(f"×{f}" for f in args.scales) + " | mean |")
    print("|---|" + "---:|" * (len(args.scales) + 1))
    for n in names:
        cells = [f"**{mean[n, f]:.3f}**" if best.get(f) == n else f"{mean[n, f]:.3f}" for f in args.scales]
        print(f"| {n} | " + " | ".join(cells) + f" | {np.mean([mean[n, f] for f in args.scales]):.3f} |")
    overall = min(names[1:], key=lambda n: np.mean([mean[n, f] for f in args.scales]))
    print("\nbest per scale: " + "; ".join(f"×{f}: {best[f]}" for f in args.scales))
    print(f"best on average over scales: {overall}")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
