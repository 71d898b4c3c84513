"""Guided super-resolution: upsample a single-band map with an HR guide image, exactly LR-consistent.

* :func:`guided_upsample` (also ``optisr.guided_upsample``, defined in :mod:`optisr.guided.api`)
  -- the entry point;
* :mod:`optisr.guided.methods` -- the registry of method names (graph methods and baselines);
* :mod:`optisr.guided.graph_weights` -- colour weights and ``weights=`` resolution;
* :mod:`optisr.guided.tiling` -- tile-wise solves for large images;
* :mod:`optisr.guided.quantize`, :mod:`optisr.guided.consistency` -- integer rounding that keeps
  ``D x = s`` and the strip-wise consistency check;
* :mod:`optisr.guided.layer`, :mod:`optisr.guided.model`, :mod:`optisr.guided.baselines`.

"""

from __future__ import annotations

from optisr.guided.api import guided_upsample

__all__ = ["guided_upsample"]
