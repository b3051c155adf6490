"""The review page for a whole shift, in Debian's headless Chromium (Playwright) on the `make demo` line.

U-1002-B after the demo is the case that misled operators: both frames PASS, the unit FAIL on a unit-level
count. Each check runs at 1366x768 and 1920x1080 (and the frame checks at 1024x768); screenshots are kept
under test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from api.services.auth import Role
from tests.api.conftest import free_port
from tests.api.http.test_review_page import ARTIFACTS, chromium_or_skip

pytestmark = [pytest.mark.browser, pytest.mark.slow]
REPO = Path(__file__).parents[3]
ZONE = "Europe/Berlin"
SIZES = [(1366, 768), (1920, 1080)]
FRAME_SIZES = [*SIZES, (1024, 768)]


@dataclass
class Shift:
    url: str
    key: str


def _late_orders(today: date) -> str:
    return f"""
profiles:
  strict:
    name: strict
    default: {{confidence: 0.3, review_from: 0.1, max_count: 0}}
orders:
  - {{id: O-LATE, customer_ref: Late customer, product: Overdue panel, profile: strict,
      due_date: {today - timedelta(days=3)}}}
  - {{id: O-SOON, customer_ref: Next week, product: Later panel, profile: strict,
      due_date: {today + timedelta(days=7)}}}
"""


@pytest.fixture(scope="module")
def shift(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shift]:
    """`qcline demo` into a fresh data folder, two more orders (one overdue), then the service on a real port."""
    chromium_or_skip()
    import uvicorn

    from api.composition import ServiceContext
    from api.config import ServiceSettings
    from api.http.app import create_app

    tmp = tmp_path_factory.mktemp("shift")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QC_")}
    env.update(PYTHONPATH=str(REPO), QC_DATA_DIR=str(tmp / "data"), XDG_DATA_HOME=str(tmp / "xdg"))
    run = [sys.executable, "-m", "api.cli"]
    subprocess.run([*run, "demo"], env=env, check=True, capture_output=True, timeout=300)
    today = datetime.now(ZoneInfo(ZONE)).date()
    (tmp / "late.yaml").write_text(_late_orders(today))
    subprocess.run([*run, "orders", "import", str(tmp / "late.yaml")], env=env, check=True, capture_output=True)
    for unit, order, frame in (("U-LATE-1", "O-LATE", "scratches_104.jpg"), ("U-SOON-1", "O-SOON", "inclusion_1.jpg")):
        subprocess.run([*run, "inspect", "--source", str(REPO / "api" / "demo" / "frames" / frame), "--unit", unit,
                        "--order", order, "--camera", "side", "--close-units"], env=env, check=True,
                       capture_output=True, timeout=120)
    ctx = ServiceContext.open(ServiceSettings(data_dir=tmp / "data", threads=1, timezone=ZONE, docs_public=True))
    key = ctx.keys.create(Role.OPERATOR, "night-shift")[0]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(context=ctx), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started and ctx.wait_ready(60), ctx.load_error
    try:
        yield Shift(f"http://127.0.0.1:{port}", key)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(chromium_or_skip()),
                                     args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            yield launched
        finally:
            launched.close()


def signed_in(browser: Any, shift: Shift, size: tuple[int, int]) -> Any:
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    page.goto(f"{shift.url}/review/login")
    page.fill("#key", shift.key)
    page.click("#sign-in")
    page.wait_for_url(f"{shift.url}/review")
    return page


def shot(page: Any, name: str, size: tuple[int, int]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-{size[0]}x{size[1]}.png"))


def single_line(page: Any, selector: str) -> list[str]:
    """Texts of the elements matching ``selector`` that wrap onto a second line."""
    return list(page.eval_on_selector_all(selector, """els => els.filter(e => {
        const range = document.createRange();
        range.selectNodeContents(e);
        const rs = [...range.getClientRects()].filter(r => r.width > 0);
        return rs.some(a => rs.some(b => b.top >= a.bottom - 1)); }).map(e => e.textContent.trim())"""))


def on_screen(page: Any, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= 0 and box["x"] >= 0 and box["y"] + box["height"] <= size["height"] + 1 \
        and box["x"] + box["width"] <= size["width"] + 1


def overlapping_tags(page: Any, frame: Any) -> list[tuple[str, str]]:
    return list(frame.locator("svg.overlay").evaluate("""svg => {
        const tags = [...svg.querySelectorAll('g.box-label')].map(g => [g.dataset.index, g.querySelector('rect.tag')
            .getBoundingClientRect()]);
        if (tags.length !== svg.querySelectorAll('g.box').length) return [['every box has a label', 'no']];
        const hits = [];
        for (let i = 0; i < tags.length; i++) for (let j = i + 1; j < tags.length; j++) {
            const a = tags[i][1], b = tags[j][1];
            if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5)
                hits.push([tags[i][0], tags[j][0]]);
        }
        return hits; }"""))


# -- the queue -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", FRAME_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_queue_counts_unit_level_failures_and_says_why(browser: Any, shift: Shift, size: tuple[int, int]) -> None:
    from playwright.sync_api import expect

    page = signed_in(browser, shift, size)
    row = page.locator(".queue-row[data-unit-id='U-1002-B']")
    expect(row).to_have_count(1)
    expect(row.locator(".frames")).to_have_text("2 / 0")        # both frames are the operator's to look at
    expect(row.locator(".unit-level-tag")).to_be_visible()
    expect(row.locator(".reasons")).to_contain_text("pitted_surface on the unit")
    expect(page.locator("#queue-count")).not_to_contain_text(" 0 frames to review")
    # ids, dates and counts never wrap
    assert single_line(page, ".queue-table td.nowrap > a, .queue-table td.order, .queue-table td.due, "
                             ".queue-table td.captured, .queue-table td.frames") == []
    # thumbnails load (through the session cookie)
    thumbs = page.locator(".queue-table td.thumb img")
    assert thumbs.count() >= 5
    page.wait_for_function("() => [...document.querySelectorAll('td.thumb img')].every(i => i.complete)")
    assert page.eval_on_selector_all("td.thumb img", "is => is.filter(i => !i.naturalWidth).length") == 0
    # overdue: O-LATE's due date passed three days ago in the plant's zone; O-SOON is next week
    late = page.locator(".queue-row[data-unit-id='U-LATE-1']")
    expect(late).to_have_class(re.compile(r"\boverdue\b"))
    expect(late.locator(".overdue-tag")).to_have_text("overdue 3 d")
    soon = page.locator(".queue-row[data-unit-id='U-SOON-1']")
    if soon.count():
        expect(soon.locator(".overdue-tag")).to_have_count(0)
    # times in QC_TIMEZONE, the zone named
    expect(page.locator("#zone-name")).to_have_text(ZONE)
    captured = row.locator("td.captured time").text_content() or ""
    assert captured.startswith("2026-11-26 09:01:00") and captured.endswith(("CET", "GMT+1")), captured  # 08:01Z
    if size[0] < 1100:
        expect(row.locator("td.captured")).to_be_hidden()  # narrow: the due date stays, capture times on the unit
    else:
        expect(row.locator("td.captured")).to_be_visible()
    shot(page, "review-queue", size)
    # no sideways scrolling: the table fits the window
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), size
    assert page.errors == []
    page.context.close()


@pytest.mark.parametrize(
    ("query", "expect_units", "absent"),
    [
        ("q=U-1002", {"U-1002-B"}, {"U-1004-A", "U-LATE-1"}),
        ("q=novak", {"U-1002-B"}, {"U-1004-A"}),                  # customer text, case-insensitive
        ("order=ORD-24-1004", {"U-1004-A"}, {"U-1002-B"}),
        ("verdict=FAIL", {"U-1002-B"}, set()),
        ("cls=pitted_surface", {"U-1002-B"}, {"U-LATE-1"}),
        ("camera=side", {"U-LATE-1"}, {"U-1002-B"}),
        ("since=2026-11-26&until=2026-11-26", {"U-1002-B"}, {"U-LATE-1"}),
    ],
    ids=["search-unit", "search-customer", "order", "verdict", "class", "camera", "dates"],
)
def test_queue_filters(browser: Any, shift: Shift, query: str, expect_units: set[str], absent: set[str]) -> None:
    page = signed_in(browser, shift, SIZES[0])
    page.goto(f"{shift.url}/review?{query}")
    units = set(page.eval_on_selector_all(".queue-row", "rs => rs.map(r => r.dataset.unitId)"))
    assert expect_units <= units and not (absent & units), units
    if query.startswith("verdict="):
        verdicts = page.eval_on_selector_all(".queue-row .verdict", "vs => vs.map(v => v.textContent)")
        assert set(verdicts) == {"FAIL"}
    page.context.close()


def test_queue_search_by_keyboard_and_select_filters(browser: Any, shift: Shift) -> None:
    from playwright.sync_api import expect

    page = signed_in(browser, shift, SIZES[0])
    page.keyboard.press("/")
    expect(page.locator("#filter-q")).to_be_focused()
    page.keyboard.type("1004")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=1004**")
    assert set(page.eval_on_selector_all(".queue-row", "rs => rs.map(r => r.dataset.unitId)")) <= {"U-1004-A",
                                                                                                  "U-1004-B"}
    page.goto(f"{shift.url}/review")
    with page.expect_navigation():
        page.select_option("#filter-verdict", "REVIEW")           # a select applies itself
    assert "verdict=REVIEW" in page.url
    page.goto(f"{shift.url}/review?since=2030-01-01")
    expect(page.locator("#queue-empty")).to_contain_text("No unit matches")
    page.context.close()


# -- the unit page ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", FRAME_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_unit_page_shows_why_and_keeps_the_frame_on_screen(browser: Any, shift: Shift, size: tuple[int, int]) -> None:
    from playwright.sync_api import expect

    page = signed_in(browser, shift, size)
    page.goto(f"{shift.url}/review/units/U-1002-B")
    expect(page.locator("article.frame[data-loaded='1']")).to_have_count(2)
    expect(page.locator("#unit-level")).to_be_visible()
    expect(page.locator("#unit-reasons")).to_contain_text("pitted_surface on the unit")
    frames = page.locator("article.frame")
    for n in range(2):
        if n:
            page.keyboard.press("n")
        frame = frames.nth(n)
        expect(frame).to_have_class(re.compile(r"\bcurrent\b"))
        page.wait_for_timeout(150)
        # the frame counts toward the unit's failure: its pitted_surface boxes are drawn in the FAIL colour
        kinds = frame.locator("svg g.box").evaluate_all("gs => gs.map(g => [g.dataset.class, g.className.baseVal])")
        assert kinds and all("kind-fail" in k for c, k in kinds if c == "pitted_surface"), kinds
        stroke = frame.locator("svg g.box.kind-fail rect.frame-box").first.evaluate(
            "r => [getComputedStyle(r).stroke, getComputedStyle(r).strokeDasharray]")
        assert stroke[0] == "rgb(229, 57, 53)" and stroke[1] in ("none", ""), stroke  # solid red
        assert overlapping_tags(page, frame) == []
        # the current frame's image and its decision buttons are on screen
        shot(page, f"review-unit-U-1002-B-frame{n + 1}", size)
        assert on_screen(page, f"article.frame >> nth={n} >> .decisions"), size
        assert on_screen(page, f"article.frame >> nth={n} >> img.frame-image"), (
            size, page.locator(f"article.frame >> nth={n} >> img.frame-image").bounding_box())
    # the rules table is not clipped: every cell shows all of its text inside the panel
    clipped = page.eval_on_selector_all("#rules th, #rules td", """cs => cs.filter(c =>
        c.scrollWidth > c.clientWidth + 1).map(c => c.textContent)""")
    assert clipped == []
    overflow = page.locator("#rules").evaluate("t => t.getBoundingClientRect().right - "
                                               "t.closest('.spec').getBoundingClientRect().right")
    assert overflow <= 1, overflow
    times = page.locator("article.frame time").first.text_content() or ""
    assert times.endswith(("CET", "GMT+1")), times
    assert page.errors == []
    page.context.close()


def test_labels_of_crowded_boxes_never_overlap(browser: Any, shift: Shift) -> None:
    import httpx

    with httpx.Client(base_url=shift.url, headers={"Authorization": f"Bearer {shift.key}"}, timeout=30) as http:
        frame_id = http.get("/v1/units/U-SOON-1").json()["frames"][0]["id"]
        crowd = [["inclusion", 20 + i, 30 + i, 60 + i, 70 + i] for i in range(0, 12, 2)]  # six boxes on one spot
        answer = http.post("/v1/reviews", json={"inspection_id": frame_id, "decision": "correct", "boxes": crowd})
        assert answer.status_code == 201, answer.text
    page = signed_in(browser, shift, SIZES[0])
    page.goto(f"{shift.url}/review/units/U-SOON-1")
    page.wait_for_selector("article.frame[data-loaded='1']")
    frame = page.locator("article.frame").first
    assert frame.locator("svg g.box").count() == 6
    assert overlapping_tags(page, frame) == []
    shot(page, "review-unit-crowded-labels", SIZES[0])
    for unit in ("U-1001-A", "U-1004-B", "U-LATE-1"):
        page.goto(f"{shift.url}/review/units/{unit}")
        page.wait_for_selector("body[data-ready='1']")
        for frame in page.locator("article.frame[data-loaded='1']").all():
            assert overlapping_tags(page, frame) == [], unit
    page.context.close()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_a_disposition_that_leaves_frames_unreviewed_warns(browser: Any, shift: Shift, size: tuple[int, int]) -> None:
    from playwright.sync_api import expect

    page = signed_in(browser, shift, size)
    page.goto(f"{shift.url}/review/units/U-1002-B")
    page.wait_for_selector("body[data-ready='1']")
    page.keyboard.press("x")
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-warning")).to_be_visible()
    expect(page.locator("#confirm-warning")).to_contain_text("2 of 2 frames to review were not reviewed")
    assert on_screen(page, "#confirm")
    shot(page, "review-unit-warning", size)
    page.keyboard.press("g")                                     # go and review it first
    expect(page.locator("#confirm")).to_be_hidden()
    expect(page.locator("article.frame").nth(0)).to_have_class(re.compile(r"\bcurrent\b"))
    page.context.close()


def test_reviewing_every_frame_clears_the_warning_then_the_unit_leaves_the_queue(browser: Any,
                                                                                shift: Shift) -> None:
    from playwright.sync_api import expect

    page = signed_in(browser, shift, SIZES[0])
    page.goto(f"{shift.url}/review/units/U-1002-B")
    page.wait_for_selector("body[data-ready='1']")
    frames = page.locator("article.frame")
    with page.expect_response(lambda r: r.url.endswith("/v1/reviews")):
        page.keyboard.press("c")
    page.keyboard.press("n")
    with page.expect_response(lambda r: r.url.endswith("/v1/reviews")):
        page.keyboard.press("c")
    expect(frames.nth(1).locator(".reviewed-badge")).to_be_visible()
    expect(page.locator("#review-progress")).to_have_text("2 of 2 frames to review reviewed")
    page.keyboard.press("x")
    expect(page.locator("#confirm-warning")).to_be_hidden()
    with page.expect_response(lambda r: r.url.endswith("/disposition")) as answer:
        page.keyboard.press("Enter")
    assert answer.value.status == 201
    expect(page.locator("#unit-status")).to_contain_text("scrapped")
    page.goto(f"{shift.url}/review")
    expect(page.locator(".queue-row[data-unit-id='U-1002-B']")).to_have_count(0)
    assert page.errors == []
    page.context.close()


def test_api_docs_render_offline(browser: Any, shift: Shift) -> None:
    """/docs with every request off this server refused: the Swagger UI comes from local files."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1366, "height": 768})
    outside: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(shift.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.goto(f"{shift.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("qcline", timeout=15_000)
    expect(page.locator(".opblock").first).to_be_visible()
    assert outside == []
    shot(page, "api-docs", (1366, 768))
    context.close()


def test_times_are_browser_local_without_qc_timezone(live_service: Any, browser: Any) -> None:
    """No QC_TIMEZONE: the page shows the browser's own zone, named."""
    import httpx
    from playwright.sync_api import expect

    from tests.api.conftest import jpeg

    with httpx.Client(base_url=live_service.url, timeout=30) as http:
        r = http.post("/v1/frames", headers={"Authorization": f"Bearer {live_service.keys[Role.CAMERA]}"},
                      data={"unit_id": "U-TZ", "order_id": "ORD-1", "camera_id": "top"},
                      files={"image": ("f.jpg", jpeg(255, 320, 240, noise=7), "image/jpeg")})
        assert r.status_code == 200 and r.json()["verdict"] == "FAIL", r.text
    context = browser.new_context(viewport={"width": 1366, "height": 768}, timezone_id="Asia/Tokyo")
    page = context.new_page()
    page.goto(f"{live_service.url}/review/login")
    page.fill("#key", live_service.keys[Role.OPERATOR])
    page.click("#sign-in")
    page.wait_for_url(f"{live_service.url}/review")
    expect(page.locator("#zone-name")).to_have_text("Asia/Tokyo")
    row = page.locator(".queue-row[data-unit-id='U-TZ']")
    shown = row.locator("td.captured time").text_content() or ""
    iso = row.locator("td.captured time").get_attribute("datetime") or ""
    local = datetime.fromisoformat(iso).astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M:%S")
    assert shown.startswith(local) and shown.endswith(("GMT+9", "JST")), (shown, iso)
    context.close()
