import doctest

import numpy as np
import pytest
import torch

import optisr
import optisr.guided.api
from optisr.errors import ConfigError, ShapeError
from optisr.ops.operators import make_operator


def _scene(H=48, W=40, f=8):
    rng = np.random.default_rng(0)
    guide = np.zeros((H, W, 3), np.float32)
    guide[:, W // 2 :] = 1.0
    guide = np.clip(guide + rng.random((H, W, 3)).astype(np.float32) * 0.01 - 0.005, 0, 1)
    depth = (np.where(np.arange(W)[None, :] < W // 2, 1000.0, 2000.0) + np.zeros((H, 1))).astype(np.float32)
    src = make_operator("area", (H, W), f).apply(torch.from_numpy(depth)).numpy()
    return guide, depth, src


def test_numpy_in_numpy_out_and_exact():
    guide, depth, src = _scene()
    out = optisr.guided_upsample(src, guide, 8)
    assert isinstance(out, np.ndarray) and out.shape == depth.shape and out.dtype == np.float32
    assert optisr.guided_upsample(src.astype(np.float64), guide, 8).dtype == np.float64
    cons = make_operator("area", depth.shape, 8).apply(torch.from_numpy(out)).numpy() - src
    assert np.abs(cons).max() <= 1e-3 * np.ptp(src)
    # the colour edge coincides with the depth edge: the step is recovered sharply
    assert np.abs(out - depth).mean() < 10.0  # mm, on a 1000 mm step


def test_torch_layouts_and_uint8_guide():
    guide, depth, src = _scene()
    g8 = np.round(guide * 255).astype(np.uint8)
    ref = optisr.guided_upsample(src, g8, 8)
    s = torch.from_numpy(src).float()
    gt = torch.from_numpy(guide.transpose(2, 0, 1).copy())
    assert optisr.guided_upsample(s, gt, 8).shape == (48, 40)
    assert optisr.guided_upsample(s[None], gt, 8).shape == (1, 48, 40)
    out4 = optisr.guided_upsample(s[None, None].repeat(2, 1, 1, 1), gt[None], 8)
    assert out4.shape == (2, 1, 48, 40)
    assert torch.allclose(out4[0, 0], out4[1, 0])
    assert np.abs(out4[0, 0].numpy() - ref).max() < 1.0  # uint8 vs float guide: nearly the same


def test_operators_modes_and_float64():
    guide, depth, src = _scene(40, 40, 4)
    for op in ["area", "bicubic", "gaussian", "sum"]:
        s = make_operator(op, (40, 40), 4).apply(torch.from_numpy(depth).double()).numpy()
        out = optisr.guided_upsample(s, guide, 4, operator=op, dtype=torch.float64, tol=1e-8)
        assert out.dtype == np.float64
        back = make_operator(op, (40, 40), 4).apply(torch.from_numpy(out)).numpy()
        assert np.abs(back - s).max() < 1e-8 * np.ptp(s) + 1e-9
    soft = optisr.guided_upsample(src[:5, :5], guide, 8, mode="soft", lam=1.0)
    assert soft.shape == (40, 40)


def test_masks_and_nan_sources():
    guide, depth, src = _scene()
    s = src.copy()
    s[2, 1] = np.nan
    out = optisr.guided_upsample(s, guide, 8)
    assert np.isfinite(out).all()
    m = np.ones_like(src, bool)
    m[2, 1] = False
    s2 = src.copy()
    s2[2, 1] = 1e6  # masked: ignored
    out2 = optisr.guided_upsample(s2, guide, 8, mask=m)
    assert np.abs(out2 - out).max() < 1e-2


def test_explicit_and_callable_weights():
    guide, depth, src = _scene()
    w = np.ones((2, 48, 40), np.float32)
    flat = optisr.guided_upsample(src, guide, 8, weights=w)
    calls = []

    def fn(g, s):
        calls.append((tuple(g.shape), tuple(s.shape)))
        return torch.ones(1, 2, 48, 40)

    via_callable = optisr.guided_upsample(src, guide, 8, weights=fn)
    assert calls == [((1, 3, 48, 40), (1, 1, 6, 5))]
    np.testing.assert_allclose(flat, via_callable, atol=1e-4)


def test_errors():
    guide, depth, src = _scene()
    with pytest.raises(ShapeError, match="crop or pad"):
        optisr.guided_upsample(src[:, :4], guide, 8)
    with pytest.raises(ConfigError, match="unknown weights"):
        optisr.guided_upsample(src, guide, 8, weights="learned-by-magic")
    with pytest.raises(ConfigError, match="scale"):
        optisr.guided_upsample(src, guide, 0)
    with pytest.raises(ConfigError, match="mode"):
        optisr.guided_upsample(src, guide, 8, mode="approximate")
    with pytest.raises(ShapeError):
        optisr.guided_upsample(src[None], guide, 8)  # numpy source must be 2-D


def test_docstring_example():
    result = doctest.testmod(optisr.guided.api, verbose=False)
    assert result.attempted >= 1 and result.failed == 0


def test_guided_upsample_type_hints_follow_the_input_kind():
    """numpy in -> numpy out, torch in -> torch out, in the overloads as at run time."""
    import typing

    import numpy as np
    import torch

    from optisr.guided import guided_upsample

    assert guided_upsample is optisr.guided.api.guided_upsample
    hints = [typing.get_type_hints(f, localns={"GraphSRModel": object}) for f in typing.get_overloads(guided_upsample)]
    assert [(h["source"], h["return"]) for h in hints[:2]] == [(np.ndarray, np.ndarray), (torch.Tensor, torch.Tensor)]
    assert typing.get_origin(hints[2]["return"]) is tuple  # return_info=True: (target, FidelityChoice)
    guide = np.zeros((8, 8, 3), np.float32)
    assert isinstance(guided_upsample(np.ones((2, 2)), guide, 4, weights="color"), np.ndarray)
    assert isinstance(guided_upsample(torch.ones(2, 2), torch.from_numpy(guide).permute(2, 0, 1), 4, weights="color"), torch.Tensor)
