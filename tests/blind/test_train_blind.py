"""``optisr train blind`` on the tiny config: batches, the three GAN modes, SIGKILL resume, errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from optisr.blind.archs import RRDBNet
from optisr.train.blind import BlindTrainConfig, build_task
from optisr.blind.training_data import PairedImages, make_batch
from optisr.cli.main import main
from optisr.errors import ConfigError
from optisr.io.images import write_image
from optisr.blind.checkpoints import load_model_file
from optisr.io.state_dict import save_model_safetensors
from optisr.config import build_config

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "blind" / "tiny.yaml"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Paired folders with LR = HR[::4, ::4] exactly (HR is the LR repeated 4×4), and noise tiles."""
    root = tmp_path_factory.mktemp("blind_pairs")
    rng = np.random.default_rng(0)
    for i in range(3):
        lr = (rng.random((16, 16 + 4 * i, 3)) * 255).astype(np.uint8)
        write_image(root / "HR" / f"img{i}.png", np.repeat(np.repeat(lr, 4, 0), 4, 1))
        write_image(root / "LR" / "x4" / f"img{i}.png", lr)
    for i in range(2):
        write_image(root / "noise" / f"n{i}.png", (128 + rng.normal(0, 6, (24, 24, 3))).clip(0, 255).astype(np.uint8))
    return root


def _data_args(d: Path) -> list[str]:
    return [f"datasets.train.dataroot_gt={d / 'HR'}", f"datasets.train.dataroot_lq={d / 'LR' / 'x4'}",
            f"datasets.train.noise_dir={d / 'noise'}", f"datasets.val.dataroot_gt={d / 'HR'}",
            f"datasets.val.dataroot_lq={d / 'LR' / 'x4'}"]


def _cfg(d: Path, *extra: str) -> BlindTrainConfig:
    return build_config(BlindTrainConfig, TINY, _data_args(d) + list(extra))


def _train(save_dir: Path, d: Path, *extra: str) -> int:
    return main(["train", "blind", "-c", str(TINY), "--save-dir", str(save_dir), "--no-progress",
                 *_data_args(d), *extra])


def test_batches_are_deterministic_aligned_and_augmented(data):
    cfg = _cfg(data, "datasets.train.noise_dir=null")
    images = PairedImages(cfg.datasets.train, 4)
    a = make_batch(images, 4, 0, 5)
    b = make_batch(images, 4, 0, 5)
    assert a["lq"].shape == (4, 3, 8, 8) and a["gt"].shape == (4, 3, 32, 32)
    assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])
    assert not torch.equal(a["lq"], make_batch(images, 4, 0, 6)["lq"])
    assert not torch.equal(a["lq"], make_batch(images, 4, 0, 5, rank=1)["lq"])
    for s in range(8):  # crops, flips and transposes keep LR and HR aligned at ×4
        batch = make_batch(images, 4, 0, s)
        up = batch["lq"].repeat_interleave(4, -2).repeat_interleave(4, -1)
        assert torch.equal(up, batch["gt"])
    threaded = PairedImages(_cfg(data, "datasets.train.noise_dir=null", "datasets.train.num_workers=2").datasets.train, 4)
    assert torch.equal(make_batch(threaded, 4, 0, 5)["lq"], a["lq"])
    noisy = make_batch(PairedImages(_cfg(data).datasets.train, 4), 4, 0, 5)
    diff = noisy["lq"] - a["lq"]
    assert torch.equal(noisy["gt"], a["gt"]) and 0 < diff.abs().mean() < 0.1


@pytest.mark.parametrize("kind", ["bicubic", "kernel", "second-order"])
def test_online_degradations_and_jpeg(data, kind):
    cfg = _cfg(data, "datasets.train.dataroot_lq=null", f"datasets.train.degradation.kind={kind}",
               "datasets.train.jpeg.enabled=true")
    images = PairedImages(cfg.datasets.train, 4)
    a, b = make_batch(images, 2, 3, 1), make_batch(images, 2, 3, 1)
    assert a["lq"].shape == (2, 3, 8, 8) and a["gt"].shape == (2, 3, 32, 32)
    assert torch.equal(a["lq"], b["lq"]) and 0 <= float(a["lq"].min()) and float(a["lq"].max()) <= 1


@pytest.mark.parametrize("mode", ["otsr", "wgan-qc", "ragan"])
def test_tiny_run_each_mode_writes_loadable_releases(data, tmp_path, mode):
    extra = [f"losses.gan_mode={mode}"] + (["losses.gan_weight=5e-3"] if mode == "ragan" else [])
    assert _train(tmp_path, data, *extra) == 0
    for name in ("best.safetensors", "last.safetensors", "config.yaml", "state_00000006.pt", "logs/metrics.jsonl"):
        assert (tmp_path / name).is_file(), name
    for name in ("best", "last"):
        loaded = load_model_file(tmp_path / f"{name}.safetensors")
        assert loaded.arch == "RRDBNet" and loaded.scale == 4
        assert loaded.hyperparameters["num_feat"] == 8 and loaded.hyperparameters["num_block"] == 1
    meta = load_model_file(tmp_path / "last.safetensors").metadata
    assert meta["loss_mode"] == mode and meta["critic"] == "patchgan"
    assert str(data / "HR") in meta["training_data"] and "noise injection" in meta["training_data"]
    assert meta["optisr_version"] and meta["step"] == "6" and "psnr_y" in json.loads(meta["metrics"])
    with safe_open(str(tmp_path / "last.safetensors"), framework="pt") as f:
        assert "body.0.rdb1.conv1.weight" in set(f.keys())  # BasicSR key names
    torch.manual_seed(0)  # the trainer's seed: the same initial G
    start = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4)
    last = load_file(str(tmp_path / "last.safetensors"))
    assert not torch.equal(last["conv_first.weight"], start.conv_first.weight)  # G (EMA) moved
    log = (tmp_path / "logs" / "metrics.jsonl").read_text()
    assert "train/d_loss" in log and "train/g_gan" in log and "val/psnr_y" in log and "val/ssim_y" in log


def test_ssim_and_low_band_pixel_terms_train_and_are_recorded(data, tmp_path):
    extra = ["losses.gan_mode=ragan", "losses.gan_weight=5e-3", "losses.ssim_weight=0.5", "losses.pixel_lowpass_sigma=1.0"]
    assert _train(tmp_path, data, *extra) == 0
    log = (tmp_path / "logs" / "metrics.jsonl").read_text()
    assert "train/g_ssim" in log and "train/g_pixel" in log
    losses = json.loads(load_model_file(tmp_path / "last.safetensors").metadata["losses"])
    assert losses["ssim_weight"] == 0.5 and losses["pixel_lowpass_sigma"] == 1.0


def test_sigkill_then_resume_gives_identical_weights(data, tmp_path):
    steps = ["train.total_steps=30", "train.save_every=1", "train.keep_states=0", "train.val_every=0",
             "train.log_every=0"]
    ref = tmp_path / "ref"
    assert _train(ref, data, *steps) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "optisr.cli.main", "train", "blind", "-c", str(TINY), "--no-progress",
           "--save-dir", str(run), *_data_args(data), *steps]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "state_00000003.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "state_00000030.pt").exists() and not (run / "last.safetensors").exists()
    res = subprocess.run(cmd + ["--resume"], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming from" in res.stdout
    a = load_file(str(ref / "last.safetensors"))
    b = load_file(str(run / "last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa = torch.load(ref / "state_00000030.pt", weights_only=True)["model"]["net_d"]
    sb = torch.load(run / "state_00000030.pt", weights_only=True)["model"]["net_d"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # the critic too


def test_pretrained_file_loads_and_mismatch_names_the_key(data, tmp_path):
    torch.manual_seed(1)
    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4)
    path = save_model_safetensors(net, tmp_path / "g.safetensors")
    task = build_task(_cfg(data, f"network_g.pretrained={path}"))
    g = task.build_model()["net_g"]
    assert torch.equal(g.conv_first.weight, net.conv_first.weight)
    with pytest.raises(ConfigError, match=r"network_g\.pretrained: .*num_feat=8 \(config 16\)"):
        build_task(_cfg(data, f"network_g.pretrained={path}", "network_g.num_feat=16"))
    with pytest.raises(ConfigError, match=r"network_g\.pretrained: .*nope\.pth"):
        build_task(_cfg(data, f"network_g.pretrained={tmp_path / 'nope.pth'}"))


def test_distillation_trains_a_compact_student(data, tmp_path):
    torch.manual_seed(1)
    teacher = save_model_safetensors(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4), tmp_path / "teacher.safetensors")
    out = tmp_path / "run"
    assert _train(out, data, f"distill.teacher={teacher}", "network_g.type=SRVGGNetCompact", "network_g.num_feat=4",
                  "network_g.num_conv=1", "losses.gan_mode=none", "train.total_steps=3", "train.val_every=3") == 0
    loaded = load_model_file(out / "last.safetensors")
    assert loaded.arch == "SRVGGNetCompact" and loaded.scale == 4
    assert loaded.metadata["loss_mode"] == "distill-l1" and loaded.metadata["teacher"] == str(teacher)
    assert "train/l1_teacher" in (out / "logs" / "metrics.jsonl").read_text()


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("network_g.num_blok=2", "network_g.num_blok"),
        ("datasets.train.gt_size=30", "datasets.train.gt_size"),
        ("datasets.train.dataroot_gt=/nonexistent/hr", "datasets.train.dataroot_gt"),
        ("datasets.train.dataroot_lq=null", "datasets.train.dataroot_lq"),
        ("network_d.type=vgg128", "network_d.input_size"),
        ("losses.gan_mode=lsgan", "losses.gan_mode"),
        ("train.optim_d.lr=-1", "train.optim_d"),
        ("train.best_metric=lpips", "train.best_metric"),
    ],
)
def test_bad_config_errors_name_the_key(data, tmp_path, capsys, override, key):
    assert _train(tmp_path / "out", data, override) != 0
    err = capsys.readouterr().err
    assert key in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()  # nothing written


def test_validation_niqe_is_matlab_niqe_on_images_with_two_blocks(data, tmp_path):
    """NIQE (MATLAB) is reported once the cropped SR output holds two whole 96×96 blocks (here 96×200)."""
    from optisr.metrics.niqe import niqe

    rng = np.random.default_rng(3)
    lr = (rng.random((26, 52, 3)) * 255).astype(np.uint8)
    write_image(tmp_path / "HR" / "a.png", np.repeat(np.repeat(lr, 4, 0), 4, 1))
    write_image(tmp_path / "LR" / "a.png", lr)
    val = [f"datasets.val.dataroot_gt={tmp_path / 'HR'}", f"datasets.val.dataroot_lq={tmp_path / 'LR'}"]
    task = build_task(_cfg(data, *val, "datasets.val.niqe=true"))

    class Nearest(torch.nn.Module):  # a textured "SR" output (a random-init RRDB gives a flat one)
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest") * self.w

    g = Nearest()
    out = task.validate(g, 0)
    expect = niqe(np.repeat(np.repeat(lr, 4, 0), 4, 1), crop_border=4)
    assert np.isfinite(expect) and out["niqe"] == pytest.approx(expect, abs=1e-9)
    # the shared tiny pairs (64×64 … 64×96 outputs) are too small: no NIQE key, no error
    assert "niqe" not in build_task(_cfg(data, "datasets.val.niqe=true")).validate(g, 0)


def test_validation_photos_are_scored_by_niqe_alone(data, tmp_path):
    """datasets.val.photos_dir: LR-only photos (pattern, evenly spread limit, centre crop) give val/niqe_photos,
    whole-output MATLAB NIQE, apart from the paired images' metrics."""
    from optisr.blind.training_data import ValDataConfig, load_val_photos
    from optisr.metrics.niqe import niqe

    rng = np.random.default_rng(5)
    photos = [(rng.random((40, 60, 3)) * 255).astype(np.uint8) for _ in range(5)]
    for i, p in enumerate(photos):
        write_image(tmp_path / "P" / f"cam_{i}_real.png", p)
    write_image(tmp_path / "P" / "cam_0_mean.png", photos[0])  # not matched by the pattern
    cfg = ValDataConfig(photos_dir=str(tmp_path / "P"), photos_pattern="*_real.*", photos_limit=3, photos_crop=30)
    got = load_val_photos(cfg)
    assert [s.name for s in got] == ["cam_0_real", "cam_2_real", "cam_4_real"] and all(s.hr is None for s in got)
    np.testing.assert_array_equal(got[1].lr, photos[2][5:35, 15:45])

    class Nearest(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest") * self.w

    extra = [f"datasets.val.photos_dir={tmp_path / 'P'}", "datasets.val.photos_pattern='*_real.*'",
             "datasets.val.photos_limit=2", "datasets.val.photos_crop=0"]  # fmt: skip
    out = build_task(_cfg(data, *extra)).validate(Nearest(), 0)
    expect = np.mean([niqe(np.repeat(np.repeat(photos[i], 4, 0), 4, 1)) for i in (0, 4)])
    assert out["niqe_photos"] == pytest.approx(expect, abs=1e-9)
    assert "psnr_y" in out and "niqe" not in out  # the paired images keep their own metrics
    with pytest.raises(ConfigError, match="photos_dir"):  # found when the task is built, before any training
        build_task(_cfg(data, f"datasets.val.photos_dir={tmp_path / 'none'}"))


def test_noise_guard_metric_measures_grain_against_bicubic(data, tmp_path):
    """val/noise_photos_excess: an output's noise σ (resized back to the photo) minus bicubic upscaling's.
    Bicubic itself scores 0 exactly, added grain scores > 0, a smoothed output < 0; the reference is
    computed once per photo."""
    from optisr.degrade.bicubic import imresize
    from optisr.degrade.estimate import noise_sigma
    from optisr.train.blind import photo_noise_reference

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:48, 0:48]
    base = np.stack([60 + 2 * xx, 80 + yy, 120 + xx + yy], -1).astype(np.float64)
    photo = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).round().astype(np.uint8)
    write_image(tmp_path / "P" / "a_real.png", photo)
    up = np.clip(imresize(photo.astype(np.float32) / 255, 4), 0, 1)
    ref = noise_sigma(np.clip(imresize(up, output_shape=(48, 48)), 0, 1))
    assert photo_noise_reference(photo, 4) == pytest.approx(ref, abs=1e-12) and ref > 0

    class Fixed(torch.nn.Module):  # returns a fixed ×4 image, whatever the input
        def __init__(self, img: np.ndarray) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))
            self.img = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.img * self.w

    task = build_task(_cfg(data, f"datasets.val.photos_dir={tmp_path / 'P'}", "datasets.val.photos_crop=0"))
    quantised = np.round(up * 255) / 255  # validation scores the 8-bit output, as written
    grain = np.clip(up + rng.normal(0, 8 / 255, up.shape), 0, 1)
    smooth = np.clip(imresize(imresize(up, output_shape=(24, 24)), output_shape=(192, 192)), 0, 1)
    excess = {k: task.validate(Fixed(img), 0)["noise_photos_excess"] for k, img in
              (("bicubic", quantised), ("grain", grain), ("smooth", smooth))}  # fmt: skip
    assert abs(excess["bicubic"]) < 0.05 * ref
    assert excess["grain"] > 0.1 * ref and excess["smooth"] < -0.5 * ref
    assert len(task._noise_ref) == 1


def test_best_guard_is_checked_when_the_task_is_built(data, tmp_path):
    with pytest.raises(ConfigError, match="train.best_guard: expected noise_photos_excess"):
        build_task(_cfg(data, "train.best_metric=psnr_y", "train.best_guard=psnr_y"))
    with pytest.raises(ConfigError, match="needs datasets.val.photos_dir"):
        build_task(_cfg(data, "train.best_metric=psnr_y", "train.best_guard=noise_photos_excess"))
