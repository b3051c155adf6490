"""QC analytics: ``GET /v1/analytics`` (JSON) and the server-rendered ``/analytics`` page.

Both read the same figures (``inspection.analytics.summary``) of a time window; the page draws them with
matplotlib as inline SVG when the ``analytics`` extra is installed, and shows the tables either way.
Operators and engineers (and admins) may read them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import jinja2
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.http.deps import context, principal_of, require
from api.http.schemas import errors
from api.http.security import csrf_token_for
from api.services.auth import AuthError, Principal, Role
from api.services.charts import svgs
from inspection.analytics import summary
from inspection.errors import BadRequestError

router = APIRouter(tags=["analytics"])
READERS = (Role.OPERATOR, Role.ENGINEER)
READER = require(*READERS)
Bucket = Literal["hour", "shift", "day", "week"]

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "web" / "templates"
templates = Jinja2Templates(env=jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True, undefined=jinja2.StrictUndefined,
    trim_blocks=True, lstrip_blocks=True))


class Ratio(BaseModel):
    value: float | None
    count: int
    of: int


class ParetoBarOut(BaseModel):
    category: str
    count: int
    share: float
    cumulative: float


class PPointOut(BaseModel):
    subgroup: datetime
    n: int
    defective: int
    p: float
    ucl: float
    lcl: float
    out_of_control: bool


class PChartOut(BaseModel):
    dimension: Literal["camera", "line", "shift"]
    key: str
    p_bar: float
    points: list[PPointOut]


class RateOut(BaseModel):
    dimension: Literal["order", "product_family", "model"]
    key: str
    total: int
    passed: int
    review: int
    failed: int
    fail_rate: float


class AnalyticsOut(BaseModel):
    since: datetime | None
    until: datetime | None
    bucket: Bucket
    frames: int
    units: int
    first_pass_yield: Ratio
    review_overturn_rate: Ratio
    pareto: list[ParetoBarOut]
    p_charts: list[PChartOut]
    rates: list[RateOut]


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value if value.tzinfo else value.replace(tzinfo=UTC)


def _figures(request: Request, since: datetime | None, until: datetime | None, bucket: Bucket) -> dict[str, Any]:
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and since >= until:
        raise BadRequestError("since must be before until")
    ctx = context(request)
    ctx.writer.flush(timeout=5)
    return summary(ctx.store.line_history(since, until), bucket=bucket, since=since, until=until)


def _out(data: dict[str, Any]) -> dict[str, Any]:
    fpy, overturn = data["first_pass_yield"], data["overturn_rate"]
    return {"since": data["window"]["since"], "until": data["window"]["until"], "bucket": data["window"]["bucket"],
            "frames": data["frames"], "units": data["units"],
            "first_pass_yield": {"value": fpy["value"], "count": fpy["passed"], "of": fpy["judged"]},
            "review_overturn_rate": {"value": overturn["value"], "count": overturn["false_alarms"],
                                     "of": overturn["reviewed"]},
            "pareto": data["pareto"], "p_charts": data["p_charts"], "rates": data["rates"]}


SinceQuery = Annotated[datetime | None, Query(description="Window start (ISO 8601; UTC when no zone).")]
UntilQuery = Annotated[datetime | None, Query(description="Window end, exclusive.")]
BucketQuery = Annotated[Bucket, Query(description="p-chart subgroups.")]


@router.get("/v1/analytics", response_model=AnalyticsOut, responses=errors())
async def analytics_json(request: Request, _: Annotated[Principal, Depends(READER)], since: SinceQuery = None,
                         until: UntilQuery = None, bucket: BucketQuery = "day") -> dict[str, Any]:
    """Pareto, first-pass yield, p-charts per camera / line / shift, rates, REVIEW overturn rate."""
    return _out(await run_in_threadpool(_figures, request, since, until, bucket))


@router.get("/analytics", include_in_schema=False)
async def analytics_page(request: Request, since: SinceQuery = None, until: UntilQuery = None,
                         bucket: BucketQuery = "day") -> Response:
    try:
        principal = principal_of(request)
    except AuthError:
        return RedirectResponse("/review/login", status_code=303)
    if not principal.allowed(frozenset(READERS)):
        return RedirectResponse("/review/login", status_code=303)
    data = await run_in_threadpool(_figures, request, since, until, bucket)
    charts = await run_in_threadpool(svgs, data)
    response = templates.TemplateResponse(request, "analytics.html", {
        "principal": principal, "data": data, "bucket": bucket,
        # matplotlib's SVG of our numbers; every name drawn in it went through analytics_output.label first
        # (letters, digits and -_.: only), so no request-supplied text reaches the page unescaped.
        "charts": {k: Markup(v) for k, v in charts.items()} if charts is not None else None,
        "since": data["window"]["since"] or "", "until": data["window"]["until"] or "",
        "csrf_token": csrf_token_for(session) if (session := request.scope.get("state", {}).get("session_token"))
        else ""})
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "default-src 'self'; style-src 'self' 'unsafe-inline'"
    return response
