"""``LocalServer``: the app of :mod:`optisr.serve.app` on a local HTTP server, with its temporary folder.

The folder is made with :func:`tempfile.mkdtemp` when the server is created and removed by
:meth:`LocalServer.close` (also on errors while starting); the app writes nowhere else. The
HTTP server is Werkzeug's threaded one: enough for one user on this machine, and the only
server that ships with Flask (no extra dependency).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import torch
from werkzeug.serving import BaseWSGIServer, make_server

from optisr.serve.app import DEFAULT_MAX_UPLOAD_MB, create_app
from optisr.serve.jobs import JobRunner

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "LocalServer"]

DEFAULT_HOST = "127.0.0.1"
"""Localhost only by default: the page is for the person at this machine."""

DEFAULT_PORT = 7860


class LocalServer:
    """The web app served on ``host:port`` (``port=0``: a free port), its files in a temporary folder.

    Use as a context manager, or call :meth:`close` when done::

        with LocalServer(port=0) as server:
            server.start()          # in a thread; or server.serve_forever() to block
            print(server.url)
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB,
        device: torch.device | None = None,
    ) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="optisr-serve-"))
        self.thread: threading.Thread | None = None
        try:
            self.app = create_app(self.workdir, max_upload_mb, device=device)
            self.runner: JobRunner = self.app.extensions["optisr_runner"]
            self.httpd: BaseWSGIServer = make_server(host, port, self.app, threaded=True)
        except BaseException:
            runner = getattr(self, "runner", None)
            if runner is not None:
                runner.stop()
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self.host = host

    @property
    def url(self) -> str:
        """``http://host:port/`` of the page."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.httpd.server_port}/"

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`shutdown` (from another thread) or an interrupt."""
        self.httpd.serve_forever()

    def start(self) -> None:
        """Serve in a background thread."""
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="optisr-serve-http", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving, stop the job worker and remove the temporary folder."""
        if self.thread is not None:
            self.httpd.shutdown()
            self.thread.join(10)
            self.thread = None
        self.httpd.server_close()
        self.runner.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
