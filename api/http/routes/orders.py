"""Orders, their inspection profiles, and units' full records."""

from __future__ import annotations

import json
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from api.http.deps import ENGINEER, READER, context
from api.http.schemas import (
    ImportCounts,
    OrderBookIn,
    OrderDetailOut,
    OrderIn,
    OrderOut,
    ProfileOut,
    UnitRecordOut,
    UnitSummaryOut,
    errors,
)
from api.services.auth import Principal
from inspection import safe_yaml
from inspection.errors import BadRequestError, NotFoundError, ProfileError, UnsupportedMediaError
from inspection.profiles import InspectionProfile, Order, OrderBook
from inspection.store.repository import ResultsStore, UnitSummary

router = APIRouter(prefix="/v1", tags=["orders"])
ERRORS = errors(404)
WRITE_ERRORS = errors(404, 409, 415)


def _order_json(order: Order, profile_hash: str | None = None) -> dict[str, Any]:
    data = order.model_dump(mode="json")
    if profile_hash is not None:
        data["profile_hash"] = profile_hash
    return data


def _book(store: ResultsStore, orders: list[OrderIn], profiles: dict[str, InspectionProfile]) -> OrderBook:
    """An order book from the wire: each order's profile inline, defined in ``profiles``, or stored by name."""
    known = dict(profiles)
    for name, profile in profiles.items():
        if profile.name != name:
            raise ProfileError(f"profiles.{name} holds a profile named {profile.name!r}")
    built: list[Order] = []
    seen: set[str] = set()
    for item in orders:
        if item.id in seen:
            raise ProfileError(f"order id {item.id!r} appears twice")
        seen.add(item.id)
        if isinstance(item.profile, InspectionProfile):
            existing = known.setdefault(item.profile.name, item.profile)
            if existing != item.profile:
                raise ProfileError(f"order {item.id!r}: two different profiles are both named {item.profile.name!r}")
            name = item.profile.name
        else:
            name = item.profile
            if name not in known:
                known[name] = store.latest_profile(name)[1]
        built.append(Order(id=item.id, customer_ref=item.customer_ref, product=item.product,
                           attributes=item.attributes, due_date=item.due_date, profile=name))
    return OrderBook(profiles=known, orders=tuple(built))


def _import(request: Request, book: OrderBook) -> dict[str, int]:
    ctx = context(request)
    counts = ctx.store.import_order_book(book)
    if ctx.batcher is not None:  # the station's cached profiles of these orders are stale now
        ids = [o.id for o in book.orders]
        ctx.batcher.call(lambda inspector: inspector.forget_orders(ids))
    return counts


def _parse_book(data: bytes, media_type: str) -> Any:
    """JSON by ``json`` (deep nesting refused as a 422, not a RecursionError's 500); YAML by ``safe_yaml``
    (no aliases, bounded depth). Off the event loop: a large book must not stall the cameras."""
    try:
        if media_type == "application/json":
            return json.loads(data)
        return safe_yaml.load(data)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
        raise BadRequestError(f"order book does not parse as {media_type}: {e}") from e
    except RecursionError as e:
        raise BadRequestError(f"order book does not parse as {media_type}: nested too deeply") from e


@router.get("/orders", response_model=list[OrderOut], summary="List orders", responses=ERRORS)
async def list_orders(request: Request, _: Annotated[Principal, Depends(READER)]) -> list[dict[str, Any]]:
    orders = await run_in_threadpool(context(request).store.list_orders)
    return [_order_json(o) for o in orders]


@router.post("/orders", status_code=201, response_model=ImportCounts, responses=WRITE_ERRORS,
             summary="Create or update one order")
async def create_order(order: OrderIn, request: Request, _: Annotated[Principal, Depends(ENGINEER)]) -> dict[str, int]:
    """``profile`` is the name of a stored profile, or the profile itself (stored by its content hash)."""
    store = context(request).store

    def work() -> dict[str, int]:
        return _import(request, _book(store, [order], {}))

    return await run_in_threadpool(work)


IMPORT_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/OrderBookIn"}},
    "application/yaml": {"schema": {"type": "string"}},
}}}


@router.post("/orders/import", response_model=ImportCounts, responses=WRITE_ERRORS, openapi_extra=IMPORT_BODY,
             summary="Import an order book (profiles and orders), JSON or YAML")
async def import_orders(request: Request, _: Annotated[Principal, Depends(ENGINEER)]) -> dict[str, int]:
    """The same file ``qcline orders import`` reads, with profiles inline (file paths are not accepted over
    the network). Re-importing is a no-op; a changed profile becomes a new version for later frames."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in ("application/json", "application/yaml", "application/x-yaml", "text/yaml"):
        raise UnsupportedMediaError("send the order book as application/json or application/yaml")
    raw_bytes = await request.body()  # capped by the gatekeeper at QC_MAX_IMPORT_MB before it is read
    raw = await run_in_threadpool(_parse_book, raw_bytes, media_type)
    if not isinstance(raw, dict):
        raise BadRequestError("an order book is a mapping with 'orders' (and 'profiles')")
    if any(isinstance(p, str) for p in (raw.get("profiles") or {}).values()):
        raise BadRequestError("profiles must be inline: file paths are not read over the network")
    try:
        book = OrderBookIn.model_validate(raw)
    except ValueError as e:
        raise BadRequestError(f"order book: {e}") from e
    store = context(request).store

    def work() -> dict[str, int]:
        return _import(request, _book(store, book.orders, book.profiles))

    return await run_in_threadpool(work)


@router.get("/orders/{order_id}", response_model=OrderDetailOut,
            summary="An order with its current profile", responses=ERRORS)
async def get_order(order_id: str, request: Request, _: Annotated[Principal, Depends(READER)]) -> dict[str, Any]:
    order, profile = await run_in_threadpool(context(request).store.get_order, order_id)
    return {**_order_json(order, profile.content_hash), "profile_spec": profile.canonical()}


@router.get("/orders/{order_id}/units", response_model=list[UnitSummaryOut],
            summary="Units of an order", responses=ERRORS)
async def order_units(order_id: str, request: Request,
                      _: Annotated[Principal, Depends(READER)]) -> list[UnitSummary]:
    return await run_in_threadpool(context(request).store.units_of_order, order_id)


@router.get("/profiles/{profile_hash}", response_model=ProfileOut,
            summary="One profile version by content hash", responses=ERRORS)
async def get_profile(profile_hash: str, request: Request,
                      _: Annotated[Principal, Depends(READER)]) -> dict[str, Any]:
    profile = await run_in_threadpool(context(request).store.get_profile, profile_hash)
    return {"hash": profile.content_hash, **profile.canonical()}


def unit_full_record(request: Request, unit_id: str) -> UnitRecordOut:
    ctx = context(request)
    ctx.writer.flush(timeout=5)  # frames judged a moment ago are part of the record
    record = ctx.store.unit_record(unit_id)
    try:
        spec: dict[str, Any] | None = ctx.store.get_profile(record.profile.hash).canonical()
    except NotFoundError:
        spec = None
    return UnitRecordOut.of(record, ctx.reviews.histories([frame.id for frame in record.frames]),
                            ctx.reviews.dispositions(unit_id), spec)


@router.get("/units/{unit_id:path}", response_model=UnitRecordOut, summary="A unit's full record", responses=ERRORS)
async def get_unit(unit_id: str, request: Request, _: Annotated[Principal, Depends(READER)],
                   ) -> UnitRecordOut:
    """Every frame with its detections, verdict, reviews, model and profile version; the unit's verdict and
    dispositions."""
    return await run_in_threadpool(unit_full_record, request, unit_id)


