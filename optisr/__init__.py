"""optisr: super-resolution by optimisation.

Public entry points:

* :func:`optisr.guided_upsample` -- guided super-resolution with exact LR consistency.
* :func:`optisr.upscale` -- blind real-world super-resolution (RRDBNet family).
* ``optisr.__version__`` -- the package version (defined in :mod:`optisr.version`; code inside the
  package imports it from there, never from ``optisr``).
"""

from __future__ import annotations

from optisr.blind.api import upscale
from optisr.guided.api import guided_upsample
from optisr.version import __version__

__all__ = ["__version__", "guided_upsample", "upscale"]
