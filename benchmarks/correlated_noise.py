"""Noise correlated over a few source pixels: ``fidelity="auto"``'s block-level check, on allowed data.

A sensor's depth is rarely raw: phones and ToF cameras hole-fill, denoise and resample it, so what
is left of the noise is correlated over a few source pixels. :func:`~optisr.guided.fidelity.estimate_noise_sigma`
(a 3×3 high-pass) sees little of such noise, so ``auto`` solved exactly and copied it. Since the
sixteenth session ``auto`` also estimates σ̂ from 4×4 block means
(:func:`~optisr.guided.fidelity.estimate_correlated_sigma`) and solves softly when that is
≥ :data:`~optisr.guided.fidelity.CORRELATED_ABOVE` × spread, with λ from the discrepancy principle
on the block-averaged residual (:data:`~optisr.guided.fidelity.CORRELATED_TAU`).

Cases: RGB-D-D test405 (allowed; every STEP-th image, area LR, cm) clean at ×4 and ×8, and with
noise of P % of the depth, Gaussian-correlated over C source px (C = 1, 2, 4; P = 2, 4), at ×4
(and ×2 with C = 2, P = 3); procedural scenes clean at ×4 and ×8. The thresholds were chosen on
test405 images 0, 54, …, 378 with C = 2, P = 3 at ×4 (a scratch run); this run uses other images
(STEP 20 from 10) and other noise. Prints mean RMSE of ``auto`` (the default), the same call with
exact fidelity where the check fired (``auto`` without the block check, which fires only where
``auto`` would solve exactly; elsewhere the two are the same call), bicubic, and how many sources took the correlated branch.

Rule, fixed before the full run (2026-12-03): the block check stays in ``auto`` iff (1) on every
clean set and scale auto's mean is at most 1.002 × that without the check, and (2) on the
correlated-noise sets at ×4 auto's mean is below both that without the check and bicubic's in at
least 5 of the 6 (C, P) variants and more than 2 % above that without the check in none.

    OMP_NUM_THREADS=2 python benchmarks/correlated_noise.py --rgbdd ../shared/data/depth_rgbdd_test405

Result (2026-12-03): the rule FAILED — clean sets unchanged (no source took the branch), but at ×4
only 2 of the 6 variants improved on both (4 % at 1 px: 8.050 vs 8.713 / bicubic 8.106; 4 % at
2 px: 5.799 vs 8.401 / 8.210), 2 % at 1 px got 8.7 % worse (5.248 vs 4.826; τ too high for
short correlation), 2 % at 2 px stayed behind bicubic (4.540 vs 4.680 / 4.506), and noise
correlated over 4 px was never detected. This commit is the experiment; the next one reverts it.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator

import cv2
import numpy as np
import torch

import optisr
from optisr.bench.guided_protocols import make_lr
from optisr.guided.baselines import bicubic


def correlated_noise(shape: tuple[int, int], corr: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-std Gaussian noise correlated over ``corr`` px (a Gaussian blur of that std; 0: white)."""
    n = rng.normal(size=shape)
    if corr > 0:
        n = cv2.GaussianBlur(n, (0, 0), corr)
    return n / n.std()


VARIANTS = ((1.0, 2.0), (1.0, 4.0), (2.0, 2.0), (2.0, 4.0), (4.0, 2.0), (4.0, 4.0))
"""(correlation px, noise % of depth) of the ×4 noisy sets."""


def _cases(
    rgbdd: str | None, step: int, start: int, scenes: int, s: int
) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``(set, ground truth, valid, guide, LR)``."""
    if rgbdd:
        from optisr.data.rgbdd import RGBDD

        ds = RGBDD(rgbdd)
        for i in range(start, len(ds), step):
            smp = ds[i]
            H, W = (n - n % s for n in smp.depth.shape)
            hr = smp.depth[:H, :W].astype(np.float64) / 10.0  # mm -> cm
            ok = smp.mask[:H, :W]
            lr, _ = make_lr(np.nan_to_num(hr), ok, "area", s)
            guide = smp.guide[:H, :W]
            yield "rgbdd clean", hr, ok, guide, lr
            rng = np.random.default_rng(i)
            variants = VARIANTS if s == 4 else ((2.0, 3.0),) if s == 2 else ()
            for corr, pct in variants:
                noisy = lr + (pct / 100.0) * lr * correlated_noise(lr.shape, corr, rng)
                yield f"rgbdd {pct:g} % corr {corr:g} px", hr, ok, guide, noisy
    if s == 2:
        return
    from optisr.data.synthetic import disparity_255, make_scene

    for i in range(scenes):
        sc = make_scene(384, 480, seed=7000 + i)
        hr = disparity_255(sc.depth_clean)
        ok = np.ones(hr.shape, bool)
        yield "procedural clean", hr, ok, sc.guide.astype(np.float32), make_lr(hr, ok, "area", s)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rgbdd", default=None, help="RGB-D-D test405 folder (skipped when not given)")
    ap.add_argument("--step", type=int, default=20, help="every STEP-th RGB-D-D image")
    ap.add_argument("--start", type=int, default=10, help="the first RGB-D-D image")
    ap.add_argument("--scenes", type=int, default=8, help="procedural scenes")
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8, 2])
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    print("| scale | set | n | bicubic | auto without the check | auto | correlated | s/call auto |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for s in args.scales:
        table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for name, hr, ok, guide, lr in _cases(args.rgbdd, args.step, args.start, args.scenes, s):

            def rmse(x: np.ndarray, hr: np.ndarray = hr, ok: np.ndarray = ok) -> float:
                return float(np.sqrt(np.mean((np.asarray(x, np.float64)[ok] - hr[ok]) ** 2)))

            t0 = time.perf_counter()
            auto, choice = optisr.guided_upsample(lr, guide, s, return_info=True)
            row = table[name]
            row["seconds"].append(time.perf_counter() - t0)
            row["auto"].append(rmse(auto))
            # the block check fires only where auto would otherwise solve exactly: without it, exact there
            without = optisr.guided_upsample(lr, guide, s, fidelity="exact") if choice.correlated else auto
            row["without"].append(rmse(without))
            row["correlated"].append(float(choice.correlated))
            gf = guide.astype(np.float32) / 255.0 if guide.dtype == np.uint8 else guide
            row["bicubic"].append(rmse(bicubic(lr, gf, s, mask_lr=np.isfinite(lr))))
        for name, row in table.items():
            m = {k: float(np.mean(v)) for k, v in row.items()}
            print(
                f"| ×{s} | {name} | {len(row['auto'])} | {m['bicubic']:.3f} | {m['without']:.3f} | {m['auto']:.3f} "
                f"| {int(sum(row['correlated']))} | {m['seconds']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
