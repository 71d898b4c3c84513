"""VGG19 perceptual loss (ESRGAN "VGG19-54"), without torchvision and without downloads.

:class:`VGG19Features` is a plain ``nn.Sequential`` named ``features`` with torchvision's
``vgg19`` layer layout, so a torchvision state dict (keys ``features.<N>.weight`` /
``features.<N>.bias``; the ``classifier.*`` keys are ignored) loads directly. Pre-activation
("before ReLU") features are returned for the requested conv layers.

torchvision ``vgg19().features`` indices of the convs (ReLU at +1, max-pools at 4, 9, 18, 27, 36)::

    conv1_1 0   conv1_2 2
    conv2_1 5   conv2_2 7
    conv3_1 10  conv3_2 12  conv3_3 14  conv3_4 16
    conv4_1 19  conv4_2 21  conv4_3 23  conv4_4 25
    conv5_1 28  conv5_2 30  conv5_3 32  conv5_4 34

Weights come only from local files (:func:`load_vgg19`). Without them the perceptual term is
**disabled**: :func:`load_vgg19` warns with :class:`PerceptualDisabledWarning` and returns
``None``, and :func:`optisr.blind.losses.build_losses` records that in
``LossSet.perceptual_enabled`` / ``perceptual_disabled_reason``. A randomly initialised VGG is
never substituted silently.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from optisr.errors import ConfigError, InputFileError, ShapeError
from optisr.io.state_dict import load_torch_checkpoint

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TORCHVISION_VGG19_FILE",
    "VGG19_LAYERS",
    "PerceptualDisabledWarning",
    "PerceptualLoss",
    "VGG19Features",
    "default_vgg19_path",
    "load_vgg19",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_VGG19_FILE = "vgg19-dcbb9e9d.pth"

# (name, out channels) of the 16 convs, in order; "M" is a 2×2 max-pool.
_CFG: list[tuple[str, int] | Literal["M"]] = [
    ("conv1_1", 64), ("conv1_2", 64), "M",
    ("conv2_1", 128), ("conv2_2", 128), "M",
    ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("conv3_4", 256), "M",
    ("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512), ("conv4_4", 512), "M",
    ("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512), ("conv5_4", 512), "M",
]  # fmt: skip


def _layer_indices() -> dict[str, int]:
    idx, out = 0, {}
    for item in _CFG:
        if isinstance(item, str):  # "M"
            idx += 1
        else:
            out[item[0]] = idx
            idx += 2  # conv, ReLU
    return out


#: conv name -> index in ``features`` (torchvision numbering).
VGG19_LAYERS: dict[str, int] = _layer_indices()


class PerceptualDisabledWarning(UserWarning):
    """No VGG19 weights were found, so the perceptual loss term is switched off."""


class VGG19Features(nn.Module):
    """Frozen VGG19 convolutional trunk returning pre-ReLU features of chosen layers.

    The trunk is built only up to the deepest requested layer (``conv5_4`` → ``features[:35]``,
    as ESRGAN truncates it), and the ReLUs are not in-place so pre-activation outputs survive.
    Input is RGB in [0, 1]; ImageNet normalisation happens inside when ``normalize``.

    Args:
        layers: conv names to return, e.g. ``("conv5_4",)``; see :data:`VGG19_LAYERS`.
        normalize: subtract the ImageNet mean and divide by its std first.

    Shape:
        input ``(B, 3, H, W)`` float in [0, 1]; output a dict ``{name: (B, C_l, H_l, W_l)}``,
        ``H_l = H / 2^(stage − 1)`` (``conv5_4``: 512 channels at H/16).

    Example:
        >>> net = VGG19Features(("conv1_2",))
        >>> net(torch.rand(1, 3, 16, 16))["conv1_2"].shape
        torch.Size([1, 64, 16, 16])
    """

    mean: Tensor
    std: Tensor

    def __init__(self, layers: tuple[str, ...] | list[str] = ("conv5_4",), *, normalize: bool = True) -> None:
        super().__init__()
        layers = tuple(layers)
        if not layers:
            raise ConfigError("VGG19Features needs at least one layer name")
        for name in layers:
            if name not in VGG19_LAYERS:
                raise ConfigError(f"unknown VGG19 layer {name!r}; valid: {', '.join(VGG19_LAYERS)}")
        self.layers = layers
        self.normalize = normalize
        last = max(VGG19_LAYERS[n] for n in layers)
        modules: list[nn.Module] = []
        c_in = 3
        for item in _CFG:
            if isinstance(item, str):  # "M"
                modules.append(nn.MaxPool2d(2, 2))
            else:
                modules += [nn.Conv2d(c_in, item[1], 3, 1, 1), nn.ReLU(inplace=False)]
                c_in = item[1]
        self.features = nn.Sequential(*modules[: last + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        # Always in eval mode: the trunk is a fixed feature extractor (no BN/dropout anyway).
        return super().train(False)

    def load_torchvision_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load ``features.<N>.*`` tensors (torchvision layout); other keys are ignored.

        Keys without the ``features.`` prefix (``<N>.weight``) are accepted too.

        Raises:
            InputFileError: a needed conv tensor is missing or has the wrong shape.
        """
        own = self.state_dict()
        picked = {}
        for key in own:
            for cand in (key, key.removeprefix("features.")):
                if cand in state:
                    picked[key] = state[cand]
                    break
        missing = [k for k in own if k not in picked]
        if missing:
            raise InputFileError(
                f"VGG19 weights lack {len(missing)} tensor(s) of the torchvision layout, e.g. "
                f"{missing[0]!r}; expected keys like 'features.0.weight' (torchvision vgg19)"
            )
        for key, t in picked.items():
            if tuple(t.shape) != tuple(own[key].shape):
                raise InputFileError(
                    f"VGG19 weight {key!r} has shape {tuple(t.shape)}, expected {tuple(own[key].shape)}"
                )
        self.load_state_dict(picked, strict=True)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ShapeError(f"VGG19Features expects (B, 3, H, W) RGB; got {tuple(x.shape)}")
        if self.normalize:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        wanted = {VGG19_LAYERS[n]: n for n in self.layers}
        out: dict[str, Tensor] = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if i in wanted:
                out[wanted[i]] = x
        return out


def default_vgg19_path() -> Path:
    """torchvision's cache location of the ImageNet VGG19 weights (may not exist).

    ``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth`` (``~/.cache/torch/...`` by default).
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_VGG19_FILE


def _read_state(path: Path) -> dict[str, Tensor]:
    state: object
    if path.suffix != ".safetensors":
        state = load_torch_checkpoint(path, what="VGG19 weights file")
    else:
        try:
            from safetensors.torch import load_file

            state = load_file(str(path))
        except Exception as exc:  # any reader failure: re-raised with the file name
            raise InputFileError(f"cannot read VGG19 weights from {path}: {exc}") from exc
    for wrapper in ("state_dict", "params_ema", "params", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict):
        raise InputFileError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, Tensor)}


def load_vgg19(
    path: str | os.PathLike[str] | None = None,
    *,
    layers: tuple[str, ...] | list[str] = ("conv5_4",),
    normalize: bool = True,
) -> VGG19Features | None:
    """VGG19 feature extractor with ImageNet weights from a local file, or ``None``.

    Args:
        path: a torchvision-layout ``.pth`` (read with ``torch.load(weights_only=True)``) or a
            ``.safetensors`` file. ``None``: use torchvision's cache file
            (:func:`default_vgg19_path`) when it exists.
        layers: conv names to extract (see :data:`VGG19_LAYERS`).
        normalize: apply ImageNet normalisation inside.
    Returns:
        a frozen :class:`VGG19Features` in eval mode, or ``None`` (after a
        :class:`PerceptualDisabledWarning`) when ``path`` is None and no cached file exists.
    Raises:
        InputFileError: ``path`` was given but is missing, unreadable or not VGG19-shaped. An
            explicit path that fails is an error, never a silent fallback.
    """
    if path is None:
        cand = default_vgg19_path()
        if not cand.is_file():
            warnings.warn(
                "perceptual loss DISABLED: no VGG19 weights given and torchvision's cache file "
                f"{cand} does not exist. Pass a local torchvision-layout vgg19 .pth/.safetensors "
                "(LossConfig.perceptual_weights_path) to enable it; a random VGG is not used.",
                PerceptualDisabledWarning,
                stacklevel=2,
            )
            return None
        path = cand
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"VGG19 weights file {path} does not exist")
    net = VGG19Features(layers, normalize=normalize)
    net.load_torchvision_state_dict(_read_state(path))
    return net


class PerceptualLoss(nn.Module):
    """Weighted L1 (or L2) distance between VGG19 features of SR and HR.

    .. math:: \\mathcal L = \\sum_l w_l\\, \\operatorname{mean}\\lvert F_l(s) - F_l(h)\\rvert

    The HR features are computed without gradient; gradients flow only into ``sr``. ESRGAN /
    RealSR / OTSR use ``{"conv5_4": 1.0}`` (pre-ReLU); Real-ESRGAN uses conv1_2 0.1,
    conv2_2 0.1, conv3_4 1, conv4_4 1, conv5_4 1.

    Args:
        vgg: a :class:`VGG19Features` whose ``layers`` include every key of ``layer_weights``.
        layer_weights: ``{conv name: weight}``.
        criterion: ``"l1"`` (default) or ``"l2"`` (mean squared error).

    Shape:
        ``sr``, ``hr``: ``(B, 3, H, W)`` in [0, 1]; returns a scalar.
    """

    def __init__(
        self,
        vgg: VGG19Features,
        layer_weights: dict[str, float] | None = None,
        *,
        criterion: str = "l1",
    ) -> None:
        super().__init__()
        layer_weights = dict(layer_weights or {"conv5_4": 1.0})
        missing = [n for n in layer_weights if n not in vgg.layers]
        if missing:
            raise ConfigError(
                f"layer_weights names {missing} that the VGG19 extractor does not output "
                f"(it has {list(vgg.layers)}); build it with load_vgg19(layers=...)"
            )
        if criterion not in ("l1", "l2"):
            raise ConfigError(f"perceptual criterion must be 'l1' or 'l2'; got {criterion!r}")
        self.vgg = vgg
        self.layer_weights = layer_weights
        self.criterion = criterion

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        if sr.shape != hr.shape:
            raise ShapeError(f"sr and hr must have the same shape; got {tuple(sr.shape)} and {tuple(hr.shape)}")
        f_sr = self.vgg(sr)
        with torch.no_grad():
            f_hr = self.vgg(hr.detach())
        dist = F.l1_loss if self.criterion == "l1" else F.mse_loss
        total = sr.new_zeros(())
        for name, w in self.layer_weights.items():
            total = total + w * dist(f_sr[name], f_hr[name])
        return total

    def extra_repr(self) -> str:
        return f"layer_weights={self.layer_weights}, criterion={self.criterion!r}"
