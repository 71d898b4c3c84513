"""RRDBNet / SRVGGNetCompact: shapes, parameter counts, key layouts, hyperparameter round trip."""

from __future__ import annotations

import pytest
import torch

from optisr.blind.archs import RRDBNet, SRVGGNetCompact
from optisr.errors import ConfigError, ShapeError
from optisr.blind.checkpoints import build_model, detect_arch


def test_rrdbnet_default_matches_esrgan_parameter_count():
    # ESRGAN / RealSR generator: 16,697,987 parameters, 351 convolutions.
    with torch.device("meta"):  # no memory, no init: counting only
        net = RRDBNet()
    assert sum(p.numel() for p in net.parameters()) == 16_697_987
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 351


def test_rrdbnet_basicsr_key_names():
    keys = set(RRDBNet(num_feat=8, num_block=2, num_grow_ch=4).state_dict())
    for k in (
        "conv_first.weight",
        "body.1.rdb3.conv5.bias",
        "conv_body.weight",
        "conv_up1.weight",
        "conv_up2.weight",
        "conv_hr.weight",
        "conv_last.bias",
    ):
        assert k in keys


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_rrdbnet_scales(scale):
    net = RRDBNet(scale=scale, num_feat=8, num_block=1, num_grow_ch=4)
    y = net(torch.rand(2, 3, 8, 12))
    assert y.shape == (2, 3, 8 * scale, 12 * scale)
    assert net.conv_first.in_channels == 3 * {4: 1, 2: 4, 1: 16}[scale]


def test_rrdbnet_bad_scale_and_size():
    with pytest.raises(ConfigError, match="scale"):
        RRDBNet(scale=3)
    with pytest.raises(ShapeError, match="divisible by 4"):
        RRDBNet(scale=1, num_feat=8, num_block=1, num_grow_ch=4)(torch.rand(1, 3, 6, 8))


def test_compact_layout_and_shape():
    net = SRVGGNetCompact(num_feat=8, num_conv=3, scale=3)
    keys = list(net.state_dict())
    assert keys[0] == "body.0.weight" and keys[-1] == "body.8.bias"  # 2·num_conv + 2 = 8
    assert net(torch.rand(1, 3, 5, 4)).shape == (1, 3, 15, 12)


def test_compact_residual_is_nearest_upsample():
    net = SRVGGNetCompact(num_feat=4, num_conv=1, scale=2)
    torch.nn.init.zeros_(net.body[-1].weight)
    torch.nn.init.zeros_(net.body[-1].bias)
    x = torch.rand(1, 3, 4, 4)
    torch.testing.assert_close(net(x), x.repeat_interleave(2, -1).repeat_interleave(2, -2))


@pytest.mark.parametrize(
    "net",
    [
        RRDBNet(num_feat=8, num_block=2, num_grow_ch=4),
        RRDBNet(1, 1, scale=2, num_feat=4, num_block=1, num_grow_ch=2),
        RRDBNet(scale=1, num_feat=4, num_block=3, num_grow_ch=6),
        SRVGGNetCompact(num_feat=4, num_conv=2, scale=4),
        SRVGGNetCompact(num_feat=6, num_conv=0, scale=1, act_type="relu"),
    ],
    ids=lambda n: f"{type(n).__name__}",
)
def test_hyperparameter_round_trip(net):
    arch, hp = detect_arch(net.state_dict())
    assert arch == type(net).__name__
    assert hp == net.hyperparameters()
    rebuilt = build_model(arch, hp)
    rebuilt.load_state_dict(net.state_dict(), strict=True)


def test_kaiming_init_keeps_the_input_signal_through_the_compact_chain():
    from optisr.blind.archs.compact import kaiming_init_

    x = torch.rand(2, 3, 16, 16)

    def deep_std(net: SRVGGNetCompact) -> float:
        """How much the last hidden activations depend on the input (two random inputs)."""
        hs = []
        for inp in (x, torch.rand(2, 3, 16, 16)):
            h = inp
            for layer in list(net.body)[:-1]:
                h = layer(h)
            hs.append(h)
        return float((hs[0] - hs[1]).std())

    torch.manual_seed(0)
    default = SRVGGNetCompact(num_feat=32, num_conv=16)
    torch.manual_seed(0)
    he = kaiming_init_(SRVGGNetCompact(num_feat=32, num_conv=16))
    assert deep_std(he) > 20 * deep_std(default)  # torch's default init loses the input
    with torch.no_grad():  # the last conv is scaled down: the start is close to nearest upsampling
        near = torch.nn.functional.interpolate(x, scale_factor=4.0, mode="nearest")
        assert float((he(x) - near).abs().mean()) < 0.2
    assert all(float(c.bias.abs().max()) == 0 for c in he.body if isinstance(c, torch.nn.Conv2d))
