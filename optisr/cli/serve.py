"""``optisr serve``: the local web app (guided and blind super-resolution in the browser).

Examples::

    optisr serve                      # http://127.0.0.1:7860/
    optisr serve --port 8000 --max-upload-mb 200

Fully offline: the page's HTML, CSS and JavaScript ship with optisr (no CDN, system fonts).
Uploads and results live in one temporary folder, removed when the server stops (Ctrl+C). The
only file written elsewhere is the model cache the CLI also uses (``optisr models``), on the first
use of a named blind model.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from optisr.cli.options import add_device_option, device_from_args
from optisr.errors import ConfigError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from optisr.serve.app import DEFAULT_MAX_UPLOAD_MB
    from optisr.serve.server import DEFAULT_HOST, DEFAULT_PORT

    p = subparsers.add_parser(
        "serve",
        help="a local web app: guided and blind super-resolution in the browser",
        description="Serve a web page on this machine to run guided upsampling (guide + LR source, "
        "colour maps, error and LR-consistency maps) and blind upscaling (before/after slider) and "
        "download the results. Offline: nothing is loaded from the network. Files live in a temporary "
        "folder removed at exit.",
    )
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}: this machine only; 0.0.0.0 opens it to the network)",
    )
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0: any free port)"
    )
    p.add_argument(
        "--max-upload-mb",
        dest="max_upload_mb",
        type=int,
        default=DEFAULT_MAX_UPLOAD_MB,
        metavar="MB",
        help=f"largest upload of one run, in MiB (default {DEFAULT_MAX_UPLOAD_MB}); larger ones get a one-line error",
    )
    p.add_argument("--verbose", action="store_true", help="log every HTTP request on stderr")
    add_device_option(p, help_prefix="where jobs compute; ")
    return p


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from optisr.serve.server import LocalServer

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535; got {args.port}")
    if args.max_upload_mb < 1:
        raise ConfigError(f"--max-upload-mb must be >= 1; got {args.max_upload_mb}")
    device = device_from_args(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)
    server = LocalServer(args.host, args.port, max_upload_mb=args.max_upload_mb, device=device)
    try:
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(
                f"optisr serve: note: listening on {args.host}: others on the network can use the page", file=sys.stderr
            )
        print(f"optisr serve: {server.url}  (Ctrl+C to stop; files in {server.workdir}, removed at exit)", flush=True)
        signal.signal(signal.SIGTERM, _interrupt)
        server.serve_forever()  # returns on Ctrl+C or SIGTERM (Werkzeug's server takes the KeyboardInterrupt)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    print("optisr serve: stopped", file=sys.stderr)
    return 0
