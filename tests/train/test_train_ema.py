"""optisr.train.ema.ModelEMA: the averaging formula, buffers, warm-up, state dict."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from optisr.train.ema import ModelEMA


def _net():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).double()


def test_ema_math_and_buffers():
    model = _net()
    ema = ModelEMA(model, decay=0.9)
    w0 = model[0].weight.detach().clone()
    expected = w0.clone()
    for k in range(3):
        with torch.no_grad():
            model[0].weight.add_(1.0 + k)
        model.train()(torch.randn(8, 3, dtype=torch.float64))  # changes BatchNorm running stats
        ema.update(model)
        expected = 0.9 * expected + 0.1 * model[0].weight.detach()
    torch.testing.assert_close(ema.module[0].weight, expected, rtol=1e-12, atol=1e-12)
    # buffers are copied, not averaged
    assert torch.equal(ema.module[1].running_mean, model[1].running_mean)
    assert int(ema.module[1].num_batches_tracked) == 3
    assert ema.num_updates == 3 and not ema.module.training
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert model[0].weight.requires_grad  # the source is untouched


def test_ema_warmup_decay():
    model = _net()
    ema = ModelEMA(model, decay=0.999, warmup_steps=10)
    assert ema.current_decay(1) == pytest.approx(0.999 * (1 - math.exp(-0.1)))
    assert ema.current_decay(1000) == pytest.approx(0.999, abs=1e-12)
    w_prev = ema.module[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    d = ema.current_decay()
    ema.update(model)
    torch.testing.assert_close(ema.module[0].weight, d * w_prev + (1 - d) * 1.0)


def test_ema_state_dict_round_trip():
    model = _net()
    ema = ModelEMA(model, decay=0.5, warmup_steps=3)
    with torch.no_grad():
        model[0].bias.fill_(2.0)
    ema.update(model)
    other = ModelEMA(_net(), decay=0.1)
    other.load_state_dict(ema.state_dict())
    assert (other.decay, other.warmup_steps, other.num_updates) == (0.5, 3, 1)
    for a, b in zip(ema.module.state_dict().values(), other.module.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="decay"):
        ModelEMA(model, decay=1.0)
