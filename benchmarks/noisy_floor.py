"""The edge-weight floor of ``fidelity="auto"`` on noisy sources: fixed floors against the GCV choice.

Data allowed for tuning only: RGB-D-D test405 (``--rgbdd DIR``; depth in cm, every ``--step``-th
image) and procedural scenes (:func:`optisr.data.synthetic.make_scene`, seeds 7000+, a
Middlebury-like 8-bit disparity ``d = 220 · z_min / z``). The LR is the noisy protocol's: block
average (``area``) plus seeded Gaussian noise (σ in cm for RGB-D-D, on 0–255 for the procedural
disparity; :func:`optisr.bench.guided_protocols.add_noise`). For every image and scale:

* ``floor F``: ``fidelity="soft"`` with the floor fixed at F and λ searched by GCV (``own`` = the
  graph's own weights, floor 1e-3);
* ``auto``: the default, floor and λ both by GCV (:func:`optisr.guided.fidelity.floor_search`);
* FBS and the guided filter (:mod:`optisr.guided.baselines` defaults) for reference.

Prints the mean RMSE per (set, scale) and how often ``auto`` picked each floor.

    python benchmarks/noisy_floor.py --rgbdd ../shared/data/depth_rgbdd_test405 [--n 8] [--step 50]
        [--scenes 4] [--sigma-rgbdd 3] [--sigma-proc 6] [--scales 4 8] [--weights default]

Measured (2 cores, one thread per process, ``--n 8 --step 50 --scenes 4``, learned model): see
README, "Noisy sources".
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator

import numpy as np
import torch

import optisr
from optisr.bench.guided_protocols import NoiseSpec, add_noise, make_lr
from optisr.guided.baselines import fbs, guided_filter
from optisr.guided.fidelity import FLOOR_STEPS


def _rmse(x: np.ndarray, y: np.ndarray, m: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(x, np.float64)[m] - y[m]) ** 2)))


def cases(
    args: argparse.Namespace, scale: int
) -> Iterator[tuple[str, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``(set, index, hr, valid, guide, noisy lr)`` of every image at ``scale``, HR cropped to a multiple of it."""
    if args.rgbdd:
        from optisr.data.rgbdd import RGBDD

        ds = RGBDD(args.rgbdd)
        for i in list(range(0, len(ds), args.step))[: args.n]:
            smp = ds[i]
            H, W = (n - n % scale for n in smp.depth.shape)
            hr = smp.depth[:H, :W].astype(np.float64) / 10.0  # mm -> cm
            ok = smp.mask[:H, :W]
            lr, lr_ok = make_lr(np.nan_to_num(hr), ok, "area", scale)
            lr = add_noise(lr, lr_ok, NoiseSpec(sigma=args.sigma_rgbdd), i, scale)
            yield "rgbdd", i, hr, ok, smp.guide[:H, :W], lr
    from optisr.data.synthetic import disparity_255, make_scene

    for i in range(args.scenes):
        sc = make_scene(384, 480, seed=7000 + i)
        hr = disparity_255(sc.depth_clean)
        ok = np.ones(hr.shape, bool)
        lr, lr_ok = make_lr(hr, ok, "area", scale)
        lr = add_noise(lr, lr_ok, NoiseSpec(sigma=args.sigma_proc), i, scale)
        yield "procedural", i, hr, ok, sc.guide.astype(np.float32), lr


def add_case_arguments(ap: argparse.ArgumentParser) -> None:
    """The options :func:`cases` reads (images, noise levels, scales); shared with ``noisy_refine.py``."""
    ap.add_argument("--rgbdd", default=None, help="RGB-D-D test405 folder (skipped when not given)")
    ap.add_argument("--n", type=int, default=8, help="RGB-D-D images")
    ap.add_argument("--step", type=int, default=50, help="every STEP-th RGB-D-D image")
    ap.add_argument("--scenes", type=int, default=4, help="procedural scenes")
    ap.add_argument("--sigma-rgbdd", type=float, default=3.0, help="noise std in cm")
    ap.add_argument("--sigma-proc", type=float, default=6.0, help="noise std on 0-255")
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_case_arguments(ap)
    ap.add_argument("--weights", default="default", help="default (learned) or color")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    floors: list[float | None] = [None, *FLOOR_STEPS]
    cols = ["FBS", "guided filter", *(f"floor {'own' if f is None else f}" for f in floors), "auto"]
    table: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    picked: dict[tuple[str, int], Counter] = defaultdict(Counter)
    t0 = time.perf_counter()
    for scale in args.scales:
        for name, i, hr, ok, guide, lr in cases(args, scale):
            row = table[(name, scale)]
            row["FBS"].append(_rmse(fbs(lr, guide, scale), hr, ok))
            row["guided filter"].append(_rmse(guided_filter(lr, guide, scale), hr, ok))
            for f in floors:
                # floor 0 keeps the graph's own weights (None would search the floor)
                x = optisr.guided_upsample(lr, guide, scale, weights=args.weights, fidelity="soft", floor=f or 0.0)
                row[f"floor {'own' if f is None else f}"].append(_rmse(x, hr, ok))
            x, info = optisr.guided_upsample(lr, guide, scale, weights=args.weights, return_info=True)
            row["auto"].append(_rmse(x, hr, ok))
            picked[(name, scale)]["own" if info.floor is None else f"{info.floor:g}"] += 1
            print(
                f"{name} #{i} x{scale}: auto {row['auto'][-1]:.3f} (floor {info.floor}, λ {info.lam:.3g}), "
                f"FBS {row['FBS'][-1]:.3f}  [{time.perf_counter() - t0:.0f} s]",
                flush=True,
            )
    print(
        f"\nmean RMSE ({args.weights} graph; RGB-D-D in cm, σ = {args.sigma_rgbdd:g}; procedural 0-255, σ = {args.sigma_proc:g})"
    )
    print("| set | scale | n | " + " | ".join(cols) + " | auto's floors |")
    print("|---|---:|---:|" + "---:|" * len(cols) + "---|")
    for (name, scale), row in table.items():
        vals = " | ".join(f"{np.mean(row[c]):.3f}" for c in cols)
        picks = ", ".join(f"{k}×{v}" for k, v in sorted(picked[(name, scale)].items()))
        print(f"| {name} | ×{scale} | {len(row['auto'])} | {vals} | {picks} |")


if __name__ == "__main__":
    main()
