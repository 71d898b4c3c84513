"""Figures: colour-mapped depth panels (OpenCV only, no matplotlib needed).

* :mod:`optisr.viz.panels` -- side-by-side comparison panels for depth / raster results.

The package imports nothing itself; ``__all__`` names its public modules.
"""

__all__ = ["panels"]
