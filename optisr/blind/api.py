"""``optisr.upscale``: blind real-world super-resolution of one image (or a batch of tensors)."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable
from typing import Literal, TypeAlias, overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from optisr.blind.checkpoints import LoadedModel
from optisr.blind.registry import DEFAULT_MODEL, load_model
from optisr.blind.tiling import min_tile_size, pad_to_multiple, tiled_forward
from optisr.devices import resolve_device
from optisr.errors import ConfigError, ShapeError
from optisr.io.images import white_level

__all__ = ["AlphaUpsampler", "DeviceSpec", "ModelSpec", "effective_tile_size", "get_model", "upscale"]

AlphaUpsampler: TypeAlias = Literal["model", "bicubic"]
# What ``model=`` accepts: a registry name, a weights file, a loaded model, or a module with ``scale``.
ModelSpec: TypeAlias = str | os.PathLike[str] | LoadedModel | nn.Module
# A device name ("auto", "cpu", "cuda:1", ...) or a torch.device.
DeviceSpec: TypeAlias = str | torch.device
_GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as OpenCV's RGB2GRAY
_MODEL_CACHE: dict[tuple[str, str, torch.dtype], LoadedModel] = {}


def get_model(
    model: ModelSpec = DEFAULT_MODEL,
    *,
    device: DeviceSpec = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[nn.Module, int]:
    """Resolve ``model`` to an eval-mode module on ``device``/``dtype`` and its scale.

    Named and file models are cached per (name, device, dtype), so repeated calls are cheap.
    A bare ``nn.Module`` must have an integer ``scale`` attribute; it is used as is when already
    on ``device``/``dtype``, else a converted copy is used (the caller's module is not changed).
    """
    if isinstance(model, nn.Module):
        scale = getattr(model, "scale", None)
        if not isinstance(scale, int):
            raise ConfigError("a model passed as nn.Module needs an integer `scale` attribute")
        return _on(model, device, dtype), scale
    if isinstance(model, LoadedModel):
        return _on(model.model, device, dtype), model.scale
    device = _canonical_device(device)
    key = (os.fspath(model), str(device), dtype)
    if key not in _MODEL_CACHE:
        if len(_MODEL_CACHE) >= 2:  # each full RRDBNet is 67 MB; keep the last two
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        loaded = load_model(model)
        loaded.model.to(device=device, dtype=dtype)
        _MODEL_CACHE[key] = loaded
    loaded = _MODEL_CACHE[key]
    return loaded.model, loaded.scale


def _canonical_device(device: torch.device | str) -> torch.device:
    """``cuda`` → ``cuda:<current index>``, so it compares equal to the device of a tensor on it."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _on(model: nn.Module, device: torch.device | str, dtype: torch.dtype) -> nn.Module:
    """The caller's module in eval mode on device/dtype, copied rather than changed in place."""
    p = next(model.parameters(), None)
    if p is None or (p.device == _canonical_device(device) and p.dtype == dtype):
        return model.eval()
    return copy.deepcopy(model).eval().to(device=device, dtype=dtype)


def _to_tensor(
    image: np.ndarray | Tensor,
) -> tuple[Tensor, Callable[[Tensor], np.ndarray | Tensor]]:
    """Image → (B, C, h, w) float32 in [0, 1], plus the function that converts results back."""
    if isinstance(image, Tensor):
        if image.ndim not in (3, 4) or not image.is_floating_point():
            raise ShapeError(
                f"tensor image must be float (C, h, w) or (B, C, h, w); got {image.dtype} {tuple(image.shape)}"
            )
        ndim, dtype = image.ndim, image.dtype
        x = image if ndim == 4 else image[None]

        def back_t(y: Tensor) -> Tensor:
            y = y.to(device=image.device, dtype=dtype)
            return y if ndim == 4 else y[0]

        return x.float(), back_t
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
        raise ShapeError(f"array image must be (h, w) or (h, w, 1|2|3|4); got shape {arr.shape}")
    scale_in = white_level(arr.dtype, "array image")
    ndim, np_dtype = arr.ndim, arr.dtype
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32) / np.float32(scale_in))
    t = t[None, None] if ndim == 2 else t.permute(2, 0, 1)[None]

    def back_np(y: Tensor) -> np.ndarray:
        out = y[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        if ndim == 2:
            out = out[:, :, 0]
        if np_dtype.kind == "f":
            return out.astype(np_dtype)
        return np.round(out * scale_in).astype(np_dtype)

    return t, back_np


def effective_tile_size(tile_size: int, multiple: int = 1) -> int:
    """The tile size :func:`upscale` uses: 0 stays 0 (no tiling); a positive size below
    ``max(MIN_TILE, multiple)`` is raised to that floor with a ``UserWarning``.

    Raises:
        ConfigError: ``tile_size`` is negative.
    """
    if tile_size < 0:
        raise ConfigError(f"tile_size must be >= 0 (0 = no tiling); got {tile_size}")
    floor = min_tile_size(multiple)
    if 0 < tile_size < floor:
        warnings.warn(f"tile_size {tile_size} raised to {floor} (smaller tiles multiply the work)", stacklevel=3)
        return floor
    return int(tile_size)


def _run_rgb(
    net: nn.Module,
    x: Tensor,
    *,
    scale: int,
    tile: int,
    tile_pad: int,
    device: torch.device,
    dtype: torch.dtype,
    progress: Callable[[int], None] | None,
) -> Tensor:
    """Run the network on (B, C, h, w) float32 CPU/any-device input; returns float32 (B, C', sh, sw)."""
    multiple = int(getattr(net, "size_multiple", 1))
    h, w = x.shape[-2:]
    xp, _, _ = pad_to_multiple(x, multiple)

    def fn(t: Tensor) -> Tensor:
        return net(t.to(device=device, dtype=dtype))

    with torch.inference_mode():
        out = tiled_forward(
            fn,
            xp,
            scale=scale,
            tile=tile,
            tile_pad=tile_pad,
            multiple=multiple,
            progress=progress,
        )
    out = out[:, :, : h * scale, : w * scale]
    if not torch.isfinite(out).all():
        hint = " Run in float32 (dtype=torch.float32 / --fp32)." if dtype != torch.float32 else ""
        raise ConfigError(f"the model produced NaN or infinite values in {dtype}.{hint}")
    return out


@overload
def upscale(
    image: np.ndarray,
    model: ModelSpec = DEFAULT_MODEL,
    *,
    outscale: float | None = None,
    tile_size: int = 0,
    tile_pad: int = 10,
    device: DeviceSpec | None = None,
    dtype: torch.dtype = torch.float32,
    alpha_upsampler: AlphaUpsampler = "model",
    prefilter: str = "auto",
    progress: Callable[[int], None] | None = None,
) -> np.ndarray: ...


@overload
def upscale(
    image: Tensor,
    model: ModelSpec = DEFAULT_MODEL,
    *,
    outscale: float | None = None,
    tile_size: int = 0,
    tile_pad: int = 10,
    device: DeviceSpec | None = None,
    dtype: torch.dtype = torch.float32,
    alpha_upsampler: AlphaUpsampler = "model",
    prefilter: str = "auto",
    progress: Callable[[int], None] | None = None,
) -> Tensor: ...


def upscale(
    image: np.ndarray | Tensor,
    model: ModelSpec = DEFAULT_MODEL,
    *,
    outscale: float | None = None,
    tile_size: int = 0,
    tile_pad: int = 10,
    device: DeviceSpec | None = None,
    dtype: torch.dtype = torch.float32,
    alpha_upsampler: AlphaUpsampler = "model",
    prefilter: str = "auto",
    progress: Callable[[int], None] | None = None,
) -> np.ndarray | Tensor:
    """Super-resolve an image with a blind real-world SR generator.

    Args:
        image: numpy ``(h, w)`` grey, ``(h, w, 2)`` grey+alpha, ``(h, w, 3)`` RGB or
            ``(h, w, 4)`` RGBA, dtype uint8 / uint16 / float (float in [0, 1]); or a float tensor
            ``(C, h, w)`` / ``(B, C, h, w)`` in [0, 1] with the same channel meanings.
        model: registry name (see ``optisr models list``), a weights file (``.safetensors``,
            ``.pth``, ncnn ``.param``), a :class:`LoadedModel`, an ``nn.Module`` with ``scale``,
            or ``"auto"``: an installed model chosen from the input's estimated degradation
            (:func:`optisr.blind.choice.choose_model`; numpy images only).
        outscale: final scale; the network output (×``scale`` of the model) is resized with
            antialiased bicubic when it differs. Default: the model's scale.
        tile_size: LR tile size (0 = whole image at once); sizes below
            ``max(MIN_TILE, the model's size multiple)`` (:func:`~optisr.blind.tiling.min_tile_size`) are raised to it with a ``UserWarning``
            (tiny tiles multiply the work). Tiles are cross-faded over their overlap.
        tile_pad: LR context pixels around each tile.
        device: where the network runs (``"auto"``, ``"cpu"``, ``"cuda:1"``, a ``torch.device``);
            default: the tensor's device, else CUDA when available, else CPU (see
            :func:`optisr.devices.resolve_device`). Results and accumulation stay on the input's device.
        dtype: network precision: ``torch.float32`` (default, safe), ``torch.bfloat16`` or
            ``torch.float16`` (GPU).
        alpha_upsampler: ``"model"`` (alpha through the network as grey) or ``"bicubic"``.
        prefilter: restoration before the network (:mod:`optisr.blind.prefilter`, numpy images
            only): ``"none"``, ``"deblock"``, ``"denoise"``, or ``"auto"`` (default): the chosen
            rule's pre-filter when ``model="auto"``, else none.
        progress: called with the number of tiles done (for progress bars).
    Returns:
        the same kind as ``image``: numpy with the same dtype and channel layout, size
        ``round(h·outscale) × round(w·outscale)``, or a tensor on the input's device and dtype,
        clamped to [0, 1].
    Raises:
        ShapeError: unsupported shape or dtype. ConfigError: bad option, unknown model, or
            non-finite output (e.g. float16 overflow). InputFileError: bad model file.

    Example:
        >>> from optisr.blind.archs import RRDBNet
        >>> net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4)
        >>> upscale(np.zeros((6, 5, 3), np.uint8), net).shape
        (24, 20, 3)
    """
    if alpha_upsampler not in ("model", "bicubic"):
        raise ConfigError(f"alpha_upsampler must be 'model' or 'bicubic'; got {alpha_upsampler!r}")
    if outscale is not None and not outscale > 0:
        raise ConfigError(f"outscale must be > 0; got {outscale}")
    model, filt = _resolve_auto(image, model, prefilter)
    if filt != "none":
        from optisr.blind.prefilter import apply_prefilter

        image = apply_prefilter(np.asarray(image), filt)
    x, back = _to_tensor(image)
    if device is None and isinstance(image, Tensor):
        device = image.device
    # One device rule (optisr.devices): None/"auto" = CUDA when available; an unusable device is
    # a one-line ConfigError here, before the model is loaded.
    device = resolve_device(device, what="device")
    net, scale = get_model(model, device=device, dtype=dtype)
    in_ch = int(getattr(net, "num_in_ch", 3))
    c = x.shape[1]
    if c in (2, 4):
        color, alpha = x[:, :-1], x[:, -1:]
    elif c in (1, 3):
        color, alpha = x, None
    else:
        raise ShapeError(f"image must have 1, 2, 3 or 4 channels; got {c}")

    tile = effective_tile_size(tile_size, int(getattr(net, "size_multiple", 1)))

    def run(t: Tensor, prog: Callable[[int], None] | None) -> Tensor:
        return _run_rgb(
            net,
            t,
            scale=scale,
            tile=tile,
            tile_pad=tile_pad,
            device=device,
            dtype=dtype,
            progress=prog,
        )

    grey = color.shape[1] == 1 and in_ch == 3
    out = run(color.expand(-1, 3, -1, -1) if grey else color, progress)
    if grey:
        out = _GREY[0] * out[:, 0:1] + _GREY[1] * out[:, 1:2] + _GREY[2] * out[:, 2:3]
    if alpha is not None:
        out = torch.cat(
            [
                out.clamp(0, 1),
                _upscale_alpha(alpha, scale, alpha_upsampler, run, in_ch),
            ],
            1,
        )
    if outscale is not None and outscale != scale:
        h, w = x.shape[-2:]
        size = (max(1, round(h * outscale)), max(1, round(w * outscale)))
        out = F.interpolate(
            out,
            size=size,
            mode="bicubic",
            align_corners=False,
            antialias=outscale < scale,
        )
    return back(out.clamp(0, 1))


def _resolve_auto(image: np.ndarray | Tensor, model: ModelSpec, prefilter: str) -> tuple[ModelSpec, str]:
    """``model="auto"`` → the chosen model; ``prefilter="auto"`` → the chosen pre-filter or none."""
    from optisr.blind.prefilter import PREFILTERS

    if prefilter != "auto" and prefilter not in PREFILTERS:
        raise ConfigError(f"prefilter must be auto, {', '.join(PREFILTERS)}; got {prefilter!r}")
    auto = isinstance(model, str) and model == "auto"
    if isinstance(image, Tensor) and (auto or prefilter not in ("auto", "none")):
        raise ConfigError("model='auto' and pre-filters need a numpy image, not a tensor")
    if not auto:
        return model, "none" if prefilter == "auto" else prefilter
    from optisr.blind.choice import choose_model
    from optisr.degrade.estimate import estimate_degradation

    choice = choose_model(estimate_degradation(np.asarray(image)))
    return choice.model, choice.prefilter if prefilter == "auto" else prefilter


def _upscale_alpha(
    alpha: Tensor,
    scale: int,
    how: AlphaUpsampler,
    run: Callable[[Tensor, Callable[[int], None] | None], Tensor],
    in_ch: int,
) -> Tensor:
    h, w = alpha.shape[-2:]
    lo, hi = alpha.amin(), alpha.amax()
    if lo == hi:  # fully opaque (the common case) or constant: nothing to upscale
        return alpha.new_full((alpha.shape[0], 1, h * scale, w * scale), float(lo)).to(torch.float32)
    if how == "bicubic":
        up = F.interpolate(alpha.float(), scale_factor=scale, mode="bicubic", align_corners=False)
    else:
        up = run(alpha.expand(-1, in_ch, -1, -1), None).mean(1, keepdim=True)
    return up.clamp(0, 1)
