"""Benchmark ×4 inference of RRDBNet (RRDB-23) on CPU: eager, channels_last, torch.compile, bf16, ONNX Runtime.

Each variant upscales one ``size × size`` RGB input (default 256² → 1024²). The table gives the
best wall time over ``--repeat`` runs, the achieved conv throughput (GMAC/s, counted from the
model's convolutions) and that throughput as a fraction of a measured dense 3×3 conv
(64 → 64 channels at the same resolution, the trunk's most common shape), plus the max abs
difference of the output from the fp32 eager result.

Usage::

    python benchmarks/upscale.py                      # 256², 2 threads, random weights
    python benchmarks/upscale.py --size 128 --weights realsr-df2k-x4 --skip compile
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from optisr.blind.archs import RRDBNet


def count_macs(model: nn.Module, size: int) -> float:
    """Multiply-accumulates of all Conv2d layers for a ``size × size`` input (counted at 16², scaled)."""
    macs = 0.0

    def hook(mod: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal macs
        k = mod.kernel_size[0] * mod.kernel_size[1]
        macs += out.numel() * mod.in_channels // mod.groups * k

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.inference_mode():
        model(torch.zeros(1, 3, 16, 16))
    for h in handles:
        h.remove()
    return macs * (size / 16) ** 2


def best_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def dense_conv_gmacs(size: int, repeat: int) -> float:
    conv = nn.Conv2d(64, 64, 3, 1, 1).eval()
    x = torch.rand(1, 64, size, size)
    with torch.inference_mode():
        conv(x)
        t = best_time(lambda: conv(x), max(3, repeat))
    return 64 * 64 * 9 * size * size / t / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument(
        "--weights", default="random", help="'random' or a registry name / weights file"
    )
    ap.add_argument(
        "--skip",
        default="",
        help="comma list of variants to skip: channels_last,compile,bf16,onnx",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))

    if args.weights == "random":
        torch.manual_seed(0)
        model = RRDBNet().eval()
    else:
        from optisr.blind.registry import load_model

        model = load_model(args.weights).model.eval()
    x = torch.rand(1, 3, args.size, args.size)
    macs = count_macs(model, args.size)
    peak = dense_conv_gmacs(args.size, args.repeat)
    print(
        f"input {args.size}², threads {args.threads}, {macs / 1e9:.0f} GMAC per forward"
    )
    print(f"dense conv 64→64 3×3 at {args.size}²: {peak:.1f} GMAC/s")

    rows: list[tuple[str, str, float | None, str]] = []  # name, time, GMAC/s, note
    with torch.inference_mode():
        small = torch.rand(1, 3, 32, 32)
        model(small)  # one-off initialisation
        ref_out: dict[str, torch.Tensor] = {}

        def record(name: str, run: Callable[[], torch.Tensor], note: str = "") -> None:
            t = best_time(lambda: ref_out.__setitem__(name, run()), args.repeat)
            diff = (
                (ref_out[name].float() - ref_out["fp32 eager"]).abs().max().item()
                if name != "fp32 eager"
                else 0.0
            )
            rows.append((name, f"{t:.2f}", macs / t / 1e9, f"{diff:.1e}" + note))
            print(f"  {name}: {t:.2f} s", flush=True)

        record("fp32 eager", lambda: model(x))

        if "channels_last" not in skip:
            cl = RRDBNet().eval()
            cl.load_state_dict(model.state_dict())
            cl = cl.to(memory_format=torch.channels_last)
            xc = x.contiguous(memory_format=torch.channels_last)
            cl(small.contiguous(memory_format=torch.channels_last))
            record("fp32 channels_last", lambda: cl(xc))

        if "compile" not in skip:
            try:
                compiled = torch.compile(model, dynamic=False)
                t0 = time.perf_counter()
                compiled(x)  # compiles for this shape
                ctime = time.perf_counter() - t0
                record(
                    "fp32 torch.compile",
                    lambda: compiled(x),
                    f" (compile+1st run {ctime:.0f} s)",
                )
            except Exception as exc:  # noqa: BLE001 - report any backend failure in the table
                rows.append(
                    (
                        "fp32 torch.compile",
                        "failed",
                        None,
                        str(exc).splitlines()[0][:60],
                    )
                )

        if "bf16" not in skip:
            bf = RRDBNet().eval()
            bf.load_state_dict(model.state_dict())
            bf = bf.to(torch.bfloat16)
            xb = x.to(torch.bfloat16)
            bf(small.to(torch.bfloat16))
            record("bf16 eager", lambda: bf(xb))

    if "onnx" not in skip:
        try:
            import onnxruntime as ort

            from optisr.blind.export import export_onnx, verify_onnx

            with tempfile.TemporaryDirectory() as tmp:
                path = export_onnx(model, Path(tmp) / "rrdb.onnx")
                err = verify_onnx(model, path, sizes=((16, 24), (40, 20)))
                print(
                    f"  onnx export verified at 16×24 and 40×20: max abs diff {err:.1e}"
                )
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = args.threads
                sess = ort.InferenceSession(
                    str(path), opts, providers=["CPUExecutionProvider"]
                )
                xn = x.numpy()
                sess.run(["output"], {"input": small.numpy()})
                with torch.inference_mode():
                    record(
                        "onnxruntime fp32",
                        lambda: torch.from_numpy(
                            sess.run(["output"], {"input": xn})[0]
                        ),
                    )
        except ImportError as exc:
            rows.append(("onnxruntime fp32", "skipped", None, str(exc)[:60]))

    # The machine may be shared: measure the dense-conv reference again and keep the best.
    peak = max(peak, dense_conv_gmacs(args.size, args.repeat))
    print(f"dense conv reference (best of start and end): {peak:.1f} GMAC/s")
    head = ("variant", "time (s)", "GMAC/s", "of dense conv", "max |Δ| vs fp32 eager")
    table = [
        (n, t, f"{r:.1f}" if r else "", f"{r / peak:.0%}" if r else "", note)
        for n, t, r, note in rows
    ]
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(head)]
    print()
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for r in table:
        print(" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
