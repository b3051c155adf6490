"""Cross-origin attacks in the real browser (Debian's Chromium via Playwright): a page served from another port of
127.0.0.1 (same *site*, so SameSite=Strict cookies ride along) tries to act as the signed-in operator, and to sign
the browser in under the attacker's key. Every attempt is refused and nothing changes."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.services.auth import Role
from tests.api.conftest import LiveService, free_port, jpeg
from tests.api.http.test_review_page import browser_page, post_frame  # noqa: F401  (a fixture and a helper)

pytestmark = pytest.mark.browser


def attack_pages(victim: str, attacker_key: str) -> dict[str, str]:
    """The attacker's pages: each submits its attack as soon as it loads."""
    frame = base64.b64encode(jpeg(255, 64, 64, noise=9)).decode()
    return {
        # plain auto-submitted forms: no JavaScript needed on the victim's side
        "close.html": f'<form method="post" action="{victim}/v1/units/U-1/close"></form>'
                      "<script>document.forms[0].submit()</script>",
        "dispose.html": f'<form method="post" enctype="text/plain" action="{victim}/v1/units/U-1/disposition">'
                        '<input name=\'{"disposition":"scrap","note":"\' value=\'x"}\'></form>'
                        "<script>document.forms[0].submit()</script>",
        "logout.html": f'<form method="post" action="{victim}/review/logout"></form>'
                       "<script>document.forms[0].submit()</script>",
        # no-cors fetches with the cookie: a simple request needs no preflight
        "fetches.html": "<script>"
                        f"const jpg = Uint8Array.from(atob('{frame}'), c => c.charCodeAt(0));"
                        "const form = new FormData();"
                        "form.append('unit_id', 'U-INJECTED'); form.append('order_id', 'ORD-1');"
                        "form.append('camera_id', 'top');"
                        "form.append('image', new Blob([jpg], {type: 'image/jpeg'}), 'f.jpg');"
                        f"fetch('{victim}/v1/frames', {{method: 'POST', mode: 'no-cors', credentials: 'include', "
                        "body: form}).finally(() => "
                        f"fetch('{victim}/v1/reviews', {{method: 'POST', mode: 'no-cors', credentials: 'include', "
                        "headers: {'Content-Type': 'text/plain'}, "
                        "body: JSON.stringify({inspection_id: 1, decision: 'false_alarm'})})"
                        ").finally(() => document.title = 'done');"
                        "</script>",
        # login CSRF, with the pre-session cookie tossed from this origin (cookies ignore ports)
        "login.html": "<script>document.cookie = 'qc_login=attackers-own-login-token-1234; path=/review/login';"
                      "</script>"
                      f'<form method="post" action="{victim}/review/login">'
                      f'<input name="key" value="{attacker_key}">'
                      '<input name="login_token" value="attackers-own-login-token-1234"></form>'
                      "<script>document.forms[0].submit()</script>",
    }


@pytest.fixture
def attacker(tmp_path: Path, live_service: LiveService) -> Iterator[str]:
    """A static web server on another port of 127.0.0.1 serving the attack pages."""
    site = tmp_path / "attacker"
    site.mkdir()
    for name, body in attack_pages(live_service.url, live_service.keys[Role.OPERATOR]).items():
        (site / name).write_text(f"<!doctype html><html><body>{body}</body></html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def sign_in(page: Any, url: str, key: str) -> None:
    page.goto(f"{url}/review/login")
    page.fill("#key", key)
    page.click("#sign-in")
    page.wait_for_url(f"{url}/review")


def test_another_ports_page_cannot_act_as_the_signed_in_operator(live_service: LiveService, attacker: str,
                                                                 browser_page: Any) -> None:  # noqa: F811
    page, url = browser_page, live_service.url
    admin = {"Authorization": f"Bearer {live_service.keys[Role.ADMIN]}"}
    with httpx.Client(base_url=url, timeout=30) as http:
        post_frame(http, live_service.keys[Role.CAMERA], "U-1", "ORD-1", "top", jpeg(255, 64, 64, noise=1))
        before = http.get("/v1/units/U-1", headers=admin).json()
    csp_errors: list[str] = []
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    sign_in(page, url, live_service.keys[Role.ADMIN])  # admin: every role's route would admit this cookie
    page.goto(f"{url}/review/units/U-1")
    page.wait_for_selector("#unit-data", state="attached")
    statuses: dict[str, int] = {}
    page.on("response", lambda r: statuses.__setitem__(r.url.removeprefix(url), r.status)
            if r.url.startswith(url) else None)

    for name in ("close.html", "dispose.html", "logout.html"):
        page.goto(f"{attacker}/{name}")
        page.wait_for_load_state("networkidle")
    page.goto(f"{attacker}/fetches.html")
    page.wait_for_function("document.title === 'done'")

    assert statuses["/v1/units/U-1/close"] == 401, statuses  # cookie not taken on a camera route
    assert statuses["/v1/units/U-1/disposition"] == 403, statuses  # cross-origin, no CSRF token
    assert statuses["/review/logout"] == 403, statuses
    assert statuses["/v1/frames"] == 401, statuses
    assert statuses["/v1/reviews"] == 403, statuses
    with httpx.Client(base_url=url, timeout=30) as http:
        after = http.get("/v1/units/U-1", headers=admin).json()
        assert after["dispositions"] == before["dispositions"] == []
        assert [f["reviews"] for f in after["frames"]] == [[]]
        assert http.get("/v1/units/U-INJECTED", headers=admin).status_code == 404
    page.goto(f"{url}/review")  # still signed in: the forged sign-out did nothing either
    assert page.url == f"{url}/review"
    assert csp_errors == []  # the review page itself runs under its Content-Security-Policy


def test_a_cross_site_form_cannot_sign_the_browser_in(live_service: LiveService, attacker: str,
                                                      browser_page: Any) -> None:  # noqa: F811
    page, url = browser_page, live_service.url
    answers: list[int] = []
    page.on("response", lambda r: answers.append(r.status) if r.url == f"{url}/review/login" else None)
    page.goto(f"{attacker}/login.html")
    page.wait_for_load_state("networkidle")
    assert answers == [403], answers
    assert "another site" in page.content() or "sign in here" in page.content()
    page.goto(f"{url}/review")
    assert page.url == f"{url}/review/login"  # not signed in under the attacker's key
    cookies = {c["name"] for c in page.context.cookies(url)}
    assert "qc_session" not in cookies, json.dumps(page.context.cookies(url))
