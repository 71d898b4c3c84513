"""Refresh ``docs/serve.png``: a guided run of ``optisr serve`` in headless Chromium.

    python tools/serve_screenshot.py [-o docs/serve.png]

Needs Debian's ``chromium`` and ``chromium-driver`` and ``selenium`` (the test extra), as
``tests/serve/test_serve_browser.py`` does; nothing is downloaded (SE_OFFLINE). The scene is
procedural (``make_scene``, 256×320, seed 5) with its depth moved by (3, −3) px against the guide,
so the notes under the result show the registration line; ×4, every option at its default.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _wait(what: str, check, timeout: float = 120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def _scene(folder: Path, scale: int) -> dict[str, Path]:
    from optisr.data.synthetic import make_scene
    from optisr.guided.registration import shift_image
    from optisr.io.images import from_float, write_image
    from optisr.io.rasters import write_raster

    sc = make_scene(256, 320, seed=5)
    depth = 500.0 + 3000.0 * (sc.depth_clean - sc.depth_clean.min()) / np.ptp(sc.depth_clean)
    depth = shift_image(depth, (3, -3))  # the depth sensor is off by (3, -3) px
    lr = depth.reshape(256 // scale, scale, 320 // scale, scale).mean(axis=(1, 3))
    files = {"guide": folder / "room_rgb.png", "source": folder / "room_depth.png", "truth": folder / "room_truth.png"}
    write_image(files["guide"], from_float(sc.guide, np.uint8))
    write_raster(files["source"], np.round(lr), dtype="uint16")
    write_raster(files["truth"], np.round(depth), dtype="uint16")
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", default="docs/serve.png")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        raise SystemExit("needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    from optisr.serve.server import LocalServer

    os.environ["SE_OFFLINE"] = "true"
    with tempfile.TemporaryDirectory() as tmp:
        files = _scene(Path(tmp), 4)
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1000", f"--user-data-dir={Path(tmp) / 'profile'}"):  # fmt: skip
            options.add_argument(arg)
        browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
        try:
            with LocalServer("127.0.0.1", 0, max_upload_mb=8) as srv:
                srv.start()
                browser.get(srv.url)
                by_id = lambda name: browser.find_element(By.ID, name)  # noqa: E731
                for field in ("guide", "source", "truth"):
                    by_id(f"guided-{field}").send_keys(str(files[field]))
                scale = by_id("guided-scale")
                scale.clear()
                scale.send_keys("4")
                by_id("guided-run").click()
                _wait("the guided figures", lambda: browser.execute_script(
                    "const imgs = [...document.querySelectorAll('#guided-results img')];"
                    "return imgs.length >= 5 && imgs.every(i => i.complete && i.naturalWidth > 0);"))  # fmt: skip
                time.sleep(0.5)
                browser.save_screenshot(args.output)
        finally:
            browser.quit()
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
