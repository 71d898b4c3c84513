"""Model choice from the degradation estimate, the pre-filters, and ``optisr upscale`` without ``-n``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optisr.blind import api, choice, prefilter
from optisr.blind.choice import RULES, Rule, choose_model, degradation_class
from optisr.cli import main as cli_main
from optisr.degrade.estimate import Degradation, blockiness
from optisr.errors import ConfigError
from optisr.io.images import write_image


def _d(q: float | None = None, block: float = 1.03, sigma: float = 0.5) -> Degradation:
    return Degradation(jpeg_quality=q, blockiness=block, noise_sigma=sigma, sharpness=0.5, source="test")


class BicubicX4(nn.Module):
    """A stand-in generator: bicubic ×4, so what reaches the output is what the pre-filter left."""

    scale = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)


def _blocky(size: int = 96, seed: int = 0) -> np.ndarray:
    """(size, size, 3) uint8: a smooth ramp with a random DC step on every 8×8 block."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(70, 170, size)[None, :] + np.linspace(0, 30, size)[:, None]
    steps = np.kron(rng.uniform(-8, 8, (size // 8, size // 8)), np.ones((8, 8)))
    return np.repeat(np.clip(np.round(ramp + steps), 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


@pytest.mark.parametrize(
    ("deg", "cls"),
    [
        (_d(q=35), "blocky"),  # low quality from the file's tables
        (_d(q=90, block=1.3), "blocky"),  # tables say high quality, pixels show blocks (recompressed)
        (_d(block=1.2), "blocky"),
        (_d(q=90, sigma=6), "noisy"),
        (_d(sigma=3.0), "noisy"),
        (_d(q=75), "clean"),
        (_d(sigma=2.9, block=1.09), "clean"),
    ],
)
def test_degradation_class(deg, cls):
    assert degradation_class(deg) == cls


@pytest.mark.parametrize(
    ("deg", "installed", "model", "filt"),
    [
        (_d(q=30), {"realsr-df2k-x4", "realesrgan-x4plus"}, "realesrgan-x4plus", "none"),
        (_d(q=30), {"realsr-df2k-x4"}, "realsr-df2k-x4", "deblock"),
        (_d(sigma=8), {"realsr-df2k-x4", "realesrgan-x4plus"}, "realesrgan-x4plus", "none"),
        (_d(sigma=8), {"realsr-df2k-x4"}, "realsr-df2k-x4", "denoise"),
        (_d(), {"realsr-df2k-x4", "realesrgan-x4plus"}, "realsr-df2k-x4", "none"),
        (_d(), {"realesrgan-x4plus"}, "realesrgan-x4plus", "none"),
        (_d(), set(), "realsr-df2k-x4", "none"),  # nothing installed: the default (its load names the package)
    ],
)
def test_choose_model_table(deg, installed, model, filt):
    got = choose_model(deg, installed=lambda name: name in installed)
    assert (got.model, got.prefilter) == (model, filt)


def test_a_new_model_is_one_rule():
    rules = (Rule("degraded", "otsr-compact-x4"), *RULES)
    pick = choose_model(_d(q=30), rules=rules, installed=lambda name: True)
    assert pick.model == "otsr-compact-x4"
    assert choose_model(_d(), rules=rules, installed=lambda name: True).model == "realsr-df2k-x4"


def test_describe_line():
    pick = choose_model(_d(sigma=5.2), installed=lambda name: name == "realsr-df2k-x4")
    assert pick.describe().endswith("noise σ≈5.2, sharpness 0.50 -> realsr-df2k-x4 with denoising pre-filter")


def test_deblock_prefilter_reduces_output_blockiness():
    img = _blocky()
    assert blockiness(img) > 1.3
    plain = api.upscale(img, BicubicX4(), device="cpu")
    filtered = api.upscale(img, BicubicX4(), device="cpu", prefilter="deblock")
    assert blockiness(filtered, 32) < blockiness(plain, 32) - 0.1


def test_prefilters_keep_shape_dtype_and_alpha():
    rgba = np.concatenate([_blocky(48), np.full((48, 48, 1), 200, np.uint8)], axis=2).astype(np.uint16) * 257
    for kind in ("deblock", "denoise"):
        out = prefilter.apply_prefilter(rgba, kind, noise=5.0)
        assert out.shape == rgba.shape and out.dtype == np.uint16
        assert np.array_equal(out[:, :, 3], rgba[:, :, 3])
    grey = prefilter.apply_prefilter(_blocky(48)[:, :, 0].astype(np.float32) / 255, "denoise", noise=5.0)
    assert grey.shape == (48, 48) and grey.dtype == np.float32


def test_denoise_prefilter_removes_noise():
    rng = np.random.default_rng(3)
    flat = np.clip(np.round(120 + rng.normal(0, 8, (64, 64, 3))), 0, 255).astype(np.uint8)
    out = prefilter.denoise(flat)
    assert out.astype(float).std() < 0.5 * flat.astype(float).std()


def test_api_rejects_bad_prefilter_and_tensor_auto():
    with pytest.raises(ConfigError, match="prefilter"):
        api.upscale(np.zeros((8, 8, 3), np.uint8), BicubicX4(), device="cpu", prefilter="sharpen")
    with pytest.raises(ConfigError, match="numpy"):
        api.upscale(torch.zeros(3, 8, 8), "auto", device="cpu")


@pytest.fixture
def fake_models(monkeypatch):
    """Only realsr-df2k-x4 'installed'; every model load gives the bicubic stand-in and is recorded."""
    loaded: list[str] = []

    def get_model(model, *, device="cpu", dtype=torch.float32):
        loaded.append(model if isinstance(model, str) else type(model).__name__)
        return BicubicX4(), 4

    monkeypatch.setattr(api, "get_model", get_model)
    monkeypatch.setattr(choice, "model_installed", lambda name: name == "realsr-df2k-x4")
    monkeypatch.setattr(cli_main, "SUBCOMMANDS", {"upscale": "optisr.cli.upscale"})
    return loaded


def test_cli_prints_estimate_and_choice_per_input(tmp_path, fake_models, capsys, monkeypatch):
    calls: list[str] = []
    real = prefilter.apply_prefilter
    monkeypatch.setattr(prefilter, "apply_prefilter", lambda im, kind, **kw: calls.append(kind) or real(im, kind, **kw))
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    ramp = np.repeat(np.linspace(60, 190, 64)[None, :, None], 64, axis=0).repeat(3, axis=2)
    write_image(folder / "clean.png", np.round(ramp).astype(np.uint8))
    write_image(folder / "noisy.png", np.clip(np.round(ramp + rng.normal(0, 10, ramp.shape)), 0, 255).astype(np.uint8))
    ok, buf = cv2.imencode(".jpg", _blocky(64), [cv2.IMWRITE_JPEG_QUALITY, 25])
    (folder / "low.jpg").write_bytes(buf.tobytes())
    assert cli_main.main(["upscale", "-i", str(folder), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    lines = {ln.split(":")[0]: ln for ln in capsys.readouterr().err.splitlines() if "->" in ln}
    assert lines["clean.png"].endswith("-> realsr-df2k-x4")
    assert "noise σ≈" in lines["noisy.png"] and lines["noisy.png"].endswith("with denoising pre-filter")
    assert "JPEG q≈25" in lines["low.jpg"] and lines["low.jpg"].endswith("with deblocking pre-filter")
    assert sorted(calls) == ["deblock", "denoise"]


def test_cli_model_name_forces_model_without_prefilter(tmp_path, fake_models, capsys, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(prefilter, "apply_prefilter", lambda im, kind, **kw: calls.append(kind) or im)
    rng = np.random.default_rng(1)
    src = write_image(
        tmp_path / "noisy.png", np.clip(np.round(128 + rng.normal(0, 10, (32, 32, 3))), 0, 255).astype(np.uint8)
    )
    argv = ["upscale", "-i", str(src), "-o", str(tmp_path / "o.png"), "-n", "realesrgan-x4plus"]
    assert cli_main.main(argv) == 0
    assert "realesrgan-x4plus" in fake_models and "->" not in capsys.readouterr().err and calls == []
    assert cli_main.main([*argv[:4], str(tmp_path / "p.png"), *argv[5:], "--prefilter", "denoise"]) == 0
    assert calls == ["denoise"]
