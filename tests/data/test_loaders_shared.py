"""Dataset loaders on the local benchmark copies in ../shared/data (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest

from optisr.data import get_dataset

pytestmark = pytest.mark.data


def test_middlebury30(shared_dir):
    ds = get_dataset("middlebury30", shared_dir("depth_lu2014_middlebury30"))
    assert len(ds) == 30 == ds.expected_count
    zeros = 0
    for s in ds:
        h, w = s.depth.shape
        assert 370 <= h <= 381 and 413 <= w <= 465 and s.guide.shape == (h, w, 3)
        assert 0 < np.nanmin(s.depth) and np.nanmax(s.depth) <= 255
        zeros += int((~s.mask).sum())
    assert zeros == 16  # the published count of zero-depth pixels across the set


def test_middlebury2005_pmba(shared_dir):
    ds = get_dataset("middlebury2005", shared_dir("depth_middlebury2005_6scenes"), lr_scale=8)
    assert ds.names == ["Art", "Books", "Dolls", "Laundry", "Moebius", "Reindeer"]
    s = ds[3]
    assert s.depth.shape == (1088, 1280) and s.mask.all()
    assert s.lr_depth.shape == (136, 160)


def test_middlebury2014_artl(shared_dir):
    ds = get_dataset("middlebury2014", shared_dir("depth_middlebury2014_artL_stereo"))
    assert len(ds) == 1
    s = ds[0]
    assert s.depth.shape == (554, 694) and s.guide.shape == (554, 694, 3)
    assert 1417 < np.nanmin(s.depth) < 1419 and 2167 < np.nanmax(s.depth) < 2169  # mm
    assert 0.997 < s.mask.mean() < 0.998


def test_rgbdd_test405(shared_dir):
    ds = get_dataset("rgbdd", shared_dir("depth_rgbdd_test405"))
    assert len(ds) == 405 == ds.expected_count
    for i in (0, 200, 404):
        s = ds[i]
        assert s.depth.shape == (384, 512) and s.guide.shape == (384, 512, 3)
        assert 0 < np.nanmin(s.depth) and np.nanmax(s.depth) < 4000  # mm
    assert ds.report_scale == 0.1


def test_rgbdd_real(shared_dir):
    ds = get_dataset("rgbdd-real", shared_dir("depth_rgbdd_realscene3"))
    assert len(ds) == 3
    s = ds[0]
    assert s.depth.shape == (384, 512) and s.lr_depth.shape == (144, 192)
    assert s.lr_mask.all() and 100 < np.nanmedian(s.lr_depth) < 4000


def test_nyuv2_samples(shared_dir):
    ds = get_dataset("nyuv2", shared_dir("depth_nyuv2_test_samples3"))
    assert ds.names == ["1000", "1001", "1002"]
    for s in ds:
        assert s.depth.shape == (480, 640) and s.guide.shape == (480, 640, 3)
        assert 0.7 < np.nanmin(s.depth) and np.nanmax(s.depth) < 6.7  # metres
