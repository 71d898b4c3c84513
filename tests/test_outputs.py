"""optisr.io.outputs: output locations checked before any work; no overlap with inputs."""

from __future__ import annotations

import os

import pytest

from optisr.errors import ConfigError, OutputExistsError
from optisr.io import outputs
from optisr.io.outputs import (
    check_output_file,
    check_output_folder,
    paths_overlap,
    refuse_overlap,
)


def test_overlap_same_inside_containing_and_symlinks(tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    assert paths_overlap(src, src)
    assert paths_overlap(tmp_path, src)  # containing
    assert paths_overlap(src / "sub", src)  # inside (need not exist)
    assert not paths_overlap(tmp_path / "imgs2", src)  # a name prefix is not containment
    link = tmp_path / "link"
    link.symlink_to(src, target_is_directory=True)
    assert paths_overlap(link, src) and paths_overlap(link / "x", src)
    with pytest.raises(ConfigError, match="overlaps the input") as info:
        refuse_overlap(link, [src])
    assert len(str(info.value).splitlines()) == 1


def test_output_under_a_file_or_existing(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="file.txt is a file"):
        check_output_file(blocker / "a" / "out.png", overwrite=True)
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_output_folder(blocker)
    with pytest.raises(ConfigError, match="is a folder"):
        check_output_file(tmp_path, overwrite=True)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        check_output_file(blocker, overwrite=False)
    assert check_output_file(blocker, overwrite=True) == blocker
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_unwritable_folder(tmp_path, monkeypatch):
    # root may write anywhere, so simulate the permission answer instead of chmod.
    real = os.access
    monkeypatch.setattr(outputs.os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real(p, mode))
    with pytest.raises(ConfigError, match="not writable"):
        check_output_file(tmp_path / "sub" / "o.png", overwrite=False)
