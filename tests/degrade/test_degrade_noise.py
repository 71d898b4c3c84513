import numpy as np
import pytest

from optisr.degrade.noise import NoiseMiningConfig, NoisePool, is_noise_tile, mine_noise_patches
from optisr.errors import ConfigError


def _grey(mean, sd, shape=(64, 64), seed=0):
    return np.random.default_rng(seed).normal(mean, sd, shape)


def test_rules_on_flat_textured_and_inhomogeneous_tiles():
    otsr = NoiseMiningConfig(patch_size=64, sub_size=16)
    realsr = NoiseMiningConfig.realsr(patch_size=64)
    flat = _grey(120, 2)  # var ≈ 4
    assert is_noise_tile(flat, otsr) and is_noise_tile(flat, realsr)
    textured = _grey(120, 12)  # var ≈ 144
    assert not is_noise_tile(textured, otsr) and not is_noise_tile(textured, realsr)
    step = _grey(100, 2)
    step[:, 32:] += 4  # var ≈ 8: passes RealSR's variance rule, fails OTSR's sub-tile variance test
    assert is_noise_tile(step, realsr) and not is_noise_tile(step, otsr)
    between = _grey(120, 5)  # var ≈ 25: OTSR (<= 50) yes, RealSR (< 20) no
    assert is_noise_tile(between, otsr) and not is_noise_tile(between, realsr)
    dark = _grey(30, 2)
    assert not is_noise_tile(dark, NoiseMiningConfig.realsr(patch_size=64, min_mean=50))


def test_mine_returns_zero_mean_tiles_of_flat_regions_only():
    rng = np.random.default_rng(1)
    img = np.empty((64, 128, 3), np.float32)
    img[:, :64] = 0.5 + rng.normal(0, 0.008, (64, 64, 3))  # flat + noise
    img[:, 64:] = rng.random((64, 64, 3))  # texture
    tiles = mine_noise_patches(img, NoiseMiningConfig(patch_size=64, sub_size=16))
    assert len(tiles) == 1 and tiles[0].shape == (64, 64, 3) and tiles[0].dtype == np.float32
    assert np.allclose(tiles[0].mean(axis=(0, 1)), 0, atol=1e-6)
    raw = mine_noise_patches(img, NoiseMiningConfig(patch_size=64, sub_size=16), zero_mean=False)
    assert raw[0].mean() == pytest.approx(0.5, abs=0.01)


def test_pool_is_deterministic_zero_mean_and_tiles():
    rng = np.random.default_rng(2)
    pool = NoisePool([0.5 + rng.normal(0, 0.02, (32, 32, 3)).astype(np.float32) for _ in range(3)])
    a = pool.sample((16, 16), np.random.default_rng(7))
    b = pool.sample((16, 16), np.random.default_rng(7))
    assert np.array_equal(a, b) and a.shape == (16, 16, 3)
    assert np.allclose(a.mean(axis=(0, 1)), 0, atol=1e-6)
    big = pool.sample((50, 70), np.random.default_rng(0))  # larger than the tiles: mirrored
    assert big.shape == (50, 70, 3) and np.allclose(big.mean(axis=(0, 1)), 0, atol=1e-6)
    lr = np.full((16, 16, 3), 0.5, np.float32)
    out = pool.inject(lr, np.random.default_rng(7))
    assert np.allclose(out, 0.5 + a, atol=1e-6) and (lr == 0.5).all()
    assert np.clip(out, 0, 1).tolist() == out.tolist()


def test_bad_config():
    with pytest.raises(ConfigError):
        NoiseMiningConfig(rule="nope")
    with pytest.raises(ConfigError):
        NoiseMiningConfig(patch_size=64, sub_size=64)
    with pytest.raises(ConfigError):
        NoisePool([])
