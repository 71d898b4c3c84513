"""Library pieces of ``optisr guided``: integer rounding that keeps D x = s, the strip-wise
consistency check, and the method registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optisr.errors import ConfigError, ShapeError
from optisr.guided import consistency, methods
from optisr.guided.quantize import round_clip, round_consistent, round_to_integers
from optisr.ops.operators import make_operator


def _solution(H: int, W: int, f: int, kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A float HR map in [10, 200] and its integer LR source (block means/sums rounded)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(10, 200, (H, W))
    s = make_operator(kind, (H, W), f).apply(torch.from_numpy(x)).numpy()
    return x, np.rint(s)


@pytest.mark.parametrize("kind", ["area", "sum"])
@pytest.mark.parametrize("H,W,f,strip", [(32, 32, 4, None), (30, 27, 4, 64), (37, 45, 8, 200)])
def test_round_consistent_keeps_every_block_sum(kind, H, W, f, strip):
    x, s = _solution(H, W, f, kind)
    op = make_operator(kind, (H, W), f)
    x = op.project(torch.from_numpy(x), torch.from_numpy(s)).numpy()  # exactly consistent float solution
    valid = np.ones(s.shape, bool)
    valid[0, 0] = False
    out = round_consistent(x, s, valid, f, operator=kind, lo=0, hi=65535, dtype=np.uint16, strip_pixels=strip)
    assert out.dtype == np.uint16 and out.shape == (H, W)
    assert np.abs(out.astype(np.float64) - x).max() < 1.0  # each pixel moves by less than one unit
    d = op.apply(torch.from_numpy(out.astype(np.float64))).numpy()
    # integer sources: each block sum is exactly rint(s · count) (area) or s (sum), so D out = s
    np.testing.assert_allclose(d[valid], s[valid], rtol=0, atol=1e-9)
    plain = np.clip(np.rint(x), 0, 65535)
    plain_err = np.abs(op.apply(torch.from_numpy(plain)).numpy() - s)[valid].max()
    assert plain_err > 0  # plain rounding is not consistent here, so the test can fail


def test_round_clip_and_dispatch():
    x = np.array([[-3.4, 0.5, 1.5, 70000.0]])
    np.testing.assert_array_equal(round_clip(x, 1, 65535, np.uint16), [[1, 1, 2, 65535]])
    np.testing.assert_array_equal(round_clip(x, 1, 65535, np.uint16, strip_pixels=1), [[1, 1, 2, 65535]])
    x, s = _solution(16, 16, 4, "bicubic")
    valid = np.ones(s.shape, bool)
    out = round_to_integers(x, s, valid, 4, dtype=np.uint8, operator="bicubic")
    np.testing.assert_array_equal(out, np.clip(np.rint(x), 0, 255).astype(np.uint8))  # no consistent rounding
    with pytest.raises(ConfigError, match="area or sum"):
        round_consistent(x, s, valid, 4, operator="bicubic", lo=0, hi=255, dtype=np.uint8)
    with pytest.raises(ShapeError):
        round_consistent(x, s[:-1], valid[:-1], 4, operator="area", lo=0, hi=255, dtype=np.uint8)


@pytest.mark.parametrize("kind", ["area", "sum", "bicubic", "gaussian"])
def test_strip_wise_consistency_error_equals_the_whole_image_one(kind):
    H, W, f = 45, 38, 4
    x, s = _solution(H, W, f, kind, seed=2)
    valid = np.random.default_rng(3).random(s.shape) > 0.2
    y = x + np.random.default_rng(4).normal(0, 1, x.shape)
    whole = np.abs(make_operator(kind, (H, W), f).apply(torch.from_numpy(y)).numpy() - s)[valid].max()
    assert consistency.lr_row_strips(12, 10, 4, 160) == range(0, 12, 1)
    for strip in (None, 16 * 10, 1):
        err = consistency.lr_consistency_error(y.astype(np.float32), s, valid, f, operator=kind, strip_pixels=strip)
        ref = np.abs(
            make_operator(kind, (H, W), f).apply(torch.from_numpy(y.astype(np.float32).astype(np.float64))).numpy() - s
        )[valid].max()
        assert err == pytest.approx(ref, rel=1e-12, abs=1e-12)
        assert err == pytest.approx(whole, rel=1e-3)
    with pytest.raises(ShapeError, match="no valid pixel"):
        consistency.lr_consistency_error(y, s, np.zeros_like(valid), f, operator=kind)


def test_method_registry():
    assert methods.METHODS == methods.GRAPH_METHODS + methods.BASELINE_METHODS
    assert all(methods.is_graph_method(m) for m in ("default", "model", "color", "my/model.safetensors"))
    assert not any(methods.is_graph_method(m) for m in methods.BASELINE_METHODS)
    assert methods.closest_method("jbuu") == "jbu" and methods.closest_method("zzzz") is None
    from optisr.guided.baselines import BASELINES

    assert set(methods.BASELINE_METHODS) <= set(BASELINES)


def test_upsample_with_runs_graph_methods_and_baselines():
    rng = np.random.default_rng(0)
    guide = rng.random((16, 16, 3)).astype(np.float32)
    src = rng.uniform(1, 2, (4, 4))
    src[0, 0] = np.nan
    x = methods.upsample_with("color", src, guide, 4, operator="area", dtype=torch.float64, tol=1e-10)
    d = make_operator("area", (16, 16), 4).apply(torch.from_numpy(x)).numpy()
    valid = np.isfinite(src)
    np.testing.assert_allclose(d[valid], src[valid], atol=1e-8)
    b = methods.upsample_with("bicubic", np.nan_to_num(src), guide, 4, mask=valid)
    assert b.shape == (16, 16) and np.isfinite(b).all()
    with pytest.raises(ConfigError, match="apply to the graph methods"):
        methods.upsample_with("jbu", src, guide, 4, operator="area")
    with pytest.raises(ConfigError, match="did you mean 'jbu'"):
        methods.upsample_with("jbuu", src, guide, 4)
