"""Evaluation metrics.

* :mod:`optisr.metrics.depth` -- depth error metrics and the two published evaluation protocols.
* :mod:`optisr.metrics.image_quality` -- PSNR, SSIM (BasicSR / MATLAB conventions).
* :mod:`optisr.metrics.niqe` -- NIQE as MATLAB computes it (pristine model shipped in ``data/``).

The package imports nothing itself; ``__all__`` names its public modules.
"""

__all__ = ["depth", "image_quality", "niqe"]
