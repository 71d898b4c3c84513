import numpy as np
import pytest
import torch
from PIL import Image

from optisr.errors import ConfigError, ShapeError
from optisr.ops.operators import OPERATORS, axis_matrix, lr_size, make_operator

SIZES = [(16, 16, 2), (37, 53, 4), (67, 40, 8), (100, 37, 16), (33, 33, 3)]


@pytest.mark.parametrize("kind", OPERATORS)
@pytest.mark.parametrize("H,W,f", SIZES)
def test_adjoint_identity(kind, H, W, f):
    op = make_operator(kind, (H, W), f)
    x = torch.randn(2, 3, H, W, dtype=torch.float64)
    y = torch.randn(2, 3, *op.lr_size, dtype=torch.float64)
    lhs = (op.apply(x) * y).sum()
    rhs = (x * op.adjoint(y)).sum()
    assert abs(float(lhs - rhs)) <= 1e-10 * float(lhs.abs() + 1)


@pytest.mark.parametrize("kind", OPERATORS)
@pytest.mark.parametrize("H,W,f", SIZES)
def test_matches_dense_kronecker(kind, H, W, f):
    op = make_operator(kind, (H, W), f)
    D = np.kron(axis_matrix(kind, H, f), axis_matrix(kind, W, f))
    x = np.random.default_rng(0).standard_normal((H, W))
    ref = (D @ x.ravel()).reshape(op.lr_size)
    np.testing.assert_allclose(op.apply(torch.from_numpy(x)).numpy(), ref, atol=1e-12)
    c = np.random.default_rng(1).random(op.lr_size)
    diag_ref = ((D * D).T @ c.ravel()).reshape(H, W)
    np.testing.assert_allclose(op.diag_normal(torch.from_numpy(c)).numpy(), diag_ref, atol=1e-12)


@pytest.mark.parametrize("kind", OPERATORS)
@pytest.mark.parametrize("H,W,f", SIZES)
@pytest.mark.parametrize("masked", [False, True])
def test_projection_exact_and_idempotent(kind, H, W, f, masked):
    op = make_operator(kind, (H, W), f)
    x = torch.randn(2, 1, H, W, dtype=torch.float64)
    s = torch.randn(2, 1, *op.lr_size, dtype=torch.float64)
    mask = (torch.rand(2, 1, *op.lr_size) > 0.3) if masked else None
    p = op.project(x, s, mask)
    res = op.apply(p) - s
    if mask is not None:
        res = res * mask
    assert float(res.abs().max()) < 1e-10
    np.testing.assert_allclose(op.project(p, s, mask).numpy(), p.numpy(), atol=1e-10)
    # orthogonality: x - P(x) lies in the row space, i.e. is orthogonal to the null space
    v = op.project_null(torch.randn_like(x), mask)
    assert abs(float(((x - p) * v).sum())) < 1e-8


@pytest.mark.parametrize("H,W,f", [(64, 48, 4), (67, 53, 8), (100, 37, 16), (40, 40, 2), (129, 257, 8)])
def test_bicubic_matches_pil(H, W, f):
    x = np.random.default_rng(2).random((H, W)).astype(np.float32) * 255
    op = make_operator("bicubic", (H, W), f)
    h, w = op.lr_size
    ref = np.asarray(Image.fromarray(x, mode="F").resize((w, h), Image.BICUBIC))
    ours = op.apply(torch.from_numpy(x).double()).numpy()
    assert np.abs(ref - ours).max() <= 1e-5 * 255


def test_area_and_sum_values():
    x = torch.arange(5 * 7, dtype=torch.float64).reshape(5, 7)
    area = make_operator("area", (5, 7), 2).apply(x)
    ssum = make_operator("sum", (5, 7), 2).apply(x)
    assert area.shape == (3, 4) == lr_size((5, 7), 2)
    assert float(area[0, 0]) == (0 + 1 + 7 + 8) / 4
    assert float(area[2, 3]) == 34  # partial corner block: one pixel
    assert float(area[0, 3]) == (6 + 13) / 2
    assert float(ssum[0, 0]) == 0 + 1 + 7 + 8
    assert float(ssum.sum()) == float(x.sum())  # sum preserves totals


def test_apply_masked_nan_aware():
    x = torch.tensor([[1.0, float("nan"), 5.0, 5.0], [3.0, float("nan"), 5.0, 5.0]])
    op = make_operator("area", (2, 4), 2)
    s, m = op.apply_masked(x)
    assert torch.allclose(s, torch.tensor([[2.0, 5.0]]))
    assert bool(m.all())
    x[:, 2:] = float("nan")
    s, m = op.apply_masked(x)
    assert m.tolist() == [[True, False]] and float(s[0, 1]) == 0.0
    counts = torch.ones(2, 4)
    counts[0, 0] = float("nan")
    s, _ = make_operator("sum", (2, 4), 2).apply_masked(counts)
    assert torch.allclose(s, torch.tensor([[4.0, 4.0]]))  # extensive: scaled to the full block


def test_float32_and_dtype_device_kept():
    op = make_operator("bicubic", (32, 32), 4)
    x = torch.randn(1, 1, 32, 32)
    y = op.apply(x)
    assert y.dtype == torch.float32 and op.adjoint(y).dtype == torch.float32


def test_errors():
    with pytest.raises(ConfigError, match="unknown operator"):
        make_operator("lanczos", (8, 8), 2)
    with pytest.raises(ConfigError, match="scale"):
        make_operator("area", (8, 8), 0)
    with pytest.raises(ShapeError, match="must end in"):
        make_operator("area", (8, 8), 2).apply(torch.zeros(1, 1, 8, 9))
    with pytest.raises(ConfigError, match="sigma"):
        make_operator("area", (8, 8), 2, sigma=1.0)


# ----------------------------------------------------------------- public structure operations


@pytest.mark.parametrize("kind", OPERATORS)
def test_axis_matrices_and_from_axis_matrices_rebuild_the_operator(kind):
    op = make_operator(kind, (37, 53), 4)
    a_y, a_x = op.axis_matrices()
    assert a_y.shape == (10, 37) and a_x.shape == (14, 53) and not a_y.flags.writeable
    twin = type(op).from_axis_matrices(kind, 4, a_y, a_x)
    x = torch.randn(2, 37, 53, dtype=torch.float64)
    y = torch.randn(2, 10, 14, dtype=torch.float64)
    np.testing.assert_allclose(twin.apply(x).numpy(), op.apply(x).numpy(), atol=1e-12)
    np.testing.assert_allclose(twin.adjoint(y).numpy(), op.adjoint(y).numpy(), atol=1e-12)
    with pytest.raises(ShapeError, match="a_x"):
        type(op).from_axis_matrices(kind, 4, a_y, a_x.T)


@pytest.mark.parametrize("kind", ["bicubic", "gaussian"])
def test_restrict_is_the_renormalised_window_of_the_global_matrices(kind):
    op = make_operator(kind, (37, 53), 4)
    win = op.restrict((2, 7), (0, 14))
    rows, cols = op.hr_window((2, 7), (0, 14))
    assert (rows, cols) == (slice(8, 28), slice(0, 53)) and win.hr_size == (20, 53) and win.lr_size == (5, 14)
    a_y = op.axis_matrices()[0][2:7, 8:28]
    ref = a_y * (op.axis_matrices()[0][2:7].sum(1) / a_y.sum(1))[:, None]
    np.testing.assert_allclose(win.axis_matrices()[0], ref, atol=1e-15)
    np.testing.assert_allclose(win.axis_matrices()[1], op.axis_matrices()[1], atol=1e-15)
    with pytest.raises(ShapeError, match="not inside"):
        op.restrict((0, 11), (0, 1))


def test_restrict_area_is_the_window_operator():
    op = make_operator("area", (37, 53), 4)
    win = op.restrict((9, 10), (3, 14))  # the partial last row and column blocks
    assert win.hr_size == (1, 41) and win.diagonal_gram
    x = torch.rand(37, 53, dtype=torch.float64)
    np.testing.assert_allclose(win.apply(x[36:, 12:]).numpy(), op.apply(x)[9:, 3:].numpy(), atol=1e-14)


@pytest.mark.parametrize("kind", OPERATORS)
def test_strip_wise_apply_adjoint_and_projection_match_the_whole_image(kind):
    op = make_operator(kind, (67, 45), 4)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(67, 45, generator=g, dtype=torch.float64)
    y = torch.randn(*op.lr_size, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(op.apply_strips(x.numpy(), rows=8).numpy(), op.apply(x).numpy(), atol=1e-12)
    assert op.apply_strips(x.float().numpy(), rows=8, dtype=torch.float64).dtype == torch.float64
    acc = x.clone()
    op.add_adjoint_(acc, y, rows=8)
    np.testing.assert_allclose(acc.numpy(), (x + op.adjoint(y)).numpy(), atol=1e-12)
    mask = torch.rand(*op.lr_size, generator=g) > 0.3
    out = x.clone()
    op.project_(out, y, mask, rows=8)
    np.testing.assert_allclose(out.numpy(), op.project(x, y, mask).numpy(), atol=1e-9)


@pytest.mark.parametrize("kind", OPERATORS)
def test_gram_is_d_dt_on_the_lr_grid(kind):
    op = make_operator(kind, (37, 30), 3)
    z = torch.randn(2, *op.lr_size, dtype=torch.float64)
    np.testing.assert_allclose(op.gram(z).numpy(), op.apply(op.adjoint(z)).numpy(), atol=1e-12)
