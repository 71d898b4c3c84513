"""``optisr adapt`` (optisr.train.adapt, optisr.cli.adapt): tiny synthetic noisy photos, a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from optisr.cli.main import main
from optisr.errors import ConfigError
from optisr.train.adapt import adapt, build_adapt_config, estimate_photos, parse_duration
from optisr.version import __version__

# CPU-sized: 8² LR patches (32² HR), 32² noise tiles, a small critic, 1 thread.
SMALL = [
    "threads=1",
    "gt_size=32",
    "photos.lr_size=8",
    "photos.patches_per_photo=2",
    "photos.noise.patch_size=32",
    "photos.noise.sub_size=16",
    "network_d.num_feat=8",
    "train.batch_size=2",
    "degradation.blur_sigma_steps=4",
]


def _photo(rng: np.random.Generator, i: int, size: int = 96, sigma: float = 6.0) -> np.ndarray:
    """A flat two-tone scene with a disc and Gaussian noise: (size, size, 3) uint8 RGB."""
    img = np.full((size, size, 3), 120.0 + 20 * i)
    img[:, size // 2 :] = 60.0
    cv2.circle(img, (size // 3, size // 3), size // 8, (200, 50, 50), -1)
    img += rng.normal(0, sigma, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write(path: Path, rgb: np.ndarray) -> None:
    params = [cv2.IMWRITE_JPEG_QUALITY, 80] if path.suffix == ".jpg" else []
    assert cv2.imwrite(str(path), rgb[:, :, ::-1], params)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Two JPEG photos (quality 80) and one PNG, 96² each, plus a text file that is not a photo."""
    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i, ext in enumerate((".jpg", ".jpg", ".png")):
        _write(d / f"p{i}{ext}", _photo(rng, i))
    (d / "notes.txt").write_text("not a photo")
    return d


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    # a bounded run should a check fail to stop it; later options (args) win
    code = main(["adapt", "--no-progress", "--time", "20s", "--max-steps", "2", *args, *SMALL])
    return code, capsys.readouterr().err


# ------------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    "text, seconds",
    [("90s", 90.0), ("30m", 1800.0), ("1.5h", 5400.0), ("120", 120.0), (" 2M ", 120.0), (".5h", 1800.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5", "0", "0s", "1e3", "30 min", "h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="--time"):
        parse_duration(text)


# ------------------------------------------------------------------------------- estimates


def test_estimate_photos_downscales_and_reads_jpeg_tables(photos: Path) -> None:
    est = estimate_photos(photos, build_adapt_config(SMALL), scale=4)
    assert est.photo_count == 3 and est.names == ["p0.jpg", "p1.jpg", "p2.png"]
    assert [h.shape for h in est.hr] == [(48, 48, 3)] * 3  # ×2 bicubic downscale
    assert est.jpeg_qualities == [80.0, 80.0]  # the PNG has no quantisation tables
    assert est.noise_tiles and all(t.shape == (32, 32, 3) for t in est.noise_tiles)
    # the PNG is noisier than the JPEGs (whose encoder smoothed the noise); the median lies between
    assert 0.2 < est.noise_sigma < 6.5


# ------------------------------------------------------------------------------------ runs


def test_adapt_writes_a_loadable_model_that_differs_from_the_source(photos: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    from optisr.blind.api import upscale
    from optisr.blind.registry import load_model

    out = tmp_path / "mine.safetensors"
    result = adapt(
        photos, out, time_limit_s=None, config=build_adapt_config(SMALL), max_steps=2, progress=False, device="cpu"
    )
    assert result.output == out and out.is_file() and result.steps == 2
    assert (tmp_path / "mine.adapt" / "run" / "state_00000002.pt").is_file()

    source = load_model("otsr-compact-x4").model.state_dict()
    adapted = load_model(str(out))
    assert adapted.arch == "SRVGGNetCompact" and adapted.scale == 4
    diffs = [float((adapted.model.state_dict()[k] - v).abs().max()) for k, v in source.items()]
    assert max(diffs) > 0.0

    lr = _photo(np.random.default_rng(5), 0, size=24)
    sr = upscale(lr, model=str(out), device="cpu")
    assert sr.shape == (96, 96, 3) and sr.dtype == np.uint8

    with safe_open(str(out), framework="pt") as fh:
        meta = fh.metadata()
    assert meta == result.metadata
    assert meta["adapt_source"] == "otsr-compact-x4"
    assert meta["adapt_photos"] == "3" and meta["adapt_photos_used_for_hr"] == "3"
    est = estimate_photos(photos, build_adapt_config(SMALL), scale=4)
    assert meta["adapt_noise_patches"] == str(len(est.noise_tiles))
    assert float(meta["adapt_noise_sigma"]) == pytest.approx(est.noise_sigma, abs=1e-3)
    assert meta["adapt_jpeg_quality"].startswith("80-80 (2 JPEG photos)")
    recipe = json.loads(meta["adapt_degradation"])
    assert recipe["jpeg_quality"] == [75, 85]  # 80 ± jpeg_margin 5
    assert recipe["jpeg_prob"] == pytest.approx(0.9 * 2 / 3)  # jpeg_prob × the share of JPEG photos
    lo, hi = recipe["sigma_range"]
    sigma = float(meta["adapt_blur_sigma"])
    assert 0.2 <= sigma <= 3.0  # the blur_sigma_search range
    assert lo == pytest.approx(max(0.1, sigma - 0.3), abs=1e-3) and hi == pytest.approx(sigma + 0.3, abs=1e-3)
    assert "sharpness" in meta["adapt_blur_method"]
    assert meta["adapt_steps"] == "2" and float(meta["adapt_seconds"]) > 0
    losses = json.loads(meta["adapt_final_losses"])
    assert {"g_loss", "d_loss", "g_l1_teacher"} <= set(losses)
    assert meta["optisr_version"] == __version__ and meta["loss_mode"] == "otsr"


def test_resume_continues_from_the_saved_state(photos: Path, tmp_path: Path) -> None:
    from optisr.blind.registry import load_model

    cfg = build_adapt_config(SMALL)
    out = tmp_path / "m.safetensors"
    first = adapt(photos, out, time_limit_s=None, config=cfg, max_steps=2, progress=False, device="cpu")
    w2 = load_model(str(out)).model.state_dict()
    with pytest.raises(ConfigError, match="--resume"):  # a fresh start would clobber the run
        adapt(photos, out, time_limit_s=None, config=cfg, max_steps=4, progress=False, overwrite=True)
    second = adapt(photos, out, time_limit_s=None, config=cfg, max_steps=4, resume=True, overwrite=True, progress=False)
    assert (first.steps, second.steps) == (2, 4)
    assert second.metadata["adapt_steps_this_run"] == "2"
    w4 = load_model(str(out)).model.state_dict()
    assert any(not torch.equal(w2[k], w4[k]) for k in w2)

    # the same four steps in one go give the same weights: the resume was exact
    one = tmp_path / "one.safetensors"
    adapt(photos, one, time_limit_s=None, config=cfg, max_steps=4, progress=False, device="cpu")
    w = load_model(str(one)).model.state_dict()
    assert all(torch.allclose(w[k], w4[k], atol=1e-6) for k in w)


def test_cli_adapt_writes_the_model(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.safetensors"
    code = main(["adapt", "--photos", str(photos), "-o", str(out), "--max-steps", "1", "--time", "90s",
                 "--seed", "3", "--work-dir", str(tmp_path / "w"), "--device", "cpu", "--no-progress", *SMALL])  # fmt: skip
    assert code == 0 and out.is_file()
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "w" / "run" / "state_00000001.pt").is_file()
    cfg = yaml.safe_load((tmp_path / "w" / "run" / "config.yaml").read_text())
    assert cfg["train"]["seed"] == 3 and 0 < cfg["train"]["time_limit_s"] <= 90


# ----------------------------------------------------------------------------- error paths


def _assert_one_line_error(code: int, err: str, out: Path, *needles: str) -> None:
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("optisr adapt: error:"), err
    for n in needles:
        assert n in lines[0]
    assert not out.exists()
    assert not out.with_name(out.stem + ".adapt").exists()  # no work folder left behind


def test_cli_no_photos(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    out = tmp_path / "m.safetensors"
    code, err = _run(["--photos", str(empty), "-o", str(out)], capsys)
    _assert_one_line_error(code, err, out, str(empty), "0 photo(s) found")


def test_cli_one_photo_is_too_few(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "one"
    d.mkdir()
    _write(d / "a.png", _photo(np.random.default_rng(1), 0))
    out = tmp_path / "m.safetensors"
    code, err = _run(["--photos", str(d), "-o", str(out)], capsys)
    _assert_one_line_error(code, err, out, "1 photo(s) found", "at least 2")


def test_cli_photos_too_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "small"
    d.mkdir()
    rng = np.random.default_rng(2)
    for i in range(3):
        _write(d / f"s{i}.png", _photo(rng, i, size=40))  # 20² after ↓2 < the 32² HR patch
    out = tmp_path / "m.safetensors"
    code, err = _run(["--photos", str(d), "-o", str(out)], capsys)
    _assert_one_line_error(code, err, out, "too small", "64×64")


def test_cli_no_homogeneous_patches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "busy"
    d.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):  # uniform noise over 0..255: grey variance far above max_var everywhere
        _write(d / f"b{i}.png", rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    out = tmp_path / "m.safetensors"
    code, err = _run(["--photos", str(d), "-o", str(out)], capsys)
    _assert_one_line_error(code, err, out, f"no homogeneous patches found in {d}")


def test_cli_unreadable_photo(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (photos / "broken.jpg").write_bytes(b"this is not a jpeg")
    out = tmp_path / "m.safetensors"
    code, err = _run(["--photos", str(photos), "-o", str(out)], capsys)
    _assert_one_line_error(code, err, out, "broken.jpg")


def test_cli_output_exists(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"keep me")
    code, err = _run(["--photos", str(photos), "-o", str(out)], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"keep me"
    assert not (tmp_path / "m.adapt").exists()


@pytest.mark.parametrize(
    "args, needle",
    [(["--time", "5x"], "--time"), (["photos.lr_sise=3"], "lr_sise"), (["--opt", "photos.min_photos=0"], "min_photos")],
)
def test_cli_bad_settings(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    out = tmp_path / "m.safetensors"
    code, err = _run(["--photos", str(photos), "-o", str(out), *args], capsys)
    _assert_one_line_error(code, err, out, needle)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA for the failing device")
def test_a_failed_training_start_leaves_no_work_behind(photos: Path, tmp_path: Path) -> None:
    """The device error comes from the training start, after the patches were written."""
    cfg = build_adapt_config(SMALL)
    out = tmp_path / "m.safetensors"
    with pytest.raises(ConfigError):
        adapt(photos, out, time_limit_s=None, config=cfg, max_steps=1, progress=False, device="cuda")
    assert not out.exists() and not (tmp_path / "m.adapt").exists()
    work = tmp_path / "mine"
    work.mkdir()  # an empty folder the user made is kept, emptied
    with pytest.raises(ConfigError):
        adapt(photos, out, time_limit_s=None, config=cfg, max_steps=1, progress=False, device="cuda", work_dir=work)
    assert work.is_dir() and not any(work.iterdir())


def test_embedded_defaults_build() -> None:
    """The packaged adapt.yaml builds: the OT critic at the otsr fine-tune's weight, ×2 HR downscale, a time-limited run."""
    cfg = build_adapt_config()
    assert cfg.losses.gan_mode == "otsr" and 0 < cfg.losses.gan_weight <= 1.0
    assert cfg.train.ema_decay == 0.99
    assert cfg.photos.hr_downscale == 2.0 and cfg.train.val_every == 0
    assert cfg.photos.noise.rule == "otsr" and cfg.train.total_steps >= 100_000
    # the pixel and teacher L1 compare the low band only (the high band is the critic's): full-band L1
    # blurred the held-out photos' outputs for the first ~2000 steps (README, benchmarks/adapt_polyu.py)
    assert cfg.losses.pixel_lowpass_sigma == 3.0
    assert cfg.validation.noise_guard and cfg.validation.stop_after_guarded == 5
    assert build_adapt_config(["losses.gan_weight=0.02"]).losses.gan_weight == 0.02


def test_match_blur_sigma_is_larger_for_softer_photos() -> None:
    from optisr.train.adapt import AdaptDegradationConfig, match_blur_sigma

    rng = np.random.default_rng(4)
    hr = [cv2.resize(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), (64, 64), interpolation=cv2.INTER_CUBIC)]
    d = AdaptDegradationConfig(blur_sigma_search=(0.3, 2.7), blur_sigma_steps=9, noise_prob=0.0)
    found = [match_blur_sigma(hr, target, d, None, (0.0, (95, 95)), 4, 0) for target in (0.9, 0.3, 0.0)]
    sigmas = [s for s, _ in found]
    assert sigmas[0] == pytest.approx(0.3) and sigmas[-1] == pytest.approx(2.7)  # the ends of the search
    assert sigmas == sorted(sigmas)
    sims = [s for _, s in found]
    assert sims == sorted(sims, reverse=True)  # more blur, less sharpness


def test_patch_shrinks_to_photos_smaller_than_lr_size_but_not_below_gt_size(tmp_path: Path) -> None:
    """lr_size 16 at ×4 wants 64² HR patches; 96² photos ↓2 give 48² HR: the patch shrinks to 48² (LR 12)."""
    d = tmp_path / "p"
    d.mkdir()
    rng = np.random.default_rng(7)
    for i in range(3):
        _write(d / f"p{i}.png", _photo(rng, i))
    _write(d / "tiny.png", _photo(rng, 3, size=60))  # 30² HR < the 32² training crop: not used
    est = estimate_photos(d, build_adapt_config([*SMALL, "photos.lr_size=16"]), 4)
    assert est.lr_size == 12 and len(est.hr) == 3 and est.too_small == 1
    full = estimate_photos(d, build_adapt_config(SMALL), 4)  # lr_size 8 (32² patches) fits: unchanged
    assert full.lr_size == 8 and len(full.hr) == 3
    out = tmp_path / "m.safetensors"
    cfg = build_adapt_config([*SMALL, "photos.lr_size=16"])
    result = adapt(d, out, time_limit_s=None, config=cfg, max_steps=1, progress=False, device="cpu")
    assert result.metadata["adapt_lr_patch"] == "12" and out.is_file()


# ------------------------------------------------------------------------- held-out photos


def test_validation_split_holds_out_spread_photos() -> None:
    from optisr.train.adapt import AdaptValidationConfig, validation_split

    files = [Path(f"p{i:02d}.jpg") for i in range(70)]
    train, held = validation_split(files, AdaptValidationConfig(photos=12), min_photos=2)
    assert len(held) == 12 and len(train) == 58 and not set(train) & set(held)
    idx = [files.index(f) for f in held]
    assert idx[0] > 0 and idx[-1] < 69 and max(np.diff(idx)) <= 6  # spread over the list, not its end
    assert validation_split(files[:5], AdaptValidationConfig(photos=12), 2) == (files[:5], [])  # 5 // 3 < 2
    assert len(validation_split(files[:6], AdaptValidationConfig(photos=12), 2)[1]) == 2
    assert validation_split(files, AdaptValidationConfig(photos=0), 2) == (files, [])


def _six_photos(tmp_path: Path, prefix: str, seed: int) -> Path:
    """Six 96² PNG photos ``{prefix}0.png`` … (enough for two held out: at most a third)."""
    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(6):
        _write(d / f"{prefix}{i}.png", _photo(rng, i % 3))
    return d


def test_held_out_photos_choose_the_written_step(tmp_path: Path) -> None:
    """Six photos: two are held out (never trained on); their NIQE at steps 0, 1, 2 picks the output."""
    from optisr.blind.registry import load_model

    d = _six_photos(tmp_path, "q", seed=1)
    cfg = build_adapt_config([*SMALL, "validation.every=1", "validation.crop=0"])
    out = tmp_path / "v.safetensors"
    result = adapt(d, out, time_limit_s=None, config=cfg, max_steps=2, progress=False, device="cpu")
    meta = result.metadata
    held = json.loads(meta["adapt_val_photos"])
    assert held == ["q2.png", "q3.png"] and meta["adapt_photos_used_for_hr"] == "4"
    curve = {int(k): v for k, v in json.loads(meta["adapt_val_niqe"]).items()}
    excess = {int(k): v for k, v in json.loads(meta["adapt_val_noise_excess"]).items()}
    assert sorted(curve) == sorted(excess) == [0, 1, 2]
    chosen = int(meta["adapt_selected_step"])
    # the noise guard: a step that leaves the outputs grainier than bicubic's is never chosen (the start is exempt)
    eligible = [k for k in curve if k == 0 or excess[k] <= 0]
    assert chosen in eligible and curve[chosen] == min(curve[k] for k in eligible)
    assert "no higher than bicubic" in meta["adapt_val_rule"]

    off = adapt(d, tmp_path / "off.safetensors", time_limit_s=None, progress=False, device="cpu", max_steps=2,
                config=build_adapt_config([*SMALL, "validation.every=1", "validation.crop=0", "validation.noise_guard=false"]))
    curve_off = {int(k): v for k, v in json.loads(off.metadata["adapt_val_niqe"]).items()}
    assert curve_off == curve  # the same seeded run; only the choice differs
    assert curve_off[int(off.metadata["adapt_selected_step"])] == min(curve_off.values())
    assert off.metadata["adapt_val_rule"] == "the lowest NIQE"
    source = load_model("otsr-compact-x4").model.state_dict()
    written = load_model(str(out)).model.state_dict()
    same = all(torch.equal(written[k], v) for k, v in source.items())
    assert same == (chosen == 0)  # step 0 is the starting model itself
    assert ("starting model" in meta["adapt_selected"]) == (chosen == 0)


def test_a_timed_run_ends_within_its_budget(tmp_path: Path) -> None:
    """The time limit covers preparation, training, the last validation and the written file."""
    from optisr.train.adapt import FINISH_RESERVE_S

    d = _six_photos(tmp_path, "t", seed=2)
    budget = FINISH_RESERVE_S + 6.0
    cfg = build_adapt_config([*SMALL, "validation.every=5", "validation.crop=0"])
    result = adapt(d, tmp_path / "t.safetensors", time_limit_s=budget, config=cfg, progress=False, device="cpu")
    assert result.steps > 1 and result.seconds <= budget
