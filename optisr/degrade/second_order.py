"""Real-ESRGAN's second-order degradation (Wang et al., ICCVW 2021), in numpy/OpenCV.

``hr`` → [blur → random resize → Gaussian/Poisson noise → JPEG] → [blur (p = 0.8) → resize →
noise → (resize to ``H/scale`` + sinc (p = 0.8), then JPEG) or (JPEG, then resize + sinc),
each order with p = 0.5] → round to 8 bit.

Every random choice is made by :func:`sample_second_order_params` from a numpy Generator;
:func:`apply_second_order` is deterministic given those parameters (noise fields come from
sub-seeds stored in the parameters), so a degradation can be replayed or applied to several
images alike.

Defaults are Real-ESRGAN's ``train_realesrgan_x4plus`` options (``kernel_list``/``kernel_prob``,
``blur_sigma`` [0.2, 3] and [0.2, 1.5], ``betag_range`` [0.5, 4], ``betap_range`` [1, 2],
``sinc_prob`` 0.1, ``resize_prob`` [0.2, 0.7, 0.1] and [0.3, 0.4, 0.3], ``resize_range``
[0.15, 1.5] and [0.3, 1.2], ``gaussian_noise_prob`` 0.5, ``noise_range`` [1, 30] and [1, 25],
``poisson_scale_range`` [0.05, 3] and [0.05, 2.5], ``gray_noise_prob`` 0.4, ``jpeg_range``
[30, 95], ``second_blur_prob`` 0.8, ``final_sinc_prob`` 0.8, kernel sizes 7–21 odd).

Differences from the PyTorch original, all deliberate: resizing uses OpenCV (``INTER_AREA``,
``INTER_LINEAR``, ``INTER_CUBIC`` ≈ torch's area/bilinear/bicubic; OpenCV's cubic has a = −0.75
like torch's), JPEG is libjpeg through OpenCV (the original uses DiffJPEG), and the USM
sharpening of the ground truth is not part of the degradation. Images are float32
``(H, W, 3)`` in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from scipy import special

from optisr.degrade._image import check_image
from optisr.degrade.jpeg import jpeg_compress
from optisr.errors import ConfigError

__all__ = [
    "KERNEL_TYPES",
    "BlurConfig",
    "SecondOrderConfig",
    "StageConfig",
    "apply_second_order",
    "mixed_kernel",
    "second_order_degrade",
    "sample_second_order_params",
    "sinc_kernel",
]

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def _check_range(name: str, r: tuple[float, float], lo: float = 0.0) -> None:
    if len(r) != 2 or not lo <= r[0] <= r[1]:
        raise ConfigError(f"{name} must be (low, high) with {lo} <= low <= high; got {r}")


def _check_prob(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1]; got {p}")


@dataclass(frozen=True, kw_only=True)
class BlurConfig:
    """Random blur kernels of one stage."""

    prob: float = 1.0  # probability the stage blurs at all (second stage: 0.8)
    kernel_range: tuple[int, int] = (7, 21)  # odd kernel sizes drawn uniformly, pixels
    kernel_list: tuple[str, ...] = KERNEL_TYPES
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sigma_range: tuple[float, float] = (0.2, 3.0)  # principal std-devs, pixels
    betag_range: tuple[float, float] = (0.5, 4.0)  # generalized Gaussian shape β
    betap_range: tuple[float, float] = (1.0, 2.0)  # plateau shape β
    sinc_prob: float = 0.1  # probability of a sinc (ringing) kernel instead

    def __post_init__(self) -> None:
        _check_prob("blur prob", self.prob)
        _check_prob("sinc_prob", self.sinc_prob)
        lo, hi = self.kernel_range
        if lo < 1 or lo > hi or lo % 2 == 0 or hi % 2 == 0:
            raise ConfigError(f"kernel_range must hold odd sizes low <= high; got {self.kernel_range}")
        unknown = set(self.kernel_list) - set(KERNEL_TYPES)
        if unknown or len(self.kernel_list) != len(self.kernel_prob) or not self.kernel_list:
            raise ConfigError(
                f"kernel_list must be non-empty, from {', '.join(KERNEL_TYPES)}, one probability each; "
                f"got {self.kernel_list} / {self.kernel_prob}"
            )
        if any(p < 0 for p in self.kernel_prob) or not sum(self.kernel_prob) > 0:
            raise ConfigError(f"kernel_prob must be >= 0 with a positive sum; got {self.kernel_prob}")
        _check_range("sigma_range", self.sigma_range, 1e-6)
        _check_range("betag_range", self.betag_range, 1e-6)
        _check_range("betap_range", self.betap_range, 1e-6)


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    """One degradation stage: blur, resize, noise, JPEG."""

    blur: BlurConfig = field(default_factory=BlurConfig)
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)  # factor range; up draws from [1, high], down from [low, 1]
    resize_modes: tuple[str, ...] = ("area", "bilinear", "bicubic")  # drawn uniformly
    gaussian_noise_prob: float = 0.5  # else Poisson
    noise_range: tuple[float, float] = (1.0, 30.0)  # Gaussian σ, 0–255 units
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4  # same noise on every channel
    jpeg_range: tuple[int, int] = (30, 95)

    def __post_init__(self) -> None:
        if len(self.resize_prob) != 3 or any(p < 0 for p in self.resize_prob) or not sum(self.resize_prob) > 0:
            raise ConfigError(f"resize_prob must be three weights (up, down, keep); got {self.resize_prob}")
        _check_range("resize_range", self.resize_range, 1e-3)
        bad = set(self.resize_modes) - set(RESIZE_MODES)
        if bad or not self.resize_modes:
            raise ConfigError(f"resize_modes must be from {', '.join(RESIZE_MODES)}; got {self.resize_modes}")
        _check_prob("gaussian_noise_prob", self.gaussian_noise_prob)
        _check_prob("gray_noise_prob", self.gray_noise_prob)
        _check_range("noise_range", self.noise_range)
        _check_range("poisson_scale_range", self.poisson_scale_range)
        if not 1 <= self.jpeg_range[0] <= self.jpeg_range[1] <= 100:
            raise ConfigError(f"jpeg_range must lie in 1..100; got {self.jpeg_range}")


def _second_stage() -> StageConfig:
    return StageConfig(
        blur=BlurConfig(prob=0.8, sigma_range=(0.2, 1.5)),
        resize_prob=(0.3, 0.4, 0.3),
        resize_range=(0.3, 1.2),
        noise_range=(1.0, 25.0),
        poisson_scale_range=(0.05, 2.5),
    )


@dataclass(frozen=True, kw_only=True)
class SecondOrderConfig:
    """The whole pipeline; defaults are Real-ESRGAN's ×4 options."""

    scale: int = 4  # the LR is H/scale × W/scale
    first: StageConfig = field(default_factory=StageConfig)
    second: StageConfig = field(default_factory=_second_stage)
    final_sinc_prob: float = 0.8
    final_sinc_kernel_range: tuple[int, int] = (7, 21)
    final_sinc_omega_range: tuple[float, float] = (math.pi / 3, math.pi)  # cut-off, rad/pixel
    final_resize_modes: tuple[str, ...] = ("area", "bilinear", "bicubic")

    def __post_init__(self) -> None:
        if int(self.scale) != self.scale or self.scale < 1:
            raise ConfigError(f"scale must be a positive integer; got {self.scale}")
        _check_prob("final_sinc_prob", self.final_sinc_prob)
        _check_range("final_sinc_omega_range", self.final_sinc_omega_range, 1e-6)


# ------------------------------------------------------------------------------------------
# kernels
# ------------------------------------------------------------------------------------------


def _quad_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    inv = np.linalg.inv(rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T)
    r = np.arange(size, dtype=np.float64) - size // 2
    xx, yy = np.meshgrid(r, r)
    return inv[0, 0] * xx * xx + 2 * inv[0, 1] * xx * yy + inv[1, 1] * yy * yy


def mixed_kernel(kind: str, size: int, sigma_x: float, sigma_y: float, theta: float, beta: float = 1.0) -> np.ndarray:
    """A Gaussian-family blur kernel, normalised to sum 1, ``(size, size)`` float64.

    With ``q = xᵀΣ⁻¹x`` (Σ from the principal std-devs and rotation): Gaussian ``exp(−q/2)``,
    generalized Gaussian ``exp(−½ q^β)``, plateau ``1 / (1 + q^β)``. ``*_iso`` kinds should get
    ``sigma_y = sigma_x`` and ``theta = 0`` (the sampler does that).
    """
    q = _quad_form(size, sigma_x, sigma_y, theta)
    if kind in ("iso", "aniso"):
        k = np.exp(-0.5 * q)
    elif kind.startswith("generalized"):
        k = np.exp(-0.5 * np.power(q, beta))
    elif kind.startswith("plateau"):
        k = 1.0 / (1.0 + np.power(q, beta))
    else:
        raise ConfigError(f"unknown kernel kind {kind!r}; choose one of {', '.join(KERNEL_TYPES)}")
    return k / k.sum()


def sinc_kernel(size: int, omega_c: float) -> np.ndarray:
    """Circular low-pass (2-D sinc) kernel with cut-off ``omega_c`` rad/pixel, sum 1.

    ``k(r) = ω J₁(ω r) / (2π r)``, ``k(0) = ω² / (4π)``; simulates ringing and overshoot.
    """
    if size < 1 or size % 2 == 0:
        raise ConfigError(f"sinc kernel size must be odd; got {size}")
    r1 = np.arange(size, dtype=np.float64) - size // 2
    r = np.hypot(r1[:, None], r1[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        k = omega_c * special.j1(omega_c * r) / (2 * math.pi * r)
    k[r == 0] = omega_c**2 / (4 * math.pi)
    return k / k.sum()


def _odd_size(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(2 * rng.integers(lo // 2, hi // 2 + 1) + 1)


def _sample_blur(cfg: BlurConfig, rng: np.random.Generator) -> np.ndarray:
    size = _odd_size(rng, *cfg.kernel_range)
    if rng.uniform() < cfg.sinc_prob:
        omega = rng.uniform(math.pi / 3, math.pi) if size < 13 else rng.uniform(math.pi / 5, math.pi)
        return sinc_kernel(size, omega)
    p = np.asarray(cfg.kernel_prob, dtype=np.float64)
    kind = cfg.kernel_list[int(rng.choice(len(p), p=p / p.sum()))]
    sx = rng.uniform(*cfg.sigma_range)
    if kind.endswith("iso") and not kind.endswith("aniso"):
        sy, theta = sx, 0.0
    else:
        sy, theta = rng.uniform(*cfg.sigma_range), rng.uniform(-math.pi, math.pi)
    beta = 1.0
    if kind.startswith("generalized") or kind.startswith("plateau"):
        lo, hi = cfg.betag_range if kind.startswith("generalized") else cfg.betap_range
        beta = rng.uniform(lo, 1.0) if rng.uniform() < 0.5 and lo < 1.0 else rng.uniform(max(lo, 1.0), hi)
    return mixed_kernel(kind, size, sx, sy, theta, beta)


# ------------------------------------------------------------------------------------------
# parameters and application
# ------------------------------------------------------------------------------------------


def _sample_stage(cfg: StageConfig, rng: np.random.Generator) -> dict[str, Any]:
    blur = _sample_blur(cfg.blur, rng) if rng.uniform() < cfg.blur.prob else None
    p = np.asarray(cfg.resize_prob, dtype=np.float64)
    updown = ("up", "down", "keep")[int(rng.choice(3, p=p / p.sum()))]
    factor = {"up": lambda: rng.uniform(1.0, cfg.resize_range[1]),
              "down": lambda: rng.uniform(cfg.resize_range[0], 1.0),
              "keep": lambda: 1.0}[updown]()  # fmt: skip
    mode = cfg.resize_modes[int(rng.integers(len(cfg.resize_modes)))]
    gaussian = bool(rng.uniform() < cfg.gaussian_noise_prob)
    noise_level = rng.uniform(*(cfg.noise_range if gaussian else cfg.poisson_scale_range))
    return {
        "blur": blur,
        "resize": float(factor),
        "resize_mode": mode,
        "noise": "gaussian" if gaussian else "poisson",
        "noise_level": float(noise_level),  # σ (0–255 units) or Poisson scale
        "gray_noise": bool(rng.uniform() < cfg.gray_noise_prob),
        "noise_seed": int(rng.integers(2**63 - 1)),
        "jpeg_quality": int(rng.integers(cfg.jpeg_range[0], cfg.jpeg_range[1] + 1)),
    }


def sample_second_order_params(cfg: SecondOrderConfig, generator: np.random.Generator) -> dict[str, Any]:
    """Draw every random quantity of one degradation (kernels, factors, modes, noise seeds, qualities)."""
    first = _sample_stage(cfg.first, generator)
    second = _sample_stage(cfg.second, generator)
    sinc = None
    if generator.uniform() < cfg.final_sinc_prob:
        size = _odd_size(generator, *cfg.final_sinc_kernel_range)
        sinc = sinc_kernel(size, generator.uniform(*cfg.final_sinc_omega_range))
    return {
        "scale": int(cfg.scale),
        "first": first,
        "second": second,
        "final_sinc": sinc,
        "final_resize_mode": cfg.final_resize_modes[int(generator.integers(len(cfg.final_resize_modes)))],
        "final_order": "resize_first" if generator.uniform() < 0.5 else "jpeg_first",
    }


def _filter(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    out = cv2.filter2D(x, -1, k.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)
    return out[:, :, None] if out.ndim == 2 else out


def _resize(x: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    h, w = max(1, size[0]), max(1, size[1])
    if (h, w) == x.shape[:2]:
        return x
    out = cv2.resize(x, (w, h), interpolation=RESIZE_MODES[mode])
    return out[:, :, None] if out.ndim == 2 else out


def _add_noise(x: np.ndarray, kind: str, level: float, gray: bool, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w, c = x.shape
    if kind == "gaussian":
        noise = rng.standard_normal((h, w, 1 if gray else c)).astype(np.float32) * np.float32(level / 255.0)
    else:
        src = x
        if gray:  # Poisson noise of the BT.601 grey image, shared by every channel
            src = (x[:, :, :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[:, :, None] if c >= 3 else x
        q = np.clip(np.round(src * 255.0), 0, 255) / 255.0
        vals = len(np.unique(q))
        vals = 2 ** math.ceil(math.log2(max(vals, 2)))
        noise = (rng.poisson(q * vals) / vals - q).astype(np.float32) * np.float32(level)
    return np.clip(x + noise, 0.0, 1.0).astype(np.float32)  # broadcasts grey noise over channels


def _apply_stage(x: np.ndarray, p: dict[str, Any], base: tuple[int, int] | None) -> np.ndarray:
    if p["blur"] is not None:
        x = _filter(x, p["blur"])
    ref = base if base is not None else x.shape[:2]
    x = _resize(x, (int(ref[0] * p["resize"]), int(ref[1] * p["resize"])), p["resize_mode"])
    x = _add_noise(x, p["noise"], p["noise_level"], p["gray_noise"], p["noise_seed"])
    return x


def apply_second_order(hr: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Apply a sampled degradation.

    Args:
        hr: ``(H, W, C)`` float32 in [0, 1] (C = 1 or 3).
        params: from :func:`sample_second_order_params`.
    Returns:
        ``(H // scale, W // scale, C)`` float32 on the 1/255 grid.
    """
    x = check_image(hr, "hr")
    h, w = x.shape[:2]
    s = params["scale"]
    out_size = (h // s, w // s)
    if min(out_size) < 1:
        raise ConfigError(f"image {h}×{w} is smaller than the scale {s}")
    first, second = params["first"], params["second"]
    x = _apply_stage(x, first, None)
    x = jpeg_compress(np.clip(x, 0, 1), first["jpeg_quality"])
    # stage 2 resizes relative to the final LR size, as Real-ESRGAN does
    x = _apply_stage(x, second, out_size)
    sinc = params["final_sinc"]
    if params["final_order"] == "resize_first":
        x = _resize(x, out_size, params["final_resize_mode"])
        if sinc is not None:
            x = _filter(x, sinc)
        x = jpeg_compress(np.clip(x, 0, 1), second["jpeg_quality"])
    else:
        x = jpeg_compress(np.clip(x, 0, 1), second["jpeg_quality"])
        x = _resize(x, out_size, params["final_resize_mode"])
        if sinc is not None:
            x = _filter(x, sinc)
    return (np.clip(np.round(x * 255.0), 0, 255) / 255.0).astype(np.float32)


def second_order_degrade(hr: np.ndarray, cfg: SecondOrderConfig | None, generator: np.random.Generator) -> np.ndarray:
    """Sample parameters from ``cfg`` with ``generator`` and apply them (see module docstring)."""
    cfg = cfg or SecondOrderConfig()
    return apply_second_order(hr, sample_second_order_params(cfg, generator))
