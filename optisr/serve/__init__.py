"""``optisr serve``: a local, offline web app for guided and blind super-resolution.

* :func:`~optisr.serve.app.create_app` -- the Flask app (page, JSON API, job files).
* :class:`~optisr.serve.server.LocalServer` -- the app on a local HTTP server with its temporary folder.

The page's HTML, CSS and JavaScript ship in this package (``templates/``, ``static/``): no CDN,
no web fonts. Jobs run one at a time on a background thread (:mod:`optisr.serve.jobs`) through the
CLI's own code paths (:mod:`optisr.serve.tasks`), so results and error messages are the CLI's.
"""

from __future__ import annotations

from optisr.serve.app import create_app
from optisr.serve.server import LocalServer

__all__ = ["LocalServer", "create_app"]
