"""Bit-exact digests of rendered scenes depend on OpenCV's text rasteriser (``cv2.putText``), which
changed between OpenCV 5.0 and 5.1 (every other drawing and filtering call the generator uses gave
the same bits). Tests that pin digests list one per OpenCV ``major.minor``; another version skips
the pin with its reason rather than fail on a rendering change that is not ours."""

from __future__ import annotations

import cv2
import pytest


def opencv_digest(by_version: dict[str, str]) -> str:
    """The digest recorded for the installed OpenCV's ``major.minor``; skips the test for any other version."""
    version = ".".join(cv2.__version__.split(".")[:2])
    if version not in by_version:
        pytest.skip(f"scene digests are recorded for OpenCV {', '.join(sorted(by_version))}, not {cv2.__version__}")
    return by_version[version]
