"""Classic, training-free guided upsampling baselines (NumPy / OpenCV / Pillow).

Every baseline has the signature ``f(source_lr, guide, scale, mask_lr=None, **options)`` and
returns the (H, W) float64 upsampled depth at the guide's size: ``H = scale * h`` for an integer
``scale``, or with ``scale=None`` any size at least the source's (a non-integer ratio such as a
180×240 ToF map beside a 480×640 image; each axis has its own ratio ``H / h``, ``W / w``):

* :func:`bicubic` -- Pillow (or OpenCV) bicubic upsampling of the float image;
* :func:`guided_filter` -- He et al. (ECCV 2010) colour guided filter applied to the bicubic
  upsampling, with a box filter written here (cumulative sums, windows truncated at borders);
* :func:`jbu` -- joint bilateral upsampling, Kopf et al. (SIGGRAPH 2007), vectorised over the
  LR window offsets;
* :func:`fbs` -- Barron & Poole's fast bilateral solver (ECCV 2016) on the bicubic upsampling,
  optisr's own bilateral-grid implementation (:mod:`optisr.guided.fbs`).

Invalid LR pixels (``mask_lr == False`` or non-finite values) are ignored: bicubic and the
filters see them filled with the nearest valid value, JBU and FBS give them zero weight.
None of these baselines is consistent with the LR input; project the result if that matters.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from optisr.errors import ConfigError, ShapeError
from optisr.guided.fbs import fast_bilateral_solve

__all__ = [
    "BASELINES",
    "get_baseline",
    "bicubic",
    "guided_filter",
    "jbu",
    "fbs",
    "box_mean",
    "fbs_available",
    "FBS_CONFIDENCES",
]

Baseline = Callable[..., np.ndarray]


# ------------------------------------------------------------------------------------- checks


def _prepare(
    source_lr: np.ndarray, guide: np.ndarray, scale: int | None, mask_lr: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]:
    """Validate inputs; return (source with invalid pixels filled, valid mask, guide, (ry, rx)).

    The returned source and guide are float64; the guide is (H, W, C) with C = 1 or 3.
    ``(ry, rx) = (H / h, W / w)``: ``(scale, scale)`` for an integer ``scale``; with ``scale=None``
    the guide's own size fixes them (each ≥ 1).
    """
    src = np.asarray(source_lr, dtype=np.float64)
    if src.ndim != 2 or src.size == 0:
        raise ShapeError(f"source_lr must be a non-empty (h, w) array; got shape {src.shape}")
    if scale is not None:
        if isinstance(scale, bool) or int(scale) != scale or scale < 1:
            raise ConfigError(f"scale must be an integer >= 1 (or None: from the sizes), got {scale!r}")
        scale = int(scale)
    g = np.asarray(guide, dtype=np.float64)
    if g.ndim == 2:
        g = g[:, :, None]
    h, w = src.shape
    if g.ndim != 3 or g.shape[2] not in (1, 3):
        raise ShapeError(f"guide must be (H, W, 3) or (H, W); got shape {np.shape(guide)}")
    if scale is None:
        if g.shape[0] < h or g.shape[1] < w:
            raise ShapeError(f"the guide ({g.shape[0]}x{g.shape[1]}) must be at least as large as the source ({h}x{w})")
        ratio = (g.shape[0] / h, g.shape[1] / w)
    elif g.shape[:2] != (h * scale, w * scale):
        raise ShapeError(
            f"guide must be {h * scale}x{w * scale} (source {h}x{w} times scale {scale}); "
            f"got {g.shape[0]}x{g.shape[1]}. Crop the guide to a multiple of the scale, or pass scale=None."
        )
    else:
        ratio = (float(scale), float(scale))
    if not np.all(np.isfinite(g)):
        raise ConfigError("guide contains NaN or inf values")
    valid = np.isfinite(src)
    if mask_lr is not None:
        m = np.asarray(mask_lr, dtype=bool)
        if m.shape != src.shape:
            raise ShapeError(f"mask_lr shape {m.shape} does not match source_lr shape {src.shape}")
        valid &= m
    if not valid.any():
        raise ConfigError("source_lr has no valid pixel (all masked, NaN or inf)")
    if not valid.all():  # so that interpolation stays finite
        src = fill_nearest(src, valid)
    return src, valid, g, ratio


def _nominal(ratio: tuple[float, float]) -> int:
    """The integer scale a ratio stands for in window sizes: ``round(√(ry·rx))``, at least 1."""
    return max(1, round(float(np.sqrt(ratio[0] * ratio[1]))))


def _lr_coords(n_hr: int, r: float) -> np.ndarray:
    """Continuous LR coordinates (pixel centres at integers) of the ``n_hr`` HR pixel centres at ratio ``r``."""
    return (np.arange(n_hr) + 0.5) / r - 0.5


def fill_nearest(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Copy of 2-D ``x`` with every invalid pixel set to its nearest valid one (``valid`` must have one)."""
    if valid.all():
        return x
    idx = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return x[tuple(idx)]


def _resize_float(x: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """Resize a 2-D float array to ``size = (H, W)`` with bicubic interpolation."""
    if method == "pil":
        from PIL import Image

        out = Image.fromarray(x.astype(np.float32), mode="F").resize((size[1], size[0]), Image.BICUBIC)  # type: ignore[attr-defined,unused-ignore]  # pillow>=9.0 has it; newer stubs only list Resampling.BICUBIC
        return np.asarray(out, dtype=np.float64)
    if method == "opencv":
        import cv2

        return cv2.resize(x.astype(np.float64), (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    raise ConfigError(f"method must be 'pil' or 'opencv', got {method!r}")


# ------------------------------------------------------------------------------------ bicubic


def bicubic(
    source_lr: np.ndarray,
    guide: np.ndarray,
    scale: int | None,
    mask_lr: np.ndarray | None = None,
    *,
    method: str = "pil",
) -> np.ndarray:
    """Bicubic upsampling (the guide only fixes the output size).

    Args:
        source_lr: (h, w) float depth, any unit.
        guide: (H, W, 3) float RGB in [0, 1], H = scale·h, W = scale·w.
        scale: integer scale >= 1, or None: the guide's size, at any ratio.
        mask_lr: optional (h, w) bool validity; invalid pixels are filled with the nearest
            valid value first.
        method: ``"pil"`` (Pillow BICUBIC on a float image, a = -0.5, as the protocol A papers)
            or ``"opencv"`` (``INTER_CUBIC``, a = -0.75).
    Returns:
        (H, W) float64 in the unit of ``source_lr``.
    Raises:
        ShapeError: wrong shapes. ConfigError: bad scale/method or no valid pixel.
    """
    src, _, g, _ratio = _prepare(source_lr, guide, scale, mask_lr)
    if g.shape[:2] == src.shape:
        return src.copy()
    return _resize_float(src, g.shape[:2], method)


# ------------------------------------------------------------------------------ guided filter


def _box_sum_axis(x: np.ndarray, r: int, axis: int) -> np.ndarray:
    n = x.shape[axis]
    c = np.cumsum(x, axis=axis)
    zero = np.zeros_like(np.take(c, [0], axis=axis))
    c = np.concatenate([zero, c], axis=axis)  # c[k] = sum of x[:k]
    hi = np.minimum(np.arange(n) + r + 1, n)
    lo = np.maximum(np.arange(n) - r, 0)
    return np.take(c, hi, axis=axis) - np.take(c, lo, axis=axis)


def box_mean(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over (2r+1)² windows, truncated at the image border (He et al.'s ``boxfilter/N``).

    Args:
        x: (H, W) or (H, W, ...) array; trailing axes are filtered independently.
        radius: window radius r >= 0.
    Returns:
        float64 array of the same shape.
    """
    a = np.asarray(x, dtype=np.float64)
    r = int(radius)
    s = _box_sum_axis(_box_sum_axis(a, r, 0), r, 1)
    ones = np.ones(a.shape[:2])
    n = _box_sum_axis(_box_sum_axis(ones, r, 0), r, 1)
    return s / n.reshape(n.shape + (1,) * (a.ndim - 2))


def _solve_sym3(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Solve (..., 3, 3) symmetric positive-definite systems ``m x = v`` by the adjugate."""
    a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    d, e, f = m[..., 1, 1], m[..., 1, 2], m[..., 2, 2]
    i00, i01, i02 = d * f - e * e, c * e - b * f, b * e - c * d
    i11, i12, i22 = a * f - c * c, b * c - a * e, a * d - b * b
    det = a * i00 + b * i01 + c * i02
    x0 = i00 * v[..., 0] + i01 * v[..., 1] + i02 * v[..., 2]
    x1 = i01 * v[..., 0] + i11 * v[..., 1] + i12 * v[..., 2]
    x2 = i02 * v[..., 0] + i12 * v[..., 1] + i22 * v[..., 2]
    return np.stack([x0, x1, x2], axis=-1) / det[..., None]


def _guided_filter_core(guide: np.ndarray, p: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a (H, W, C) guide, C = 1 or 3, and a (H, W) input."""
    mean_i = box_mean(guide, radius)  # (H, W, C)
    mean_p = box_mean(p, radius)  # (H, W)
    cov_ip = box_mean(guide * p[:, :, None], radius) - mean_i * mean_p[:, :, None]  # (H, W, C)
    c = guide.shape[2]
    if c == 1:
        var_i = box_mean(guide[:, :, 0] ** 2, radius) - mean_i[:, :, 0] ** 2
        a = cov_ip / (var_i + eps)[:, :, None]
    else:
        # Per-pixel 3×3 covariance of the guide: Σ = mean(I Iᵀ) − μ μᵀ, regularised by eps·Id.
        outer = guide[:, :, :, None] * guide[:, :, None, :]  # (H, W, 3, 3)
        sigma = box_mean(outer.reshape(*outer.shape[:2], 9), radius).reshape(outer.shape)
        sigma -= mean_i[:, :, :, None] * mean_i[:, :, None, :]
        sigma += eps * np.eye(3)
        a = _solve_sym3(sigma, cov_ip)  # (H, W, 3)
    b = mean_p - np.sum(a * mean_i, axis=2)
    return np.sum(box_mean(a, radius) * guide, axis=2) + box_mean(b, radius)


def guided_filter(
    source_lr: np.ndarray,
    guide: np.ndarray,
    scale: int | None,
    mask_lr: np.ndarray | None = None,
    *,
    radius: int | None = None,
    eps: float = 1e-5,
) -> np.ndarray:
    """Guided filter (He, Sun & Tang) of the bicubic upsampling, with the colour guide.

    .. math:: q_i = \\bar a_k^\\top I_i + \\bar b_k,\\quad
              a_k = (\\Sigma_k + \\epsilon \\mathrm{Id})^{-1}\\operatorname{cov}_k(I, p),\\quad
              b_k = \\bar p_k - a_k^\\top \\mu_k

    Args:
        source_lr: (h, w) float depth.
        guide: (H, W, 3) float RGB in [0, 1] (or (H, W) grey).
        scale: integer scale >= 1, or None: the guide's size, at any ratio.
        mask_lr: optional (h, w) bool validity.
        radius: window radius in HR pixels; default ``max(2, scale)`` (at a ratio, the scale
            is ``round(√(ry·rx))``).
        eps: regulariser in guide-variance units ([0, 1]² scale); larger is smoother. The
            defaults were chosen on procedural scenes only (protocol A, ×4/×8/×16) by
            ``benchmarks/tune_baselines.py``: ``radius = scale`` is best at ×4 and ×8 and
            within 2 % of the best at ×16; the error is flat for eps in [1e-6, 3e-5].
    Returns:
        (H, W) float64 in the unit of ``source_lr``.
    Raises:
        ShapeError, ConfigError: as :func:`bicubic`, or ``radius < 1`` / ``eps <= 0``.
    """
    src, _, g, ratio = _prepare(source_lr, guide, scale, mask_lr)
    r = max(2, _nominal(ratio)) if radius is None else int(radius)
    if r < 1 or eps <= 0:
        raise ConfigError(f"need radius >= 1 and eps > 0; got radius={radius}, eps={eps}")
    p = src if g.shape[:2] == src.shape else _resize_float(src, g.shape[:2], "pil")
    # Normalise the depth range so that eps does not interact with the depth unit's float range.
    lo, span = float(p.min()), float(np.ptp(p)) or 1.0
    q = _guided_filter_core(g, (p - lo) / span, r, eps)
    return q * span + lo


# ----------------------------------------------------------------------------------------- JBU


def jbu(
    source_lr: np.ndarray,
    guide: np.ndarray,
    scale: int | None,
    mask_lr: np.ndarray | None = None,
    *,
    radius: int = 1,
    sigma_spatial: float = 0.7,
    sigma_range: float = 0.04,
) -> np.ndarray:
    """Joint bilateral upsampling (Kopf, Cohen, Lischinski & Uyttendaele 2007).

    .. math:: \\tilde S_p = \\frac{1}{k_p}\\sum_{q\\in\\Omega(p)} S_q\\,
              f(\\lVert p_\\downarrow - q\\rVert)\\, g(\\lVert I_p - \\bar I_q\\rVert)

    with Gaussian ``f`` (``sigma_spatial``, in LR pixels) and ``g`` (``sigma_range``, in guide
    units), ``Ω(p)`` the (2·radius+1)² LR pixels around ``p``'s LR position and ``Ī_q`` the
    guide averaged over LR pixel ``q``'s footprint. Invalid LR pixels get zero weight; an HR
    pixel whose window has no valid pixel falls back to bicubic.

    Args:
        source_lr: (h, w) float depth.
        guide: (H, W, 3) float RGB in [0, 1] (or (H, W) grey).
        scale: integer scale >= 1, or None: the guide's size, at any ratio (``Ī_q`` is then the
            exact box average over LR pixel q's footprint, OpenCV's ``INTER_AREA``).
        mask_lr: optional (h, w) bool validity.
        radius: LR window radius (1 gives 3×3 LR pixels).
        sigma_spatial: spatial std, in LR pixels.
        sigma_range: colour std, in guide units. The defaults were chosen on procedural
            scenes only (protocol A, ×4/×8/×16) by ``benchmarks/tune_baselines.py``: best at
            ×8, within 0.5 % of the best at ×4 and 3 % at ×16.
    Returns:
        (H, W) float64 in the unit of ``source_lr``.
    """
    src, valid, g, (ry, rx) = _prepare(source_lr, guide, scale, mask_lr)
    if radius < 0 or sigma_spatial <= 0 or sigma_range <= 0:
        raise ConfigError("need radius >= 0, sigma_spatial > 0 and sigma_range > 0")
    h, w = src.shape
    H, W, C = g.shape
    if ry.is_integer() and rx.is_integer():
        g_lr = g.reshape(h, int(ry), w, int(rx), C).mean(axis=(1, 3))  # Ī_q: (h, w, C)
    else:
        import cv2

        g_lr = cv2.resize(g, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, C)  # the exact box average
    # Continuous LR coordinates of HR pixel centres, and the nearest LR pixel.
    ys, xs = _lr_coords(H, ry), _lr_coords(W, rx)
    cy, cx = np.floor(ys + 0.5).astype(int), np.floor(xs + 0.5).astype(int)
    num = np.zeros((H, W))
    den = np.zeros((H, W))
    inv_s, inv_r = 0.5 / sigma_spatial**2, 0.5 / sigma_range**2
    weight_src = np.where(valid, 1.0, 0.0)
    for dy in range(-radius, radius + 1):
        qy = cy + dy
        in_y = (qy >= 0) & (qy < h)
        qy_c = np.clip(qy, 0, h - 1)
        wy = np.exp(-inv_s * (ys - qy) ** 2) * in_y  # (H,)
        for dx in range(-radius, radius + 1):
            qx = cx + dx
            in_x = (qx >= 0) & (qx < w)
            qx_c = np.clip(qx, 0, w - 1)
            wx = np.exp(-inv_s * (xs - qx) ** 2) * in_x  # (W,)
            rows, cols = qy_c[:, None], qx_c[None, :]
            diff = g - g_lr[rows, cols]  # (H, W, C)
            wr = np.exp(-inv_r * np.einsum("hwc,hwc->hw", diff, diff))
            wgt = wr * wy[:, None] * wx[None, :] * weight_src[rows, cols]
            num += wgt * src[rows, cols]
            den += wgt
    out = np.empty((H, W))
    ok = den > 1e-12
    out[ok] = num[ok] / den[ok]
    if not ok.all():
        out[~ok] = _resize_float(src, (H, W), "pil")[~ok]
    return out


# ----------------------------------------------------------------------------------------- FBS


def fbs_available() -> bool:
    """Always True: :func:`fbs` is optisr's own NumPy implementation (kept for callers that checked
    for OpenCV-contrib's ``fastBilateralSolverFilter``, which the plain wheels lack)."""
    return True


FBS_CONFIDENCES = ("uniform", "bump")
"""``confidence`` of :func:`fbs`: 1 at every HR pixel, or the paper's Gaussian bump around LR sample centres."""


def fbs(
    source_lr: np.ndarray,
    guide: np.ndarray,
    scale: int | None,
    mask_lr: np.ndarray | None = None,
    *,
    sigma_spatial: float = 6.0,
    sigma_luma: float = 16.0,
    sigma_chroma: float = 8.0,
    lam: float = 64.0,
    confidence: str = "uniform",
    max_iter: int = 25,
    tol: float = 1e-5,
) -> np.ndarray:
    """Fast bilateral solver (Barron & Poole 2016) applied to the bicubic upsampling.

    The target is the bicubic upsampling (:func:`bicubic`, invalid LR pixels filled with the
    nearest valid value first); :func:`optisr.guided.fbs.fast_bilateral_solve` then smooths it
    edge-aware under the guide. HR pixels whose nearest LR sample is invalid get confidence 0
    and are filled by the solver. With ``confidence="bump"`` each HR pixel's confidence is a
    Gaussian of its distance to the nearest LR sample centre (std = scale/4 HR pixels), the
    paper's depth super-resolution set-up; ``"uniform"`` trusts every pixel equally.

    Args:
        source_lr: (h, w) float depth.
        guide: (H, W, 3) float RGB in [0, 1] (or (H, W) grey), H = scale·h, W = scale·w.
        scale: integer scale >= 1, or None: the guide's size, at any ratio (the bump's std is
            then ``r/4`` HR pixels with ``r = √(ry·rx)``).
        mask_lr: optional (h, w) bool validity.
        sigma_spatial: grid spacing in HR pixels.
        sigma_luma, sigma_chroma: grid spacing in 8-bit luma / chroma levels.
        lam: smoothness weight λ. The defaults (σ_xy = 6, σ_l = 16, σ_uv = 8, λ = 64, uniform
            confidence) were chosen on procedural scenes only (``benchmarks/tune_fbs.py``: 3
            scenes of 384×480, 8-bit disparity, block-average LR + Gaussian noise σ = 6, ×2…×16,
            a full grid σ_xy 3–16, σ_l 4–32, λ 8–256): the best mean over the scales, within 8 %
            of each scale's best setting (×2 prefers σ_xy = 4, ×16 σ_xy = 8). The paper's
            reference-code defaults (σ_xy = 8, σ_l = σ_uv = 4, λ = 128) were 13 % worse on
            average there, the paper's Gaussian-bump confidence 5 % worse.
        confidence: one of :data:`FBS_CONFIDENCES`.
        max_iter, tol: PCG iterations at most and relative tolerance (the paper's 25 and 1e-5).
    Returns:
        (H, W) float64 in the unit of ``source_lr``.
    Raises:
        ShapeError, ConfigError: as :func:`bicubic`, or bad solver options.
    """
    if confidence not in FBS_CONFIDENCES:
        raise ConfigError(f"confidence must be one of {', '.join(FBS_CONFIDENCES)}; got {confidence!r}")
    src, valid, g, (ry, rx) = _prepare(source_lr, guide, scale, mask_lr)
    H, W = g.shape[:2]
    target = src.copy() if (H, W) == src.shape else _resize_float(src, (H, W), "pil")
    # Nearest LR sample of each HR pixel, and the distance to its centre in LR pixels.
    ys, xs = _lr_coords(H, ry), _lr_coords(W, rx)
    cy = np.clip(np.floor(ys + 0.5).astype(int), 0, src.shape[0] - 1)
    cx = np.clip(np.floor(xs + 0.5).astype(int), 0, src.shape[1] - 1)
    conf = valid[cy[:, None], cx[None, :]].astype(np.float64)
    r = float(np.sqrt(ry * rx))
    if confidence == "bump" and r > 1:
        d2 = ((ys - cy) ** 2)[:, None] + ((xs - cx) ** 2)[None, :]  # LR pixels²
        sigma_lr = max(r / 4.0, 0.5) / r
        conf *= np.exp(-0.5 * d2 / sigma_lr**2)
    grey = g[:, :, 0] if g.shape[2] == 1 else g
    return fast_bilateral_solve(
        target, grey, conf, sigma_spatial=sigma_spatial, sigma_luma=sigma_luma, sigma_chroma=sigma_chroma,
        lam=lam, max_iter=max_iter, tol=tol,
    )  # fmt: skip


# ------------------------------------------------------------------------------------ registry

BASELINES: dict[str, Baseline] = {
    "bicubic": bicubic,
    "guided-filter": guided_filter,
    "jbu": jbu,
    "fbs": fbs,
}
"""Name -> baseline function ``f(source_lr, guide, scale, mask_lr=None, **options)``."""


def get_baseline(name: str) -> Baseline:
    """Look up a baseline by name (case-insensitive, ``_`` = ``-``).

    Raises:
        ConfigError: unknown name, with a suggestion and the valid names.
    """
    key = name.strip().lower().replace("_", "-")
    if key not in BASELINES:
        import difflib

        close = difflib.get_close_matches(key, BASELINES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown baseline {name!r}{hint}; valid names: {', '.join(BASELINES)}")
    return BASELINES[key]
