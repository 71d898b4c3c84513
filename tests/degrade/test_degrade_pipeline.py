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


# ----------------------------------------------------------- fault sweep (issue 13): degrade


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("optisr degrade: error: "), err
    return err


def test_cli_output_same_as_input_is_refused_and_inputs_kept(src, capsys):
    before = _snapshot(src)
    rc = main(["degrade", "-i", str(src), "-o", str(src), "--kind", "bicubic", "--overwrite", "--quiet"])
    assert rc == 1 and "overlaps the input" in _one_line(capsys)
    assert _snapshot(src) == before


def test_cli_output_containing_or_inside_input_is_refused(src, tmp_path, capsys):
    (tmp_path / "unrelated.txt").write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(src, target_is_directory=True)
    before, parent_before = _snapshot(src), _snapshot(tmp_path)
    for out in (tmp_path, src / "pairs", link):
        rc = main(["degrade", "-i", str(src), "-o", str(out), "--kind", "bicubic", "--overwrite", "--quiet"])
        assert rc == 1 and "overlaps the input" in _one_line(capsys)
    assert _snapshot(src) == before and _snapshot(tmp_path) == parent_before


def test_overwrite_replaces_only_what_degrade_writes(src, tmp_path):
    out = tmp_path / "out"
    cfg = DegradationConfig(kind="otsr", scale=4, noise=_small_noise())
    build_training_pairs(src, out, cfg)
    assert (out / "noise").is_dir()
    (out / "notes.txt").write_text("mine")
    (out / "HR" / "stale.png").write_bytes(b"old")
    build_training_pairs(src, out, DegradationConfig(kind="bicubic", scale=2), overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"  # not ours: kept
    assert sorted(p.name for p in (out / "HR").iterdir()) == ["im0.png", "im1.png"]  # ours: replaced
    assert not (out / "noise").exists()  # stale output of the earlier run, which left degradation.yaml
    assert sorted(p.name for p in (out / "LR").iterdir()) == ["x2"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging, lock or trash left


def test_overwrite_keeps_unknown_folders_of_our_names_when_not_ours(src, tmp_path):
    out = tmp_path / "out"
    (out / "noise").mkdir(parents=True)
    (out / "noise" / "mine.png").write_bytes(b"x")  # no degradation.yaml: not made by degrade
    build_training_pairs(src, out, DegradationConfig(kind="bicubic", scale=2), overwrite=True)
    assert (out / "noise" / "mine.png").read_bytes() == b"x"


def test_output_file_is_refused_even_with_overwrite(src, tmp_path):
    target = tmp_path / "out"
    target.write_text("a file")
    with pytest.raises(ConfigError, match="is a file"):
        build_training_pairs(src, target, DegradationConfig(kind="bicubic", scale=2), overwrite=True)
    assert target.read_text() == "a file"


def test_concurrent_run_is_refused(src, tmp_path):
    """A run holding the folder's lock (here: another process) makes a second run fail at once."""
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".optisr-degrade.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl,os,sys,time; fd=os.open(sys.argv[1], os.O_CREAT|os.O_WRONLY);"
         "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match="another `optisr degrade`"):
            build_training_pairs(src, out, DegradationConfig(kind="bicubic", scale=2), overwrite=True)
        assert sorted(p.name for p in out.iterdir()) == [".optisr-degrade.lock"]
    finally:
        holder.kill()
        holder.wait()


def test_lock_left_by_a_killed_run_does_not_block(src, tmp_path):
    """A lock file whose process died (nobody holds the flock) is taken over, then removed."""
    out = tmp_path / "out"
    out.mkdir()
    (out / ".optisr-degrade.lock").write_text("")
    build_training_pairs(src, out, DegradationConfig(kind="bicubic", scale=2), overwrite=True)
    assert (out / "HR").is_dir() and not (out / ".optisr-degrade.lock").exists()


def test_cli_warns_when_images_are_too_small_for_noise_patches(src, tmp_path, capsys):
    rc = main(["degrade", "-i", str(src), "-o", str(tmp_path / "out"), "--kind", "otsr", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 0 and len(err) == 1
    assert "no noise patches" in err[0] and "im0.png (112×96)" in err[0] and "256×256" in err[0]


def test_cli_existing_preview_fails_before_the_build(src, tmp_path, capsys):
    prev = tmp_path / "prev.png"
    prev.write_bytes(b"keep")
    out = tmp_path / "out"
    rc = main(["degrade", "-i", str(src), "-o", str(out), "--kind", "bicubic", "--preview", str(prev), "--quiet"])
    assert rc == 1 and "--overwrite" in _one_line(capsys)
    assert not out.exists() and prev.read_bytes() == b"keep"
    rc = main(["degrade", "-i", str(src), "-o", str(out), "--kind", "bicubic", "--preview", str(src / "im0.png"),
               "--overwrite", "--quiet"])  # fmt: skip
    assert rc == 1 and "overlaps the input" in _one_line(capsys)
