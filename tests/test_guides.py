"""The one guide conversion (optisr.guided.guides) and that every path uses it."""

import numpy as np
import pytest
import torch

import optisr
from optisr.errors import ShapeError
from optisr.guided.guide_filter import estimate_guide_noise, guide_spread
from optisr.guided.guides import guide_to_unit
from optisr.guided.tiling import _guide_tile


def test_integer_guides_scale_to_unit_and_floats_stay():
    g8 = np.array([[0, 51, 255]], np.uint8)
    np.testing.assert_allclose(guide_to_unit(g8), [[0.0, 0.2, 1.0]], rtol=1e-6)
    g16 = np.array([[0, 13107, 65535]], np.uint16)
    np.testing.assert_allclose(guide_to_unit(g16), [[0.0, 0.2, 1.0]], rtol=1e-6)
    f32 = np.random.default_rng(0).random((4, 5, 3)).astype(np.float32)
    assert guide_to_unit(f32) is f32  # no copy
    f64 = f32.astype(np.float64)
    out = guide_to_unit(f64)
    assert out.dtype == np.float32 and np.array_equal(out, f32)


@pytest.mark.parametrize("dtype", [np.int32, np.bool_, np.int8])
def test_other_dtypes_are_a_shape_error_that_names_the_dtype(dtype):
    with pytest.raises(ShapeError, match=np.dtype(dtype).name):
        guide_to_unit(np.zeros((3, 3), dtype))


def test_the_api_the_tiles_and_the_gate_read_a_uint16_guide_as_its_float():
    rng = np.random.default_rng(1)
    g16 = rng.integers(0, 65536, (40, 48, 3)).astype(np.uint16)
    as_float = g16.astype(np.float32) / 65535.0
    tile = _guide_tile(g16, slice(4, 20), slice(8, 40), dtype=torch.float32)
    np.testing.assert_array_equal(tile[0].numpy().transpose(1, 2, 0), as_float[4:20, 8:40])
    assert estimate_guide_noise(g16) == pytest.approx(estimate_guide_noise(as_float), rel=1e-6)
    assert guide_spread(g16) == pytest.approx(guide_spread(as_float), rel=1e-6)

    src = rng.random((10, 12))
    a = optisr.guided_upsample(src, g16, 4, weights="color", guide_filter=False)
    b = optisr.guided_upsample(src, as_float, 4, weights="color", guide_filter=False)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_guide_tensors_read_uint8_as_unit_floats_and_keep_floats():
    from optisr.guided.guides import guide_tensor_to_unit

    t8 = torch.tensor([[0, 51, 255]], dtype=torch.uint8)
    out = guide_tensor_to_unit(t8)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.2, 1.0]]))
    f = torch.rand(3, 4, 5, dtype=torch.float64)
    assert guide_tensor_to_unit(f) is f
