"""Driving the demo page in a real browser: headless Chromium from the system (Debian's ``chromium`` and
``chromium-driver``) through selenium, for the browser tests and the README's screenshot. Nothing is downloaded:
selenium is given the system's chromedriver, so its driver manager never runs."""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Callable

ENABLE = 'apt-get install chromium chromium-driver and pip install -e ".[demo]" (selenium) to enable'
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVERS = ("chromedriver",)


def find_chromium() -> tuple[str, str] | str:
    """(browser, chromedriver) paths, or why they cannot be used (one line ending with how to enable them)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f"selenium is not installed; {ENABLE}"
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = next((p for p in map(shutil.which, DRIVERS) if p), None)
    if browser is None or driver is None:
        missing = " and ".join(n for n, p in (("chromium", browser), ("chromedriver", driver)) if p is None)
        return f"no {missing} on PATH; {ENABLE}"
    return browser, driver


def start_chromium(width: int = 1280, height: int = 900):
    """A headless Chromium webdriver whose page area is ``width`` x ``height``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_chromium()
    if isinstance(found, str):
        raise RuntimeError(found)
    browser, driver = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.set_script_timeout(60)
    # The page area itself at width x height (--window-size counts the window, not the page).
    chrome.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    return chrome


def wait_for(condition: Callable[[], object], timeout: float = 60.0, what: str = "the page") -> object:
    """Poll ``condition`` until it returns something truthy; ``TimeoutError`` naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.1)


def fetch_bytes(chrome, url: str) -> bytes:
    """The bytes behind a URL the page holds: a data URL, or a result's ``blob:`` URL, read by the page itself."""
    if url.startswith("data:"):
        return base64.b64decode(url.split(",", 1)[1])
    encoded = chrome.execute_async_script(
        """
        const [url, done] = arguments;
        fetch(url).then((r) => r.blob()).then((blob) => {
          const reader = new FileReader();
          reader.onload = () => done(reader.result.split(",")[1]);
          reader.readAsDataURL(blob);
        }).catch((err) => done("ERROR " + err));
        """,
        url,
    )
    if encoded.startswith("ERROR "):
        raise RuntimeError(f"the page could not read {url[:60]}: {encoded[6:]}")
    return base64.b64decode(encoded)


def draw_stroke(chrome, canvas, points: list[tuple[float, float]]) -> None:
    """Press, drag through ``points`` (fractions of the canvas' displayed size) and release, as a mouse does."""
    from selenium.webdriver.common.action_chains import ActionChains

    rect = canvas.rect
    w, h = rect["width"], rect["height"]
    # Selenium's element offsets are from the element's centre.
    offsets = [(round((x - 0.5) * w), round((y - 0.5) * h)) for x, y in points]
    actions = ActionChains(chrome, duration=20)
    actions.move_to_element_with_offset(canvas, *offsets[0]).click_and_hold()
    for (x0, y0), (x1, y1) in zip(offsets, offsets[1:]):
        steps = max(1, round(max(abs(x1 - x0), abs(y1 - y0)) / 8))
        for i in range(1, steps + 1):
            actions.move_to_element_with_offset(
                canvas, x0 + (x1 - x0) * i // steps, y0 + (y1 - y0) * i // steps
            )
    actions.release().perform()


def resources_loaded(chrome) -> list[str]:
    """Every URL the current page loaded (scripts, styles, images, fetches), as the browser recorded them."""
    return chrome.execute_script(
        "return [location.href, ...performance.getEntriesByType('resource').map((e) => e.name)];"
    )
