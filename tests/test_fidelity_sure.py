"""SURE choice of λ for ``fidelity="auto"``: the probe, the risk estimate, the search (optisr.guided.fidelity).

References: dense matrices of the soft smoother ``H = D (DᵀD + λL)⁻¹ Dᵀ`` built with
:mod:`optisr.solvers.direct`, Monte-Carlo noise draws, and hand-computed values.
"""

import math

import numpy as np
import pytest
import torch

from optisr.errors import ConfigError
from optisr.guided.fidelity import PROBE_SEED, hutchinson_probe, sure_lr, sure_search
from optisr.guided.layer import graph_solve
from optisr.ops.operators import make_operator
from optisr.solvers.direct import laplacian_matrix, operator_matrix


def _smoother(H: int = 12, W: int = 15, f: int = 3, lam: float = 0.7, seed: int = 0):
    """Dense ``H_λ`` (n×n), the edge weights (1, 2, H, W) and the operator of a small soft problem."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.01, 1.0, (2, H, W))
    op = make_operator("area", (H, W), f)
    L = laplacian_matrix(w).toarray()
    D = operator_matrix(op).toarray()
    hat = D @ np.linalg.solve(D.T @ D + lam * L, D.T)
    return hat, torch.from_numpy(w)[None], op


def test_probe_is_a_fixed_rademacher_draw():
    z = hutchinson_probe((40, 50))
    assert z.shape == (40, 50) and z.dtype == np.float64
    assert set(np.unique(z)) == {-1.0, 1.0}
    assert abs(z.mean()) < 0.05  # balanced: 2000 draws, std of the mean 0.022
    np.testing.assert_array_equal(z, hutchinson_probe((40, 50), seed=PROBE_SEED))
    assert not np.array_equal(z, hutchinson_probe((40, 50), seed=PROBE_SEED + 1))


def test_probe_estimate_of_the_trace_against_the_dense_smoother():
    hat, w, op = _smoother()
    assert np.allclose(hat, hat.T)  # the soft smoother is symmetric, 0 ≤ eigenvalues ≤ 1
    n = hat.shape[0]
    est = np.array([z @ hat @ z for z in (hutchinson_probe((n,), seed=s) for s in range(600))])
    se = est.std() / math.sqrt(est.size)
    assert abs(est.mean() - np.trace(hat)) < 4 * se, (est.mean(), np.trace(hat), se)
    # one probe through the CG solver (as guided_upsample does it) gives the dense zᵀ H z
    z = hutchinson_probe(op.lr_size)
    x = graph_solve(torch.from_numpy(z)[None, None], w, 3, mode="soft", lam=0.7, tol=1e-12, max_iter=10000)
    probe = float((op.apply(x)[0, 0].numpy() * z).sum())
    assert probe == pytest.approx(z.ravel() @ hat @ z.ravel(), rel=1e-8)


def test_sure_by_hand_and_unbiased_for_the_dense_smoother():
    # H = α I on n samples: ‖Hs − s‖² = (1 − α)²‖s‖², tr H = nα
    s = np.array([3.0, -1.0, 2.0, 0.5])
    alpha, sigma, n = 0.25, 1.5, 4
    by_hand = (1 - alpha) ** 2 * float(s @ s) + 2 * sigma**2 * n * alpha - n * sigma**2
    assert sure_lr((1 - alpha) ** 2 * float(s @ s), n * alpha, n, sigma) == pytest.approx(by_hand, rel=1e-15)
    # Monte Carlo: E[SURE] = E‖H s − u‖² for s = u + N(0, σ² I), at a light and a heavy smoothing
    rng = np.random.default_rng(2)
    sigma = 3.0
    for lam in (0.05, 20.0):
        hat, _, _ = _smoother(lam=lam, seed=1)
        n = hat.shape[0]
        u = np.linspace(0.0, 40.0, n) + 10.0 * (np.arange(n) % 5 == 0)
        s = u[:, None] + rng.normal(0.0, sigma, (n, 4000))
        fit = hat @ s
        risk = ((fit - u[:, None]) ** 2).sum(0)
        sure = np.array([sure_lr(r, np.trace(hat), n, sigma) for r in ((fit - s) ** 2).sum(0)])
        diff = sure - risk
        assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(diff.size), (lam, sure.mean(), risk.mean())
        # without the trace term the estimate is biased by 2σ² tr H (> 4 standard errors here)
        assert abs((diff - 2 * sigma**2 * np.trace(hat)).mean()) > 4 * diff.std() / math.sqrt(diff.size)


@pytest.mark.parametrize("lam0", [1.0, 1e-3, 1e4, 10.0**1.3])
def test_sure_search_finds_the_minimum_of_a_parabola_in_log_lambda(lam0):
    calls = []

    def evaluate(lam):
        calls.append(lam)
        return f"x@{lam:g}", (math.log10(lam) - 1.3) ** 2

    lam, x, evals = sure_search(evaluate, lam0, max_evals=40)
    assert evals == len(calls) == len(set(calls))  # no λ is solved twice
    assert math.log10(lam) == pytest.approx(1.3, abs=1e-9) and x == f"x@{lam:g}"
    if lam0 == 1.0:  # 10^0, 10^0.5, 10^1, 10^1.5, 10^2 (uphill: bracket), then the vertex 10^1.3
        assert evals == 6


def test_sure_search_keeps_to_its_budget_and_returns_the_best_seen():
    seen = []

    def downhill(lam):  # monotone: the minimum lies beyond the budget
        seen.append(lam)
        return None, -math.log10(lam)

    lam, _, evals = sure_search(downhill, 1.0, max_evals=4)
    assert evals == 4 and lam == max(seen) == pytest.approx(10**1.5)
    with pytest.raises(ConfigError):
        sure_search(downhill, 1.0, max_evals=1)
    with pytest.raises(ConfigError):
        sure_search(downhill, 0.0)
