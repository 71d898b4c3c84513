"""VGG19 perceptual loss: torchvision key layout, local weights, clean disabling without weights."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from optisr.blind.losses import LossConfig, build_losses
from optisr.blind.perceptual import (
    VGG19_LAYERS,
    PerceptualDisabledWarning,
    PerceptualLoss,
    VGG19Features,
    default_vgg19_path,
    load_vgg19,
)
from optisr.errors import ConfigError, InputFileError

# torchvision vgg19 'features' conv indices (cfg "E": 64 64 M 128 128 M 256x4 M 512x4 M 512x4 M).
_TV_CONV = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256), 12: (256, 256),
            14: (256, 256), 16: (256, 256), 19: (256, 512), 21: (512, 512), 23: (512, 512),
            25: (512, 512), 28: (512, 512), 30: (512, 512), 32: (512, 512), 34: (512, 512)}


def _torchvision_like_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in torchvision's vgg19 layout, classifier included."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for idx, (cin, cout) in _TV_CONV.items():
        state[f"features.{idx}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (9 * cin)) ** 0.5
        state[f"features.{idx}.bias"] = torch.randn(cout, generator=g) * 0.01
    state["classifier.0.weight"] = torch.zeros(4, 8)  # shapes irrelevant: must be ignored
    state["classifier.0.bias"] = torch.zeros(4)
    return state


@pytest.fixture(scope="module")
def tv_file(tmp_path_factory):
    """One random torchvision-layout vgg19 .pth for the module (80 MB: written once)."""
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save(_torchvision_like_state(), path)
    return path


@pytest.fixture(autouse=True)
def _no_hub_cache(tmp_path, monkeypatch):
    """Point torch hub at an empty folder so a real cached VGG19 cannot leak into the tests."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def test_layer_table_matches_torchvision_numbering():
    assert sorted(VGG19_LAYERS.values()) == sorted(_TV_CONV)
    assert VGG19_LAYERS["conv5_4"] == 34 and VGG19_LAYERS["conv1_2"] == 2 and VGG19_LAYERS["conv3_4"] == 16
    net = VGG19Features(("conv5_4",))
    assert len(net.features) == 35  # truncated after conv5_4, before its ReLU
    own = {k for k in net.state_dict()}
    assert own == {f"features.{i}.{s}" for i in _TV_CONV for s in ("weight", "bias")}


def test_random_torchvision_pth_loads_and_runs(tv_file):
    state = torch.load(tv_file, weights_only=True)
    net = load_vgg19(tv_file, layers=("conv1_2", "conv5_4"))
    assert net is not None and not net.training
    assert all(not p.requires_grad for p in net.parameters())
    x = torch.rand(2, 3, 32, 32)
    out = net(x)
    assert out["conv5_4"].shape == (2, 512, 2, 2) and out["conv1_2"].shape == (2, 64, 32, 32)
    # Manual reference for conv1_2: normalise, conv1_1, ReLU, conv1_2 (pre-ReLU: has negatives).
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    h = F.relu(F.conv2d((x - mean) / std, state["features.0.weight"], state["features.0.bias"], padding=1))
    ref = F.conv2d(h, state["features.2.weight"], state["features.2.bias"], padding=1)
    torch.testing.assert_close(out["conv1_2"], ref, rtol=1e-4, atol=1e-5)
    assert (out["conv5_4"] < 0).any()


def test_safetensors_and_default_cache_path(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    state = _torchvision_like_state(1)
    st = tmp_path / "vgg19.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    a = load_vgg19(st)
    cache = default_vgg19_path()
    assert cache.name == "vgg19-dcbb9e9d.pth" and str(cache).startswith(str(tmp_path))
    cache.parent.mkdir(parents=True)
    torch.save(state, cache)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = load_vgg19()  # found in the hub cache: no warning
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(a(x)["conv5_4"], b(x)["conv5_4"])


def test_missing_weights_disable_the_term_cleanly():
    with pytest.warns(PerceptualDisabledWarning, match="perceptual loss DISABLED"):
        assert load_vgg19() is None
    with pytest.warns(PerceptualDisabledWarning):
        losses = build_losses(LossConfig(gan_mode="none"))
    assert not losses.perceptual_enabled and losses.perceptual is None
    assert "VGG19" in losses.perceptual_disabled_reason
    sr, hr = torch.rand(1, 3, 16, 16, requires_grad=True), torch.rand(1, 3, 16, 16)
    _, terms = losses.generator_loss(sr, hr)
    assert "perceptual" not in terms and {"pixel", "edge"} <= set(terms)


def test_explicit_bad_path_is_an_error(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_vgg19(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, bad)
    with pytest.raises(InputFileError, match="lack"):
        load_vgg19(bad)
    with pytest.raises(InputFileError):
        build_losses(LossConfig(perceptual_weights_path=str(tmp_path / "nope.pth"), gan_mode="none"))


def test_perceptual_loss_value_and_gradients(tv_file):
    path = tv_file
    net = load_vgg19(path, layers=("conv2_2", "conv5_4"))
    loss_fn = PerceptualLoss(net, {"conv2_2": 0.1, "conv5_4": 1.0})
    sr = torch.rand(2, 3, 32, 32, requires_grad=True)
    hr = torch.rand(2, 3, 32, 32, requires_grad=True)
    loss = loss_fn(sr, hr)
    fs, fh = net(sr), net(hr)
    ref = 0.1 * (fs["conv2_2"] - fh["conv2_2"]).abs().mean() + (fs["conv5_4"] - fh["conv5_4"]).abs().mean()
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0 and hr.grad is None
    assert loss_fn(hr.detach(), hr.detach()).item() == 0.0
    with pytest.raises(ConfigError, match="does not output"):
        PerceptualLoss(net, {"conv4_4": 1.0})
    with pytest.raises(ConfigError, match="unknown VGG19 layer"):
        VGG19Features(("conv6_1",))

    losses = build_losses(LossConfig(perceptual_weights_path=str(path), gan_mode="none"))
    assert losses.perceptual_enabled and losses.perceptual_disabled_reason is None
