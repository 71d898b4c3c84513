"""Critics: output shapes, input-size errors, BasicSR / Real-ESRGAN key names, the factory."""

from __future__ import annotations

import pytest
import torch

from optisr.blind.critics import (
    CriticConfig,
    NLayerDiscriminator,
    UNetDiscriminatorSN,
    VGGStyleDiscriminator,
    build_critic,
)
from optisr.errors import ConfigError, ShapeError


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_vgg128_shape_and_size_error():
    torch.manual_seed(0)
    d = VGGStyleDiscriminator(num_feat=8)
    assert d(torch.rand(3, 3, 128, 128)).shape == (3, 1)
    with pytest.raises(ShapeError, match=r"128×128.*got 96×128"):
        d(torch.rand(2, 3, 96, 128))
    with pytest.raises(ShapeError, match=r"\(B, 3, H, W\)"):
        d(torch.rand(3, 128, 128))
    d256 = VGGStyleDiscriminator(num_feat=8, input_size=256)
    assert d256(torch.rand(2, 3, 256, 256)).shape == (2, 1)
    with pytest.raises(ConfigError, match="128 or 256"):
        VGGStyleDiscriminator(input_size=192)


def test_vgg128_keys_match_basicsr_layout():
    keys = set(VGGStyleDiscriminator().state_dict())
    expected = {"conv0_0.weight", "conv0_0.bias", "conv0_1.weight", "linear1.weight", "linear1.bias",
                "linear2.weight", "linear2.bias"}
    for i in range(5):
        if i > 0:
            expected |= {f"conv{i}_0.weight"}
        expected |= {f"conv{i}_1.weight"}
        for j in (0, 1):
            if (i, j) == (0, 0):
                continue
            expected |= {f"bn{i}_{j}.{s}" for s in ("weight", "bias", "running_mean", "running_var",
                                                     "num_batches_tracked")}
    assert keys == expected
    assert VGGStyleDiscriminator().linear1.in_features == 512 * 4 * 4
    # OTSR's note §1.2: about 14.5 M parameters at nf = 64.
    assert 14.4e6 < _n_params(VGGStyleDiscriminator()) < 14.6e6


def test_vgg128_loads_a_foreign_state_dict():
    torch.manual_seed(0)
    src = VGGStyleDiscriminator(num_feat=8)
    state = {k: v.clone() for k, v in src.state_dict().items()}
    dst = VGGStyleDiscriminator(num_feat=8)
    dst.load_state_dict(state, strict=True)
    x = torch.rand(2, 3, 128, 128)
    src.eval(), dst.eval()
    torch.testing.assert_close(src(x), dst(x))


@pytest.mark.parametrize("n_layers, size, out", [(3, 128, 14), (2, 64, 14), (1, 32, 14)])
def test_patchgan_shapes(n_layers, size, out):
    d = NLayerDiscriminator(num_feat=8, n_layers=n_layers)
    assert d(torch.rand(2, 3, size, size)).shape == (2, 1, out, out)


def test_patchgan_keys_and_size():
    d = NLayerDiscriminator()
    keys = list(d.state_dict())
    assert keys[:2] == ["model.0.weight", "model.0.bias"]
    assert "model.2.weight" in keys and "model.2.bias" not in keys  # bias-free before BN
    assert "model.3.running_mean" in keys
    assert 2.7e6 < _n_params(d) < 2.8e6  # note §1.2: about 2.8 M
    d_in = NLayerDiscriminator(num_feat=8, norm="instance")
    assert "model.2.bias" in d_in.state_dict()


def test_unet_sn_shapes_keys_and_grad():
    torch.manual_seed(0)
    d = UNetDiscriminatorSN(num_feat=8)
    x = torch.rand(2, 3, 128, 128)
    assert d(x).shape == (2, 1, 128, 128)
    assert d(torch.rand(1, 3, 40, 24)).shape == (1, 1, 40, 24)
    keys = set(d.state_dict())
    assert {"conv0.weight", "conv0.bias", "conv9.weight", "conv9.bias"} <= keys
    for i in range(1, 9):
        assert {f"conv{i}.weight_orig", f"conv{i}.weight_u", f"conv{i}.weight_v"} <= keys
        assert f"conv{i}.bias" not in keys
    d(x).mean().backward()
    assert all(p.grad is not None for p in d.parameters())
    with pytest.raises(ShapeError, match="divisible by 8"):
        d(torch.rand(1, 3, 30, 32))
    assert 4.3e6 < _n_params(UNetDiscriminatorSN()) < 4.45e6  # note §6.2: about 4.4 M


def test_build_critic_factory():
    assert isinstance(build_critic(), VGGStyleDiscriminator)
    assert isinstance(build_critic({"type": "patchgan", "num_feat": 8, "n_layers": 2}), NLayerDiscriminator)
    u = build_critic(CriticConfig(type="unet-sn", num_feat=8, skip_connection=False))
    assert isinstance(u, UNetDiscriminatorSN) and not u.skip_connection
    with pytest.raises(ConfigError, match="did you mean 'unet-sn'"):
        build_critic({"type": "unet_sn"})
    with pytest.raises(ConfigError, match="did you mean 'num_feat'"):
        build_critic({"type": "vgg128", "num_feats": 8})
