from PIL import Image

from optisr.cli.main import main


def test_demo_writes_panel_and_beats_bicubic(tmp_path, capsys):
    out = tmp_path / "panel.png"
    assert main(["demo", "-o", str(out), "--size", "128", "--scale", "4", "--seed", "3"]) == 0
    img = Image.open(out)
    assert img.size[1] == 128 and img.size[0] > 5 * 128
    text = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(("bicubic", "colour", "learned"))}
    rmse_bic = float(rows["bicubic"][1])
    for name in [k for k in rows if k != "bicubic"]:  # colour graph, and the learned one when shipped
        rmse, err = float(rows[name][3]), float(rows[name][4])
        assert rmse < rmse_bic
        assert err < 1e-2  # exact consistency (mm)


def test_demo_bad_arguments(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "x.png"), "--scale", "1"]) == 1
    err = capsys.readouterr().err
    assert "--scale" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


# ------------------------------------------------------------- fault sweep (issue 13): demo

SMALL = ["--size", "32", "--scale", "4"]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("optisr demo: error: "), err
    return err


def test_demo_existing_output_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "p.png"
    out.write_bytes(b"keep")
    assert main(["demo", "-o", str(out), *SMALL]) == 1
    assert "--overwrite" in _one_line(capsys) and out.read_bytes() == b"keep"
    assert main(["demo", "-o", str(out), *SMALL, "--overwrite"]) == 0
    assert Image.open(out).size[1] == 32


def test_demo_output_under_a_file_fails_before_work(tmp_path, capsys, monkeypatch):
    from optisr.data import synthetic

    monkeypatch.setattr(synthetic, "make_scene", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    (tmp_path / "f").write_text("x")
    assert main(["demo", "-o", str(tmp_path / "f" / "p.png"), *SMALL]) == 1
    assert "is a file" in _one_line(capsys)


def test_demo_output_written_meanwhile_is_not_replaced(tmp_path, capsys, monkeypatch):
    from optisr.viz import panels

    out = tmp_path / "p.png"
    real = panels.depth_panel

    def other_run_finishes_first(*a, **k):
        out.write_bytes(b"other")
        return real(*a, **k)

    monkeypatch.setattr(panels, "depth_panel", other_run_finishes_first)
    assert main(["demo", "-o", str(out), *SMALL]) == 1
    assert "exists" in _one_line(capsys) and out.read_bytes() == b"other"


def test_demo_disk_full_is_one_line(tmp_path, capsys, monkeypatch):
    import contextlib
    import errno

    from optisr.io import atomic

    @contextlib.contextmanager
    def disk_full(target, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(target))
        yield  # pragma: no cover

    monkeypatch.setattr(atomic, "atomic_path", disk_full)
    assert main(["demo", "-o", str(tmp_path / "p.png"), *SMALL]) == 1
    assert "p.png: No space left on device" in _one_line(capsys)


def test_demo_output_must_be_png(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "p.gif"), *SMALL]) == 1
    assert ".png" in _one_line(capsys) and not (tmp_path / "p.gif").exists()
