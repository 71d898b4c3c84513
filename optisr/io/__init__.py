"""File input and output (the only layer that knows about files, with the CLI).

* :mod:`optisr.io.atomic` -- atomic file output (temporary file beside the target, then moved into place).
* :mod:`optisr.io.images` -- photos: PNG (8/16 bit), JPEG, WebP, BMP, TIFF.
* :mod:`optisr.io.rasters` -- single-band rasters (depth, disparity, geodata) and guide images.
* :mod:`optisr.io.ncnn` -- ncnn models: the text ``.param`` graph and the ``.bin`` weight blob.
* :mod:`optisr.io.state_dict` -- checkpoint loading, key canonicalisation, architecture detection.

The package imports nothing itself; ``__all__`` names its public modules.
"""

__all__ = ["atomic", "images", "ncnn", "rasters", "state_dict"]
