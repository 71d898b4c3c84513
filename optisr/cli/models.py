"""``optisr models``: list the registered pretrained generators; export weights.

Examples::

    optisr models list            # also lists the guided models shipped in the package
    optisr models list --json
    optisr models export realsr-df2k-x4 -o RealSR_DF2K_x4.safetensors   # BasicSR key names
    optisr models export realsr-df2k-x4 -o realsr_x4.onnx               # dynamic H/W
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from optisr.errors import ConfigError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "models",
        help="list or export pretrained SR generators",
        description="List the registered pretrained generators or export their weights.",
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    lst = sub.add_parser("list", help="show name, architecture, scale, source package, installed or not")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    exp = sub.add_parser(
        "export",
        help="write a model's weights with BasicSR key names (.safetensors, .pth) or as ONNX (.onnx)",
    )
    exp.add_argument("model", help="registered name or weights file")
    exp.add_argument("-o", "--output", required=True, help="target .safetensors, .pth or .onnx file")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return p


def _rows() -> list[dict]:
    from optisr.blind.registry import MODELS, cache_dir, find_source

    rows = []
    for spec in MODELS.values():
        cached = (cache_dir() / "models" / f"{spec.name}.safetensors").is_file()
        rows.append({
            "name": spec.name, "arch": spec.arch, "scale": spec.scale, "package": spec.package,
            "installed": find_source(spec.name) is not None, "cached": cached,
            "license": spec.license, "description": spec.description,
        })  # fmt: skip
    return rows


def _guided_rows() -> list[dict]:
    """The guided models inside the package: ``default`` and :data:`~optisr.guided.model.SHIPPED_MODELS`."""
    from optisr.guided.model import SHIPPED_MODELS, load_guided_model, shipped_model_path

    notes = {
        "default": "the default of optisr guided / guided_upsample",
        "unet-v1": "the previous default (until 2026-12-02); the default's distillation teacher",
    }
    rows = []
    for name in ("default", *SHIPPED_MODELS):
        path = shipped_model_path(name)
        if not path.is_file():
            continue
        model, meta = load_guided_model(path)
        arch = json.loads(meta["config"]).get("arch", "unet")
        rows.append({
            "name": name, "arch": arch, "params": sum(p.numel() for p in model.parameters()),
            "note": notes.get(name, ""),
        })  # fmt: skip
    return rows


def run(args: argparse.Namespace) -> int:
    if args.action in (None, "list"):
        rows = _rows()
        if getattr(args, "json", False):
            print(json.dumps(rows, indent=2))
            return 0
        cols = ("name", "arch", "scale", "package", "installed")
        table = [[str(r[c]) if c != "installed" else ("yes" if r[c] else "no") for c in cols] for r in rows]
        widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
        print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)))
        for t in table:
            print("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)))
        missing = sorted({r["package"] for r in rows if not r["installed"]})
        if missing:
            print(f"\nnot installed: pip install {' '.join(missing)}")
        guided = _guided_rows()
        if guided:
            print("\nguided models, shipped with optisr (optisr guided --method NAME):")
            for g in guided:
                print(f"  {g['name']:<8}  {g['arch']:<5}  {g['params'] / 1e6:.2f} M parameters  {g['note']}")
        return 0
    if args.action == "export":
        from optisr.blind.registry import load_model
        from optisr.io.atomic import atomic_path
        from optisr.io.outputs import check_output_file
        from optisr.io.state_dict import save_model_safetensors

        out = Path(args.output)
        if out.suffix not in (".safetensors", ".pth", ".pt", ".onnx"):
            raise ConfigError(f"--output must end in .safetensors, .pth or .onnx; got {out.name!r}")
        check_output_file(out, overwrite=args.overwrite)  # before loading the model
        loaded = load_model(args.model)
        # Each writer fills our temporary file; the final step (atomic_path) then never replaces
        # a file that another run wrote meanwhile unless --overwrite (OutputExistsError).
        with atomic_path(out, overwrite=args.overwrite) as tmp:
            if out.suffix == ".safetensors":
                extra: dict[str, Any] = {
                    k: v for k, v in loaded.metadata.items() if k not in ("format", "arch", "hyperparameters")
                }
                save_model_safetensors(loaded.model, tmp, **extra)
            elif out.suffix in (".pth", ".pt"):
                import torch

                torch.save({"params_ema": loaded.model.state_dict()}, tmp)
            else:
                from optisr.blind.export import export_onnx

                export_onnx(loaded.model, tmp)
        print(out)
        return 0
    raise ConfigError(f"unknown action {args.action!r}; use list or export")
