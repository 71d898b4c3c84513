"""Time of one whole ``optisr.guided_upsample`` call on the CPU, and of its parts.

    python benchmarks/guided_call_speed.py [--size 1024] [--scales 4 8 16] [--threads 2] [--repeat 3]
                                           [--weights color default [MODEL.safetensors ...]] [--operator area]
                                           [--backend auto|torch]

A procedural scene (``optisr.data.synthetic.make_scene``, seed 3), its LR source made with the
operator (float32 numpy arrays, the guide float32 H×W×3 in [0, 1]); default ``fidelity="auto"``,
tol 1e-4. For each weights kind and scale it prints, best of ``--repeat`` (seconds):

* ``call``: the whole public call (defaults: a clean source is solved exactly, unrefined);
* ``refine 1``: the whole call with ``refine=1`` (one re-weighted solve more, :mod:`optisr.guided.refine`);
* ``auto-fid.``: the ``fidelity="auto"`` decision (noise estimate and spread of the source);
* ``weights``: the colour graph (:func:`~optisr.guided.graph_weights.color_weights`) or the learned
  model's network, on the tensors the call builds;
* ``init``: the bicubic start and its projection onto ``D x = s``;
* ``solve``: the exact solve (:func:`~optisr.solvers.graph.solve_exact`, init included) and its CG
  iterations;
* ``rest``: call − (auto-fid. + weights + solve): input conversion, checks, floor, copies out.

The parts are timed separately on the same inputs, so they need not add up exactly to the call.
Wall-clock times depend on the machine's load: the script prints ``os.getloadavg()``; on a
loaded machine ``--threads 1 --clock cpu`` (process CPU time) is the steadier comparison.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import optisr
from optisr.data.synthetic import make_scene
from optisr.guided.api import color_weights
from optisr.guided.fidelity import choose_fidelity
from optisr.guided.graph_weights import resolve_weights
from optisr.ops.operators import make_operator
from optisr.solvers import fused
from optisr.solvers.graph import SolverOptions, default_init, solve_exact

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """(best time in s over ``repeat`` runs on the chosen clock, the last result)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = _clock()
        out = fn()
        best = min(best, _clock() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--weights",
        nargs="+",
        default=["color", "default"],
        help="color, default (the shipped model) or guided model files (.safetensors)",
    )
    ap.add_argument("--operator", default="area")
    ap.add_argument(
        "--backend",
        choices=["auto", "torch"],
        default="auto",
        help="auto: the fused Numba CG loop where it applies (optisr.solvers.fused, needs numba); torch: "
        "the PyTorch loop everywhere (the fused path is switched off for this run)",
    )
    ap.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (all threads summed; with --threads 1 it "
        "ignores time spent waiting for a core on a loaded machine)",
    )
    args = ap.parse_args()
    for kind in args.weights:
        if kind not in ("color", "default") and not os.path.isfile(kind):
            ap.error(f"--weights {kind}: neither color, default nor a model file")
    global _clock
    _clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    if args.backend == "torch":
        fused.available = lambda: False  # the PyTorch loop for every solve of this run
    n = args.size
    scene = make_scene(n, n, seed=3)
    guide = np.ascontiguousarray(scene.guide, dtype=np.float32)
    depth = torch.from_numpy(np.ascontiguousarray(scene.depth_clean, dtype=np.float32))[None, None]
    gt = torch.from_numpy(guide.transpose(2, 0, 1).copy())[None]
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {n}² guide, operator {args.operator}, "
        f"float32, best of {args.repeat}, {args.clock} clock, CG loop: "
        f"{'fused (Numba)' if fused.available() else 'PyTorch'}; load average {load}\n"
    )
    print("| weights | scale | call s | refine 1 s | auto-fid. s | weights s | init s | solve s (CG it.) | rest s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind in args.weights:
        for f in args.scales:
            print(_row(kind, f, guide, gt, depth, args.operator, args.repeat), flush=True)


def _row(
    kind: str, f: int, guide: np.ndarray, gt: torch.Tensor, depth: torch.Tensor, operator: str, repeat: int
) -> str:
    """One table row: weights ``kind`` at ×``f`` (guide H×W×3 numpy, gt (1, 3, H, W), depth (1, 1, H, W))."""
    n = guide.shape[0]
    op = make_operator(operator, (n, n), f)
    src = op.apply(depth)
    src_np = src[0, 0].numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_call, _ = _best(lambda: optisr.guided_upsample(src_np, guide, f, operator=operator, weights=kind), repeat)
        t_refined, _ = _best(
            lambda: optisr.guided_upsample(src_np, guide, f, operator=operator, weights=kind, refine=1), repeat
        )
        t_fid, _ = _best(lambda: choose_fidelity(src_np, f, fidelity="auto"), repeat)
        resolved, learned = resolve_weights(kind, f, src_np, None)
        with torch.no_grad():
            if learned:
                t_w, w = _best(lambda: resolved(gt, src), repeat)
            else:
                t_w, w = _best(lambda: color_weights(gt), repeat)
        w = w.clamp_min(1e-4)  # graph_solve's default floor, as the call applies it
        t_init, _ = _best(lambda: op.project(default_init(op, src, None), src), repeat)
        opts = SolverOptions(tol=1e-4, max_iter=2000)
        t_solve, (_, info) = _best(lambda: solve_exact(w, src, op, options=opts), repeat)
    name = "default (model)" if learned else kind
    if kind not in ("color", "default"):
        name = f"model {os.path.basename(kind)}"
    elif kind == "default" and not learned:
        name = "default (colour: no model installed)"
    rest = t_call - t_fid - t_w - t_solve
    return (
        f"| {name} | ×{f} | **{t_call:.3f}** | {t_refined:.3f} | {t_fid:.3f} | {t_w:.3f} | {t_init:.3f} | "
        f"{t_solve:.3f} ({int(info.iterations.max())}) | {rest:.3f} |"
    )


if __name__ == "__main__":
    main()
