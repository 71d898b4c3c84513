"""SRVGGNetCompact: a plain VGG-style SR network with a pixel-shuffle tail (fast on CPU).

Key layout matches Real-ESRGAN's compact models (``realesr-animevideov3``,
``realesr-general-x4v3``): a single ``body`` sequential holding, in order,

``body.0`` first conv (in → nf), ``body.1`` activation, then ``num_conv`` × (conv nf → nf,
activation), and the last conv (nf → out·scale²) at ``body.{2·num_conv + 2}``.

The output is ``pixel_shuffle(body(x)) + nearest_upsample(x)``: the network learns a residual
over nearest-neighbour upsampling.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from optisr.errors import ConfigError

__all__ = ["SRVGGNetCompact", "kaiming_init_"]

ActType = Literal["prelu", "relu", "leakyrelu"]


def _activation(act_type: str, num_feat: int) -> nn.Module:
    if act_type == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if act_type == "relu":
        return nn.ReLU(inplace=True)
    if act_type == "leakyrelu":
        return nn.LeakyReLU(negative_slope=0.1, inplace=True)
    raise ConfigError(f"act_type must be one of 'prelu', 'relu', 'leakyrelu'; got {act_type!r}")


class SRVGGNetCompact(nn.Module):
    """Compact VGG-style SR net: ``num_conv + 2`` 3×3 convs at LR, pixel shuffle, nearest skip.

    Args:
        num_in_ch: image channels in.
        num_out_ch: image channels out.
        num_feat: width of every hidden conv.
        num_conv: number of hidden nf → nf convs (16 in animevideov3, 32 in general-x4v3).
        scale: upscale factor (any integer >= 1).
        act_type: ``"prelu"`` (Real-ESRGAN's choice), ``"relu"`` or ``"leakyrelu"`` (slope 0.1).

    Shape:
        input ``(B, num_in_ch, h, w)`` float in [0, 1]; output ``(B, num_out_ch, scale·h, scale·w)``.

    Example:
        >>> import torch
        >>> SRVGGNetCompact(num_feat=8, num_conv=2, scale=2)(torch.rand(1, 3, 5, 7)).shape
        torch.Size([1, 3, 10, 14])
    """

    size_multiple = 1

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        *,
        num_feat: int = 64,
        num_conv: int = 16,
        scale: int = 4,
        act_type: ActType = "prelu",
    ) -> None:
        super().__init__()
        if scale < 1:
            raise ConfigError(f"scale must be >= 1; got {scale}")
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.num_feat = num_feat
        self.num_conv = num_conv
        self.scale = scale
        self.act_type = act_type
        layers: list[nn.Module] = [
            nn.Conv2d(num_in_ch, num_feat, 3, 1, 1),
            _activation(act_type, num_feat),
        ]
        for _ in range(num_conv):
            layers += [
                nn.Conv2d(num_feat, num_feat, 3, 1, 1),
                _activation(act_type, num_feat),
            ]
        layers.append(nn.Conv2d(num_feat, num_out_ch * scale * scale, 3, 1, 1))
        self.body = nn.Sequential(*layers)

    def hyperparameters(self) -> dict[str, int | str]:
        """Constructor arguments, for round trips and safetensors metadata."""
        return {
            "num_in_ch": self.num_in_ch,
            "num_out_ch": self.num_out_ch,
            "num_feat": self.num_feat,
            "num_conv": self.num_conv,
            "scale": self.scale,
            "act_type": self.act_type,
        }

    def forward(self, x: Tensor) -> Tensor:
        out = F.pixel_shuffle(self.body(x), self.scale)
        base = F.interpolate(x, scale_factor=float(self.scale), mode="nearest")
        if self.num_out_ch != self.num_in_ch:  # the skip only makes sense channel-for-channel
            return out
        return out + base

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())


def kaiming_init_(model: SRVGGNetCompact, *, last_scale: float = 0.1) -> SRVGGNetCompact:
    """Re-initialise ``model`` in place for training from scratch: He-normal convs, zero biases.

    PyTorch's default conv init shrinks the signal by about 1/√3 per layer, so after a few of the
    ``num_conv + 2`` layers the output no longer depends on the input and training stalls at
    "nearest upsampling" (measured: 1500 steps without progress). He-normal (``fan_in``, gain for
    PReLU slope 0.25) keeps the activations' scale; the last conv is multiplied by ``last_scale`` so
    the initial output stays close to the nearest-upsampling skip. Returns ``model``.
    """
    convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
    for i, conv in enumerate(convs):
        nn.init.kaiming_normal_(conv.weight, a=0.25, mode="fan_in", nonlinearity="leaky_relu")
        if i == len(convs) - 1:
            conv.weight.data.mul_(last_scale)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
    return model
