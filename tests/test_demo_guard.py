"""The demo refuses what a page on another site makes the browser send (issue 24, item 11): a cross-site POST
(``Origin: http://evil.example``, ``Origin: null``) and DNS rebinding (``Host: evil.example``) get a 403 with the
one-line JSON ``detail``, before the upload is read; the demo's own page, curl-like clients and the origins and
hosts opened with ``--allow-origin`` / ``--allow-host`` are served."""

from __future__ import annotations

import http.client
import json

import pytest

pytest.importorskip("fastapi", reason='the demo extra is not installed: pip install -e ".[demo]"')
pytest.importorskip("httpx", reason='the demo extra is not installed: pip install -e ".[demo]"')

from fastapi.testclient import TestClient  # noqa: E402

from ctx_inpaint.inference.demo import server as demo_server  # noqa: E402
from ctx_inpaint.inference.demo.app import create_app  # noqa: E402
from ctx_inpaint.inference.demo.guard import normalize_origin  # noqa: E402
from ctx_inpaint.inference.demo.server import BackgroundServer  # noqa: E402
from tests.commands import run_command  # noqa: E402
from tests.test_demo_api import files, hole, photo, png  # noqa: E402

FILL = {"method": "telea"}  # OpenCV's fill: the guard is under test, not the model


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app())  # Host: testserver, the address TestClient's requests come in on


@pytest.fixture(scope="module")
def upload() -> dict:
    return files(png(photo()), png(hole()))


def refused(resp, header: str) -> str:
    assert resp.status_code == 403, resp.text
    detail = resp.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and detail.startswith(f"{header}: got ")
    return detail


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://localhost:9999", "https://testserver"]
)
def test_a_cross_site_post_is_refused(client: TestClient, upload: dict, origin: str) -> None:
    resp = client.post("/api/inpaint", files=upload, data=FILL, headers={"Origin": origin})
    detail = refused(resp, "Origin")
    assert repr(origin) in detail and "--allow-origin" in detail


def test_dns_rebinding_is_refused_for_every_path(client: TestClient, upload: dict) -> None:
    for path in ("/", "/api/health", "/api/models", "/docs", "/openapi.json"):
        detail = refused(client.get(path, headers={"Host": "evil.example"}), "Host")
        assert "'evil.example'" in detail and "--allow-host evil.example" in detail and "localhost" in detail
    resp = client.post(
        "/api/inpaint",
        files=upload,
        data=FILL,
        headers={"Host": "evil.example:8000", "Origin": "http://evil.example:8000"},
    )
    refused(resp, "Host")


def test_the_own_page_and_clients_without_origin_are_served(client: TestClient, upload: dict) -> None:
    for headers in ({}, {"Origin": "http://testserver"}, {"Host": "localhost", "Origin": "http://localhost"}):
        resp = client.post("/api/inpaint", files=upload, data=FILL, headers=headers)
        assert resp.status_code == 200 and resp.headers["content-type"] == "image/png", (headers, resp.text)
    for host in ("127.0.0.1:8000", "[::1]:8000", "LOCALHOST.", "localhost:1234"):
        assert client.get("/api/health", headers={"Host": host}).status_code == 200, host


def test_allowed_hosts_and_origins_are_served(upload: dict) -> None:
    client = TestClient(
        create_app(allow_hosts=("mybox.local",), allow_origins=("https://tools.example:8443",))
    )
    resp = client.post(
        "/api/inpaint", files=upload, data=FILL, headers={"Origin": "https://TOOLS.example:8443/"}
    )
    assert resp.status_code == 200, resp.text
    assert client.get("/api/health", headers={"Host": "mybox.local:8000"}).status_code == 200
    refused(client.get("/api/health", headers={"Origin": "https://tools.example"}), "Origin")  # another port
    refused(client.get("/api/health", headers={"Host": "evil.example"}), "Host")
    anyone = TestClient(create_app(allow_hosts=("*",), allow_origins=("*",)))
    assert anyone.get("/api/health", headers={"Host": "a.example", "Origin": "null"}).status_code == 200


def test_origins_are_compared_normalised() -> None:
    assert normalize_origin("HTTP://LocalHost:80/") == "http://localhost"
    assert normalize_origin("https://[::1]:8443") == "https://[::1]:8443"
    assert normalize_origin("null") is None and normalize_origin("http://a.example/path") is None


def _get(url: str, path: str, headers: dict[str, str]) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    try:
        conn.request("GET", path, headers=headers)  # http.client sends our Host instead of its own
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def test_a_real_server_refuses_rebinding_and_other_origins() -> None:
    with BackgroundServer(create_app(device="cpu")) as url:
        port = url.rsplit(":", 1)[1]
        own = {"Host": f"127.0.0.1:{port}"}
        assert _get(url, "/api/health", own)[0] == 200
        assert _get(url, "/api/health", {**own, "Origin": url})[0] == 200
        assert (
            _get(url, "/api/health", {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"})[0]
            == 200
        )
        status, body = _get(url, "/api/health", {"Host": f"evil.example:{port}"})
        assert status == 403 and body["detail"].startswith("Host: got ")
        status, body = _get(url, "/api/health", {**own, "Origin": "http://127.0.0.1:1"})  # another local page
        assert status == 403 and body["detail"].startswith("Origin: got ")


def test_the_cli_flags_open_the_guard(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    served = []
    monkeypatch.setattr(demo_server, "serve", lambda app, sock: (served.append(app), sock.close()))
    assert (
        run_command(
            "demo", ["--port", "0", "--allow-host", "mybox.local", "--allow-origin", "http://a.example"]
        )
        == 0
    )
    client = TestClient(served[-1])
    assert (
        client.get("/api/health", headers={"Host": "mybox.local", "Origin": "http://a.example"}).status_code
        == 200
    )
    refused(client.get("/api/health", headers={"Host": "evil.example"}), "Host")
    assert run_command("demo", ["--help"]) == 0
    out = capsys.readouterr().out
    assert "--allow-host" in out and "--allow-origin" in out
    for argv, message in [
        (["--allow-origin", "evil.example"], "--allow-origin: got 'evil.example'"),
        (["--allow-origin", "http://a.example/page"], "--allow-origin: got"),
        (["--allow-host", "http://a.example/"], "--allow-host: got"),
    ]:
        assert run_command("demo", argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("ctx-inpaint: error:") and message in err and "\n" not in err, (argv, err)
