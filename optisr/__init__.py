"""optisr: super-resolution by optimisation.

Public entry points (imported lazily so that ``import optisr`` stays cheap):

* :func:`optisr.guided_upsample` -- guided super-resolution with exact LR consistency.
* :func:`optisr.upscale` -- blind real-world super-resolution (RRDBNet family).
"""

from __future__ import annotations

from optisr.version import __version__

__all__ = ["__version__", "guided_upsample", "upscale"]


def __getattr__(name: str):
    if name == "guided_upsample":
        from optisr.guided.api import guided_upsample

        return guided_upsample
    if name == "upscale":
        from optisr.blind.api import upscale

        return upscale
    raise AttributeError(f"module 'optisr' has no attribute {name!r}")
