"""``optisr serve`` in a real browser: headless Chromium driven by Selenium.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (``.ci/run``
installs them where it can); skips with the reason otherwise. Selenium is given the driver's path
and SE_OFFLINE, so Selenium Manager never downloads anything.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from optisr.io.images import read_image
from optisr.io.rasters import read_raster

SCALE = 4


def _browser_or_skip():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip(
            "no headless browser: install Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)"
        )
    try:
        from selenium import webdriver
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium, part of the test extra)")
    return chromium, driver, webdriver


@pytest.fixture
def browser(tmp_path, monkeypatch):
    chromium, driver, webdriver = _browser_or_skip()
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(arg)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})  # fmt: skip
    try:
        drv = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    except Exception as exc:  # a browser that cannot start here (no display libraries, ...)
        pytest.skip(f"headless chromium does not start: {str(exc).strip().splitlines()[0]}")
    drv.downloads = downloads
    yield drv
    drv.quit()


@pytest.fixture
def server(monkeypatch, tmp_path):
    from optisr.serve.server import LocalServer

    with LocalServer("127.0.0.1", 0, max_upload_mb=8) as srv:
        srv.start()
        yield srv


def _wait(what: str, check, timeout: float = 60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _wait_download(folder: Path, name: str) -> Path:
    path = folder / name
    _wait(f"the download {name}", lambda: path.is_file() and not list(folder.glob("*.crdownload")), 30)
    return path


def test_browser_guided_and_blind_runs(browser, server, scene_files, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    by_id = lambda name: browser.find_element(By.ID, name)  # noqa: E731
    browser.get(server.url)
    assert "optisr" in browser.title
    _wait("the options", lambda: len(Select(by_id("guided-method")).options) > 3)

    # a bad source: the page shows the one-line error
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    by_id("guided-guide").send_keys(str(scene_files["guide"]))
    by_id("guided-source").send_keys(str(bad))
    by_id("guided-run").click()
    error = _wait("the error line", lambda: by_id("guided-error").is_displayed() and by_id("guided-error").text)
    assert error.startswith("broken.png: ") and "\n" not in error

    # guided: guide + 16-bit PNG source + ground truth, ×4, learned default method, exact
    by_id("guided-source").clear()
    by_id("guided-source").send_keys(str(scene_files["source"]))
    by_id("guided-truth").send_keys(str(scene_files["truth"]))
    scale = by_id("guided-scale")
    scale.clear()
    scale.send_keys(str(SCALE))
    by_id("guided-run").click()
    _wait("the guided figures", lambda: browser.execute_script(
        "const imgs = [...document.querySelectorAll('#guided-results img')];"
        "return imgs.length >= 5 && imgs.every(i => i.complete && i.naturalWidth > 0);"))  # fmt: skip
    assert not by_id("guided-error").is_displayed()
    link = browser.find_element(By.CSS_SELECTOR, "#guided-results a.download")
    assert link.text == f"Download room_depth_x{SCALE}.png"
    link.click()
    out = read_raster(_wait_download(browser.downloads, f"room_depth_x{SCALE}.png"))
    assert out.data.shape == (32, 32) and out.data.dtype.name == "uint16"
    browser.save_screenshot(str(tmp_path / "serve_guided.png"))

    # blind: one small photo, the default model; before/after slider and zoom
    by_id("tab-blind").click()
    assert by_id("panel-blind").is_displayed() and not by_id("panel-guided").is_displayed()
    by_id("blind-photos").send_keys(str(scene_files["photo"]))
    by_id("blind-run").click()
    _wait("the blind result", lambda: browser.execute_script(
        "const a = document.querySelector('#blind-results img.after');"
        "return a !== null && a.complete && a.naturalWidth === 64;"))  # fmt: skip
    slider = browser.find_element(By.CSS_SELECTOR, "#blind-results input[type=range]")
    browser.execute_script("arguments[0].value = 20; arguments[0].dispatchEvent(new Event('input'));", slider)
    clip = browser.find_element(By.CSS_SELECTOR, "#blind-results img.before").value_of_css_property("clip-path")
    assert "80%" in clip
    Select(browser.find_element(By.CSS_SELECTOR, "#blind-results select")).select_by_value("4")
    width = browser.execute_script("return document.querySelector('#blind-results .compare').style.width")
    assert width == "256px"
    browser.find_element(By.CSS_SELECTOR, "#blind-results a.download").click()
    photo = read_image(_wait_download(browser.downloads, "photo_x4.png"))
    assert photo.shape == (64, 64, 3)
    shot = tmp_path / "serve_blind.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 1000
