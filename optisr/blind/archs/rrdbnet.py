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

    def _check_tail_blocks(self, tail_blocks: int) -> int:
        """Index of the first tail block, ``num_block - tail_blocks``; ConfigError outside 1..num_block."""
        if not 1 <= tail_blocks <= self.num_block:
            raise ConfigError(f"tail_blocks must be in 1..{self.num_block} (the RRDBs of this net); got {tail_blocks}")
        return self.num_block - tail_blocks

    def head_features(self, x: Tensor, tail_blocks: int) -> tuple[Tensor, Tensor]:
        """The frozen head of a tail fine-tune: ``(first, trunk)`` with ``first = conv_first(x)`` and
        ``trunk = body[0 : num_block - tail_blocks](first)``.

        Shape: ``x`` as for :meth:`forward`; both outputs ``(B, num_feat, h/u, w/u)`` in the input's
        dtype, ``u`` = :attr:`size_multiple`. ``first`` is needed by the tail for the trunk's global
        residual ``first + conv_body(body(first))``.
        """
        start = self._check_tail_blocks(tail_blocks)
        unshuffle = _UNSHUFFLE[self.scale]
        if unshuffle > 1:
            h, w = x.shape[-2:]
            if h % unshuffle or w % unshuffle:
                raise ShapeError(f"RRDBNet ×{self.scale} needs H and W divisible by {unshuffle}; got {h}×{w}")
            x = F.pixel_unshuffle(x, unshuffle)
        first = self.conv_first(x)
        trunk = first
        for block in list(self.body)[:start]:
            trunk = block(trunk)
        return first, trunk

    def tail_forward(self, first: Tensor, trunk: Tensor, tail_blocks: int) -> Tensor:
        """The rest of :meth:`forward` after :meth:`head_features`: ``body[num_block - tail_blocks :]``,
        ``conv_body`` + the global residual, the two ×2 upsampling stages, ``conv_hr`` and ``conv_last``.

        Shape: ``first``, ``trunk`` ``(B, num_feat, h, w)``; output ``(B, num_out_ch, 4h, 4w)``, so that
        ``tail_forward(*head_features(x, k), k)`` equals ``forward(x)``.
        """
        start = self._check_tail_blocks(tail_blocks)
        feat = trunk
        for block in list(self.body)[start:]:
            feat = block(feat)
        feat = first + self.conv_body(feat)
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2.0, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2.0, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))

    def head_parameter_names(self, tail_blocks: int) -> list[str]:
        """Names (``state_dict`` keys) of the parameters :meth:`head_features` uses: ``conv_first.*`` and
        ``body.<i>.*`` for ``i < num_block - tail_blocks``; everything else is the tail."""
        start = self._check_tail_blocks(tail_blocks)
        heads = ("conv_first.", *(f"body.{i}." for i in range(start)))
        return [n for n, _ in self.named_parameters() if n.startswith(heads)]

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
