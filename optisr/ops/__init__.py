"""Linear operators of the guided problem (no solvers, no files).

* :mod:`optisr.ops.operators` -- downsampling operators ``D``: HR ``(H, W)`` -> LR ``(h, w)``, with
  adjoint and exact projection.
* :mod:`optisr.ops.lattice` -- the 4-connected pixel-lattice graph: edge weights and matrix-free
  Laplacian products.

The package imports nothing itself; ``__all__`` names its public modules.
"""

__all__ = ["lattice", "operators"]
