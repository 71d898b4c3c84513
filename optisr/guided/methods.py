"""The one registry of guided upsampling methods: their names, which are graph methods, how to run each.

* Graph methods (:func:`optisr.guided_upsample`): ``default`` (the learned model shipped with
  optisr, the colour graph if this install has none), ``model`` (the same, an error if it is
  missing), ``color`` (colour-affinity graph, no learning), ``unet-v1`` (the U-Net shipped as
  the default until 2026-12-02), and any path to a guided model file ``*.safetensors``. They are exactly LR-consistent.
* Baselines (classic, not LR-consistent, :mod:`optisr.guided.baselines`): ``bicubic``,
  ``guided-filter``, ``jbu``, ``fbs`` (optisr's own fast bilateral solver).
* Variants (:data:`VARIANTS`, used by ``optisr bench guided``): a graph method with fixed options,
  e.g. ``color-soft`` (the colour graph with the soft data term, λ = 1).

Every name maps to a :class:`GuidedMethod` in :data:`REGISTRY`, whose ``run`` callable does the
work; a new method (say a noise-aware fidelity) is one more registry entry.
``optisr guided`` lists :data:`METHODS`, ``optisr bench guided`` every registry name; both run
them through :func:`upsample_with`.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
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
    "REGISTRY",
    "VARIANTS",
    "GuidedMethod",
    "closest_method",
    "get_method",
    "is_graph_method",
    "upsample_with",
]

GRAPH_METHODS = ("default", "model", "color", "unet-v1")
"""Method names solved by the exact graph layer (besides model files, see :data:`MODEL_SUFFIX`)."""

BASELINE_METHODS = ("bicubic", "guided-filter", "jbu", "fbs")
"""Classic baselines, in the order they are listed to users."""

METHODS = GRAPH_METHODS + BASELINE_METHODS
"""Every method name, graph methods first."""

MODEL_SUFFIX = ".safetensors"
"""A method that is a path ending in this is a trained guided model file (a graph method)."""


@dataclass(frozen=True)
class GuidedMethod:
    """One registered method.

    Attributes:
        name: the registry name.
        run: ``run(source, guide, scale, *, mask, model, **options) -> (H, W) numpy`` (see
            :func:`upsample_with` for the arguments).
        graph: True for methods solved by the graph layer (they take ``model`` and the keyword
            options of :func:`optisr.guided_upsample`; baselines take neither).
        weights: graph methods: the ``weights`` they solve with (``"default"``, ``"model"``,
            ``"color"`` or a model path); None for baselines.
        options: the fixed options of a variant (shown in reports), empty otherwise.
    """

    name: str
    run: Callable[..., np.ndarray]
    graph: bool
    weights: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def _run_graph(
    source: np.ndarray,
    guide: np.ndarray,
    scale: int,
    *,
    mask: np.ndarray | None = None,
    model: Any = None,
    weights: Any = "default",
    fixed: dict[str, Any] | None = None,
    **graph_options: Any,
) -> np.ndarray:
    """A graph method: :func:`optisr.guided_upsample` with ``weights`` (``model`` if given) and the options."""
    clash = sorted(set(fixed or {}) & set(graph_options))
    if clash:
        raise ConfigError(f"{', '.join(clash)} are fixed by this method variant; use the base method to set them")
    options = {**(fixed or {}), **graph_options}
    chosen = weights if model is None else model
    return np.asarray(api.guided_upsample(source, guide, scale, weights=chosen, mask=mask, **options))


def _run_baseline(
    source: np.ndarray,
    guide: np.ndarray,
    scale: int,
    *,
    mask: np.ndarray | None = None,
    model: Any = None,
    name: str,
    **graph_options: Any,
) -> np.ndarray:
    """A classic baseline of :mod:`optisr.guided.baselines` (``model`` is ignored); invalid pixels default to
    the non-finite ones."""
    if graph_options:
        raise ConfigError(f"{', '.join(sorted(graph_options))} apply to the graph methods, not {name}")
    valid = np.isfinite(source) if mask is None else mask
    return get_baseline(name)(source, guide, scale, mask_lr=valid)


def _graph_entry(name: str, weights: str, **fixed: Any) -> GuidedMethod:
    run = functools.partial(_run_graph, weights=weights, fixed=fixed)
    return GuidedMethod(name, run, graph=True, weights=weights, options=dict(fixed))


VARIANTS: dict[str, GuidedMethod] = {
    "color-exact": _graph_entry("color-exact", "color", fidelity="exact"),
    "model-exact": _graph_entry("model-exact", "model", fidelity="exact"),
    "color-soft": _graph_entry("color-soft", "color", mode="soft", lam=1.0),
    "model-soft": _graph_entry("model-soft", "model", mode="soft", lam=1.0),
    "model-cv-floor": _graph_entry("model-cv-floor", "model", floor="cv"),
    "model-noreg": _graph_entry("model-noreg", "model", register=False),
}
"""Graph methods with fixed options, for benchmarks: exact consistency whatever the source's noise
(the plain names use ``guided_upsample``'s default, ``fidelity="auto"``), and the soft data term
with LGR's λ = 1 (not tuned on any benchmark); ``model-cv-floor``: the default with the floor of exact
solves chosen by cross-validation (``floor="cv"``); ``model-noreg``: the default with the guide as
given (``register=False``: no search for a shift between source and guide)."""

REGISTRY: dict[str, GuidedMethod] = {
    **{name: _graph_entry(name, name) for name in GRAPH_METHODS},
    **{name: GuidedMethod(name, functools.partial(_run_baseline, name=name), graph=False) for name in BASELINE_METHODS},
    **VARIANTS,
}
"""Every method name -> :class:`GuidedMethod` (the user-facing :data:`METHODS` and the :data:`VARIANTS`)."""


def is_graph_method(method: str) -> bool:
    """True for the graph methods: ``default``, ``model``, ``color``, their variants or a ``*.safetensors`` path."""
    entry = REGISTRY.get(method)
    return entry.graph if entry is not None else str(method).endswith(MODEL_SUFFIX)


def get_method(method: str) -> GuidedMethod:
    """The registry entry of a name, or a graph entry for a ``*.safetensors`` model path.

    Raises:
        ConfigError: unknown name, with a "did you mean" hint.
    """
    if method in REGISTRY:
        return REGISTRY[method]
    if str(method).endswith(MODEL_SUFFIX):
        return _graph_entry(str(method), str(method))
    hint = closest_method(method, tuple(REGISTRY))
    raise ConfigError(f"unknown guided method {method!r}" + (f" (did you mean {hint!r}?)" if hint else ""))


def closest_method(name: str, choices: tuple[str, ...] = METHODS) -> str | None:
    """The known method name closest to a misspelt ``name`` (for "did you mean" hints), or None."""
    close = difflib.get_close_matches(name, choices, n=1)
    return close[0] if close else None


def upsample_with(
    method: str,
    source: np.ndarray,
    guide: np.ndarray,
    scale: int | None,
    *,
    mask: np.ndarray | None = None,
    model: Any = None,
    **graph_options: Any,
) -> np.ndarray:
    """Upsample one numpy map ×``scale`` with ``method``.

    Args:
        method: a name of :data:`REGISTRY` (:data:`METHODS` or :data:`VARIANTS`) or a ``*.safetensors``
            guided model path.
        source: (h, w) float LR map, NaN (or ``mask`` False) at invalid pixels.
        guide: (H, W, C) or (H, W) HR guide: uint8/uint16/float in [0, 1] for graph methods, float
            in [0, 1] for baselines (which need H, W = scale·h, scale·w for an integer scale).
        scale: integer upsampling scale; ``None``: from the sizes, also at a non-integer ratio
            (graph methods: see :func:`optisr.guided_upsample`; baselines: the guide's size).
        mask: optional (h, w) bool LR validity (True = valid); baselines default to finite pixels.
        model: graph methods only: an already loaded guided model to use instead of ``method``'s
            (saves reloading it per image).
        **graph_options: keyword options of :func:`optisr.guided_upsample` (``operator``,
            ``mode``, ``lam``, ``sigma``, ``dtype``, ``tile_size``, ``progress``, ``tol``,
            ``device``); a ConfigError for a baseline, or for an option a variant fixes.
    Returns:
        (H, W) float numpy array, in the source's unit.
    """
    return get_method(method).run(source, guide, scale, mask=mask, model=model, **graph_options)
