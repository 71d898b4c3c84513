"""Dask scale-out (``--dask``): the same outputs as one process, retries, one-line failures.

Each test that starts a cluster uses ``local:2`` (two worker processes) on tiny inputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from optisr.cli.main import main
from optisr.errors import ConfigError
from optisr.io.images import read_image, write_image
from optisr.scaleout import dask_available

needs_dask = pytest.mark.skipif(not dask_available(), reason='needs dask.distributed (pip install "optisr[dask]")')


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from optisr.blind.archs import RRDBNet
    from optisr.io.state_dict import save_model_safetensors

    torch.manual_seed(0)
    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=4)
    return save_model_safetensors(net, tmp_path_factory.mktemp("model") / "tiny_rrdb.safetensors")


def _photos(folder: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(1)
    folder.mkdir()
    for k in range(n):
        write_image(folder / f"img{k}.png", rng.integers(0, 256, (20 + 3 * k, 24, 3), dtype=np.uint8))
    return folder


def _scene_files(tmp_path: Path, scale: int = 4) -> tuple[Path, Path]:
    from optisr.data.synthetic import make_scene

    scene = make_scene(256, 256, seed=5)
    guide = tmp_path / "guide.png"
    write_image(guide, (scene.guide * 255).round().astype(np.uint8))
    lr = scene.depth_clean.reshape(256 // scale, scale, 256 // scale, scale).mean(axis=(1, 3)).astype(np.float32)
    lr[3:6, 10:30] = np.nan  # invalid pixels take the masked path
    source = tmp_path / "depth_lr.npy"
    np.save(source, lr)
    return guide, source


def _one_process_and_dask(tmp_path: Path, common: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``optisr guided`` with ``common`` arguments in this process, then on ``--dask local:2``: both outputs.

    The workers run one torch thread each: so does the reference run, since CG's and the network's
    reductions may round differently with another thread count (1e-4 of the range, within CG's tol).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*common, "-o", str(tmp_path / "one.npy")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert main([*common, "-o", str(tmp_path / "two.npy"), "--dask", "local:2"]) == 0
    return np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")


# ------------------------------------------------------------------------------ no cluster needed


def test_bad_address_is_one_line(tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photos = _photos(tmp_path / "in", 1)
    rc = main(["upscale", "-i", str(photos), "-o", str(tmp_path / "out"), "--model-path", str(tiny_model),
               "--quiet", "--dask", "no-such thing"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "--dask 'no-such thing'" in err[0] and "local:N" in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_dask_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from optisr.scaleout import connect

    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now raises ImportError
    with pytest.raises(ConfigError, match=r'pip install "optisr\[dask\]"'), connect("local:1"):
        pass


def test_guided_dask_options_are_checked_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    guide, source = _scene_files(tmp_path)
    base = ["guided", "--guide", str(guide), "--source", str(source), "--scale", "4", "--quiet"]
    assert main([*base, "-o", str(tmp_path / "a.npy"), "--method", "jbu", "--dask", "local:1"]) == 1
    assert "--dask applies to the graph methods" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "b.npy"), "--tile-size", "0", "--dask", "local:1"]) == 1
    assert "drop --tile-size 0" in capsys.readouterr().err
    assert not (tmp_path / "a.npy").exists() and not (tmp_path / "b.npy").exists()


# ------------------------------------------------------------------------------ local:2 clusters


@needs_dask
def test_unreachable_scheduler_is_one_line() -> None:
    from optisr.scaleout import connect

    with (
        pytest.raises(ConfigError, match=r"cannot reach a Dask scheduler") as info,
        connect("tcp://127.0.0.1:9", timeout="2s"),
    ):
        pass
    assert "\n" not in str(info.value)


@needs_dask
def test_upscale_folder_on_dask_writes_the_same_files(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = _photos(tmp_path / "in")
    common = ["upscale", "-i", str(photos), "--model-path", str(tiny_model), "--quiet", "-t", "16"]
    assert main([*common, "-o", str(tmp_path / "one")]) == 0
    one_stdout = sorted(capsys.readouterr().out.split())
    assert main([*common, "-o", str(tmp_path / "two"), "--dask", "local:2"]) == 0
    two_stdout = sorted(capsys.readouterr().out.split())
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert len(names) == 4 and names == sorted(p.name for p in (tmp_path / "two").iterdir())
    assert two_stdout == [s.replace(str(tmp_path / "one"), str(tmp_path / "two")) for s in one_stdout]
    for name in names:  # the CPU model is deterministic: byte-equal files
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


@needs_dask
def test_upscale_failed_file_is_reported_and_not_written(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = _photos(tmp_path / "in", 2)
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = tmp_path / "out"
    rc = main(["upscale", "-i", str(photos), "-o", str(out), "--model-path", str(tiny_model), "--quiet",
               "--dask", "local:2"])  # fmt: skip
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert rc == 1
    assert len(errors) == 1 and "broken.png" in errors[0]
    assert "1 of 3 files failed" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["img0_out.png", "img1_out.png"]  # nothing half-written
    assert read_image(out / "img0_out.png").shape[:2] == (80, 96)


@needs_dask
@pytest.mark.parametrize(("method", "operator"), [("color", "area"), ("default", "bicubic")])
def test_guided_on_dask_matches_the_tiled_single_process(
    tmp_path: Path, method: str, operator: str, capsys: pytest.CaptureFixture[str]
) -> None:
    guide, source = _scene_files(tmp_path)
    common = ["guided", "--guide", str(guide), "--source", str(source), "--scale", "4", "--quiet",
              "--method", method, "--operator", operator, "--tile-size", "128"]  # fmt: skip
    one, two = _one_process_and_dask(tmp_path, common)
    capsys.readouterr()
    assert one.shape == two.shape == (256, 256)
    assert np.abs(one - two).max() <= 1e-6 * float(one.max() - one.min())


@needs_dask
def test_guided_at_a_ratio_on_dask_matches_one_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A source at a non-integer ratio (256² guide, 96² source: 8/3) is solved tile-wise on the workers too."""
    from optisr.data.synthetic import make_scene
    from optisr.ops.operators import resampling_operator

    scene = make_scene(256, 256, seed=5)
    guide = tmp_path / "guide.png"
    write_image(guide, (scene.guide * 255).round().astype(np.uint8))
    op = resampling_operator("area", (256, 256), (96, 96))
    np.save(tmp_path / "lr.npy", op.apply(torch.from_numpy(scene.depth_clean.astype(np.float64))).numpy().astype(np.float32))
    common = ["guided", "--guide", str(guide), "--source", str(tmp_path / "lr.npy"), "--quiet", "--method", "color",
              "--tile-size", "128"]  # fmt: skip
    one, two = _one_process_and_dask(tmp_path, common)
    assert "scale 2.667×2.667 from the sizes" in capsys.readouterr().err
    assert one.shape == two.shape == (256, 256)
    assert np.abs(one - two).max() <= 1e-6 * float(one.max() - one.min())
    err = np.abs(op.apply(torch.from_numpy(two.astype(np.float64))).numpy() - np.load(tmp_path / "lr.npy")).max()
    assert err <= 1e-4 * float(one.max() - one.min())  # exact consistency after the global projection (float32)


@needs_dask
def test_guided_confidence_and_robust_on_dask_match_one_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--confidence and --fidelity robust reach the tiles on the workers (both were refused with --dask)."""
    guide, source = _scene_files(tmp_path)
    conf = np.ones(np.load(source).shape, np.float32)
    conf[:, :20] = 0.1
    np.save(tmp_path / "conf.npy", conf)
    for fidelity in ("soft", "robust"):
        common = ["guided", "--guide", str(guide), "--source", str(source), "--scale", "4", "--quiet",
                  "--method", "color", "--tile-size", "128", "--fidelity", fidelity, "--lam", "2",
                  "--confidence", str(tmp_path / "conf.npy")]  # fmt: skip
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            assert main([*common, "-o", str(tmp_path / f"one_{fidelity}.npy")]) == 0
        finally:
            torch.set_num_threads(threads)
        assert main([*common, "-o", str(tmp_path / f"two_{fidelity}.npy"), "--dask", "local:2"]) == 0
        one, two = np.load(tmp_path / f"one_{fidelity}.npy"), np.load(tmp_path / f"two_{fidelity}.npy")
        assert np.abs(one - two).max() <= 1e-6 * float(one.max() - one.min()), fidelity
    capsys.readouterr()


@needs_dask
def test_guided_tile_is_retried_then_a_failure_is_one_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import optisr.scaleout
    from optisr.guided.tiling import solve_tile

    real_map = optisr.scaleout.dask_tile_map
    marker = tmp_path / "flaky-marker"

    def flaky(problem, weights_fn):  # fails on its first try on any worker, then solves
        if not marker.exists():
            marker.touch()
            raise RuntimeError("injected first-try failure")
        return solve_tile(problem, weights_fn)

    def broken(problem, weights_fn):
        raise RuntimeError("injected failure")

    guide, source = _scene_files(tmp_path)
    common = ["guided", "--guide", str(guide), "--source", str(source), "--scale", "4", "--quiet",
              "--method", "color", "--tile-size", "128"]  # fmt: skip
    assert main([*common, "-o", str(tmp_path / "one.npy")]) == 0
    monkeypatch.setattr(optisr.scaleout, "dask_tile_map", lambda client: real_map(client, solve=flaky))
    assert main([*common, "-o", str(tmp_path / "retried.npy"), "--dask", "local:2"]) == 0
    assert marker.exists()
    one, retried = np.load(tmp_path / "one.npy"), np.load(tmp_path / "retried.npy")
    assert np.abs(one - retried).max() <= 1e-6 * float(one.max() - one.min())

    capsys.readouterr()
    monkeypatch.setattr(optisr.scaleout, "dask_tile_map", lambda client: real_map(client, solve=broken))
    assert main([*common, "-o", str(tmp_path / "failed.npy"), "--dask", "local:2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "failed on 3 tries: RuntimeError: injected failure" in err[0] and "tile at LR" in err[0]
    assert not (tmp_path / "failed.npy").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("failed")] == []


@needs_dask
def test_tile_map_returns_the_same_tiles_in_order_with_few_in_flight() -> None:
    import torch

    from optisr.data.synthetic import make_scene
    from optisr.guided.tiling import solve_tile, tile_grid, tile_problems
    from optisr.scaleout import connect, dask_tile_map

    scene = make_scene(256, 256, seed=2)
    guide = (scene.guide * 255).round().astype(np.uint8)
    source = scene.depth_clean.reshape(64, 4, 64, 4).mean(axis=(1, 3)).astype(np.float32)
    valid = np.ones_like(source, dtype=bool)
    spans = tile_grid((256, 256), 4, 128, 64)
    problems = list(tile_problems(source, guide, 4, spans, operator="area", mode="exact", weights=None, valid=valid,
                                  lam=1.0, sigma=None, tol=1e-4, max_iter=2000, dtype=torch.float32))  # fmt: skip
    assert len(problems) == 4
    pulled = 0

    def counted():  # how far the map has read ahead of what it handed back
        nonlocal pulled
        for p in problems:
            pulled += 1
            yield p

    with connect("local:2") as client:
        results = []
        for k, (problem, sol) in enumerate(dask_tile_map(client, in_flight=1)(counted(), None), 1):
            assert pulled <= k + 1  # one tile in flight besides the one handed back
            results.append((problem, sol))
    assert len(results) == 4 and all(p is q for (p, _), q in zip(results, problems))  # in the problems' order
    for problem, sol in results:  # the same computation as in this process, bit for bit
        assert np.array_equal(sol, solve_tile(problem))
