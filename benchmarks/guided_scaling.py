"""Time of a whole ``optisr.guided_upsample`` call against image size: is the cost linear in pixels?

    python benchmarks/guided_scaling.py [--sizes 256 512 1024 2048 4096 8192] [--scale 8] [--threads 2]
                                        [--weights color default] [--untiled-up-to 4096] [--repeat 2]
                                        [--figure docs/figures/guided_scaling.png]

For each size n, an n×n procedural scene (``optisr.data.synthetic.make_scene``, seed 3, up to 1024²);
above 1024² the 1024² scene mirrored into a 2×2, 4×4, … mosaic, so that every size above 1 MP has
the same content per pixel (``make_scene`` scales its objects with the image, so a 4096² scene is
smoother per pixel than a 1024² one and flatters the scaling: its colour call measured 1.08× the
1 MP time per pixel where the mosaic of the 2048² scene measured 1.42×),
its LR source by the area operator (float32 numpy arrays, the guide H×W×3 in [0, 1]), and the
default call (``fidelity="auto"``, tol 1e-4) with the colour graph and/or the shipped model. Two
paths: ``auto`` (the call's own choice: tiled above 2048², see ``AUTO_TILE_PIXELS``) and ``untiled``
(``tile_size=0``; up to ``--untiled-up-to``, since one untiled 64 MP solve needs ~4 GB). Best of 2
calls at every size (``--repeat``; the first call at a new size pays page faults for fresh
memory, 3.6 s against 3.1-3.4 s for the next ones at 4096², and the 1 MP reference is a best
of 2 too). Prints a markdown table with the first and the best call, µs per pixel of the best and
its ratio to the 1024² (1 MP) value of the same weights and path, and the same ratio for the
first calls; ``--figure`` saves time against pixels (log-log)
with a linear reference. Wall clock: run it on a quiet machine (the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch

import optisr
from optisr.data.synthetic import make_scene
from optisr.ops.operators import make_operator


def _scene(n: int, cache: dict[int, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(guide (n, n, 3) float32, depth (n, n) float32): make_scene up to 1024², mirrored mosaics above."""
    if n in cache:
        return cache[n]
    if n <= 1024:
        sc = make_scene(n, n, seed=3)
        out = (np.ascontiguousarray(sc.guide, dtype=np.float32), np.ascontiguousarray(sc.depth_clean, np.float32))
    else:
        g, d = _scene(n // 2, cache)
        g = np.concatenate([g, g[:, ::-1]], 1)
        g = np.ascontiguousarray(np.concatenate([g, g[::-1]], 0))
        d = np.concatenate([d, d[:, ::-1]], 1)
        d = np.ascontiguousarray(np.concatenate([d, d[::-1]], 0))
        out = (g, d)
    cache[n] = out
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192])
    ap.add_argument("--scale", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", nargs="+", default=["color", "default"])
    ap.add_argument(
        "--repeat", type=int, default=2, help="calls per size, the best is reported (the same at every size)"
    )
    ap.add_argument("--untiled-up-to", type=int, default=4096, help="largest size also run untiled (tile_size=0)")
    ap.add_argument("--figure", default=None, help="save time vs pixels as a PNG (needs matplotlib: the [plot] extra)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"torch {torch.__version__}, {args.threads} threads, ×{args.scale}, area operator, float32, "
        f"load average {load}\n"
    )
    print("| weights | path | size | MP | first call s | best call s | µs / px | × the 1 MP µs / px | first, × |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    results: dict[tuple[str, str], list[tuple[int, float]]] = {}
    one_mp: dict[str, float] = {}  # µs / px at 1024², per weights (auto path: untiled at that size)
    one_mp_first: dict[str, float] = {}  # the same for the first call
    for kind in args.weights:
        for path in ("auto", "untiled"):
            for n in args.sizes:
                if path == "untiled" and (n > args.untiled_up_to or n * n <= optisr.guided.api.AUTO_TILE_PIXELS):
                    continue  # at or below 2048² the auto path is the untiled one
                guide, depth = _scene(n, cache)
                op = make_operator("area", (n, n), args.scale)
                src = op.apply(torch.from_numpy(depth)[None, None])[0, 0].numpy()
                times = []
                for _ in range(args.repeat):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        t0 = time.perf_counter()
                        optisr.guided_upsample(
                            src, guide, args.scale, weights=kind, tile_size=0 if path == "untiled" else None
                        )
                        times.append(time.perf_counter() - t0)
                best, first = min(times), times[0]
                us, us_first = 1e6 * best / (n * n), 1e6 * first / (n * n)
                results.setdefault((kind, path), []).append((n, best))
                if n == 1024 and path == "auto":
                    one_mp[kind], one_mp_first[kind] = us, us_first
                ratio = f"{us / one_mp[kind]:.2f}" if kind in one_mp else "–"
                ratio_first = f"{us_first / one_mp_first[kind]:.2f}" if kind in one_mp_first else "–"
                print(
                    f"| {kind} | {path} | {n}² | {n * n / 1e6:.1f} | {first:.3f} | {best:.3f} | {us:.3f} | {ratio} "
                    f"| {ratio_first} |",
                    flush=True,
                )
    if args.figure:
        from _plot import pixels_figure, save_pixels_figure  # benchmarks/ is on sys.path when a script here runs

        fig, ax = pixels_figure((6.4, 4.4))
        for (kind, path), pts in results.items():
            px = np.array([n * n for n, _ in pts], dtype=float)
            ts = np.array([t for _, t in pts])
            ax.loglog(px, ts, "o-" if path == "auto" else "s--", label=f"{kind}, {path}")
        auto = results.get((args.weights[0], "auto"), [])
        one = dict(auto).get(1024)
        if one is not None:
            px = np.array([n * n for n in args.sizes], dtype=float)
            ax.loglog(px, one * px / 1024**2, "k:", label="linear through 1 MP")
        ax.set_title(f"×{args.scale}, area, {args.threads} CPU threads")
        save_pixels_figure(fig, ax, "whole guided_upsample call [s]", args.figure)


if __name__ == "__main__":
    main()
