"""The demo's REST API (FastAPI TestClient, and a real uvicorn server for the load check): a good request returns
a PNG of the photo's size whose visible pixels are bit-identical; every bad request gets its 4xx and a one-line
detail, and the server keeps serving; model calls are serialised per model; the CLI fails in one line."""

from __future__ import annotations

import functools
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason='the demo extra is not installed: pip install -e ".[demo]"')
pytest.importorskip("httpx", reason='the demo extra is not installed: pip install -e ".[demo]"')

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from ctx_inpaint.data.images import decode_rgb  # noqa: E402
from ctx_inpaint.errors import InputError  # noqa: E402
from ctx_inpaint.inference.demo.app import create_app  # noqa: E402
from ctx_inpaint.inference.demo.registry import ModelRegistry, checkpoint_models  # noqa: E402
from ctx_inpaint.inference.inpainter import Inpainter, max_windows  # noqa: E402
from ctx_inpaint.inference.weights import PRETRAINED_DIR  # noqa: E402
from tests.commands import run_command  # noqa: E402

MAX_UPLOAD_MB = 0.5


def photo(w: int = 64, h: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w * 200, yy / h * 200, (xx + yy) / (w + h) * 255], axis=-1)
    return (base + rng.integers(0, 40, (h, w, 3))).clip(0, 255).astype(np.uint8)


def hole(w: int = 64, h: int = 48) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[10:20, 20:44] = True  # a blob
    m[30:33, 5:60] = True  # a thin stroke
    return m


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8) * (255 if array.dtype == bool else 1)).save(buffer, format="PNG")
    return buffer.getvalue()


def files(image: bytes, mask: bytes) -> dict:
    return {"image": ("photo.png", image, "image/png"), "mask": ("mask.png", mask, "image/png")}


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(max_upload_mb=MAX_UPLOAD_MB, max_pixels=4_000_000))


def check_result(content: bytes, image: np.ndarray, hidden: np.ndarray) -> None:
    out = np.asarray(Image.open(io.BytesIO(content)))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[~hidden], image[~hidden]), "a visible pixel changed"
    assert (out[hidden] != image[hidden]).any(-1).mean() > 0.5, "the hole was left (mostly) as it was"


@pytest.mark.parametrize("method", ["model", "telea", "ns"])
def test_a_good_request_returns_the_photo_with_only_its_hole_filled(client: TestClient, method: str) -> None:
    image, hidden = photo(), hole()
    resp = client.post("/api/inpaint", files=files(png(image), png(hidden)), data={"method": method})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    assert resp.headers["x-inpaint-method"] == method and int(resp.headers["x-hole-pixels"]) == hidden.sum()
    check_result(resp.content, image, hidden)


def test_the_centre_model_and_a_jpeg_of_another_size(client: TestClient) -> None:
    image, hidden = photo(150, 97, seed=3), hole(150, 97)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    decoded = decode_rgb(buffer.getvalue(), "image").permute(1, 2, 0).numpy()  # what the server sees
    resp = client.post("/api/inpaint", files=files(buffer.getvalue(), png(hidden)), data={"model": "center"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-inpaint-model"] == "center"
    check_result(resp.content, decoded, hidden)


@functools.cache
def gif_bomb() -> bytes:
    """A 5 KB GIF: 200 frames of 1x1 on a 2000x2000 canvas (2.4 GB when every frame was decoded)."""
    from tests.test_bounded_inference import gif_bomb as make

    return make(2000, 2000, 200)


@functools.cache
def bomb() -> bytes:
    """A 20000x20000 one-bit PNG of a few KB: 400 megapixels once decoded."""
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(*parts: tuple[str, str, bytes]) -> tuple[bytes, str]:
    boundary = "ctxboundary"
    body = b""
    for name, filename, data in parts:
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def too_large_chunked(client: TestClient):
    """A body over the limit sent without a Content-Length (chunks): refused as it arrives."""
    body, kind = multipart(
        ("image", "big.png", b"x" * int(5 * MAX_UPLOAD_MB * 2**20)), ("mask", "m.png", b"")
    )

    def chunks():
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    return client.post("/api/inpaint", content=chunks(), headers={"content-type": kind})


IMAGE, HIDDEN = photo(), hole()
BAD = {
    "not an image": (
        lambda c: c.post("/api/inpaint", files=files(b"notes, not pixels", png(HIDDEN))),
        422,
        "image:",
    ),
    "empty file": (lambda c: c.post("/api/inpaint", files=files(b"", png(HIDDEN))), 422, "image:"),
    "truncated png": (
        lambda c: c.post("/api/inpaint", files=files(png(IMAGE)[:300], png(HIDDEN))),
        422,
        "image:",
    ),
    "mask not an image": (
        lambda c: c.post("/api/inpaint", files=files(png(IMAGE), b"\x00" * 50)),
        422,
        "mask:",
    ),
    "mask of another size": (
        lambda c: c.post("/api/inpaint", files=files(png(IMAGE), png(hole(40, 48)))),
        422,
        "mask: 40x48 differs from the image's 64x48",
    ),
    "mask without a hole": (
        lambda c: c.post("/api/inpaint", files=files(png(IMAGE), png(np.zeros((48, 64), bool)))),
        422,
        "mask: no hole",
    ),
    "missing mask": (
        lambda c: c.post("/api/inpaint", files={"image": ("p.png", png(IMAGE), "image/png")}),
        422,
        "mask: missing",
    ),
    "no form at all": (lambda c: c.post("/api/inpaint", json={"image": 1}), 422, "image: missing"),
    "a text field for the image": (
        lambda c: c.post("/api/inpaint", data={"image": "photo.png", "mask": "mask.png"}),
        422,
        "image:",
    ),
    "unknown model": (
        lambda c: c.post("/api/inpaint", files=files(png(IMAGE), png(HIDDEN)), data={"model": "nope"}),
        404,
        "model: unknown model 'nope'; expected one of freeform, center",
    ),
    "unknown method": (
        lambda c: c.post("/api/inpaint", files=files(png(IMAGE), png(HIDDEN)), data={"method": "lama"}),
        422,
        "method:",
    ),
    "file over the limit": (
        lambda c: c.post(
            "/api/inpaint",
            files=files(png(np.random.default_rng(0).integers(0, 256, (500, 500, 3), np.uint8)), png(HIDDEN)),
        ),
        413,
        "image: the file is 0.7 MB, over the server's limit of 0.5 MB",
    ),
    "body over the limit": (
        lambda c: c.post(
            "/api/inpaint",
            content=b"x" * (3 * 2**20),
            headers={"content-type": "multipart/form-data; boundary=x"},
        ),
        413,
        "request: the upload (3.0 MB) is over",
    ),
    "chunked body over the limit": (too_large_chunked, 413, "request: the upload is over"),
    "decompression bomb": (
        lambda c: c.post("/api/inpaint", files=files(bomb(), png(HIDDEN))),
        413,
        "image: 20000x20000 is 400,000,000 pixels, over the server's limit of 4,000,000",
    ),
    "GIF frame bomb (200 frames of 1x1 on a 2000x2000 canvas)": (
        lambda c: c.post("/api/inpaint", files=files(gif_bomb(), png(HIDDEN))),
        413,
        "image: 2000x2000 x 200 frames is 800,000,000 pixels, over the server's limit of 4,000,000",
    ),
    "mask whose header cannot be the photo's size": (
        lambda c: c.post("/api/inpaint", files=files(png(IMAGE), png(np.ones((1500, 1500), bool)))),
        422,
        "mask: 1500x1500 differs from the image's 64x48",
    ),
    "decompression bomb as the mask": (
        lambda c: c.post("/api/inpaint", files=files(png(IMAGE), bomb())),
        413,
        "mask: 20000x20000",
    ),
    "malformed multipart": (
        lambda c: c.post(
            "/api/inpaint", content=b"garbage", headers={"content-type": "multipart/form-data; boundary=zz"}
        ),
        400,
        "",
    ),
    "unknown example": (lambda c: c.get("/api/examples/lena"), 404, "name: unknown example 'lena'"),
}


def test_every_bad_request_gets_its_4xx_in_one_line_and_the_server_keeps_serving(client: TestClient) -> None:
    for what, (send, status, start) in BAD.items():
        resp = send(client)
        assert resp.status_code == status, f"{what}: {resp.status_code} {resp.text}"
        detail = resp.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and detail.startswith(start), (
            f"{what}: {detail}"
        )
        if status in (413, 422) and what != "malformed multipart":
            assert "expected" in detail, f"{what}: {detail} (should say what was expected)"
    good = client.post("/api/inpaint", files=files(png(IMAGE), png(HIDDEN)))
    assert good.status_code == 200
    check_result(good.content, IMAGE, HIDDEN)


def test_the_page_models_examples_and_docs_are_served_with_nothing_from_elsewhere(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    static = Path(__file__).resolve().parents[1] / "ctx_inpaint" / "inference" / "demo" / "static"
    for path in static.iterdir():
        text = client.get(f"/static/{path.name}").text
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name
    models = client.get("/api/models").json()
    assert [m["name"] for m in models["models"]] == ["freeform", "center"] and models["default"] == "freeform"
    examples = client.get("/api/examples").json()["examples"]
    names = [e["name"] for e in examples]
    assert names[0].startswith("holdout-") and any(n.startswith("places-") for n in names)
    assert not any(bad in n.lower() for n in names for bad in ("lena", "monalisa", "58060"))
    first = client.get(f"/api/examples/{names[0]}")
    assert first.status_code == 200 and first.content[:8] == b"\x89PNG\r\n\x1a\n"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn." not in docs.text and "swagger-ui-bundle.js" in docs.text
    bundle = [line for line in docs.text.splitlines() if "swagger-ui-bundle.js" in line][0]
    assert client.get(bundle.split('src="')[1].split('"')[0]).status_code == 200  # served here
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/api/inpaint"]["post"]
    assert {"200", "404", "413", "422"} <= set(post["responses"])
    assert "image/png" in post["responses"]["200"]["content"]
    body = post["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].split("/")[-1]
    fields = spec["components"]["schemas"][body]["properties"]
    assert {"image", "mask", "model", "method"} <= set(fields)
    assert fields["method"]["enum"] == ["model", "telea", "ns"]


class Counting:
    """A stand-in model that records how many of its calls overlap."""

    def __init__(self, inpainter: Inpainter) -> None:
        self.inpainter = inpainter
        self.active = 0
        self.most = 0
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, image, hole, **kwargs):
        with self.lock:
            self.active += 1
            self.calls += 1
            self.most = max(self.most, self.active)
        time.sleep(0.05)
        try:
            return self.inpainter(image, hole, **kwargs)
        finally:
            with self.lock:
                self.active -= 1


def test_model_calls_are_serialised_per_model_under_concurrent_requests() -> None:
    loads = []
    real = Inpainter.load("freeform", device="cpu")
    counting = Counting(real)

    def loader(spec, device):
        loads.append(spec)
        return counting

    registry = ModelRegistry({"freeform": "freeform"}, device="cpu", loader=loader)
    client = TestClient(create_app(registry=registry, max_jobs=4))
    image, hidden = photo(), hole()
    statuses: list[int] = []

    def send() -> None:
        for _ in range(3):
            resp = client.post("/api/inpaint", files=files(png(image), png(hidden)))
            statuses.append(resp.status_code)
            check_result(resp.content, image, hidden)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 12
    assert counting.calls == 12 and counting.most == 1, f"{counting.most} model calls overlapped"
    assert loads == ["freeform"], "the model should be loaded once, on first use"


def test_a_real_server_under_a_short_load_answers_every_request_correctly() -> None:
    """The load test's code against uvicorn on 127.0.0.1 (make demo-loadtest runs 50 requests from 4 threads)."""
    from ctx_inpaint.inference.demo.server import BackgroundServer
    from tools.loadtest import brush_mask, load_test

    image = photo(96, 72, seed=5)
    hidden = brush_mask(96, 72, seed=1)
    assert 0.03 < hidden.mean() < 0.2
    with BackgroundServer(create_app()) as url:
        result = load_test(url, image, hidden, requests=8, threads=4)
        import httpx

        assert httpx.get(f"{url}/api/health").json()["status"] == "ok"
    assert result["correct"] == 8 and result["errors"] == 0, result["error_examples"]
    assert result["latency_s"]["median"] > 0


def test_checkpoints_by_path_are_named_by_stem_or_name(tmp_path: Path) -> None:
    ckpt = PRETRAINED_DIR / "center.safetensors"
    named = checkpoint_models([str(ckpt), f"mine={ckpt}"], {"freeform", "center"})
    assert named == {"center-2": str(ckpt), "mine": str(ckpt)}
    with pytest.raises(InputError, match="^checkpoints: .*missing.ckpt is not a file"):
        checkpoint_models([str(tmp_path / "missing.ckpt")], set())
    with pytest.raises(InputError, match="^--checkpoint: .*missing.ckpt is not a file"):
        checkpoint_models([str(tmp_path / "missing.ckpt")], set(), "--checkpoint")
    with pytest.raises(InputError, match="'freeform' is already taken"):
        checkpoint_models([f"freeform={ckpt}"], {"freeform"})
    run = tmp_path / "l2_0999"  # a training run folder: its checkpoints/last.ckpt, named by the run
    with pytest.raises(InputError, match="l2_0999 is not a file .*a run folder"):
        checkpoint_models([str(run)], set())
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    last = str(run / "checkpoints" / "last.ckpt")
    assert checkpoint_models([str(run), f"mine={run}"], set()) == {"l2_0999": last, "mine": last}
    client = TestClient(create_app({"mine": str(ckpt), "broken": str(tmp_path / "gone.safetensors")}))
    image, hidden = photo(), hole()
    resp = client.post("/api/inpaint", files=files(png(image), png(hidden)))  # the first is the default
    assert resp.status_code == 200 and resp.headers["x-inpaint-model"] == "mine"
    broken = client.post("/api/inpaint", files=files(png(image), png(hidden)), data={"model": "broken"})
    assert broken.status_code == 503 and broken.json()["detail"].startswith(
        "model: 'broken' could not be loaded"
    )


def test_the_cli_help_and_its_one_line_errors(capsys, tmp_path: Path) -> None:
    assert run_command("demo", ["--help"]) == 0
    out = capsys.readouterr().out
    assert "--port" in out and "--checkpoint" in out and "--max-upload-mb" in out and "127.0.0.1" in out
    cases = [
        (["--port", "eighty"], "--port: invalid int value"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--max-upload-mb", "0"], "--max-upload-mb: got 0"),
        (["--checkpoint", str(tmp_path / "none.ckpt")], "--checkpoint:"),
        (["--device", "tpu"], "--device:"),
        (["--port", "70000"], "--port: got 70000"),
    ]
    for argv, message in cases:
        assert run_command("demo", argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("ctx-inpaint: error:") and message in err and "\n" not in err, (argv, err)
    import socket

    with socket.socket() as busy:  # a port in use: one line, before serving
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert run_command("demo", ["--port", str(port)]) == 1
    err = capsys.readouterr().err.strip()
    assert f"--port: cannot listen on 127.0.0.1:{port}" in err and "\n" not in err


def test_a_mask_that_cannot_fit_the_photo_is_refused_from_its_header(monkeypatch) -> None:
    """A 320x240 photo with a 9000x9000 mask (within the pixel limit) was refused only after the mask was decoded
    (+750 MB): now from the headers, neither file decoded."""
    import ctx_inpaint.inference.demo.app as app_module

    decoded: list[str] = []
    real = app_module.decode_rgb
    monkeypatch.setattr(
        app_module,
        "decode_rgb",
        lambda data, name, limit=None: decoded.append(name) or real(data, name, limit),
    )
    client = TestClient(create_app({"freeform": "freeform"}, max_pixels=100_000_000))
    buffer = io.BytesIO()
    Image.new("1", (9000, 9000), 1).save(buffer, format="PNG")
    resp = client.post("/api/inpaint", files=files(png(photo(320, 240)), buffer.getvalue()))
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"].startswith("mask: 9000x9000 differs from the image's 320x240; expected")
    assert decoded == [], f"decoded before the refusal: {decoded}"


def counting_windows(monkeypatch) -> list[int]:
    """The side of every window the model runs on, in any Inpainter of this process."""
    sides: list[int] = []
    real = Inpainter._run_window

    def run_window(self, image, remaining, top, left, side):
        sides.append(side)
        return real(self, image, remaining, top, left, side)

    monkeypatch.setattr(Inpainter, "_run_window", run_window)
    return sides


def test_a_full_mask_on_a_50000x1_strip_is_answered_with_bounded_windows(
    client: TestClient, monkeypatch
) -> None:
    """A bare 500 before (40-52 GB asked in _crop_padded): now the photo filled, a few 128-px windows."""
    sides = counting_windows(monkeypatch)
    image, hidden = photo(50000, 1, seed=2), np.ones((1, 50000), bool)
    resp = client.post("/api/inpaint", files=files(png(image), png(hidden)))
    assert resp.status_code == 200, resp.text
    assert np.asarray(Image.open(io.BytesIO(resp.content))).shape == (1, 50000, 3)
    assert 0 < len(sides) <= max_windows(1, 50000) and max(sides) <= 128


def test_a_request_whose_client_left_stops_before_the_next_window(client: TestClient, monkeypatch) -> None:
    """The fill asks whether the client is still there before each window: gone, no window runs, the answer is
    499 (to nobody) and the model is free for the next request."""
    from starlette.requests import Request

    sides = counting_windows(monkeypatch)

    async def gone(self) -> bool:
        return True

    with monkeypatch.context() as m:
        m.setattr(Request, "is_disconnected", gone)
        resp = client.post("/api/inpaint", files=files(png(IMAGE), png(HIDDEN)))
    assert resp.status_code == 499 and resp.json()["detail"].startswith("request: the client disconnected")
    assert sides == []
    good = client.post("/api/inpaint", files=files(png(IMAGE), png(HIDDEN)))
    assert good.status_code == 200 and sides
    check_result(good.content, IMAGE, HIDDEN)
