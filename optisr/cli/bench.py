"""``optisr bench guided|blind``: reproduce the quality tables and figures."""

from __future__ import annotations

import argparse
import importlib

# engine -> module providing add_arguments(parser) and run(args)
ENGINES = {
    "guided": ("optisr.bench.guided", "guided depth SR: protocol A/B tables, LR consistency, figures"),
    "blind": ("optisr.bench.blind", "blind SR: PSNR/SSIM on Set5/Set14/BSD100/Urban100, NIQE on real photos"),
}


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="run a benchmark and write a markdown table and figures")
    engines = p.add_subparsers(dest="engine", metavar="ENGINE", required=True)
    for name, (module_name, help_text) in ENGINES.items():
        q = engines.add_parser(name, help=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(q)
        q.set_defaults(_bench_run=module.run)
    return p


def run(args: argparse.Namespace) -> int:
    return int(args._bench_run(args) or 0)
