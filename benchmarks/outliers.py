"""Isolated spikes in the source: ``fidelity="auto"`` with and without leaving them out (allowed data only).

Cases: every ``--every``-th RGB-D-D test405 depth map (``--rgbdd DIR``; allowed for tuning) and
``--scenes`` procedural scenes (384×512), area LR at each ``--scales``, under five conditions:
clean; Gaussian noise (σ = 6/255 of the source's spread); 1 % and 0.5 % random spikes (±10–40 %
of the spread); Gaussian noise + 1 % spikes (fixed seeds). Each is solved by the default call
(``optisr.guided_upsample(lr, guide, scale)``, learned graph, ``fidelity="auto"``) with
``exclude_outliers=False`` and ``True``. Prints the mean RMSE (in 0–255 units of each source's
spread), how many images got worse / better by more than 0.1 %, and on how many the rule fired.

    OMP_NUM_THREADS=1 python benchmarks/outliers.py --rgbdd ../shared/data/depth_rgbdd_test405 --scales 2 3 4
"""

from __future__ import annotations

import argparse
import glob
import os
import warnings
from collections.abc import Iterator

import numpy as np
import torch

import optisr
from optisr.data.synthetic import make_scene
from optisr.ops.operators import make_operator

CONDITIONS = ("clean", "gauss", "spikes 1%", "spikes 0.5%", "gauss + spikes 1%")


def cases(args: argparse.Namespace) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    import cv2

    if args.rgbdd:
        for path in sorted(glob.glob(os.path.join(args.rgbdd, "Depth", "*_HR_gt.png")))[:: args.every]:
            d = cv2.imread(path, cv2.IMREAD_UNCHANGED).astype(np.float64)
            rgb = path.replace(os.sep + "Depth" + os.sep, os.sep + "RGB" + os.sep).replace("_HR_gt.png", "_RGB.jpg")
            yield "rgbdd", d, np.ascontiguousarray(cv2.imread(rgb)[..., ::-1])
    for seed in range(args.scenes):
        sc = make_scene(384, 512, seed=seed)
        yield "procedural", sc.depth_clean.astype(np.float64), np.round(sc.guide * 255).astype(np.uint8)


def degrade(s0: np.ndarray, cond: str, spread: float, rng: np.random.Generator) -> np.ndarray:
    x = s0.copy()
    if "gauss" in cond:
        x = x + rng.normal(0.0, 6.0 / 255.0 * spread, x.shape)
    if "spikes" in cond:
        hit = rng.random(x.shape) < (0.005 if "0.5%" in cond else 0.01)
        x[hit] += rng.choice([-1.0, 1.0], int(hit.sum())) * rng.uniform(0.1, 0.4, int(hit.sum())) * spread
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rgbdd", default=None, help="RGB-D-D test405 folder (skipped when not given)")
    ap.add_argument("--every", type=int, default=40, help="every N-th RGB-D-D image")
    ap.add_argument("--scenes", type=int, default=6, help="procedural scenes")
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    print("| set | scale | condition | n | RMSE kept / left out | worse / better | rule fired |")
    print("|---|---:|---|---:|---|---|---:|")
    for f in args.scales:
        rows: dict[tuple[str, str], list[tuple[float, float, bool]]] = {}
        for name, d, g in cases(args):
            s0 = make_operator("area", d.shape, f).apply(torch.from_numpy(d)).numpy()
            spread = float(np.percentile(s0, 99.5) - np.percentile(s0, 0.5))
            rng = np.random.default_rng(f)
            for cond in CONDITIONS:
                lr = degrade(s0, cond, spread, rng).astype(np.float32)
                res = []
                for exclude in (False, True):
                    x, info = optisr.guided_upsample(lr, g, f, return_info=True, exclude_outliers=exclude)
                    res.append(float(np.sqrt(np.mean((x - d) ** 2))) / spread * 255.0)
                rows.setdefault((name, cond), []).append((res[0], res[1], info.outliers > 0))
        for (name, cond), v in rows.items():
            a = np.array(v, dtype=float)
            worse, better = int((a[:, 1] > a[:, 0] * 1.001).sum()), int((a[:, 1] < a[:, 0] * 0.999).sum())
            print(
                f"| {name} | ×{f} | {cond} | {len(a)} | {a[:, 0].mean():.3f} / {a[:, 1].mean():.3f} | "
                f"{worse} / {better} | {int(a[:, 2].sum())} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
