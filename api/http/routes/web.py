"""The operators' review page: server-rendered HTML, a little vanilla JavaScript, no build step.

``/review/login`` signs an operator in with an API key and sets the ``qc_session`` cookie (HttpOnly,
SameSite=Strict); the page's JavaScript then calls the JSON API (``/v1/reviews``, ``/v1/units/.../disposition``)
same-origin, authenticated by that cookie. ``/review`` is the queue, ``/review/units/{unit_id}`` one unit:
the order's spec beside its frames, each with the findings' boxes drawn over the image and the decisions
(confirm, false alarm, corrected boxes) an operator can take, all on the keyboard for a whole shift.

Every piece of order or label text reaches the browser through Jinja autoescaping (HTML) or the ``tojson``
filter (the ``unit-data`` block: ``<``, ``>``, ``&`` and ``'`` escaped as ``\\u003c`` ...), never unescaped.
"""

from __future__ import annotations

import logging
import re
import secrets
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from api.http.deps import context, principal_of
from api.http.routes.orders import unit_full_record
from api.http.routes.reviews import fresh_queue
from api.http.schemas import UnitRecordOut
from api.http.security import CSRF_FIELD, LOGIN_COOKIE, LOGIN_FIELD, csrf_token_for, tokens_match
from api.services.auth import SESSION_COOKIE, AuthError, Principal, Role
from inspection.errors import NotFoundError

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "web" / "templates"
templates = Jinja2Templates(env=jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True, undefined=jinja2.StrictUndefined,
    trim_blocks=True, lstrip_blocks=True))


def short_time(value: object, zone: tzinfo | None = None) -> str:
    """``2026-11-26T18:24:52.546954+00:00`` as ``2026-11-26 18:24:52 UTC`` (stored times are UTC), or in
    ``zone`` with its abbreviation (``2026-11-26 19:24:52 CET``)."""
    text = "" if value is None else str(value)
    if not re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", text):
        return text
    if zone is None:
        return text[:19].replace("T", " ") + " UTC"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


@jinja2.pass_context
def _when(ctx: Any, value: object) -> str:
    return short_time(value, ctx.get("zone"))


templates.env.filters["when"] = _when


def page_zone(request: Request) -> tzinfo | None:
    """``QC_TIMEZONE`` as a zone (``None``: unset or unknown, and the browser shows its own local time)."""
    name = context(request).settings.timezone
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("QC_TIMEZONE=%r is not an IANA zone; the review page shows browser-local times", name)
        return None


def _today(zone: tzinfo | None) -> date:
    return datetime.now(zone or UTC).date()

REVIEWERS = frozenset({Role.OPERATOR})
"""Who may use the page (admins too: ``Principal.allowed`` admits them)."""

CLASS_NAME = re.compile(r"^[A-Za-z0-9 _.\-]{1,64}$")
"""A class name an operator may pick or type (the rule ``ReviewedBox`` enforces)."""

QUEUE_LIMIT = 200


def unit_href(unit_id: str) -> str:
    """The unit page's URL; any printable unit id survives the trip (``/`` included)."""
    return "/review/units/" + quote(unit_id, safe="")


def _signed_in(request: Request) -> Principal | None:
    """The operator behind this request's session cookie (or bearer key), or ``None``."""
    try:
        principal = principal_of(request)
    except AuthError:
        return None
    return principal if principal.allowed(REVIEWERS) else None


def _to_login() -> RedirectResponse:
    return RedirectResponse("/review/login", status_code=303)


def _secure(request: Request) -> bool:
    """Cookies are ``Secure`` when served over TLS (or when ``QC_SECURE_COOKIES`` says a proxy terminates it)."""
    setting = context(request).settings.secure_cookies
    return request.url.scheme == "https" if setting is None else setting


def _page(request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    session = request.scope.get("state", {}).get("session_token")
    values.setdefault("csrf_token", csrf_token_for(session) if session else "")
    response = templates.TemplateResponse(request, name, values, status_code=status_code)
    # The pages show customer data: keep them out of shared caches, and out of frames of other sites.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


# -- signing in and out -------------------------------------------------------------------------------------


def _login_page(request: Request, status_code: int = 200, message: str = "") -> HTMLResponse:
    """The sign-in form with a fresh token bound to a pre-session cookie: a form another site submits has
    neither (login CSRF: signing a victim's browser in under the attacker's key)."""
    known = request.cookies.get(LOGIN_COOKIE, "")
    token = known if 20 <= len(known) <= 64 else secrets.token_urlsafe(24)
    response = _page(request, "login.html", status_code, message=message, principal=None, login_token=token)
    if token != known:
        response.set_cookie(LOGIN_COOKIE, token, max_age=3600, path="/review/login", httponly=True,
                            samesite="strict", secure=_secure(request))
    return response


@router.get("/review/login")
async def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/review/login")
async def login(request: Request) -> Response:
    ctx = context(request)
    form = await request.form(max_files=0, max_fields=4)
    given = form.get(LOGIN_FIELD)
    if not tokens_match(request.cookies.get(LOGIN_COOKIE, ""), given if isinstance(given, str) else None):
        log.info("review page: sign-in refused (no or wrong login token: a stale form, or another site's)")
        return _login_page(request, 403, "The sign-in form expired or was not this page's: sign in again.")
    raw = form.get("key")
    secret = raw.strip() if isinstance(raw, str) else ""
    if not secret:
        return _login_page(request, 401, "Enter your API key.")
    try:
        principal = await run_in_threadpool(ctx.keys.authenticate, secret)
    except AuthError:
        return _login_page(request, 401, "That API key is not valid (unknown or revoked).")
    if not principal.allowed(REVIEWERS):
        log.info("review page: key %s (role %s) refused", principal.name, principal.role.value)
        return _login_page(request, 403, f"This page is for operators only: the key {principal.name!r} has role "
                           f"{principal.role.value}. Sign in with an operator key.")
    hours = ctx.settings.session_hours
    token, principal = await run_in_threadpool(ctx.keys.start_session, secret, hours)
    log.info("review page: %s signed in", principal.name)
    response = RedirectResponse("/review", status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(hours * 3600), path="/", httponly=True,
                        samesite="strict", secure=_secure(request))
    return response


@router.post("/review/logout")
async def logout(request: Request) -> Response:
    token = request.scope.get("state", {}).get("session_token")
    if token:
        form = await request.form(max_files=0, max_fields=4)
        given = form.get(CSRF_FIELD)
        if not tokens_match(csrf_token_for(token), given if isinstance(given, str) else None):
            return _to_login()  # another site's form: the session stays
        await run_in_threadpool(context(request).keys.end_session, token)
    response = RedirectResponse("/review/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request))
    return response


# -- the queue -------------------------------------------------------------------------------------------------


QUEUE_SCAN = 2000
"""How many queue units the filters look through (most urgent first); the page shows ``QUEUE_LIMIT``."""

FILTERS = ("q", "order", "camera", "cls", "verdict", "since", "until")


def _param(request: Request, name: str) -> str:
    return request.query_params.get(name, "").strip()[:128]


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def filter_rows(rows: list[dict[str, Any]], want: dict[str, str], zone: tzinfo | None) -> list[dict[str, Any]]:
    """The queue rows matching every filter given: free text (unit, order, customer, product, reasons),
    order id, camera, defect class, verdict, captured between two dates (in the page's zone)."""
    text = want["q"].lower()
    since, until = _day(want["since"]), _day(want["until"])
    kept = []
    for row in rows:
        if text and text not in " ".join([row["unit_id"], row["order_id"], row["customer_ref"] or "",
                                          row["product"] or "", *row["reasons"]]).lower():
            continue
        if want["order"] and row["order_id"] != want["order"]:
            continue
        if want["camera"] and want["camera"] not in row["cameras"]:
            continue
        if want["cls"] and want["cls"] not in row["classes"]:
            continue
        if want["verdict"] and row["verdict"] != want["verdict"]:
            continue
        if since or until:
            first = row["first_captured"]
            day = datetime.fromisoformat(first).astimezone(zone or UTC).date() if first else None
            if day is None or (since and day < since) or (until and day > until):
                continue
        kept.append(row)
    return kept


@router.get("/review")
async def queue_page(request: Request) -> Response:
    principal = await run_in_threadpool(_signed_in, request)
    if principal is None:
        return _to_login()
    zone = page_zone(request)
    rows = [item.to_json() for item in await run_in_threadpool(fresh_queue, context(request), QUEUE_SCAN)]
    want = {name: _param(request, name) for name in FILTERS}
    options = {"order": sorted({r["order_id"] for r in rows}),
               "camera": sorted({c for r in rows for c in r["cameras"]}),
               "cls": sorted({c for r in rows for c in r["classes"]})}
    shown = filter_rows(rows, want, zone)
    today = _today(zone)
    for row in shown:
        row["href"] = unit_href(row["unit_id"])
        due = _day(row["due_date"] or "")
        row["overdue_days"] = (today - due).days if due and due < today else 0
        row["due_today"] = due == today
    return _page(request, "queue.html", principal=principal, rows=shown[:QUEUE_LIMIT], limit=QUEUE_LIMIT,
                 total=len(rows), matched=len(shown), want=want, options=options, zone=zone,
                 filtered=any(want.values()), to_review=sum(r["to_review"] for r in shown))


# -- one unit --------------------------------------------------------------------------------------------------


def known_classes(request: Request, record: UnitRecordOut) -> list[str]:
    """The class picker: the model's classes, then any other class seen on this unit (findings, reviews)."""
    batcher = context(request).batcher
    names: list[str] = list(batcher.inspector.detector.class_names) if batcher is not None else []
    for frame in record.frames:
        seen = [f.class_ for f in frame.findings]
        seen += [str(b[0]) for r in frame.reviews for b in r.boxes if b]
        names += seen
    unique: list[str] = []
    for name in names:
        if isinstance(name, str) and CLASS_NAME.match(name) and name not in unique:
            unique.append(name)
    return unique


def named_classes(classes: set[str], reasons: list[str]) -> list[str]:
    """The classes these reasons name as whole words ("4 pitted_surface on the unit, 2 tolerated by ...")."""
    return sorted(c for c in classes if any(re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", r) for r in reasons))


def unit_level_classes(record: UnitRecordOut) -> list[str]:
    """Classes a unit-level reason names: their boxes are what failed the unit, even where each frame
    passed alone."""
    found = {f.class_ for frame in record.frames for f in frame.findings}
    return named_classes(found, [r for r in record.reasons if " on the unit" in r])


def page_data(record: UnitRecordOut, classes: list[str]) -> dict[str, Any]:
    """What the page's JavaScript needs, and nothing else (no file paths, no hashes)."""
    return {
        "unit_id": record.unit_id,
        "verdict": record.verdict,
        "unit_level_classes": unit_level_classes(record),
        "disposition_url": "/v1/units/" + quote(record.unit_id, safe="") + "/disposition",
        "classes": classes,
        "dispositions": [d.model_dump(mode="json") for d in record.dispositions],
        "frames": [{"id": f.id, "camera_id": f.camera_id, "verdict": f.verdict, "reasons": f.reasons,
                    "findings": [x.model_dump(mode="json", by_alias=True) for x in f.findings],
                    "evidence_url": f.evidence_url, "reviews": [r.model_dump(mode="json") for r in f.reviews],
                    # a count rule can fail a frame whose findings each passed: the classes its reasons name
                    "reason_classes": named_classes({x.class_ for x in f.findings}, f.reasons)}
                   for f in record.frames],
    }


def rule_rows(spec: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The profile's rules, one row per class (the default rule first)."""
    if not spec:
        return []
    rows = [{"name": "(default)", **spec.get("default", {})}]
    rows += [{"name": name, **rule} for name, rule in sorted(spec.get("classes", {}).items())]
    return rows


@router.get("/review/units/{unit_id:path}")
async def unit_page(unit_id: str, request: Request) -> Response:
    principal = await run_in_threadpool(_signed_in, request)
    if principal is None:
        return _to_login()
    try:
        record = await run_in_threadpool(unit_full_record, request, unit_id)
    except NotFoundError as e:
        return _page(request, "not_found.html", 404, principal=principal, message=str(e))
    classes = known_classes(request, record)
    spec = record.profile.spec
    flagged = [f for f in record.frames if f.verdict != "PASS"]
    unit_level = record.verdict in ("FAIL", "REVIEW") and not flagged and bool(record.frames)
    zone = page_zone(request)
    due = record.order.due_date
    overdue = (_today(zone) - due).days if due and due < _today(zone) else 0
    return _page(request, "unit.html", principal=principal, unit=record, order=record.order, spec=spec,
                 rules=rule_rows(spec), data=page_data(record, classes), classes=classes, zone=zone,
                 unit_level=unit_level, overdue=overdue)
