"""Discriminators (critics) for GAN training of blind SR generators.

Three families, with attribute names chosen so that state dicts saved by BasicSR / ESRGAN /
RealSR / Real-ESRGAN load unchanged:

* :class:`VGGStyleDiscriminator` -- ESRGAN / RealSR / OTSR "VGG-128": ten convs (BN after all
  but the first), two linear layers, **one scalar per image**; the input must be exactly
  ``input_size`` (128 or 256) square. Keys ``conv0_0``, ``conv0_1``, ``bn0_1``, …,
  ``linear1``, ``linear2``.
* :class:`NLayerDiscriminator` -- pix2pix PatchGAN (RealSR's DPED critic): a logit map,
  ``14×14`` at a 128² input for 3 layers. Keys ``model.<i>.*``.
* :class:`UNetDiscriminatorSN` -- Real-ESRGAN's U-Net with spectral norm: **one logit per
  pixel**. Keys ``conv0`` … ``conv9`` (``weight_orig``, ``weight_u``, ``weight_v`` under SN).

:func:`build_critic` builds any of them from a :class:`CriticConfig` or a plain dict.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch  # noqa: F401  (used by the doctest examples)
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm

from optisr.errors import ConfigError, ShapeError

__all__ = [
    "CRITICS",
    "CriticConfig",
    "NLayerDiscriminator",
    "UNetDiscriminatorSN",
    "VGGStyleDiscriminator",
    "build_critic",
]


def _check_image(x: Tensor, channels: int, who: str) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise ShapeError(f"{who} expects (B, {channels}, H, W) input; got shape {tuple(x.shape)}")


class VGGStyleDiscriminator(nn.Module):
    """ESRGAN/SRGAN "VGG-128" critic with BatchNorm; one scalar per image.

    Stages ``i = 0..4`` (``0..5`` for ``input_size=256``): a 3×3 stride-1 conv ``convi_0``
    then a 4×4 stride-2 conv ``convi_1``; BN (``bni_0``, ``bni_1``) after every conv except
    ``conv0_0``; LeakyReLU(0.2) after every conv. Widths ``nf, 2nf, 4nf, 8nf, 8nf(, 8nf)``.
    The 4×4×8nf map is flattened into ``linear1`` (→100), LeakyReLU, ``linear2`` (→1).
    With ``num_feat=64`` and 128² input: 14.5 M parameters (as in the research note §1.2).

    Because of BN in training mode, a sample's score depends on the rest of its batch; OTSR
    keeps this (it calls D on real and fake batches separately).

    Args:
        num_in_ch: image channels (3).
        num_feat: base width ``nf`` (64 in ESRGAN / RealSR / OTSR).
        input_size: 128 or 256; the input must be exactly this size.

    Shape:
        input ``(B, num_in_ch, input_size, input_size)``, float; output ``(B, 1)`` raw scores.

    Example:
        >>> d = VGGStyleDiscriminator(num_feat=8)
        >>> d(torch.rand(2, 3, 128, 128)).shape
        torch.Size([2, 1])
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, *, input_size: int = 128) -> None:
        super().__init__()
        if input_size not in (128, 256):
            raise ConfigError(f"VGGStyleDiscriminator input_size must be 128 or 256; got {input_size}")
        self.num_in_ch = num_in_ch
        self.num_feat = num_feat
        self.input_size = input_size
        widths = [num_feat, 2 * num_feat, 4 * num_feat, 8 * num_feat, 8 * num_feat]
        if input_size == 256:
            widths.append(8 * num_feat)
        self.num_stages = len(widths)
        c_in = num_in_ch
        for i, c in enumerate(widths):
            # conv0_0 has a bias and no BN; every later conv is bias-free and followed by BN.
            setattr(self, f"conv{i}_0", nn.Conv2d(c_in, c, 3, 1, 1, bias=(i == 0)))
            if i > 0:
                setattr(self, f"bn{i}_0", nn.BatchNorm2d(c, affine=True))
            setattr(self, f"conv{i}_1", nn.Conv2d(c, c, 4, 2, 1, bias=False))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(c, affine=True))
            c_in = c
        self.linear1 = nn.Linear(widths[-1] * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)

    def forward(self, x: Tensor) -> Tensor:
        _check_image(x, self.num_in_ch, "VGGStyleDiscriminator")
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ShapeError(
                f"VGGStyleDiscriminator(input_size={self.input_size}) needs "
                f"{self.input_size}×{self.input_size} input (its linear layer is sized for it); got "
                f"{x.shape[-2]}×{x.shape[-1]}. Crop HR patches to {self.input_size}, or use the "
                "'patchgan' or 'unet-sn' critic, which take any size."
            )
        feat = x
        for i in range(self.num_stages):
            feat = getattr(self, f"conv{i}_0")(feat)
            if i > 0:
                feat = getattr(self, f"bn{i}_0")(feat)
            feat = F.leaky_relu(feat, 0.2)
            feat = F.leaky_relu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(feat)), 0.2)
        feat = F.leaky_relu(self.linear1(feat.flatten(1)), 0.2)
        return self.linear2(feat)  # (B, 1)

    def extra_repr(self) -> str:
        return f"num_in_ch={self.num_in_ch}, num_feat={self.num_feat}, input_size={self.input_size}"


class NLayerDiscriminator(nn.Module):
    """PatchGAN (pix2pix) critic: a map of logits, one per overlapping receptive field.

    Layout (``model`` is an ``nn.Sequential``, so keys are ``model.<i>.weight`` as in RealSR):
    a 4×4 stride-2 conv ``nf`` + LeakyReLU; ``n_layers − 1`` blocks of 4×4 stride-2 conv +
    norm + LeakyReLU with widths ``nf·min(2^n, 8)``; one 4×4 stride-1 conv + norm + LeakyReLU;
    a final 4×4 stride-1 conv to one channel. Convs before a BatchNorm carry no bias (as in
    pix2pix: BN's shift replaces it); with ``norm="instance"`` or ``"none"`` they do.

    Args:
        num_in_ch: image channels.
        num_feat: base width ``nf`` (64).
        n_layers: number of stride-2 convs (3: a 70×70 receptive field).
        norm: ``"batch"`` (RealSR), ``"instance"`` or ``"none"``.

    Shape:
        input ``(B, num_in_ch, H, W)`` with ``H, W >= 2^n_layers·4`` or so; output
        ``(B, 1, H', W')`` logits, ``H' = H/2^n_layers − 2`` (14×14 at 128² for 3 layers).

    Example:
        >>> NLayerDiscriminator(num_feat=8)(torch.rand(1, 3, 128, 128)).shape
        torch.Size([1, 1, 14, 14])
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_feat: int = 64,
        *,
        n_layers: int = 3,
        norm: Literal["batch", "instance", "none"] = "batch",
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ConfigError(f"NLayerDiscriminator n_layers must be >= 1; got {n_layers}")
        if norm not in ("batch", "instance", "none"):
            raise ConfigError(f"NLayerDiscriminator norm must be 'batch', 'instance' or 'none'; got {norm!r}")
        self.num_in_ch = num_in_ch
        self.num_feat = num_feat
        self.n_layers = n_layers
        self.norm = norm
        bias = norm != "batch"

        def norm_layer(c: int) -> list[nn.Module]:
            if norm == "batch":
                return [nn.BatchNorm2d(c)]
            if norm == "instance":
                return [nn.InstanceNorm2d(c)]
            return []

        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 4, 2, 1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(num_feat * prev, num_feat * mult, 4, stride, 1, bias=bias)]
            layers += [*norm_layer(num_feat * mult), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(num_feat * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        _check_image(x, self.num_in_ch, "NLayerDiscriminator")
        return self.model(x)

    def extra_repr(self) -> str:
        return f"num_in_ch={self.num_in_ch}, num_feat={self.num_feat}, n_layers={self.n_layers}, norm={self.norm!r}"


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's U-Net critic with spectral norm: one realness logit per pixel.

    Encoder ``conv0`` (3×3, no SN) then ``conv1..conv3`` (4×4 stride 2, ``nf → 2nf → 4nf →
    8nf``); decoder ``conv4..conv6`` (3×3) each after a bilinear ×2 upsample, with the encoder
    features of the same size added when ``skip_connection``; ``conv7``, ``conv8`` (3×3) and
    the output conv ``conv9`` (3×3 → 1, no SN). LeakyReLU(0.2) after every conv but the last.
    Spectral norm uses :func:`torch.nn.utils.spectral_norm`, whose keys (``weight_orig``,
    ``weight_u``, ``weight_v``) are those of Real-ESRGAN checkpoints. 4.4 M parameters at
    ``num_feat=64``.

    Args:
        num_in_ch: image channels.
        num_feat: base width ``nf`` (64).
        skip_connection: add encoder features in the decoder (True in Real-ESRGAN).

    Shape:
        input ``(B, num_in_ch, H, W)`` with H and W multiples of 8; output ``(B, 1, H, W)``.

    Example:
        >>> UNetDiscriminatorSN(num_feat=8)(torch.rand(1, 3, 32, 24)).shape
        torch.Size([1, 1, 32, 24])
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, *, skip_connection: bool = True) -> None:
        super().__init__()
        self.num_in_ch = num_in_ch
        self.num_feat = num_feat
        self.skip_connection = skip_connection
        nf = num_feat
        self.conv0 = nn.Conv2d(num_in_ch, nf, 3, 1, 1)
        self.conv1 = spectral_norm(nn.Conv2d(nf, 2 * nf, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(2 * nf, 4 * nf, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(4 * nf, 8 * nf, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(8 * nf, 4 * nf, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(4 * nf, 2 * nf, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(2 * nf, nf, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        _check_image(x, self.num_in_ch, "UNetDiscriminatorSN")
        h, w = x.shape[-2:]
        if h % 8 or w % 8:
            raise ShapeError(f"UNetDiscriminatorSN needs H and W divisible by 8 (three stride-2 stages); got {h}×{w}")

        def act(t: Tensor) -> Tensor:
            return F.leaky_relu(t, 0.2)

        def up(t: Tensor) -> Tensor:
            return F.interpolate(t, scale_factor=2.0, mode="bilinear", align_corners=False)

        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = act(self.conv5(up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = act(self.conv6(up(x5)))
        if self.skip_connection:
            x6 = x6 + x0
        out = act(self.conv8(act(self.conv7(x6))))
        return self.conv9(out)

    def extra_repr(self) -> str:
        return f"num_in_ch={self.num_in_ch}, num_feat={self.num_feat}, skip_connection={self.skip_connection}"


CRITICS = ("vgg128", "patchgan", "unet-sn")


@dataclass(frozen=True, kw_only=True)
class CriticConfig:
    """Which critic to build, and its hyperparameters.

    Fields that do not apply to the chosen ``type`` are ignored.
    """

    type: Literal["vgg128", "patchgan", "unet-sn"] = "vgg128"  # OTSR's default critic
    num_in_ch: int = 3
    num_feat: int = 64  # base width nf
    input_size: int = 128  # vgg128 only: 128 or 256 px, input must match
    n_layers: int = 3  # patchgan only: stride-2 convs
    norm: Literal["batch", "instance", "none"] = "batch"  # patchgan only
    skip_connection: bool = True  # unet-sn only


def _as_config(cfg: CriticConfig | dict[str, Any] | None) -> CriticConfig:
    if cfg is None:
        return CriticConfig()
    if isinstance(cfg, CriticConfig):
        return cfg
    if not isinstance(cfg, dict):
        raise ConfigError(f"critic config must be a CriticConfig or a dict; got {type(cfg).__name__}")
    valid = [f.name for f in fields(CriticConfig)]
    for key in cfg:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown critic option {key!r}{hint}; valid options: {', '.join(valid)}")
    return CriticConfig(**cfg)


def build_critic(cfg: CriticConfig | dict[str, Any] | None = None) -> nn.Module:
    """Build a critic from a :class:`CriticConfig` or a dict of its fields.

    Args:
        cfg: e.g. ``{"type": "unet-sn", "num_feat": 32}``; ``None`` gives OTSR's VGG-128.
    Returns:
        :class:`VGGStyleDiscriminator`, :class:`NLayerDiscriminator` or
        :class:`UNetDiscriminatorSN`, in training mode.
    Raises:
        ConfigError: unknown ``type`` or option (with a suggestion), invalid value.
    """
    c = _as_config(cfg)
    if c.type == "vgg128":
        return VGGStyleDiscriminator(c.num_in_ch, c.num_feat, input_size=c.input_size)
    if c.type == "patchgan":
        return NLayerDiscriminator(c.num_in_ch, c.num_feat, n_layers=c.n_layers, norm=c.norm)
    if c.type == "unet-sn":
        return UNetDiscriminatorSN(c.num_in_ch, c.num_feat, skip_connection=c.skip_connection)
    close = difflib.get_close_matches(str(c.type), CRITICS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown critic type {c.type!r}{hint}; choose one of {', '.join(CRITICS)}")
