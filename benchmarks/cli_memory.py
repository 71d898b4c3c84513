"""Wall time and peak memory of the ``optisr guided`` command on large procedural files.

For each SIZE, the script writes (once, into ``--workdir``) a SIZE×SIZE 8-bit RGB guide PNG and a
(SIZE/SCALE)² 16-bit depth PNG in mm, then runs the real command line in a fresh process::

    optisr guided --guide G --source S --scale SCALE -o OUT --method METHOD --quiet

and reads that process's own peak resident set size from ``os.wait4`` (``ru_maxrss``: the
interpreter, torch, reading the files, the solve, rounding and writing the output, all
included). The guide is a procedural RGB-D scene (``optisr.data.synthetic.make_scene``,
``--scene`` px) mirror-tiled up to SIZE (so it has the scene's edge density at every size) plus
Gaussian noise of ``--noise`` 8-bit levels; the source is the area downsample of the mirror-tiled
clean depth (mirroring at block-aligned borders maps LR blocks onto LR blocks), rounded to mm,
with LR pixels that are mostly holes in the scene set to 0 (invalid).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/cli_memory.py --sizes 4096 8192 --scale 8

Columns: HR size, scale, method, output format, wall time of the whole command, solve time the
command reports, peak RSS, ``max |D x − s|`` the command reports (mm, over valid source
pixels), and the same re-computed here from the written file.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _mirror(a: np.ndarray, reps: int, axis: int) -> np.ndarray:
    flipped = np.flip(a, axis=axis)
    return np.concatenate([a if k % 2 == 0 else flipped for k in range(reps)], axis=axis)


def make_inputs(folder: Path, size: int, scale: int, scene: int, noise: float, seed: int = 0) -> tuple[Path, Path]:
    """Write ``guide_SIZE.png`` (RGB uint8) and ``depth_SIZE_xSCALE.png`` (uint16 mm); reuse existing ones."""
    import cv2
    import torch

    from optisr.data.synthetic import make_scene
    from optisr.io.rasters import write_raster
    from optisr.ops.operators import make_operator

    guide_path = folder / f"guide_{size}_s{scene}_n{noise:g}.png"
    source_path = folder / f"depth_{size}_x{scale}_s{scene}.png"
    if guide_path.exists() and source_path.exists():
        return guide_path, source_path
    if size % scene or scene % scale:
        raise SystemExit(f"size {size} must be a multiple of --scene {scene}, and --scene of the scale {scale}")
    sc = make_scene(scene, scene, seed=seed)
    guide0 = np.round(sc.guide * 255).astype(np.uint8)
    area = make_operator("area", (scene, scene), scale)
    lr0 = area.apply(torch.from_numpy(sc.depth_clean.astype(np.float64))).numpy()
    valid0 = area.apply(torch.from_numpy(sc.mask.astype(np.float64))).numpy() >= 0.5
    lr0 = np.where(valid0, np.clip(np.rint(lr0), 1, 65535), 0).astype(np.uint16)
    reps = size // scene
    source = _mirror(_mirror(lr0, reps, 0), reps, 1)
    write_raster(source_path, source, dtype="uint16")

    rng = np.random.default_rng(seed)
    row = _mirror(guide0, reps, 1)  # (scene, size, 3)
    guide = np.empty((size, size, 3), np.uint8)
    for k in range(reps):  # one scene-high band at a time: bounded temporaries
        band = row if k % 2 == 0 else row[::-1]
        if noise > 0:
            band = np.clip(band + rng.normal(0.0, noise, band.shape).astype(np.float32), 0, 255)
        guide[k * scene : (k + 1) * scene] = np.rint(band).astype(np.uint8)
    tmp = guide_path.with_name(guide_path.stem + ".tmp.png")
    if not cv2.imwrite(str(tmp), np.ascontiguousarray(guide[..., ::-1])):
        raise SystemExit(f"cannot write {tmp}")
    tmp.replace(guide_path)
    return guide_path, source_path


def recheck(out: Path, source: Path, scale: int) -> float:
    """``max |D x − s|`` (area operator) of a written output, strip by strip, over valid pixels."""
    from optisr.io.rasters import read_raster

    x = read_raster(out, zero_invalid=False).data
    s = read_raster(source)
    h, w = s.shape
    err = 0.0
    step = 64
    for i0 in range(0, h, step):
        i1 = min(h, i0 + step)
        blk = x[i0 * scale : i1 * scale].astype(np.float64)
        lr = blk.reshape(i1 - i0, scale, w, scale).mean(axis=(1, 3))
        m = s.mask[i0:i1]
        if m.any():
            err = max(err, float(np.abs(lr - s.data[i0:i1])[m].max()))
    return err


def run_cli(argv: list[str], log: Path) -> tuple[int, float, float, str]:
    """Run one command; returns (exit code, wall s, peak RSS MB of that process, its stdout)."""
    with open(log, "w") as err, tempfile.TemporaryFile("w+") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return proc.returncode, wall, usage.ru_maxrss / 1024.0, out.read()  # ru_maxrss: KiB on Linux


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192], help="HR guide sizes (square)")
    p.add_argument("--scale", type=int, default=8)
    p.add_argument("--methods", nargs="+", default=["color"], help="--method values of optisr guided")
    p.add_argument("--ext", default="png", choices=("png", "tif"), help="output format (png: 16-bit, tif: float32)")
    p.add_argument("--scene", type=int, default=1024, help="procedural scene size that is mirror-tiled")
    p.add_argument("--noise", type=float, default=2.0, help="guide noise std in 8-bit levels")
    p.add_argument("--workdir", default=None, help="where inputs and outputs go (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the output files")
    p.add_argument("--cli-args", default="", help="extra arguments for optisr guided, e.g. '--tile-size 512'")
    args = p.parse_args(argv)

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="optisr_cli_memory_"))
    work.mkdir(parents=True, exist_ok=True)
    exe = shutil.which("optisr")
    base = [exe] if exe else [sys.executable, "-m", "optisr.cli.main"]
    print(f"# workdir {work}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}")
    rows = []
    for size in args.sizes:
        t0 = time.perf_counter()
        guide, source = make_inputs(work, size, args.scale, args.scene, args.noise)
        print(f"# inputs {guide.name} ({guide.stat().st_size / 2**20:.0f} MiB), {source.name} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        for method in args.methods:
            out = work / f"out_{size}_x{args.scale}_{Path(method).stem}.{args.ext}"
            out.unlink(missing_ok=True)
            cmd = [*base, "guided", "--guide", str(guide), "--source", str(source), "--scale", str(args.scale),
                   "-o", str(out), "--method", method, "--quiet", *shlex.split(args.cli_args)]  # fmt: skip
            print("# " + shlex.join(cmd), flush=True)
            log = work / f"{out.stem}.log"
            rc, wall, peak, stdout = run_cli(cmd, log)
            if rc != 0:
                tail = log.read_text().strip().splitlines()[-1:] or ["(no stderr)"]
                rows.append(f"| {size}² | ×{args.scale} | {method} | .{args.ext} | {wall:.0f} | failed (exit {rc}: {tail[0]}) | {peak:.0f} | | |")
            else:
                fields = stdout.strip().split("\t")
                solve = fields[1].split()[0] if len(fields) > 2 else "?"
                cli_err = fields[2].split()[-1] if len(fields) > 2 else "?"
                check = f"{recheck(out, source, args.scale):.3g}" if args.ext == "png" else "-"
                rows.append(f"| {size}² | ×{args.scale} | {method} | .{args.ext} | {wall:.1f} | {solve} | {peak:.0f} | {cli_err} | {check} |")
                if not args.keep:
                    out.unlink(missing_ok=True)
            print(rows[-1], flush=True)
    print()
    print("| size | scale | method | output | wall s | solve s | peak RSS MB | max abs(Dx-s) mm | re-checked |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
