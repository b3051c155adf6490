"""Admins: API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from api.http.deps import ADMIN, context
from api.http.schemas import KeyIn, KeyOut, KeyRecordOut, RowId, errors
from api.services.auth import KeyRecord, Principal

router = APIRouter(prefix="/v1", tags=["admin"])
ERRORS = errors(404)


@router.get("/keys", response_model=list[KeyRecordOut], summary="API keys (never their secrets)", responses=ERRORS)
async def list_keys(request: Request, _: Annotated[Principal, Depends(ADMIN)]) -> list[KeyRecord]:
    return await run_in_threadpool(context(request).keys.list)


@router.post("/keys", status_code=201, response_model=KeyOut, summary="Create a key; its secret is shown once",
             responses=ERRORS)
async def create_key(body: KeyIn, request: Request, _: Annotated[Principal, Depends(ADMIN)]) -> KeyOut:
    secret, record = await run_in_threadpool(context(request).keys.create, body.role, body.name)
    return KeyOut(key=secret, role=record.role, id=record.id, name=record.name)


@router.delete("/keys/{key_id}", response_model=KeyRecordOut,
               summary="Revoke a key (and sign its review sessions out)", responses=ERRORS)
async def revoke_key(key_id: RowId, request: Request,
                     _: Annotated[Principal, Depends(ADMIN)]) -> KeyRecord:
    return await run_in_threadpool(context(request).keys.revoke, key_id)
