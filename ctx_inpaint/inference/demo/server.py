"""Serving the demo app with uvicorn: on a socket bound up front (a port in use is a one-line error, not a log
line after start-up), in the foreground (the CLI) or in a background thread (tests, load test, screenshot)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from ctx_inpaint.errors import InputError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARDS = ("0.0.0.0", "::", "")  # every interface: no one name of this server


def bind(host: str, port: int, names: Mapping[str, str] | None = None) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: any free port); one-line ``InputError`` otherwise,
    naming ``host`` or ``port`` as ``names`` maps them (the demo command passes its flags)."""
    host_name, port_name = (names or {}).get("host", "host"), (names or {}).get("port", "port")
    if not 0 <= port <= 65535:
        raise InputError(f"{port_name}: got {port}; expected a port number in 0..65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as err:
        raise InputError(
            f"{host_name}: cannot resolve {host!r} ({err}); expected an address such as 127.0.0.1"
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise InputError(
            f"{port_name}: cannot listen on {host}:{port} ({err.strerror or err}); expected a free port ({port_name})"
        ) from None
    return sock


def url_of(sock: socket.socket) -> str:
    """The http address a bound socket serves on (IPv6 addresses in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(app: FastAPI, sock: socket.socket, log_level: str = "info") -> None:
    """Serve until Ctrl-C (uvicorn's signal handling)."""
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5))
    server.run(sockets=[sock])


class BackgroundServer:
    """``with BackgroundServer(app) as url:`` serves ``app`` on 127.0.0.1 (a free port) in a thread."""

    def __init__(
        self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        self.sock = bind(host, port)
        self.url = url_of(self.sock)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=2))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="demo-server", daemon=True
        )

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the demo server on {self.url} did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
