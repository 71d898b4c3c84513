"""``optisr bench guided`` on real LR depth: the RGB-D-D real-scene triplets (``rgbdd-real``).

A tiny fake real-scene folder (48×64 HR, 18×24 LR: the real set's 8/3 ratio) runs the protocol end to
end; the LR resampling is checked against Pillow; the shared copy of the 3 real scenes is loaded
when ../shared/data is present.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from md_tables import md_tables  # tests/ is on sys.path (pytest rootdir-relative import)
from optisr.bench import guided_protocols as protocols
from optisr.cli.main import main as optisr_main
from optisr.data import get_dataset


def _bench_guided(argv: list[str]) -> int:
    """``optisr bench guided ARGV`` through the optisr command (its one-line errors, exit codes)."""
    return optisr_main(["bench", "guided", *argv])


REPO = Path(__file__).resolve().parents[1]
H, W, h0, w0 = 48, 64, 18, 24  # HR and real-LR sizes of the fake set (ratio 8/3, as 384×512 / 144×192)
KEYS = ("20200101000001", "20200101000002", "20200101000003")


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _shared_data() -> Path:
    env = os.environ.get("OPTISR_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


def _pil_resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow BICUBIC of a float32 ('F' mode) image to size = (rows, cols)."""
    return np.asarray(Image.fromarray(x.astype(np.float32), mode="F").resize(size[::-1], Image.BICUBIC), np.float64)


def _scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 BGR guide and (H, W) float64 depth in mm that steps at the colour edge."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    edge = xx > (W // 3 + (yy * 0.4).astype(int) + seed)
    rgb = np.where(edge[..., None], [230, 80, 50], [25, 100, 200]).astype(np.float64)
    bgr = np.clip(rgb[..., ::-1] + rng.normal(0, 2, rgb.shape), 0, 255).astype(np.uint8)
    depth = 1000.0 + 800.0 * edge + 4.0 * yy + rng.normal(0, 2.0, (H, W))
    return bgr, depth


def _realscene_folder(root: Path) -> Path:
    """RGB/, Depth/ (uint16 mm, a few 0 = invalid pixels) and DepthLR/ (a smoothed, offset LR)."""
    for sub in ("RGB", "Depth", "DepthLR"):
        (root / sub).mkdir(parents=True)
    for i, key in enumerate(KEYS):
        bgr, depth = _scene(i)
        assert cv2.imwrite(str(root / "RGB" / f"{key}_RGB.jpg"), bgr)
        gt = np.round(depth).astype(np.uint16)
        gt[5:7, 9:12] = 0  # invalid ground truth
        assert cv2.imwrite(str(root / "Depth" / f"{key}_HR_gt.png"), gt)
        lr = _pil_resize(depth.astype(np.float32), (h0, w0)) + 15.0  # a sensor with a bias, not a GT downsample
        assert cv2.imwrite(str(root / "DepthLR" / f"{key}_LR_fill_depth.png"), np.round(lr).astype(np.uint16))
    return root




def _rmse_cm(pred: np.ndarray, gt: np.ndarray) -> float:
    valid = gt > 0
    return 0.1 * float(np.sqrt(np.mean((pred[valid] - gt[valid].astype(np.float64)) ** 2)))


# ------------------------------------------------------------------------------------- resampling


def test_resampling_is_pil_bicubic():
    rng = np.random.default_rng(0)
    lr = (1500 + 300 * rng.random((h0, w0))).astype(np.float32)
    for size in ((H // 4, W // 4), (H, W)):  # real LR -> the x4 grid (down by 1.5), and raw LR -> HR (up)
        out, ok = protocols.resample_bicubic(lr, None, size)
        assert out.shape == size and out.dtype == np.float32 and ok.all()
        np.testing.assert_allclose(out, _pil_resize(lr, size), rtol=0, atol=1e-3)  # float32 rounding only


def test_resampling_ignores_invalid_pixels():
    lr = np.full((h0, w0), 1200.0, np.float32)
    valid = np.ones((h0, w0), bool)
    lr[4:6, 4:6], valid[4:6, 4:6] = 9999.0, False  # bad values behind the mask must not leak
    lr[10, 10] = np.nan
    out, ok = protocols.resample_bicubic(lr, valid, (H // 4, W // 4))
    # Only the output pixel centred in the 2x2 hole loses its support (the valid taps left are the
    # kernel's negative lobes): it is marked invalid, like the NaN-aware operators do.
    assert np.argwhere(~ok).tolist() == [[3, 3]] and out[3, 3] == 0
    np.testing.assert_allclose(out[ok], 1200.0, rtol=0, atol=1e-3)


# --------------------------------------------------------------------------------------- protocol


def test_realscene_end_to_end(tmp_path, capsys):
    data = _realscene_folder(tmp_path / "data")
    out = tmp_path / "out"
    methods = ["bicubic", "bicubic-raw", "color", "guided-filter", "jbu"]
    rc = _bench_guided(
        ["--dataset", "rgbdd_real", "--data-dir", str(data), "--methods", *methods, "--out-dir", str(out),
         "--figures", "1", "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    report = out / "rgbdd-real_protocolA.md"  # real LR is this dataset's default: no suffix
    text = report.read_text()
    assert str(report) in capsys.readouterr().out
    assert "3 of 3 images" in text and "×4: 3" in text  # default scale with real LR: 4 only
    assert "resampled onto the ×s grid" in text
    assert "exact consistency with it does not imply a low error" in text
    assert "DCTNet" in text and "7.37 cm" in text and "not comparable: 3 of 405 scenes" in text
    assert "ignores it" not in text
    tables = md_tables(text)
    rmse = {m: float(v[0]) for m, v in tables["RMSE (cm), full image ↓"].items()}
    cons = {m: float(v[0]) for m, v in tables["LR consistency RMSE (cm) ↓"].items()}
    per_image = tables["RMSE (cm) per image, ×4 ↓"]
    assert list(rmse) == methods and list(per_image) == [*KEYS, "**mean**"]
    assert [float(c) for c in per_image["**mean**"]] == [rmse[m] for m in methods]
    assert cons["color"] < 1e-3 < cons["bicubic"]  # consistent with the resampled LR, to solver precision
    assert [p.name for p in (out / "figures").glob("*.png")] == [f"rgbdd-real_protocolA_{KEYS[0]}_x4.png"]

    # Independent recomputation with Pillow: resample, then x4 bicubic / direct bicubic from the raw LR.
    want_x4, want_raw = [], []
    for key in KEYS:
        gt = cv2.imread(str(data / "Depth" / f"{key}_HR_gt.png"), cv2.IMREAD_UNCHANGED)
        raw = cv2.imread(str(data / "DepthLR" / f"{key}_LR_fill_depth.png"), cv2.IMREAD_UNCHANGED).astype(np.float32)
        x4 = _pil_resize(raw, (H // 4, W // 4)).astype(np.float32)
        want_x4.append(_rmse_cm(_pil_resize(x4, (H, W)), gt))
        want_raw.append(_rmse_cm(_pil_resize(raw, (H, W)), gt))
        assert float(per_image[key][methods.index("bicubic-raw")]) == pytest.approx(want_raw[-1], abs=0.006)
    assert rmse["bicubic"] == pytest.approx(np.mean(want_x4), abs=0.006)  # the table rounds to 0.01
    assert rmse["bicubic-raw"] == pytest.approx(np.mean(want_raw), abs=0.006)


def test_real_grid_native_and_scale(tmp_path, capsys):
    """Graph methods solve the sensor's LR on its own grid by default; --real-grid scale resamples it first."""
    import optisr

    data = _realscene_folder(tmp_path / "data")
    rmse = {}
    for grid in ("native", "scale"):
        out = tmp_path / grid
        argv = ["--dataset", "rgbdd_real", "--data-dir", str(data), "--methods", "bicubic", "color", "--out-dir", str(out),
                "--figures", "0", "--no-progress"]  # fmt: skip
        assert _bench_guided([*argv, *([] if grid == "native" else ["--real-grid", "scale"])]) == 0
        report = out / ("rgbdd-real_protocolA.md" if grid == "native" else "rgbdd-real_protocolA_scalegrid.md")
        text = report.read_text()
        assert ("sensor's LR on its own grid" in text) == (grid == "native")
        tables = md_tables(text)
        rmse[grid] = {m: float(v[0]) for m, v in tables["RMSE (cm), full image ↓"].items()}
        cons = {m: float(v[0]) for m, v in tables["LR consistency RMSE (cm) ↓"].items()}
        assert cons["color"] < 1e-3  # exactly consistent with the LR it solved against
    assert rmse["native"]["bicubic"] == rmse["scale"]["bicubic"]  # baselines: the resampled grid either way
    assert rmse["native"]["color"] != rmse["scale"]["color"]
    # the native column is guided_upsample at the sizes' ratio on the raw LR
    key = KEYS[0]
    raw = cv2.imread(str(data / "DepthLR" / f"{key}_LR_fill_depth.png"), cv2.IMREAD_UNCHANGED).astype(np.float32)
    rgb = cv2.imread(str(data / "RGB" / f"{key}_RGB.jpg"))[..., ::-1].astype(np.float32) / 255.0
    gt = cv2.imread(str(data / "Depth" / f"{key}_HR_gt.png"), cv2.IMREAD_UNCHANGED)
    bad = ["--dataset", "rgbdd_real", "--data-dir", str(data), "--lr", "synthetic", "--real-grid", "scale",
           "--out-dir", str(tmp_path / "bad"), "--no-progress"]  # fmt: skip
    capsys.readouterr()
    assert _bench_guided(bad) == 1  # --real-grid is about real LR input
    assert "--real-grid applies to real LR input" in capsys.readouterr().err
    x = optisr.guided_upsample(raw, rgb, None, operator="bicubic", weights="color", fidelity="exact")
    assert _rmse_cm(x, gt) == pytest.approx(float(md_tables((tmp_path / "native" / "rgbdd-real_protocolA.md").read_text())["RMSE (cm) per image, ×4 ↓"][key][1]), abs=0.006)


def test_synthetic_override_is_labelled(tmp_path):
    data = _realscene_folder(tmp_path / "data")
    rc = _bench_guided(
        ["--dataset", "rgbdd-real", "--data-dir", str(data), "--lr", "synthetic", "--scales", "4", "--methods",
         "bicubic", "--out-dir", str(tmp_path / "o"), "--figures", "0", "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    text = (tmp_path / "o" / "rgbdd-real_synthlr_protocolA.md").read_text()
    assert "--lr synthetic" in text and "ignores it and synthesises the LR input" in text


def _remove_lr_folder(root: Path) -> None:
    for f in (root / "DepthLR").iterdir():
        f.unlink()
    (root / "DepthLR").rmdir()


def _remove_one_lr(root: Path) -> None:
    (root / "DepthLR" / f"{KEYS[1]}_LR_fill_depth.png").unlink()


def _wrong_aspect_lr(root: Path) -> None:
    path = root / "DepthLR" / f"{KEYS[0]}_LR_fill_depth.png"
    assert cv2.imwrite(str(path), np.full((h0, w0 + 2), 1000, np.uint16))


@pytest.mark.parametrize(
    ("damage", "extra", "fragment"),
    [
        (_remove_lr_folder, [], "DepthLR: rgbdd-real data folder does not exist"),
        (_remove_one_lr, [], f"no {KEYS[1]}_LR_fill_depth.png"),
        (_wrong_aspect_lr, [], "different aspect ratios"),
        (None, ["--scales", "5"], "not a multiple of x5"),
        (None, ["--protocol", "B", "--tile", "16"], "protocol A only"),
        (None, ["--lr", "synthetic"], "'bicubic-raw' needs real LR input"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, capsys, damage, extra, fragment):
    data = _realscene_folder(tmp_path / "data")
    if damage is not None:
        damage(data)
    argv = ["--dataset", "rgbdd-real", "--data-dir", str(data), "--methods", "bicubic", "bicubic-raw",
            "--out-dir", str(tmp_path / "o"), "--no-progress", *extra]  # fmt: skip
    rc = _bench_guided(argv)
    err = capsys.readouterr().err
    assert rc == 1
    assert len(err.strip().splitlines()) == 1 and err.startswith("optisr bench: error:")
    assert fragment in err
    assert not (tmp_path / "o").exists()


def test_real_lr_needs_a_dataset_with_lr(tmp_path, capsys):
    (tmp_path / "guide").mkdir()
    (tmp_path / "depth").mkdir()
    bgr, depth = _scene(0)
    assert cv2.imwrite(str(tmp_path / "guide" / "a.png"), bgr)
    assert cv2.imwrite(str(tmp_path / "depth" / "a.png"), np.round(depth).astype(np.uint16))
    rc = _bench_guided(
        ["--dataset", "folder", "--data-dir", str(tmp_path), "--lr", "real", "--methods", "bicubic",
         "--out-dir", str(tmp_path / "o"), "--no-progress"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "a: the sample has no LR depth file" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------- shared data


@pytest.mark.data
def test_shared_realscene3_loads():
    root = _shared_data() / "depth_rgbdd_realscene3"
    if not root.is_dir():
        pytest.skip(f"{root} not available")
    ds = get_dataset("rgbdd-real", root)
    assert len(ds) == 3 and ds.real_lr and ds.report_scale == 0.1
    for sample in ds:
        assert sample.depth.shape == (384, 512) and sample.guide.shape == (384, 512, 3)
        assert sample.lr_depth.shape == (144, 192) and sample.lr_mask.all()  # hole-filled
        assert 100 < np.nanmedian(sample.depth) < 4000 and 100 < np.nanmedian(sample.lr_depth) < 4000  # mm
        (case,), covered = protocols.scored_regions(sample, 4, "A", 256, real=True)
        assert covered == (384, 512) and case.lr.shape == (96, 128) and case.lr_valid.all()
