"""What the load generators of the drills and the service benchmark share: the demo order they post frames for,
the JPEG frames they read, the multipart body they send and the percentile they report.

Here, in ``drills`` (below ``bench`` in the import contract), so ``bench/service.py`` and the drills' harness use
one copy.
"""

from __future__ import annotations

from pathlib import Path

ORDER_ID = "ORD-24-1003"  # raw-industrial: required views [top], so one frame completes a unit
VIEW = "top"
SUFFIXES = {".jpg", ".jpeg"}
BOUNDARY = "qclinebenchboundary7f3a"


def images(data: Path, limit: int) -> list[Path]:
    """The JPEG frames under ``data`` (its ``images/`` folder when it has one), sorted, at most ``limit``."""
    folder = data / "images" if (data / "images").is_dir() else data
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)
    if not files:
        raise SystemExit(f"no JPEG images under {folder}")
    return files[:limit] if limit else files


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def multipart(data: bytes) -> tuple[bytes, bytes]:
    """A frame's multipart body as (head, tail): the unit id goes between them, so building a request costs
    one concatenation and the client stays light."""
    b = BOUNDARY.encode()
    head = b"--" + b + b'\r\nContent-Disposition: form-data; name="unit_id"\r\n\r\n'
    tail = b"".join([
        b"\r\n--", b, b'\r\nContent-Disposition: form-data; name="order_id"\r\n\r\n', ORDER_ID.encode(),
        b"\r\n--", b, b'\r\nContent-Disposition: form-data; name="camera_id"\r\n\r\n', VIEW.encode(),
        b"\r\n--", b, b'\r\nContent-Disposition: form-data; name="image"; filename="frame.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n", data, b"\r\n--", b, b"--\r\n"])
    return head, tail
