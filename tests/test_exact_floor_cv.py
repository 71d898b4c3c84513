"""floor="cv": the edge-weight floor of exact solves by cross-validation on the LR grid (optisr.guided.api.cv_floor)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import optisr
from optisr.cli.main import main
from optisr.data.synthetic import disparity_255, make_scene
from optisr.errors import ConfigError
from optisr.guided.api import CV_FLOORS, cv_floor


def _area(x: np.ndarray, s: int) -> np.ndarray:
    return x.reshape(x.shape[0] // s, s, x.shape[1] // s, s).mean(axis=(1, 3))


def _textured_smooth(seed: int = 0):
    """A smooth depth ramp under a guide full of texture the depth does not have."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:128, 0:128] / 128.0
    depth = 100.0 + 60.0 * xx + 30.0 * np.sin(3 * yy)
    check = ((np.arange(128)[:, None] // 6 + np.arange(128)[None, :] // 6) % 2).astype(np.float32)
    guide = np.stack([0.2 + 0.6 * check, 0.5 + 0.0 * check, 0.8 - 0.6 * check], axis=2)
    guide += rng.uniform(0, 0.02, guide.shape).astype(np.float32)
    return depth, guide.astype(np.float32)


def test_cv_raises_the_floor_where_the_guide_texture_is_not_depth_and_helps():
    depth, guide = _textured_smooth()
    lr = _area(depth, 4)
    f = cv_floor(lr, guide, 4, weights="color")
    assert f in CV_FLOORS and f > 0
    own = optisr.guided_upsample(lr, guide, 4, weights="color", fidelity="exact")  # exact: the graph's own floor
    cv = optisr.guided_upsample(lr, guide, 4, weights="color", floor="cv")
    rmse = lambda x: float(np.sqrt(np.mean((x - depth) ** 2)))  # noqa: E731
    assert rmse(cv) < rmse(own)
    assert np.abs(_area(cv, 4) - lr).max() < 1e-2  # still exactly consistent


def test_cv_keeps_the_own_floor_where_colour_edges_are_depth_edges():
    sc = make_scene(128, 128, seed=2)
    depth = disparity_255(sc.depth_clean)
    assert cv_floor(_area(depth, 4), sc.guide.astype(np.float32), 4) == 0.0


def test_floor_cv_reports_its_choice_and_equals_the_solve_at_that_floor():
    depth, guide = _textured_smooth(1)
    lr = _area(depth, 4)
    x, info = optisr.guided_upsample(lr, guide, 4, weights="color", floor="cv", return_info=True)
    assert info.fidelity == "exact" and info.floor == cv_floor(lr, guide, 4, weights="color")
    np.testing.assert_allclose(x, optisr.guided_upsample(lr, guide, 4, weights="color", floor=info.floor))


def test_floor_cv_needs_numpy_and_leaves_soft_solves_to_gcv():
    depth, guide = _textured_smooth(2)
    lr = _area(depth, 4)
    with pytest.raises(ConfigError, match="numpy"):
        optisr.guided_upsample(torch.from_numpy(lr), torch.from_numpy(guide).permute(2, 0, 1), 4, floor="cv")
    with pytest.raises(ConfigError, match="'cv'"):
        optisr.guided_upsample(lr, guide, 4, floor="gcv")
    noisy = lr + np.random.default_rng(0).normal(0, 4, lr.shape)
    a, ia = optisr.guided_upsample(noisy, guide, 4, weights="color", floor="cv", return_info=True)
    b, ib = optisr.guided_upsample(noisy, guide, 4, weights="color", return_info=True)
    assert ia.fidelity == "soft" and (ia.floor, ia.lam) == (ib.floor, ib.lam)
    np.testing.assert_array_equal(a, b)


def test_cli_floor_cv(tmp_path, capsys):
    from optisr.io.images import write_image
    from optisr.io.rasters import write_raster

    depth, guide = _textured_smooth(3)
    g = write_image(tmp_path / "g.png", (guide * 255).astype(np.uint8))
    src = tmp_path / "s.tif"
    write_raster(src, _area(depth, 4).astype(np.float32))
    rc = main(["guided", "--guide", str(g), "--source", str(src), "--scale", "4", "--method", "color",
               "--floor", "cv", "-o", str(tmp_path / "o.tif"), "--quiet"])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "fidelity auto: exact floor " in out
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error: exit status 2, one line
        main(["guided", "--guide", str(g), "--source", str(src), "--scale", "4", "--floor", "often",
              "-o", str(tmp_path / "p.tif")])  # fmt: skip
    _, err = capsys.readouterr()
    assert exit_.value.code == 2 and "--floor: expected a number in [0, 1) or cv" in err
