"""``optisr bench guided|blind``: reproduce the quality tables and figures.

The argument parsers and the printing; the work is done by :func:`optisr.bench.guided.bench_to_folder`
and :func:`optisr.bench.blind.benchmark`. Both engines share the option spellings of the other
commands: ``--tile-size`` (aliases ``-t``, ``--tile``, ``--tile_size``) and ``--device``
(default ``auto``, alias ``-g/--gpu-id``).
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING

from optisr.cli.options import add_device_option, add_tile_option, device_from_args
from optisr.errors import ConfigError

if TYPE_CHECKING:
    from optisr.bench.guided_protocols import NoiseSpec

__all__ = ["ENGINES", "add_parser", "run"]


def _add_guided_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``optisr bench guided`` on ``parser``."""
    from optisr.bench.guided import (
        DEFAULT_METHODS,
        DEFAULT_REAL_METHODS,
        DEFAULT_REAL_SCALES,
        DEFAULT_SCALES,
        METHODS,
        PROTOCOLS,
    )
    from optisr.bench.guided_protocols import LR_SOURCES, NOISE_OPERATORS, REAL_GRIDS, NoiseSpec

    parser.description = (
        "Evaluate guided depth upsampling methods on a published test set under protocol A "
        "(bicubic LR, RMSE in the dataset's published unit) or B (NaN-aware block-average LR on "
        "256² tiles, MSE cm² / MAE cm), plus the LR-consistency error of every method. Writes "
        "OUT/<dataset>_protocol<P>.md and comparison figures, and prints the tables. The noisy protocol "
        "(--protocol noisy) adds seeded Gaussian noise to a block-average LR and scores RMSE on the full image."
    )
    parser.add_argument("--dataset", required=True, metavar="NAME", help="dataset name (middlebury30, lu, rgbdd, ...)")
    parser.add_argument("--data-dir", required=True, metavar="DIR", help="the dataset's folder")
    parser.add_argument(
        "--scales",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help=f"upsampling factors (default {' '.join(map(str, DEFAULT_SCALES))}; with real LR "
        f"{' '.join(map(str, DEFAULT_REAL_SCALES))})",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="M",
        help=f"methods to compare, from {', '.join(METHODS)} (default: {' '.join(DEFAULT_METHODS)}; with "
        f"real LR {' '.join(DEFAULT_REAL_METHODS)})",
    )
    parser.add_argument(
        "--lr",
        type=str.lower,
        default="auto",
        choices=LR_SOURCES,
        help="LR input: 'synthetic' (made from the ground truth by the protocol's operator), 'real' (the "
        "dataset's own LR depth, resampled to the xN grid; protocol A only) or 'auto' (real for "
        "rgbdd-real, synthetic otherwise; the default)",
    )
    parser.add_argument(
        "--real-grid",
        type=str.lower,
        default="native",
        choices=REAL_GRIDS,
        help="with real LR: 'native' (default) has the graph methods solve against the sensor's LR on its own "
        "grid (at the sizes' ratio, as optisr guided does with such files); 'scale' gives them the LR resampled "
        "to the xN grid, like the baselines",
    )
    parser.add_argument(
        "--protocol",
        type=str.upper,
        default="A",
        choices=sorted(PROTOCOLS),
        help="A: bicubic LR, RMSE (DKN/FDSR/DCTNet); B: area LR on tiles, MSE/MAE (LGR/DADA); NOISY: "
        "block-average LR + Gaussian noise (--noise-sigma), RMSE on the full image, scales 2 4 8 16 by default. "
        "Default A",
    )
    spec = NoiseSpec()
    parser.add_argument(
        "--noise-sigma",
        type=float,
        default=None,
        metavar="S",
        help=f"noisy protocol: noise std in the reporting unit (0-255 for Middlebury; default {spec.sigma:g})",
    )
    parser.add_argument(
        "--noise-operator",
        type=str.lower,
        default=None,
        choices=NOISE_OPERATORS,
        help=f"noisy protocol: the LR operator before the noise (default {spec.operator}: block average)",
    )
    parser.add_argument(
        "--noise-seed",
        type=int,
        default=None,
        metavar="N",
        help=f"noisy protocol: base seed of the per-image, per-scale noise (default {spec.seed})",
    )
    parser.add_argument("--out-dir", default="bench_out", metavar="OUT", help="output folder (default bench_out)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate only the first N images")
    parser.add_argument(
        "--figures", type=int, default=3, metavar="K", help="write comparison panels for the first K images (default 3)"
    )
    add_tile_option(parser, default=256, help="protocol B tile size in HR pixels (default 256)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch CPU threads (default 1: the per-image solves are small, and on a shared or busy CPU "
        "more threads than free cores slow the CG down many times over); 0 keeps torch's default",
    )
    add_device_option(parser, help_prefix="where the graph methods solve (the baselines run on the CPU): ")
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")


def _add_blind_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``optisr bench blind`` on ``parser``."""
    from optisr.bench.blind import DATASETS, DEFAULT_METHODS, LR_MODES, NOISE_SUBDIR

    parser.description = (
        "Blind ×s SR benchmark: PSNR/SSIM (Y channel, border = scale) and RGB PSNR on Set5/Set14/"
        "BSD100/Urban100/Manga109, NIQE on real photos (RealSRSet), and speed; writes a markdown table, a CSV, "
        "side-by-side crops and comparison panels."
    )
    parser.add_argument("--dataset", required=True, metavar="NAME", help=f"one of {', '.join(DATASETS)}")
    parser.add_argument(
        "--data-dir", required=True, metavar="DIR", help="the set's folder (e.g. .../sr_set5) or the shared data root"
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(DEFAULT_METHODS),
        metavar="M",
        help="methods: 'bicubic', registry names, weights files, or LABEL=PATH (a weights file shown as LABEL) "
        f"(default: {' '.join(DEFAULT_METHODS)})",
    )
    parser.add_argument("--scale", type=int, default=4, help="SR scale (default 4)")
    parser.add_argument("--out-dir", default="bench_out", metavar="DIR", help="output folder (default bench_out)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    add_tile_option(parser, default=0, help="LR tile size for the networks (0 = whole image; default 0)")
    parser.add_argument(
        "--crops", type=int, default=3, metavar="K", help="side-by-side crops for the first K images (default 3)"
    )
    parser.add_argument("--crop-size", type=int, default=128, metavar="PX", help="crop side in HR pixels (default 128)")
    parser.add_argument(
        "--lr",
        choices=LR_MODES,
        default="auto",
        help="LR source: auto = shipped standard LR_bicubic if present else MATLAB "
        "bicubic made here; shipped = any shipped LR (incl. SelfExSR); "
        "matlab = always regenerate; otsr = OTSR-style degraded LR made here (teacher-cache recipe: blur, "
        "MATLAB bicubic, PolyU real noise, JPEG q30-95; one fixed draw per image) (default auto)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="N", help="--lr otsr: base seed of the per-image draws (default 0)"
    )
    parser.add_argument(
        "--noise-dir",
        default=None,
        metavar="DIR",
        help=f"--lr otsr: the real-noise photos (PolyU *_real crops; default <data-dir>/{NOISE_SUBDIR})",
    )
    parser.add_argument(
        "--cache-dir",
        default=None,
        metavar="DIR",
        help="keep the networks' outputs in DIR/<dataset>-x<scale>-<lr>/<label>/<image>.png (+ .json with the "
        "seconds) and reuse them; <lr> is the --lr value (otsr-seed<N> for --seed N != 0), <label> of a weights "
        "file ends in -<sha256[:8]> of its bytes (default: no cache)",
    )
    parser.add_argument(
        "--speed-size",
        type=int,
        default=128,
        metavar="N",
        help="time each method on an N² LR input (1 thread, model loaded, best of 2); 0 = off (default 128)",
    )
    parser.add_argument(
        "--panels",
        default="",
        metavar="NAME[,NAME...]",
        help="write blind_<dataset>_panels/<NAME>.png for these images: input ×s nearest | each method "
        "(whole image when the output is <= 512 px, else a centre crop of 2×--crop-size)",
    )
    parser.add_argument(
        "--no-niqe", action="store_true", help="skip NIQE on paired sets (it is the only metric on no-GT sets)"
    )
    add_device_option(parser, help_prefix="torch device for the networks: ")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _guided_argv(args: argparse.Namespace) -> list[str]:
    """The options of ``args`` written back as command-line words (for the report)."""
    words = ["--dataset", str(args.dataset), "--data-dir", str(args.data_dir)]
    if args.scales is not None:
        words += ["--scales", *map(str, args.scales)]
    if args.methods is not None:
        words += ["--methods", *args.methods]
    words += ["--protocol", str(args.protocol)]
    if getattr(args, "lr", "auto") != "auto":
        words += ["--lr", str(args.lr)]
    if getattr(args, "real_grid", "native") != "native":
        words += ["--real-grid", str(args.real_grid)]
    words += ["--out-dir", str(args.out_dir)]
    if args.limit is not None:
        words += ["--limit", str(args.limit)]
    words += ["--figures", str(args.figures), "--threads", str(getattr(args, "threads", 1))]
    if str(args.protocol).upper() == "B":
        words += ["--tile-size", str(args.tile_size)]
    for flag, key in (
        ("--noise-sigma", "noise_sigma"),
        ("--noise-operator", "noise_operator"),
        ("--noise-seed", "noise_seed"),
    ):
        if getattr(args, key, None) is not None:
            words += [flag, f"{getattr(args, key):g}" if key == "noise_sigma" else str(getattr(args, key))]
    if args.device != "auto":
        words += ["--device", str(args.device)]
    if getattr(args, "gpu_id", None) is not None:
        words += ["--gpu-id", str(args.gpu_id)]
    return words


def _noise_from_args(args: argparse.Namespace) -> NoiseSpec | None:
    """The noisy protocol's :class:`NoiseSpec` from ``--noise-*`` (None for the other protocols)."""
    from optisr.bench.guided_protocols import NOISY, NoiseSpec

    sigma, operator, seed = (getattr(args, f"noise_{k}", None) for k in ("sigma", "operator", "seed"))
    if str(args.protocol).upper() != NOISY:
        given = [f"--noise-{k}" for k, v in (("sigma", sigma), ("operator", operator), ("seed", seed)) if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} apply to the noisy protocol; add --protocol noisy")
        return None
    spec = NoiseSpec()
    return NoiseSpec(
        sigma=spec.sigma if sigma is None else float(sigma),
        operator=spec.operator if operator is None else str(operator),
        seed=spec.seed if seed is None else int(seed),
    )


def _run_guided(args: argparse.Namespace) -> int:
    """``optisr bench guided``: run, write the report and figures, print the tables and paths."""
    from optisr.bench.guided import bench_to_folder

    noise = _noise_from_args(args)
    device = device_from_args(args)
    res, report, text = bench_to_folder(
        args.dataset,
        args.data_dir,
        args.out_dir,
        scales=args.scales,
        methods=args.methods,
        protocol=args.protocol,
        lr=getattr(args, "lr", "auto"),
        real_grid=getattr(args, "real_grid", "native"),
        limit=args.limit,
        tile_size=args.tile_size,
        figures=args.figures,
        threads=getattr(args, "threads", 1),
        progress=not args.no_progress,
        device=device,
        command="optisr bench guided " + " ".join(shlex.quote(a) for a in _guided_argv(args)),
        noise=noise,
    )
    print(text)
    print(report)
    for p in res.figures:
        print(p)
    return 0


def _blind_command(args: argparse.Namespace) -> str:
    parts = ["optisr", "bench", "blind", "--dataset", args.dataset, "--data-dir", str(args.data_dir),
             "--models", *args.models]  # fmt: skip
    for flag, key, default in (("--scale", "scale", 4), ("--out-dir", "out_dir", "bench_out"),
                               ("--limit", "limit", None), ("--tile-size", "tile_size", 0),
                               ("--crops", "crops", 3), ("--crop-size", "crop_size", 128),
                               ("--lr", "lr", "auto"), ("--seed", "seed", 0), ("--noise-dir", "noise_dir", None),
                               ("--cache-dir", "cache_dir", None), ("--speed-size", "speed_size", 128),
                               ("--panels", "panels", ""), ("--device", "device", "auto"),
                               ("--gpu-id", "gpu_id", None)):  # fmt: skip
        value = getattr(args, key, default)
        if value != default:
            parts += [flag, str(value)]
    if getattr(args, "no_niqe", False):
        parts.append("--no-niqe")
    return shlex.join(parts)


def _run_blind(args: argparse.Namespace) -> int:
    """``optisr bench blind``: run, write report/CSV/crops, print the means table."""
    from optisr.bench.blind import DATASETS, benchmark, parse_method

    dataset = str(args.dataset).lower()
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)}")
    args.dataset = dataset
    if args.crop_size < 8:
        raise ConfigError(f"--crop-size must be >= 8; got {args.crop_size}")
    if args.lr != "otsr":
        given = [f for f, v in (("--seed", args.seed != 0), ("--noise-dir", args.noise_dir is not None)) if v]
        if given:
            raise ConfigError(f"{', '.join(given)} apply to the degraded LR; add --lr otsr")
    methods = [parse_method(m) for m in args.models]
    panels = [p.strip() for p in str(args.panels).split(",") if p.strip()]
    result = benchmark(
        dataset,
        args.data_dir,
        methods,
        scale=args.scale,
        out_dir=args.out_dir,
        limit=args.limit,
        tile_size=args.tile_size,
        crops=args.crops,
        crop_size=args.crop_size,
        lr_mode=args.lr,
        niqe=not args.no_niqe,
        device=str(device_from_args(args)),
        command=_blind_command(args),
        progress=not args.quiet,
        seed=args.seed,
        noise_dir=args.noise_dir,
        cache_dir=args.cache_dir,
        speed_size=args.speed_size,
        panels=panels,
    )
    print(f"{DATASETS[dataset].title} ×{args.scale}: LR = " + "; ".join(result.lr_sources))
    print(result.table)
    cached = f"; {result.cached} outputs from the cache {result.cache_dir}" if result.cache_dir else ""
    print(
        f"wrote {result.files[0]} (+ CSV, {len(result.crop_files)} crop panels, "
        f"{len(result.panel_files)} comparison panels{cached})"
    )
    return 0


ENGINES: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {
    "guided": (_add_guided_arguments, _run_guided, "guided depth SR: protocol A/B tables, LR consistency, figures"),
    "blind": (
        _add_blind_arguments,
        _run_blind,
        "blind SR: PSNR/SSIM on Set5/Set14/BSD100/Urban100, NIQE on real photos",
    ),
}
"""engine -> (add its options to a parser, run it from parsed arguments, help line)."""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="run a benchmark and write a markdown table and figures")
    engines = p.add_subparsers(dest="engine", metavar="ENGINE", required=True)
    for name, (add_arguments, _, help_text) in ENGINES.items():
        q = engines.add_parser(name, help=help_text)
        add_arguments(q)
    return p


def run(args: argparse.Namespace) -> int:
    return int(ENGINES[args.engine][1](args) or 0)
