"""``optisr demo``: guided ×N upsampling of a procedural RGB-D scene, offline, no data files."""

from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np

from optisr.errors import ConfigError, InputFileError

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="upsample a generated RGB-D scene and write a comparison panel",
        description="Generate a procedural RGB-D scene, downsample its depth, upsample it back with the "
        "guide, and write a PNG panel (guide | LR | bicubic | colour graph | learned graph | errors). "
        "Prints RMSE and the LR consistency error of each method.",
    )
    p.add_argument("-o", "--output", default="optisr_demo.png", help="panel PNG to write (default: %(default)s)")
    p.add_argument("-s", "--scale", type=int, default=8, help="upsampling scale (default: %(default)s)")
    p.add_argument("--size", type=int, default=512, help="HR scene size in pixels (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default: %(default)s)")
    p.add_argument("--operator", default="area", choices=["area", "bicubic", "gaussian"], help="LR operator")
    p.add_argument("--mode", default="exact", choices=["exact", "soft"])
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return p


def run(args: argparse.Namespace) -> int:
    from optisr.data.synthetic import make_scene
    from optisr.guided.api import guided_upsample
    from optisr.guided.baselines import bicubic
    from optisr.io.atomic import atomic_path
    from optisr.io.outputs import check_output_file
    from optisr.ops.operators import make_operator
    from optisr.viz.panels import depth_panel

    if not 2 <= args.scale <= 32:
        raise ConfigError(f"--scale must be in 2..32, got {args.scale}")
    if args.size < 4 * args.scale:
        raise ConfigError(f"--size must be at least 4×scale = {4 * args.scale}, got {args.size}")
    if not args.output.lower().endswith(".png"):
        raise ConfigError(f"{args.output}: the panel is a PNG; give a file name ending in .png")
    # Before any work: the panel's folder must be creatable/writable and the file new (or --overwrite).
    check_output_file(args.output, overwrite=args.overwrite)
    size = args.size - args.size % args.scale
    scene = make_scene(size, size, seed=args.seed)
    gt = scene.depth_clean.astype(np.float32)  # mm
    import torch

    op = make_operator(args.operator, gt.shape, args.scale)
    lr = op.apply(torch.from_numpy(gt)).numpy()

    from optisr.guided.model import load_default_model

    t0 = time.perf_counter()
    color = guided_upsample(lr, scene.guide, args.scale, operator=args.operator, mode=args.mode, weights="color")
    t_color = time.perf_counter() - t0
    results = {"bicubic": bicubic(lr, scene.guide, args.scale).astype(np.float32), f"colour graph ({args.mode})": color}
    times = {f"colour graph ({args.mode})": t_color}
    if load_default_model() is not None:
        t0 = time.perf_counter()
        results[f"learned graph ({args.mode})"] = guided_upsample(
            lr, scene.guide, args.scale, operator=args.operator, mode=args.mode, weights="default"
        )
        times[f"learned graph ({args.mode})"] = time.perf_counter() - t0

    def consistency(x: np.ndarray) -> float:
        return float(np.abs(op.apply(torch.from_numpy(x)).numpy() - lr).max())

    print(f"scene {size}×{size}, seed {args.seed}, ×{args.scale}, LR operator '{args.operator}', depth in mm")
    print(f"{'method':28s} {'RMSE [mm]':>10s} {'max|Dx-s| [mm]':>15s} {'time [s]':>9s}")
    for name, x in results.items():
        rmse = float(np.sqrt(np.mean((x - gt) ** 2)))
        t = f"{times[name]:9.2f}" if name in times else f"{'':9s}"
        print(f"{name:28s} {rmse:10.2f} {consistency(x):15.2e} {t}")

    short = {"bicubic": "bicubic", f"colour graph ({args.mode})": "colour", f"learned graph ({args.mode})": "learned"}
    maps = {short[k]: v for k, v in results.items()}
    panel = depth_panel(scene.guide, {f"LR x{args.scale}": lr, **maps}, reference=gt, error_of=list(maps))
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(panel[..., ::-1]))
    if not ok:
        raise InputFileError(f"{args.output}: the PNG encoder failed")
    # overwrite=False: a file another run wrote meanwhile is never replaced (OutputExistsError).
    with atomic_path(args.output, overwrite=args.overwrite) as tmp:
        buf.tofile(tmp)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
