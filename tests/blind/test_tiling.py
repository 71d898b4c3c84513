"""Tiled inference: tiled == untiled when the context covers the receptive field; no seams."""

from __future__ import annotations

import pytest
import torch

from optisr.blind.archs import RRDBNet
from optisr.blind.tiling import count_tiles, pad_to_multiple, tiled_forward
from optisr.errors import ShapeError


@pytest.mark.parametrize("scale", [4, 2, 1])
@pytest.mark.parametrize("tile", [9, 14])
def test_tiled_equals_untiled(scale, tile):
    torch.manual_seed(scale)
    net = RRDBNet(scale=scale, num_feat=8, num_block=1, num_grow_ch=4).eval()
    mult = net.size_multiple
    x, _, _ = pad_to_multiple(torch.rand(1, 3, 27, 22), mult)
    with torch.no_grad():
        ref = net(x)
        out = tiled_forward(net, x, scale=scale, tile=tile, tile_pad=12, multiple=mult)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 1e-4  # well inside 1/255


def test_small_pad_degrades_smoothly():
    torch.manual_seed(0)
    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        ref = net(x)
        out = tiled_forward(net, x, scale=4, tile=7, tile_pad=2)
    assert (out - ref).abs().max() < 0.05


def test_progress_counts_tiles():
    seen = []
    x = torch.rand(1, 3, 10, 7)
    tiled_forward(
        lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2),
        x,
        scale=2,
        tile=4,
        tile_pad=1,
        progress=seen.append,
    )
    assert seen == [1, 2, 3, 4, 5, 6]
    assert (
        count_tiles(10, 7, 4) == 6
        and count_tiles(10, 7, 0) == 1
        and count_tiles(10, 7, 3, multiple=4) == 6
    )


def test_identity_net_is_reproduced_exactly():
    x = torch.rand(1, 2, 11, 9)
    out = tiled_forward(lambda t: t, x, scale=1, tile=3, tile_pad=2)
    torch.testing.assert_close(out, x)


def test_pad_to_multiple_and_errors():
    x = torch.rand(1, 3, 5, 6)
    xp, pb, pr = pad_to_multiple(x, 4)
    assert xp.shape[-2:] == (8, 8) and (pb, pr) == (3, 2)
    assert pad_to_multiple(torch.rand(1, 1, 1, 1), 4)[0].shape[-2:] == (4, 4)
    with pytest.raises(ShapeError, match="multiple of 4"):
        tiled_forward(lambda t: t, x, scale=1, tile=2, multiple=4)
    with pytest.raises(ShapeError, match="B, C"):
        tiled_forward(lambda t: t, x[0], scale=1, tile=2)
