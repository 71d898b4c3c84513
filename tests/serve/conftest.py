"""Shared fixtures of the ``optisr serve`` tests: small inputs on disk, an app, job polling."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from optisr.data.synthetic import make_scene
from optisr.io.images import from_float, write_image
from optisr.io.rasters import write_raster

SCALE = 4


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """The blind model cache in a session folder: the tests never touch ~/.cache."""
    monkeypatch.setenv("OPTISR_CACHE", str(tmp_path_factory.getbasetemp() / "optisr_cache"))


@pytest.fixture(scope="session")
def scene_files(tmp_path_factory) -> dict[str, Path]:
    """A 32×32 procedural scene: 8-bit guide PNG, ×4 LR 16-bit PNG and float NPY sources, 16-bit truth."""
    folder = tmp_path_factory.mktemp("scene")
    scene = make_scene(32, 32, seed=3)
    # (32, 32) mm, raised 3 m: the exact solve overshoots below 0 beside this scene's thin structures (by about
    # 1 m with OpenCV 5.1's text in the guide), and a 16-bit PNG clips there, which breaks block-sum rounding
    truth = scene.depth_clean.astype(np.float64) + 3000.0
    lr = truth.reshape(32 // SCALE, SCALE, 32 // SCALE, SCALE).mean(axis=(1, 3))  # area ×4: (8, 8) mm
    files = {
        "guide": write_image(folder / "room_rgb.png", from_float(scene.guide, np.uint8)),
        "source": write_raster(folder / "room_depth.png", lr, dtype=np.uint16),
        "source_npy": folder / "room_depth.npy",
        "truth": write_raster(folder / "room_truth.png", truth, dtype=np.uint16),
        "photo": write_image(folder / "photo.png", from_float(scene.guide[:16, :16], np.uint8)),
    }
    np.save(files["source_npy"], lr.astype(np.float32))
    return files


@pytest.fixture
def wait_job():
    """``wait_job(client, id)``: poll ``/api/jobs/<id>`` until the job is done or failed; its final state."""

    def wait(client, job_id: str, timeout: float = 120.0) -> dict:
        end = time.monotonic() + timeout
        state: dict = {}
        while time.monotonic() < end:
            state = client.get(f"/api/jobs/{job_id}").get_json()
            if state["status"] in ("done", "error"):
                return state
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} not finished after {timeout} s: {state}")

    return wait


@pytest.fixture
def app(tmp_path):
    """The app on a fresh work folder (``app.config["WORKDIR"]``), its worker stopped afterwards."""
    from optisr.serve.app import create_app

    workdir = tmp_path / "work"
    workdir.mkdir()
    application = create_app(workdir, max_upload_mb=4, device=torch.device("cpu"))
    application.config["WORKDIR"] = workdir
    yield application
    application.extensions["optisr_runner"].stop()
