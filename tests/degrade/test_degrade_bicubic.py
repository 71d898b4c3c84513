import numpy as np
import pytest
from PIL import Image

from optisr.degrade.bicubic import cubic, imresize, resize_weights
from optisr.errors import ConfigError, ShapeError


def test_cubic_kernel_values():
    v = cubic(np.array([0.0, 0.5, 1.0, 1.5, 2.0, 0.25]))
    assert np.allclose(v, [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.8671875])


def test_ramp_4_to_2_hand_computed():
    # ×½: kernel 0.5·cubic(t/2), 8 taps, symmetric padding; weights computed by hand:
    # [-3, -9, 29, 111, 111, 29, -9, -3]/256 at 1-based taps -2..5 → x[3,2,1,1,2,3,4,4]
    row = np.array([1.0, 2.0, 3.0, 4.0])
    w = np.array([-3, -9, 29, 111, 111, 29, -9, -3]) / 256
    first = float(w @ np.array([3, 2, 1, 1, 2, 3, 4, 4]))
    assert first == 1.4609375
    out = imresize(np.tile(row, (4, 1)), 0.5)
    assert out.shape == (2, 2) and out.dtype == np.float32
    assert np.allclose(out, [[1.4609375, 3.5390625]] * 2)  # MATLAB: imresize([1 2 3 4], 0.5)
    ramp2d = np.add.outer(np.arange(4.0), np.arange(4.0) * 10)  # separable ramp
    out2 = imresize(ramp2d, 0.5)
    assert np.allclose(out2, np.add.outer([0.4609375, 2.5390625], [4.609375, 25.390625]))


def test_identity_constants_and_sizes():
    rng = np.random.default_rng(0)
    x = rng.random((13, 9, 3)).astype(np.float32)
    assert np.array_equal(imresize(x, 1.0), x)
    c = np.full((17, 11, 3), 0.37, np.float32)
    for s in (0.25, 1 / 3, 0.5, 1.7, 4.0):
        y = imresize(c, s)
        assert np.allclose(y, 0.37, atol=1e-6)
    assert imresize(c, 0.25).shape == (5, 3, 3)  # ceil(17/4), ceil(11/4)
    assert imresize(c, output_shape=(8, 20)).shape == (8, 20, 3)
    idx, w = resize_weights(40, 10, 0.25)
    assert np.allclose(w.sum(1), 1) and idx.min() >= 0 and idx.max() < 40


def test_interior_equals_pil_bicubic():
    # PIL's antialiased bicubic (a = -0.5, same geometry) differs only at the borders,
    # where it renormalises instead of mirroring.
    rng = np.random.default_rng(2)
    x = rng.random((64, 48)).astype(np.float32)
    ours = imresize(x, 0.25)
    pil = np.asarray(Image.fromarray(x, mode="F").resize((12, 16), Image.BICUBIC))
    assert np.abs(ours[2:-2, 2:-2] - pil[2:-2, 2:-2]).max() < 1e-5


def test_bad_arguments():
    x = np.zeros((4, 4), np.float32)
    with pytest.raises(ConfigError):
        imresize(x)
    with pytest.raises(ConfigError):
        imresize(x, -1.0)
    with pytest.raises(ShapeError):
        imresize(np.zeros(4), 0.5)
