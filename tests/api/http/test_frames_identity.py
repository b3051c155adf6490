"""A camera that sends frames without a unit id: the part's label names the unit (and its order)."""

from __future__ import annotations

import cv2
import numpy as np

from api.services.auth import Role
from inspection.identity import label_image
from tests.api.conftest import Service


def labelled_png(text: str, fmt: str = "QRCode") -> bytes:
    image = np.full((240, 320, 3), 40, np.uint8)  # dark: the tiny model sees no scratch
    label = label_image(text, fmt, scale=3)
    image[10:10 + label.shape[0], 10:10 + label.shape[1]] = label
    return cv2.imencode(".png", image)[1].tobytes()


def _labels(service: Service, camera: str = "top", pattern: str = r"(?P<order>ORD-\d+)/(?P<unit>U-\d+)") -> None:
    service.ctx.store.record_calibration(camera, "label", {"formats": ["QRCode", "DataMatrix"], "pattern": pattern},
                                         actor="eng")


def test_a_frame_without_unit_id_takes_unit_and_order_from_its_label(service: Service) -> None:
    _labels(service)
    r = service.client.post("/v1/frames", headers=service.auth(Role.CAMERA), data={"camera_id": "top"},
                            files={"image": ("f.png", labelled_png("ORD-1/U-50"), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["unit_id"], body["order_id"]) == ("U-50", "ORD-1")
    assert body["verdict"] == "PASS"


def test_the_order_comes_from_the_order_book_when_the_label_names_only_the_unit(service: Service) -> None:
    _labels(service, pattern=r"(?P<unit>U-\d+)")
    assert service.post_frame(labelled_png("U-60"), unit_id="U-60", order_id="ORD-1").status_code == 200
    assert service.ctx.writer.flush(timeout=10)  # the unit is recorded under its order
    r = service.post_frame(labelled_png("U-60", "DataMatrix"), unit_id="", order_id="", camera_id="top")
    assert r.status_code == 200, r.text
    assert (r.json()["unit_id"], r.json()["order_id"]) == ("U-60", "ORD-1")


def test_no_label_settings_or_no_label_is_a_clear_422(service: Service) -> None:
    r = service.post_frame(labelled_png("ORD-1/U-50"), unit_id="", order_id="", camera_id="side")
    assert r.status_code == 422 and "no label settings" in r.json()["detail"]
    _labels(service, camera="side")
    blank = cv2.imencode(".png", np.full((64, 64, 3), 40, np.uint8))[1].tobytes()
    r = service.post_frame(blank, unit_id="", order_id="", camera_id="side")
    assert r.status_code == 422 and "no readable" in r.json()["detail"]


def test_a_label_that_contradicts_the_unit_sent_sends_it_to_review(service: Service) -> None:
    _labels(service)
    r = service.post_frame(labelled_png("ORD-1/U-51"), unit_id="U-52", order_id="ORD-1")
    assert r.status_code == 200
    body = r.json()
    assert body["unit_id"] == "U-52" and body["verdict"] == "REVIEW"
    assert any("label says unit U-51, the frame was sent for unit U-52" in reason for reason in body["reasons"])
    [identity] = body["conformance"]
    assert (identity["kind"], identity["measured"], identity["expected"], identity["outcome"]) == (
        "identity", "U-51", "U-52", "REVIEW")
