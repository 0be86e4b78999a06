"""The README's screenshot of the demo page (``make demo-screenshot``): the shipped free-form model removing a lamp
post from an embedded held-out campus photo, beside OpenCV, in headless Chromium at 1280x900.

    python -m experiments.demo.screenshot [--out experiments/demo/screenshot.png]   (from the repository root:
    it imports tools.browser, which is not installed with the package)

Serves the demo app (shipped models, CPU) on 127.0.0.1, picks the example, brushes one stroke along the post,
runs the three fills, checks each result (visible pixels unchanged, hole filled) and saves the page.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ctx_inpaint.data.images import load_rgb
from ctx_inpaint.inference.demo.app import create_app
from ctx_inpaint.inference.demo.examples import example_photos
from ctx_inpaint.inference.demo.server import BackgroundServer
from tools.browser import draw_stroke, fetch_bytes, start_chromium, wait_for

EXAMPLE = "holdout-P1070502"  # 640x426: a campus facade with a lamp post in front of it
# Photo pixels of the 640x426 example: across the lamp's head, then down its post (fractions of the photo below).
STROKES = [[(370, 204), (396, 204)], [(383, 196), (384, 300), (384, 410)]]
BRUSH = 18  # screen pixels (about 19 photo pixels at this width)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "screenshot.png"))
    args = parser.parse_args()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    photo = load_rgb(example_photos()[EXAMPLE]["path"]).permute(1, 2, 0).numpy()
    with BackgroundServer(create_app(device="cpu")) as url:
        chrome = start_chromium(1280, 900)
        try:
            chrome.get(url + "/")
            wait_for(lambda: chrome.execute_script("return document.body.dataset.ready"), what="the page")
            Select(chrome.find_element(By.ID, "example-select")).select_by_value(EXAMPLE)
            wait_for(
                lambda: chrome.execute_script("return document.body.dataset.photo") == f"{EXAMPLE}.png",
                what="the example",
            )
            chrome.execute_script(
                "const s = document.getElementById('brush-size'); s.value = arguments[0];"
                "s.dispatchEvent(new Event('input'));",
                BRUSH,
            )
            for stroke in STROKES:
                draw_stroke(
                    chrome, chrome.find_element(By.ID, "mask-canvas"), [(x / 640, y / 426) for x, y in stroke]
                )
            hole = (
                np.asarray(
                    Image.open(
                        io.BytesIO(
                            fetch_bytes(
                                chrome, chrome.execute_script("return window.ctxDemo.binaryMaskURL()")
                            )
                        )
                    ).convert("L")
                )
                > 127
            )
            chrome.find_element(By.ID, "run").click()
            wait_for(lambda: chrome.execute_script("return document.body.dataset.done"), 300, "the results")
            for method in ("model", "telea", "ns"):
                img = chrome.find_element(By.CSS_SELECTOR, f"#result-{method} img")
                wait_for(lambda img=img: img.get_attribute("data-ready"), what=f"the {method} image")
                out = np.asarray(
                    Image.open(io.BytesIO(fetch_bytes(chrome, img.get_attribute("src")))).convert("RGB")
                )
                assert np.array_equal(out[~hole], photo[~hole]), f"{method}: a visible pixel changed"
                assert (out[hole] != photo[hole]).any(), f"{method}: the hole was not filled"
            status = chrome.find_element(By.ID, "status-text").text
            chrome.execute_script("window.scrollTo(0, 0); document.activeElement.blur();")
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            chrome.save_screenshot(args.out)
        finally:
            chrome.quit()
    print(
        f"[ctx-inpaint] {status} Wrote {args.out} ({Image.open(args.out).size[0]}x{Image.open(args.out).size[1]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
