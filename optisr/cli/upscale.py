"""``optisr upscale``: blind real-world SR of image files or folders (Real-ESRGAN's flag names).

Examples::

    optisr upscale -i photo.jpg -o photo_x4.png
    optisr upscale -i photos/ -o out/ -n realesrgan-x4plus -t 256 --tile-pad 16 -s 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optisr.errors import ConfigError, InputFileError, OptiSRError

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "upscale",
        help="blind real-world super-resolution of images (RealSR / Real-ESRGAN models)",
        description="Upscale image files or folders with a pretrained real-world SR generator. "
        "Results go to stdout (one path per line), progress and errors to stderr.",
    )
    p.add_argument("-i", "--input", required=True, help="input image file or folder")
    p.add_argument(
        "-o", "--output", required=True,
        help="output file (when INPUT is a file and OUTPUT has an image extension) or folder",
    )  # fmt: skip
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "-n",
        "--model-name",
        "--model_name",
        dest="model_name",
        default=None,
        help="registered model (see `optisr models list`; default realsr-df2k-x4)",
    )
    src.add_argument(
        "--model-path",
        "--model_path",
        dest="model_path",
        default=None,
        help="weights file: .safetensors / .pth (ESRGAN, BasicSR, Real-ESRGAN layouts) or ncnn .param",
    )
    p.add_argument(
        "-s",
        "--outscale",
        type=float,
        default=None,
        help="final scale (default: the model's)",
    )
    p.add_argument(
        "-t",
        "--tile",
        type=int,
        default=0,
        help="tile size in input pixels, 0 = no tiling",
    )
    p.add_argument(
        "--tile-pad",
        "--tile_pad",
        dest="tile_pad",
        type=int,
        default=10,
        help="context pixels around each tile (default 10; 16+ makes tiles match the untiled result)",
    )
    p.add_argument(
        "--suffix",
        default="out",
        help="suffix of output names in folder mode (default 'out')",
    )
    p.add_argument(
        "--ext",
        choices=("auto", "png", "jpg"),
        default="auto",
        help="output format; auto = the input's (PNG when alpha would be lost)",
    )
    p.add_argument(
        "--alpha-upsampler",
        "--alpha_upsampler",
        dest="alpha_upsampler",
        default="model",
        choices=("model", "realesrgan", "bicubic"),
        help="how to upscale an alpha channel",
    )
    prec = p.add_mutually_exclusive_group()
    prec.add_argument(
        "--fp32",
        dest="precision",
        action="store_const",
        const="fp32",
        help="float32 (default)",
    )
    prec.add_argument(
        "--bf16", dest="precision", action="store_const", const="bf16", help="bfloat16"
    )
    prec.add_argument(
        "--fp16",
        dest="precision",
        action="store_const",
        const="fp16",
        help="float16 (GPU only)",
    )
    p.add_argument(
        "--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace existing output files"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(precision="fp32")
    return p


def _inputs(path: Path) -> list[Path]:
    from optisr.io.images import is_image_file

    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and is_image_file(f))
        if not files:
            raise InputFileError(
                f"{path}: folder holds no image files (.png .jpg .webp .bmp .tif)"
            )
        return files
    if not path.exists():
        raise InputFileError(f"{path}: input not found")
    return [path]


def _output_for(
    src: Path, args: argparse.Namespace, single: bool, has_alpha: bool
) -> Path:
    from optisr.io.images import is_image_file

    out = Path(args.output)
    if single and is_image_file(out):
        return out
    ext = src.suffix.lower() if args.ext == "auto" else f".{args.ext}"
    if has_alpha and ext in (".jpg", ".jpeg", ".bmp"):
        ext = ".png"
    stem = f"{src.stem}_{args.suffix}" if args.suffix else src.stem
    return out / f"{stem}{ext}"


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from optisr.blind.api import get_model, upscale
    from optisr.blind.registry import DEFAULT_MODEL
    from optisr.blind.tiling import count_tiles
    from optisr.io.images import read_image, write_image

    if args.tile < 0 or args.tile_pad < 0:
        raise ConfigError(
            f"--tile and --tile-pad must be >= 0; got {args.tile} and {args.tile_pad}"
        )
    src = Path(args.input)
    files = _inputs(src)
    single = not src.is_dir()
    # A single bad input fails before the (slow) model load, with one line naming the file.
    first = read_image(files[0]) if single else None
    device = (
        ("cuda" if torch.cuda.is_available() else "cpu")
        if args.device == "auto"
        else args.device
    )
    dtype = getattr(torch, DTYPES[args.precision])
    if dtype == torch.float16 and not str(device).startswith("cuda"):
        raise ConfigError("--fp16 needs a CUDA device; use --bf16 or --fp32 on CPU")
    model = args.model_path or args.model_name or DEFAULT_MODEL
    # Load first: a bad model fails before any output is written.
    net, scale = get_model(model, device=device, dtype=dtype)
    if not args.quiet:
        hp = getattr(net, "hyperparameters", dict)()
        desc = ", ".join(
            f"{k}={v}"
            for k, v in hp.items()
            if k not in ("num_in_ch", "num_out_ch", "scale")
        )
        print(
            f"model {model}: {type(net).__name__} ×{scale} ({desc}) on {device}, {dtype}",
            file=sys.stderr,
        )
    alpha = "model" if args.alpha_upsampler == "realesrgan" else args.alpha_upsampler
    failures = 0
    bar = tqdm(
        files, unit="img", disable=args.quiet or len(files) == 1, file=sys.stderr
    )
    for f in bar:
        try:
            img = first if first is not None else read_image(f)
            has_alpha = img.ndim == 3 and img.shape[2] in (2, 4)
            target = _output_for(f, args, single, has_alpha)
            if target.exists() and not args.overwrite:
                raise InputFileError(
                    f"{target}: output exists; pass --overwrite to replace it"
                )
            n_tiles = count_tiles(
                *img.shape[:2], args.tile, getattr(net, "size_multiple", 1)
            )
            with tqdm(
                total=n_tiles,
                unit="tile",
                leave=False,
                file=sys.stderr,
                disable=args.quiet or n_tiles == 1,
            ) as tile_bar:
                out = upscale(
                    img,
                    model,
                    outscale=args.outscale,
                    tile=args.tile,
                    tile_pad=args.tile_pad,
                    device=device,
                    dtype=dtype,
                    alpha_upsampler=alpha,
                    progress=lambda done: tile_bar.update(1),
                )
            write_image(target, out)
        except OptiSRError as exc:
            if single:
                raise
            failures += 1
            print(f"optisr upscale: error: {exc}", file=sys.stderr)
            continue
        print(target)
    if failures:
        print(
            f"optisr upscale: {failures} of {len(files)} files failed", file=sys.stderr
        )
        return 1
    return 0
