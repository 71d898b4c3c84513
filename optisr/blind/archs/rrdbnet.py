"""RRDBNet: the ESRGAN / RealSR / Real-ESRGAN generator, with BasicSR attribute names.

Attribute names follow the layout the ecosystem converged on, so a state dict saved from
:class:`RRDBNet` loads in BasicSR, Real-ESRGAN, spandrel and chaiNNer unchanged:

``conv_first``, ``body.<i>.rdb<j>.conv<k>``, ``conv_body``, ``conv_up1``, ``conv_up2``,
``conv_hr``, ``conv_last``.

The network upsamples by 4 natively (two nearest ×2 + conv stages). Scales 2 and 1 are
obtained as in Real-ESRGAN: the input is first pixel-unshuffled by 2 or 4, so ``conv_first``
sees ``num_in_ch·4`` or ``num_in_ch·16`` channels and the output is still ×4 of the unshuffled
grid, i.e. ×2 or ×1 of the input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from optisr.errors import ConfigError, ShapeError

__all__ = ["RRDB", "RRDBNet", "ResidualDenseBlock"]

_UNSHUFFLE = {4: 1, 2: 2, 1: 4}


class ResidualDenseBlock(nn.Module):
    """Five 3×3 convs with dense connections; output ``x + 0.2·conv5(...)``.

    Conv ``k`` (1..4) sees ``num_feat + (k-1)·num_grow_ch`` channels and emits ``num_grow_ch``,
    followed by LeakyReLU(0.2); conv 5 maps back to ``num_feat`` with no activation.
    """

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return x + 0.2 * self.conv5(torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three chained RDBs with a 0.2-scaled skip."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: Tensor) -> Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """ESRGAN generator (RRDBNet) with configurable width, depth and scale.

    Args:
        num_in_ch: image channels in (3 for RGB).
        num_out_ch: image channels out.
        scale: 4 (native), 2 or 1 (pixel-unshuffle of the input first).
        num_feat: trunk width ``nf`` (64 in ESRGAN/RealSR).
        num_block: number of RRDBs ``nb`` (23 in ESRGAN/RealSR, 6 in the anime model).
        num_grow_ch: dense growth channels ``gc`` (32).

    Shape:
        input ``(B, num_in_ch, h, w)`` float in [0, 1]; for ``scale`` 2 (1), h and w must be
        multiples of 2 (4). Output ``(B, num_out_ch, scale·h, scale·w)``, not clamped.

    Example:
        >>> net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4)
        >>> net(torch.rand(1, 3, 6, 5)).shape
        torch.Size([1, 3, 24, 20])
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        *,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        if scale not in _UNSHUFFLE:
            raise ConfigError(f"RRDBNet scale must be 1, 2 or 4; got {scale}")
        self.scale = scale
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.num_feat = num_feat
        self.num_block = num_block
        self.num_grow_ch = num_grow_ch
        unshuffle = _UNSHUFFLE[scale]
        self.conv_first = nn.Conv2d(num_in_ch * unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(
            *(RRDB(num_feat, num_grow_ch) for _ in range(num_block))
        )
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (1, 2 or 4)."""
        return _UNSHUFFLE[self.scale]

    def hyperparameters(self) -> dict[str, int]:
        """Constructor arguments, for round trips and safetensors metadata."""
        return {
            "num_in_ch": self.num_in_ch,
            "num_out_ch": self.num_out_ch,
            "scale": self.scale,
            "num_feat": self.num_feat,
            "num_block": self.num_block,
            "num_grow_ch": self.num_grow_ch,
        }

    def forward(self, x: Tensor) -> Tensor:
        unshuffle = _UNSHUFFLE[self.scale]
        if unshuffle > 1:
            h, w = x.shape[-2:]
            if h % unshuffle or w % unshuffle:
                raise ShapeError(
                    f"RRDBNet ×{self.scale} needs H and W divisible by {unshuffle}; got {h}×{w}. "
                    "Pad the input (optisr.upscale does this for you)."
                )
            x = F.pixel_unshuffle(x, unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(
            self.conv_up1(F.interpolate(feat, scale_factor=2.0, mode="nearest")), 0.2
        )
        feat = F.leaky_relu(
            self.conv_up2(F.interpolate(feat, scale_factor=2.0, mode="nearest")), 0.2
        )
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
