"""The one registry of guided upsampling methods: their names, which are graph methods, how to run each.

* Graph methods (exactly LR-consistent, :func:`optisr.guided_upsample`): ``default`` (the learned
  model shipped with optisr, the colour graph if this install has none), ``model`` (the same, an
  error if it is missing), ``color`` (colour-affinity graph, no learning), and any path to a
  guided model file ``*.safetensors``.
* Baselines (classic, not LR-consistent, :mod:`optisr.guided.baselines`): ``bicubic``,
  ``guided-filter``, ``jbu``, ``fbs``.

``optisr guided`` and ``optisr bench guided`` both take their method names from here and run
them through :func:`upsample_with`.
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np

from optisr.errors import ConfigError
from optisr.guided import api
from optisr.guided.baselines import get_baseline

__all__ = [
    "BASELINE_METHODS",
    "GRAPH_METHODS",
    "METHODS",
    "MODEL_SUFFIX",
    "closest_method",
    "is_graph_method",
    "upsample_with",
]

GRAPH_METHODS = ("default", "model", "color")
"""Method names solved by the exact graph layer (besides model files, see :data:`MODEL_SUFFIX`)."""

BASELINE_METHODS = ("bicubic", "guided-filter", "jbu", "fbs")
"""Classic baselines, in the order they are listed to users."""

METHODS = GRAPH_METHODS + BASELINE_METHODS
"""Every method name, graph methods first."""

MODEL_SUFFIX = ".safetensors"
"""A method that is a path ending in this is a trained guided model file (a graph method)."""


def is_graph_method(method: str) -> bool:
    """True for the graph methods: ``default``, ``model``, ``color`` or a ``*.safetensors`` model path."""
    return method in GRAPH_METHODS or str(method).endswith(MODEL_SUFFIX)


def closest_method(name: str, choices: tuple[str, ...] = METHODS) -> str | None:
    """The known method name closest to a misspelt ``name`` (for "did you mean" hints), or None."""
    close = difflib.get_close_matches(name, choices, n=1)
    return close[0] if close else None


def upsample_with(
    method: str,
    source: np.ndarray,
    guide: np.ndarray,
    scale: int,
    *,
    mask: np.ndarray | None = None,
    model: Any = None,
    **graph_options: Any,
) -> np.ndarray:
    """Upsample one numpy map ×``scale`` with ``method``.

    Args:
        method: a name of :data:`METHODS` or a ``*.safetensors`` guided model path.
        source: (h, w) float LR map, NaN (or ``mask`` False) at invalid pixels.
        guide: (H, W, C) or (H, W) HR guide: uint8/uint16/float in [0, 1] for graph methods, float
            in [0, 1] for baselines (which need H, W = scale·h, scale·w).
        scale: integer upsampling scale.
        mask: optional (h, w) bool LR validity (True = valid); baselines default to finite pixels.
        model: graph methods only: an already loaded guided model to use instead of ``method``'s
            (saves reloading it per image).
        **graph_options: keyword options of :func:`optisr.guided_upsample` (``operator``,
            ``mode``, ``lam``, ``sigma``, ``dtype``, ``tile_size``, ``progress``, ``tol``,
            ``device``); a ConfigError for a baseline.
    Returns:
        (H, W) float numpy array, in the source's unit.
    """
    if is_graph_method(method):
        weights = method if model is None else model
        return api.guided_upsample(source, guide, scale, weights=weights, mask=mask, **graph_options)
    if method not in BASELINE_METHODS:
        hint = closest_method(method)
        raise ConfigError(f"unknown guided method {method!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
    if graph_options:
        raise ConfigError(f"{', '.join(sorted(graph_options))} apply to the graph methods, not {method}")
    valid = np.isfinite(source) if mask is None else mask
    return get_baseline(method)(source, guide, scale, mask_lr=valid)
