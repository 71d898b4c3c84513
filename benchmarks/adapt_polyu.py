"""``optisr adapt`` on PolyU real noisy photos: MATLAB NIQE of the ×4 outputs before and after adapting.

    OMP_NUM_THREADS=1 python benchmarks/adapt_polyu.py --time 30m -o runs/bench_adapt_polyu
    OMP_NUM_THREADS=1 python benchmarks/adapt_polyu.py --time 60s --limit-eval 2 -o /tmp/adapt_smoke \\
        photos.patches_per_photo=2        # smoke run (~1-2 min)

The ``*_real.JPG`` crops of ``sr_realnoise_polyu_crops100/CroppedImages`` (sorted by name) are split
into the adaptation photos (``--n-adapt``, default 70, spread over the sorted list with ``--split
interleave`` so both sets hold the same cameras, or the first ones with ``--split first``) and the
held-back ones (the rest);
the two sets never overlap (checked). :func:`optisr.train.adapt.adapt` fine-tunes ``--from`` (default
``otsr-compact-x4``) on copies of the adaptation photos for ``--time``; then the unadapted and the
adapted model upscale a fixed centre crop (``--crop``² LR pixels, 0: the whole image) of each
held-back photo (the first ``--limit-eval``, 0: all) and MATLAB NIQE (:func:`optisr.metrics.niqe.niqe`:
BT.601 luma, no border crop, lower is better) scores the ×4 outputs; a clean-reference PSNR-Y (the
output ↓4 against the photo's ``*_mean.JPG``, see :func:`score`) checks that NIQE is not rewarding
the camera's noise. Prints a markdown table (model, mean NIQE, per-image wins, mean PSNR-Y, adapt
seconds, steps) and writes it to ``OUT/adapt_polyu.md`` with the per-image scores in
``OUT/adapt_polyu.json``. Extra ``KEY=VALUE`` arguments override the adapt config.

    python benchmarks/adapt_polyu.py --panel runs/bench_adapt_polyu -o docs/figures/adapt_panel_polyu.jpg

draws, for a finished run, the first ``--panel-count`` held-back photos (in sorted order, not chosen
by score): ×4 nearest | unadapted | adapted, the central 256² of each ×4 output, one row per photo.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "sr_realnoise_polyu_crops100" / "CroppedImages"


def split(folder: Path, n_adapt: int, mode: str = "interleave") -> tuple[list[Path], list[Path]]:
    """``(adaptation photos, held-back photos)`` of the sorted ``*_real.JPG`` files.

    ``mode="interleave"`` (default): ``n_adapt`` photos spread evenly over the sorted list are held
    *in* and the rest held back, so both sets hold the same cameras and ISO settings (the "my
    camera" story); ``mode="first"``: the first ``n_adapt`` / the rest (then the held-back photos
    are other camera models).
    """
    files = sorted(folder.glob("*_real.JPG"))
    if len(files) <= n_adapt:
        raise SystemExit(f"{folder}: {len(files)} *_real.JPG files, need more than --n-adapt {n_adapt}")
    if mode == "first":
        adapt_files, held = files[:n_adapt], files[n_adapt:]
    else:
        keep = set(np.linspace(0, len(files) - 1, len(files) - n_adapt).round().astype(int).tolist())
        held = [f for i, f in enumerate(files) if i in keep]
        adapt_files = [f for i, f in enumerate(files) if i not in keep]
    assert not {f.name for f in adapt_files} & {f.name for f in held}
    return adapt_files, held


def centre_crop(img: np.ndarray, side: int) -> np.ndarray:
    """The centre ``side``² crop of ``(H, W, 3)`` (the whole image when ``side`` is 0 or too large)."""
    h, w = img.shape[:2]
    if side <= 0 or side > min(h, w):
        return img
    top, left = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(img[top : top + side, left : left + side])


def _rgb(path: Path) -> np.ndarray:
    """The photo as uint8 ``(H, W, 3)`` RGB."""
    from optisr.io.images import read_image, to_rgb8

    return to_rgb8(read_image(path))


def score(model: str, held: list[Path], crop: int, device: str) -> tuple[dict[str, float], dict[str, float]]:
    """``({file name: NIQE of model's ×4 output of its centre crop}, {file name: clean-reference PSNR-Y})``.

    The second score checks what NIQE cannot: whether the output is the scene or the camera's noise.
    The ×4 output is brought back to the photo's grid (MATLAB bicubic ↓4) and compared, as PSNR-Y in
    dB, with the same crop of the photo's ``*_mean.JPG`` (PolyU's mean of many shots; higher is better;
    absent files are skipped). Noise copied or hallucinated at ×4 survives the ↓4 as error; a
    model that only blurs loses here too, as the mean image keeps the scene's detail.
    """
    from optisr.blind.api import upscale
    from optisr.degrade.bicubic import imresize
    from optisr.metrics.image_quality import psnr
    from optisr.metrics.niqe import niqe

    niqes, psnrs = {}, {}
    for f in held:
        sr = upscale(centre_crop(_rgb(f), crop), model, device=device)
        niqes[f.name] = float(niqe(sr))
        mean = f.with_name(f.name.replace("_real.", "_mean."))
        if mean.is_file():
            clean = centre_crop(_rgb(mean), crop)
            back = imresize(sr, output_shape=clean.shape[:2])
            psnrs[f.name] = float(psnr(back, clean, y_channel=True))
    return niqes, psnrs


def panel(run: Path, output: Path, count: int, device: str) -> None:
    """The comparison figure of a finished run folder (see the module docstring)."""
    from optisr.blind.api import upscale
    from optisr.io.images import write_image

    record = json.loads((run / "adapt_polyu.json").read_text())
    source = record["metadata"].get("adapt_source", "otsr-compact-x4")
    crop = int(record["crop"]) or 128
    rows = []
    for name in record["held_back"][:count]:
        lr = centre_crop(_rgb(DATA / name), crop)
        cells = [np.repeat(np.repeat(lr, 4, 0), 4, 1)]
        cells += [upscale(lr, m, device=device) for m in (source, str(run / "adapted.safetensors"))]
        c, k = cells[0].shape[0] // 2, 128
        rows.append(np.concatenate([x[c - k : c + k, c - k : c + k] for x in cells], axis=1))
    write_image(output, np.concatenate(rows, axis=0))
    print(f"wrote {output}: ×4 nearest | {source} | adapted, {count} held-back photos")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATA, help="folder of the PolyU *_real.JPG crops")
    p.add_argument("--n-adapt", type=int, default=70, help="adaptation photos: N of them (default 70)")
    p.add_argument(
        "--split",
        choices=("interleave", "first"),
        default="interleave",
        help="interleave (default): held-back photos spread over all cameras; first: the first N adapt",
    )
    p.add_argument("--time", default="30m", help="adapt time budget (90s, 30m, 1.5h; default 30m)")
    p.add_argument("--from", dest="source", default="otsr-compact-x4", help="model to adapt")
    p.add_argument("--limit-eval", type=int, default=0, help="score the first N held-back photos (0: all)")
    p.add_argument("--crop", type=int, default=128, help="LR centre crop side of each held-back photo (0: whole)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the adapt run (default 1; 0: all cores)")
    p.add_argument("--resume", action="store_true", help="continue the adapt run in OUT/work")
    p.add_argument("-o", "--out", type=Path, default=REPO / "runs" / "bench_adapt_polyu")
    p.add_argument("--panel", type=Path, default=None, metavar="RUN", help="draw the figure of a finished run")
    p.add_argument("--panel-count", type=int, default=3, help="held-back photos in the figure (default 3)")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE", help="adapt config overrides")
    args = p.parse_args()
    if args.panel is not None:
        panel(args.panel, args.out, args.panel_count, args.device)
        return

    from optisr.train.adapt import adapt, build_adapt_config, parse_duration

    adapt_files, held = split(args.data, args.n_adapt, args.split)
    if args.limit_eval:
        held = held[: args.limit_eval]
    out: Path = args.out
    photos, work = out / "photos", out / "work"
    if not args.resume:
        shutil.rmtree(photos, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    photos.mkdir(parents=True, exist_ok=True)
    for f in adapt_files:
        if not (photos / f.name).is_file():
            shutil.copy2(f, photos / f.name)  # a copy keeps the JPEG's quantisation tables
    cfg = build_adapt_config([f"threads={args.threads}", *args.overrides])
    model = out / "adapted.safetensors"
    result = adapt(
        photos,
        model,
        time_limit_s=parse_duration(args.time),
        source=args.source,
        config=cfg,
        work_dir=work,
        resume=args.resume,
        device=args.device,
        seed=args.seed,
        overwrite=True,
    )
    before, psnr_before = score(args.source, held, args.crop, args.device)
    after, psnr_after = score(str(model), held, args.crop, args.device)
    wins_after = sum(after[k] < before[k] for k in before)
    wins_before = sum(before[k] < after[k] for k in before)
    meta = result.metadata

    def mean_psnr(d: dict[str, float]) -> str:
        return f"{np.mean(list(d.values())):.2f}" if d else "-"

    rows = [
        (f"{args.source} (unadapted)", float(np.mean(list(before.values()))), wins_before, mean_psnr(psnr_before),
         "-", "-"),
        (f"adapted ({meta['adapt_photos']} photos)", float(np.mean(list(after.values()))), wins_after,
         mean_psnr(psnr_after), f"{result.seconds:.0f}", str(result.steps)),
    ]  # fmt: skip
    crop = f"{args.crop}² LR centre crops" if args.crop else "whole images"
    lines = [
        f"NIQE (MATLAB, BT.601 Y, no border crop; lower is better) of ×4 outputs on {len(held)} held-back PolyU "
        f"*_real crops ({crop}); adapted on {len(adapt_files)} others ({args.split} split) for --time {args.time}. "
        f"Estimates: noise σ≈{meta['adapt_noise_sigma']}, JPEG {meta['adapt_jpeg_quality']}, "
        f"blur σ {meta['adapt_blur_sigma']}, {meta['adapt_noise_patches']} noise patches.",
        "",
        "| model | mean NIQE | per-image wins | PSNR-Y vs *_mean (↓4, dB) | adapt s | steps |",
        "|---|---|---|---|---|---|",
        *(f"| {m} | {n:.3f} | {w}/{len(held)} | {ps} | {s} | {st} |" for m, n, w, ps, s, st in rows),
    ]
    table = "\n".join(lines)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "adapt_polyu.md").write_text(table + "\n")
    record = {
        "adapt_photos": [f.name for f in adapt_files],
        "held_back": [f.name for f in held],
        "crop": args.crop,
        "time": args.time,
        "niqe_unadapted": before,
        "niqe_adapted": after,
        "psnr_mean_unadapted": psnr_before,
        "psnr_mean_adapted": psnr_after,
        "metadata": {k: v for k, v in meta.items() if k.startswith("adapt_")},
    }
    (out / "adapt_polyu.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
