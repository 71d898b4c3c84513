"""Degradations for blind real-world SR training (RealSR / OTSR / Real-ESRGAN data preparation).

Images are numpy float32 ``(H, W, C)`` in [0, 1]; randomness comes only from a numpy
``Generator`` passed in.

* :mod:`~optisr.degrade.bicubic` -- MATLAB-compatible ``imresize`` (antialiased a = −0.5 bicubic).
* :mod:`~optisr.degrade.noise` -- noise-patch mining (OTSR homogeneity / RealSR variance rules)
  and :class:`NoisePool` injection.
* :mod:`~optisr.degrade.kernels` -- ``.mat``/``.npy`` kernels, random anisotropic Gaussians,
  kernel degradation; :mod:`~optisr.degrade.kernelgan` -- per-image kernel estimation.
* :mod:`~optisr.degrade.jpeg` -- JPEG round trip.
* :mod:`~optisr.degrade.estimate` -- estimate an input's degradation (JPEG quality from the
  quantisation tables or 8×8 blockiness, noise σ, sharpness).
* :mod:`~optisr.degrade.low_light` -- dim / low-contrast / noisy re-exposure of an RGB guide.
* :mod:`~optisr.degrade.depth_noise` -- depth-sensor degradations of an LR depth source.
* :mod:`~optisr.degrade.second_order` -- Real-ESRGAN's second-order pipeline.
* :mod:`~optisr.degrade.pipeline` -- ``DegradationConfig`` and ``build_training_pairs`` (the
  ``optisr degrade`` command).
"""

from optisr.degrade.bicubic import imresize
from optisr.degrade.estimate import Degradation, estimate_degradation
from optisr.degrade.jpeg import JpegConfig, jpeg_compress, random_jpeg
from optisr.degrade.kernels import (
    GaussianKernelConfig,
    anisotropic_gaussian_kernel,
    compose_x4_kernel,
    degrade_with_kernel,
    estimate_kernel,
    kernel_sigma,
    load_kernel,
    load_kernels,
    random_gaussian_kernel,
)
from optisr.degrade.noise import NoiseMiningConfig, NoisePool, mine_noise_patches
from optisr.degrade.pipeline import (
    DegradationConfig,
    build_training_pairs,
    config_from_dict,
    load_config,
    preview_figure,
)
from optisr.degrade.second_order import SecondOrderConfig, second_order_degrade

__all__ = [
    "Degradation",
    "DegradationConfig",
    "GaussianKernelConfig",
    "JpegConfig",
    "NoiseMiningConfig",
    "NoisePool",
    "SecondOrderConfig",
    "anisotropic_gaussian_kernel",
    "build_training_pairs",
    "compose_x4_kernel",
    "config_from_dict",
    "degrade_with_kernel",
    "estimate_degradation",
    "estimate_kernel",
    "imresize",
    "jpeg_compress",
    "kernel_sigma",
    "load_config",
    "load_kernel",
    "load_kernels",
    "mine_noise_patches",
    "preview_figure",
    "random_gaussian_kernel",
    "random_jpeg",
    "second_order_degrade",
]
