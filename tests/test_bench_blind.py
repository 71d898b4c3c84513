"""``optisr bench blind``: dataset layouts, MATLAB bicubic, report/crops, errors, shared Set5."""

from __future__ import annotations

import numpy as np
import pytest

from optisr.bench import blind
from optisr.errors import ConfigError, InputFileError
from optisr.io.images import read_image, write_image
from tests.conftest import bench_blind_cli, shared_data_dir


def _cli(argv: list[str]) -> int:
    return bench_blind_cli(argv)


def _smooth_rgb(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    chans = [
        np.sin(2 * np.pi * (rng.uniform(1, 3) * xx + rng.uniform(1, 3) * yy) + rng.uniform(0, 6)) for _ in range(3)
    ]
    img = 0.5 + 0.4 * np.stack(chans, -1) + 0.03 * rng.standard_normal((h, w, 3))
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def tiny_set5(tmp_path):
    """Set5-like layout: HR/ (sizes not multiples of 4, one grey) + LR_bicubic/X4 for one image."""
    root = tmp_path / "sr_set5"
    write_image(root / "HR" / "aaa.png", _smooth_rgb(50, 43, 0))
    write_image(root / "HR" / "bbb.png", _smooth_rgb(40, 48, 1)[:, :, 1])  # grey
    write_image(root / "HR" / "ccc.png", _smooth_rgb(44, 36, 2))
    hr_b = np.repeat(_smooth_rgb(40, 48, 1)[:, :, 1:2], 3, 2)
    write_image(root / "LR_bicubic" / "X4" / "bbbx4.png", blind.imresize_matlab(hr_b, 0.25))
    return root


def test_imresize_matlab_sizes_constants_and_roundtrip():
    const = np.full((12, 9, 3), 77, np.uint8)
    assert blind.imresize_matlab(const, 0.25).shape == (3, 3, 3)
    assert (blind.imresize_matlab(const, 0.25) == 77).all()
    assert (blind.imresize_matlab(const, 4.0) == 77).all()
    ramp = np.tile(np.linspace(0, 1, 32), (16, 1))
    up = blind.imresize_matlab(ramp, 2.0)
    assert up.shape == (32, 64) and up.dtype == np.float32
    assert np.allclose(
        up[:, 8:-8],
        np.tile(np.interp(np.arange(64) / 2 - 0.25, np.arange(32), np.linspace(0, 1, 32)), (32, 1))[:, 8:-8],
    )


def test_load_dataset_modcrop_grey_and_lr_sources(tiny_set5):
    samples, root = blind.load_dataset("set5", tiny_set5.parent, scale=4)  # data root is resolved
    assert root == tiny_set5
    by = {s.name: s for s in samples}
    assert by["aaa"].hr.shape == (48, 40, 3) and by["aaa"].lr.shape == (12, 10, 3)
    assert by["bbb"].hr.shape == (40, 48, 3)  # grey → RGB
    assert "shipped standard" in by["bbb"].lr_source
    assert "MATLAB-style bicubic" in by["aaa"].lr_source
    matlab, _ = blind.load_dataset("set5", tiny_set5, lr_mode="matlab", limit=2)
    assert len(matlab) == 2 and all("made here" in s.lr_source for s in matlab)
    with pytest.raises(InputFileError, match="no shipped"):
        blind.load_dataset("set5", tiny_set5, lr_mode="shipped")


def test_selfexsr_naming(tmp_path):
    root = tmp_path / "sr_set14"
    for i, name in enumerate(("zeta", "alpha")):
        write_image(root / "HR" / f"{name}.png", _smooth_rgb(32, 28, i))
    # index follows the alphabetical HR order: alpha = img_001, zeta = img_002
    write_image(root / "LR_selfexsr" / "x4" / "img_001_SRF_4_LR.png", np.zeros((8, 7, 3), np.uint8))
    write_image(root / "LR_selfexsr" / "x4" / "img_002_SRF_4_LR.png", np.full((8, 7, 3), 9, np.uint8))
    shipped, _ = blind.load_dataset("set14", root, lr_mode="shipped")
    assert [s.name for s in shipped] == ["alpha", "zeta"]
    assert shipped[0].lr.max() == 0 and shipped[1].lr.min() == 9
    auto, _ = blind.load_dataset("set14", root)  # auto ignores the non-standard SelfExSR LR
    assert all("made here" in s.lr_source for s in auto)


def test_cli_bicubic_and_tiny_model_writes_report(tiny_set5, tmp_path, capsys):
    from optisr.blind.archs import RRDBNet
    from optisr.io.state_dict import save_model_safetensors

    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=4)
    weights = save_model_safetensors(net, tmp_path / "tiny_rrdb.safetensors")
    out = tmp_path / "out"
    rc = _cli(
        [
            "--dataset",
            "set5",
            "--data-dir",
            str(tiny_set5),
            "--models",
            "bicubic",
            str(weights),
            "--out-dir",
            str(out),
            "--crops",
            "2",
            "--crop-size",
            "16",
            "--quiet",
            "--tile",
            "8",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| bicubic (MATLAB) |" in printed and "| tiny_rrdb |" in printed
    md = (out / "blind_set5.md").read_text()
    for text in (
        "PSNR-Y",
        "SSIM-Y",
        "PSNR-RGB",
        "NIQE (MATLAB)",
        "shipped standard",
        "made here",
        "--models bicubic",
        "| aaa |",
    ):
        assert text in md
    rows = (out / "blind_set5.csv").read_text().splitlines()
    assert blind.niqe_unavailable() == ""  # the pristine model ships with the package
    assert rows[0].startswith("image,method,psnr_y") and len(rows) == 1 + 2 * 3 + 3  # + an HR NIQE row per image
    crops = sorted((out / "blind_set5_crops").glob("*.png"))
    assert [p.stem for p in crops] == ["aaa", "bbb"]
    panel = read_image(crops[0])
    assert panel.ndim == 3 and panel.shape[1] > 3 * panel.shape[0]  # LR | 2 methods | HR
    assert not list(out.rglob(".*tmp*"))  # atomic writes leave no temporaries


def test_benchmark_accepts_model_objects_and_scores(tiny_set5, tmp_path):
    from optisr.blind.archs import RRDBNet

    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=4)
    res = blind.benchmark(
        "set5", tiny_set5, ["bicubic", net], out_dir=tmp_path, crops=0, niqe=False, progress=False, device="cpu"
    )
    assert res.methods == ["bicubic", "RRDBNet"]
    bic = res.means["bicubic"]
    assert 20 < bic["psnr_y"] < 60 and 0.5 < bic["ssim_y"] <= 1 and "niqe" not in bic
    # a random-weight net is far worse than bicubic
    assert res.means["RRDBNet"]["psnr_y"] < bic["psnr_y"]


def test_no_gt_set_scores_niqe(tmp_path):
    root = tmp_path / "real"
    write_image(root / "photo.png", _smooth_rgb(52, 50, 3))
    write_image(root / "tiny.jpg", _smooth_rgb(20, 20, 4))
    res = blind.benchmark("realsrset", root, ["bicubic"], out_dir=tmp_path / "o", crops=1, crop_size=32, progress=False)
    assert set(res.rows["photo"]["bicubic"]) == {"niqe", "seconds"}
    assert np.isfinite(res.rows["photo"]["bicubic"]["niqe"])
    assert np.isnan(res.rows["tiny"]["bicubic"]["niqe"])  # 80×80 output: too small for NIQE
    md = (tmp_path / "o" / "blind_realsrset.md").read_text()
    assert "NIQE" in md and "PSNR-Y" not in md.split("## How")[0]


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["--dataset", "set6", "--data-dir", "{d}"], "unknown dataset 'set6'"),
        (["--dataset", "set5", "--data-dir", "{d}/missing"], "data directory not found"),
        (["--dataset", "set5", "--data-dir", "{d}/empty"], "no Set5 data here"),
        (["--dataset", "set5", "--data-dir", "{d}/sr_set5", "--models", "no-such-model"], "unknown model"),
        (["--dataset", "set5", "--data-dir", "{d}/sr_set5", "--limit", "0"], "--limit must be >= 1"),
    ],
)
def test_bad_input_is_one_line_exit_1(tiny_set5, argv, pattern, capsys):
    (tiny_set5.parent / "empty").mkdir()
    d = str(tiny_set5.parent)
    rc = _cli([a.format(d=d) for a in argv] + ["--quiet", "--out-dir", f"{d}/o"])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert len(err.splitlines()) == 1 and pattern in err and "Traceback" not in err


def test_errors_are_typed(tiny_set5):
    with pytest.raises(ConfigError):
        blind.load_dataset("set5", tiny_set5, lr_mode="nearest")
    with pytest.raises(InputFileError):
        blind.load_dataset("urban100", tiny_set5 / "nope")


def test_shared_set5_bicubic(tmp_path, capsys):
    root = shared_data_dir() / "sr_set5"
    if not (root / "HR").is_dir():
        pytest.skip(f"shared data not found at {root} (set OPTISR_DATA_DIR)")
    rc = _cli(
        [
            "--dataset",
            "set5",
            "--data-dir",
            str(root),
            "--models",
            "bicubic",
            "--limit",
            "2",
            "--out-dir",
            str(tmp_path),
            "--crops",
            "1",
            "--quiet",
        ]
    )
    assert rc == 0
    res = (tmp_path / "blind_set5.csv").read_text().splitlines()
    vals = {r.split(",")[0]: r.split(",") for r in res[1:] if r.split(",")[1] == "bicubic"}
    assert set(vals) == {"baby", "bird"}
    # MATLAB bicubic ×4 on the standard LR: baby ≈ 31.78 dB, bird ≈ 30.18 dB (Y, border 4)
    assert float(vals["baby"][2]) == pytest.approx(31.78, abs=0.05)
    assert float(vals["bird"][2]) == pytest.approx(30.18, abs=0.05)
    assert "shipped standard" in (tmp_path / "blind_set5.md").read_text()
