"""Wall time of ``--dask`` on local clusters against one process, and whether the outputs agree.

Two workloads, each run as the real CLI in a fresh process (so start-up, reading and writing count):

* ``optisr upscale`` of a folder of ``--images`` procedural RGB images of ``--image-size``² with
  the default model (files as tasks);
* ``optisr guided --method color --tile-size TILE`` of one ``--size``² uint8 guide at ``×--scale``
  (a procedural scene mirror-tiled up to SIZE², the source its area downsample; tiles as tasks).

Configurations: one process with one torch thread (the reference), one process with torch's default
(a thread per core), then ``--dask local:N`` for each N of ``--workers`` (N worker processes of one
thread each; the driver only slices, cross-fades and re-projects). Columns: wall time, speed-up
over the reference, and the largest difference from the reference's output (upscale: max |Δ| in
8-bit levels over all files; guided: max |Δ| / range of the float32 output). Workers solve each
tile with one thread, as the reference does, so their tiles are bit-identical to it; a process
with more threads sums float32 reductions in another order and moves the solution by ~1e-6·range.

    nice -n 10 python benchmarks/dask_scaling.py --size 8192 --scale 8 --workers 1 2

Needs ``pip install "optisr[dask]"``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _mirror_tile(a: np.ndarray, reps: int) -> np.ndarray:
    row = np.concatenate([a if j % 2 == 0 else a[:, ::-1] for j in range(reps)], axis=1)
    return np.concatenate([row if i % 2 == 0 else row[::-1] for i in range(reps)], axis=0)


def _cli(args: list[str], *, threads: int | None) -> float:
    """Run ``python -m optisr ARGS`` (torch ``threads``, None = one per core); its wall time in seconds."""
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env.pop("MKL_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "optisr", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"optisr {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds


CONFIG = {"all_threads": True}  # --no-all-threads leaves out the one-process run with a thread per core


def _configs(workers: list[int]) -> list[tuple[str, list[str], int | None]]:
    """(name, extra CLI arguments, torch threads of the driver): the reference (one thread) comes first."""
    rows: list[tuple[str, list[str], int | None]] = [("1 process, 1 thread", [], 1)]
    if CONFIG["all_threads"]:
        rows.append((f"1 process, {os.cpu_count()} threads", [], None))
    return rows + [(f"--dask local:{n}", ["--dask", f"local:{n}"], None) for n in workers]


def bench_upscale(root: Path, n_images: int, size: int, workers: list[int]) -> list[tuple[str, float, float]]:
    from optisr.data.synthetic import make_scene
    from optisr.io.images import read_image, write_image

    inputs = root / "photos"
    inputs.mkdir()
    for k in range(n_images):
        scene = make_scene(size, size, seed=k)
        write_image(inputs / f"img{k}.png", np.round(scene.guide * 255).astype(np.uint8))
    rows, ref = [], None
    for name, extra, threads in _configs(workers):
        out = root / f"up_{len(rows)}"
        seconds = _cli(["upscale", "-i", str(inputs), "-o", str(out), "--quiet", *extra], threads=threads)
        images = {p.name: read_image(p).astype(np.int32) for p in sorted(out.iterdir())}
        ref = ref or images
        diff = max(int(np.abs(images[k] - ref[k]).max()) for k in ref)
        rows.append((name, seconds, float(diff)))
        print(f"upscale {name}: {seconds:.1f} s, max |diff| {diff} levels", file=sys.stderr, flush=True)
    return rows


def bench_guided(root: Path, size: int, scale: int, tile: int, workers: list[int]) -> list[tuple[str, float, float]]:
    import torch

    from optisr.data.synthetic import make_scene
    from optisr.io.images import write_image
    from optisr.ops.operators import make_operator

    scene_px = min(size, 1024)
    if size % scene_px or scene_px % scale:
        raise SystemExit(f"--size must be a multiple of {scene_px}, and {scene_px} of --scale")
    sc = make_scene(scene_px, scene_px, seed=0)
    lr0 = make_operator("area", (scene_px, scene_px), scale).apply(torch.from_numpy(sc.depth_clean.astype(np.float64)))
    reps = size // scene_px
    guide, source = root / "guide.png", root / "depth_lr.npy"
    write_image(guide, _mirror_tile(np.round(sc.guide * 255).astype(np.uint8), reps))
    np.save(source, _mirror_tile(lr0.numpy().astype(np.float32), reps))  # blocks mirror onto blocks
    del sc, lr0
    common = ["guided", "--guide", str(guide), "--source", str(source), "--scale", str(scale), "--method", "color",
              "--tile-size", str(tile), "--quiet"]  # fmt: skip
    rows, ref = [], None
    for name, extra, threads in _configs(workers):
        out = root / f"guided_{len(rows)}.npy"
        seconds = _cli([*common, "-o", str(out), *extra], threads=threads)
        x = np.load(out)
        if ref is None:
            ref = x
        rel = float(np.abs(x - ref).max() / (ref.max() - ref.min()))
        rows.append((name, seconds, rel))
        print(f"guided {name}: {seconds:.1f} s, max |diff|/range {rel:.2g}", file=sys.stderr, flush=True)
        if len(rows) > 1:
            out.unlink()
    return rows


def _table(title: str, rows: list[tuple[str, float, float]], diff_name: str, fmt: str) -> str:
    base = rows[0][1]
    lines = [f"| {title} | wall time | speed-up | {diff_name} |", "|---|---:|---:|---:|"]
    for name, seconds, diff in rows:
        lines.append(f"| {name} | {seconds:.1f} s | {base / seconds:.2f}× | {format(diff, fmt)} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=8, help="upscale: number of images (default 8)")
    p.add_argument("--image-size", type=int, default=128, help="upscale: image side in px (default 128)")
    p.add_argument("--size", type=int, default=8192, help="guided: HR side in px (default 8192)")
    p.add_argument("--scale", type=int, default=8, help="guided: scale (default 8)")
    p.add_argument("--tile", type=int, default=1024, help="guided: --tile-size (default 1024)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="local cluster sizes (default 1 2)")
    p.add_argument("--skip", choices=("upscale", "guided"), default=None, help="leave one workload out")
    p.add_argument("--no-all-threads", action="store_true", help="leave out the one-process run with a thread per core")
    args = p.parse_args()
    CONFIG["all_threads"] = not args.no_all_threads
    print(f"{os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    with tempfile.TemporaryDirectory(prefix="optisr-dask-") as tmp:
        root = Path(tmp)
        if args.skip != "upscale":
            rows = bench_upscale(root, args.images, args.image_size, args.workers)
            title = f"upscale {args.images} × {args.image_size}²"
            print(_table(title, rows, "max abs diff (8-bit levels)", ".0f"), flush=True)
        if args.skip != "guided":
            rows = bench_guided(root, args.size, args.scale, args.tile, args.workers)
            title = f"guided {args.size}² ×{args.scale}, tiles {args.tile}"
            print(_table(title, rows, "max abs diff / range", ".2g"), flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end", flush=True)


if __name__ == "__main__":
    main()
