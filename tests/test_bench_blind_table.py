"""``optisr bench blind`` for the blind-SR comparison table: LABEL=PATH models, ``--lr otsr``, the output
cache, the speed column and the README panels."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from optisr.bench import blind
from optisr.errors import OptiSRError
from optisr.io.images import read_image, write_image
from tests.conftest import bench_blind_cli

REPO = Path(__file__).resolve().parents[1]


def _cli(argv: list[str]) -> int:
    return bench_blind_cli(argv)


def _textured(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / 9.0
    img = 0.5 + 0.3 * np.sin(xx * rng.uniform(0.5, 2) + yy * rng.uniform(0.5, 2))[..., None]
    img = img + 0.1 * rng.standard_normal((h, w, 3))
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def tiny_bsd(tmp_path: Path) -> Path:
    """BSD100-like layout (HR_mod4) of three small images, one of them not a multiple of 4."""
    root = tmp_path / "data" / "sr_bsd100"
    write_image(root / "HR_mod4" / "img_a.png", _textured(48, 40, 0))
    write_image(root / "HR_mod4" / "img_b.png", _textured(36, 44, 1))
    write_image(root / "HR_mod4" / "img_c.png", _textured(42, 38, 2))
    return root


@pytest.fixture
def noise_dir(tmp_path: Path) -> Path:
    """A PolyU-like folder: flat noisy ``*_real`` photos (mined for noise) and ``*_mean`` ones (ignored)."""
    folder = tmp_path / "data" / blind.NOISE_SUBDIR
    rng = np.random.default_rng(5)
    for i in range(2):
        flat = 0.45 + 0.1 * i + 4.0 / 255 * rng.standard_normal((160, 150, 3))
        write_image(folder / f"cam_{i}_real.png", np.round(np.clip(flat, 0, 1) * 255).astype(np.uint8))
        write_image(folder / f"cam_{i}_mean.png", np.full((160, 150, 3), 120, np.uint8))
    return folder


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    """A tiny ×4 RRDBNet weights file."""
    import torch

    from optisr.blind.archs import RRDBNet
    from optisr.io.state_dict import save_model_safetensors

    torch.manual_seed(0)
    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=4)
    return save_model_safetensors(net, tmp_path / "w" / "tiny.safetensors")


def _csv_scores(path: Path) -> dict[tuple[str, str], list[str]]:
    """(image, method) → the CSV's metric cells without the seconds (the last column)."""
    rows = path.read_text().splitlines()[1:]
    return {(r.split(",")[0], r.split(",")[1]): r.split(",")[2:-1] for r in rows}


# --- LABEL=PATH ----------------------------------------------------------------------------------


def test_parse_method_label_path(weights):
    assert blind.parse_method("bicubic") == "bicubic"
    assert blind.parse_method("realsr-df2k-x4") == "realsr-df2k-x4"
    assert blind.parse_method(f"ragan={weights}") == ("ragan", weights)


@pytest.mark.parametrize(
    "models, pattern",
    [
        (["bicubic", "ft=/no/such/file.safetensors"], "/no/such/file.safetensors: weights file not found"),
        (["bicubic", "a={w}", "a={w}"], "duplicate method label 'a'"),
        (["bicubic", "bicubic"], "duplicate method label 'bicubic'"),
        (["bicubic", "{w}", "tiny={w}"], "duplicate method label 'tiny'"),
        (["bad/label={w}"], "LABEL must be letters"),
        (["={w}"], "LABEL must be letters"),
    ],
)
def test_bad_models_are_one_line_errors(tiny_bsd, weights, models, pattern, capsys):
    rc = _cli(["--dataset", "bsd100", "--data-dir", str(tiny_bsd), "--quiet", "--out-dir", str(tiny_bsd.parent / "o"),
               "--models", *[m.format(w=weights) for m in models]])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and pattern in err, err
    assert not (tiny_bsd.parent / "o").exists()  # failed before any work


def test_label_path_model_is_shown_under_its_label(tiny_bsd, weights, tmp_path, capsys):
    out = tmp_path / "out"
    rc = _cli(["--dataset", "bsd100", "--data-dir", str(tiny_bsd), "--models", "bicubic", f"my-ft={weights}",
               "--out-dir", str(out), "--crops", "0", "--no-niqe", "--speed-size", "0", "--quiet"])  # fmt: skip
    assert rc == 0
    assert "| my-ft |" in capsys.readouterr().out
    assert {m for _, m in _csv_scores(out / "blind_bsd100.csv")} == {"bicubic", "my-ft"}
    assert f"my-ft={weights}" in (out / "blind_bsd100.md").read_text()


# --- --lr otsr -----------------------------------------------------------------------------------


def _otsr_compact_script():
    spec = importlib.util.spec_from_file_location("otsr_compact_bench", REPO / "benchmarks" / "otsr_compact.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_otsr_lr_equals_the_otsr_compact_benchmark(tiny_bsd, noise_dir):
    """The bench's --lr otsr (recipe from the code's defaults) and benchmarks/otsr_compact.py (recipe
    read from configs/blind/teacher_cache.yaml) make the same LR, image by image."""
    samples, _ = blind.load_dataset("bsd100", tiny_bsd, lr_mode="matlab")
    lrs, how = blind.otsr_lr([s.hr for s in samples], noise_dir, seed=1234)
    files = sorted((tiny_bsd / "HR_mod4").iterdir())[:2]  # the HR of img_a and img_b are already mod-4
    script = _otsr_compact_script()._lr_sets(files, 1234, noise_dir)
    assert len(script["degraded"]) == 2
    for mine, theirs in zip(lrs, script["degraded"]):
        assert mine.dtype == np.uint8 and mine.shape == theirs.shape
        np.testing.assert_array_equal(mine, theirs)
    assert "JPEG q 30-95" in how and "default_rng([1234, index])" in how and "σ 0.3-1.6" in how


def test_otsr_lr_is_deterministic_and_degraded(tiny_bsd, noise_dir):
    samples, _ = blind.load_dataset("bsd100", tiny_bsd, lr_mode="matlab")
    hrs = [s.hr for s in samples]
    a, _ = blind.otsr_lr(hrs, noise_dir)
    b, _ = blind.otsr_lr(hrs, noise_dir)
    c, _ = blind.otsr_lr(hrs, noise_dir, seed=1)
    first, _ = blind.otsr_lr(hrs[:1], noise_dir)  # a draw depends on the index, not on the set size
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(first[0], a[0])
    assert any(not np.array_equal(x, z) for x, z in zip(a, c))
    assert any(not np.array_equal(x, s.lr) for x, s in zip(a, samples))  # not the clean bicubic LR
    assert [x.shape for x in a] == [s.lr.shape for s in samples]


def test_cli_lr_otsr_is_deterministic_and_records_the_recipe(tiny_bsd, noise_dir, tmp_path):
    scores = []
    for run in ("r1", "r2"):
        argv = ["--dataset", "bsd100", "--data-dir", str(tiny_bsd.parent), "--models", "bicubic", "--lr", "otsr",
                "--out-dir", str(tmp_path / run), "--crops", "0", "--no-niqe", "--speed-size", "0", "--quiet"]  # fmt: skip
        assert _cli(argv) == 0  # noise folder found under the data root
        scores.append(_csv_scores(tmp_path / run / "blind_bsd100.csv"))
    assert scores[0] == scores[1]
    md = (tmp_path / "r1" / "blind_bsd100.md").read_text()
    assert "teacher-cache recipe" in md and "`*_real.*`" in md and "--lr otsr" in md
    clean = tmp_path / "clean"
    assert _cli(["--dataset", "bsd100", "--data-dir", str(tiny_bsd), "--models", "bicubic", "--out-dir", str(clean),
                 "--crops", "0", "--no-niqe", "--speed-size", "0", "--quiet"]) == 0  # fmt: skip
    assert _csv_scores(clean / "blind_bsd100.csv") != scores[0]


@pytest.mark.parametrize(
    "extra, pattern",
    [
        (["--lr", "otsr", "--noise-dir", "{d}/nope"], "nope: real-noise photo folder (--noise-dir) not found"),
        (["--lr", "otsr"], f"{blind.NOISE_SUBDIR}: real-noise photo folder"),
        (["--seed", "3"], "--seed apply to the degraded LR; add --lr otsr"),
    ],
)
def test_otsr_bad_input(tiny_bsd, extra, pattern, capsys):
    d = str(tiny_bsd.parent)
    rc = _cli(["--dataset", "bsd100", "--data-dir", str(tiny_bsd), "--models", "bicubic", "--quiet",
               "--out-dir", f"{d}/o", *[a.format(d=d) for a in extra]])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and pattern in err, err


def test_otsr_needs_a_paired_set(tmp_path, noise_dir):
    write_image(tmp_path / "real" / "photo.png", _textured(20, 20, 3))
    with pytest.raises(OptiSRError, match="no HR"):
        blind.benchmark("realsrset", tmp_path / "real", ["bicubic"], lr_mode="otsr", noise_dir=noise_dir,
                        out_dir=tmp_path / "o", progress=False)  # fmt: skip


# --- the output cache ----------------------------------------------------------------------------


def test_cache_layout_roundtrip_and_reuse(tiny_bsd, weights, tmp_path):
    from optisr.blind.api import upscale

    cache = tmp_path / "cache"
    kw = dict(out_dir=tmp_path / "o", crops=0, niqe=False, progress=False, device="cpu", cache_dir=cache)
    first = blind.benchmark("bsd100", tiny_bsd, ["bicubic", ("ft", weights)], **kw)
    assert first.cached == 0
    folder = blind.cache_folder(cache, "bsd100", 4, "auto", ("ft", weights))
    assert folder is not None and folder.parent == cache / "bsd100-x4-auto" and folder.name.startswith("ft-")
    assert sorted(p.name for p in folder.iterdir()) == [f"img_{c}.{e}" for c in "abc" for e in ("json", "png")]
    assert not (cache / "bsd100-x4-auto" / "bicubic").exists()  # bicubic is not cached
    samples, _ = blind.load_dataset("bsd100", tiny_bsd)
    for s in samples:  # the cached PNG is exactly the model's uint8 RGB output
        png = read_image(folder / f"{s.name}.png")
        assert png.dtype == np.uint8 and png.shape == s.hr.shape
        np.testing.assert_array_equal(png, upscale(s.lr, weights, device="cpu", outscale=4.0))
        seconds = json.loads((folder / f"{s.name}.json").read_text())["seconds"]
        assert seconds == first.rows[s.name]["ft"]["seconds"]
    second = blind.benchmark("bsd100", tiny_bsd, ["bicubic", ("ft", weights)], **kw)
    assert second.cached == 3
    assert second.rows == {k: {**v, "bicubic": second.rows[k]["bicubic"]} for k, v in first.rows.items()}
    # a cached entry is what is scored: replace one and the score follows it
    write_image(folder / "img_a.png", samples[0].hr // 2 + 60)
    third = blind.benchmark("bsd100", tiny_bsd, ["bicubic", ("ft", weights)], **kw)
    assert third.rows["img_a"]["ft"]["psnr_y"] > first.rows["img_a"]["ft"]["psnr_y"] + 3
    assert third.rows["img_b"]["ft"] == first.rows["img_b"]["ft"]


def test_changed_weights_file_is_never_served_from_the_cache(tiny_bsd, tmp_path):
    import torch

    from optisr.blind.archs import RRDBNet
    from optisr.io.state_dict import save_model_safetensors

    path = tmp_path / "ft.safetensors"
    cache = tmp_path / "cache"
    results = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        save_model_safetensors(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=4), path)
        results.append(blind.benchmark("bsd100", tiny_bsd, [("ft", path)], out_dir=tmp_path / "o", crops=0,
                                       niqe=False, progress=False, device="cpu", cache_dir=cache))  # fmt: skip
    assert results[1].cached == 0
    assert results[0].rows["img_a"]["ft"]["psnr_y"] != results[1].rows["img_a"]["ft"]["psnr_y"]
    assert len(list((cache / "bsd100-x4-auto").iterdir())) == 2  # one folder per file content


def test_cache_reads_entries_written_by_another_job(tmp_path, capsys):
    """A registry model's outputs under DIR/<dataset>-x<scale>-<lr>/<name>-<hash of its file>/ (as another
    job writes them: a PNG and {"seconds": s}) are used as they are, with the recorded seconds."""
    real = tmp_path / "real"
    photo = _textured(60, 56, 4)
    write_image(real / "photo.png", photo)
    cache = tmp_path / "cache"
    from optisr.blind.registry import find_source

    digest = blind._file_hash(find_source("otsr-compact-x4"))
    folder = cache / "realsrset-x4-auto" / f"otsr-compact-x4-{digest}"
    assert blind.cache_folder(cache, "realsrset", 4, "auto", "otsr-compact-x4") == folder
    fake = blind.imresize_matlab(photo, 4.0)
    write_image(folder / "photo.png", fake)
    (folder / "photo.json").write_text(json.dumps({"seconds": 61.5}))
    rc = _cli(["--dataset", "realsrset", "--data-dir", str(real), "--models", "bicubic", "otsr-compact-x4",
               "--cache-dir", str(cache), "--out-dir", str(tmp_path / "o"), "--crops", "0", "--speed-size", "0",
               "--quiet", "--device", "cpu"])  # fmt: skip
    assert rc == 0
    assert "1 outputs from the cache" in capsys.readouterr().out
    rows = {r.split(",")[1]: r.split(",") for r in (tmp_path / "o" / "blind_realsrset.csv").read_text().splitlines()}
    assert rows["otsr-compact-x4"][5] == rows["bicubic"][5]  # NIQE of the cached (bicubic) image
    assert float(rows["otsr-compact-x4"][6]) == 61.5


# --- speed ---------------------------------------------------------------------------------------


def test_speed_column(tiny_bsd, weights, tmp_path, capsys):
    out = tmp_path / "o"
    rc = _cli(["--dataset", "bsd100", "--data-dir", str(tiny_bsd), "--models", "bicubic", f"ft={weights}",
               "--out-dir", str(out), "--crops", "0", "--no-niqe", "--speed-size", "24", "--quiet",
               "--device", "cpu"])  # fmt: skip
    assert rc == 0
    table = capsys.readouterr().out
    assert "s per 24² LR" in table
    row = next(line for line in table.splitlines() if line.startswith("| ft |"))
    assert float(row.strip("| ").split("|")[-1]) > 0
    assert "1 CPU thread" in (out / "blind_bsd100.md").read_text()
    assert _cli(["--dataset", "bsd100", "--data-dir", str(tiny_bsd), "--models", "bicubic", "--out-dir", str(out),
                 "--crops", "0", "--no-niqe", "--speed-size", "0", "--quiet"]) == 0  # fmt: skip
    assert "² LR" not in capsys.readouterr().out


def test_upscale_seconds_restores_threads():
    import torch

    before = torch.get_num_threads()
    assert 0 < blind.upscale_seconds("bicubic", 16) < 5
    assert torch.get_num_threads() == before


# --- panels --------------------------------------------------------------------------------------


def test_panels_full_image_tiles_are_the_outputs(tiny_bsd, tmp_path):
    res = blind.benchmark("bsd100", tiny_bsd, ["bicubic"], out_dir=tmp_path / "o", crops=0, niqe=False,
                          progress=False, panels=["img_b"])  # fmt: skip
    assert res.panel_files == [tmp_path / "o" / "blind_bsd100_panels" / "img_b.png"]
    panel = read_image(res.panel_files[0])
    samples, _ = blind.load_dataset("bsd100", tiny_bsd)
    s = samples[1]
    h, w = s.hr.shape[:2]  # 36 × 44: whole image (<= 512 px)
    cap = panel.shape[0] - h
    assert 0 < cap <= 24 and panel.shape[1] == 3 * w + 2 * 4  # input | bicubic | HR, 4 px gaps
    tiles = [panel[cap:, i * (w + 4) : i * (w + 4) + w] for i in range(3)]
    np.testing.assert_array_equal(tiles[0], np.repeat(np.repeat(s.lr, 4, 0), 4, 1))
    np.testing.assert_array_equal(tiles[1], blind.imresize_matlab(s.lr, 4.0))
    np.testing.assert_array_equal(tiles[2], s.hr)
    assert (panel[:cap] < 128).any()  # a caption is drawn above the tiles
    assert "blind_bsd100_panels/img_b.png" in (tmp_path / "o" / "blind_bsd100.md").read_text()
    assert not list((tmp_path / "o").rglob(".*tmp*"))


def test_panels_large_image_is_a_centre_crop(tmp_path, capsys):
    real = tmp_path / "real"
    photo = _textured(150, 140, 6)  # ×4: 600 px > 512
    write_image(real / "big.png", photo)
    write_image(real / "small.png", _textured(30, 20, 7))
    rc = _cli(["--dataset", "realsrset", "--data-dir", str(real), "--models", "bicubic", "--panels", "big, small",
               "--crop-size", "16", "--out-dir", str(tmp_path / "o"), "--crops", "0", "--speed-size", "0", "--quiet"])  # fmt: skip
    assert rc == 0 and "2 comparison panels" in capsys.readouterr().out
    big = read_image(tmp_path / "o" / "blind_realsrset_panels" / "big.png")
    side = 32  # 2 × --crop-size HR pixels = 8 LR pixels, from LR row/col (75-4, 70-4)
    cap = big.shape[0] - side
    assert big.shape[1] == 2 * side + 4  # input | bicubic (no HR)
    np.testing.assert_array_equal(big[cap:, :side], np.repeat(np.repeat(photo[71:79, 66:74], 4, 0), 4, 1))
    np.testing.assert_array_equal(big[cap:, side + 4 :], blind.imresize_matlab(photo, 4.0)[284:316, 264:296])
    small = read_image(tmp_path / "o" / "blind_realsrset_panels" / "small.png")
    assert small.shape[1] == 2 * 80 + 4 and small.shape[0] > 120


def test_unknown_panel_is_a_one_line_error(tiny_bsd, capsys):
    rc = _cli(["--dataset", "bsd100", "--data-dir", str(tiny_bsd), "--models", "bicubic", "--panels", "img_a,nope",
               "--quiet", "--out-dir", str(tiny_bsd.parent / "o")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "--panels: no image 'nope'" in err


def test_cached_output_of_the_wrong_size_is_a_one_line_error(tmp_path, capsys):
    write_image(tmp_path / "real" / "photo.png", _textured(20, 24, 8))
    folder = blind.cache_folder(tmp_path / "cache", "realsrset", 4, "auto", "otsr-compact-x4")
    write_image(folder / "photo.png", np.zeros((40, 48, 3), np.uint8))
    (folder / "photo.json").write_text('{"seconds": 1.0}')
    rc = _cli(["--dataset", "realsrset", "--data-dir", str(tmp_path / "real"), "--models", "otsr-compact-x4",
               "--cache-dir", str(tmp_path / "cache"), "--out-dir", str(tmp_path / "o"), "--speed-size", "0",
               "--quiet", "--device", "cpu"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "photo.png: cached output is 48×40, expected 96×80" in err
