"""Per-batch optimal transport for QC critics: cost matrices, exact OT, OTSR's released LP.

Two solvers of a discrete Kantorovich problem between a batch of real images ``x_i`` and a
batch of fake images ``y_j`` (images flattened to vectors of length ``d``):

* :func:`solve_batch_ot` -- the faithful WGAN-QC step: exact OT with uniform weights via POT's
  network simplex ``ot.emd(a, b, M, log=True)``; returns the plan and **unbounded** dual
  potentials ``u, v`` with ``u_i + v_j <= M_ij`` (POT's sign convention).
* :func:`released_lp_potentials` -- the LP exactly as OTSR's released code states it
  (research note ``blind_sr_method.md`` §2.2, step 1): potentials boxed to [0, 1], the cost
  matrix used transposed, solved here with SciPy's HiGHS instead of PuLP/CBC.

Both run on the CPU in float64 on detached copies; they carry no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from optisr.errors import ConfigError, OptiSRError, ShapeError

__all__ = [
    "BatchOT",
    "OTSolveError",
    "pairwise_sq_dist",
    "released_lp_potentials",
    "solve_batch_ot",
]


class OTSolveError(OptiSRError, RuntimeError):
    """The per-batch transport LP did not reach an optimum."""


def pairwise_sq_dist(a: Tensor, b: Tensor) -> np.ndarray:
    """Squared Euclidean distances between flattened samples, in float64.

    Args:
        a: ``(N, ...)`` batch; b: ``(M, ...)`` batch with the same per-sample size.
    Returns:
        ``(N, M)`` float64 array, ``D_ij = ‖a_i − b_j‖²`` (sum over all elements).
    Raises:
        ShapeError: the per-sample sizes differ.
    """
    af = a.detach().reshape(a.shape[0], -1).to("cpu", torch.float64)
    bf = b.detach().reshape(b.shape[0], -1).to("cpu", torch.float64)
    if af.shape[1] != bf.shape[1]:
        raise ShapeError(f"real and fake samples differ in size: {tuple(a.shape[1:])} vs {tuple(b.shape[1:])}")
    # ‖a‖² + ‖b‖² − 2ab in float64: N·M·d memory is avoided (N = 45, d = 49152 in OTSR).
    d = (af * af).sum(1)[:, None] + (bf * bf).sum(1)[None, :] - 2.0 * af @ bf.T
    return d.clamp_min_(0.0).numpy()


@dataclass(frozen=True)
class BatchOT:
    """Exact OT between two uniform batches.

    Attributes:
        plan: ``(N, M)`` transport plan, rows sum to 1/N, columns to 1/M.
        u: ``(N,)`` dual potentials on the real samples.
        v: ``(M,)`` dual potentials on the fake samples; ``u_i + v_j <= cost_ij``.
        cost: ``(N, M)`` cost matrix that was solved.
        value: optimal transport cost ``Σ plan·cost`` (= ``mean u + mean v``).
    """

    plan: np.ndarray
    u: np.ndarray
    v: np.ndarray
    cost: np.ndarray
    value: float


def solve_batch_ot(cost: np.ndarray, *, num_iter_max: int = 1_000_000) -> BatchOT:
    """Exact OT with uniform marginals by POT's network simplex.

    .. math:: \\min_{P\\ge0,\\ P1=1/N,\\ P^T1=1/M} \\langle P, C\\rangle
              = \\max_{u_i+v_j\\le C_{ij}} \\tfrac1N\\textstyle\\sum u_i + \\tfrac1M\\sum v_j

    Args:
        cost: ``(N, M)`` float cost matrix, e.g. ``K·½·pairwise_sq_dist(real, fake)``.
        num_iter_max: network-simplex iteration cap.
    Returns:
        :class:`BatchOT` (the potentials are POT's, unbounded and not re-centred).
    Raises:
        ConfigError: POT is not installed (``pip install "optisr[train]"``).
        OTSolveError: the simplex hit its iteration cap or reported another failure.
    """
    try:
        import ot
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ConfigError(
            "the 'wgan-qc' adversarial mode needs POT (Python Optimal Transport): "
            'pip install "pot>=0.9"  (or the optisr[train] extra)'
        ) from exc
    cost = np.ascontiguousarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ShapeError(f"cost must be a 2-D (N, M) matrix; got shape {cost.shape}")
    n, m = cost.shape
    a = np.full(n, 1.0 / n)
    b = np.full(m, 1.0 / m)
    plan, log = ot.emd(a, b, cost, numItermax=num_iter_max, log=True)
    if log.get("warning") is not None or int(log.get("result_code", 1)) != 1:
        raise OTSolveError(f"ot.emd did not reach the optimum: {log.get('warning')!r}")
    return BatchOT(plan=plan, u=np.asarray(log["u"]), v=np.asarray(log["v"]), cost=cost, value=float(log["cost"]))


def released_lp_potentials(cost_fake_real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve OTSR's released critic LP; return (real potentials y*, fake potentials x*).

    .. math::
        \\max_{y\\in[0,1]^N,\\ x\\in[0,1]^N}\\ \\tfrac1N\\textstyle\\sum_i y_i - \\tfrac1N\\sum_j x_j
        \\quad\\text{s.t.}\\quad y_i - x_j \\le C_{ij}\\ \\ \\forall i, j,

    where ``C_ij = 2K‖s_i − h_j‖²`` is the cost between **fake i and real j** while ``y_i``
    belongs to real i and ``x_j`` to fake j: the released code's transposed indexing (research
    note §2.2). When every ``C_ij >= 1`` the unique optimum is ``y ≡ 1, x ≡ 0`` (note §2.3).
    Where the optimum is not unique (some costs < 1) HiGHS may pick a different vertex than
    the CBC solver of the released code.

    Args:
        cost_fake_real: ``(N, N)`` matrix ``C`` as above.
    Returns:
        ``y`` (N,) and ``x`` (N,), float64 in [0, 1].
    Raises:
        OTSolveError: HiGHS failed.
    """
    from scipy.optimize import linprog

    c_mat = np.asarray(cost_fake_real, dtype=np.float64)
    n = c_mat.shape[0]
    if c_mat.shape != (n, n):
        raise ShapeError(f"the released LP needs a square cost matrix; got {c_mat.shape}")
    # Variables z = [y_0..y_{N-1}, x_0..x_{N-1}]; linprog minimises, so negate the objective.
    obj = np.concatenate([-np.ones(n), np.ones(n)]) / n
    rows = np.arange(n * n)
    i_idx, j_idx = np.divmod(rows, n)
    a_ub = np.zeros((n * n, 2 * n))
    a_ub[rows, i_idx] = 1.0
    a_ub[rows, n + j_idx] = -1.0
    res = linprog(obj, A_ub=a_ub, b_ub=c_mat.reshape(-1), bounds=(0.0, 1.0), method="highs")
    if res.status != 0:
        raise OTSolveError(f"HiGHS could not solve OTSR's critic LP: {res.message}")
    return res.x[:n].copy(), res.x[n:].copy()
