"""The attacks of the security report against the running service, each refused, the service staying responsive."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.services.auth import SESSION_COOKIE, Role
from tests import hostile
from tests.api.conftest import LiveService, Service, csrf_of, jpeg, login
from tests.builders import Candidate, tiny_package

REPO = Path(__file__).resolve().parents[3]


# -- 1. bounded decoding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [hostile.fill_byte_bomb(), hostile.real_jpeg(9000, 9000), hostile.png_bomb()],
                         ids=["fill-byte-20000", "jpeg-9000", "png-bomb-8000"])
def test_image_bombs_get_422_and_the_camera_goes_on(service: Service, data: bytes) -> None:
    started = time.perf_counter()
    r = service.post_frame(data, unit_id="U-bomb")
    assert r.status_code == 422, r.text
    assert "over the limit" in r.json()["detail"]
    assert time.perf_counter() - started < 10  # loose: from the header, not a multi-second decode
    assert service.post_frame(jpeg(255), unit_id="U-good").status_code == 200
    assert service.client.get("/v1/units/U-bomb", headers=service.auth(Role.OPERATOR)).status_code == 404


def test_a_large_frame_is_decoded_reduced_and_judged_in_its_own_pixels(service: Service) -> None:
    """2560x2560 for a 64-pixel model: decoded at 1/8 (long side 320 >= 2 x 64); the boxes come back in the
    frame's own pixels, as a full-size decode would give them (the tiny model's box: centre 32, size 16 of 64)."""
    from api.services.frames import decode_long_side
    from inspection.imageio import read_header, reduction_for

    assert service.ctx.batcher is not None
    long_side = decode_long_side(service.ctx.batcher.inspector.detector)
    assert long_side == 128 and reduction_for(read_header(jpeg(255, 2560, 2560)), long_side) == 8
    small = service.post_frame(jpeg(255, 64, 64), unit_id="U-small").json()
    big = service.post_frame(jpeg(255, 2560, 2560), unit_id="U-big").json()
    assert [d["class"] for d in big["detections"]] == [d["class"] for d in small["detections"]]
    for d_small, d_big in zip(small["detections"], big["detections"], strict=True):
        expected = [v * 40 for v in d_small["box"]]
        assert all(abs(a - b) <= 40 for a, b in zip(d_big["box"], expected, strict=True)), (d_big, expected)


def test_qcline_detect_reports_each_bomb_and_stays_small(tmp_path: Path) -> None:
    package = tiny_package(tmp_path / "pkg", [Candidate(32, 32, 16, 16, 0, 0.9)], classes=("scratch", "dent"))
    files = [hostile.write(tmp_path / "fill.jpg", hostile.fill_byte_bomb()),
             hostile.write(tmp_path / "big.jpg", hostile.real_jpeg(9000, 9000)),
             hostile.write(tmp_path / "bomb.png", hostile.png_bomb()),
             hostile.write(tmp_path / "good.jpg", jpeg(255))]
    env = {**os.environ, "PYTHONPATH": str(REPO), "QC_DATA_DIR": str(tmp_path / "data"), "QC_MODEL_PATH": str(package)}
    done = subprocess.run([sys.executable, "-m", "api.cli", "detect", *map(str, files), "--json"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [("error" in row) for row in rows] == [True, True, True, False], rows
    assert all("over the limit" in row["error"] for row in rows[:3])
    assert "3 of 4 images could not be read" in done.stderr


# -- 2. authentication before work, body caps ------------------------------------------------------------------

HUGE = 18 * 1024 * 1024


def _asgi_post(service: Service, path: str, headers: dict[str, str], size: int = HUGE,
               chunked: bool = False, media: str = "application/json") -> tuple[int, int, int]:
    """POST ``size`` bytes of a JSON array straight into the app (its own event loop); returns the status, the
    body bytes the app pulled and how often it asked for more: proof of what was read before the answer."""
    import asyncio

    chunk = b"[" + b"1," * (512 * 1024 - 1) + b"1]"  # 1 MiB of valid JSON, sent again and again
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw += [(b"content-type", media.encode()), (b"host", b"testserver")]
    if not chunked:
        raw.append((b"content-length", str(size).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "path": path,
             "raw_path": path.encode(), "query_string": b"", "headers": raw, "scheme": "http",
             "server": ("testserver", 80), "client": ("127.0.0.1", 5555), "root_path": ""}
    pulled = {"bytes": 0, "calls": 0}
    answer: dict[str, int] = {}

    async def receive() -> dict[str, object]:
        pulled["calls"] += 1
        left = size - pulled["bytes"]
        body = chunk[:max(0, min(len(chunk), left))]
        pulled["bytes"] += len(body)
        return {"type": "http.request", "body": body, "more_body": pulled["bytes"] < size}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = int(message["status"])  # type: ignore[call-overload]

    asyncio.run(service.client.app(scope, receive, send))  # type: ignore[arg-type]
    return answer["status"], pulled["bytes"], pulled["calls"]


@pytest.mark.parametrize("path", ["/v1/orders/import", "/v1/orders", "/v1/reviews", "/v1/keys", "/v1/frames",
                                  "/v1/models/rollback", "/v1/training-jobs", "/v1/units/U-1/close",
                                  "/v1/nonexistent"])
def test_an_unauthenticated_huge_body_is_401_before_a_byte_is_read(service: Service, path: str) -> None:
    started = time.perf_counter()
    status, read, calls = _asgi_post(service, path, {})
    assert (status, read, calls) == (401, 0, 0)
    status, read, calls = _asgi_post(service, path, {"Authorization": "Bearer qck_wrong"}, chunked=True)
    assert (status, read, calls) == (401, 0, 0)
    assert time.perf_counter() - started < 5  # loose: nothing parsed


@pytest.mark.parametrize(("path", "role", "cap_mib"), [("/v1/orders/import", Role.ENGINEER, 8),
                                                       ("/v1/reviews", Role.OPERATOR, 1),
                                                       ("/v1/keys", Role.ADMIN, 1),
                                                       ("/v1/frames", Role.CAMERA, 20)])
def test_bodies_over_the_routes_cap_are_413_with_a_key_too(service: Service, path: str, role: Role,
                                                           cap_mib: int) -> None:
    media = "image/jpeg" if path == "/v1/frames" else "application/json"
    size = (cap_mib + 4) * 1024 * 1024
    status, read, _ = _asgi_post(service, path, service.auth(role), size=size, media=media)
    assert (status, read) == (413, 0)  # by Content-Length: nothing read
    status, read, _ = _asgi_post(service, path, service.auth(role), size=size, chunked=True, media=media)
    assert status == 413 and read <= (cap_mib + 1) * 1024 * 1024  # streamed: stopped at the cap
    assert service.post_frame(jpeg(255), unit_id="U-after-413").status_code == 200


def test_camera_latency_stays_low_while_huge_unauthenticated_bodies_arrive(live_service: LiveService,
                                                                           tmp_path: Path) -> None:
    """The report's attack on a real port: ten clients posting 18 MiB JSON bodies without a key, each five a
    second, while a camera sends frames. Each is refused at once (401); the camera keeps its latency (before the fix
    the bodies were parsed on the event loop first: median 7 ms -> 430 ms)."""
    import statistics

    import httpx

    camera = {"Authorization": f"Bearer {live_service.keys[Role.CAMERA]}"}

    def frames(client: httpx.Client, n: int, offset: int) -> list[float]:
        times = []
        for i in range(n):
            started = time.perf_counter()
            r = client.post(f"{live_service.url}/v1/frames", headers=camera,
                            data={"unit_id": f"U-lat-{offset + i}", "order_id": "ORD-1", "camera_id": "top"},
                            files={"image": ("f.jpg", jpeg(255, noise=offset + i + 1), "image/jpeg")})
            assert r.status_code == 200, r.text
            times.append(time.perf_counter() - started)
        return times

    stop = tmp_path / "stop"
    with httpx.Client(timeout=30) as client:
        quiet = statistics.median(frames(client, 10, 0))
        attackers = [subprocess.Popen([sys.executable, "-c", hostile.ATTACKER_SCRIPT,
                                       f"{live_service.url}/v1/orders", str(stop), "0.2"],
                                      stdout=subprocess.PIPE, text=True) for _ in range(10)]
        try:
            hostile.wait_for_attackers(stop, len(attackers))
            loaded = statistics.median(frames(client, 20, 100))
        finally:
            stop.touch()
            seen = [json.loads(p.communicate(timeout=120)[0] or "[]") for p in attackers]
    statuses = {s for run in seen for s in run}
    assert statuses and statuses <= {401, -1}, statuses
    assert sum(len(run) for run in seen) >= 10
    assert loaded < quiet + 0.25, (quiet, loaded)  # loose (a shared machine); parsing first cost ~0.4 s


# -- 3. same-site CSRF, in-process --------------------------------------------------------------------------------


def _signed_in(service: Service, role: Role = Role.OPERATOR) -> str:
    assert login(service.client, service.keys[role], follow_redirects=False).status_code == 303
    return csrf_of(service.client)


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/units/U-1/close"), ("POST", "/v1/frames"),
                                              ("POST", "/v1/orders/import"), ("GET", "/v1/orders"),
                                              ("GET", "/v1/keys"), ("POST", "/v1/keys"), ("GET", "/v1/models")])
def test_the_session_cookie_opens_only_the_review_pages_routes(service: Service, method: str, path: str) -> None:
    token = _signed_in(service, Role.ADMIN)
    r = service.client.request(method, path, headers={"X-CSRF-Token": token}, json={})
    assert r.status_code == 401 and "not the review page's session" in r.json()["detail"]


@pytest.mark.parametrize(("headers", "refused"), [
    ({}, "CSRF token"),
    ({"X-CSRF-Token": "0" * 64}, "CSRF token"),
    ({"X-CSRF-Token": "{token}", "Origin": "http://127.0.0.1:9999"}, "cross-origin"),
    ({"X-CSRF-Token": "{token}", "Origin": "null"}, "opaque origin"),
    ({"X-CSRF-Token": "{token}", "Sec-Fetch-Site": "same-site"}, "same-site"),
    ({"X-CSRF-Token": "{token}", "Sec-Fetch-Site": "cross-site", "Origin": "http://testserver"}, "cross-site"),
    ({"X-CSRF-Token": "{token}", "Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}, None),
], ids=["no-token", "wrong-token", "other-port", "null-origin", "same-site", "cross-site", "same-origin"])
def test_state_changes_by_cookie_need_this_origin_and_the_token(service: Service, headers: dict[str, str],
                                                                refused: str | None) -> None:
    token = _signed_in(service)
    sent = {k: v.format(token=token) for k, v in headers.items()}
    r = service.client.post("/v1/units/U-csrf/disposition", headers=sent, json={"disposition": "scrap", "note": ""})
    dispositions = service.ctx.reviews.dispositions("U-csrf")
    if refused is None:
        assert r.status_code not in (401, 403), r.text  # passed the gate (404/422: no such unit)
        return
    assert r.status_code == 403 and refused in r.json()["detail"], r.text
    assert dispositions == []


def test_a_bearer_key_needs_no_csrf_token(service: Service) -> None:
    assert service.post_frame(jpeg(255), unit_id="U-bearer").status_code == 200
    r = service.client.post("/v1/units/U-bearer/close", headers={**service.auth(Role.CAMERA),
                                                            "Origin": "http://elsewhere.example"})
    assert r.status_code == 200  # no browser adds a bearer key by itself: nothing to forge


def test_logout_from_another_sites_form_keeps_the_session(service: Service) -> None:
    _signed_in(service)
    r = service.client.post("/review/logout", data={}, follow_redirects=False)
    assert r.status_code == 303 and "set-cookie" not in r.headers
    assert service.client.get("/review", follow_redirects=False).status_code == 200


# -- 4. login CSRF, in-process ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["no-token", "wrong-token", "other-origin", "cross-site"])
def test_a_cross_site_form_cannot_sign_a_browser_in(service: Service, case: str) -> None:
    page = service.client.get("/review/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    data = {"key": service.keys[Role.OPERATOR], "login_token": token}
    headers: dict[str, str] = {}
    if case == "no-token":
        data.pop("login_token")
    elif case == "wrong-token":
        data["login_token"] = "attacker-chosen-token-value"
    elif case == "other-origin":
        headers["Origin"] = "http://127.0.0.1:9999"
    else:
        headers["Sec-Fetch-Site"] = "cross-site"
    r = service.client.post("/review/login", data=data, headers=headers, follow_redirects=False)
    assert r.status_code == 403
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
    assert service.client.get("/review", follow_redirects=False).status_code == 303  # still signed out


# -- 5. YAML bombs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "media", "message"), [
    (hostile.yaml_alias_bomb(), "application/yaml", "anchors"),
    (hostile.deep_yaml(), "application/yaml", "nested deeper"),
    ("{\"orders\": " + "[" * 100_000 + "]" * 100_000 + "}", "application/json", "nested too deeply"),
], ids=["alias-bomb", "deep-yaml", "deep-json"])
def test_yaml_and_json_bombs_are_422_and_store_nothing(service: Service, body: str, media: str,
                                                       message: str) -> None:
    r = service.client.post("/v1/orders/import", content=body.encode(), headers={
        **service.auth(Role.ENGINEER), "Content-Type": media})
    assert r.status_code == 422 and message in r.json()["detail"], r.text
    assert service.client.get("/v1/orders/BOMB", headers=service.auth(Role.ENGINEER)).status_code == 404
    assert service.client.get("/healthz").status_code == 200


@pytest.mark.parametrize("text", [hostile.yaml_alias_bomb(), hostile.deep_yaml()], ids=["alias-bomb", "deep"])
def test_qcline_orders_import_refuses_yaml_bombs_in_one_line(tmp_path: Path, text: str) -> None:
    path = hostile.write(tmp_path / "orders.yaml", text.encode())
    env = {**os.environ, "PYTHONPATH": str(REPO), "QC_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "400"}
    done = subprocess.run([sys.executable, "-m", "api.cli", "orders", "import", str(path)], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and ("not accepted" in lines[0] or "nested deeper" in lines[0]), done.stderr


# -- 6. exposure ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/docs", "/redoc", "/openapi.json"])
def test_metrics_and_docs_need_a_key(service: Service, path: str) -> None:
    assert service.post_frame(jpeg(255), unit_id="U-metrics").status_code == 200
    r = service.client.get(path)
    assert r.status_code == 401 and "ORD-1" not in r.text
    allowed = Role.METRICS if path == "/metrics" else Role.OPERATOR
    assert service.client.get(path, headers=service.auth(allowed)).status_code == 200
    if path == "/metrics":
        assert service.client.get(path, headers=service.auth(Role.CAMERA)).status_code == 403
        assert service.client.get(path, headers=service.auth(Role.OPERATOR)).status_code == 403


def test_settings_can_open_metrics_and_docs(tmp_path: Path, tiny_model: Path) -> None:
    from fastapi.testclient import TestClient

    from api.composition import ServiceContext
    from api.http.app import create_app
    from tests.api.conftest import service_settings

    ctx = ServiceContext.open(service_settings(tmp_path / "d", tiny_model, metrics_public=True, docs_public=True))
    with TestClient(create_app(context=ctx)) as client:
        for path in ("/metrics", "/docs", "/openapi.json"):
            assert client.get(path).status_code == 200, path
        assert client.get("/v1/orders").status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/v1/orders", "/review/login", "/static/review.js", "/nope"])
def test_every_answer_carries_the_security_headers(service: Service, path: str) -> None:
    r = service.client.get(path, headers=service.auth(Role.OPERATOR))
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_errors_do_not_show_server_paths(service: Service, tmp_path: Path) -> None:
    from inspection.errors import ModelPackageError

    async def boom() -> None:
        raise ModelPackageError(f"model package {tmp_path}/secret/pkg/model.onnx is missing metadata.json")

    service.client.app.add_api_route("/v1/boom", boom)  # type: ignore[attr-defined]
    r = service.client.get("/v1/boom", headers=service.auth(Role.OPERATOR))
    assert r.status_code == 422
    assert str(tmp_path) not in r.text and "…/model.onnx" in r.json()["detail"]


def test_a_revoked_key_stops_at_once_in_another_process(service: Service) -> None:
    """Two key services on one database stand for two processes: a revocation in one is seen by the other on
    its very next request (no cache to outlive it)."""
    from api.services.auth import ApiKeyService

    secret, record = service.ctx.keys.create(Role.CAMERA, "cam-revoked")
    other = ApiKeyService.open(service.ctx.settings.resolved_database_url)
    try:
        assert other.authenticate(secret).key_id == record.id
        assert service.client.get("/v1/reviews/queue", headers={"Authorization": f"Bearer {secret}"}).status_code \
            == 403  # authenticated in the service process (a camera may not read the queue)
        other.revoke(record.id)
        r = service.client.post("/v1/units/U-1/close", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 401
    finally:
        other.close()


@pytest.mark.parametrize("unit_id", ["UNIT\u20107", "\uff35\uff2e\uff29\uff34-7", "UNIT\u200b-7", "UN\u0406T-7",
                                     "UNIT\u00a07", "UNIT\u22127", "UNIT\u202e7"],
                         ids=["u2010-hyphen", "full-width", "zero-width", "cyrillic-i", "nbsp", "minus", "bidi"])
def test_look_alike_ids_are_refused_with_a_clear_422(service: Service, unit_id: str) -> None:
    assert service.post_frame(jpeg(255), unit_id="UNIT-7").status_code == 200
    r = service.post_frame(jpeg(255, noise=3), unit_id=unit_id)
    assert r.status_code == 422, r.text
    assert "U+" in r.json()["detail"] or "mixes Latin" in r.json()["detail"] or "printable" in r.json()["detail"]
    r = service.client.post(f"/v1/units/{unit_id}/close", headers=service.auth(Role.CAMERA))
    assert r.status_code == 422
    r = service.client.post("/v1/orders", headers=service.auth(Role.ENGINEER),
                            json={"id": unit_id, "profile": "high-gloss"})
    assert r.status_code == 422


def test_plain_ids_with_slashes_dots_and_spaces_still_work(service: Service) -> None:
    for unit_id in ("LOT-7/UNIT-3", "u.1 b", "Tür-7", "Ω-7"):
        assert service.post_frame(jpeg(255, noise=len(unit_id)), unit_id=unit_id).status_code == 200, unit_id


def test_a_slow_client_is_disconnected(tmp_path: Path, tiny_model: Path) -> None:
    """Slowloris: a connection that opens and sends nothing, or trickles its headers, is closed after the
    header timeout, and the service answers others meanwhile."""
    import socket
    import threading

    import httpx
    import uvicorn

    from api.composition import ServiceContext
    from api.http.app import create_app
    from api.http.server import header_timeout_protocol
    from tests.api.conftest import free_port, service_settings

    ctx = ServiceContext.open(service_settings(tmp_path / "d", tiny_model))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(context=ctx), host="127.0.0.1", port=port, log_level="warning",
                                          http=header_timeout_protocol(1.0), timeout_keep_alive=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        idle = socket.create_connection(("127.0.0.1", port))
        trickle = socket.create_connection(("127.0.0.1", port))
        trickle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        closed: set[str] = set()
        while time.monotonic() - started < 8 and len(closed) < 2:
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
            for name, sock in (("idle", idle), ("trickle", trickle)):
                if name in closed:
                    continue
                try:
                    if name == "trickle":
                        sock.sendall(b"X-Slow: 1\r\n")
                    sock.settimeout(0.2)
                    if sock.recv(64) == b"":
                        closed.add(name)
                except TimeoutError:
                    pass
                except OSError:
                    closed.add(name)
            time.sleep(0.2)
        assert closed == {"idle", "trickle"}
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# -- TLS ------------------------------------------------------------------------------------------------------


def test_serve_refuses_half_a_tls_setup(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "QC_DATA_DIR": str(tmp_path / "d"), "COLUMNS": "400"}
    cert = hostile.write(tmp_path / "cert.pem", b"not used")
    for args in (["--ssl-certfile", str(cert)], ["--ssl-certfile", str(cert), "--ssl-keyfile", str(tmp_path / "no")]):
        done = subprocess.run([sys.executable, "-m", "api.cli", "serve", *args], capture_output=True, text=True,
                              env=env, timeout=120, check=False)
        assert done.returncode == 1 and ("needs both" in done.stderr or "not found" in done.stderr), done.stderr


@pytest.mark.slow
def test_serve_over_tls_marks_the_session_cookie_secure(tmp_path: Path) -> None:
    """``qcline serve --ssl-certfile/--ssl-keyfile`` with a self-signed certificate: HTTPS answers, plain HTTP
    on that port does not, and the review page's cookie comes back ``Secure``."""
    import shutil

    import httpx

    from tests.api.conftest import free_port

    if shutil.which("openssl") is None:
        pytest.skip("openssl not found: needed to make a self-signed test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QC_")} | {
        "PYTHONPATH": str(REPO), "QC_DATA_DIR": str(tmp_path / "d")}
    qcline = [sys.executable, "-m", "api.cli"]
    secret = json.loads(subprocess.run([*qcline, "keys", "create", "--role", "operator", "--json"], env=env,
                                       check=True, capture_output=True, text=True).stdout)["key"]
    port = free_port()
    server = subprocess.Popen([*qcline, "serve", "--port", str(port), "--ssl-certfile", str(cert),
                               "--ssl-keyfile", str(key)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    base = f"https://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, verify=False, timeout=10) as client:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.3)
            page = client.get("/review/login")
            assert page.status_code == 200 and "secure" in page.headers["set-cookie"].lower()
            token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            r = client.post("/review/login", data={"key": secret, "login_token": token}, follow_redirects=False)
            assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        server.terminate()
        server.communicate(timeout=60)
