"""Evaluation metrics.

* :mod:`optisr.metrics.depth` -- depth error metrics and the two published evaluation protocols.
* :mod:`optisr.metrics.image_quality` -- PSNR, SSIM (BasicSR / MATLAB conventions) and NIQE.

The package imports nothing itself; ``__all__`` names its public modules.
"""

__all__ = ["depth", "image_quality"]
