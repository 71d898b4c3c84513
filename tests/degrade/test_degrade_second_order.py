import numpy as np
import pytest

from optisr.degrade.second_order import (
    BlurConfig,
    SecondOrderConfig,
    apply_second_order,
    mixed_kernel,
    sample_second_order_params,
    second_order_degrade,
    sinc_kernel,
)
from optisr.errors import ConfigError


def test_kernels_sum_to_one():
    for kind in ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"):
        k = mixed_kernel(kind, 15, 2.0, 1.0, 0.5, beta=1.5)
        assert k.shape == (15, 15) and k.sum() == pytest.approx(1) and k.argmax() == 15 * 7 + 7
    s = sinc_kernel(13, np.pi / 3)
    assert s.sum() == pytest.approx(1) and (s < 0).any()  # ringing lobes
    assert np.allclose(mixed_kernel("iso", 15, 2.0, 2.0, 0.0), mixed_kernel("generalized_iso", 15, 2.0, 2.0, 0.0, 1.0))


def test_defaults_are_real_esrgan():
    c = SecondOrderConfig()
    assert c.first.resize_prob == (0.2, 0.7, 0.1) and c.second.resize_prob == (0.3, 0.4, 0.3)
    assert c.first.blur.sigma_range == (0.2, 3.0) and c.second.blur.sigma_range == (0.2, 1.5)
    assert c.second.blur.prob == 0.8 and c.final_sinc_prob == 0.8 and c.first.blur.sinc_prob == 0.1
    assert c.first.noise_range == (1.0, 30.0) and c.second.poisson_scale_range == (0.05, 2.5)


def test_pipeline_shapes_determinism_and_range():
    rng = np.random.default_rng(0)
    r = np.linspace(0, 1, 64, dtype=np.float32)
    hr = np.stack([np.add.outer(r, r) / 2, np.outer(r, r), 0.5 + 0.3 * np.sin(10 * np.add.outer(r, r))], -1)
    hr = hr.astype(np.float32)
    outs = []
    for seed in range(6):
        lr = second_order_degrade(hr, SecondOrderConfig(), np.random.default_rng(seed))
        assert lr.shape == (16, 16, 3) and lr.dtype == np.float32
        assert lr.min() >= 0 and lr.max() <= 1 and np.allclose(lr * 255, np.round(lr * 255), atol=1e-4)
        outs.append(lr)
    assert not np.array_equal(outs[0], outs[1])
    p = sample_second_order_params(SecondOrderConfig(scale=2), np.random.default_rng(9))
    assert np.array_equal(apply_second_order(hr, p), apply_second_order(hr, p))
    assert apply_second_order(hr, p).shape == (32, 32, 3)
    del rng


def test_config_validation():
    with pytest.raises(ConfigError):
        BlurConfig(kernel_range=(6, 21))
    with pytest.raises(ConfigError):
        BlurConfig(kernel_list=("iso", "box"), kernel_prob=(0.5, 0.5))
    with pytest.raises(ConfigError):
        SecondOrderConfig(final_sinc_prob=1.5)
