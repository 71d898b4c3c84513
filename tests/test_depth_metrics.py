"""Tests for optisr.metrics.depth against hand computations in NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from optisr.errors import ConfigError, ShapeError
from optisr.metrics.depth import (
    block_mean,
    lr_consistency_rmse,
    masked_mae,
    masked_mse,
    masked_rmse,
    mod_crop,
    protocol_a_rmse,
    protocol_b_errors,
    tiles_from_origin,
)


def test_masked_errors_by_hand():
    pred = np.array([[1.0, 2.0], [3.0, 10.0]])
    target = np.array([[2.0, 2.0], [np.nan, 4.0]])
    mask = np.array([[True, True], [True, False]])
    # valid: (0,0) err -1 and (0,1) err 0; (1,0) is NaN in target; (1,1) masked out
    assert masked_mse(pred, target, mask) == pytest.approx(0.5)
    assert masked_rmse(pred, target, mask) == pytest.approx(math.sqrt(0.5))
    assert masked_mae(pred, target, mask) == pytest.approx(0.5)
    assert masked_mse(pred, target) == pytest.approx((1 + 0 + 36) / 3)
    assert math.isnan(masked_rmse(pred, target, np.zeros((2, 2), bool)))


def test_masked_errors_accept_torch_and_check_shapes():
    t = torch.tensor([[1.0, 3.0]], requires_grad=True)
    assert masked_mae(t, np.array([[0.0, 0.0]])) == pytest.approx(2.0)
    with pytest.raises(ShapeError, match="differ"):
        masked_mse(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ShapeError, match="mask shape"):
        masked_mse(np.zeros((2, 2)), np.zeros((2, 2)), np.ones((3, 3), bool))


def test_protocol_a_scale_and_border():
    rng = np.random.default_rng(1)
    target = rng.uniform(500, 3000, (12, 10))
    pred = target + rng.normal(0, 20, target.shape)
    expect = 0.1 * np.sqrt(np.mean((pred - target) ** 2))
    assert protocol_a_rmse(pred, target, report_scale=0.1) == pytest.approx(expect)
    inner = 0.1 * np.sqrt(np.mean((pred[2:-2, 2:-2] - target[2:-2, 2:-2]) ** 2))
    assert protocol_a_rmse(pred, target, report_scale=0.1, border=2) == pytest.approx(inner)
    with pytest.raises(ShapeError):
        protocol_a_rmse(pred, target, border=5)


def test_mod_crop():
    x = np.zeros((370, 427, 3))
    assert mod_crop(x, 8).shape == (368, 424, 3)
    assert mod_crop(x[..., 0], 1).shape == (370, 427)
    with pytest.raises(ShapeError):
        mod_crop(np.zeros((4, 4)), 8)
    with pytest.raises(ConfigError):
        mod_crop(x, 0)


def test_tiles_from_origin_drop_remainder():
    x = np.arange(600 * 700).reshape(600, 700)
    tiles = tiles_from_origin(x, 256)
    assert len(tiles) == 4 and all(t.shape == (256, 256) for t in tiles)
    np.testing.assert_array_equal(tiles[1], x[:256, 256:512])
    np.testing.assert_array_equal(tiles[2], x[256:512, :256])


def _hand_protocol_b(preds, targets, tile, batch, to_cm):
    tiles = []
    for p, t in zip(preds, targets, strict=True):
        for i in range(p.shape[0] // tile):
            for j in range(p.shape[1] // tile):
                sl = (slice(i * tile, (i + 1) * tile), slice(j * tile, (j + 1) * tile))
                tiles.append((p[sl], t[sl]))
    mses, maes = [], []
    for k in range(0, len(tiles), batch):
        d = np.concatenate([(p - t)[np.isfinite(t)] for p, t in tiles[k : k + batch]])
        mses.append(np.mean(d**2))
        maes.append(np.mean(np.abs(d)))
    return np.mean(mses) * to_cm**2, np.mean(maes) * to_cm, len(tiles)


def test_protocol_b_matches_hand_computation():
    rng = np.random.default_rng(2)
    targets = [rng.uniform(1000, 4000, (20, 36)), rng.uniform(1000, 4000, (17, 16))]
    targets[0][3, 3] = np.nan
    preds = [t + rng.normal(0, 50, t.shape) for t in targets]
    # tile 8: image 0 gives 2x4 = 8 tiles, image 1 gives 2x2 = 4; batches of 5 -> 5, 5, 2
    res = protocol_b_errors(preds, targets, tile=8, batch_size=5, units="mm")
    mse, mae, n = _hand_protocol_b(preds, targets, 8, 5, 0.1)
    assert res.n_tiles == n == 12 and res.n_batches == 3
    assert res.mse_cm2 == pytest.approx(mse) and res.mae_cm == pytest.approx(mae)
    # normalised inputs with std give the same numbers
    std = 1122.7
    res_n = protocol_b_errors(
        [p / std for p in preds], [t / std for t in targets], tile=8, batch_size=5, units="normalised", std_mm=std
    )
    assert res_n.mse_cm2 == pytest.approx(mse) and res_n.mae_cm == pytest.approx(mae)
    # pooled over everything vs mean of per-tile errors
    pooled = protocol_b_errors(preds, targets, tile=8, batch_size=None)
    assert pooled.mse_cm2 == pytest.approx(_hand_protocol_b(preds, targets, 8, 10**6, 0.1)[0])
    per_tile = protocol_b_errors(preds, targets, tile=8, batch_size=1)
    assert per_tile.n_batches == 12


def test_protocol_b_units_and_errors():
    p, t = [np.full((4, 4), 1.02)], [np.full((4, 4), 1.0)]
    res = protocol_b_errors(p, t, units="m", tile=None)
    assert res.mae_cm == pytest.approx(2.0) and res.mse_cm2 == pytest.approx(4.0)
    with pytest.raises(ConfigError, match="std_mm"):
        protocol_b_errors(p, t, units="normalised")
    with pytest.raises(ConfigError, match="units"):
        protocol_b_errors(p, t, units="inch")
    with pytest.raises(ShapeError):
        protocol_b_errors(p, t + t)


def test_block_mean_nan_aware():
    x = np.array([[1.0, 3.0, 5.0, np.nan], [5.0, 7.0, np.nan, np.nan]])
    out = block_mean(x, 2)
    assert out[0, 0] == 4.0 and out[0, 1] == 5.0
    masked = block_mean(x, 2, mask=np.array([[True, False, True, True], [True, True, True, True]]))
    assert masked[0, 0] == pytest.approx(13.0 / 3.0)
    assert np.isnan(block_mean(np.full((2, 2), np.nan), 2)[0, 0])
    with pytest.raises(ShapeError, match="multiple of 2"):
        block_mean(np.zeros((3, 4)), 2)


def test_lr_consistency():
    rng = np.random.default_rng(3)
    lr = rng.uniform(1, 2, (4, 5))
    hr = np.kron(lr, np.ones((3, 3)))  # exactly consistent
    assert lr_consistency_rmse(lr, hr, scale=3) == pytest.approx(0.0, abs=1e-12)
    off = hr + 0.5
    assert lr_consistency_rmse(lr, off, scale=3, report_scale=100.0) == pytest.approx(50.0)
    pred_lr = lr + np.array([[1.0] * 5] + [[0.0] * 5] * 3)
    assert lr_consistency_rmse(lr, pred_lr) == pytest.approx(math.sqrt(5 / 20))
    mask = np.ones((4, 5), bool)
    mask[0] = False
    assert lr_consistency_rmse(lr, pred_lr, mask_lr=mask) == pytest.approx(0.0)
    with pytest.raises(ShapeError):
        lr_consistency_rmse(lr, hr)
    with pytest.raises(ShapeError):
        lr_consistency_rmse(lr, hr[:-1], scale=3)
