"""The per-order inspection certificate: what a build-to-order customer or an auditor asks for.

One self-contained HTML file (no script, no external asset: evidence frames are embedded as data URIs
with their findings drawn over them as SVG boxes), listing each unit's verdict, its evidence, its
conformance values, the model and profile versions that judged it, its latest link in the traceability
chain, and whether ``audit verify`` found the order's chain intact when the certificate was made.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import cv2
import jinja2
import numpy as np

from inspection.errors import QCError
from inspection.profiles import Order
from inspection.store.audit import ChainLink, VerifyReport
from inspection.store.evidence import EvidenceStore
from inspection.store.records import FrameRecord, ProfileRef, UnitRecord
from inspection.store.repository import ResultsStore
from inspection.store.reviews import DispositionRecord, ReviewService

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "http" / "web" / "templates"
MAX_EMBEDDED_BYTES = 4 * 1024 * 1024
"""Evidence files larger than this are named by sha256 instead of embedded."""
MAX_EMBEDDED_FRAMES = 200
"""A certificate of a large order embeds this many frames (non-PASS first) and names the rest."""

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class EmbeddedImage:
    """An evidence frame inlined in the certificate (a data URI) and its size in pixels."""

    uri: str
    width: int
    height: int


@dataclass(frozen=True)
class CertificateFrame:
    """One frame of a unit on the certificate: its record, and its evidence when it could be embedded."""

    record: FrameRecord
    image: EmbeddedImage | None
    evidence_note: str
    """Why there is no image (empty when there is one)."""


@dataclass(frozen=True)
class CertificateUnit:
    """One unit on the certificate: its record, its latest chain link and its dispositions."""

    record: UnitRecord
    frames: tuple[CertificateFrame, ...]
    link: ChainLink | None
    dispositions: tuple[DispositionRecord, ...]


@dataclass(frozen=True)
class Certificate:
    """Everything the certificate shows."""

    order: Order
    profile: ProfileRef
    """The profile version the order is inspected against now."""
    units: tuple[CertificateUnit, ...]
    counts: dict[str, int]
    """Units per verdict (PASS, REVIEW, FAIL)."""
    open: int
    profile_hashes: tuple[str, ...]
    model_sha256s: tuple[str, ...]
    verification: VerifyReport
    generated_at: str
    station_id: str


def _embedded(evidence: EvidenceStore, ref: str | None, sha: str | None) -> EmbeddedImage | None:
    """An evidence frame (local folder or object store) ready to inline, or ``None`` when it is gone, too big,
    unreadable or its store cannot be reached."""
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
    return EmbeddedImage(f"data:{mime};base64,{base64.b64encode(data).decode()}", int(image.shape[1]),
                         int(image.shape[0]))


def certificate_data(store: ResultsStore, order_id: str) -> Certificate:
    """Everything the certificate shows (``NotFoundError`` for an unknown order)."""
    order, profile = store.get_order(order_id)
    units = store.units_of_order(order_id)
    verification = store.audit_verify(order_id)
    links = store.chain_links([u.unit_id for u in units])
    reviews = ReviewService(store)
    records = [store.unit_record(u.unit_id) for u in units]
    embedded = 0
    images: dict[int, EmbeddedImage | None] = {}
    # non-PASS frames get the embedding budget first
    for frame in sorted((f for r in records for f in r.frames), key=lambda f: f.verdict == "PASS"):
        images[frame.id] = None
        if embedded < MAX_EMBEDDED_FRAMES:
            images[frame.id] = _embedded(store.evidence, frame.evidence_path, None)
            embedded += images[frame.id] is not None

    def shown(frame: FrameRecord) -> CertificateFrame:
        image = images[frame.id]
        note = ("" if image else "evidence not kept (PASS frames are released)" if frame.verdict == "PASS"
                else "evidence file not available")
        return CertificateFrame(frame, image, note)

    profiles = sorted({f.profile_hash for r in records for f in r.frames if f.profile_hash})
    models = sorted({m for r in records for m in r.model_sha256s})
    counts = {v: sum(1 for u in units if u.verdict == v) for v in ("PASS", "REVIEW", "FAIL")}
    return Certificate(
        order=order, profile=ProfileRef(profile.name, profile.content_hash),
        units=tuple(CertificateUnit(r, tuple(shown(f) for f in r.frames), links.get(r.unit_id),
                                    tuple(reviews.dispositions(r.unit_id))) for r in records),
        counts=counts, open=sum(1 for u in units if u.status == "open"), profile_hashes=tuple(profiles),
        model_sha256s=tuple(models), verification=verification,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"), station_id=store.station_id)


def render_certificate(data: Certificate) -> str:
    return _env.get_template("certificate.html").render({f.name: getattr(data, f.name) for f in fields(data)})
