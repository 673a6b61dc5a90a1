"""The web service's front door: one ASGI middleware that refuses a request as early as it can.

In order, before the app sees a byte of the body:

1. **Host allow-list** (400 ``bad_host``): DNS rebinding makes a hostile page's own host name resolve to
   127.0.0.1; its requests then carry that name in ``Host``, which is not on the list.
2. **Token** (401 ``unauthorized``), when one is configured (the CLI requires one for binds beyond loopback):
   ``Authorization: Bearer T``, or the ``dflab_token`` cookie set by opening ``/?token=T`` once (HttpOnly,
   SameSite=Strict, so the page's own requests carry it and no other site's do).
3. **Origin check** on state-changing methods (403 ``cross_origin``): a browser always sends ``Origin`` on a
   cross-site POST, so any web page could otherwise submit jobs; requests without ``Origin`` (curl, scripts)
   pass, ``Sec-Fetch-Site: cross-site`` does not.
4. **Early refusals** supplied by the app (``refuse(scope)``): e.g. 503 + ``Retry-After`` while the queue is full,
   answered before a 90 MB body is read.
5. **Body limit** (413 ``too_large``): a declared ``Content-Length`` over the limit is refused unread; a streamed
   body is cut at the first chunk past the limit — the 413 goes out at once and the app is told the client left.

Every response gets ``Content-Security-Policy`` (scripts, styles and connections from the page's own origin only;
images also from ``data:``/``blob:``), ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` and
``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import hmac
import json
import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_COOKIE = "dflab_token"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]

#: ``refuse(scope) -> (status, body, headers) | None``: an app-specific early answer
Refusal = tuple[int, dict[str, Any], dict[str, str]]


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def allowed_hosts_for(bind: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The ``Host`` names a server bound to ``bind`` answers: loopback names, the bind address itself and, for a
    wildcard bind, this machine's name and addresses; plus ``extra`` (``--allow-host``; ``*`` allows any)."""
    hosts = set(LOOPBACK_HOSTS) | {h.lower() for h in extra}
    if bind in ("0.0.0.0", "::", ""):
        try:
            name, aliases, addresses = socket.gethostbyname_ex(socket.gethostname())
            hosts |= {name.lower(), *(a.lower() for a in aliases), *addresses, socket.getfqdn().lower()}
        except OSError:
            hosts.add(socket.gethostname().lower())
    else:
        hosts.add(bind.lower())
    return tuple(sorted(hosts))


def _host_name(value: str) -> str:
    """``example.org:8000`` → ``example.org``; ``[::1]:8000`` → ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Gate:
    """ASGI middleware; see the module docstring for what it refuses and in which order.

    Args:
        app: the wrapped ASGI app.
        max_body: largest request body in bytes.
        allowed_hosts: ``Host`` names accepted (``*`` in it disables the check).
        token: the shared secret, or ``None`` for none (loopback binds).
        refuse: app-specific early refusals, called before the body is read.
    """

    def __init__(
        self,
        app: Any,
        *,
        max_body: int,
        allowed_hosts: Iterable[str] = LOOPBACK_HOSTS,
        token: str | None = None,
        refuse: Callable[[dict[str, Any]], Refusal | None] | None = None,
    ) -> None:
        self.app, self.max_body, self.token, self.refuse = app, max_body, token, refuse
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        refusal = self._check(scope, headers)
        set_cookie = self._token_cookie(scope, headers) if refusal is None else []

        async def secured_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS, *set_cookie]}
            await send(message)

        if refusal is not None:
            status, body, extra = refusal
            await send_json(secured_send, status, body, extra)
            return
        await self._limited(scope, receive, secured_send)

    # ---------------------------------------------------------------- checks before the body
    def _check(self, scope: dict, headers: dict[str, str]) -> Refusal | None:
        host = _host_name(headers.get("host", ""))
        if "*" not in self.allowed_hosts and host not in self.allowed_hosts:
            return 400, _error("bad_host", "this server does not answer for that Host name"), {}
        if self.token is not None and not self._authorised(scope, headers):
            return 401, _error("unauthorized", "a token is required: open /?token=… or send Authorization"), {}
        if scope["method"] in STATE_CHANGING and not self._same_origin(headers):
            return 403, _error("cross_origin", "requests from other web pages are refused"), {}
        if self.refuse is not None:
            refusal = self.refuse(scope)
            if refusal is not None:
                return refusal
        declared = headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_body:
            return 413, self._too_large(), {}
        return None

    def _authorised(self, scope: dict, headers: dict[str, str]) -> bool:
        assert self.token is not None
        given = [headers.get("authorization", "").removeprefix("Bearer ").strip()]
        # by hand, not SimpleCookie: one malformed cookie of another localhost app must not hide ours
        for part in headers.get("cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == TOKEN_COOKIE:
                given.append(value)
        if scope["method"] == "GET" and scope["path"] == "/":
            given += parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
        return any(g and hmac.compare_digest(g.encode(), self.token.encode()) for g in given)

    def _token_cookie(self, scope: dict, headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
        """Opening ``/?token=T`` stores T in a cookie the page's own requests carry (and no other site's)."""
        if self.token is None or scope["path"] != "/" or b"token=" not in scope.get("query_string", b""):
            return []
        value = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
        return [(b"set-cookie", value.encode())]

    def _same_origin(self, headers: dict[str, str]) -> bool:
        if headers.get("sec-fetch-site") == "cross-site":
            return False
        origin = headers.get("origin")
        if origin is None:  # not a browser, or a same-origin GET-like request: nothing to protect against
            return True
        if origin == "null":  # sandboxed frames, file:// pages
            return False
        return urlsplit(origin).netloc.lower() == headers.get("host", "").lower()

    def _too_large(self) -> dict[str, Any]:
        return _error("too_large", f"body over {self.max_body} bytes")

    # ---------------------------------------------------------------- the body
    async def _limited(self, scope: dict, receive: Any, send: Any) -> None:
        seen = 0
        started = False
        cut = False

        async def limited_receive() -> dict:
            nonlocal seen, cut
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    # answer now, then tell the app the client left: no further byte is read or written
                    cut = True
                    if not started:
                        await guarded_send_json(413, self._too_large())
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send_json(status: int, body: dict[str, Any]) -> None:
            nonlocal started
            started = True
            await send_json(send, status, body)

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if cut:  # the 413 went out already; whatever the app says after the disconnect is dropped
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:  # only after a cut: the app's reaction to the disconnect is moot
            if not cut:
                raise


def _error(cause: str, detail: str) -> dict[str, Any]:
    return {"error": {"cause": cause, "detail": detail}}


async def send_json(send: Any, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    """Send a complete JSON response from ASGI middleware."""
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
