"""Solve time and CG iterations of the graph-regularised layer on the CPU.

For each HR size and scale, a procedural RGB-D scene (optisr.data.synthetic) is downsampled
with each chosen operator and upsampled back with the colour-affinity graph, in exact and soft
mode, float32, with each chosen preconditioner (``--precond jacobi multigrid`` compares them).
Times are the best of ``--repeat`` whole calls (setup included; wall clock, torch threads = all
cores unless --threads). Accuracy: RMSE to a tightly converged float64 reference solve (tol 1e-10, multigrid)
in % of the source range, and the largest consistency error max|Dx − s|. Prints a markdown table;
with --figure, saves time-vs-pixels as a PNG.

    python benchmarks/solver.py                          # 256² … 2048², ×4/×8/×16
    python benchmarks/solver.py --sizes 1024 --scales 8  # the headline number
    python benchmarks/solver.py --sizes 1024 --operator area bicubic --precond jacobi multigrid --threads 1
    python benchmarks/solver.py --sizes 1024 --operator area bicubic --backend auto torch --threads 2 --no-reference

``--backend auto torch`` compares the fused Numba CG loop (:mod:`optisr.solvers.fused`; the ``loop``
column says which loop a row ran) with the PyTorch loop.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from optisr.data.synthetic import make_scene
from optisr.guided.api import color_weights
from optisr.ops.operators import make_operator
from optisr.solvers import fused
from optisr.solvers.graph import BACKENDS, PRECONDITIONERS, SolverOptions, solve_exact, solve_soft


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--modes", nargs="+", default=["exact", "soft"])
    ap.add_argument("--operator", nargs="+", default=["area"])
    ap.add_argument("--precond", nargs="+", default=["jacobi"], choices=PRECONDITIONERS)
    ap.add_argument(
        "--backend",
        nargs="+",
        default=["auto"],
        choices=BACKENDS,
        help="CG loop: auto (the fused Numba loop where it applies, optisr.solvers.fused) and/or torch",
    )
    ap.add_argument("--no-reference", action="store_true", help="skip the converged reference (no RMSE column)")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--figure", default=None, help="save a time-vs-pixels plot (needs matplotlib)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, tol {args.tol:g}, "
        "colour-affinity weights on procedural scenes"
    )
    print(
        "| size | scale | operator | mode | precond | loop | time [s] | CG iterations | µs / pixel "
        "| RMSE to converged [% range] | max\\|Dx−s\\| [mm] |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    results = []
    for n in args.sizes:
        scene = make_scene(n, n, seed=7)
        depth = torch.from_numpy(scene.depth_clean)[None, None]
        guide = torch.from_numpy(scene.guide.transpose(2, 0, 1).copy())[None]
        w = color_weights(guide)
        for f in args.scales:
            for kind in args.operator:
                op = make_operator(kind, (n, n), f)
                s = op.apply(depth)
                rng = float(s.max() - s.min())
                for mode in args.modes:
                    solve = solve_exact if mode == "exact" else solve_soft
                    ref = None
                    if not args.no_reference:
                        tight = SolverOptions(
                            tol=1e-10, max_iter=20000, precond="multigrid", on_nonconvergence="ignore"
                        )
                        ref, _ = solve(w.double(), s.double(), op, options=tight)
                    for pre, backend in ((p, b) for p in args.precond for b in args.backend):
                        opts = SolverOptions(
                            tol=args.tol, max_iter=args.max_iter, precond=pre, on_nonconvergence="ignore",
                            backend=backend,
                        )  # fmt: skip
                        loop = (
                            "fused"
                            if backend == "auto" and pre == "jacobi" and fused.eligible(w, depth.to(w.dtype), op)
                            else "torch"
                        )
                        times = []
                        for _ in range(args.repeat):
                            t0 = time.perf_counter()
                            x, info = solve(w, s, op, options=opts)
                            times.append(time.perf_counter() - t0)
                        it = int(info.iterations.max())
                        note = "" if bool(info.converged.all()) else " (not converged)"
                        t = min(times)
                        err = (
                            "–" if ref is None else f"{100 * float((x.double() - ref).pow(2).mean().sqrt()) / rng:.4f}"
                        )
                        cons = float((op.apply(x) - s).abs().max())
                        results.append((n, f, mode, t))
                        print(
                            f"| {n}² | ×{f} | {kind} | {mode} | {pre} | {loop} | {t:.3f} | {it}{note} | {1e6 * t / n / n:.2f} "
                            f"| {err} | {cons:.1e} |",
                            flush=True,
                        )
    if args.figure:
        from _plot import pixels_figure, save_pixels_figure  # benchmarks/ is on sys.path when a script here runs

        fig, ax = pixels_figure((6, 4))
        for f in args.scales:
            for mode in args.modes:
                pts = [(n * n, t) for (n, ff, m, t) in results if ff == f and m == mode]
                if pts:
                    px, ts = zip(*pts)
                    ax.loglog(px, ts, "o-" if mode == "exact" else "s--", label=f"×{f} {mode}")
        px = np.array(sorted({n * n for (n, *_r) in results}), dtype=float)
        ax.loglog(px, px / px[0] * min(t for *_r, t in results), "k:", label="linear")
        save_pixels_figure(fig, ax, "solve time [s]", args.figure)


if __name__ == "__main__":
    main()
