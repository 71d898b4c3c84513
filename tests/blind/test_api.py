"""optisr.upscale: input kinds, grey/alpha/16-bit handling, outscale, tiling, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optisr.blind.api import upscale
from optisr.errors import ConfigError, ShapeError


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((9, 7), np.uint8),
        ((9, 7, 3), np.uint8),
        ((9, 7, 4), np.uint8),
        ((9, 7, 2), np.uint16),
        ((9, 7, 3), np.uint16),
        ((9, 7, 3), np.float32),
        ((9, 7, 1), np.float64),
    ],
)
def test_numpy_kinds_round_trip(tiny_rrdb, shape, dtype):
    rng = np.random.default_rng(0)
    img = rng.random(shape)
    img = (
        img.astype(dtype)
        if np.dtype(dtype).kind == "f"
        else (img * np.iinfo(dtype).max).astype(dtype)
    )
    out = upscale(img, tiny_rrdb)
    assert out.dtype == img.dtype
    assert out.shape == (36, 28, *shape[2:])


def test_identity_like_net_keeps_values(tiny_compact):
    # Zero last conv: the compact net is exactly nearest ×2, so every pixel value survives.
    torch.nn.init.zeros_(tiny_compact.body[-1].weight)
    torch.nn.init.zeros_(tiny_compact.body[-1].bias)
    img = np.random.default_rng(1).integers(0, 65536, (5, 6, 3)).astype(np.uint16)
    out = upscale(img, tiny_compact)
    np.testing.assert_array_equal(out[::2, ::2], img)
    grey = img[:, :, 0]
    np.testing.assert_array_equal(
        upscale(grey, tiny_compact)[::2, ::2], grey
    )  # grey → RGB → grey


def test_alpha_paths(tiny_compact):
    img = np.random.default_rng(2).integers(0, 256, (6, 5, 4)).astype(np.uint8)
    img[..., 3] = 255
    out = upscale(img, tiny_compact)
    assert (out[..., 3] == 255).all()  # constant alpha short-cut
    img[0, 0, 3] = 0
    for how in ("model", "bicubic"):
        assert upscale(img, tiny_compact, alpha_upsampler=how).shape == (12, 10, 4)
    with pytest.raises(ConfigError, match="alpha_upsampler"):
        upscale(img, tiny_compact, alpha_upsampler="nearest")


def test_torch_in_torch_out(tiny_rrdb):
    x = torch.rand(2, 3, 6, 5, dtype=torch.float64)
    y = upscale(x, tiny_rrdb)
    assert (
        isinstance(y, torch.Tensor)
        and y.dtype == torch.float64
        and y.shape == (2, 3, 24, 20)
    )
    assert 0 <= y.min() and y.max() <= 1
    assert upscale(x[0], tiny_rrdb).shape == (3, 24, 20)


def test_outscale(tiny_rrdb):
    img = np.zeros((10, 7, 3), np.uint8)
    assert upscale(img, tiny_rrdb, outscale=2).shape == (20, 14, 3)
    assert upscale(img, tiny_rrdb, outscale=3.5).shape == (35, 24, 3)
    with pytest.raises(ConfigError, match="outscale"):
        upscale(img, tiny_rrdb, outscale=0)


def test_tiled_matches_untiled_within_one_level(tiny_rrdb):
    img = np.random.default_rng(3).integers(0, 256, (70, 58, 3)).astype(np.uint8)  # 3×2 tiles of 32
    full = upscale(img, tiny_rrdb).astype(int)
    tiled = upscale(img, tiny_rrdb, tile_size=32, tile_pad=12).astype(int)
    assert np.abs(full - tiled).max() <= 1


def test_pixel_unshuffle_model_any_size():
    from optisr.blind.archs import RRDBNet

    net = RRDBNet(scale=1, num_feat=4, num_block=1, num_grow_ch=2)
    assert upscale(np.zeros((7, 9), np.uint8), net).shape == (
        7,
        9,
    )  # padded to ×4 inside, cropped


def test_bf16_runs(tiny_rrdb):
    y = upscale(torch.rand(1, 3, 6, 6), tiny_rrdb, dtype=torch.bfloat16)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    assert (
        tiny_rrdb.conv_first.weight.dtype == torch.float32
    )  # the caller's module is not converted


def test_bad_inputs(tiny_rrdb):
    with pytest.raises(ShapeError, match="shape"):
        upscale(np.zeros((4, 4, 5), np.uint8), tiny_rrdb)
    with pytest.raises(ShapeError, match="dtype"):
        upscale(np.zeros((4, 4), np.int32), tiny_rrdb)
    with pytest.raises(ShapeError):
        upscale(torch.zeros(4, 4), tiny_rrdb)


def test_default_model_on_a_small_image():
    # A smooth gradient with an edge: the ×4 output, area-downscaled, must match the input.
    yy, xx = np.mgrid[0:16, 0:16]
    img = np.stack([xx * 14, yy * 14, np.where(xx > 8, 200, 40)], -1).astype(np.uint8)
    out = upscale(img)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    down = out.astype(np.float64).reshape(16, 4, 16, 4, 3).mean((1, 3))
    mse = np.mean((down - img) ** 2)
    assert 10 * np.log10(255**2 / mse) > 28


def test_tiny_tiles_are_raised_to_the_minimum(tiny_rrdb):
    from optisr.blind.api import effective_tile_size
    from optisr.blind.tiling import MIN_TILE

    img = np.random.default_rng(1).integers(0, 256, (40, 36, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match=f"tile_size 1 raised to {MIN_TILE}"):
        tiny = upscale(img, tiny_rrdb, tile_size=1, tile_pad=12)
    np.testing.assert_array_equal(tiny, upscale(img, tiny_rrdb, tile_size=MIN_TILE, tile_pad=12))
    assert effective_tile_size(0) == 0 and effective_tile_size(64, 128) == 128
    with pytest.raises(ConfigError, match="tile_size must be >= 0"):
        effective_tile_size(-1)
