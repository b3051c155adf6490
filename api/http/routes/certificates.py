"""``/review/certificates/{order_id}``: an order's inspection certificate, for operators and engineers.

The same self-contained HTML as ``qcline report order ORDER --html FILE`` (``api.services.certificate``); signed in
through the review page's session cookie or a bearer key.
"""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.http.deps import context, principal_of
from api.services.auth import AuthError, Principal, Role
from api.services.certificate import certificate_data, render_certificate
from inspection.errors import NotFoundError

router = APIRouter(include_in_schema=False)

READERS = frozenset({Role.OPERATOR, Role.ENGINEER})


def _reader(request: Request) -> Principal | None:
    try:
        principal = principal_of(request)
    except AuthError:
        return None
    return principal if principal.allowed(READERS) else None


def _render(request: Request, order_id: str) -> str:
    ctx = context(request)
    ctx.writer.flush(timeout=5)  # units judged a moment ago belong on the certificate
    return render_certificate(certificate_data(ctx.store, order_id))


@router.get("/review/certificates/{order_id:path}")
async def certificate_page(order_id: str, request: Request) -> Response:
    if await run_in_threadpool(_reader, request) is None:
        return RedirectResponse("/review/login", status_code=303)
    try:
        page = await run_in_threadpool(_render, request, order_id)
    except NotFoundError as e:
        return HTMLResponse(f"<!doctype html><title>Not found</title><p>{html.escape(str(e))}</p>", status_code=404)
    return HTMLResponse(page, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                       "Content-Security-Policy": "default-src 'none'; img-src data:; "
                                                                  "style-src 'unsafe-inline'"})
