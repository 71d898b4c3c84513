import dataclasses

import numpy as np
import pytest
import yaml

from optisr.cli.main import main
from optisr.degrade.noise import NoiseMiningConfig, NoisePool
from optisr.degrade.pipeline import (
    DegradationConfig,
    KernelSection,
    NoiseSection,
    build_training_pairs,
    config_from_dict,
    config_to_dict,
    load_config,
    preview_figure,
)
from optisr.errors import ConfigError
from optisr.io.images import read_image, write_image

REPO_CONFIG = __import__("pathlib").Path(__file__).resolve().parents[2] / "configs" / "degrade" / "otsr_df2k.yaml"


@pytest.fixture()
def src(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "src"
    for i in range(2):
        img = np.empty((96, 112, 3), np.float32)
        img[:, :56] = 0.4 + 0.1 * i + rng.normal(0, 0.006, (96, 56, 3))  # flat noisy half
        yy, xx = np.mgrid[:96, :56]
        img[:, 56:] = (0.5 + 0.4 * np.sin(xx / 3.0 + yy / 5.0))[:, :, None] * [1, 0.8, 0.6]
        write_image(d / f"im{i}.png", np.round(np.clip(img, 0, 1) * 255).astype(np.uint8))
    return d


def _small_noise():
    return NoiseSection(mining=NoiseMiningConfig(patch_size=32, sub_size=8))


def test_otsr_pairs_layout_and_record(src, tmp_path):
    cfg = DegradationConfig(kind="otsr", scale=4, noise=_small_noise())
    res = build_training_pairs(src, tmp_path / "out", cfg, seed=1)
    out = tmp_path / "out"
    assert res.pairs == 2 and res.noise_patches > 0
    hr, lr = read_image(out / "HR" / "im0.png"), read_image(out / "LR" / "x4" / "im0.png")
    assert hr.shape == (48, 56, 3) and lr.shape == (12, 14, 3)  # ×2 clean-up, then ×4
    assert len(list((out / "noise").glob("*.png"))) == res.noise_patches
    assert len(NoisePool.from_dir(out / "noise")) == res.noise_patches
    rec = yaml.safe_load((out / "degradation.yaml").read_text())
    assert rec["seed"] == 1 and config_from_dict(rec["degradation"]) == cfg
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    with pytest.raises(ConfigError, match="not empty"):
        build_training_pairs(src, out, cfg)


@pytest.mark.parametrize("kind", ["bicubic", "realsr-kernel", "second-order"])
def test_other_kinds_are_deterministic(src, tmp_path, kind):
    cfg = DegradationConfig(kind=kind, scale=2, clean_up_x2=False, noise=dataclasses.replace(_small_noise(), bake=True))
    a = build_training_pairs(src, tmp_path / "a", cfg, seed=5)
    b = build_training_pairs(src, tmp_path / "b", cfg, seed=5)
    la, lb = read_image(a.lr_dir / "im1.png"), read_image(b.lr_dir / "im1.png")
    assert la.shape == (48, 56, 3) and np.array_equal(la, lb)
    assert (a.kernels_dir is not None) == (kind == "realsr-kernel")
    if kind == "realsr-kernel":
        assert np.load(a.kernels_dir / "im1.npy").sum() == pytest.approx(1)


def test_config_yaml_strictness_and_example(tmp_path):
    cfg = load_config(REPO_CONFIG)
    assert cfg.kind == "otsr" and cfg.noise.mining.rule == "otsr" and cfg.noise.mining.max_var == 50
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(cfg)))) == cfg
    with pytest.raises(ConfigError, match="did you mean 'scale'"):
        config_from_dict({"scael": 4})
    with pytest.raises(ConfigError, match="kind"):
        config_from_dict({"kind": "gan"})
    c = config_from_dict({"second_order": {"first": {"noise_range": ["1", "2e1"]}}, "scale": 2})
    assert c.second_order.first.noise_range == (1.0, 20.0) and c.second_order.scale == 2
    with pytest.raises(ConfigError):
        DegradationConfig(kind="realsr-kernel", scale=3, kernels=KernelSection(estimate=True))


def test_cli_writes_pairs_and_preview(src, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("noise:\n  mining: {patch_size: 32, sub_size: 8}\n")
    out, prev = tmp_path / "out", tmp_path / "prev.png"
    rc = main(["degrade", "-i", str(src), "-o", str(out), "--config", str(cfg), "--kind", "realsr-kernel",
               "--scale", "2", "--preview", str(prev), "--quiet"])  # fmt: skip
    assert rc == 0 and (out / "LR" / "x2" / "im0.png").is_file()
    p = read_image(prev)
    assert p.ndim == 3 and p.shape[1] == 4 * 192


def test_cli_bad_input_leaves_nothing(src, tmp_path, capsys):
    (src / "zz_broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    rc = main(["degrade", "-i", str(src), "-o", str(out), "--kind", "bicubic", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "zz_broken.png" in err and len(err.splitlines()) == 1
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    rc = main(["degrade", "-i", str(tmp_path / "nope"), "-o", str(out), "--quiet"])
    assert rc == 1 and "nope" in capsys.readouterr().err


def test_preview_needs_a_built_folder(tmp_path):
    from optisr.errors import InputFileError

    with pytest.raises(InputFileError, match="degradation.yaml"):
        preview_figure(tmp_path, tmp_path / "p.png")
