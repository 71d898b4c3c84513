"""``optisr serve`` through Flask's test client: every route, guided and blind runs, errors, limits, files."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from optisr.cli.main import main as cli_main
from optisr.guided.consistency import lr_consistency_error
from optisr.io.rasters import read_raster

SCALE = 4
STATIC = Path(__file__).resolve().parents[2] / "optisr" / "serve"


def post_files(client, url: str, files: dict[str, Path | list[Path] | tuple[bytes, str]], **fields):
    """POST a multipart form: ``files`` maps field -> path(s) or (bytes, file name)."""
    data: dict = {k: str(v) for k, v in fields.items()}
    for key, value in files.items():
        items = value if isinstance(value, list) else [value]
        data[key] = [
            (io.BytesIO(v[0]), v[1]) if isinstance(v, tuple) else (io.BytesIO(v.read_bytes()), v.name) for v in items
        ]
    return client.post(url, data=data, content_type="multipart/form-data")


def run_guided(client, wait_job, files: dict, **fields) -> dict:
    answer = post_files(client, "/api/guided", files, **fields)
    assert answer.status_code == 202, answer.get_json()
    return wait_job(client, answer.get_json()["job"])


def test_page_and_options_are_offline(app):
    client = app.test_client()
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for element in ("guided-guide", "guided-source", "guided-run", "blind-photos", "blind-model", "blind-run"):
        assert f'id="{element}"' in html
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/app.css").status_code == 200
    # fully offline: no URL to another host in the page, its script or its style sheet
    for text in (html, (STATIC / "static" / "app.js").read_text(), (STATIC / "static" / "app.css").read_text()):
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE)
        assert "@import" not in text and "@font-face" not in text
    opts = client.get("/api/options").get_json()
    assert opts["methods"][:3] == ["default", "model", "color"]
    assert opts["modes"] == ["auto", "exact", "soft", "robust"]
    assert "area" in opts["operators"]
    assert any(m["name"] == "realsr-df2k-x4" and m["installed"] for m in opts["models"])
    assert opts["max_upload_mb"] == 4


def test_guided_run_png_with_truth(app, scene_files, wait_job):
    client = app.test_client()
    files = {"guide": scene_files["guide"], "source": scene_files["source"], "truth": scene_files["truth"]}
    state = run_guided(client, wait_job, files, scale=SCALE, method="default", operator="area", mode="exact")
    assert state["status"] == "done", state
    (result,) = state["results"]
    assert result["download"] == f"room_depth_x{SCALE}.png"
    titles = " | ".join(f["title"] for f in result["figures"])
    assert "result (32×32)" in titles and "LR consistency" in titles and "error |x − truth|" in titles
    for fig in result["figures"]:
        answer = client.get(f"/files/{state['id']}/{fig['file']}")
        assert answer.status_code == 200 and answer.mimetype == "image/png"
        assert read_image_bytes(answer.data, fig["file"]).dtype == np.uint8

    download = client.get(f"/files/{state['id']}/{result['download']}?download=1")
    assert download.status_code == 200
    assert "attachment" in download.headers["Content-Disposition"]
    out_path = app.config["WORKDIR"].parent / "downloaded.png"
    out_path.write_bytes(download.data)
    out = read_raster(out_path)
    assert out.data.shape == (32, 32) and out.data.dtype == np.uint16
    # the numbers on the page are those of the downloaded raster
    src = read_raster(scene_files["source"])
    err = lr_consistency_error(out.data, src.data.astype(np.float64), src.mask, SCALE)
    assert result["numbers"]["max_lr_error"] == pytest.approx(err, abs=1e-9)
    assert err <= 0.5  # exact mode, rounded to integers block by block
    truth = read_raster(scene_files["truth"]).data.astype(np.float64)
    mae = np.abs(out.data.astype(np.float64) - truth).mean()
    assert result["numbers"]["mae"] == pytest.approx(mae, rel=1e-9)


def read_image_bytes(data: bytes, name: str) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None, name
    return img


def test_guided_fidelity_exact_and_soft_on_npy(app, scene_files, wait_job):
    client = app.test_client()
    files = {"guide": scene_files["guide"], "source": scene_files["source_npy"]}
    exact = run_guided(client, wait_job, files, scale=SCALE, method="color", mode="exact")
    soft = run_guided(client, wait_job, files, scale=SCALE, method="color", mode="soft", lam="0.01")
    assert exact["status"] == soft["status"] == "done", (exact, soft)
    assert exact["results"][0]["download"].endswith(".npy")
    e_exact = exact["results"][0]["numbers"]["max_lr_error"]
    e_soft = soft["results"][0]["numbers"]["max_lr_error"]
    assert e_exact < 1e-2  # mm, float32 output
    assert e_soft > 10 * max(e_exact, 1e-3)  # a weak penalty leaves the LR values: the choice reached the solver


def test_guided_auto_scale_at_a_non_integer_ratio(app, scene_files, wait_job, tmp_path):
    """Scale left at auto: a 12×12 source beside the 32×32 guide is solved at 8/3, like optisr guided."""
    import torch

    from optisr.ops.operators import resampling_operator

    truth = read_raster(scene_files["truth"]).data.astype(np.float64)
    op = resampling_operator("area", (32, 32), (12, 12))
    lr = op.apply(torch.from_numpy(truth)).numpy().astype(np.float32)
    source = tmp_path / "tof.npy"
    np.save(source, lr)
    client = app.test_client()
    state = run_guided(client, wait_job, {"guide": scene_files["guide"], "source": source}, scale="auto", method="color")
    assert state["status"] == "done", state
    result = state["results"][0]
    assert result["download"] == "tof_hr.npy"
    assert result["numbers"]["max_lr_error"] < 1e-2  # exactly consistent with the 12×12 source
    assert any("2.667×2.667 from the sizes" in n for n in state.get("notes", [])), state


def test_blind_run_default_model(app, scene_files, wait_job):
    client = app.test_client()
    answer = post_files(client, "/api/blind", {"photos": [scene_files["photo"]]}, model="realsr-df2k-x4", tile_size=0)
    assert answer.status_code == 202, answer.get_json()
    state = wait_job(client, answer.get_json()["job"])
    assert state["status"] == "done", state
    (result,) = state["results"]
    assert result["size_in"] == [16, 16] and result["size_out"] == [64, 64]
    for key in ("before", "after"):
        assert client.get(f"/files/{state['id']}/{result[key]}").status_code == 200
    download = client.get(f"/files/{state['id']}/{result['download']}?download=1")
    assert download.status_code == 200
    assert read_image_bytes(download.data, result["download"]).shape == (64, 64, 3)


def test_bad_requests_give_one_line_errors(app, scene_files):
    client = app.test_client()
    cases = [
        ({"guide": scene_files["guide"]}, {"scale": SCALE}, "source: no file chosen"),
        ({"guide": scene_files["guide"], "source": (b"x", "notes.txt")}, {"scale": SCALE}, "notes.txt: unsupported source type '.txt'"),
        ({"guide": scene_files["guide"], "source": scene_files["source"]}, {"scale": "abc"}, "scale (or auto) must be an integer from 1 to 64; got 'abc'"),
        ({"guide": scene_files["guide"], "source": scene_files["source"]}, {"scale": SCALE, "method": "colr"}, "unknown method 'colr'"),
        ({"guide": scene_files["guide"], "source": scene_files["source"]}, {"scale": SCALE, "mode": "soft", "lam": "-1"}, "λ must be a positive number"),
    ]  # fmt: skip
    for files, fields, expected in cases:
        answer = post_files(client, "/api/guided", files, **fields)
        assert answer.status_code == 400
        error = answer.get_json()["error"]
        assert expected in error and "\n" not in error, error
    answer = post_files(client, "/api/blind", {"photos": [scene_files["photo"]]}, model="no-such-model")
    assert answer.status_code == 400 and "not installed model 'no-such-model'" in answer.get_json()["error"]
    # rejected requests leave no job folder behind
    assert list(app.config["WORKDIR"].iterdir()) == []


def test_job_errors_are_the_cli_messages(app, scene_files, wait_job, tmp_path, capsys):
    """A corrupt source and a guide of the wrong size: the page shows the CLI's line (file names only)."""
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    small_guide = tmp_path / "small.png"
    from optisr.io.images import write_image

    write_image(small_guide, np.zeros((20, 20, 3), np.uint8))
    client = app.test_client()
    for guide, source in ((scene_files["guide"], bad), (small_guide, scene_files["source"])):
        state = run_guided(client, wait_job, {"guide": guide, "source": source}, scale=SCALE, method="color")
        assert state["status"] == "error"
        assert "\n" not in state["error"] and str(app.config["WORKDIR"]) not in state["error"]
        code = cli_main(["guided", "--guide", str(guide), "--source", str(source), "--scale", str(SCALE),
                         "--method", "color", "-o", str(tmp_path / "cli_out.png")])  # fmt: skip
        assert code == 1
        cli_line = capsys.readouterr().err.strip().splitlines()[-1]
        assert cli_line.startswith("optisr guided: error: ")
        cli_message = cli_line.removeprefix("optisr guided: error: ").replace(f"{tmp_path}{os.sep}", "")
        cli_message = cli_message.replace(f"{scene_files['source'].parent}{os.sep}", "")
        assert state["error"] == cli_message


def test_upload_limit_is_a_one_line_413(app, scene_files):
    client = app.test_client()
    big = (b"\0" * (5 * 1024 * 1024), "huge.png")  # the app's limit is 4 MB
    answer = post_files(client, "/api/guided", {"guide": scene_files["guide"], "source": big}, scale=SCALE)
    assert answer.status_code == 413
    assert answer.get_json()["error"] == "upload too large: the limit is 4 MB per run (optisr serve --max-upload-mb)"


def test_unknown_job_and_path_tricks_are_refused(app, scene_files, wait_job):
    client = app.test_client()
    assert client.get("/api/jobs/nope").status_code == 404
    assert client.get("/files/nope/x.png").status_code == 404
    state = run_guided(client, wait_job, {"guide": scene_files["guide"], "source": scene_files["source"]},
                       scale=SCALE, method="bicubic")  # fmt: skip
    assert state["status"] == "done", state
    for name in ("..%2Fin%2Fguide%2Froom_rgb.png", "%2Fetc%2Fpasswd", "missing.png"):
        assert client.get(f"/files/{state['id']}/{name}").status_code == 404


def test_nothing_written_outside_the_temp_folder(scene_files, wait_job, tmp_path, monkeypatch):
    from optisr.serve.server import LocalServer

    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir(), home.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where mkdtemp makes its folder
    (tmp_path / "tmp").mkdir()
    inputs_before = sorted(p.name for p in scene_files["guide"].parent.iterdir())
    with LocalServer(port=0) as server:
        assert server.workdir.parent == tmp_path / "tmp"
        client = server.app.test_client()
        evil = (scene_files["source"].read_bytes(), "../../../evil.png")
        state = run_guided(
            client, wait_job, {"guide": scene_files["guide"], "source": evil}, scale=SCALE, method="color"
        )
        assert state["status"] == "done", state
        answer = post_files(client, "/api/blind", {"photos": [scene_files["photo"]]}, model="realsr-df2k-x4")
        assert wait_job(client, answer.get_json()["job"])["status"] == "done"
        written = [p for p in server.workdir.rglob("*") if p.is_file()]
        assert any(p.name == "evil.png" for p in written) and len(written) >= 10
        workdir = server.workdir
    assert not workdir.exists()
    assert list(cwd.iterdir()) == [] and list(home.iterdir()) == [] and list((tmp_path / "tmp").iterdir()) == []
    assert sorted(p.name for p in scene_files["guide"].parent.iterdir()) == inputs_before
    assert not (tmp_path / "evil.png").exists()


def test_cli_serve_answers_on_localhost_and_cleans_up(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "optisr", "serve", "--port", "0", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        match = re.match(r"optisr serve: (http://127\.0\.0\.1:\d+/) ", line)
        assert match, line
        with urllib.request.urlopen(match.group(1), timeout=10) as answer:
            assert answer.status == 200 and b'id="guided-run"' in answer.read()
        assert len(list(tmp_path.iterdir())) == 1  # its temporary folder
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stopped" in err
    assert list(tmp_path.iterdir()) == []


def test_cli_serve_rejects_a_bad_port(capsys):
    assert cli_main(["serve", "--port", "70000"]) == 1
    assert capsys.readouterr().err.strip() == "optisr serve: error: --port must be from 0 to 65535; got 70000"


def test_guided_exclude_outliers_reaches_the_solver_and_the_numbers(app, wait_job, tmp_path):
    """The checkbox (form field ``outliers=on``) is ``--exclude-outliers``; the consistency shown leaves them out."""
    from optisr.data.synthetic import make_scene
    from optisr.io.images import from_float, write_image

    scene = make_scene(96, 96, seed=4)
    lr = scene.depth_clean.astype(np.float64).reshape(24, 4, 24, 4).mean(axis=(1, 3))
    rng = np.random.default_rng(0)
    hit = np.zeros(lr.shape, bool)
    hit[2:-2, 2:-2] = rng.random((20, 20)) < 0.04
    lr[hit] += 0.3 * np.ptp(lr)
    files = {"guide": write_image(tmp_path / "rgb.png", from_float(scene.guide, np.uint8)), "source": tmp_path / "lr.npy"}
    np.save(files["source"], lr.astype(np.float32))
    client = app.test_client()
    on = run_guided(client, wait_job, files, scale=SCALE, method="color", outliers="on")
    off = run_guided(client, wait_job, files, scale=SCALE, method="color")
    assert on["status"] == off["status"] == "done", (on, off)
    assert on["results"][0]["numbers"]["outliers_left_out"] >= 3 and "outliers_left_out" not in off["results"][0]["numbers"]
    assert on["results"][0]["numbers"]["max_lr_error"] < 1e-2 * np.ptp(lr)  # exact on the pixels kept
    bad = post_files(client, "/api/guided", files, scale=SCALE, outliers="maybe")
    assert bad.status_code == 400 and "outliers" in bad.get_json()["error"]


def test_guided_guide_filter_choice_reaches_the_solver(app, wait_job, tmp_path):
    """The "Guide filter" choice (form field ``guide_filter``) is ``--guide-filter``: a dim guide is
    filtered by default (its σ̂ in the job's notes), not with ``off``; a bad value is a 400."""
    from optisr.data.synthetic import make_scene
    from optisr.degrade.low_light import DIM_INDOOR, degrade_guide
    from optisr.io.images import from_float, write_image

    scene = make_scene(96, 96, seed=4)
    dim = degrade_guide(scene.guide.astype(np.float32), np.random.default_rng(0), DIM_INDOOR)
    lr = scene.depth_clean.astype(np.float64).reshape(24, 4, 24, 4).mean(axis=(1, 3))
    files = {"guide": write_image(tmp_path / "dim.png", from_float(dim, np.uint8)), "source": tmp_path / "lr.npy"}
    np.save(files["source"], lr.astype(np.float32))
    client = app.test_client()
    auto = run_guided(client, wait_job, files, scale=SCALE, method="color")
    off = run_guided(client, wait_job, files, scale=SCALE, method="color", guide_filter="off")
    assert auto["status"] == off["status"] == "done", (auto, off)
    assert any("(filtered)" in n for n in auto.get("notes", [])), auto.get("notes")
    assert not any("(filtered)" in n for n in off.get("notes", [])), off.get("notes")
    bad = post_files(client, "/api/guided", files, scale=SCALE, guide_filter="maybe")
    assert bad.status_code == 400 and "guide filter" in bad.get_json()["error"]


def test_guided_nonlocal_choice_reaches_the_solver(app, wait_job, tmp_path):
    """The "Non-local term" choice (form field ``nonlocal``) is ``--nonlocal``: a noisy source solved
    softly with the learned graph at ×4 gets the term (named in the job's notes), not with ``off``."""
    from optisr.data.synthetic import make_scene
    from optisr.io.images import from_float, write_image

    scene = make_scene(128, 128, seed=11)
    depth = 255.0 * (scene.depth_clean - scene.depth_clean.min()) / np.ptp(scene.depth_clean)
    lr = depth.reshape(32, 4, 32, 4).mean(axis=(1, 3)) + np.random.default_rng(0).normal(0, 6, (32, 32))
    files = {"guide": write_image(tmp_path / "g.png", from_float(scene.guide, np.uint8)), "source": tmp_path / "lr.npy"}
    np.save(files["source"], lr.astype(np.float32))
    client = app.test_client()
    auto = run_guided(client, wait_job, files, scale=4, mode="auto")
    off = run_guided(client, wait_job, files, scale=4, mode="auto", **{"nonlocal": "off"})
    assert auto["status"] == off["status"] == "done", (auto, off)
    assert any("non-local κ" in n for n in auto.get("notes", [])), auto.get("notes")
    assert not any("non-local" in n for n in off.get("notes", [])), off.get("notes")
    bad = post_files(client, "/api/guided", files, scale=4, **{"nonlocal": "maybe"})
    assert bad.status_code == 400 and "non-local" in bad.get_json()["error"]


def test_guided_register_choice_reaches_the_solver(app, wait_job, tmp_path):
    """The "Registration" choice (form field ``register``) is ``--register``: a source off by (3, -3) px
    gets the guide moved onto it (named in the job's notes), not with ``off``; a bad value is a 400."""
    from optisr.data.synthetic import make_scene
    from optisr.guided.registration import shift_image
    from optisr.io.images import from_float, write_image

    scene = make_scene(192, 240, seed=7001)
    depth = shift_image(255.0 * (scene.depth_clean - scene.depth_clean.min()) / np.ptp(scene.depth_clean), (3, -3))
    lr = depth.reshape(48, 4, 60, 4).mean(axis=(1, 3))
    files = {"guide": write_image(tmp_path / "g.png", from_float(scene.guide, np.uint8)), "source": tmp_path / "lr.npy"}
    np.save(files["source"], lr.astype(np.float32))
    client = app.test_client()
    auto = run_guided(client, wait_job, files, scale=4, mode="auto")
    off = run_guided(client, wait_job, files, scale=4, mode="auto", register="off")
    assert auto["status"] == off["status"] == "done", (auto, off)
    assert any("guide moved" in n for n in auto.get("notes", [])), auto.get("notes")
    assert not any("guide moved" in n for n in off.get("notes", [])), off.get("notes")
    bad = post_files(client, "/api/guided", files, scale=4, register="maybe")
    assert bad.status_code == 400 and "registration" in bad.get_json()["error"]
