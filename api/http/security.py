"""The gate every request passes before a route reads a byte of its body.

``Gatekeeper`` (pure ASGI, inside the metrics middleware) decides per route, from the method and path alone:

1. **Authentication first**: every route but the probes, the static files and the sign-in form needs a
   valid bearer key (or, on the few routes the review page calls, its session cookie) *before* the body is
   read or parsed; a request without one is answered 401 at once, its body never read. Which role may do
   what stays with the routes' dependencies (403).
2. **Body cap** (by ``Content-Length`` up front and while streaming): frames ``QC_MAX_UPLOAD_MB``, order book
   imports ``QC_MAX_IMPORT_MB``, every other route ``QC_MAX_JSON_KB`` (1 MiB): an 18 MiB JSON array is 413
   before it is read, even with a valid key.
3. **CSRF**: a cookie is a credential the browser adds by itself, also to a form another site (or another
   port of this host: SameSite ignores ports) submits. So a cookie is accepted only on the review page's
   routes; a state-changing request authenticated by it must come from this origin (``Sec-Fetch-Site`` /
   ``Origin``, as Django and Grafana check) *and* carry the session's CSRF token (``X-CSRF-Token``, from the
   page's ``<meta name="csrf-token">``). Cameras and API clients use bearer keys, which no browser adds.
   The sign-in form is checked the same way (origin, plus a token bound to a pre-session cookie).
4. **Headers** on every answer: ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``, a
   Content-Security-Policy (no inline script, nothing from another origin, no framing) and a
   ``Referrer-Policy``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.config import ServiceSettings
from api.http.errors import error_body
from api.services.auth import SESSION_COOKIE, ApiKeyService, AuthError, Principal

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
LOGIN_COOKIE = "qc_login"
LOGIN_FIELD = "login_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DOCS_CSP = "frame-ancestors 'none'; object-src 'none'; base-uri 'none'"
"""FastAPI's /docs and /redoc pages load their viewer from a CDN and inline a script: a looser policy there."""

SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"), (b"cross-origin-opener-policy", b"same-origin"))

DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})

_COOKIE_ROUTES: tuple[tuple[frozenset[str], re.Pattern[str]], ...] = (
    (frozenset({"GET", "HEAD"}), re.compile(r"/v1/reviews/queue")),
    (frozenset({"POST"}), re.compile(r"/v1/reviews")),
    (frozenset({"GET", "HEAD"}), re.compile(r"/v1/inspections/\d+/(image|reviews)")),
    (frozenset({"GET", "HEAD"}), re.compile(r"/v1/units/.+")),
    (frozenset({"POST"}), re.compile(r"/v1/units/.+/disposition")),
)
"""The JSON routes the review page calls: with its pages, the only ones a session cookie opens."""


@dataclass(frozen=True)
class RouteRule:
    access: str
    """``public`` (no credentials), ``page`` (a review page: credentials optional, the page redirects),
    ``login`` (the sign-in form: origin checked) or ``key`` (valid credentials before the body is read)."""
    cookie_ok: bool
    max_body: int


def rule_for(method: str, path: str, settings: ServiceSettings) -> RouteRule:
    """The rule of a request from its method and path alone (before routing, before the body)."""
    small = settings.max_json_bytes
    if path in PUBLIC_PATHS or path.startswith(("/static/", "/docs-assets/")):  # shipped files, no data
        return RouteRule("public", False, small)
    if path == "/metrics":
        return RouteRule("public" if settings.metrics_public else "key", False, small)
    if path in DOCS_PATHS:
        return RouteRule("public" if settings.docs_public else "key", False, small)
    if path == "/review/login":
        return RouteRule("login", False, 16 * 1024)
    cookie_ok = any(method in methods and pattern.fullmatch(path) for methods, pattern in _COOKIE_ROUTES)
    if path in ("/review", "/review/logout", "/analytics", "/station") or path.startswith(("/review/units/",
                                                                               "/review/certificates/")):
        return RouteRule("page", True, small)
    if path == "/v1/frames":
        return RouteRule("key", False, settings.max_upload_bytes)
    if path == "/v1/orders/import":
        return RouteRule("key", False, settings.max_import_bytes)
    return RouteRule("key", cookie_ok, small)


def csrf_token_for(session_token: str) -> str:
    """The session's CSRF token: derived from the HttpOnly session cookie, which no other page can read, so
    it cannot be guessed, and every process of the service derives the same one (no server state)."""
    return hashlib.sha256(f"qcline-csrf\x00{session_token}".encode()).hexdigest()


def tokens_match(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def cross_origin_reason(headers: Headers, scope: Scope, trusted: frozenset[str]) -> str | None:
    """Why a browser request did not come from this origin (``None``: it did, or no browser said otherwise).

    ``Sec-Fetch-Site`` (every current browser) must be ``same-origin`` (or ``none``: typed by the user);
    otherwise ``Origin``, when sent, must be this service's own origin or one of ``QC_TRUSTED_ORIGINS``."""
    site = headers.get("sec-fetch-site")
    if site is not None and site.lower() not in ("same-origin", "none"):
        return f"a {site} request (Sec-Fetch-Site) may not use the review page's session"
    origin = headers.get("origin")
    if origin is None:
        return None
    if origin == "null":
        return "a request from an opaque origin (Origin: null) may not use the review page's session"
    if origin.rstrip("/") in trusted:
        return None
    own_host = headers.get("host", "")
    parts = urlsplit(origin)
    if parts.netloc.lower() != own_host.lower():
        return f"a request from {origin[:100]} may not use this service's session (cross-origin)"
    return None


def credentials(keys: ApiKeyService, headers: Headers, cookie_ok: bool) -> tuple[Principal, str | None]:
    """The caller, and the session token when the credential was the review page's cookie."""
    header = headers.get("authorization")
    if header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthError("Authorization must be 'Bearer <API key>'")
        return keys.authenticate(secret.strip()), None
    token = _cookie(headers, SESSION_COOKIE)
    if token and cookie_ok:
        return keys.session_principal(token), token
    if token:
        raise AuthError("this route takes an API key ('Authorization: Bearer <API key>'), not the review page's "
                        "session")
    raise AuthError("missing credentials: send 'Authorization: Bearer <API key>' (create one with "
                    "`qcline keys create --role ROLE`)")


def _cookie(headers: Headers, name: str) -> str | None:
    for header in headers.getlist("cookie"):
        for part in header.split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value.strip().strip('"') or None
    return None


class Gatekeeper:
    """Body caps, authentication before the body, CSRF and security headers (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, settings: ServiceSettings) -> None:
        self.app = app
        self.settings = settings
        self.trusted = frozenset(o.rstrip("/") for o in settings.trusted_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        rule = rule_for(method, path, self.settings)
        headers = Headers(scope=scope)
        send = self._with_headers(send, path)
        state: dict[str, Any] = scope.setdefault("state", {})
        if rule.access in ("key", "page"):
            keys: ApiKeyService = scope["app"].state.context.keys
            try:
                principal, session = await run_in_threadpool(credentials, keys, headers, rule.cookie_ok)
            except AuthError as exc:
                if rule.access == "key":
                    await _refuse(send, 401, str(exc), "AuthError", [(b"www-authenticate", b"Bearer")])
                    return
                principal, session = None, None
            if session is not None and method not in SAFE_METHODS:
                reason = cross_origin_reason(headers, scope, self.trusted)
                if reason is None and not path.startswith("/review/") \
                        and not tokens_match(csrf_token_for(session), headers.get(CSRF_HEADER)):
                    reason = "the request lacks the page's CSRF token (X-CSRF-Token): reload the page"
                if reason is not None:
                    await _refuse(send, 403, reason, "CSRFError")
                    return
            state["authenticated"] = principal
            state["session_token"] = session
        elif rule.access == "login" and method not in SAFE_METHODS:
            reason = cross_origin_reason(headers, scope, self.trusted)
            if reason is not None:
                await _refuse(send, 403, reason.replace("use the review page's session", "sign in here"),
                              "CSRFError")
                return
        length = headers.get("content-length")  # after authentication: a stranger learns no limits
        if length is not None and length.isdigit() and int(length) > rule.max_body:
            await _refuse(send, 413, f"request body of {length} bytes is larger than the {rule.max_body} bytes "
                                     f"{path[:64]} accepts", "PayloadTooLargeError")
            return
        await self.app(scope, _capped(receive, rule.max_body), send)

    def _with_headers(self, send: Send, path: str) -> Send:
        csp = (DOCS_CSP if path in ("/docs", "/redoc") else CSP).encode()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in (*SECURITY_HEADERS, (b"content-security-policy", csp)) if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return sending


def _capped(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:  # an HTTPException passes FastAPI's body parsing unchanged
                raise HTTPException(413, f"request body is larger than the {limit} bytes this route accepts")
        return message

    return limited


async def _refuse(send: Send, status: int, message: str, kind: str,
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer without reading the body; ``connection: close`` so an unread body is not taken as a next request."""
    body = json.dumps(error_body(message, kind)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["CSRF_FIELD", "CSRF_HEADER", "LOGIN_COOKIE", "LOGIN_FIELD", "Gatekeeper", "RouteRule", "credentials",
           "cross_origin_reason", "csrf_token_for", "rule_for", "tokens_match"]
