"""Dim / noisy guide re-exposure (optisr.degrade.low_light) and its use in guided training batches."""

import numpy as np
import pytest
import torch

from optisr.degrade.low_light import DIM_INDOOR, GuideDegradeConfig, degrade_guide
from optisr.errors import ConfigError, ShapeError
from optisr.guided.training_data import TrainDataConfig, make_training_batch


def _image(seed: int = 0, hw: tuple[int, int] = (64, 80)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.3, 1.0, (*hw, 3)).astype(np.float32)


def _fixed(**kw) -> GuideDegradeConfig:
    """Every range collapsed to one value; no cast, blur or JPEG unless asked."""
    base = dict(
        prob=1.0,
        gain=(1.0, 1.0),
        cast_std=0.0,
        contrast=(1.0, 1.0),
        photons=(1e7, 1e7),
        read_noise=(0.0, 0.0),
        gamma=(2.2, 2.2),
        blur_prob=0.0,
        jpeg_prob=0.0,
    )
    return GuideDegradeConfig(**{**base, **kw})


def test_prob_zero_is_identity_and_draws_nothing():
    img = _image()
    rng = np.random.default_rng(1)
    out = degrade_guide(img, rng, GuideDegradeConfig())  # default prob 0
    assert out is img
    assert rng.random() == np.random.default_rng(1).random()


def test_deterministic_range_dtype_and_8bit_grid():
    img = _image()
    cfg = GuideDegradeConfig(prob=1.0, blur_prob=0.5, jpeg_prob=0.5)
    for seed in range(6):
        a = degrade_guide(img, np.random.default_rng(seed), cfg)
        b = degrade_guide(img, np.random.default_rng(seed), cfg)
        assert a.dtype == np.float32 and a.shape == img.shape
        assert np.array_equal(a, b)
        assert a.min() >= 0.0 and a.max() <= 1.0
        assert np.allclose(a * 255, np.round(a * 255), atol=1e-3)
    assert not np.array_equal(
        degrade_guide(img, np.random.default_rng(0), cfg), degrade_guide(img, np.random.default_rng(1), cfg)
    )


@pytest.mark.parametrize("gain", [0.05, 0.2, 0.5])
def test_darkens_by_the_gain_in_linear_light(gain):
    img = _image()
    out = degrade_guide(img, np.random.default_rng(0), _fixed(gain=(gain, gain)))
    ratio = (out.astype(np.float64) ** 2.2).mean() / (img.astype(np.float64) ** 2.2).mean()
    assert ratio == pytest.approx(gain, rel=0.03)


def test_random_gains_darken_on_average():
    img = _image()
    cfg = GuideDegradeConfig(prob=1.0)
    means = [degrade_guide(img, np.random.default_rng(s), cfg).mean() for s in range(12)]
    assert max(means) < img.mean()


def test_noise_std_follows_poisson_gaussian_model():
    """Constant patches at three levels, output gamma 1 (linear): std² = L/photons + read² (+ 8-bit step²/12)."""
    levels = np.array([0.1, 0.3, 0.7])  # linear light
    photons, read = 100.0, 0.01
    img = np.concatenate([np.full((100, 100, 3), v ** (1 / 2.2), np.float32) for v in levels], axis=1)
    out = degrade_guide(
        img, np.random.default_rng(3), _fixed(photons=(photons, photons), read_noise=(read, read), gamma=(1.0, 1.0))
    )
    for i, v in enumerate(levels):
        patch = out[:, 100 * i : 100 * (i + 1)].astype(np.float64)
        expected = np.sqrt(v / photons + read**2 + (1 / 255) ** 2 / 12)
        assert patch.std() == pytest.approx(expected, rel=0.1)
        assert patch.mean() == pytest.approx(v, abs=0.01)
    stds = [out[:, 100 * i : 100 * (i + 1)].std() for i in range(3)]
    assert stds[0] < stds[1] < stds[2]


def test_contrast_pulls_toward_the_mean():
    img = _image()
    low = degrade_guide(img, np.random.default_rng(0), _fixed(contrast=(0.5, 0.5)))
    lin_in, lin_out = img.astype(np.float64) ** 2.2, low.astype(np.float64) ** 2.2
    assert lin_out.std() == pytest.approx(0.5 * lin_in.std(), rel=0.05)
    assert lin_out.mean() == pytest.approx(lin_in.mean(), rel=0.02)


def test_dim_indoor_preset_is_dark_and_noisy():
    img = _image()
    out = degrade_guide(img, np.random.default_rng(0), DIM_INDOOR)
    assert out.mean() < 0.6 * img.mean()
    assert np.abs(np.diff(out, axis=1)).mean() > 0  # noisy


def test_bad_settings():
    with pytest.raises(ConfigError, match=r"guide_degrade\.prob"):
        GuideDegradeConfig(prob=1.5)
    with pytest.raises(ConfigError, match=r"guide_degrade\.gain"):
        GuideDegradeConfig(gain=(0.5, 0.1))
    with pytest.raises(ShapeError):
        degrade_guide(np.zeros((4, 4), np.float32), np.random.default_rng(0), GuideDegradeConfig(prob=1.0))


def test_batches_degrade_only_the_guide():
    clean = TrainDataConfig(crop=32, scales=[4, 8])
    dim = TrainDataConfig(crop=32, scales=[4, 8], guide_degrade=GuideDegradeConfig(prob=1.0))
    a, b = make_training_batch(clean, 3, 0, 4), make_training_batch(dim, 3, 0, 4)
    assert torch.equal(a.target, b.target) and torch.equal(a.source, b.source) and torch.equal(a.valid, b.valid)
    assert a.scale == b.scale and a.operator == b.operator
    assert b.guide.mean() < a.guide.mean()
    assert torch.equal(b.guide, make_training_batch(dim, 3, 0, 4).guide)
    assert not torch.equal(b.guide, make_training_batch(dim, 3, 0, 5).guide)


def test_dim_validation_scenes_are_darker_deterministic_and_keep_the_depth():
    from optisr.train.guided import GuidedValConfig, validation_scenes

    v = GuidedValConfig(scenes=2, size=32, guide_conditions=["clean", "dim"])
    clean, dim, again = validation_scenes(v, "clean"), validation_scenes(v, "dim"), validation_scenes(v, "dim")
    for (gc, dc), (gd, dd), (ga, _da) in zip(clean, dim, again):
        assert gd.shape == gc.shape and gd.dtype == torch.float32
        assert torch.equal(gd, ga) and torch.equal(dc, dd)
        assert not torch.equal(gc, gd)
        assert gd.mean() < 0.6 * gc.mean()
    assert not torch.equal(dim[0][0], dim[1][0])


def test_validation_guide_conditions_are_checked():
    from optisr.train.guided import GuidedValConfig

    for bad in (["dim"], ["clean", "fog"], ["clean", "clean"], []):
        with pytest.raises(ConfigError, match="guide_conditions"):
            GuidedValConfig(guide_conditions=bad)


def test_validate_logs_each_guide_condition_separately():
    from pathlib import Path

    from optisr.config import build_config
    from optisr.train.guided import GuidedTask, GuidedTrainConfig

    tiny = Path(__file__).resolve().parents[1] / "configs" / "guided" / "tiny.yaml"
    plain = build_config(GuidedTrainConfig, tiny)
    both = build_config(GuidedTrainConfig, tiny, ["datasets.val.guide_conditions=[clean, dim]"])
    torch.manual_seed(0)
    model = GuidedTask(plain).build_model().eval()
    with torch.no_grad():  # as the training loop validates
        a, b = GuidedTask(plain).validate(model, 0), GuidedTask(both).validate(model, 0)
    assert {k: b[k] for k in a} == a  # the clean metrics are unchanged
    for k in a:
        assert k == "step_mae" or k + "_dim" in b  # the aligned-step diagnostic has no guide condition
    assert b["color_nrmse_dim"] != b["color_nrmse"] and b["nrmse_x4_dim"] != b["nrmse_x4"]
