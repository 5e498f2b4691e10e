"""A real browser for the page tests: Debian's chromium and chromium-driver, driven
headless by selenium with explicit paths (selenium never looks for or downloads a browser
or a driver). `.ci/run` installs the packages when they are missing.

When the browser cannot run, the tests that need it are skipped with the reason, or fail
with it when FSMIGRATE_REQUIRE_BROWSER=1 (CI sets it once the packages are installed).

Use: `from browser import browser` in a test module, then the `browser` fixture.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

CHROMIUM = Path(os.environ.get("FSMIGRATE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("FSMIGRATE_CHROMEDRIVER", "/usr/bin/chromedriver"))
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1600",
)
INSTALL = "apt-get install chromium chromium-driver (as root; .ci/run does it)"


def _cannot_run(reason: str) -> None:
    message = f"browser tests cannot run: {reason}"
    if os.environ.get("FSMIGRATE_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " (FSMIGRATE_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(message)


def _missing() -> Optional[str]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (path.is_file() and os.access(path, os.X_OK)):
            return f"{path} is missing: {INSTALL}"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: run bin/setup (it is in the `test` extra)"
    return None


class Browser:
    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def open(self, page: Path) -> None:
        self.driver.get(page.resolve().as_uri())

    def errors(self) -> list[str]:
        """The console's errors since the last call (SVG attribute errors included)."""
        return [
            entry["message"]
            for entry in self.driver.get_log("browser")
            if entry["level"] == "SEVERE"
        ]

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def text(self) -> str:
        return self.js("return document.body.innerText")

    def screenshot(self, path: Path) -> Path:
        height = self.js("return document.documentElement.scrollHeight")
        self.driver.set_window_size(1280, min(max(int(height), 800), 8000))
        self.driver.save_screenshot(str(path))
        return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    reason = _missing()
    if reason:
        _cannot_run(reason)
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="fsmigrate-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    except WebDriverException as exc:
        shutil.rmtree(profile, ignore_errors=True)
        _cannot_run(f"{CHROMIUM} did not start: {str(exc.msg or exc).splitlines()[0]}")
    try:
        yield Browser(driver)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
