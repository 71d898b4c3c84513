"""``optisr bench guided`` on tiny generated datasets (plus one run on the shared Middlebury30 pack)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from md_tables import md_tables  # tests/ is on sys.path (pytest rootdir-relative import)
from optisr.bench import guided as bench
from optisr.bench import guided_protocols as protocols
from optisr.bench.guided_report import format_markdown
from optisr.cli.main import main as optisr_main
from optisr.errors import ConfigError
from optisr.metrics.depth import protocol_b_errors


def _bench_guided(argv: list[str]) -> int:
    """``optisr bench guided ARGV`` through the optisr command (its one-line errors, exit codes)."""
    return optisr_main(["bench", "guided", *argv])


REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    env = os.environ.get("OPTISR_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


def _scene(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A guide with two colour regions and a depth that steps at the same edge, plus a ramp."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    edge = xx > (w // 3 + (yy * 0.4).astype(int))
    guide = np.where(edge[..., None], [0.9, 0.3, 0.2], [0.1, 0.4, 0.8]).astype(np.float32)
    guide = np.clip(guide + rng.normal(0, 0.01, guide.shape), 0, 1).astype(np.float32)
    depth = (1000.0 + 800.0 * edge + 3.0 * yy + rng.normal(0, 2.0, (h, w))).astype(np.float32)
    return guide, depth


def _folder_dataset(root: Path, n: int = 2, h: int = 64, w: int = 72) -> Path:
    (root / "guide").mkdir(parents=True)
    (root / "depth").mkdir()
    for i in range(n):
        guide, depth = _scene(h, w, i)
        bgr = np.round(guide[..., ::-1] * 255).astype(np.uint8)
        assert cv2.imwrite(str(root / "guide" / f"img{i}.png"), bgr)
        d16 = np.round(depth).astype(np.uint16)
        d16[3, 5] = 0  # one invalid pixel
        assert cv2.imwrite(str(root / "depth" / f"img{i}.png"), d16)
    return root


def _find(tables: dict, prefix: str) -> dict[str, list[float]]:
    (key,) = [k for k in tables if k.startswith(prefix)]
    return {m: [float(c) for c in cells] for m, cells in tables[key].items()}


def test_protocol_a_folder(tmp_path, capsys):
    data = _folder_dataset(tmp_path / "data")
    out = tmp_path / "out"
    rc = _bench_guided(
        ["--dataset", "folder", "--data-dir", str(data), "--scales", "4", "8", "--methods", "bicubic", "color",
         "--out-dir", str(out), "--figures", "1", "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    report = out / "folder_protocolA.md"
    text = report.read_text()
    stdout = capsys.readouterr().out
    assert "| bicubic |" in stdout and str(report) in stdout
    tables = md_tables(text)
    (full_key,) = [k for k in tables if k.startswith("RMSE (") and "full image" in k]
    (crop_key,) = [k for k in tables if k.startswith("RMSE (") and "6-px border cropped" in k]
    rmse, cropped = _find(tables, full_key), _find(tables, crop_key)
    cons = _find(tables, "LR consistency")
    assert set(rmse) == {"bicubic", "color"} and all(len(v) == 2 for v in rmse.values())
    assert set(cropped) == set(rmse) and cropped != rmse  # the published convention differs from the full image
    assert list(tables).index(next(k for k in tables if "cropped" in k)) < list(tables).index(
        next(k for k in tables if "full image" in k)
    )  # the cropped table is the headline
    assert all(v > 0 for v in rmse["bicubic"])
    assert all(v > 0.1 for v in cons["bicubic"])  # bicubic is not consistent with its own LR
    assert all(v < 1e-2 for v in cons["color"])  # colour graph: exact up to float32 rounding
    assert rmse["color"][1] < rmse["bicubic"][1]  # edges aligned with the guide
    assert "2 of 2 images" in text
    figs = sorted((out / "figures").glob("*.png"))
    assert [p.name for p in figs] == ["folder_protocolA_img0_x4.png", "folder_protocolA_img0_x8.png"]
    panel = cv2.imread(str(figs[0]))
    assert panel.shape[0] == 64 and panel.shape[1] > 6 * 72  # guide | LR | 2 methods | 2 errors
    assert not list(out.glob(".*tmp*")) and not list((out / "figures").glob(".*tmp*"))


def test_limit_and_mod_crop(tmp_path):
    data = _folder_dataset(tmp_path / "data", n=3, h=37, w=45)  # not multiples of the scale
    rc = _bench_guided(
        ["--dataset", "folder", "--data-dir", str(data), "--scales", "8", "--methods", "bicubic",
         "--out-dir", str(tmp_path / "o"), "--limit", "1", "--figures", "0", "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    text = (tmp_path / "o" / "folder_protocolA.md").read_text()
    assert "1 of 3 images" in text and "×8: 1" in text
    assert not (tmp_path / "o" / "figures").exists()


def test_protocol_a_lr_is_pil_bicubic():
    _, depth = _scene(48, 56, 3)
    lr, ok = protocols.make_lr(depth, np.ones(depth.shape, bool), "bicubic", 4)
    ref = np.asarray(Image.fromarray(depth, mode="F").resize((14, 12), Image.BICUBIC))
    assert ok.all() and lr.dtype == np.float32
    np.testing.assert_allclose(lr, ref, rtol=0, atol=1e-3)  # depth ~1000-2000: float32 rounding only


@dataclass
class _FakeSample:
    guide: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    name: str
    lr_depth: None = None


class _FakeDataset(list):
    name = "fake"
    units = "mm"
    report_units = "cm"
    report_scale = 0.1


def _fake(n: int = 2, h: int = 70, w: int = 64) -> _FakeDataset:
    ds = _FakeDataset()
    for i in range(n):
        guide, depth = _scene(h, w, 10 + i)
        mask = np.ones((h, w), bool)
        mask[:4, :4] = False  # a whole 4x4 block invalid: that LR pixel is unconstrained
        depth = np.where(mask, depth, np.nan).astype(np.float32)
        ds.append(_FakeSample(guide, depth, mask, f"s{i}"))
    return ds


def test_protocol_b_units_and_consistency():
    ds = _fake()
    res = bench.benchmark(ds, scales=[4, 8], methods=["bicubic", "color"], protocol="b", tile_size=32, progress=False)
    assert res.units == "cm" and res.operator == "area"
    assert res.n_regions == {4: 8, 8: 8}  # 70x64 -> 2x2 tiles of 32 per image, 2 images
    assert res.consistency["color"][4] < 1e-3 and res.consistency["bicubic"][4] > 1e-2
    # Independent recomputation for bicubic at x4: same tiles, same LR, protocol_b_errors in mm.
    from optisr.guided.baselines import get_baseline

    preds, targets, masks = [], [], []
    for s in ds:
        for y in (0, 32):
            for x in (0, 32):
                d, m = s.depth[y : y + 32, x : x + 32], s.mask[y : y + 32, x : x + 32]
                lr, ok = protocols.make_lr(d, m, "area", 4)
                preds.append(get_baseline("bicubic")(lr, s.guide[y : y + 32, x : x + 32], 4, ok))
                targets.append(d)
                masks.append(m)
    ref = protocol_b_errors(preds, targets, masks, units="mm", tile=32, batch_size=8)
    assert res.mse["bicubic"][4] == pytest.approx(ref.mse_cm2, rel=1e-5)
    assert res.mae["bicubic"][4] == pytest.approx(ref.mae_cm, rel=1e-5)
    text = format_markdown(res)
    assert "MSE (cm²)" in text and "MAE (cm)" in text and "LR consistency RMSE (cm)" in text


def test_protocol_a_report_scale():
    ds = _fake(n=1)
    res = bench.benchmark(ds, scales=[8], methods=["bicubic"], protocol="A", progress=False)
    assert res.units == "cm"
    from optisr.guided.baselines import get_baseline
    from optisr.metrics.depth import masked_rmse, mod_crop

    s = ds[0]
    d, m = mod_crop(s.depth, 8), mod_crop(s.mask, 8)
    lr, ok = protocols.make_lr(d, m, "bicubic", 8)
    want = 0.1 * masked_rmse(get_baseline("bicubic")(lr, mod_crop(s.guide, 8), 8, ok), d, m)
    assert res.rmse["bicubic"][8] == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--dataset", "middleburry30"], "did you mean 'middlebury30'"),
        (["--dataset", "folder", "--data-dir", "{missing}"], "does not exist"),
        (["--methods", "bicubc"], "did you mean 'bicubic'"),
        (["--scales", "0"], "--scales"),
        (["--limit", "0"], "--limit"),
        (["--protocol", "B", "--tile", "30"], "multiple of every scale"),
        (["--protocol", "B", "--tile-size", "30"], "multiple of every scale"),
        (["--threads", "-1"], "--threads"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, capsys, extra, fragment):
    data = _folder_dataset(tmp_path / "data", n=1, h=16, w=16)
    argv = ["--dataset", "folder", "--data-dir", str(data), "--scales", "4", "--out-dir", str(tmp_path / "o"),
            "--no-progress"]  # fmt: skip
    for i in range(0, len(extra), 2):
        value = extra[i + 1].format(missing=tmp_path / "nope")
        if extra[i] in argv:
            argv[argv.index(extra[i]) + 1] = value
        else:
            argv += [extra[i], value]
    rc = _bench_guided(argv)
    err = capsys.readouterr().err
    assert rc == 1
    assert len(err.strip().splitlines()) == 1 and err.startswith("optisr bench: error:")
    assert fragment in err
    assert not (tmp_path / "o").exists()


def test_options_checked_before_work():
    with pytest.raises(ConfigError, match="valid methods"):
        bench.benchmark(_fake(1), methods=["nope"], progress=False)


def test_wired_into_optisr_cli(tmp_path, capsys):
    from optisr.cli import main as cli

    assert "bench" in cli.SUBCOMMANDS
    rc = cli.main(["bench", "guided", "--dataset", "nope", "--data-dir", str(tmp_path)])
    assert rc == 1 and "unknown dataset" in capsys.readouterr().err


def test_middlebury30_shared(tmp_path):
    data = _shared_data() / "depth_lu2014_middlebury30"
    if not data.is_dir():
        pytest.skip(f"{data} not available")
    out = tmp_path / "out"
    rc = _bench_guided(
        ["--dataset", "middlebury30", "--data-dir", str(data), "--scales", "8", "16", "--methods", "bicubic",
         "color", "--limit", "2", "--figures", "1", "--out-dir", str(out), "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    text = (out / "middlebury30_protocolA.md").read_text()
    assert "2 of 30 images" in text
    tables = md_tables(text)
    rmse, cons = _find(tables, "RMSE (0-255), full image"), _find(tables, "LR consistency")
    assert 1.0 < rmse["bicubic"][0] < rmse["bicubic"][1] < 30.0
    assert rmse["color"][0] < rmse["bicubic"][0]
    assert cons["bicubic"][0] > 0.1 and cons["color"][0] < 1e-2
    assert len(list((out / "figures").glob("*.png"))) == 2
    assert re.search(r"Command: `optisr bench guided --dataset middlebury30 ", text)


def test_bench_options_share_the_cli_vocabulary():
    """``optisr bench guided|blind`` spell tile size and device like every other command."""
    from optisr.cli.main import build_parser

    parser = build_parser()
    base = {"guided": ["--dataset", "d", "--data-dir", "x"], "blind": ["--dataset", "set5", "--data-dir", "x"]}
    for engine, argv in base.items():
        for spelling in ("-t", "--tile", "--tile-size", "--tile_size"):
            args = parser.parse_args(["bench", engine, *argv, spelling, "64"])
            assert args.tile_size == 64
        args = parser.parse_args(["bench", engine, *argv])
        assert args.device == "auto" and args.gpu_id is None
        assert parser.parse_args(["bench", engine, *argv, "-g", "1"]).gpu_id == 1


# ------------------------------------------------------------------------------------- noisy protocol


def test_noisy_lr_is_block_mean_plus_seeded_noise_in_the_report_unit():
    ds = _fake(n=2, h=64, w=64)
    spec = protocols.NoiseSpec(sigma=6.0, operator="area", seed=5)
    cases, covered = protocols.scored_regions(ds[1], 4, "NOISY", 0, noise=spec, image_index=1, unit_scale=0.1)
    (case,) = cases
    assert covered == (64, 64)
    clean, ok = protocols.make_lr(ds[1].depth, ds[1].mask, "area", 4)
    np.testing.assert_array_equal(case.lr_valid, ok)
    noise = (case.lr.astype(np.float64) - clean)[ok]
    assert 45.0 < noise.std() < 75.0  # σ = 6 cm = 60 mm, the dataset's published unit
    assert abs(noise.mean()) < 20.0
    again, _ = protocols.scored_regions(ds[1], 4, "NOISY", 0, noise=spec, image_index=1, unit_scale=0.1)
    np.testing.assert_array_equal(again[0].lr, case.lr)  # fixed seed: the same LR for every method
    other, _ = protocols.scored_regions(ds[1], 4, "NOISY", 0, noise=spec, image_index=0, unit_scale=0.1)
    assert not np.array_equal(other[0].lr[ok], case.lr[ok])  # another image: another stream
    quiet = protocols.NoiseSpec(sigma=0.0)
    zero, _ = protocols.scored_regions(ds[1], 4, "NOISY", 0, noise=quiet, image_index=1, unit_scale=0.1)
    np.testing.assert_array_equal(zero[0].lr, clean)
    bic = protocols.NoiseSpec(sigma=0.0, operator="bicubic")
    lr_b, _ = protocols.scored_regions(ds[1], 4, "NOISY", 0, noise=bic, image_index=1, unit_scale=0.1)
    np.testing.assert_array_equal(lr_b[0].lr, protocols.make_lr(ds[1].depth, ds[1].mask, "bicubic", 4)[0])


@pytest.mark.parametrize("bad", [{"sigma": -1.0}, {"sigma": float("nan")}, {"operator": "gaussian"}, {"seed": -2}])
def test_noise_spec_rejects_bad_values(bad):
    with pytest.raises(ConfigError, match="--noise-"):
        protocols.NoiseSpec(**bad)


def test_noisy_protocol_scores_full_image_rmse_and_ranks_smoothers_above_exact():
    ds = _fake(n=2, h=64, w=64)
    spec = protocols.NoiseSpec(sigma=30.0)  # cm: heavy noise on a 1000–1800 mm scene
    res = bench.benchmark(
        ds, scales=[4], methods=["bicubic", "color", "fbs", "color-soft"], protocol="noisy", noise=spec, progress=False
    )
    assert res.operator == "area" and res.noise == spec and res.stem == "fake_noisy30_area"
    # Independent recomputation of bicubic's score: same noisy LR, protocol A's RMSE in cm.
    from optisr.guided.baselines import get_baseline
    from optisr.metrics.depth import protocol_a_rmse

    scores = []
    for i, s in enumerate(ds):
        lr, ok = protocols.make_lr(s.depth, s.mask, "area", 4)
        lr = protocols.add_noise(lr, ok, spec, i, 4, 0.1)
        scores.append(protocol_a_rmse(get_baseline("bicubic")(lr, s.guide, 4, ok), s.depth, s.mask, report_scale=0.1))
    assert res.rmse["bicubic"][4] == pytest.approx(np.mean(scores), rel=1e-6)
    assert res.consistency["color"][4] < 1e-2  # exact: it keeps the noise
    assert res.rmse["fbs"][4] < res.rmse["color"][4] and res.rmse["color-soft"][4] < res.rmse["color"][4]
    text = format_markdown(res)
    assert "noisy protocol (σ = 30 in cm, area LR)" in text and "derive_seed(0, image index, scale)" in text
    assert set(_find(md_tables(text), "RMSE (cm), full image")) == {"bicubic", "color", "fbs", "color-soft"}


def test_noisy_protocol_cli_defaults_and_errors(tmp_path, capsys):
    data = _folder_dataset(tmp_path / "data", n=1, h=48, w=48)
    out = tmp_path / "out"
    argv = ["--dataset", "folder", "--data-dir", str(data), "--out-dir", str(out), "--figures", "0", "--no-progress"]
    rc = _bench_guided([*argv, "--protocol", "noisy", "--noise-sigma", "4", "--noise-seed", "3", "--methods",
                        "bicubic", "fbs"])  # fmt: skip
    assert rc == 0
    text = (out / "folder_noisy4_area.md").read_text()
    assert "--protocol NOISY " in text and " --noise-sigma 4 --noise-seed 3" in text
    assert [f"×{s}" for s in (2, 4, 8, 16)] == [c for c in text.split("\n### RMSE")[1].split("\n")[2].split(" ") if
                                                c.startswith("×")]  # fmt: skip
    capsys.readouterr()
    assert _bench_guided([*argv, "--noise-sigma", "4"]) == 1
    assert "add --protocol noisy" in capsys.readouterr().err
    assert _bench_guided([*argv, "--protocol", "noisy", "--lr", "real"]) == 1
    assert "synthesises its LR" in capsys.readouterr().err
    scales, methods = bench.check_options(None, None, "NOISY", 256, False)
    assert scales == [2, 4, 8, 16] and {"bicubic", "guided-filter", "jbu", "fbs", "color"} <= set(methods)


def test_oracle_weights_hand_checked():
    """A 1-row step of 2 levels in 0–255 units: exp(−4) across it, 1 along flat runs, floor-bounded."""
    import math

    depth = np.array([[10.0, 10.0, 12.0, 12.0]] * 2)
    w = protocols.oracle_weights(depth, np.ones_like(depth, bool), to_255=1.0)
    assert w.shape == (2, 2, 4)
    step = protocols.ORACLE_FLOOR + (1 - protocols.ORACLE_FLOOR) * math.exp(-4.0)
    np.testing.assert_allclose(w[1, :, :3], [[1.0, step, 1.0]] * 2, rtol=1e-10)  # horizontal edges
    np.testing.assert_allclose(w[0, 0], 1.0)  # vertical edges between the two equal rows
    assert (w[1, :, 3] == 0).all() and (w[0, 1] == 0).all()  # no edge past the last column / row
    # unit conversion: the same step in mm with to_255 = 0.5 is a jump of 1 -> exp(−1)
    w2 = protocols.oracle_weights(depth, np.ones_like(depth, bool), to_255=0.5)
    assert w2[1, 0, 1] == pytest.approx(protocols.ORACLE_FLOOR + (1 - protocols.ORACLE_FLOOR) * math.exp(-1.0))
    # None: each image's valid range onto 0–255, so the 2-unit step becomes 255 units: the floor
    w3 = protocols.oracle_weights(depth, np.ones_like(depth, bool))
    assert w3[1, 0, 1] == pytest.approx(protocols.ORACLE_FLOOR)


def test_oracle_is_exactly_consistent_and_beats_the_colour_graph():
    res = bench.benchmark(_fake(), scales=[4, 8], methods=["bicubic", "color", "oracle"], progress=False)
    for s in (4, 8):
        assert res.consistency["oracle"][s] < 1e-3
        assert res.rmse["oracle"][s] < res.rmse["color"][s] < res.rmse["bicubic"][s]
    assert any("`oracle`" in n for n in res.notes)


def test_cropped_rmse_is_the_published_six_pixel_border():
    """res.rmse_cropped equals protocol_a_rmse(border=6) recomputed independently."""
    from optisr.metrics.depth import protocol_a_rmse

    ds = _fake(n=1)
    res = bench.benchmark(ds, scales=[4], methods=["bicubic"], progress=False)
    s = ds[0]
    h, w = (s.depth.shape[0] // 4) * 4, (s.depth.shape[1] // 4) * 4
    d, m = s.depth[:h, :w], s.mask[:h, :w]
    lr, ok = protocols.make_lr(d, m, "bicubic", 4)
    from optisr.guided.baselines import get_baseline

    pred = get_baseline("bicubic")(lr, s.guide[:h, :w], 4, mask_lr=ok)
    unit_scale = protocols.report_units(ds, "A")[0]
    want = protocol_a_rmse(pred, d, m & np.isfinite(d), report_scale=unit_scale, border=6)
    assert res.rmse_cropped["bicubic"][4] == pytest.approx(want, rel=1e-5)
    assert res.rmse_cropped["bicubic"][4] != pytest.approx(res.rmse["bicubic"][4], rel=1e-3)
