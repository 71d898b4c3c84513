"""Solvers of the graph-regularised problems (matrix-free, on tensors; no files).

* :mod:`optisr.solvers.cg` -- batched preconditioned conjugate gradients over image-shaped tensors.
* :mod:`optisr.solvers.fused` -- the exact-mode CG of area/sum operators as fused Numba loops (optional, faster on a CPU).
* :mod:`optisr.solvers.graph` -- the exact and soft (confidence-weighted) graph-regularised problems and their solvers.
* :mod:`optisr.solvers.robust` -- the robust (Huber / Tukey) data term, solved by IRLS over soft solves.
* :mod:`optisr.solvers.implicit` -- the differentiable solve (custom autograd Function, implicit backward).
* :mod:`optisr.solvers.direct` -- direct sparse SciPy solves, the slow reference for the CG solvers.

The package imports nothing itself; ``__all__`` names its public modules.
"""

__all__ = ["cg", "direct", "fused", "graph", "implicit", "robust"]
