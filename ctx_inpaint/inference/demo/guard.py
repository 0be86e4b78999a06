"""Refuse requests that a web page on another site makes the browser send to the demo (403, one-line JSON).

The demo has no login and runs on the user's machine, so any page the user visits could drive it: a cross-site
``POST /api/inpaint`` (``Origin: http://evil.example``, or ``Origin: null`` from a sandboxed frame or a file) runs
the model, and DNS rebinding (``evil.example`` re-pointed at 127.0.0.1, so the browser sends
``Host: evil.example``) would let that page read the answers too. So by default the server answers only to its own
names and its own page:

- ``Host`` must name this server: ``localhost``, ``127.0.0.1`` or ``[::1]``, the address the connection came in on
  (the address the server is bound to; with ``--host 0.0.0.0``, the interface's address), or a name given with
  ``--allow-host`` (``--host NAME`` adds NAME). A request without a ``Host`` (not a browser) is served.
- ``Origin``, when the browser sends one, must be the server's own page: the request's own origin
  (``scheme://Host``), one of those names on the server's port, or an origin given with ``--allow-origin``.
  ``Origin: null`` is refused. Requests without an ``Origin`` (curl, scripts, the page's own GETs) are served.

``*`` as an allowed host or origin allows any (behind a reverse proxy that checks them itself).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ctx_inpaint.errors import InputError

# The names of this machine's loopback interface: always this server's own.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _host_name(host: str) -> str:
    """``Host``'s name alone: lower case, no port, no brackets, no trailing dot (``[::1]:8000`` -> ``::1``)."""
    host = host.strip().lower()
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        name = host.split(":", 1)[0]
    else:
        name = host  # a bare IPv6 address, or a name without a port
    return name.rstrip(".")


def _port_of(host: str, scheme: str) -> int | None:
    """The port in a ``Host`` value, else the scheme's default."""
    host = host.strip()
    tail = host.rsplit("]", 1)[-1] if host.startswith("[") else host
    if tail.count(":") == 1 and tail.rsplit(":", 1)[1].isdigit():
        return int(tail.rsplit(":", 1)[1])
    return DEFAULT_PORTS.get(scheme)


def normalize_origin(origin: str) -> str | None:
    """``scheme://name[:port]`` in lower case without the scheme's default port, or None if it is no origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    name = parts.hostname.lower().rstrip(".")
    shown = f"[{name}]" if ":" in name else name
    if port is None or port == DEFAULT_PORTS.get(parts.scheme.lower()):
        return f"{parts.scheme.lower()}://{shown}"
    return f"{parts.scheme.lower()}://{shown}:{port}"


def check_allowed_origins(origins: Iterable[str], flag: str = "--allow-origin") -> tuple[str, ...]:
    """The ``--allow-origin`` values normalised; a one-line ``InputError`` for one that is no origin."""
    out = []
    for origin in origins:
        if origin.strip() == "*":
            out.append("*")
            continue
        normal = normalize_origin(origin)
        if normal is None:
            raise InputError(
                f"{flag}: got {origin!r}; expected an origin such as http://192.168.1.5:8000 (scheme, host and "
                "port only) or *"
            )
        out.append(normal)
    return tuple(out)


def check_allowed_hosts(hosts: Iterable[str], flag: str = "--allow-host") -> tuple[str, ...]:
    """The ``--allow-host`` names normalised; a one-line ``InputError`` for a URL or an empty name."""
    out = []
    for host in hosts:
        if host.strip() == "*":
            out.append("*")
            continue
        name = _host_name(host)
        if not name or "/" in host or "@" in host or " " in name:
            raise InputError(
                f"{flag}: got {host!r}; expected a host name or address such as mybox.local, or *"
            )
        out.append(name)
    return tuple(out)


class OriginGuard:
    """ASGI middleware: the ``Host`` and ``Origin`` checks of the module docstring, before anything is read."""

    def __init__(
        self, app: ASGIApp, allow_hosts: Iterable[str] = (), allow_origins: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.allow_hosts = frozenset(check_allowed_hosts(allow_hosts, "allow_hosts"))
        self.allow_origins = frozenset(check_allowed_origins(allow_origins, "allow_origins"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            problem = self.problem(scope)
            if problem is not None:
                if scope["type"] == "http":
                    await JSONResponse({"detail": problem}, status_code=403)(scope, receive, send)
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)

    def _own_names(self, scope: Scope) -> set[str]:
        server = scope.get("server")
        names = set(LOOPBACK_NAMES) | self.allow_hosts
        if server and server[0]:
            names.add(_host_name(f"[{server[0]}]" if ":" in str(server[0]) else str(server[0])))
        return names

    def problem(self, scope: Scope) -> str | None:
        """The one-line 403 detail for a request from elsewhere, else None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        names = self._own_names(scope)
        host = headers.get("host")
        if host is not None and "*" not in self.allow_hosts and _host_name(host) not in names:
            return (
                f"Host: got {host!r}; this demo answers to {', '.join(_shown(n) for n in sorted(names))} only "
                f"(a page elsewhere could reach it by DNS rebinding); expected one of those, or start it with "
                f"--allow-host {_host_name(host) or 'NAME'}"
            )
        origin = headers.get("origin")
        if origin is None or "*" in self.allow_origins:
            return None
        normal = normalize_origin(origin) if origin.strip().lower() != "null" else None
        if normal is not None and normal in self._own_origins(scope, host, names):
            return None
        return (
            f"Origin: got {origin!r}; this demo serves its own page only (a page on another site could drive "
            "it); expected this server's origin, or start it with --allow-origin "
            f"{normal or 'URL'}"
        )

    def _own_origins(self, scope: Scope, host: str | None, names: set[str]) -> set[str]:
        scheme = str(scope.get("scheme") or "http").replace("ws", "http", 1)
        own = set(self.allow_origins)
        server = scope.get("server")
        ports = {server[1]} if server and server[1] else set()
        if host is not None and (port := _port_of(host, scheme)) is not None:
            ports.add(port)
        if host is not None and (same := normalize_origin(f"{scheme}://{host.strip()}")) is not None:
            own.add(same)  # the request's own origin: Host was checked above
        for name in names - {"*"}:
            for port in ports:
                if (o := normalize_origin(f"{scheme}://{_shown(name)}:{port}")) is not None:
                    own.add(o)
        return own


def _shown(name: str) -> str:
    return f"[{name}]" if ":" in name else name
