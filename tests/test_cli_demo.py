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
