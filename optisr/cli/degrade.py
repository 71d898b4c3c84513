"""``optisr degrade``: make blind-SR training pairs (HR/LR, noise pool, kernels) from a folder.

Examples::

    optisr degrade --input src/ --output pairs/ --config configs/degrade/otsr_df2k.yaml
    optisr degrade --input src/ --output pairs/ --kind realsr-kernel --estimate-kernels --preview p.png
"""

from __future__ import annotations

import argparse
import dataclasses

from optisr.errors import ConfigError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "degrade",
        help="make HR/LR training pairs for blind SR (OTSR/RealSR/Real-ESRGAN degradations)",
        description="Degrade every image of a folder into BasicSR paired folders "
        "(OUT/HR, OUT/LR/x<scale>), plus OUT/noise and OUT/kernels when the kind uses them and "
        "OUT/degradation.yaml. Nothing is left behind on error.",
    )
    p.add_argument("-i", "--input", required=True, help="folder of source images")
    p.add_argument("-o", "--output", required=True,
                   help="output folder (new or empty; never the input folder, inside it or around it)")  # fmt: skip
    p.add_argument("--config", default=None, help="YAML degradation config (see configs/degrade/)")
    p.add_argument("--kind", choices=("otsr", "realsr-kernel", "second-order", "bicubic"), default=None,
                   help="override the config's kind (default otsr)")  # fmt: skip
    p.add_argument("--scale", type=int, default=None, help="override the scale (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--estimate-kernels", action="store_true",
                   help="estimate a kernel per image (KernelGAN-style; realsr-kernel)")  # fmt: skip
    p.add_argument("--preview", default=None, help="also write a PNG preview panel here")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty output folder, replacing only what degrade writes "
                   "(HR/, LR/, noise/, kernels/, degradation.yaml) and an existing --preview file")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from optisr.degrade.pipeline import (
        DegradationConfig,
        build_training_pairs,
        load_config,
        preview_figure,
    )
    from optisr.io.outputs import check_output_file, refuse_overlap

    cfg = load_config(args.config) if args.config else DegradationConfig()
    changes: dict = {}
    if args.kind is not None:
        changes["kind"] = args.kind
    if args.scale is not None:
        changes["scale"] = args.scale
    if args.estimate_kernels:
        if (args.kind or cfg.kind) != "realsr-kernel":
            raise ConfigError("--estimate-kernels needs --kind realsr-kernel (or kind: realsr-kernel in the config)")
        changes["kernels"] = dataclasses.replace(cfg.kernels, estimate=True)
    if changes:
        cfg = dataclasses.replace(cfg, **changes)
    if args.preview:  # checked before the (long) build, not after it
        refuse_overlap(args.preview, [args.input], what="--preview file")
        check_output_file(args.preview, overwrite=args.overwrite)
    result = build_training_pairs(
        args.input, args.output, cfg, seed=args.seed, progress=not args.quiet, overwrite=args.overwrite
    )
    print(result.out_dir)
    if args.preview:
        print(preview_figure(result.out_dir, args.preview, overwrite=args.overwrite))
    return 0
