"""A real headless Chromium for the UI tests (Debian's `chromium` and `chromium-driver`,
driven by Selenium). Where either is missing the tests skip with the reason, except where
JAXREWRITE_REQUIRE_BROWSER is set (CI installs them): there a missing browser fails."""

import os
import shutil
import time

import pytest

CHROMIUM = os.environ.get("JAXREWRITE_CHROMIUM", "/usr/bin/chromium")
DRIVER = os.environ.get("JAXREWRITE_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
         "--window-size=1500,1250"]


def _unavailable(reason):
    if os.environ.get("JAXREWRITE_REQUIRE_BROWSER"):
        pytest.fail(f"{reason} (JAXREWRITE_REQUIRE_BROWSER is set)")
    pytest.skip(reason)


def chromium(download_dir=None):
    """A Selenium WebDriver of headless Chromium."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[test]')")
    for path in (CHROMIUM, DRIVER):
        if not (os.path.isfile(path) or shutil.which(path)):
            _unavailable(f"{path} not found (Debian: apt install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    if download_dir:
        options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                                  "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def wait(driver, condition, timeout=120, what="the page"):
    """Poll a JavaScript expression until it is truthy; its value."""
    end = time.time() + timeout
    while time.time() < end:
        value = driver.execute_script(f"return ({condition});")
        if value:
            return value
        time.sleep(0.1)
    status = driver.execute_script("return document.getElementById('status').textContent")
    raise AssertionError(f"timed out waiting for {what} ({condition}); status: {status!r}")


def paint(driver, slot, box, size, brush=14, erase=False):
    """Paint (or, holding Shift, erase) the rectangle `box` = (top, left, bottom, right) in image
    pixels of canvas `slot` with mouse strokes, row by row, as a person would."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    canvas = driver.find_elements("css selector", "#canvases canvas")[slot]
    scale = canvas.size["width"] / size
    top, left, bottom, right = (v * scale for v in box)
    half_w, half_h = canvas.size["width"] / 2, canvas.size["height"] / 2
    chain = ActionChains(driver, duration=0)
    if erase:
        chain.key_down(Keys.SHIFT)
    y = top + brush / 2
    while y <= bottom - brush / 2 + 1e-6:
        chain.move_to_element_with_offset(canvas, int(left + brush / 2 - half_w), int(y - half_h))
        chain.click_and_hold()
        x = left + brush / 2
        while x < right - brush / 2:
            step = min(16, right - brush / 2 - x)
            chain.move_by_offset(int(step), 0)
            x += step
        chain.release()
        y += brush / 2
    if erase:
        chain.key_up(Keys.SHIFT)
    chain.perform()


def click(driver, element_id):
    driver.find_element("id", element_id).click()


def status(driver):
    return driver.find_element("id", "status").text


def severe_logs(driver):
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
