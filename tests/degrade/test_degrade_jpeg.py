import numpy as np
import pytest

from optisr.degrade.jpeg import JpegConfig, jpeg_compress, random_jpeg
from optisr.errors import ConfigError


def _img():
    r = np.linspace(0, 1, 64, dtype=np.float32)
    x = np.stack([np.add.outer(r, r) / 2, np.outer(r, 1 - r), np.sin(8 * np.add.outer(r, r)) * 0.4 + 0.5], -1)
    return x.astype(np.float32)


def test_quality_orders_error_and_output_is_8bit():
    x = _img()
    e = [np.abs(jpeg_compress(x, q) - x).mean() for q in (10, 50, 95)]
    assert e[0] > e[1] > e[2] and e[2] < 0.01
    y = jpeg_compress(x, 50)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.allclose(y * 255, np.round(y * 255), atol=1e-4)
    grey = jpeg_compress(x[:, :, :1], 40)
    assert grey.shape == (64, 64, 1)


def test_random_quality_range_and_determinism():
    cfg = JpegConfig(quality_range=(30, 40))
    qs = {cfg.sample_quality(np.random.default_rng(s)) for s in range(30)}
    assert qs <= set(range(30, 41)) and len(qs) > 3
    x = _img()
    assert np.array_equal(random_jpeg(x, cfg, np.random.default_rng(3)), random_jpeg(x, cfg, np.random.default_rng(3)))
    assert np.array_equal(random_jpeg(x, JpegConfig(prob=0.0), np.random.default_rng(0)), x)
    with pytest.raises(ConfigError):
        jpeg_compress(x, 0)
    with pytest.raises(ConfigError):
        JpegConfig(quality_range=(50, 20))
