"""``optisr adapt``: adapt a shipped blind SR model to a camera from its own photos (no HR images).

    optisr adapt --photos DIR -o my_model.safetensors [--time 30m] [--from otsr-compact-x4] [--resume]
                 [--device auto] [--seed N] [--max-steps N] [--work-dir DIR] [--overwrite] [KEY=VALUE ...]

The work is done by :func:`optisr.train.adapt.adapt`; this module only parses the command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from optisr.cli.options import add_device_option, device_from_args

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:  # sub: the subparsers action of `optisr`
    p = sub.add_parser(
        "adapt",
        help="fine-tune a blind SR model to your camera from your own photos (no HR images needed)",
        description="Fine-tune a blind SR model (default otsr-compact-x4) on a folder of photos from one "
        "camera: noise tiles mined from the photos, JPEG quality and blur estimated from them, HR = the "
        "photos downscaled. Writes a .safetensors that `optisr upscale --model-path` loads. "
        "Defaults: optisr/train/data/adapt.yaml; override any key as KEY=VALUE.",
    )
    p.add_argument("--photos", required=True, type=Path, metavar="DIR", help="folder of photos from one camera")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="FILE", help="the adapted .safetensors")
    p.add_argument("--time", default="30m", metavar="DURATION",
                   help="time budget, preparation included: 90s, 30m, 1.5h or seconds (default 30m)")  # fmt: skip
    p.add_argument("--from", dest="source", default="otsr-compact-x4", metavar="MODEL",
                   help="registry name or .safetensors to start from (default otsr-compact-x4)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue the run in the work folder")
    p.add_argument("--work-dir", type=Path, default=None, metavar="DIR",
                   help="patches, training states and logs (default: OUTPUT without .safetensors + .adapt)")  # fmt: skip
    p.add_argument("--seed", type=int, default=None, help="overrides train.seed")
    p.add_argument("--max-steps", type=int, default=None, metavar="N", help="stop after N training steps in all")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --opt train.optim.lr=2e-5 (repeatable)")  # fmt: skip
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. losses.gan_weight=0.02 photos.hr_downscale=1.5")  # fmt: skip
    add_device_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from optisr.cli.train import collect_overrides
    from optisr.train.adapt import adapt, build_adapt_config, parse_duration

    seconds = parse_duration(args.time)
    cfg = build_adapt_config(collect_overrides(args))
    result = adapt(
        args.photos,
        args.output,
        time_limit_s=seconds,
        source=args.source,
        config=cfg,
        work_dir=args.work_dir,
        resume=args.resume,
        device=device_from_args(args),
        seed=args.seed,
        max_steps=args.max_steps,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    m = result.metadata
    print(
        f"adapted {m.get('adapt_source')} to {m.get('adapt_photos')} photos "
        f"({m.get('adapt_noise_patches')} noise patches, noise σ≈{m.get('adapt_noise_sigma')}, "
        f"JPEG {m.get('adapt_jpeg_quality')}, blur σ {m.get('adapt_blur_sigma')}) in {result.steps} steps, "
        f"{result.seconds:.0f} s; wrote {result.output}"
    )
    print(f"written: {m.get('adapt_selected')}")
    return 0
