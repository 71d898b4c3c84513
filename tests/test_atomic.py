"""atomic_path: no partial files, and no silent replacement of a file that appeared meanwhile."""

from __future__ import annotations

import os

import numpy as np
import pytest

from optisr.errors import OptiSRError, OutputExistsError
from optisr.io.atomic import atomic_path
from optisr.io.images import write_image
from optisr.io.rasters import write_raster


def test_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_true_replaces(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_file_appearing_meanwhile_is_not_replaced(tmp_path):
    """Another run creates the output while this one computes: the final step must fail."""
    target = tmp_path / "out.txt"
    with pytest.raises(OutputExistsError, match="out.txt"), atomic_path(target, overwrite=False) as tmp:
        tmp.write_text("ours")
        target.write_text("theirs")  # the concurrent writer wins the race
    assert target.read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # our temporary file is gone


def test_exclusive_commit_writes_new_file_with_usual_permissions(tmp_path):
    target = tmp_path / "new.txt"
    with atomic_path(target, overwrite=False) as tmp:
        tmp.write_text("x")
    assert target.read_text() == "x"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["new.txt"]


def test_writers_pass_overwrite_through(tmp_path):
    img = tmp_path / "a.png"
    write_image(img, np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(OutputExistsError):
        write_image(img, np.ones((4, 4, 3), np.uint8), overwrite=False)
    ras = tmp_path / "a.tif"
    write_raster(ras, np.zeros((4, 4), np.float32))
    with pytest.raises(OptiSRError):
        write_raster(ras, np.ones((4, 4), np.float32), overwrite=False)
