import cv2
import numpy as np
import pytest
import scipy.io

from optisr.degrade.kernelgan import KernelGANConfig, estimate_kernel
from optisr.degrade.kernels import (
    GaussianKernelConfig,
    anisotropic_gaussian_kernel,
    compose_x4_kernel,
    degrade_with_kernel,
    kernel_sigma,
    load_kernel,
    load_kernels,
    random_gaussian_kernel,
)
from optisr.errors import ConfigError, InputFileError


def test_gaussian_kernels():
    k = anisotropic_gaussian_kernel(31, 2.0, 2.0)
    assert k.shape == (31, 31) and k.sum() == pytest.approx(1) and kernel_sigma(k) == pytest.approx(2.0, rel=1e-3)
    a = anisotropic_gaussian_kernel(21, 3.0, 1.0, 0.0)
    assert a[10, 13] > a[13, 10]  # sigma_x is along the columns
    assert np.allclose(anisotropic_gaussian_kernel(21, 3.0, 1.0, np.pi / 2), a.T, atol=1e-12)
    ks = [random_gaussian_kernel(GaussianKernelConfig(size=15), np.random.default_rng(s)) for s in range(3)]
    assert all(k.shape == (15, 15) and k.sum() == pytest.approx(1) and (k >= 0).all() for k in ks)
    assert np.array_equal(ks[0], random_gaussian_kernel(GaussianKernelConfig(size=15), np.random.default_rng(0)))
    with pytest.raises(ConfigError):
        anisotropic_gaussian_kernel(4, 1, 1)


def test_load_mat_and_npy(tmp_path):
    k = anisotropic_gaussian_kernel(13, 1.5, 0.8, 0.3) * 3.0
    scipy.io.savemat(tmp_path / "a.mat", {"Kernel": k, "other": np.ones((2, 2))})
    scipy.io.savemat(tmp_path / "b.mat", {"whatever": k})
    np.save(tmp_path / "c.npy", k)
    for name in ("a.mat", "b.mat", "c.npy"):
        got = load_kernel(tmp_path / name)
        assert np.allclose(got, k / k.sum()) and got.sum() == pytest.approx(1)
    assert len(load_kernels(tmp_path)) == 3
    scipy.io.savemat(tmp_path / "bad.mat", {"x": k, "y": k})
    with pytest.raises(InputFileError, match="bad.mat"):
        load_kernel(tmp_path / "bad.mat")
    with pytest.raises(InputFileError, match="missing.npy"):
        load_kernel(tmp_path / "missing.npy")


def test_degrade_with_kernel_is_correlate_then_stride():
    rng = np.random.default_rng(0)
    x = rng.random((32, 24, 3)).astype(np.float32)
    delta = np.zeros((5, 5))
    delta[2, 2] = 1
    assert np.array_equal(degrade_with_kernel(x, delta, 4), x[::4, ::4])
    shift = np.zeros((3, 3))
    shift[1, 2] = 1  # correlation: output(i, j) = x(i, j + 1)
    assert np.allclose(degrade_with_kernel(x, shift, 2)[:, :-1], x[::2, 1::2][:, :-1])
    k2 = anisotropic_gaussian_kernel(7, 1.2, 0.7, 0.4)
    big = rng.random((96, 96, 1)).astype(np.float32)
    twice = degrade_with_kernel(degrade_with_kernel(big, k2, 2), k2, 2)
    once = degrade_with_kernel(big, compose_x4_kernel(k2), 4)
    assert compose_x4_kernel(k2).shape == (19, 19)
    assert np.allclose(twice[4:-4, 4:-4], once[4:-4, 4:-4], atol=1e-5)


def _texture(n, seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros((n, n), np.float32)
    for o in range(1, 7):
        s = 2**o
        small = rng.standard_normal((n // s + 1, n // s + 1)).astype(np.float32)
        img += cv2.resize(small, (n, n), interpolation=cv2.INTER_CUBIC) * (s / 64) ** 0.5
    for _ in range(30):
        c = tuple(int(v) for v in rng.integers(0, n, 2))
        cv2.circle(img, c, int(rng.integers(3, 30)), float(rng.uniform(-2, 2)), -1)
    img = (img - img.min()) / (img.max() - img.min())
    return np.repeat(img[:, :, None], 3, 2)


def test_estimate_kernel_api_fast():
    x = _texture(96)
    cfg = KernelGANConfig(iters=15, crop=40, threads=1)
    k2 = estimate_kernel(x, scale=2, cfg=cfg, seed=3)
    assert k2.shape == (13, 13) and k2.sum() == pytest.approx(1) and (k2 >= 0).all()
    assert np.array_equal(k2, estimate_kernel(x, scale=2, cfg=cfg, seed=3))  # deterministic
    k4 = estimate_kernel(x, scale=4, cfg=cfg, seed=3)
    assert k4.shape == (37, 37) and np.allclose(k4, compose_x4_kernel(k2))
    with pytest.raises(ConfigError):
        estimate_kernel(x, scale=3, cfg=cfg)


def _optisr_imports(module: str) -> set[str]:
    """Modules named by ``import``/``from ... import`` anywhere in ``module``'s source (lazy ones too)."""
    import ast
    import importlib.util

    tree = ast.parse(open(importlib.util.find_spec(module).origin, encoding="utf-8").read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("optisr")}


def test_no_import_cycle_between_kernels_and_kernelgan():
    """kernelgan needs only the kernel arithmetic; kernels re-exports estimate_kernel from it."""
    assert "optisr.degrade.kernels" not in _optisr_imports("optisr.degrade.kernelgan")
    assert "optisr.degrade.kernels" not in _optisr_imports("optisr.degrade.kernel_math")
    from optisr.degrade import kernelgan, kernels

    assert kernels.estimate_kernel is kernelgan.estimate_kernel
