"""Noisy guides: the graphs with and without a noise-scaled bilateral pre-filter of the guide (allowed data only).

Sets: procedural scenes (``--scenes`` of ``--size``², seeds from 950000, not the training
validation's) and, with ``--rgbdd DIR``, every ``--step``-th RGB-D-D test405 image (``--n`` of them;
RMSE in cm; the learned model trained on this split, so its RGB-D-D rows are not zero-shot).
Conditions: ``clean`` (the guide as it is) and ``dim`` (re-exposed as a dim, noisy indoor capture,
:data:`optisr.degrade.low_light.DIM_INDOOR`, seeded per image). Protocol-A LR (bicubic operator,
clean source), exact fidelity, the colour graph and the shipped model. Variants: ``none`` and the
bilateral filter of :func:`optisr.guided.guide_filter.filter_guide` for each (k, space) of the grid,
σ̂ by :func:`~optisr.guided.guide_filter.estimate_guide_noise`. Prints the mean RMSE (procedural:
nRMSE, RMSE / std of the HR depth) per cell with the ratio to ``none``, and per variant the mean
ratio over all cells, over the dim cells, and the worst cell.

Rule for a default (fixed 2026-12-03 08:05 UTC, before any variant was scored): a variant qualifies
when no cell (set × condition × graph × scale) is more than 0.5 % worse than ``none`` and its mean
ratio over the dim cells is ≤ 0.95; of those, the lowest mean ratio over all cells becomes the
default of ``guided_upsample`` / ``optisr guided``. Evaluation-only sets are measured once afterwards.

Outcome (2026-12-03): k 4, space 2 qualified with the lowest mean ratio (0.935; dim cells 0.894; k 2
and space 1 failed, k 6 missed the 0.5 % bound by 0.02 %). Measured on Middlebury30 it made ×4 / ×8
worse (cropped 1.66 / 2.63 vs 1.62 / 2.61), so the package filters only guides whose σ̂ is at least
``GUIDE_NOISE_GATE`` of their contrast (set from this data: between its clean and dim guides); this
script still compares the filter ungated (README, *Noisy guides*).

    python benchmarks/guide_filter.py --rgbdd ../shared/data/depth_rgbdd_test405 [--sets procedural rgbdd]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import torch

from optisr import guided_upsample
from optisr.degrade.low_light import DIM_INDOOR, degrade_guide
from optisr.guided.guide_filter import estimate_guide_noise, filter_guide
from optisr.ops.operators import make_operator

GRID = [(2.0, 2.0), (3.0, 2.0), (4.0, 2.0), (3.0, 1.0), (6.0, 2.0)]


def images(args: argparse.Namespace) -> Iterator[tuple[str, int, np.ndarray, np.ndarray, np.ndarray]]:
    """``(set, index, guide float32 (H, W, 3) in [0, 1], depth float64 (H, W), valid)``."""
    if "procedural" in args.sets:
        from optisr.data.synthetic import make_scene

        for i in range(args.scenes):
            sc = make_scene(args.size, args.size, seed=950_000 + i)
            d = sc.depth_clean.astype(np.float64)
            yield "procedural", i, sc.guide.astype(np.float32), d, np.ones(d.shape, bool)
    if "rgbdd" in args.sets and args.rgbdd:
        from optisr.data.rgbdd import RGBDD

        ds = RGBDD(args.rgbdd)
        for i in list(range(0, len(ds), args.step))[: args.n]:
            s = ds[i]
            g = s.guide.astype(np.float32)
            g = g / 255.0 if g.max() > 1.0 else g
            yield "rgbdd", i, g, s.depth.astype(np.float64) / 10.0, s.mask.copy()  # mm -> cm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rgbdd", default=None)
    ap.add_argument("--sets", nargs="+", default=["procedural", "rgbdd"])
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--step", type=int, default=50)
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    variants = ["none", *(f"k{k:g} s{s:g}" for k, s in GRID)]
    err: dict[tuple[str, str, str, int, str], list[float]] = defaultdict(list)
    t0 = time.perf_counter()
    for name, i, guide0, depth, valid in images(args):
        for cond in ("clean", "dim"):
            guide = guide0 if cond == "clean" else degrade_guide(guide0, np.random.default_rng([4242, i]), DIM_INDOOR)
            sigma = estimate_guide_noise(guide)
            guides = {
                "none": guide,
                **{v: filter_guide(guide, sigma, k=k, space=s) for v, (k, s) in zip(variants[1:], GRID)},
            }
            for f in args.scales:
                H, W = (n - n % f for n in depth.shape)
                d, ok = depth[:H, :W], valid[:H, :W]
                filled = np.where(ok, d, np.nanmedian(d[ok]))
                src = make_operator("bicubic", (H, W), f).apply(torch.from_numpy(filled)).numpy()
                unit = float(d[ok].std()) if name == "procedural" else 1.0
                for graph in ("color", "default"):
                    for v, g in guides.items():
                        x = guided_upsample(
                            src, np.clip(g[:H, :W], 0, 1), f, operator="bicubic", weights=graph, fidelity="exact"
                        )
                        err[(name, cond, graph, f, v)].append(float(np.sqrt(np.mean((x[ok] - d[ok]) ** 2))) / unit)
            print(f"{name} {i} {cond}: guide σ̂ {sigma:.4f}  {time.perf_counter() - t0:.0f} s", flush=True)
    cells = sorted({k[:4] for k in err})
    print("\n| set | guide | graph | scale | " + " | ".join(variants) + " |")
    print("|---|---|---|---:|" + "---:|" * len(variants))
    ratios: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for c in cells:
        base = float(np.mean(err[(*c, "none")]))
        row = []
        for v in variants:
            m = float(np.mean(err[(*c, v)]))
            row.append(f"{m:.4f}" if v == "none" else f"{m:.4f} ({m / base:.3f})")
            if v != "none":
                ratios[v].append((c[1], m / base))
        print(f"| {c[0]} | {c[1]} | {c[2]} | ×{c[3]} | " + " | ".join(row) + " |")
    print()
    for v, r in ratios.items():
        allr = [x for _, x in r]
        dim = [x for cond, x in r if cond == "dim"]
        ok = max(allr) <= 1.005 and float(np.mean(dim)) <= 0.95
        print(
            f"{v}: mean ratio {np.mean(allr):.4f}, dim {np.mean(dim):.4f}, worst cell {max(allr):.4f} -> "
            + ("qualifies" if ok else "does not qualify")
        )


if __name__ == "__main__":
    main()
