"""PSNR-Y / SSIM-Y of bicubic, RealSR DF2K and the compact OTSR model on BSD100 (evaluation only), and speed.

    OMP_NUM_THREADS=1 python benchmarks/otsr_compact.py --limit 20 -o runs/bench_otsr_compact

Conditions on the first ``--limit`` images of ``sr_bsd100/HR_mod4``:

* ``clean``: MATLAB bicubic ×1/4 LR;
* ``degraded``: :func:`optisr.degrade.blur_noise_jpeg.blur_noise_jpeg` with the teacher-cache recipe
  (configs/blind/teacher_cache.yaml: blur, bicubic ↓4, PolyU real-noise crops, JPEG q30-95),
  one fixed draw per image (``default_rng([seed, index])``).

Metrics: BT.601 Y, 4-pixel border cropped, outputs rounded to 8 bit. Per-model results are kept in
``<out>/<model>_<condition>.json`` and reused (``--fresh`` recomputes). Speed:
:func:`optisr.bench.blind.upscale_seconds` (``optisr.upscale``, what ``optisr upscale`` runs, on a
``--speed-size``² LR input, 1 thread, model loaded, best of 2), as ``optisr bench blind --speed-size``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def _lr_sets(hr_files: list[Path], seed: int, noise_dir: Path | None = None) -> dict[str, list[np.ndarray]]:
    """``{"clean": MATLAB bicubic ×1/4 LR, "degraded": the teacher-cache recipe's fixed draws}``, uint8 RGB.

    The degraded LR is :func:`optisr.degrade.blur_noise_jpeg.fixed_draw_lr` with the recipe of
    configs/blind/teacher_cache.yaml (its noise photos, or ``noise_dir``), as ``optisr bench blind --lr otsr``.
    """
    from optisr.blind.teacher_cache import TeacherCacheConfig, mine_noise_pool
    from optisr.config import build_config
    from optisr.degrade.bicubic import imresize
    from optisr.degrade.blur_noise_jpeg import fixed_draw_lr
    from optisr.io.images import read_image

    cfg = build_config(TeacherCacheConfig, REPO / "configs" / "blind" / "teacher_cache.yaml")
    if noise_dir is not None:
        cfg.noise.photos_dir = str(noise_dir)
    elif cfg.noise.photos_dir:
        cfg.noise.photos_dir = str((REPO / cfg.noise.photos_dir).resolve())
    noise = mine_noise_pool(cfg.noise)
    hrs = [read_image(f) for f in hr_files]
    clean = [
        np.round(np.clip(imresize(hr.astype(np.float32) / 255.0, 0.25), 0, 1) * 255).astype(np.uint8) for hr in hrs
    ]
    return {"clean": clean, "degraded": fixed_draw_lr(hrs, cfg.degradation.build(4), noise, seed=seed)}


def _sr(model: str, lr: np.ndarray) -> np.ndarray:
    from optisr.blind.api import upscale
    from optisr.degrade.bicubic import imresize

    if model == "bicubic":
        return np.round(np.clip(imresize(lr.astype(np.float32) / 255.0, 4.0), 0, 1) * 255).astype(np.uint8)
    return upscale(lr, model, device="cpu")


def evaluate(model: str, cond: str, lrs: list[np.ndarray], hrs: list[np.ndarray], out: Path, fresh: bool) -> dict:
    from optisr.metrics.image_quality import psnr, ssim

    path = out / f"{Path(model).stem}_{cond}.json"
    if path.is_file() and not fresh:
        return json.loads(path.read_text())
    ps, ss, secs = [], [], 0.0
    for lr, hr in zip(lrs, hrs, strict=True):
        t0 = time.perf_counter()
        sr = _sr(model, lr)
        secs += time.perf_counter() - t0
        ps.append(float(psnr(sr, hr, crop_border=4, y_channel=True)))
        ss.append(float(ssim(sr, hr, crop_border=4, y_channel=True)))
    res = {"model": model, "condition": cond, "n": len(ps), "psnr_y": float(np.mean(ps)), "ssim_y": float(np.mean(ss)),
           "seconds": secs, "per_image_psnr_y": ps}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1))
    return res


def niqe_on_folder(model: str, folder: Path, out: Path, fresh: bool) -> dict:
    """Mean MATLAB NIQE (Y channel, no border crop) of ``model``'s ×4 outputs of every image in ``folder``."""
    from optisr.errors import ShapeError
    from optisr.io.images import read_image
    from optisr.metrics.niqe import niqe

    path = out / f"{Path(model).stem}_niqe_{folder.name}.json"
    if path.is_file() and not fresh:
        return json.loads(path.read_text())
    scores = {}
    for f in sorted(folder.iterdir()):
        img = read_image(f)
        img = np.repeat(img[:, :, None], 3, 2) if img.ndim == 2 else img[:, :, :3]
        try:
            scores[f.name] = float(niqe(_sr(model, np.ascontiguousarray(img))))
        except ShapeError:
            continue
    res = {"model": model, "folder": str(folder), "n": len(scores), "niqe": float(np.nanmean(list(scores.values()))),
           "per_image": scores}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1))
    return res


def main() -> None:
    from optisr.io.images import read_image

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "sr_bsd100" / "HR_mod4")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--models", nargs="+", default=["bicubic", "realsr-df2k-x4", "otsr-compact-x4"])
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--noise-dir", type=Path, default=None, help="real-noise photos (default: the YAML's)")
    ap.add_argument("--speed-size", type=int, default=128)
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--niqe-dir", type=Path, default=None, help="also MATLAB NIQE of the outputs of this folder")
    ap.add_argument("--niqe-models", nargs="+", default=None, help="models for --niqe-dir (default: --models)")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("-o", "--out", type=Path, default=REPO / "runs" / "bench_otsr_compact")
    args = ap.parse_args()
    torch.set_num_threads(1)
    files = sorted(args.data.iterdir())[: args.limit]
    hrs = [read_image(f) for f in files]
    lrs = _lr_sets(files, args.seed, args.noise_dir)
    rows = []
    for m in args.models:
        for cond in ("clean", "degraded"):
            r = evaluate(m, cond, lrs[cond], hrs, args.out, args.fresh)
            rows.append(r)
            print(
                f"{m:24s} {cond:9s} PSNR-Y {r['psnr_y']:.3f}  SSIM-Y {r['ssim_y']:.4f}  ({r['seconds']:.1f} s)",
                flush=True,
            )
    if args.niqe_dir is not None:
        for m in args.niqe_models or args.models:
            r = niqe_on_folder(m, args.niqe_dir, args.out, args.fresh)
            print(f"{m:24s} NIQE {r['niqe']:.3f} on {r['n']} images of {args.niqe_dir.name}", flush=True)
    if not args.no_speed:
        from optisr.bench.blind import upscale_seconds

        times = {m: upscale_seconds(m, args.speed_size) for m in args.models if m != "bicubic"}
        for m, t in times.items():
            print(f"speed {m:24s} {t:.3f} s for a {args.speed_size}² LR input (1 thread)")
        if "realsr-df2k-x4" in times:
            for m, t in times.items():
                print(f"ratio realsr-df2k-x4 / {m}: {times['realsr-df2k-x4'] / t:.1f}×")
        (args.out / "speed.json").write_text(json.dumps(times, indent=1))


if __name__ == "__main__":
    main()
