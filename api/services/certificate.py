"""The per-order inspection certificate: what a build-to-order customer or an auditor asks for.

One self-contained HTML file (no script, no external asset: evidence frames are embedded as data URIs
with their findings drawn over them as SVG boxes), listing each unit's verdict, its evidence, its
conformance values, the model and profile versions that judged it, its latest link in the traceability
chain, and whether ``audit verify`` found the order's chain intact when the certificate was made.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import jinja2
import numpy as np

from inspection.errors import QCError
from inspection.store.evidence import EvidenceStore
from inspection.store.repository import ResultsStore
from inspection.store.reviews import ReviewService

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "http" / "web" / "templates"
MAX_EMBEDDED_BYTES = 4 * 1024 * 1024
"""Evidence files larger than this are named by sha256 instead of embedded."""
MAX_EMBEDDED_FRAMES = 200
"""A certificate of a large order embeds this many frames (non-PASS first) and names the rest."""

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _embedded(evidence: EvidenceStore, ref: str | None, sha: str | None) -> dict[str, Any] | None:
    """``{"uri", "width", "height"}`` of an evidence frame (local folder or object store), or ``None`` when it is
    gone, too big, unreadable or its store cannot be reached."""
    if not ref and not sha:
        return None
    try:
        reader = evidence.open_ref(ref, sha)
        if reader is None:
            return None
        with reader:
            if reader.info.size > MAX_EMBEDDED_BYTES:
                return None
            data = reader.read_all()
            mime = reader.info.media_type or "image/jpeg"
    except QCError:
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    return {"uri": f"data:{mime};base64,{base64.b64encode(data).decode()}", "width": int(image.shape[1]),
            "height": int(image.shape[0])}


def certificate_data(store: ResultsStore, order_id: str) -> dict[str, Any]:
    """Everything the certificate shows, JSON-ready (``NotFoundError`` for an unknown order)."""
    order, profile = store.get_order(order_id)
    units = store.units_of_order(order_id)
    verification = store.audit_verify(order_id)
    links = store.chain_links([u.unit_id for u in units])
    reviews = ReviewService(store)
    records = [store.unit_record(u.unit_id) for u in units]
    embedded = 0
    frames = sorted((f for r in records for f in r["frames"]), key=lambda f: f["verdict"] == "PASS")
    for frame in frames:  # updated in place: non-PASS frames get the embedding budget first
        frame["image"] = None
        if embedded < MAX_EMBEDDED_FRAMES:
            frame["image"] = _embedded(store.evidence, frame.get("evidence_path"), frame.get("evidence_sha256"))
            embedded += frame["image"] is not None
        frame["evidence_note"] = ("" if frame["image"] else
                                  "evidence not kept (PASS frames are released)" if frame["verdict"] == "PASS"
                                  else "evidence file not available")
    profiles = sorted({f["profile_hash"] for r in records for f in r["frames"] if f["profile_hash"]})
    models = sorted({m for r in records for m in r["model_sha256s"]})
    counts = {v: sum(1 for u in units if u.verdict == v) for v in ("PASS", "REVIEW", "FAIL")}
    return {
        "order": order.model_dump(mode="json"), "profile": {"name": profile.name, "hash": profile.content_hash,
                                                            "description": profile.description},
        "units": [{**r, "link": links.get(r["unit_id"]),
                   "dispositions": [d.to_json() for d in reviews.dispositions(r["unit_id"])]} for r in records],
        "counts": counts, "open": sum(1 for u in units if u.status == "open"),
        "profile_hashes": profiles, "model_sha256s": models,
        "verification": verification.to_json(), "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "station_id": store.station_id,
    }


def render_certificate(data: dict[str, Any]) -> str:
    return _env.get_template("certificate.html").render(**data)
