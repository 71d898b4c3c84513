"""``optisr upscale``: blind real-world SR of image files or folders (Real-ESRGAN's flag names).

Examples::

    optisr upscale -i photo.jpg -o photo_x4.png
    optisr upscale -i photos/ -o out/ -n realesrgan-x4plus -t 256 --tile-pad 16 -s 2
    optisr upscale -i photos/ -o out/ --dask local:2     # files as tasks on 2 local worker processes

Without ``-n``/``--model-path`` the model is chosen per input from its estimated degradation
(JPEG quality or blockiness, noise σ; :mod:`optisr.blind.choice`), and one line per input on
stderr says what was estimated and chosen.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optisr.blind.tiling import MIN_TILE, min_tile_size
from optisr.cli.options import add_device_option, add_tile_option, device_from_args
from optisr.errors import ConfigError, InputFileError, OptiSRError, OutputExistsError

__all__ = ["DTYPES", "add_parser", "run"]

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
        help="output file (when INPUT is a file; an image extension: .png .jpg .webp .bmp .tif) "
        "or folder (a path without extension, or an existing folder); never the input folder",
    )  # fmt: skip
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "-n",
        "--model-name",
        "--model_name",
        dest="model_name",
        default=None,
        help="registered model (see `optisr models list`); default: chosen per input from its estimated "
        "degradation (JPEG blocks, noise) among the installed models",
    )
    src.add_argument(
        "--model-path",
        "--model_path",
        dest="model_path",
        default=None,
        help="weights file: .safetensors / .pth (ESRGAN, BasicSR, Real-ESRGAN layouts) or ncnn .param",
    )
    p.add_argument(
        "--prefilter",
        choices=("auto", "none", "deblock", "denoise"),
        default="auto",
        help="restoration before the network: deblock (JPEG blocks), denoise (non-local means, strength "
        "from the estimated noise); auto (default) = the chosen rule's when no model is given, else none",
    )
    p.add_argument(
        "-s",
        "--outscale",
        type=float,
        default=None,
        help="final scale (default: the model's)",
    )
    add_tile_option(
        p,
        default=0,
        help=f"tile size in input pixels, 0 = no tiling (smaller tiles are raised to {MIN_TILE} "
        "or the model's size multiple)",
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
    prec.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help="bfloat16")
    prec.add_argument(
        "--fp16",
        dest="precision",
        action="store_const",
        const="fp16",
        help="float16 (GPU only)",
    )
    add_device_option(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        default=None,
        help="upscale the files as tasks on a Dask cluster: a scheduler address (tcp://host:8786; the "
        "workers must see the input and output paths) or local:N (N worker processes on this machine); "
        'each file is tried up to 3 times. Needs pip install "optisr[dask]"',
    )
    p.set_defaults(precision="fp32")
    return p


def _inputs(path: Path) -> list[Path]:
    from optisr.io.images import is_image_file

    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and is_image_file(f))
        if not files:
            raise InputFileError(f"{path}: folder holds no image files (.png .jpg .webp .bmp .tif)")
        return files
    if not path.exists():
        raise InputFileError(f"{path}: input not found")
    return [path]


def _output_is_file(out: Path, single: bool) -> bool:
    """Whether ``-o`` names a file (an image extension) or a folder (no extension, or an existing folder).

    Raises:
        ConfigError: an extension that is not an image type (``out.gif``, ``out.xyz``), or a file
            name for a folder of inputs.
    """
    from optisr.io.images import IMAGE_EXTENSIONS, is_image_file

    if out.is_dir() or not out.suffix:
        return False
    if not is_image_file(out):
        raise ConfigError(
            f"{out}: unsupported output image type {out.suffix!r}; use {', '.join(IMAGE_EXTENSIONS)}, "
            "or a folder path without extension"
        )
    if not single:
        raise ConfigError(f"{out}: INPUT is a folder, so OUTPUT must be a folder (a path without extension)")
    return True


def _output_for(src: Path, args: argparse.Namespace, out_is_file: bool, has_alpha: bool) -> Path:
    out = Path(args.output)
    if out_is_file:
        return out
    ext = src.suffix.lower() if args.ext == "auto" else f".{args.ext}"
    if has_alpha and ext in (".jpg", ".jpeg", ".bmp"):
        ext = ".png"
    stem = f"{src.stem}_{args.suffix}" if args.suffix else src.stem
    return out / f"{stem}{ext}"


def _refuse_input_as_target(target: Path, src: Path) -> None:
    from optisr.io.outputs import paths_overlap

    if paths_overlap(target, src):
        raise ConfigError(f"{target}: the output would replace the input {src}; choose another --output or --suffix")


def _tile_for(requested: int, multiple: int) -> int:
    """``requested`` raised to the smallest useful tile (a one-line note on stderr when raised)."""
    floor = min_tile_size(multiple)
    if 0 < requested < floor:
        print(f"optisr upscale: note: --tile-size {requested} raised to {floor} (the smallest tile)", file=sys.stderr)
        return floor
    return requested


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from optisr.blind.api import AlphaUpsampler, get_model, upscale
    from optisr.blind.choice import choose_model
    from optisr.blind.registry import DEFAULT_MODEL
    from optisr.blind.tiling import count_tiles
    from optisr.degrade.estimate import estimate_degradation, read_jpeg_quality
    from optisr.io.images import read_image, write_image
    from optisr.io.outputs import check_output_file, check_output_folder, refuse_overlap

    if args.tile_size < 0 or args.tile_pad < 0:
        raise ConfigError(f"--tile-size and --tile-pad must be >= 0; got {args.tile_size} and {args.tile_pad}")
    # Every check that can fail comes before the (slow) model load and run: device, inputs, output.
    device = device_from_args(args)
    dtype = getattr(torch, DTYPES[args.precision])
    if dtype == torch.float16 and device.type != "cuda":
        raise ConfigError("--fp16 needs a CUDA device; use --bf16 or --fp32 on CPU")
    src = Path(args.input)
    files = _inputs(src)
    single = not src.is_dir()
    out = Path(args.output)
    out_is_file = _output_is_file(out, single)
    if not single:
        # The input folder itself or a folder below it would mix outputs with inputs (and a
        # later run would take them as inputs); a folder above it is fine: upscale only adds files.
        if out.resolve().is_relative_to(src.resolve()):
            refuse_overlap(out, [src], what="output folder")
        check_output_folder(out)
    elif not out_is_file:
        check_output_folder(out)
    # A single bad input fails before the model load, with one line naming the file.
    first = read_image(files[0]) if single else None
    if first is not None:
        has_alpha = first.ndim == 3 and first.shape[2] in (2, 4)
        target = _output_for(files[0], args, out_is_file, has_alpha)
        _refuse_input_as_target(target, files[0])
        check_output_file(target, overwrite=args.overwrite)
    auto = not (args.model_path or args.model_name)
    model = "auto" if auto else args.model_path or args.model_name
    prefilter = "none" if args.prefilter == "auto" and not auto else args.prefilter
    alpha: AlphaUpsampler = "bicubic" if args.alpha_upsampler == "bicubic" else "model"  # realesrgan = model
    if args.dask is not None:
        if args.prefilter != "auto":
            raise ConfigError("--prefilter is not supported with --dask (workers use the chosen rule's pre-filter)")
        # Workers run optisr.upscale(model="auto") per file when no model is given.
        net, _ = get_model(DEFAULT_MODEL if auto else model, device=device, dtype=dtype)
        tile = _tile_for(args.tile_size, int(getattr(net, "size_multiple", 1)))
        return _run_on_dask(args, files, single, out_is_file, str(model), tile, device, alpha)
    if not auto:
        # Load first: a bad model fails before any output is written.
        _load_and_report(model, args, device, dtype)
    failures = 0
    bar = tqdm(files, unit="img", disable=args.quiet or len(files) == 1, file=sys.stderr)
    for f in bar:
        try:
            img = first if first is not None else read_image(f)
            file_model, file_filter = model, prefilter
            if auto:
                choice = choose_model(estimate_degradation(img, jpeg_quality=read_jpeg_quality(f)))
                file_model = choice.model
                file_filter = choice.prefilter if prefilter == "auto" else prefilter
                shown = (
                    choice.describe()
                    if file_filter == choice.prefilter
                    else f"{choice.describe()} (--prefilter {file_filter})"
                )
                tqdm.write(f"{f.name}: {shown}", file=sys.stderr)
            net, _ = get_model(file_model, device=device, dtype=dtype)
            multiple = int(getattr(net, "size_multiple", 1))
            tile = _tile_for(args.tile_size, multiple)
            has_alpha = img.ndim == 3 and img.shape[2] in (2, 4)
            target = _output_for(f, args, out_is_file, has_alpha)
            _refuse_input_as_target(target, f)
            if target.exists() and not args.overwrite:
                raise OutputExistsError(f"{target}: output exists; pass --overwrite to replace it")
            h, w = img.shape[:2]
            n_tiles = count_tiles(h, w, tile, multiple)
            with tqdm(
                total=n_tiles, unit="tile", leave=False, file=sys.stderr, disable=args.quiet or n_tiles == 1
            ) as tile_bar:
                result = upscale(
                    img,
                    file_model,
                    prefilter=file_filter,
                    outscale=args.outscale,
                    tile_size=tile,
                    tile_pad=args.tile_pad,
                    device=device,
                    dtype=dtype,
                    alpha_upsampler=alpha,
                    progress=lambda done: tile_bar.update(1),
                )
            # overwrite=False: a file another run wrote meanwhile is never replaced (OutputExistsError).
            write_image(target, result, overwrite=args.overwrite)
        except OptiSRError as exc:
            if single:
                raise
            failures += 1
            print(f"optisr upscale: error: {exc}", file=sys.stderr)
            continue
        print(target)
    if failures:
        print(f"optisr upscale: {failures} of {len(files)} files failed", file=sys.stderr)
        return 1
    return 0


def _load_and_report(model: str, args: argparse.Namespace, device: object, dtype: object) -> None:
    """Load ``model`` (a bad one fails here, before any output) and name it on stderr."""
    from optisr.blind.api import get_model

    net, scale = get_model(model, device=device, dtype=dtype)  # type: ignore[arg-type]
    if not args.quiet:
        hp: dict[str, object] = getattr(net, "hyperparameters", dict)()
        desc = ", ".join(f"{k}={v}" for k, v in hp.items() if k not in ("num_in_ch", "num_out_ch", "scale"))
        print(f"model {model}: {type(net).__name__} ×{scale} ({desc}) on {device}, {dtype}", file=sys.stderr)


def _run_on_dask(
    args: argparse.Namespace,
    files: list[Path],
    single: bool,
    out_is_file: bool,
    model: str,
    tile: int,
    device: object,
    alpha: str,
) -> int:
    """``--dask``: one task per file (read, upscale, atomic write on a worker); the exit code.

    Both possible targets of each file (without and with alpha) are checked here, before any work.
    """
    from tqdm import tqdm

    from optisr.scaleout import UpscaleTask, connect, map_files, upscale_file

    tasks = []
    shown: dict[str, Path] = {}  # absolute target (what the worker returns) -> the path as printed without --dask
    for f in files:
        targets = tuple(str(_output_for(f, args, out_is_file, a).resolve()) for a in (False, True))
        for a, t in zip((False, True), targets):
            shown[t] = _output_for(f, args, out_is_file, a)
            _refuse_input_as_target(Path(t), f)
        tasks.append(
            UpscaleTask(
                source=str(f.resolve()),
                targets=(targets[0], targets[1]),
                model=str(Path(model).resolve()) if args.model_path else model,
                outscale=args.outscale,
                tile_size=tile,
                tile_pad=args.tile_pad,
                device=str(device),
                dtype=DTYPES[args.precision],
                alpha_upsampler=alpha,
                overwrite=args.overwrite,
            )
        )
    failures = 0
    with connect(args.dask) as client:
        bar = tqdm(total=len(tasks), unit="img", disable=args.quiet, file=sys.stderr)
        with bar:
            for _, written, error in map_files(client, upscale_file, tasks, name=lambda t: t.source):
                bar.update(1)
                if error is not None or written is None:
                    if single and error is not None:
                        raise error
                    failures += 1
                    tqdm.write(f"optisr upscale: error: {error}", file=sys.stderr)
                    continue
                tqdm.write(str(shown.get(written, written)), file=sys.stdout)
    if failures:
        print(f"optisr upscale: {failures} of {len(files)} files failed", file=sys.stderr)
        return 1
    return 0
