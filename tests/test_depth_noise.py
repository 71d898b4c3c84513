"""Depth-sensor degradations of the LR source (optisr.degrade.depth_noise) and their use in training batches."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from cv_digests import opencv_digest  # tests/ is on sys.path
import torch

from optisr.degrade.depth_noise import (
    LR_NOISE_KINDS,
    LRNoiseConfig,
    add_depth_dependent_noise,
    add_gaussian_noise,
    apply_lr_noise,
    draw_lr_noise,
    flying_pixels,
    punch_holes,
    quantise_depth,
    shift_depth,
)
from optisr.errors import ConfigError
from optisr.guided.training_data import Batch, TrainDataConfig, make_training_batch, source_std
from optisr.ops.operators import make_operator


def _ramp(h: int = 64, w: int = 64, lo: float = 1000.0, hi: float = 3000.0) -> np.ndarray:
    return np.tile(np.linspace(lo, hi, w, dtype=np.float32), (h, 1))


def _step(h: int = 64, w: int = 64, at: int = 30, near: float = 1000.0, far: float = 2000.0) -> np.ndarray:
    d = np.full((h, w), far, np.float32)
    d[:, :at] = near
    return d


def test_gaussian_noise_std_is_the_requested_fraction_of_the_range():
    d = _ramp(200, 200)
    for frac in (0.005, 0.02):
        out = add_gaussian_noise(d, frac, np.random.default_rng(0))
        assert (out - d).std() == pytest.approx(frac * 2000.0, rel=0.1)


def test_depth_dependent_noise_grows_with_depth_squared():
    d = np.full((200, 200), 1000.0, np.float32)
    d[:, 100:] = 2000.0
    k = 0.01
    out = add_depth_dependent_noise(d, k, np.random.default_rng(0))
    near, far = (out - d)[:, :100].std(), (out - d)[:, 100:].std()
    assert far == pytest.approx(k * 2000.0, rel=0.1)
    assert near == pytest.approx(k * 2000.0 / 4, rel=0.1)


def test_depth_dependent_noise_on_non_positive_maps_stays_finite():
    d = _ramp(50, 50, -1.0, 1.0)
    out = add_depth_dependent_noise(d, 0.01, np.random.default_rng(0))
    assert np.isfinite(out).all() and not np.array_equal(out, d)


@pytest.mark.parametrize("sigma", [0.0, 1.5])
@pytest.mark.parametrize("rate", [0.01, 0.05, 0.2])
def test_holes_fraction(rate, sigma):
    d = _ramp(40, 50)
    out = punch_holes(d, rate, sigma, np.random.default_rng(0))
    assert np.isnan(out).mean() == pytest.approx(rate, abs=1 / d.size)
    assert np.array_equal(out[~np.isnan(out)], d[~np.isnan(out)])


def test_holes_are_blobs_when_smoothed():
    d = _ramp(64, 64)

    def neighbours(m: np.ndarray) -> float:  # fraction of hole pixels with a hole to the right
        return float((m[:, :-1] & m[:, 1:]).sum() / m.sum())

    single = np.isnan(punch_holes(d, 0.05, 0.0, np.random.default_rng(0)))
    blobs = np.isnan(punch_holes(d, 0.05, 2.0, np.random.default_rng(0)))
    assert neighbours(blobs) > 3 * neighbours(single)


def test_holes_leave_a_valid_pixel():
    out = punch_holes(np.ones((2, 2), np.float32), 0.5, 0.0, np.random.default_rng(0))
    assert np.isfinite(out).sum() >= 1


def test_quantisation_grid_and_error():
    d = _ramp(8, 300)
    levels = 64
    out = quantise_depth(d, levels)
    step = 2000.0 / levels
    assert len(np.unique(out)) <= levels + 1
    assert np.abs(out - d).max() <= step / 2 + 1e-3
    assert np.allclose((out - 1000.0) / step, np.round((out - 1000.0) / step), atol=1e-3)


@pytest.mark.parametrize(("dy", "dx"), [(0.0, 1.5), (-2.0, 0.0), (0.7, -0.4)])
def test_misalignment_shifts_by_the_requested_offset(dy, dx):
    h, w = 48, 48
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    plane = 3.0 * xx + 5.0 * yy + 100.0
    out = shift_depth(plane, dy, dx)
    inner = (slice(4, -4), slice(4, -4))
    assert np.allclose(out[inner], (plane - 3.0 * dx - 5.0 * dy)[inner], atol=1e-3)
    step = shift_depth(_step(at=20), 0.0, 2.0)
    assert (step[0] < 1500).sum() == 22  # the edge moved 2 px right


def test_flying_pixels_only_at_discontinuities_and_between_near_and_far():
    f = 4
    hr = _step(64, 64, at=30)  # the step lies inside the LR column 7 (HR columns 28..31)
    lr = hr.reshape(16, f, 16, f).mean(axis=(1, 3))
    out = flying_pixels(lr, hr, f, 1.0, 0.05, np.random.default_rng(0))
    changed = out != lr
    assert changed[:, 7].all() and not np.delete(changed, 7, axis=1).any()
    assert (out[:, 7] >= 1000.0).all() and (out[:, 7] <= 2000.0).all()
    assert out[:, 7].std() > 100  # random mixes, not one value
    none = flying_pixels(lr, hr, f, 0.0, 0.05, np.random.default_rng(0))
    assert np.array_equal(none, lr)
    smooth = _ramp()
    lr_smooth = smooth.reshape(16, f, 16, f).mean(axis=(1, 3))
    assert np.array_equal(flying_pixels(lr_smooth, smooth, f, 1.0, 0.05, np.random.default_rng(0)), lr_smooth)


def test_plans_draw_nothing_when_off_and_every_kind_when_sure():
    rng = np.random.default_rng(0)
    plan = draw_lr_noise(rng, LRNoiseConfig())
    assert plan.shift is None and plan.hole_rate is None and plan.gaussian_std is None
    assert rng.random() == np.random.default_rng(0).random()
    cfg = LRNoiseConfig(prob=1.0, kinds={k: 1.0 for k in LR_NOISE_KINDS})
    plan = draw_lr_noise(np.random.default_rng(0), cfg)
    assert None not in (
        plan.shift,
        plan.flying_frac,
        plan.depth_k,
        plan.gaussian_std,
        plan.quant_levels,
        plan.hole_rate,
    )
    assert 0.25 <= float(np.hypot(*plan.shift)) <= 2.0
    hr = _step(32, 32, at=13)
    lr = hr.reshape(8, 4, 8, 4).mean(axis=(1, 3))
    plan.hole_rate = 0.2
    out = apply_lr_noise(lr, hr, 4, plan, cfg, np.random.default_rng(1))
    assert out.shape == lr.shape and out.dtype == np.float32 and np.isnan(out).any() and np.isfinite(out).any()


def test_bad_settings():
    with pytest.raises(ConfigError, match="unknown kind 'speckle'"):
        LRNoiseConfig(kinds={"speckle": 0.5})
    with pytest.raises(ConfigError, match=r"lr_noise\.prob"):
        LRNoiseConfig(prob=-0.1)
    with pytest.raises(ConfigError, match="hole_rate"):
        LRNoiseConfig(hole_rate=(0.1, 0.9))


def _digest(cfg: TrainDataConfig, n: int, seed: int, step: int) -> tuple[str, Batch]:
    """SHA-256 of a batch's guide, target, mask, scale and operator (the source is checked separately:
    its bits also depend on the operator's summation order, which may change for speed)."""
    b = make_training_batch(cfg, n, seed, step)
    h = hashlib.sha256()
    for t in (b.guide, b.target, b.valid):
        h.update(t.numpy().tobytes())
    h.update(f"{b.scale}{b.operator}".encode())
    return h.hexdigest(), b


def test_default_batches_unchanged_by_the_augmentations():
    """Digests of batches made before the guide / LR augmentations existed (same numpy / OpenCV builds):
    with both off (the default) not one bit of guide, target or mask may change, and the source is
    exactly the operator applied to the target (no augmentation touched it)."""
    digest, b = _digest(TrainDataConfig(crop=32, scales=[4, 8]), 2, 0, 5)
    assert digest == opencv_digest({
        "5.0": "8d07423f4c005523a30b97dea31574c07038c325f21b37c4ca23cc85fbcd9764",
        "5.1": "5b4768b0f015df2911b7bc07c8aad99d5ef22b4e9dc17f5386eee8e3622c7834",
    })  # fmt: skip
    op = make_operator(b.operator, (b.target.shape[-2], b.target.shape[-1]), b.scale)
    assert torch.equal(b.source, op.apply(b.target))
    cfg = TrainDataConfig(crop=48, scales=[4, 8, 16], operator_mix={"bicubic": 0.5, "area": 0.5}, lr_noise_std=0.05)
    digest, b = _digest(cfg, 3, 7, 11)
    assert digest == opencv_digest({
        "5.0": "b23c15b6707147ef887e80211d6af23bc7322acf33f23d05337a01c738a07ed9",
        "5.1": "1f097b12ac87cf164cea9c40f6f4a1bb00f14dd95f16192f3fc541a2d39395fe",
    })  # fmt: skip


def test_batches_degrade_only_the_source_and_keep_the_target_clean():
    clean = TrainDataConfig(crop=32, scales=[4, 8])
    noisy = TrainDataConfig(
        crop=32, scales=[4, 8], lr_noise=LRNoiseConfig(prob=1.0, kinds={k: 1.0 for k in LR_NOISE_KINDS})
    )
    a, b = make_training_batch(clean, 3, 0, 4), make_training_batch(noisy, 3, 0, 4)
    assert torch.equal(a.target, b.target) and torch.equal(a.guide, b.guide) and torch.equal(a.valid, b.valid)
    assert b.source.shape == a.source.shape and b.source.dtype == torch.float32
    assert torch.isnan(b.source).any() and not torch.isnan(a.source).any()
    c = make_training_batch(noisy, 3, 0, 4)
    assert torch.equal(torch.nan_to_num(b.source, 7.0), torch.nan_to_num(c.source, 7.0))  # deterministic
    ok = torch.isfinite(b.source)
    assert not torch.equal(a.source[ok], b.source[ok])


def test_source_std_ignores_holes_and_matches_torch_std_without_them():
    x = torch.randn(3, 1, 5, 6)
    assert torch.equal(source_std(x), x.flatten(1).std(dim=1).view(-1, 1, 1, 1))
    y = x.clone()
    y[0, 0, 1, 2] = float("nan")
    expected = x[0].flatten()[torch.arange(30) != 8].std()
    assert torch.allclose(source_std(y)[0].flatten(), expected.view(1))
    assert torch.equal(source_std(y)[1:], source_std(x)[1:])


def test_training_loss_is_finite_with_holes_in_the_source():
    from optisr.config import build_config
    from optisr.train.guided import GuidedTask, GuidedTrainConfig

    cfg = build_config(GuidedTrainConfig, Path(__file__).resolve().parents[1] / "configs" / "guided" / "tiny.yaml")
    cfg.datasets.train = TrainDataConfig(
        crop=32, scales=[4], lr_noise=LRNoiseConfig(prob=1.0, kinds={"holes": 1.0}, hole_rate=(0.1, 0.1))
    )
    task = GuidedTask(cfg)
    torch.manual_seed(0)
    model = task.build_model()
    batch = task.batch(0, 0)
    assert torch.isnan(batch["source"]).any()
    loss, _ = task.loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
