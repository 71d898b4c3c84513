"""Edge weights of the guided graph: the colour-affinity graph and weight resolution.

:func:`resolve_weights` turns what a user may pass as ``weights=`` to
:func:`optisr.guided_upsample` (``"default"``, ``"model"``, ``"color"``, a guided model or the
path of its ``.safetensors``, an edge-weight array, a callable) into something the solvers take:
``"color"``, an array/tensor ``(B, 2, H, W)`` / ``(2, H, W)``, or a callable
``(guide (B, C, H, W), source (B, 1, h, w) with NaN at invalid pixels) -> weights (B, 2, H, W)``.
Both the untiled (:mod:`optisr.guided.api`) and the tile-wise (:mod:`optisr.guided.tiling`)
solves use it. Nothing here reads images or parses arguments.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from optisr.errors import ConfigError
from optisr.ops.lattice import connect_isolated, edge_energy, weights_from_energy

__all__ = [
    "COLOR_CONNECT",
    "COLOR_FLOOR",
    "COLOR_MU",
    "WeightsFn",
    "DEPTH_MU",
    "color_weights",
    "JUMP_MU",
    "JUMP_WINDOW",
    "depth_affinity",
    "depth_jump_affinity",
    "model_weights",
    "range_factor_255",
    "resolve_weights",
]

WeightsFn = Callable[[Tensor, Tensor], Tensor]
"""``(guide (B, C, H, W) float, source (B, 1, h, w), NaN = invalid) -> edge weights (B, 2, H, W)``."""

# Colour-affinity graph (no learning): w = exp(−mean_c ΔRGB² / μ²) on the guide in [0, 1].
# μ and the floor were chosen on procedural scenes (optisr.data.synthetic), never on benchmark
# data: benchmarks/tune_color.py reproduces the choice.
COLOR_MU = 0.02
COLOR_FLOOR = 1e-3
COLOR_CONNECT = 0.02  # link isolated pixels/pairs (optisr.ops.lattice.connect_isolated); procedural scenes only


def color_weights(
    guide: Tensor, *, mu: float = COLOR_MU, floor: float = COLOR_FLOOR, connect: float = COLOR_CONNECT
) -> Tensor:
    """Edge weights of the colour-affinity graph.

    Args:
        guide: (B, 3, H, W) RGB in [0, 1] (any channel count works).
        mu: colour temperature μ in guide units.
        floor: minimum weight.
        connect: pixels and pixel pairs cut off by weights below this get their strongest edge
            raised to it (:func:`optisr.ops.lattice.connect_isolated`; 0 disables).
    Returns:
        (B, 2, H, W) weights.
    """
    energy = edge_energy(guide, mu)
    w = weights_from_energy(energy, floor)
    return connect_isolated(w, connect, -energy.detach()) if connect > 0 else w


DEPTH_MU = 1.0
"""μ of the ground-truth ("oracle") affinity, in 0–255 depth units: a jump of 1/255 of the range gives exp(−1)."""


def depth_affinity(
    depth: Tensor, valid: Tensor | None = None, *, mu: float = DEPTH_MU, to_255: Tensor | float | None = None
) -> tuple[Tensor, Tensor]:
    """Edge affinities of a ground-truth depth: ``a_pq = exp(−(D_p − D_q)²/μ²)``, D in 0–255 units.

    The target of direct edge supervision and, floored, the oracle's weights
    (``floor + (1 − floor)·a``; see :mod:`optisr.bench.guided_protocols`).

    Args:
        depth: (B, 1, H, W) float depth in any unit, invalid pixels already filled with finite values.
        valid: optional (B, 1, H, W) bool, True where ``depth`` is measured.
        mu: μ in 0–255 units.
        to_255: factor from ``depth``'s unit to 0–255 units (float or (B,) tensor); None maps each
            sample's valid range onto 0–255 (a flat sample keeps factor 1).
    Returns:
        ``(affinity, edge_valid)``, both (B, 2, H, W) in the lattice layout (channel 0 vertical,
        1 horizontal edges): affinity in (0, 1] (0 in unused slots), edge_valid True where the
        edge exists and both its pixels are valid.
    """
    B = depth.shape[0]
    ok = torch.ones_like(depth, dtype=torch.bool) if valid is None else valid.to(torch.bool)
    if to_255 is None:
        factor = range_factor_255(depth, ok)
    else:
        factor = torch.as_tensor(to_255, dtype=depth.dtype, device=depth.device).expand(B)
    energy = edge_energy(depth * factor.view(B, 1, 1, 1), mu)
    used = _edge_validity(ok)
    return torch.exp(-energy) * used, used


JUMP_MU = 10.0
"""μ of :func:`depth_jump_affinity`, in 0–255 units of each sample's depth range."""

JUMP_WINDOW = 2
"""Half-width of the slope estimate of :func:`depth_jump_affinity` (edges on each side)."""


def range_factor_255(depth: Tensor, ok: Tensor) -> Tensor:
    """(B,) factor mapping each sample's valid range onto 0–255 (1 for a flat or empty sample).

    ``depth`` (B, 1, H, W) float, ``ok`` (B, 1, H, W) bool: True where the value counts (invalid
    or non-finite values must be False).
    """
    big = torch.finfo(depth.dtype).max
    hi = torch.where(ok, depth, torch.full_like(depth, -big)).flatten(1).amax(1)
    lo = torch.where(ok, depth, torch.full_like(depth, big)).flatten(1).amin(1)
    span = (hi - lo).clamp_min(0)
    return torch.where(span > 0, 255.0 / span.clamp_min(torch.finfo(depth.dtype).tiny), torch.ones_like(span))


def _edge_validity(ok: Tensor) -> Tensor:
    """(B, 2, H, W) True where the lattice edge exists and both its pixels are valid (ok: (B, 1, H, W))."""
    B, _, H, W = ok.shape
    used = torch.zeros(B, 2, H, W, dtype=torch.bool, device=ok.device)
    used[:, 0, :-1, :] = ok[:, 0, 1:, :] & ok[:, 0, :-1, :]
    used[:, 1, :, :-1] = ok[:, 0, :, 1:] & ok[:, 0, :, :-1]
    return used


def depth_jump_affinity(
    depth: Tensor, valid: Tensor | None = None, *, mu: float = JUMP_MU, window: int = JUMP_WINDOW
) -> tuple[Tensor, Tensor]:
    """Slope-invariant edge affinities of a ground-truth depth: ``a = exp(−J²/μ²)``.

    ``J_pq = (D_q − D_p) − median`` of the ``2·window`` neighbouring differences along the same
    row/column (window edges before and after; replicated at the border): the part of the step
    across the edge that the local slope does not explain. A step of height h gives J = h, a
    plane or a gentle curve J ≈ 0, so only discontinuities are cut — unlike
    :func:`depth_affinity`, which also cuts every steep slope of a small crop. D is each sample's
    valid range mapped onto 0–255. Used as weights (``floor + (1 − floor)·a``), these do as well as
    the oracle's in the exact layer (6 procedural 192² scenes, bicubic, nRMSE ×4/×8/×16:
    0.016/0.066/0.145 against the oracle's 0.020/0.067/0.144) while cutting ~2 % of the edges
    instead of ~40 %; that sparsity is what makes them learnable as targets.

    Args:
        depth: (B, 1, H, W) float depth in any unit, invalid pixels filled with finite values.
        valid: optional (B, 1, H, W) bool, True where measured.
        mu: μ in 0–255 units of the sample's range.
        window: edges on each side in the slope estimate (≥ 1).
    Returns:
        ``(affinity, edge_valid)`` (B, 2, H, W) as :func:`depth_affinity`.
    """
    if window < 1:
        raise ConfigError(f"window must be ≥ 1, got {window}")
    ok = torch.ones_like(depth, dtype=torch.bool) if valid is None else valid.to(torch.bool)
    B = depth.shape[0]
    d255 = depth * range_factor_255(depth, ok).view(B, 1, 1, 1)
    energies = []
    for dim in (2, 3):  # channel 0: vertical edges, channel 1: horizontal edges
        diff = d255.diff(dim=dim)
        n = diff.shape[dim]
        jump = diff
        if n > 0:  # a one-pixel-wide (or tall) image has no edges in this direction
            padded = F.pad(diff, (0, 0, window, window) if dim == 2 else (window, window, 0, 0), mode="replicate")
            around = [padded.narrow(dim, window + o, n) for o in range(-window, window + 1) if o]
            jump = diff - torch.stack(around, 0).median(0).values
        energies.append(F.pad((jump / mu).pow(2), (0, 0, 0, 1) if dim == 2 else (0, 1, 0, 0)))
    used = _edge_validity(ok)
    return torch.exp(-torch.cat(energies, 1)) * used, used


def model_weights(model: Any, scale: int, source: Any = None, mask: Any = None) -> WeightsFn:
    """``(guide, source) -> weights`` of a learned guided model at ``scale`` (any dtype/device).

    For a single numpy ``source`` (h, w) the network input is z-scored with the whole image's
    statistics (valid pixels of ``mask``, (h, w) bool, if given; not each tile's), so tile-wise
    solves see the same features as the untiled one.

    The model is never moved: on another device than the guide, a copy on the guide's device is
    used (made once per call of this function), so a cached or caller-owned model keeps its device.
    """
    stats = None
    if isinstance(source, np.ndarray) and source.ndim == 2:
        from optisr.guided.model import source_stats

        src_t = torch.from_numpy(np.asarray(source, np.float64))[None, None]
        m_t = None if mask is None else torch.from_numpy(np.asarray(mask, bool))[None, None]
        mean, std = source_stats(src_t, m_t)
        stats = (float(mean), float(std))

    copies: dict[torch.device, Any] = {}

    def on(device: torch.device) -> Any:
        p = next(model.parameters(), None)
        if p is None or p.device == device:
            return model
        if device not in copies:
            copies[device] = copy.deepcopy(model).to(device)
        return copies[device]

    def weights(gt: Tensor, src: Tensor) -> Tensor:
        g = gt if gt.shape[1] == 3 else gt[:, :1].expand(-1, 3, -1, -1)
        net = on(gt.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and (gt.requires_grad or src.requires_grad)):
            w = net.weights(g.float(), src.float(), scale, stats=stats)
        return w.to(src.dtype)

    return weights


# A blend of a learned graph with the colour graph for soft solves (noisy sources), tried 2026-12-02
# and not made a default: on allowed noisy data (benchmarks/noisy_blend.py: 8 RGB-D-D test405 images,
# σ = 3 cm, 4 procedural scenes, σ = 6) share 0.5 beat the model alone at ×8 on both sets (2.634 →
# 2.567 cm, 6.302 → 6.204) and lost at ×2/×4, but on the noisy Middlebury 2005 protocol (evaluation
# only, measured once) it moved ×8 / ×16 from 3.61 / 4.80 to 3.63 / 4.81. Pass
# ``weights=colour_blended(model_weights(...))`` to use it.
SOFT_COLOUR_SHARE = 0.5


def colour_blended(weights_fn: WeightsFn, share: float = SOFT_COLOUR_SHARE) -> WeightsFn:
    """A weights callable whose output is ``w^(1−share) · c^share``, c the guide's :func:`color_weights`.

    In edge energies (E = −log w) this is the weighted mean of the two graphs' energies: an edge is
    cut hard only where both graphs cut it. Weights are clamped at 1e-6 before the power.
    """
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"the colour share must be in [0, 1], got {share}")

    def blended(guide: Tensor, source: Tensor) -> Tensor:
        w = weights_fn(guide, source)
        c = color_weights(guide.to(w.dtype)).to(w.device)
        return w.clamp_min(1e-6) ** (1.0 - share) * c.clamp_min(1e-6) ** share

    return blended


def resolve_weights(weights: Any, scale: int, source: Any = None, mask: Any = None) -> tuple[Any, bool]:
    """Turn model references (``"default"``/``"model"``/``None``, a shipped name such as ``"unet-v1"``,
    a path, a GraphSRModel) into a callable.

    Args:
        weights: as ``weights=`` of :func:`optisr.guided_upsample`.
        scale: the integer upsampling scale the model is run at.
        source, mask: the LR source and validity mask (numpy (h, w) for whole-image statistics).
    Returns:
        ``(weights, learned)``: ``"color"``, the array/tensor/callable passed through, or a
        :data:`WeightsFn` of the model; ``learned`` says a network computes them. ``"default"``
        falls back to ``"color"`` when this install carries no model; ``"model"`` then raises.
    """
    from optisr.guided.model import (
        SHIPPED_MODELS,
        GraphSRModel,
        guided_model_path,
        load_default_model,
        load_guided_model,
    )

    if weights is None or (isinstance(weights, str) and weights in ("default", "model")):
        model = load_default_model()
        if model is None:
            if isinstance(weights, str) and weights == "model":
                raise ConfigError("no default guided model is installed (optisr/guided/weights/default.safetensors)")
            return "color", False
        weights = model
    elif (isinstance(weights, str) and weights in SHIPPED_MODELS) or (
        isinstance(weights, (str, os.PathLike)) and str(weights).endswith(".safetensors")
    ):
        weights = load_guided_model(guided_model_path(weights))[0]
    if isinstance(weights, GraphSRModel):
        return model_weights(weights, scale, source, mask), True
    return weights, False
