"""Automatic trust in the source: noise estimation on the LR source and the choice of fidelity.

Exact consistency (``D x = s``) is right for a clean source and wrong for a noisy one: it copies
the sensor noise into every block mean. :func:`estimate_noise_sigma` measures the additive noise
level σ̂ of an LR source from the source alone; :func:`choose_fidelity` turns it into a fidelity
model: ``exact`` when σ̂ is negligible against the spread of the source, otherwise ``soft`` with
λ started at :func:`rule_lambda` and refined by :func:`risk_search` on the generalised
cross-validation score of the LR prediction ``D x_λ = H_λ s`` (:func:`gcv_lr`, :data:`LAM_CRITERION`;
``tr H_λ`` by one :func:`hutchinson_probe`, one extra solve per λ); the ``robust`` data term keeps
the discrepancy principle (:func:`discrepancy_search`).

Why GCV (measured on procedural scenes only, ``benchmarks/noisy_fidelity.py``: Middlebury-like
disparity, area LR + Gaussian σ ∈ {2, 4, 6, 10} on 0–255, ×2…×16, learned model graph, 22 cases on
two 384×480 scenes): the λ minimising GCV had an HR error 0.5 % above that of the best λ in
hindsight on a grid of quarter decades on average (at most +3.3 %; λ within a factor 1.23
geometric mean, 3.1 at most); SURE of the LR prediction (:func:`sure_lr`, with σ̂) +1.9 % (at most
+8 %; it mostly chose 1.8–3× larger λ: the LR-optimal λ smooths more than the HR-optimal one); the
discrepancy principle +7 % with τ = 0.5 (the former rule; at most +49 %, λ up to 5.6× off: too small
at ×2, too large at ×8/×16) and +18 % with τ = 1 (λ 3–13× too large; +14 % with the true σ). σ̂/σ
was 1.00–1.23 there (the estimator's bias is not what set λ wrong).

Nothing here reads files or parses arguments. Units: σ̂ is in source units (mm, metres, 0–255, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import torch
from torch import Tensor

from optisr.errors import ConfigError, ShapeError

__all__ = [
    "EXACT_BELOW",
    "FIDELITIES",
    "LAM_C",
    "DISCREPANCY_TAU",
    "MIN_WINDOWS",
    "FLOOR_STEPS",
    "FidelityChoice",
    "choose_fidelity",
    "floor_search",
    "PROBE_SEED",
    "RISK_STEP",
    "LAM_CRITERION",
    "discrepancy_search",
    "estimate_noise_sigma",
    "find_outliers",
    "OUTLIER_K",
    "OUTLIER_FLOOR",
    "OUTLIER_MIN_SHARE",
    "OUTLIER_MAX_SCALE",
    "OUTLIER_GUIDE_TOL",
    "gcv_lr",
    "lr_risk",
    "hutchinson_probe",
    "rule_lambda",
    "source_spread",
    "sure_lr",
    "risk_search",
]

FIDELITIES = ("exact", "soft", "robust", "auto")
"""Fidelity models of :func:`optisr.guided_upsample` (``robust`` is reserved for the solver layer)."""

EXACT_BELOW = 0.008
"""``fidelity="auto"`` keeps exact consistency while σ̂ / spread is below this (≈ 2 on a 0–255 range).

Measured on procedural scenes (``benchmarks/fidelity_auto.py``): at σ ≈ 1/255 soft fidelity gains
at most ~1 % over exact (at ×2) and loses as much at ×8/×16; at 3/255 it gains 5–13 % at ×2–×8.
Clean procedural sources with at least :data:`MIN_WINDOWS` windows estimate below 0.005
(0 to 0.002 at ×2–×8 on 192²–256² scenes, 8/16-bit quantised included).
"""

LAM_C = math.exp(10.0)
"""Constant of the λ rule ``λ = LAM_C · (σ̂ / (scale · spread))²`` (:func:`rule_lambda`)."""

DISCREPANCY_TAU = 0.5
"""Target of the discrepancy principle: ``‖D x_λ − s‖² = τ · n · σ̂²`` over the n valid LR pixels.

τ = 1 is the classical choice; on procedural scenes τ = 0.5 gave lower RMSE than 0.25 or 1 at
every scale (``benchmarks/fidelity_auto.py``): the HR graph model can also absorb part of the
noise, so the residual of the best λ is below n·σ̂².
"""

MIN_WINDOWS = 400
"""Fewer complete 3×3 windows than this (an LR grid below ~22×22 px): σ̂ = 0 (too small to tell noise
from signal: on 13×12 grids of clean procedural depth, edges and curvature alone gave σ̂ / spread up
to 0.065, so ``auto`` keeps exact consistency there)."""

# The high-pass: the 3×3 second difference [1 −2 1] ⊗ [1 −2 1] (Immerkær 1996). It annihilates
# every f(y, x) = a(y) + x·b(y) + c(x) + y·d(x), in particular planes, so on piecewise-planar depth
# its response is zero away from edges; on white noise of std σ its response has std 6σ.
_KERNEL_NORM = 6.0  # ‖[1 −2 1] ⊗ [1 −2 1]‖₂ = sqrt(1+4+1)² = 6
_CLIP = 3.0  # residuals beyond _CLIP·σ̂ (in units of the response's std) are treated as signal
_ROUNDS = 4
_Z_MAD = NormalDist().inv_cdf(0.75)  # 0.6745: median |N(0, 1)|


def _as_float_array(source: Any, what: str) -> np.ndarray:
    if isinstance(source, Tensor):
        arr = source.detach().cpu().double().numpy()
    elif isinstance(source, np.ndarray):
        arr = source.astype(np.float64, copy=False)
    else:
        raise ShapeError(f"{what} must be a numpy array or a torch tensor, got {type(source).__name__}")
    if arr.ndim < 2:
        raise ShapeError(f"{what} must be (h, w) or (..., h, w), got shape {arr.shape}")
    return arr.reshape(-1, *arr.shape[-2:])


def _valid(arr: np.ndarray, mask: Any) -> np.ndarray:
    """bool (N, h, w): finite and (if given) True in ``mask`` (broadcast to the source)."""
    valid = np.isfinite(arr)
    if mask is not None:
        m = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
        try:
            m = np.broadcast_to(m.astype(bool).reshape(-1, *m.shape[-2:]), arr.shape)
        except ValueError:
            raise ShapeError(f"mask of shape {m.shape} does not fit a source of shape {arr.shape}") from None
        valid = valid & m
    return valid


def estimate_noise_sigma(source: np.ndarray | Tensor, mask: np.ndarray | Tensor | None = None) -> float:
    """Robust estimate of the additive noise std σ of an LR source, in source units.

    Model: ``s = u + n`` with ``u`` piecewise smooth (planes, slow curvature, edges along
    curves) and ``n`` i.i.d. N(0, σ²). Method:

    1. High-pass: ``r = s ∗ K`` with ``K = [1 −2 1]ᵀ[1 −2 1]`` (Immerkær's mask), on every 3×3
       window whose nine pixels are all valid (finite and True in ``mask``). ``K`` cancels planes
       exactly, so ``r`` is pure noise of std ``‖K‖₂σ = 6σ`` away from edges and curvature.
    2. Median absolute deviation, robust to the edge windows: ``σ̂₀ = median|r| / (0.6745·6)``.
    3. Edge rejection: windows with ``|r| > 3·6σ̂`` are dropped and σ̂ is re-estimated from the
       median of the rest (corrected for the truncation at 3σ); 4 rounds. The plain MAD is
       biased up by the fraction ε of edge windows (+31 % at ε = 20 %); the rejection removes
       edges whose jump exceeds a few σ, so the bias that remains comes from edges and
       curvature comparable to the noise itself.
    4. Quantisation: a source whose valid values are all integers (any dtype) is treated as
       quantised with step 1; its rounding error (variance ≤ 1/12) is removed in quadrature,
       ``σ̂ = sqrt(max(0, σ̂² − 1/12))``, so a clean 8- or 16-bit source gives σ̂ ≈ 0.

    Bias: unbiased for pure white Gaussian noise on piecewise-planar maps (within a few % on
    procedural depth, see ``tests/test_fidelity_auto.py``); curved surfaces and weak edges bias
    it up, spatially correlated noise (e.g. noise added before downsampling) is seen only in
    its high-frequency part, so σ̂ underestimates it. For a batch, one σ̂ is estimated from all
    samples together.

    Args:
        source: (h, w) or (..., h, w) array or tensor, any real dtype; NaN = invalid.
        mask: optional validity mask (True = valid) broadcastable to ``source``.
    Returns:
        σ̂ >= 0 as a float in source units; 0.0 when fewer than :data:`MIN_WINDOWS` complete
        3×3 windows exist (too small to tell noise from signal).
    """
    integral = (isinstance(source, np.ndarray) and np.issubdtype(source.dtype, np.integer)) or (
        isinstance(source, Tensor) and not source.is_floating_point()
    )
    arr = _as_float_array(source, "source")
    valid = _valid(arr, mask)
    if arr.shape[-1] < 3 or arr.shape[-2] < 3:
        return 0.0
    s = np.where(valid, arr, 0.0)
    # second difference along x, then along y: (N, h−2, w−2)
    dx = s[:, :, :-2] - 2.0 * s[:, :, 1:-1] + s[:, :, 2:]
    r = dx[:, :-2] - 2.0 * dx[:, 1:-1] + dx[:, 2:]
    v = valid.astype(np.int8)
    vx = v[:, :, :-2] & v[:, :, 1:-1] & v[:, :, 2:]
    whole = (vx[:, :-2] & vx[:, 1:-1] & vx[:, 2:]).astype(bool)
    a = np.abs(r[whole])
    if a.size < MIN_WINDOWS:
        return 0.0
    std = float(np.median(a)) / _Z_MAD  # std of the response
    for _ in range(_ROUNDS):
        if std <= 0.0:
            break
        kept = a[a <= _CLIP * std]
        if kept.size < MIN_WINDOWS // 2:
            break
        # median of |N(0, σ²)| truncated at c·σ: σ·Φ⁻¹(1/2 + (2Φ(c) − 1)/4)
        z = NormalDist().inv_cdf(0.5 + (2.0 * NormalDist().cdf(_CLIP) - 1.0) / 4.0)
        new = float(np.median(kept)) / z
        if abs(new - std) <= 1e-6 * std:
            std = new
            break
        std = new
    sigma = std / _KERNEL_NORM
    vals = arr[valid]
    if integral or (vals.size and bool(np.all(vals == np.round(vals)))):
        sigma = math.sqrt(max(0.0, sigma * sigma - 1.0 / 12.0))
    return float(sigma)


def source_spread(source: np.ndarray | Tensor, mask: np.ndarray | Tensor | None = None) -> float:
    """Robust value range of a source: the 99.5th minus the 0.5th percentile of its valid values.

    Used to express σ̂ relative to the signal (σ̂ / spread), the quantity the exact/soft decision
    and the λ rule look at. Returns 0.0 for a source with no valid value.
    """
    arr = _as_float_array(source, "source")
    vals = arr[_valid(arr, mask)]
    if vals.size == 0:
        return 0.0
    lo, hi = np.percentile(vals, [0.5, 99.5])
    return float(hi - lo)


OUTLIER_K = 5.0
"""A spike must differ from its neighbours by more than ``OUTLIER_K·√2·σ̂`` (the std of the
difference of two noisy samples is √2·σ̂): about 3e-7 of pure Gaussian samples pass it."""

OUTLIER_FLOOR = 0.02
"""... and by more than this share of :func:`source_spread` (what keeps quantisation steps and
curvature of a clean source, σ̂ ≈ 0, from counting)."""

OUTLIER_GUIDE_TOL = 0.04
"""With a guide: a spike counts only where the guide shows no object there, i.e. the mean guide
colour over its footprint is within this (0–1 units, every channel) of its neighbours' median:
thin and small objects have a colour of their own and are kept."""

OUTLIER_MIN_SHARE = 4e-3
"""Spikes are reported only when at least this share of the valid pixels (and at least 3) are
spikes: a clean source with a few one-pixel objects keeps them. Chosen on a first sample of clean
allowed data (21 RGB-D-D test405 depth maps and 10 procedural scenes, area LR, with the guide
test: at ×4 at most 0.30 % spike-like pixels; 1 % random spikes were found at 0.6–1.1 %). All the
allowed clean data (405 + 30 images) reached 0.38 / 0.55 / 0.90 % at ×2 / ×3 / ×4 (up to 1.0 %
with a bicubic operator's ringing), so no share separates the two reliably: that is why
``exclude_outliers`` is off by default (README, *Isolated spikes*)."""

OUTLIER_MAX_SCALE = 4
"""``exclude_outliers`` looks for spikes only up to this scale. On coarser LR grids a one-pixel
object and an outlier look alike: clean allowed data had up to 0.98 % spike-like pixels at ×8 and
2.3 % at ×16, as many as 0.5–1 % of real spikes leave, so no share tells them apart there."""


def find_outliers(
    source: np.ndarray | Tensor,
    mask: np.ndarray | Tensor | None = None,
    *,
    sigma: float | None = None,
    guide_lr: np.ndarray | Tensor | None = None,
    k: float = OUTLIER_K,
    floor: float = OUTLIER_FLOOR,
    guide_tol: float = OUTLIER_GUIDE_TOL,
    min_share: float = OUTLIER_MIN_SHARE,
) -> np.ndarray | None:
    """Isolated spikes of an LR source (outliers: stereo mismatches, multipath, dead pixels).

    A valid pixel is a spike when it lies more than ``T = max(k·√2·σ̂, floor·spread)`` above (or
    below) all but at most one of its valid 8-neighbours (at least 5 valid ones), i.e. a single
    pixel or a pair sticking out of its surroundings. Step edges, slopes, corners (3 or more equal
    neighbours) and lines one pixel wide (2 equal neighbours) are not spikes; the two end pixels of
    such a line are, unless the guide shows the line. ``σ̂`` is
    :func:`estimate_noise_sigma` (robust to a few per cent of spikes) unless ``sigma`` is given.
    With ``guide_lr`` (the guide averaged over each LR pixel's footprint) a spike must also have
    no colour of its own: every channel within ``guide_tol`` of its neighbours' median, so a
    small object or a wire thinner than a pixel, which the guide shows, is not an outlier.

    Args:
        source: LR source (h, w) or (..., h, w), NaN = invalid.
        mask: optional validity mask (True = valid) broadcastable to ``source``.
        sigma: the noise std in source units (None: estimated).
        guide_lr: optional (C, h, w) or (..., C, h, w) guide colours on the source grid, in [0, 1].
        k, floor, guide_tol, min_share: :data:`OUTLIER_K`, :data:`OUTLIER_FLOOR`,
            :data:`OUTLIER_GUIDE_TOL`, :data:`OUTLIER_MIN_SHARE`.
    Returns:
        bool array of ``source``'s shape (True = spike), or None when fewer than
        ``max(3, min_share·valid pixels)`` spikes were found (nothing to exclude).
    """
    arr = _as_float_array(source, "source")
    valid = _valid(arr, mask)
    if sigma is None:
        sigma = estimate_noise_sigma(source, mask)
    spread = source_spread(source, mask)
    thr = max(k * math.sqrt(2.0) * float(sigma), floor * spread)
    if not thr > 0:
        return None
    padded = np.pad(np.where(valid, arr, np.nan), ((0, 0), (1, 1), (1, 1)), constant_values=np.nan)
    h, w = arr.shape[-2:]
    n_nb = np.zeros(arr.shape, np.int16)
    above = np.zeros(arr.shape, np.int16)
    below = np.zeros(arr.shape, np.int16)
    with np.errstate(invalid="ignore"):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == 0 and dx == 0:
                    continue
                nb = padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                ok = np.isfinite(nb)
                n_nb += ok
                d = arr - nb
                above += ok & (d > thr)
                below += ok & (d < -thr)
    spikes = valid & (n_nb >= 5) & ((above >= n_nb - 1) | (below >= n_nb - 1))
    if guide_lr is not None and spikes.any():
        g = guide_lr.detach().cpu().double().numpy() if isinstance(guide_lr, Tensor) else np.asarray(guide_lr, float)
        g = g.reshape(-1, g.shape[-3], h, w)
        if g.shape[0] not in (1, arr.shape[0]):
            raise ShapeError(f"guide_lr of shape {np.shape(guide_lr)} does not fit a source of shape {arr.shape}")
        gp = np.pad(g, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
        nbs = [gp[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
        plain = (np.abs(g - np.median(np.stack(nbs), axis=0)) <= guide_tol).all(axis=1)  # (N|1, h, w)
        spikes &= plain
    if int(spikes.sum()) < max(3, min_share * int(valid.sum())):
        return None
    return spikes.reshape(np.shape(source))


def _check_sigma(noise_sigma: Any) -> float | None:
    """``"auto"`` -> None (estimate); a finite float >= 0 -> itself; anything else -> ConfigError."""
    if isinstance(noise_sigma, str):
        if noise_sigma == "auto":
            return None
        raise ConfigError(f"noise_sigma must be 'auto' or a number >= 0 (source units), got {noise_sigma!r}")
    if isinstance(noise_sigma, bool) or not isinstance(noise_sigma, (int, float, np.integer, np.floating)):
        raise ConfigError(f"noise_sigma must be 'auto' or a number >= 0 (source units), got {noise_sigma!r}")
    value = float(noise_sigma)
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"noise_sigma must be 'auto' or a finite number >= 0 (source units), got {noise_sigma!r}")
    return value


def rule_lambda(sigma: float, spread: float, scale: int) -> float:
    """The λ of ``soft`` fidelity for a noise level: ``λ = LAM_C · (σ̂ / (scale · spread))²``.

    λ weighs the graph term against the data term, ``(DᵀCD + λ L(w)) x = DᵀC s`` (both terms
    scale with the source units squared, so λ is unit-free). Form and constant were fitted on
    procedural scenes only (``benchmarks/fidelity_auto.py``, colour graph; the shipped model's
    best λ agrees): a free fit of log λ on log(σ̂/spread) and log(scale) gave slopes 1.90 and
    −1.84, so the rule uses the Tikhonov-style exponents 2 and −2 (λ ∝ noise variance over the
    signal's variance per HR pixel) and ``LAM_C`` = e¹⁰ minimises the mean RMSE relative to the
    best λ in hindsight. It costs no extra solve, so the tiled path uses the same λ.

    Args:
        sigma: noise std σ̂ of the source (source units), >= 0.
        spread: :func:`source_spread` of the source (same units), > 0.
        scale: integer upsampling scale.
    """
    return LAM_C * (sigma / (scale * spread)) ** 2


@dataclass(frozen=True)
class FidelityChoice:
    """What :func:`choose_fidelity` (and ``guided_upsample(..., return_info=True)``) decided.

    Attributes:
        requested: the fidelity asked for (``"exact"``, ``"soft"``, ``"robust"`` or ``"auto"``).
        fidelity: the fidelity solved with (``"exact"``, ``"soft"`` or ``"robust"``).
        noise_sigma: σ̂ in source units (estimated or given); None when not needed (exact, or an
            explicit λ).
        sigma_estimated: True when ``noise_sigma`` was estimated from the source.
        spread: :func:`source_spread` of the source when σ̂ was used, else None.
        lam: λ of the soft/robust solve (given, or found by :func:`risk_search` (soft) or
            :func:`discrepancy_search` (robust) started at :func:`rule_lambda`); None for exact or
            a non-scalar λ tensor.
        solves: number of solves spent (1; or two per (floor, λ) tried by the GCV search, each solve
            plus its probe solve, one more when tile-wise; or the discrepancy search's count).
        floor: the edge-weight floor the soft solve used (:func:`floor_search`,
            :func:`optisr.ops.lattice.raise_floor`), or None for the graph's weights as they are.
        refine: re-weighted solves after the first (:mod:`optisr.guided.refine`; exact and soft solves).
        outliers: source pixels left out as isolated spikes (``exclude_outliers=True``,
            :func:`find_outliers`).
        guide_sigma: the guide's estimated noise σ̂ ([0, 1] units) that its bilateral pre-filter
            was scaled to (``guide_filter=True``, :mod:`optisr.guided.guide_filter`); None when
            the guide was not filtered (a clean guide, explicit weights, or ``guide_filter=False``).
        nonlocal_kappa: κ of the non-local smoothness term added to the last soft solve
            (:mod:`optisr.guided.nonlocal_term`), or None when it was not used.
        guide_shift: ``(dy, dx)`` HR px the guide was moved by onto the source
            (``register=True``, :mod:`optisr.guided.registration`), or None when it was used as given.
    """

    requested: str
    fidelity: str
    noise_sigma: float | None = None
    sigma_estimated: bool = False
    spread: float | None = None
    lam: float | None = None
    solves: int = 1
    floor: float | None = None
    refine: int = 0
    outliers: int = 0
    guide_sigma: float | None = None
    nonlocal_kappa: float | None = None
    guide_shift: tuple[int, int] | None = None


def _check_lam(lam: Any) -> None:
    if isinstance(lam, Tensor):
        if not lam.is_floating_point() or not bool(torch.all(torch.isfinite(lam) & (lam > 0))):
            raise ConfigError("lam must be a finite float > 0 (or a tensor of them)")
        return
    if isinstance(lam, bool) or not isinstance(lam, (int, float, np.integer, np.floating)):
        raise ConfigError(f"lam must be a finite number > 0, got {lam!r}")
    if not (math.isfinite(float(lam)) and float(lam) > 0):
        raise ConfigError(f"lam must be a finite number > 0, got {lam!r}")


def choose_fidelity(
    source: np.ndarray | Tensor,
    scale: int,
    *,
    fidelity: str = "auto",
    noise_sigma: str | float | None = "auto",
    lam: float | Tensor | None = None,
    mask: np.ndarray | Tensor | None = None,
) -> tuple[FidelityChoice, float | Tensor | None]:
    """Decide the fidelity model and λ for one source (the rule of ``guided_upsample``).

    * ``exact``: exact consistency; σ̂ is not estimated and ``lam`` must not be given.
    * ``soft`` / ``robust``: with ``lam`` given, that λ; otherwise λ = :func:`rule_lambda` of σ̂
      (``noise_sigma``, or estimated with :func:`estimate_noise_sigma` when ``"auto"``/None).
    * ``auto``: σ̂ as above; exact when ``σ̂ / spread <`` :data:`EXACT_BELOW` (or the source has
      no spread), else soft with :func:`rule_lambda`. ``lam`` must not be given.

    Args:
        source: LR source (h, w) or (..., h, w), NaN = invalid (one decision for a whole batch).
        scale: integer upsampling scale.
        fidelity, noise_sigma, lam: as in :func:`optisr.guided_upsample`.
        mask: optional validity mask (True = valid) broadcastable to ``source``.
    Returns:
        ``(choice, lam)``: the :class:`FidelityChoice` and the λ to pass to the solver (the
        caller's tensor when one was given; None for exact).
    Raises:
        ConfigError: unknown fidelity, a bad ``noise_sigma``/``lam``, ``lam`` with ``exact``/``auto``,
            or ``soft``/``robust`` without ``lam`` on a source whose σ̂ (or spread) is 0.
    """
    if not isinstance(fidelity, str) or fidelity not in FIDELITIES:
        raise ConfigError(f"fidelity must be one of {', '.join(FIDELITIES)}; got {fidelity!r}")
    given = _check_sigma("auto" if noise_sigma is None else noise_sigma)
    if lam is not None:
        if fidelity in ("exact", "auto"):
            raise ConfigError(
                f"lam applies to fidelity='soft' or 'robust' only (fidelity={fidelity!r} "
                + ("chooses λ itself)" if fidelity == "auto" else "has no λ)")
            )
        _check_lam(lam)
        scalar = not isinstance(lam, Tensor) or lam.numel() == 1
        return FidelityChoice(fidelity, fidelity, lam=float(lam) if scalar else None), lam
    if fidelity == "exact":
        return FidelityChoice("exact", "exact", noise_sigma=given), None
    sigma = estimate_noise_sigma(source, mask) if given is None else given
    spread = source_spread(source, mask)
    estimated = given is None
    if fidelity == "auto":
        if spread <= 0 or sigma < EXACT_BELOW * spread:
            return FidelityChoice("auto", "exact", sigma, estimated, spread), None
        value = rule_lambda(sigma, spread, scale)
        return FidelityChoice("auto", "soft", sigma, estimated, spread, value), value
    if sigma <= 0 or spread <= 0:
        raise ConfigError(
            f"fidelity={fidelity!r} without lam= needs a noise level > 0, but "
            + ("the source has no spread" if spread <= 0 else "the source looks noise-free (σ̂ = 0)")
            + "; give lam= or noise_sigma=, or use fidelity='exact'"
        )
    value = rule_lambda(sigma, spread, scale)
    return FidelityChoice(fidelity, fidelity, sigma, estimated, spread, value), value


FLOOR_STEPS = (0.01, 0.03, 0.1, 0.3)
"""Edge-weight floors the GCV search of ``fidelity="auto"`` tries after the graph's own weights.

A weight near 0 cuts the graph, and on a noisy source each region between cuts keeps the noise
of its own few LR samples; a higher floor (:func:`optisr.ops.lattice.raise_floor`) lets the
smoothness term average across weak cuts. How far to raise it depends on how well the guide's
edges match the depth's, which the source alone cannot tell, so GCV decides, as it does for λ
(:func:`floor_search`). Measured on data allowed for tuning only (``benchmarks/noisy_floor.py``):
on RGB-D-D test405 (8 images, area LR + σ = 3 cm) the learned graph at its GCV λ went from 2.51 /
3.34 cm (own floor) to 1.92 / 2.76 cm at ×4 / ×8 with the GCV floor (the best single floor, 0.03:
1.94 / 2.74); on procedural scenes (σ = 6 on 0–255), whose colour edges are the depth edges, GCV
kept the graph's own floor in all 8 cases (every raised floor was worse there). Asked to choose
between the learned and the colour graph as well, GCV preferred the learned one in 20 of 21 cases,
including those where the colour graph had the lower HR error, so the graph is not chosen by it.
"""


def floor_search(
    evaluate: Callable[[float | None, float], tuple[Any, float]],
    lam0: float,
    floors: tuple[float | None, ...] = (None, *FLOOR_STEPS),
    *,
    max_evals: int = 5,
) -> tuple[float | None, float, Any, int]:
    """Minimise a risk over the edge-weight floor and λ: a walk up ``floors``, λ by :func:`risk_search` at each.

    For each floor in order, λ is searched by :func:`risk_search` from the previous floor's best λ
    (``lam0`` for the first); the walk stops at the first floor whose best risk is not below the
    best so far (the risk over the floor is taken to be unimodal).

    Args:
        evaluate: ``(floor, lam) -> (x, risk)``; ``floor`` None means the weights as they are.
        lam0: starting λ > 0.
        floors: the floors to walk through, in order (a 1-tuple fixes the floor and searches λ only).
        max_evals: :func:`risk_search`'s budget per floor.
    Returns:
        ``(floor, lam, x, evals)``: the best floor, its λ and ``x``, and the evaluations spent.
    """
    if not floors:
        raise ConfigError("floor_search needs at least one floor")
    best: tuple[float, float | None, float, Any] | None = None  # (risk, floor, λ, x)
    evals, lam = 0, lam0
    for floor in floors:
        risks: dict[float, float] = {}

        def at(value: float, floor: float | None = floor, risks: dict[float, float] = risks) -> tuple[Any, float]:
            x, risk = evaluate(floor, value)
            risks[value] = float(risk)
            return x, risk

        lam_f, x_f, n = risk_search(at, lam, max_evals=max_evals)
        evals += n
        if best is not None and risks[lam_f] >= best[0]:
            break
        best, lam = (risks[lam_f], floor, lam_f, x_f), lam_f
    assert best is not None
    return best[1], best[2], best[3], evals


def discrepancy_search(
    solve: Callable[[float], tuple[Any, float]],
    lam0: float,
    *,
    tau: float = DISCREPANCY_TAU,
    rtol: float = 0.15,
    max_solves: int = 6,
) -> tuple[float, Any, int]:
    """Find λ with ``ratio(λ) = ‖D x_λ − s‖² / (n σ̂²) ≈ tau`` by the secant method on log λ.

    The ratio grows monotonically with λ (more smoothing, larger residual); log ratio is close to
    linear in log λ (slope ≈ 1.5–2 on procedural scenes), so from the closed-form start
    ``lam0`` (:func:`rule_lambda`) one or two secant steps usually land within ``rtol``.

    Args:
        solve: ``lam -> (x, ratio)``: one soft solve at λ and its residual ratio.
        lam0: starting λ (> 0).
        tau: target ratio (:data:`DISCREPANCY_TAU`).
        rtol: stop when ``|ratio / tau − 1| <= rtol``.
        max_solves: at most this many solves (λ is kept within [lam0/10⁴, lam0·10⁴]).
    Returns:
        ``(lam, x, solves)``: the λ whose ratio came closest to ``tau``, its solution, and the
        number of solves spent (1 to ``max_solves``).
    """
    log_tau = math.log(tau)
    lo, hi = math.log(lam0) - 4 * math.log(10), math.log(lam0) + 4 * math.log(10)
    ll = math.log(lam0)
    best: tuple[float, float, Any] | None = None  # (|gap|, log λ, x)
    prev: tuple[float, float] | None = None  # (log λ, gap)
    n = 0
    while n < max_solves:
        x, ratio = solve(math.exp(ll))
        n += 1
        gap = math.log(max(ratio, 1e-300)) - log_tau
        if best is None or abs(gap) < best[0]:
            best = (abs(gap), ll, x)
        if abs(gap) <= math.log1p(rtol):
            break
        slope = 1.5
        if prev is not None and ll != prev[0]:
            slope = (gap - prev[1]) / (ll - prev[0])
            if not (0.2 <= slope <= 5.0):  # flat or erratic: fall back to the typical slope
                slope = 1.5
        prev = (ll, gap)
        ll = min(hi, max(lo, ll - gap / slope))
        if ll == prev[0]:
            break
    assert best is not None
    return math.exp(best[1]), best[2], n


PROBE_SEED = 20261201
"""Seed of the Rademacher probe of :func:`hutchinson_probe`: one fixed probe, so ``auto`` is deterministic
and the SURE curve over λ is smooth (the same probe for every λ: common random numbers)."""

RISK_STEP = 0.5
"""Step of :func:`risk_search` in decades of λ (a factor √10 ≈ 3.2)."""


def hutchinson_probe(shape: tuple[int, ...], *, seed: int = PROBE_SEED) -> np.ndarray:
    """A Rademacher probe: i.i.d. ±1 entries (float64) of ``shape`` from a fixed seed.

    For a symmetric ``H``, ``zᵀ H z`` is an unbiased estimate of ``tr H`` (Hutchinson 1990) with
    variance ``2 Σ_{i≠j} H_ij²``.
    """
    return np.random.default_rng(seed).choice(np.array([-1.0, 1.0]), size=shape)


def sure_lr(residual_sq: float, trace: float, n: int, sigma: float) -> float:
    """Stein's unbiased risk estimate of the LR prediction error of a linear smoother.

    For ``ŝ = H s`` with ``s = u + ε``, ``ε ~ N(0, σ² I_n)`` and ``H`` fixed (independent of ``s``),
    ``E‖ŝ − u‖² = E[‖ŝ − s‖² + 2σ² tr H] − nσ²``; this returns the bracket minus ``nσ²``.

    Args:
        residual_sq: ``‖H s − s‖²`` (source units²).
        trace: ``tr H`` (or an unbiased estimate, e.g. ``zᵀ H z`` with :func:`hutchinson_probe`).
        n: number of LR samples.
        sigma: noise std σ (source units).
    Returns:
        The estimate of ``‖ŝ − u‖²`` in source units² (can be negative by chance).
    """
    return float(residual_sq + 2.0 * sigma**2 * trace - n * sigma**2)


def gcv_lr(residual_sq: float, trace: float, n: int) -> float:
    """Generalised cross-validation score of a linear smoother (Craven & Wahba 1979; Golub, Heath & Wahba 1979).

    ``GCV(λ) = n ‖H s − s‖² / (n − tr H)²``: the leave-one-out prediction error with every
    leverage replaced by the mean ``tr H / n``. Needs no noise level; its minimiser is
    asymptotically that of :func:`sure_lr`.

    Args:
        residual_sq: ``‖H s − s‖²`` (source units²).
        trace: ``tr H`` (or an unbiased estimate, e.g. ``zᵀ H z``).
        n: number of LR samples.
    Returns:
        The score in source units²; ``inf`` when ``tr H >= n`` (interpolation: nothing is left to validate).
    """
    free = n - trace
    return float(n * residual_sq / free**2) if free > 0 else math.inf


LAM_CRITERION = "gcv"
"""What :func:`lr_risk` (and so ``fidelity="auto"``) minimises over λ: ``"gcv"`` (:func:`gcv_lr`) or
``"sure"`` (:func:`sure_lr` with σ̂)."""


def lr_risk(residual_sq: float, trace: float, n: int, sigma: float, criterion: str = LAM_CRITERION) -> float:
    """The λ-selection criterion of ``fidelity="auto"``: :func:`gcv_lr` or :func:`sure_lr` (``criterion``)."""
    if criterion == "gcv":
        return gcv_lr(residual_sq, trace, n)
    if criterion == "sure":
        return sure_lr(residual_sq, trace, n, sigma)
    raise ConfigError(f"criterion must be 'gcv' or 'sure', got {criterion!r}")


def risk_search(
    evaluate: Callable[[float], tuple[Any, float]],
    lam0: float,
    *,
    step: float = RISK_STEP,
    max_evals: int = 5,
) -> tuple[float, Any, int]:
    """Minimise a risk curve over log λ: walk from ``lam0`` by ``step`` decades downhill, then one parabola.

    1. Evaluate at ``lam0`` and ``lam0·10^step``; walk on in the downhill direction (trying the
       other side of ``lam0`` if the first step went uphill) until the risk rises or the budget
       is spent: the last three points then bracket a minimum.
    2. If a bracket was found and an evaluation is left, evaluate at the vertex of the parabola
       through the bracket (in log λ), when it is more than ``step/10`` from the bracket's middle.

    Args:
        evaluate: ``lam -> (x, risk)`` (e.g. the soft solution and its :func:`lr_risk`).
        lam0: starting λ > 0 (:func:`rule_lambda`).
        step: grid step in decades (:data:`RISK_STEP`).
        max_evals: at most this many evaluations (>= 2).
    Returns:
        ``(lam, x, evals)``: the evaluated λ with the lowest risk, its ``x``, and the number of evaluations.
    """
    if max_evals < 2 or not step > 0 or not lam0 > 0:
        raise ConfigError("risk_search needs max_evals >= 2, step > 0 and lam0 > 0")
    seen: dict[float, tuple[float, Any]] = {}  # log10 λ -> (risk, x)
    u0 = math.log10(lam0)

    def at(k: float) -> float:  # k: position in steps from lam0 (grid points are integers)
        u = u0 + k * step
        if u not in seen:
            x, risk = evaluate(10.0**u)
            seen[u] = (float(risk), x)
        return seen[u][0]

    direction, k = 1, 1
    r0 = at(0)  # lam0 first (the caller warm-starts each solve from the previous one)
    if at(1) >= r0:
        direction, k = -1, 0
    bracket: int | None = None  # the middle of three grid points, the lowest of them
    while len(seen) < max_evals:
        if at(k + direction) >= at(k):
            bracket = k
            break
        k += direction
    if bracket is not None and len(seen) < max_evals:
        ra, rb, rc = at(bracket - 1), at(bracket), at(bracket + 1)
        curv = ra - 2.0 * rb + rc
        if curv > 0:
            v = 0.5 * (ra - rc) / curv  # vertex offset in steps, within [−1/2, 1/2] since rb <= ra, rc
            if abs(v) > 0.1:
                at(bracket + v)
    best = min(seen, key=lambda k: seen[k][0])
    return 10.0**best, seen[best][1], len(seen)
