"""Isolated spikes of the source (optisr.guided.fidelity.find_outliers) and ``exclude_outliers``:
which pixels count as spikes (hand-built cases), the guide test, the population rule, the scale
limit, the API (``FidelityChoice.outliers``, off by default) and the CLI's ``--exclude-outliers``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import optisr
from optisr.cli.main import main as optisr_main
from optisr.data.synthetic import make_scene
from optisr.errors import ConfigError
from optisr.guided.fidelity import OUTLIER_MAX_SCALE, find_outliers
from optisr.io.rasters import write_raster
from optisr.ops.operators import make_operator


def _hand_built() -> np.ndarray:
    """A 24×24 source on 0–100: a ramp, a step edge, an L-shaped block, a line one pixel wide, two
    single spikes and one pair of spikes."""
    x = np.mgrid[0:24, 0:24][1].astype(float)
    s = 10 + 0.5 * x  # a slope
    s[:, 18:] += 40  # a step edge
    s[2:6, 2:6] += 30  # a block: its corners have 3 equal neighbours
    s[10:22, 8] += 35  # a vertical line one pixel wide
    s[4, 14] += 50
    s[15, 3] -= 45
    s[20, 13:15] += 40
    return s


def test_spikes_and_pairs_are_found_and_edges_corners_lines_are_not() -> None:
    s = _hand_built()
    spikes = find_outliers(s, min_share=0.0)
    assert spikes is not None
    expected = np.zeros_like(spikes)
    expected[4, 14] = expected[15, 3] = expected[20, 13] = expected[20, 14] = True
    tips = (10, 8), (21, 8)  # a line's two end pixels have one equal neighbour, as one of a pair has
    for t in tips:
        expected[t] = True
    assert np.array_equal(spikes, expected)  # nothing on the slope, the step, the block's corners, the line's body
    guide = np.full((3, 24, 24), 0.5)
    guide[:, 10:22, 8] = 0.2  # a guide that shows the line keeps its tips
    with_guide = find_outliers(s, guide_lr=guide, min_share=0.0)
    assert not any(with_guide[t] for t in tips) and int(with_guide.sum()) == 4
    assert find_outliers(s, min_share=0.011) is None  # 6 of 576 pixels (1.04 %): below that share, none
    assert find_outliers(s, min_share=0.010) is not None and find_outliers(s) is not None  # default: 0.4 %
    two = 50.0 + np.mgrid[0:24, 0:24][1]  # a slope (a constant source has no spread to measure against)
    two[5, 5] = two[15, 15] = 90.0
    assert find_outliers(two, min_share=0.0) is None  # fewer than 3 spikes are never reported
    two[10, 20] = 10.0
    assert int(find_outliers(two, min_share=0.0).sum()) == 3
    assert find_outliers(np.where(expected, np.nan, s), min_share=0.0) is None  # invalid pixels are never spikes
    mask = np.ones_like(expected)
    mask[4, 14] = False
    assert int(find_outliers(s, mask, min_share=0.0).sum()) == 5  # masked ones neither (6 - 1)


def test_gaussian_noise_alone_has_no_spikes_and_the_guide_keeps_objects() -> None:
    rng = np.random.default_rng(0)
    noisy = 100 + rng.normal(0.0, 3.0, (128, 128))
    assert find_outliers(noisy, min_share=0.0) is None  # 5·√2·σ̂: ~3e-7 of Gaussian pixels pass
    s = _hand_built()
    guide = np.full((3, 24, 24), 0.5)
    guide[:, 4, 14] = 0.8  # the guide shows an object where the first spike is
    spikes = find_outliers(s, guide_lr=guide, min_share=0.0)
    assert spikes is not None and not spikes[4, 14] and spikes[15, 3] and int(spikes.sum()) == 5  # 3 + the tips
    torch_spikes = find_outliers(torch.from_numpy(s)[None, None], guide_lr=torch.from_numpy(guide)[None], min_share=0.0)
    assert torch_spikes.shape == (1, 1, 24, 24) and np.array_equal(torch_spikes[0, 0], spikes)


@pytest.fixture(scope="module")
def spiky() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    sc = make_scene(192, 256, seed=3)
    guide = np.round(sc.guide * 255).astype(np.uint8)
    d = sc.depth_clean.astype(np.float64)
    d = (d - d.min()) / np.ptp(d) * 255.0
    s = make_operator("area", d.shape, 4).apply(torch.from_numpy(d)).numpy()
    rng = np.random.default_rng(3)
    hit = rng.random(s.shape) < 0.01
    noisy = s.copy()
    noisy[hit] += rng.choice([-1.0, 1.0], int(hit.sum())) * rng.uniform(25.0, 100.0, int(hit.sum()))
    return guide, d, s, noisy


def _rmse(x: np.ndarray, d: np.ndarray) -> float:
    return float(np.sqrt(np.mean((x - d) ** 2)))


def test_excluded_spikes_leave_the_data_term_and_the_rest_stays_exact(spiky) -> None:
    guide, d, clean, noisy = spiky
    x, info = optisr.guided_upsample(noisy, guide, 4, return_info=True, exclude_outliers=True)
    kept, kept_info = optisr.guided_upsample(noisy, guide, 4, return_info=True)  # the default keeps them
    assert kept_info.outliers == 0 and info.outliers >= 0.4e-2 * noisy.size
    assert info.fidelity == "exact"  # the rest is clean
    assert _rmse(x, d) < 0.6 * _rmse(kept, d)
    reference = optisr.guided_upsample(clean, guide, 4)
    assert _rmse(x, d) < 2.0 * _rmse(reference, d)  # spikes a textured guide explains are kept
    spikes = find_outliers(noisy, guide_lr=make_operator("area", d.shape, 4).apply(
        torch.from_numpy(guide.transpose(2, 0, 1).astype(np.float64) / 255.0)).numpy())  # fmt: skip
    lr = make_operator("area", d.shape, 4).apply(torch.from_numpy(x.astype(np.float64))).numpy()
    assert np.abs(lr - noisy)[~spikes].max() < 1e-3 * 255  # exact on every pixel kept
    # a clean source, and coarser scales: nothing is left out
    assert optisr.guided_upsample(clean, guide, 4, return_info=True, exclude_outliers=True)[1].outliers == 0
    assert OUTLIER_MAX_SCALE == 4
    s8 = make_operator("area", d.shape, 8).apply(torch.from_numpy(d)).numpy()
    s8[::5, ::5] += 80.0
    with pytest.warns(UserWarning, match="works up to ×4"):
        assert optisr.guided_upsample(s8, guide, 8, return_info=True, exclude_outliers=True)[1].outliers == 0
    with pytest.raises(ConfigError, match="exclude_outliers must be True or False"):
        optisr.guided_upsample(noisy, guide, 4, exclude_outliers="yes")  # type: ignore[call-overload]
    # with an explicit fidelity too: exact on the rest
    ex, ex_info = optisr.guided_upsample(noisy, guide, 4, fidelity="exact", return_info=True, exclude_outliers=True)
    assert ex_info.outliers == info.outliers and np.allclose(ex, x, atol=1e-3 * 255)


def test_cli_says_how_many_outliers_it_left_out(tmp_path: Path, spiky, capsys: pytest.CaptureFixture[str]) -> None:
    import cv2

    guide, _, _, noisy = spiky
    assert cv2.imwrite(str(tmp_path / "rgb.png"), guide[..., ::-1])
    write_raster(tmp_path / "lr.tif", noisy.astype(np.float32))
    base = ["guided", "--guide", str(tmp_path / "rgb.png"), "--source", str(tmp_path / "lr.tif"), "--quiet"]
    assert optisr_main([*base, "-o", str(tmp_path / "hr.tif"), "--exclude-outliers"]) == 0
    out = capsys.readouterr().out
    assert "fidelity auto: exact, " in out and " outliers left out" in out
    assert float(out.split("max|Dx-s| ")[1].split()[0]) < 1e-2  # measured on the pixels kept
    assert optisr_main([*base, "-o", str(tmp_path / "kept.tif")]) == 0
    out = capsys.readouterr().out
    assert "outliers" not in out and float(out.split("max|Dx-s| ")[1].split()[0]) < 1e-2  # exact on every pixel
    assert optisr_main([*base, "-o", str(tmp_path / "x.tif"), "--method", "jbu", "--exclude-outliers"]) == 1
    assert "--exclude-outliers" in capsys.readouterr().err


def test_exclude_outliers_at_a_ratio_and_tile_wise(spiky) -> None:
    from optisr.ops.operators import resampling_operator

    guide, d, _, _ = spiky
    op = resampling_operator("area", d.shape, (72, 96))  # 8/3
    lr = op.apply(torch.from_numpy(d)).numpy()
    rng = np.random.default_rng(5)
    hit = rng.random(lr.shape) < 0.01
    lr[hit] += rng.choice([-1.0, 1.0], int(hit.sum())) * rng.uniform(25.0, 100.0, int(hit.sum()))
    kept = optisr.guided_upsample(lr, guide, None)
    x, info = optisr.guided_upsample(lr, guide, None, exclude_outliers=True, return_info=True)
    assert info.outliers >= 0.4e-2 * lr.size and _rmse(x, d) < 0.7 * _rmse(kept, d)
    tiled, tiled_info = optisr.guided_upsample(lr, guide, None, exclude_outliers=True, return_info=True, tile_size=128)
    assert tiled_info.outliers == info.outliers and np.abs(tiled - x).max() < 1.5e-2 * 255
