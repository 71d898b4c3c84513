from PIL import Image

from optisr.cli.main import main


def test_demo_writes_panel_and_beats_bicubic(tmp_path, capsys):
    out = tmp_path / "panel.png"
    assert main(["demo", "-o", str(out), "--size", "128", "--scale", "4", "--seed", "3"]) == 0
    img = Image.open(out)
    assert img.size[1] == 128 and img.size[0] > 5 * 128
    text = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(("bicubic", "ours"))}
    rmse_bic, rmse_ours = float(rows["bicubic"][1]), float(rows["ours"][-2])
    assert rmse_ours < rmse_bic
    assert float(rows["ours"][-1]) < 1e-2  # exact consistency (mm)


def test_demo_bad_arguments(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "x.png"), "--scale", "1"]) == 1
    err = capsys.readouterr().err
    assert "--scale" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()
