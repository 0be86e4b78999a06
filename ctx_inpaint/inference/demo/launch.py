"""Starting the demo: :func:`start_demo` checks every setting, loads the models, builds the app and binds its socket,
so that each problem (a missing extra, a bad file, a port in use) is one line before anything is served; then
:meth:`Demo.serve` serves in the foreground. ``python -m ctx_inpaint.demo`` is these two calls.

This module imports the demo's optional packages (the ``[demo]`` extra) only inside :func:`start_demo`, where their
absence becomes a one-line hint instead of a traceback.
"""

from __future__ import annotations

import math
import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ctx_inpaint.errors import InputError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ctx_inpaint.inference.demo.registry import ModelRegistry

DEMO_EXTRA = 'pip install -e ".[demo]" (or make install)'


@dataclass
class Demo:
    """A demo ready to serve: its app on a bound socket, and the models it holds."""

    app: FastAPI
    sock: socket.socket
    url: str
    registry: ModelRegistry
    host: str

    @property
    def public(self) -> bool:
        """Bound to an address other machines can reach (the demo has no login)."""
        from ctx_inpaint.inference.demo.server import LOOPBACK

        return self.host not in LOOPBACK

    def announce(self) -> None:
        """The address and models on stdout; a warning on stderr when other machines can reach it."""
        models = ", ".join(self.registry.names())
        print(
            f"[ctx-inpaint] demo on {self.url}/ (models: {models}; API docs {self.url}/docs); Ctrl-C stops it",
            flush=True,
        )
        if self.public:
            print(
                f"[ctx-inpaint] warning: bound to {self.host}: other machines can reach this server (no login)",
                file=sys.stderr,
                flush=True,
            )

    def serve(self) -> None:
        """Serve until Ctrl-C."""
        from ctx_inpaint.inference.demo import server  # looked up now: tests replace server.serve

        server.serve(self.app, self.sock)


def start_demo(
    host: str = "127.0.0.1",
    port: int = 8000,
    checkpoints: Iterable[str] = (),
    max_upload_mb: float = 20.0,
    max_pixels: int | None = None,
    max_jobs: int = 2,
    allow_hosts: Iterable[str] = (),
    allow_origins: Iterable[str] = (),
    device: str | None = "auto",
    names: Mapping[str, str] | None = None,
) -> Demo:
    """The demo on ``host:port`` (``port`` 0: a free one) with the shipped models plus ``checkpoints``
    (``PATH`` or ``NAME=PATH`` each; the first becomes the default model), loaded now so a bad file is an error
    before serving and the first request does not wait. ``max_pixels`` None: ``CTX_INPAINT_MAX_PIXELS`` or 100
    megapixels. ``names`` maps these parameters to what errors call them (the command passes its flags)."""
    names = names or {}
    try:
        import uvicorn  # noqa: F401 - the extra's packages, checked before anything else

        from ctx_inpaint.inference.demo.app import create_app
        from ctx_inpaint.inference.demo.guard import check_allowed_hosts, check_allowed_origins
        from ctx_inpaint.inference.demo.registry import DEFAULT_MODELS, ModelRegistry, checkpoint_models
        from ctx_inpaint.inference.demo.server import WILDCARDS, bind, url_of
    except ImportError as err:
        raise InputError(f"the demo needs {err.name or 'its packages'}: {DEMO_EXTRA}") from None
    from ctx_inpaint.data.images import max_pixels as default_max_pixels
    from ctx_inpaint.inference.loading import pick_device

    if not (math.isfinite(max_upload_mb) and max_upload_mb > 0):
        flag = names.get("max_upload_mb", "max_upload_mb")
        raise InputError(f"{flag}: got {max_upload_mb:g}; expected a number of MB > 0")
    if max_pixels is not None and max_pixels < 1:
        flag = names.get("max_pixels", "max_pixels")
        raise InputError(f"{flag}: got {max_pixels}; expected a positive number of pixels")
    if max_jobs < 1:
        raise InputError(f"{names.get('max_jobs', 'max_jobs')}: got {max_jobs}; expected a whole number >= 1")
    origins = check_allowed_origins(allow_origins, names.get("allow_origins", "allow_origins"))
    # The name it is bound to is its own (a wildcard address names no host: allow_hosts does).
    bound = () if host in WILDCARDS else (host,)
    hosts = check_allowed_hosts(bound, names.get("host", "host")) + check_allowed_hosts(
        allow_hosts, names.get("allow_hosts", "allow_hosts")
    )
    pixels = default_max_pixels() if max_pixels is None else max_pixels  # CTX_INPAINT_MAX_PIXELS checked now
    dev = pick_device(device, names.get("device", "device"))
    extra = checkpoint_models(list(checkpoints), set(DEFAULT_MODELS), names.get("checkpoints", "checkpoints"))
    registry = ModelRegistry({**extra, **DEFAULT_MODELS}, device=dev)
    for name in {registry.default, *extra}:
        registry.load(name)
    app = create_app(
        registry=registry,
        max_upload_mb=max_upload_mb,
        max_pixels=pixels,
        max_jobs=max_jobs,
        allow_hosts=hosts,
        allow_origins=origins,
    )
    sock = bind(host, port, names)
    return Demo(app=app, sock=sock, url=url_of(sock), registry=registry, host=host)
