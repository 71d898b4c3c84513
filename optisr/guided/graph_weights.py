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
from torch import Tensor

from optisr.errors import ConfigError
from optisr.ops.lattice import connect_isolated, edge_energy, weights_from_energy

__all__ = [
    "COLOR_CONNECT",
    "COLOR_FLOOR",
    "COLOR_MU",
    "WeightsFn",
    "color_weights",
    "model_weights",
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


def resolve_weights(weights: Any, scale: int, source: Any = None, mask: Any = None) -> tuple[Any, bool]:
    """Turn model references (``"default"``/``"model"``/``None``, a path, a GraphSRModel) into a callable.

    Args:
        weights: as ``weights=`` of :func:`optisr.guided_upsample`.
        scale: the integer upsampling scale the model is run at.
        source, mask: the LR source and validity mask (numpy (h, w) for whole-image statistics).
    Returns:
        ``(weights, learned)``: ``"color"``, the array/tensor/callable passed through, or a
        :data:`WeightsFn` of the model; ``learned`` says a network computes them. ``"default"``
        falls back to ``"color"`` when this install carries no model; ``"model"`` then raises.
    """
    from optisr.guided.model import GraphSRModel, load_default_model, load_guided_model

    if weights is None or (isinstance(weights, str) and weights in ("default", "model")):
        model = load_default_model()
        if model is None:
            if isinstance(weights, str) and weights == "model":
                raise ConfigError("no default guided model is installed (optisr/guided/weights/default.safetensors)")
            return "color", False
        weights = model
    elif isinstance(weights, (str, os.PathLike)) and str(weights).endswith(".safetensors"):
        weights = load_guided_model(weights)[0]
    if isinstance(weights, GraphSRModel):
        return model_weights(weights, scale, source, mask), True
    return weights, False
