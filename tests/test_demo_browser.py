"""The demo page in a real browser (headless system Chromium through selenium): upload a photo, brush a stroke,
run, and check each result image (hole pixels changed, visible pixels unchanged), undo, a mask of the wrong size,
and that nothing was loaded from anywhere but the server. Skipped, saying how to enable them, without Chromium."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason='the demo extra is not installed: pip install -e ".[demo]"')

from tools.browser import (  # noqa: E402
    draw_stroke,
    fetch_bytes,
    find_chromium,
    resources_loaded,
    start_chromium,
    wait_for,
)

FOUND = find_chromium()
pytestmark = pytest.mark.skipif(isinstance(FOUND, str), reason=f"browser tests: {FOUND}")

if not isinstance(FOUND, str):
    from PIL import Image
    from selenium.webdriver.common.by import By

    from ctx_inpaint.inference.demo.app import create_app
    from ctx_inpaint.inference.demo.server import BackgroundServer


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[object, str]]:
    """(browser, server URL): the demo app with the shipped models on 127.0.0.1, and one headless Chromium."""
    with BackgroundServer(create_app(device="cpu")) as url:
        chrome = start_chromium(1280, 900)
        try:
            yield chrome, url
        finally:
            chrome.quit()


def make_photo(path: Path, w: int = 160, h: int = 120) -> np.ndarray:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w * 200, yy / h * 200, (xx + yy) / (w + h) * 255], axis=-1)
    image = (base + rng.integers(0, 40, (h, w, 3))).clip(0, 255).astype(np.uint8)
    Image.fromarray(image).save(path)
    return image


def js(chrome, expression: str):
    return chrome.execute_script(f"return {expression};")


def open_page(chrome, url: str) -> None:
    chrome.get(url + "/")
    wait_for(lambda: js(chrome, "document.body.dataset.ready"), 120, "the model list")
    wait_for(lambda: js(chrome, "document.body.dataset.photo"), 120, "the first example photo")


def upload(chrome, path: Path) -> None:
    chrome.find_element(By.ID, "photo-file").send_keys(str(path))
    wait_for(lambda: js(chrome, "document.body.dataset.photo") == path.name, what=f"{path.name} to load")


def sent_mask(chrome) -> np.ndarray:
    data_url = js(chrome, "window.ctxDemo.binaryMaskURL()")
    return np.asarray(Image.open(io.BytesIO(fetch_bytes(chrome, data_url))).convert("L")) > 127


def status(chrome) -> str:
    return chrome.find_element(By.ID, "status-text").text


def test_upload_brush_inpaint_and_check_every_result(site, tmp_path: Path) -> None:
    chrome, url = site
    open_page(chrome, url)
    photo_path = tmp_path / "browser_photo.png"
    image = make_photo(photo_path)
    upload(chrome, photo_path)
    canvas = chrome.find_element(By.ID, "mask-canvas")
    draw_stroke(chrome, canvas, [(0.15, 0.3), (0.45, 0.6), (0.85, 0.35)])
    hole = sent_mask(chrome)
    assert hole.shape == image.shape[:2]
    assert 0.01 < hole.mean() < 0.3, f"the stroke covers {hole.mean():.3f} of the photo"
    assert hole[int(0.6 * 120) - 3 : int(0.6 * 120) + 3, int(0.45 * 160) - 3 : int(0.45 * 160) + 3].any()
    done = js(chrome, "Number(document.body.dataset.done || 0)")
    chrome.find_element(By.ID, "run").click()
    wait_for(
        lambda: (
            js(chrome, "Number(document.body.dataset.done || 0)") > done
            or "error" in js(chrome, "document.getElementById('status').className")
        ),
        timeout=1800,
        what="the three results",
    )
    assert "Done" in status(chrome), status(chrome)
    for method in ("model", "telea", "ns"):
        img = chrome.find_element(By.CSS_SELECTOR, f"#result-{method} img")
        wait_for(lambda img=img: img.get_attribute("data-ready"), what=f"the {method} image")
        out = np.asarray(Image.open(io.BytesIO(fetch_bytes(chrome, img.get_attribute("src")))).convert("RGB"))
        assert out.shape == image.shape, method
        assert np.array_equal(out[~hole], image[~hole]), f"{method}: a visible pixel changed"
        assert (out[hole] != image[hole]).any(-1).mean() > 0.5, f"{method}: the hole was not filled"
        link = chrome.find_element(By.CSS_SELECTOR, f"#result-{method} a.download")
        assert link.is_displayed() and link.get_attribute("href") == img.get_attribute("src")
        assert link.get_attribute("download").startswith("browser_photo_")
    loaded = resources_loaded(chrome)
    assert all(u.startswith(url) or u.startswith(("blob:", "data:")) for u in loaded), loaded
    logs = [e for e in chrome.get_log("browser") if e.get("level") == "SEVERE"]
    assert not logs, logs


def test_undo_clear_and_a_mask_of_the_wrong_size(site, tmp_path: Path) -> None:
    chrome, url = site
    open_page(chrome, url)
    photo_path = tmp_path / "small.png"
    make_photo(photo_path, 96, 64)
    upload(chrome, photo_path)
    canvas = chrome.find_element(By.ID, "mask-canvas")
    draw_stroke(chrome, canvas, [(0.2, 0.5), (0.8, 0.5)])
    first = sent_mask(chrome)
    draw_stroke(chrome, canvas, [(0.5, 0.1), (0.5, 0.9)])
    assert sent_mask(chrome).sum() > first.sum()
    chrome.find_element(By.ID, "undo").click()
    assert np.array_equal(sent_mask(chrome), first)
    chrome.find_element(By.ID, "clear").click()
    assert not sent_mask(chrome).any()
    chrome.find_element(By.ID, "run").click()  # nothing painted: told so, nothing sent
    assert "Paint the hole first" in status(chrome)
    wrong = tmp_path / "wrong_mask.png"
    Image.fromarray(np.full((10, 12), 255, np.uint8)).save(wrong)
    chrome.find_element(By.ID, "mask-file").send_keys(str(wrong))
    wait_for(lambda: "mask: 12×10 differs" in status(chrome), what="the mask size error")
    right = tmp_path / "right_mask.png"
    mask = np.zeros((64, 96), np.uint8)
    mask[20:40, 30:50] = 255
    Image.fromarray(mask).save(right)
    chrome.find_element(By.ID, "mask-file").send_keys(str(right))
    wait_for(lambda: "400 hole pixels" in status(chrome), what="the uploaded mask")
    assert np.array_equal(sent_mask(chrome), mask > 127)


def test_the_docs_page_loads_nothing_from_elsewhere(site) -> None:
    chrome, url = site
    chrome.get(url + "/docs")
    wait_for(lambda: chrome.find_elements(By.CSS_SELECTOR, ".opblock"), what="Swagger UI's operations")
    loaded = resources_loaded(chrome)
    assert all(u.startswith(url) or u.startswith(("blob:", "data:")) for u in loaded), loaded
