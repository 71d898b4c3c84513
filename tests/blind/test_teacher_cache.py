"""Teacher cache (optisr.blind.teacher_cache) and training on it: shapes, resume, the student and GAN engines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from optisr.blind.archs import RRDBNet, SRVGGNetCompact
from optisr.blind.checkpoints import load_model_file
from optisr.blind.teacher_cache import (
    TeacherCacheConfig,
    build_teacher_cache,
    cache_batch,
    load_teacher_cache,
)
from optisr.cli.main import main
from optisr.config import build_config
from optisr.degrade.blur_noise_jpeg import BlurNoiseJpegConfig, blur_noise_jpeg
from optisr.errors import ConfigError
from optisr.io.images import write_image
from optisr.train.blind import BlindTrainConfig, CachedDistillTask, build_task

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "blind" / "tiny.yaml"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    """Two tiny HR images, one held-out image, and two noisy flat 'photos' to mine noise from."""
    root = tmp_path_factory.mktemp("tc")
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a": (40, 48), "b": (44, 40), "z": (36, 36)}.items():
        yy, xx = np.mgrid[0:h, 0:w]
        img = 127 + 60 * np.sin(xx / 3.0)[..., None] * np.cos(yy / 5.0)[..., None] + rng.normal(0, 10, (h, w, 3))
        write_image(root / "hr" / f"{name}.png", img.clip(0, 255).astype(np.uint8))
    for i in range(2):
        flat = 120 + rng.normal(0, 4, (64, 64, 3))
        write_image(root / "photos" / f"p{i}_real.png", flat.clip(0, 255).astype(np.uint8))
    return root


def _cache_cfg(root: Path, **kw) -> TeacherCacheConfig:
    base = {
        "hr_dirs": [str(root / "hr")],
        "holdout": 1,
        "lr_size": 8,
        "patches_per_image": 3,
        "shard_size": 2,
        "noise": {"photos_dir": str(root / "photos"), "patch_size": 32, "sub_size": 8, "license": "test-only"},
        "training_data": "synthetic test images",
    }
    return build_config(TeacherCacheConfig, base={**base, **kw})


def _stub_teacher() -> RRDBNet:
    torch.manual_seed(3)
    return RRDBNet(num_feat=8, num_block=1, num_grow_ch=4)


@pytest.fixture(scope="module")
def cache(folders) -> Path:
    out = folders / "cache"
    build_teacher_cache(_cache_cfg(folders), out, teacher=_stub_teacher(), progress=False)
    return out


def test_cache_has_the_expected_shapes_and_teacher_outputs(cache):
    c = load_teacher_cache(cache)
    assert len(c) == 6 and c.scale == 4  # 2 training images × 3 patches (z.png is held out)
    assert c.hr.shape == (6, 32, 32, 3) and c.teacher.shape == (6, 32, 32, 3)
    assert c.lr.shape == c.lr_clean.shape == (6, 8, 8, 3)
    assert {a.dtype for a in (c.hr, c.lr, c.lr_clean, c.teacher)} == {np.dtype(np.uint8)}
    with torch.no_grad():  # the stored target is the teacher's output on the clean LR
        x = torch.from_numpy(c.lr_clean[:1].transpose(0, 3, 1, 2).astype(np.float32) / 255)
        y = _stub_teacher()(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    assert np.abs(np.round(y * 255) - c.teacher[0].astype(np.float64)).max() <= 1
    assert c.noise is not None and len(c.noise) >= 1
    assert not np.array_equal(c.lr, c.lr_clean)  # noise and/or JPEG were applied
    m = json.loads((cache / "cache.json").read_text())
    assert m["complete"] and m["patches"] == 6 and m["config"]["noise"]["license"] == "test-only"
    assert sorted(p.name for p in (cache / "val" / "HR").iterdir()) == ["z.png"]
    assert (cache / "val" / "LR" / "z.png").is_file()


def test_resumed_build_writes_the_same_shards(folders, cache, tmp_path):
    clock = iter(range(0, 1000, 10))  # 10 "seconds" per call: the limit stops after the first shard
    part = tmp_path / "part"
    m = build_teacher_cache(
        _cache_cfg(folders, time_limit_s=15), part, teacher=_stub_teacher(), progress=False, clock=lambda: next(clock)
    )
    assert not m["complete"] and 0 < len(m["shards"]) < 3
    m = build_teacher_cache(_cache_cfg(folders, time_limit_s=15), part, teacher=_stub_teacher(), progress=False)
    assert m["complete"]
    for name in m["shards"]:
        a, b = np.load(cache / name), np.load(part / name)
        assert all(np.array_equal(a[k], b[k]) for k in ("hr", "lr", "lr_clean", "teacher"))


def test_other_recipe_in_the_same_folder_is_refused(folders, cache):
    with pytest.raises(ConfigError, match="another recipe"):
        build_teacher_cache(_cache_cfg(folders, seed=5), cache, teacher=_stub_teacher(), progress=False)


def test_cache_batches_are_deterministic_aligned_and_redrawn(cache):
    c = load_teacher_cache(cache)
    a = cache_batch(c, 4, 6, seed=0, step=3)
    assert a["lq"].shape == (4, 3, 6, 6) and a["gt"].shape == a["teacher"].shape == (4, 3, 24, 24)
    b = cache_batch(c, 4, 6, seed=0, step=3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["gt"], cache_batch(c, 4, 6, seed=0, step=4)["gt"])
    r = cache_batch(c, 4, 6, seed=0, step=3, redraw=BlurNoiseJpegConfig())
    assert torch.equal(r["gt"], a["gt"]) and not torch.equal(r["lq"], a["lq"])
    with pytest.raises(ConfigError, match="LR crop 9"):
        cache_batch(c, 1, 9, seed=0, step=0)


def test_blur_noise_jpeg_shapes_levels_and_clean_path():
    hr = np.random.default_rng(1).random((32, 24, 3)).astype(np.float32)
    quiet = BlurNoiseJpegConfig(blur_prob=0.0, noise_prob=0.0, jpeg=BlurNoiseJpegConfig().jpeg.__class__(prob=0.0))
    clean, lr = blur_noise_jpeg(hr, quiet, None, np.random.default_rng(0))
    assert clean.shape == lr.shape == (8, 6, 3) and np.array_equal(clean, lr)
    assert np.allclose(clean * 255, np.round(clean * 255), atol=1e-4)
    _, lr2 = blur_noise_jpeg(
        hr, BlurNoiseJpegConfig(jpeg=quiet.jpeg.__class__(prob=1.0)), None, np.random.default_rng(0)
    )
    assert not np.array_equal(lr2, clean)


def _student_args(cache: Path, save: Path, *extra: str) -> list[str]:
    return ["train", "blind", "-c", str(TINY), "--save-dir", str(save), "--no-progress",
            f"distill.cache_dir={cache}", "losses.gan_mode=none", "network_g.type=SRVGGNetCompact",
            "network_g.num_feat=8", "network_g.num_conv=2", f"datasets.val.dataroot_gt={cache / 'val' / 'HR'}",
            f"datasets.val.dataroot_lq={cache / 'val' / 'LR'}", "datasets.train.gt_size=24", *extra]  # fmt: skip


def _cfg(cache: Path, *extra: str) -> BlindTrainConfig:
    args = _student_args(cache, Path("unused"))[7:]
    return build_config(BlindTrainConfig, TINY, args + list(extra))


def test_student_on_the_cache_lowers_its_loss_and_writes_metadata(cache, tmp_path):
    task = build_task(_cfg(cache))
    assert isinstance(task, CachedDistillTask)
    batch = task.batch(999, 0)
    torch.manual_seed(0)  # the trainer's seed: the same initial student
    start = SRVGGNetCompact(num_feat=8, num_conv=2)

    def loss(net: torch.nn.Module) -> float:
        with torch.no_grad():
            sr = net(batch["lq"])
        return float((sr - batch["gt"]).abs().mean() + 0.5 * (sr - batch["teacher"]).abs().mean())

    steps = ["train.total_steps=40", "train.optim.lr=3e-3", "train.ema_decay=0.5", "distill.teacher_weight=0.5",
             "distill.edge_weight=0.01", "train.val_every=20"]  # fmt: skip
    assert main(_student_args(cache, tmp_path, *steps)) == 0
    trained = load_model_file(tmp_path / "last.safetensors")
    assert trained.arch == "SRVGGNetCompact"
    assert loss(trained.model) < 0.92 * loss(start)
    meta = trained.metadata
    assert meta["loss_mode"] == "distill-cache-l1" and json.loads(meta["losses"])["l1_teacher"] == 0.5
    assert meta["noise_license"] == "test-only" and meta["cache_patches"] == "6" and "teacher" in meta
    assert "synthetic test images" in meta["training_data"]
    log = (tmp_path / "logs" / "metrics.jsonl").read_text()
    assert "train/l1_hr" in log and "train/edge" in log and "train/cpu_s" in log and "val/psnr_y" in log


def test_student_resume_gives_identical_weights(cache, tmp_path):
    steps = ["train.total_steps=8", "train.save_every=1", "train.keep_states=0", "train.val_every=0",
             "train.log_every=0"]  # fmt: skip
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(_student_args(cache, ref, *steps)) == 0
    assert main(_student_args(cache, run, *steps)) == 0
    for p in run.iterdir():  # keep the run as if it had stopped after step 4
        if p.suffix == ".safetensors" or (p.name.startswith("state_") and int(p.stem[6:]) > 4):
            p.unlink()
    assert main(_student_args(cache, run, *steps, "--resume")) == 0
    a, b = load_file(str(ref / "last.safetensors")), load_file(str(run / "last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("mode", ["otsr", "wgan-qc", "ragan"])
def test_gan_engine_fine_tunes_the_student_on_the_cache(cache, tmp_path, mode):
    torch.manual_seed(2)
    student = tmp_path / "student.safetensors"
    from optisr.io.state_dict import save_model_safetensors

    save_model_safetensors(SRVGGNetCompact(num_feat=8, num_conv=2), student)
    extra = [f"losses.gan_mode={mode}", f"network_g.pretrained={student}", "train.total_steps=3",
             "train.val_every=3", "datasets.train.gt_size=32", "distill.teacher_weight=0.5"]  # fmt: skip
    assert main(_student_args(cache, tmp_path / "run", *extra)) == 0
    meta = load_model_file(tmp_path / "run" / "last.safetensors").metadata
    assert meta["loss_mode"] == mode and meta["critic"] == "patchgan" and meta["noise_license"] == "test-only"
    assert "train/g_l1_teacher" in (tmp_path / "run" / "logs" / "metrics.jsonl").read_text()


@pytest.mark.parametrize("name", ["otsr_compact", "otsr_compact_otsr", "otsr_compact_wgan_qc", "otsr_compact_ragan"])
def test_shipped_compact_configs_parse(name):
    cfg = build_config(BlindTrainConfig, REPO / "configs" / "blind" / f"{name}.yaml")
    assert cfg.network_g.type == "SRVGGNetCompact" and cfg.distill.cache_dir and cfg.distill.teacher is None
    assert (
        sum(
            p.numel()
            for p in SRVGGNetCompact(num_feat=cfg.network_g.num_feat, num_conv=cfg.network_g.num_conv).parameters()
        )
        <= 2_000_000
    )


def test_cache_errors_name_the_key(folders, tmp_path, capsys):
    assert main(_student_args(tmp_path / "nocache", tmp_path / "r")) == 1
    assert "distill.cache_dir" in capsys.readouterr().err
    cfg = _cache_cfg(folders, hr_dirs=[str(tmp_path / "missing")])
    with pytest.raises(ConfigError, match="hr_dirs"):
        build_teacher_cache(cfg, tmp_path / "c", teacher=_stub_teacher(), progress=False)


def test_kaiming_init_option(cache):
    task = build_task(_cfg(cache, "network_g.init=kaiming"))
    g = task.build_model()["net_g"]
    assert all(float(c.bias.detach().abs().max()) == 0 for c in g.body if isinstance(c, torch.nn.Conv2d))
    with pytest.raises(ConfigError, match="init"):
        build_task(_cfg(cache, "network_g.init=kaiming", "network_g.type=RRDBNet"))
