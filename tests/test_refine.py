"""Refinement: the graph re-weighted by its first solution (optisr.guided.refine)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import optisr
from optisr.errors import ConfigError
from optisr.guided.refine import (
    REFINE_FLOOR,
    Refinement,
    range_to_255,
    refine_solve,
    refined_weights,
    resolve_refinement,
)
from optisr.guided.tiling import tiled_guided_upsample
from optisr.ops.operators import make_operator
from optisr.solvers.direct import solve_direct


def test_refined_weights_hand_checked():
    # one row x = [0, 0, 10]: the first edge keeps weight 1, the second is cut by exp(-(10·k/μ)²)
    x = torch.tensor([[[[0.0, 0.0, 10.0]]]], dtype=torch.float64)
    w0 = torch.zeros(1, 2, 1, 3, dtype=torch.float64)
    w0[0, 1, 0, :2] = torch.tensor([0.5, 0.25])  # horizontal edges; vertical ones do not exist
    f = REFINE_FLOOR
    beta0 = refined_weights(w0, x, Refinement(mu=4.0, beta=0.0, to_255=0.5))
    assert beta0[0, 1, 0, 0] == pytest.approx(1.0)
    assert beta0[0, 1, 0, 1] == pytest.approx(f + (1 - f) * math.exp(-((10 * 0.5 / 4.0) ** 2)))
    assert beta0[0, 1, 0, 2] == 0 and torch.all(beta0[0, 0] == 0)  # unused slots stay 0
    beta1 = refined_weights(w0, x, Refinement(mu=4.0, beta=1.0, to_255=0.5))
    a0 = (0.5 - f) / (1 - f)
    assert beta1[0, 1, 0, 0] == pytest.approx(f + (1 - f) * a0)
    a1 = (0.25 - f) / (1 - f)
    assert beta1[0, 1, 0, 1] == pytest.approx(f + (1 - f) * a1 * math.exp(-((10 * 0.5 / 4.0) ** 2)))


def test_range_factor_and_validation():
    src = np.array([[1.0, 3.0], [np.nan, 52.0]])
    assert range_to_255(src) == pytest.approx(255.0 / 51.0)
    assert range_to_255(src, np.array([[True, True], [True, False]])) == pytest.approx(255.0 / 2.0)
    assert range_to_255(np.ones((3, 3))) == 1.0
    batch = torch.stack([torch.zeros(1, 2, 2), torch.arange(4.0).reshape(1, 2, 2)])
    assert range_to_255(batch) == (1.0, 85.0)
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="refine"):
            resolve_refinement(bad, "exact", src)  # type: ignore[arg-type]
    assert resolve_refinement(2, "robust", src) is None
    assert resolve_refinement(2, "soft", src).passes == 2  # type: ignore[union-attr]
    ref = Refinement()
    assert ref.with_floor(None) is ref and ref.with_floor(1e-4) is ref and ref.with_floor(0.1).floor == 0.1
    assert resolve_refinement(0, "exact", src) is None
    assert resolve_refinement(None, "exact", src) is None  # exact solves: only when asked
    assert resolve_refinement(None, "soft", src).passes == 1  # type: ignore[union-attr]
    with pytest.raises(ConfigError):
        Refinement(mu=0.0)


def _scene(seed=0, H=48, W=64):
    """A curved surface and a tilted plane split by a step; the guide has that edge plus a checkerboard
    texture painted on the curved surface (colour edges with no depth edge)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    depth = 10 + 0.004 * ((xx - 20) ** 2 + (yy - 20) ** 2)
    right = xx >= W // 2 + 3
    depth[right] = (40 + 0.05 * yy)[right]
    guide = np.full((H, W, 3), 0.3, np.float32)
    guide[right] = 0.8
    guide[((yy // 3 + xx // 5) % 2 == 0) & (xx < W // 2 - 2)] = 0.45
    guide += rng.normal(0, 0.005, guide.shape).astype(np.float32)
    return depth, np.clip(guide, 0, 1)


def test_refined_solve_matches_direct_reference_and_stays_consistent():
    depth, guide = _scene()
    scale = 4
    op = make_operator("area", depth.shape, scale)
    src = op.apply(torch.from_numpy(depth)).numpy()
    out = optisr.guided_upsample(src, guide, scale, weights="color", fidelity="exact", refine=1, tol=1e-10)
    # the same by hand: first solve, refined weights, direct (sparse LU) solve of the second problem
    x0 = optisr.guided_upsample(src, guide, scale, weights="color", fidelity="exact", refine=0, tol=1e-10)
    w0 = optisr.guided.api.color_weights(torch.from_numpy(guide.transpose(2, 0, 1)).double()[None])
    ref_w = refined_weights(w0, torch.from_numpy(x0)[None, None], Refinement(to_255=range_to_255(src)))
    ref = solve_direct(ref_w, torch.from_numpy(src)[None, None], op, mode="exact")[0, 0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-6 * np.ptp(depth))
    np.testing.assert_allclose(op.apply(torch.from_numpy(out)).numpy(), src, atol=1e-7 * np.ptp(depth))


@pytest.mark.parametrize("operator", ["area", "bicubic"])
def test_refinement_heals_texture_cuts(operator):
    # the colour graph cuts at every checker edge, so the plain solve copies the texture into the
    # depth; the refined graph sees a smooth first solution there and restores those edges
    depth, guide = _scene()
    src = make_operator(operator, depth.shape, 4).apply(torch.from_numpy(depth)).numpy()
    kw = dict(operator=operator, weights="color", fidelity="exact", tol=1e-8)
    plain = optisr.guided_upsample(src, guide, 4, **kw)
    refined = optisr.guided_upsample(src, guide, 4, refine=1, **kw)
    rmse = [float(np.sqrt(np.mean((x - depth) ** 2))) for x in (plain, refined)]
    assert rmse[1] < 0.7 * rmse[0], rmse  # measured: 0.17 -> 0.046 (area), 0.16 -> 0.044 (bicubic)


def test_default_applies_to_guide_graphs_not_to_explicit_weights_nor_soft_solves():
    depth, guide = _scene()
    src = make_operator("area", depth.shape, 4).apply(torch.from_numpy(depth)).numpy()
    kw = dict(weights="color", fidelity="exact", tol=1e-8)
    default = optisr.guided_upsample(src, guide, 4, **kw, guide_filter=False)  # exact: not refined unless asked
    assert np.abs(default - optisr.guided_upsample(src, guide, 4, refine=0, **kw, guide_filter=False)).max() == 0
    assert np.abs(default - optisr.guided_upsample(src, guide, 4, refine=1, **kw, guide_filter=False)).max() > 1e-3
    soft = dict(weights="color", fidelity="soft", lam=1.0, tol=1e-8)
    _, info = optisr.guided_upsample(src, guide, 4, return_info=True, **soft, guide_filter=False)
    assert info.refine == 1
    w = optisr.guided.api.color_weights(torch.from_numpy(guide.transpose(2, 0, 1))[None])[0].numpy()
    explicit = optisr.guided_upsample(src, guide, 4, weights=w, fidelity="soft", lam=1.0, tol=1e-8, guide_filter=False)
    unrefined = optisr.guided_upsample(src, guide, 4, refine=0, **soft, guide_filter=False)
    np.testing.assert_allclose(explicit, unrefined, atol=1e-5)
    robust = dict(weights="color", fidelity="robust", lam=1.0, tol=1e-8)
    np.testing.assert_array_equal(
        optisr.guided_upsample(src, guide, 4, refine=2, **robust, guide_filter=False),
        optisr.guided_upsample(src, guide, 4, refine=0, **robust, guide_filter=False),
    )
    with pytest.raises(ConfigError, match="refine"):
        optisr.guided_upsample(src, guide, 4, refine=-1, guide_filter=False)


def test_soft_refinement_matches_direct_reference_with_the_chosen_floor():
    depth, guide = _scene()
    scale, lam, floor = 4, 0.5, 0.03
    op = make_operator("area", depth.shape, scale)
    rng = np.random.default_rng(3)
    src = op.apply(torch.from_numpy(depth)).numpy() + rng.normal(0, 0.3, (12, 16))
    kw = dict(weights="color", fidelity="soft", lam=lam, floor=floor, tol=1e-11)
    out, info = optisr.guided_upsample(src, guide, scale, return_info=True, **kw)
    assert info.refine == 1
    x0 = optisr.guided_upsample(src, guide, scale, refine=0, **kw)
    w0 = optisr.guided.api.color_weights(torch.from_numpy(guide.transpose(2, 0, 1)).double()[None])
    ref_w = refined_weights(w0, torch.from_numpy(x0)[None, None], Refinement(to_255=range_to_255(src), floor=floor))
    # LGR's soft energy ‖Dx − s‖² + λ xᵀL(w)x: the direct solver takes the effective weights λ·w
    ref = solve_direct(lam * ref_w, torch.from_numpy(src)[None, None], op, mode="soft")[0, 0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-6 * np.ptp(depth))
    assert ref_w.min() >= 0 and float(ref_w[ref_w > 0].min()) >= floor - 1e-12


def test_tiled_refinement_matches_untiled_and_is_consistent():
    depth, guide = _scene(1, H=96, W=128)
    scale = 4
    op = make_operator("area", depth.shape, scale)
    src = op.apply(torch.from_numpy(depth)).numpy()
    ref = Refinement(to_255=range_to_255(src))
    whole = optisr.guided_upsample(
        src, guide, scale, weights="color", fidelity="exact", tile_size=0, tol=1e-9, refine=1
    , guide_filter=False)
    one_tile = tiled_guided_upsample(src, guide, scale, tile=256, weights="color", refinement=ref, tol=1e-9)
    np.testing.assert_allclose(one_tile, whole, atol=1e-5 * np.ptp(depth))
    tiles = tiled_guided_upsample(src, guide, scale, tile=128, overlap=32, weights="color", refinement=ref, tol=1e-9)
    np.testing.assert_allclose(op.apply(torch.from_numpy(tiles)).numpy(), src, atol=1e-5 * np.ptp(depth))
    assert np.sqrt(np.mean((tiles - whole) ** 2)) < 0.02 * np.ptp(depth)


def test_gradient_reaches_weights_and_source_through_the_last_solve():
    depth, _ = _scene(H=16, W=16)
    op = make_operator("area", depth.shape, 4)
    src = op.apply(torch.from_numpy(depth))[None, None].clone().requires_grad_(True)
    w0 = torch.full((1, 2, 16, 16), 0.5, dtype=torch.float64)
    w0[:, 0, -1, :] = 0
    w0[:, 1, :, -1] = 0
    w0.requires_grad_(True)
    calls = []

    def solve(w):
        calls.append(w)
        return optisr.guided.layer.graph_solve(src, w, 4, operator="area", mode="exact", tol=1e-10)

    x0 = solve(w0)
    out = refine_solve(solve, w0, x0, Refinement(passes=2, beta=1.0, to_255=range_to_255(src)))
    assert len(calls) == 3
    out.pow(2).sum().backward()
    assert src.grad is not None and torch.isfinite(src.grad).all() and src.grad.abs().sum() > 0
    assert w0.grad is not None and w0.grad.abs().sum() > 0


def test_cli_refine_option(tmp_path):
    from optisr.io.images import write_image

    depth, guide = _scene()
    src = make_operator("area", depth.shape, 4).apply(torch.from_numpy(depth)).numpy().astype(np.float32)
    np.save(tmp_path / "lr.npy", src)
    write_image(tmp_path / "guide.png", (guide * 255).astype(np.uint8))
    base = [sys.executable, "-m", "optisr", "guided", "--source", str(tmp_path / "lr.npy"), "--guide",
            str(tmp_path / "guide.png"), "--scale", "4", "--method", "color"]  # fmt: skip
    bad = subprocess.run([*base, "-o", str(tmp_path / "o.npy"), "--refine", "-1"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--refine" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "o.npy").exists()
    outs = {}
    for n in (0, 1):
        path = tmp_path / f"o{n}.npy"
        run = subprocess.run(
            [*base, "-o", str(path), "--fidelity", "exact", "--refine", str(n)], capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        outs[n] = np.load(path)
    assert np.abs(outs[0] - outs[1]).max() > 1e-3
    wrong = subprocess.run([*base, "-o", str(tmp_path / "b.npy"), "--refine", "1", "--method", "bicubic"],
                           capture_output=True, text=True)  # fmt: skip
    assert wrong.returncode != 0 and "--refine" in wrong.stderr
