"""Time and peak memory of the tile-wise guided solve on large procedural inputs.

Each configuration runs in a fresh process (so ``ru_maxrss`` is its own peak): a procedural RGB-D
scene (``optisr.data.synthetic.make_scene``, ``--scene`` px) is mirror-tiled up to SIZE×SIZE as a
uint8 guide; the LR source is the area downsample of the (mirror-tiled) depth, built from the
scene's own LR map (mirroring at block-aligned borders maps blocks onto blocks). The solve is
:func:`optisr.guided.tiling.tiled_guided_upsample` with a float32 output.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/tiled_memory.py --sizes 4096 8192 --scale 8

``--lr N`` makes the source N×N at the sizes' own (non-integer) ratio instead: the resampling
operator of ``--operator`` applied to the mirror-tiled HR depth, solved with that operator
(``--tile 0``: untiled, through ``optisr.guided_upsample(..., tile_size=0)``, for the comparison).

    OMP_NUM_THREADS=1 python benchmarks/tiled_memory.py --sizes 4096 --lr 1536 --tile 1024   # 8/3

Columns: HR size, scale, tile (HR px), overlap (HR px), solve time, peak RSS of the process
(inputs, torch and the solve; ``rss before`` is the resident size just before the solve, i.e.
interpreter + torch + inputs), and max |D x − s| relative to the source range.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time


def _rss_now_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _mirror_tile(a, reps_y: int, reps_x: int):
    import numpy as np

    row = [a if j % 2 == 0 else a[:, ::-1] for j in range(reps_x)]
    row = np.concatenate(row, axis=1)
    return np.concatenate([row if i % 2 == 0 else row[::-1] for i in range(reps_y)], axis=0)


def _run_one(size, scale, tile, overlap, scene, operator, max_iter, lr_n, queue) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from optisr.data.synthetic import make_scene
    from optisr.guided.tiling import check_tiling, tiled_guided_upsample
    from optisr.ops.operators import make_operator

    if lr_n:
        return _run_ratio(size, tile, overlap, scene, operator, max_iter, lr_n, queue)

    if size % scene or scene % scale:
        raise SystemExit(f"size {size} must be a multiple of --scene {scene}, and --scene of the scale {scale}")
    sc = make_scene(scene, scene, seed=0)
    guide0 = np.round(sc.guide * 255).astype(np.uint8)
    src0 = make_operator(operator, (scene, scene), scale).apply(torch.from_numpy(sc.depth_clean.astype(np.float64)))
    src0 = src0.numpy().astype(np.float32)
    del sc
    reps = size // scene
    guide = _mirror_tile(guide0, reps, reps)
    source = np.ascontiguousarray(_mirror_tile(src0, reps, reps))
    del guide0
    rss_before = _rss_now_mb()
    t0 = time.perf_counter()
    out = tiled_guided_upsample(source, guide, scale, tile=tile, overlap=overlap, operator=operator, max_iter=max_iter)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    op = make_operator(operator, out.shape, scale)
    err = float((op.apply(torch.from_numpy(out)).numpy() - source).__abs__().max())
    rng = float(source.max() - source.min())
    tile_r, overlap_r = check_tiling(scale, tile, overlap)
    queue.put((size, scale, tile_r, overlap_r, seconds, rss_before, peak, err / rng))


def _run_ratio(size, tile, overlap, scene, operator, max_iter, lr_n, queue) -> None:
    """``--lr``: the source at a non-integer ratio, made by the resampling operator."""
    import numpy as np
    import torch

    import optisr
    from optisr.data.synthetic import make_scene
    from optisr.guided.tiling import check_tiling, tiled_guided_upsample
    from optisr.ops.operators import resampling_operator

    if size % scene:
        raise SystemExit(f"size {size} must be a multiple of --scene {scene}")
    sc = make_scene(scene, scene, seed=0)
    reps = size // scene
    guide = _mirror_tile(np.round(sc.guide * 255).astype(np.uint8), reps, reps)
    op = resampling_operator(operator, (size, size), (lr_n, lr_n))
    depth = torch.from_numpy(np.ascontiguousarray(_mirror_tile(sc.depth_clean, reps, reps)))
    source = op.apply_strips(depth, dtype=torch.float64).numpy().astype(np.float32)
    del sc, depth
    rss_before = _rss_now_mb()
    t0 = time.perf_counter()
    if tile:
        out = tiled_guided_upsample(source, guide, op.scale, tile=tile, overlap=overlap, operator=op, max_iter=max_iter)
        tile_r, overlap_r = check_tiling(op.scale, tile, overlap)
    else:
        out = optisr.guided_upsample(
            source, guide, None, operator=operator, weights="color", fidelity="exact", refine=0, tile_size=0,
            dtype=torch.float32, max_iter=max_iter,
        )  # fmt: skip
        tile_r, overlap_r = 0, 0
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    err = float(np.abs(op.apply_strips(out, dtype=torch.float64).numpy() - source).max())
    rng = float(source.max() - source.min())
    queue.put((size, f"{size}/{lr_n}", tile_r, overlap_r, seconds, rss_before, peak, err / rng))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[4096])
    p.add_argument("--scale", type=int, default=8)
    p.add_argument("--tile", type=int, default=1024, help="core tile, HR px")
    p.add_argument(
        "--overlap", type=int, default=None, help="HR px (default: optisr.guided.tiling.default_overlap for the mode)"
    )
    p.add_argument(
        "--max-iter",
        type=int,
        default=2000,
        help="CG cap per tile; a small cap gives a quick memory-only run (peak RSS does not depend "
        "on it, consistency stays exact through the final projection, the time does not count)",
    )
    p.add_argument("--scene", type=int, default=1024, help="procedural scene size that is mirror-tiled")
    p.add_argument("--operator", default="area")
    p.add_argument("--lr", type=int, default=0, help="N: an N×N source at the sizes' own ratio (0: --scale)")
    args = p.parse_args(argv)

    ctx = mp.get_context("spawn")
    print("| size | scale | tile | overlap | max iter | time s | RSS before MB | peak RSS MB | max abs(Dx-s)/range |")
    print("|---|---|---|---|---|---|---|---|---|")
    sys.stdout.flush()
    for size in args.sizes:
        q = ctx.Queue()
        proc = ctx.Process(target=_run_one, args=(size, args.scale, args.tile, args.overlap, args.scene, args.operator, args.max_iter, args.lr, q))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            print(f"| {size}² | ×{args.scale} | failed (exit code {proc.exitcode}) |")
            continue
        size, scale, tile, overlap, seconds, before, peak, err = q.get()
        print(f"| {size}² | {scale if isinstance(scale, str) else f'×{scale}'} | {tile} | {overlap} | {args.max_iter} | {seconds:.1f} | {before:.0f} | {peak:.0f} | {err:.1e} |")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
