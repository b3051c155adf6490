"""The operators' review page: sign-in and escaping in-process, then a whole review shift in a real headless
Chromium (Debian's, driven by Playwright) against the service on a real port."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.services.auth import SESSION_COOKIE, Role
from tests.api.conftest import LiveService, Service, csrf_of, jpeg, login

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
XSS_REF = "<script>alert('x')</script>"
XSS_PRODUCT = '<b>bold</b> & "quoted"'


def sign_in(service: Service, role: Role = Role.OPERATOR) -> None:
    r = login(service.client, service.keys[role], follow_redirects=False)
    assert r.status_code == 303, r.text


# -- in-process: sign-in, sessions, escaping -----------------------------------------------------------------


def test_pages_redirect_to_login_when_not_signed_in(service: Service) -> None:
    for path in ("/review", "/review/units/U-1"):
        r = service.client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"] == "/review/login"
    r = service.client.get("/review/login")
    assert r.status_code == 200
    assert 'name="key"' in r.text and 'action="/review/login"' in r.text
    # a bearer key of another role does not open the page either
    r = service.client.get("/review", headers=service.auth(Role.CAMERA), follow_redirects=False)
    assert r.status_code == 303


def test_login_sets_a_strict_http_only_session_cookie(service: Service) -> None:
    r = login(service.client, service.keys[Role.OPERATOR], follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/review"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    attrs = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert "httponly" in attrs
    assert attrs["samesite"].lower() == "samesite=strict"
    assert attrs["path"] == "Path=/"
    assert attrs["max-age"] == f"Max-Age={int(service.ctx.settings.session_hours * 3600)}"
    assert "secure" not in attrs  # plain http (a test client): a Secure cookie would never come back
    # the cookie opens the page and authenticates the JSON API the page calls
    r = service.client.get("/review")
    assert r.status_code == 200 and "Review queue" in r.text
    assert service.client.get("/v1/reviews/queue").status_code == 200


def test_login_over_https_marks_the_cookie_secure(service: Service) -> None:
    r = login(service.client, service.keys[Role.ADMIN], "https://testserver/review/login",
                            follow_redirects=False)
    assert r.status_code == 303
    assert "secure" in r.headers["set-cookie"].lower()


def test_wrong_key_is_401_and_other_roles_are_403(service: Service) -> None:
    for key in ("qck_not-a-key", ""):
        r = login(service.client, key, follow_redirects=False)
        assert r.status_code == 401
        assert "set-cookie" not in r.headers
        assert 'role="alert"' in r.text
    r = login(service.client, "qck_not-a-key")
    assert "not valid" in r.text
    for role in (Role.CAMERA, Role.ENGINEER):
        r = login(service.client, service.keys[role], follow_redirects=False)
        assert r.status_code == 403, role
        assert "operators only" in r.text
        assert "set-cookie" not in r.headers


def test_logout_ends_the_session(service: Service) -> None:
    sign_in(service)
    token = service.client.cookies[SESSION_COOKIE]
    assert service.client.get("/review", follow_redirects=False).status_code == 200
    r = service.client.post("/review/logout", data={"csrf_token": csrf_of(service.client)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/review/login"
    assert f'{SESSION_COOKIE}=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]
    assert service.client.get("/review", follow_redirects=False).status_code == 303
    # the old token is dead on the server too, not only forgotten by this browser
    service.client.cookies.set(SESSION_COOKIE, token)
    assert service.client.get("/review", follow_redirects=False).status_code == 303
    assert service.client.get("/v1/reviews/queue").status_code == 401


def test_queue_and_unit_page_escape_order_text(service: Service) -> None:
    assert service.post_frame(jpeg(255), unit_id="U-X", order_id="ORD-X").json()["verdict"] == "FAIL"
    assert service.post_frame(jpeg(255, noise=1), unit_id="U-1", order_id="ORD-1").json()["verdict"] == "FAIL"
    assert service.post_frame(jpeg(0), unit_id="U-P", order_id="ORD-1").json()["verdict"] == "PASS"
    sign_in(service)
    queue = service.client.get("/review").text
    assert "&lt;script&gt;alert(" in queue
    assert "<script>alert" not in queue and "<b>bold" not in queue
    assert queue.index('data-unit-id="U-X"') < queue.index('data-unit-id="U-1"')  # due 2026-11-30 first
    assert 'data-unit-id="U-P"' not in queue
    r = service.client.get("/review/units/U-X")
    assert r.status_code == 200
    page = r.text
    assert "&lt;script&gt;alert(" in page and "&lt;b&gt;bold&lt;/b&gt; &amp; &#34;quoted&#34;" in page
    assert "<script>alert" not in page and "<b>bold" not in page
    block = re.search(r'<script type="application/json" id="unit-data">(.*?)</script>', page, re.S)
    assert block is not None
    assert "<" not in block.group(1) and ">" not in block.group(1)
    data = json.loads(block.group(1))
    assert data["unit_id"] == "U-X" and data["classes"][:2] == ["scratch", "dent"]
    assert {f["class"] for f in data["frames"][0]["findings"]} == {"scratch", "dent"}
    assert "evidence_path" not in block.group(1)
    # the profile's rules are beside the frames
    assert "high-gloss" in page and "Lacquer door" in page


def test_unknown_unit_is_a_404_page(service: Service) -> None:
    sign_in(service)
    r = service.client.get("/review/units/no-such-unit")
    assert r.status_code == 404
    assert "text/html" in r.headers["content-type"]
    assert "no-such-unit" in r.text


def test_review_routes_are_not_in_the_api_schema(service: Service) -> None:
    paths = service.client.get("/openapi.json", headers=service.auth(Role.ADMIN)).json()["paths"]
    assert not [p for p in paths if p.startswith("/review")]


# -- in a real browser ---------------------------------------------------------------------------------------


def chromium_or_skip() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    state = ""
    if shutil.which("dpkg-query"):
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "chromium"], capture_output=True, text=True,
                                check=False).stdout.strip()
        state = f" (dpkg: chromium {status!r}; an install may still be running)" if status else ""
    pytest.skip(f"{CHROMIUM} not found{state}: run scripts/install-system-deps.sh as root to install Debian's "
                "chromium for the browser tests")


@pytest.fixture
def browser_page() -> Iterator[Any]:
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context(viewport={"width": 1366, "height": 768})
            context.set_default_timeout(10_000)
            yield context.new_page()
        finally:
            browser.close()


def post_frame(http: httpx.Client, key: str, unit_id: str, order_id: str, camera_id: str, data: bytes) -> Any:
    r = http.post("/v1/frames", headers={"Authorization": f"Bearer {key}"},
                  data={"unit_id": unit_id, "order_id": order_id, "camera_id": camera_id},
                  files={"image": ("frame.jpg", data, "image/jpeg")})
    assert r.status_code == 200, r.text
    return r.json()


def to_screen(image_box: dict[str, float], size: tuple[int, int], x: float, y: float) -> tuple[float, float]:
    """Image pixel (x, y) to page coordinates, from the image element's bounding box."""
    return (image_box["x"] + x * image_box["width"] / size[0], image_box["y"] + y * image_box["height"] / size[1])


def close(a: list[Any], b: list[float], tol: float = 3.0) -> bool:
    return all(abs(float(u) - v) <= tol for u, v in zip(a, b, strict=True))


@pytest.mark.browser
def test_a_review_shift_in_the_browser(live_service: LiveService, browser_page: Any) -> None:
    from playwright.sync_api import expect

    page = browser_page
    url = live_service.url
    keys = live_service.keys
    operator = {"Authorization": f"Bearer {keys[Role.OPERATOR]}"}
    size = (640, 480)
    with httpx.Client(base_url=url, timeout=30) as http:
        camera = keys[Role.CAMERA]
        assert post_frame(http, camera, "U-X", "ORD-X", "top", jpeg(255, *size, noise=1))["verdict"] == "FAIL"
        post_frame(http, camera, "U-1", "ORD-1", "side", jpeg(255, *size, noise=2))
        assert post_frame(http, camera, "U-1", "ORD-1", "top",
                          jpeg(255, *size, noise=3))["unit_verdict"]["verdict"] == "FAIL"
        assert post_frame(http, camera, "U-P", "ORD-1", "top", jpeg(0, *size))["verdict"] == "PASS"
        frames_1 = [f["id"] for f in http.get("/v1/units/U-1", headers=operator).json()["frames"]]
        frame_x = http.get("/v1/units/U-X", headers=operator).json()["frames"][0]["id"]

        def reviews(inspection_id: int) -> list[dict[str, Any]]:
            r = http.get(f"/v1/inspections/{inspection_id}/reviews", headers=operator)
            assert r.status_code == 200, r.text
            return list(r.json())

        dialogs: list[str] = []
        errors: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: errors.append(str(e)))

        def posted(path: str) -> Any:
            return page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith(path))

        # -- signing in: a wrong key, a camera key, then the operator's --------------------------------------
        page.goto(f"{url}/review")
        expect(page).to_have_url(f"{url}/review/login")
        page.fill("#key", "qck_wrong-key")
        with posted("/review/login") as answer:
            page.click("#sign-in")
        assert answer.value.status == 401
        expect(page.locator("#login-error")).to_contain_text("not valid")
        page.fill("#key", keys[Role.CAMERA])
        with posted("/review/login") as answer:
            page.click("#sign-in")
        assert answer.value.status == 403
        expect(page.locator("#login-error")).to_contain_text("operators only")
        page.fill("#key", keys[Role.OPERATOR])
        page.click("#sign-in")
        expect(page).to_have_url(f"{url}/review")

        # -- the queue: FAIL units by due date, the PASS unit absent, order text shown literally -------------
        rows = page.locator(".queue-row")
        expect(rows).to_have_count(2)
        assert rows.evaluate_all("rs => rs.map(r => r.dataset.unitId)") == ["U-X", "U-1"]
        assert rows.nth(0).locator(".customer").text_content() == XSS_REF
        assert rows.nth(0).locator(".product").text_content() == XSS_PRODUCT
        assert page.locator(".product b").count() == 0
        expect(rows.nth(1).locator(".frames")).to_have_text("2 / 0")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "review-queue.png"), full_page=True)

        page.keyboard.press("j")
        expect(rows.nth(1)).to_have_attribute("aria-selected", "true")
        page.keyboard.press("Enter")
        expect(page).to_have_url(f"{url}/review/units/U-1")

        # -- U-1, frame 1: confirm by keyboard, then again (key and click): stored once ----------------------
        frames = page.locator("article.frame")
        expect(frames).to_have_count(2)
        expect(page.locator("article.frame[data-loaded='1']")).to_have_count(2)
        expect(frames.nth(0)).to_have_class(re.compile(r"\bcurrent\b"))
        assert page.locator("svg.overlay").first.get_attribute("viewBox") == "0 0 640 480"
        with posted("/v1/reviews") as answer:
            page.keyboard.press("c")
        assert answer.value.status == 201 and answer.value.json()["duplicate"] is False
        expect(frames.nth(0).locator(".frame-status")).to_contain_text("Saved")
        stored = reviews(frames_1[0])
        assert [(r["decision"], r["actor"]) for r in stored] == [("confirm", "operator-tester")]
        with posted("/v1/reviews") as answer:
            page.keyboard.press("c")
        assert answer.value.json()["duplicate"] is True
        expect(frames.nth(0).locator(".frame-status")).to_contain_text("Already recorded")
        with posted("/v1/reviews") as answer:
            frames.nth(0).locator("button[data-decision='confirm']").click()
        assert answer.value.json()["duplicate"] is True
        assert len(reviews(frames_1[0])) == 1
        expect(frames.nth(0).locator(".history li")).to_have_count(1)

        # -- frame 2: delete a box, draw one, name its class, save; move it, reclass it, save ----------------
        page.keyboard.press("n")
        frame = frames.nth(1)
        expect(frame).to_have_class(re.compile(r"\bcurrent\b"))
        image = frame.locator("img.frame-image").bounding_box()
        assert image is not None
        boxes = frame.locator("svg g.box")
        expect(boxes).to_have_count(2)
        assert boxes.evaluate_all("gs => gs.map(g => g.dataset.class)") == ["scratch", "dent"]
        page.mouse.click(*to_screen(image, size, 320, 240))  # the scratch, (240, 160)-(400, 320)
        expect(frame.locator("svg g.box.selected")).to_have_attribute("data-class", "scratch")
        page.keyboard.press("Delete")
        expect(boxes).to_have_count(1)
        expect(boxes.first).to_have_attribute("data-class", "dent")

        drawn = [300.0, 300.0, 500.0, 420.0]
        page.mouse.move(*to_screen(image, size, drawn[0], drawn[1]))
        page.mouse.down()
        page.mouse.move(*to_screen(image, size, 400, 360), steps=4)
        page.mouse.move(*to_screen(image, size, drawn[2], drawn[3]), steps=4)
        page.mouse.up()
        expect(boxes).to_have_count(2)
        expect(frame.locator("svg g.box.selected")).to_have_count(1)
        # a new class name, typed: its letters ('c', 'p') must not act as shortcuts while typing
        frame.locator(".new-class-name").click()
        page.keyboard.type("chip")
        page.keyboard.press("Enter")
        expect(frame.locator("svg g.box.selected")).to_have_attribute("data-class", "chip")
        expect(frame).to_have_class(re.compile(r"\bcurrent\b"))
        assert reviews(frames_1[1]) == []
        with posted("/v1/reviews") as answer:
            page.keyboard.press("s")
        assert answer.value.status == 201, answer.value.text()
        expect(frame.locator(".frame-status")).to_contain_text("Saved")
        (saved,) = reviews(frames_1[1])
        assert saved["decision"] == "correct" and saved["actor"] == "operator-tester"
        assert saved["frame_size"] == list(size)
        by_class = {b[0]: b[1:] for b in saved["boxes"]}
        assert set(by_class) == {"dent", "chip"}
        assert close(by_class["dent"], [80, 0, 160, 80], tol=0.01)
        assert close(by_class["chip"], drawn), by_class["chip"]

        page.mouse.move(*to_screen(image, size, 400, 360))  # inside the chip box: drag it by (+40, -30)
        page.mouse.down()
        page.mouse.move(*to_screen(image, size, 420, 345), steps=3)
        page.mouse.move(*to_screen(image, size, 440, 330), steps=3)
        page.mouse.up()
        corner = to_screen(image, size, drawn[2] + 40, drawn[3] - 30)  # the selected box's resize handle
        page.mouse.move(*corner)
        page.mouse.down()
        page.mouse.move(corner[0] + 10, corner[1] + 5, steps=2)
        page.mouse.move(*to_screen(image, size, drawn[2] + 60, drawn[3] - 20), steps=2)
        page.mouse.up()
        page.keyboard.press("1")  # the first class of the picker: the model's "scratch"
        expect(frame.locator("svg g.box.selected")).to_have_attribute("data-class", "scratch")
        with posted("/v1/reviews") as answer:
            page.keyboard.press("s")
        assert answer.value.status == 201, answer.value.text()
        moved = reviews(frames_1[1])[-1]
        assert len(reviews(frames_1[1])) == 2
        by_class = {b[0]: b[1:] for b in moved["boxes"]}
        assert set(by_class) == {"dent", "scratch"}
        assert close(by_class["scratch"], [drawn[0] + 40, drawn[1] - 30, drawn[2] + 60, drawn[3] - 20])
        expect(frame.locator(".history li")).to_have_count(2)
        page.evaluate("window.scrollTo(0, 0)")  # sticky parts sit where a full-page capture expects them
        page.screenshot(path=str(ARTIFACTS / "review-page.png"), full_page=True)

        # -- back to the queue, U-X: text literal, false alarm, a cancelled scrap, then release --------------
        page.keyboard.press("u")
        expect(page).to_have_url(f"{url}/review")
        expect(page.locator(".queue-row").nth(1)).to_have_text(re.compile(r"2 / 2"))
        page.keyboard.press("Enter")
        expect(page).to_have_url(f"{url}/review/units/U-X")
        expect(page.locator("article.frame[data-loaded='1']")).to_have_count(1)
        assert page.locator("#customer-ref").text_content() == XSS_REF
        assert page.locator("#product").text_content() == XSS_PRODUCT
        with posted("/v1/reviews") as answer:
            page.keyboard.press("f")
        assert answer.value.status == 201
        assert [r["decision"] for r in reviews(frame_x)] == ["false_alarm"]

        page.keyboard.press("?")
        expect(page.locator("#help")).to_be_visible()
        page.keyboard.press("?")
        expect(page.locator("#help")).to_be_hidden()

        page.keyboard.press("x")
        expect(page.locator("#confirm")).to_be_visible()
        expect(page.locator("#confirm-text")).to_contain_text("Scrap unit U-X")
        page.keyboard.press("Escape")
        expect(page.locator("#confirm")).to_be_hidden()
        page.keyboard.press("r")
        expect(page.locator("#confirm-text")).to_contain_text("Release unit U-X")
        with posted("/v1/units/U-X/disposition") as answer:
            page.keyboard.press("Enter")
        assert answer.value.status == 201
        expect(page.locator("#unit-status")).to_contain_text("released")
        dispositions = http.get("/v1/units/U-X", headers=operator).json()["dispositions"]
        assert [(d["disposition"], d["actor"]) for d in dispositions] == [("release", "operator-tester")]

        page.goto(f"{url}/review")
        expect(page.locator(".queue-row")).to_have_count(1)
        assert page.locator(".queue-row").first.get_attribute("data-unit-id") == "U-1"

        # -- signing out --------------------------------------------------------------------------------------
        page.click("#logout")
        expect(page).to_have_url(f"{url}/review/login")
        page.goto(f"{url}/review")
        expect(page).to_have_url(f"{url}/review/login")

        assert dialogs == [], f"a dialog opened (script ran?): {dialogs}"
        assert errors == [], f"JavaScript errors: {errors}"
