"""The S3 evidence backend against a real S3 server (SeaweedFS on loopback), and the settings that pick it.

What a plant relies on: frames are content-addressed (stored once whoever writes them), a put is idempotent,
reads are streamed and capped, PASS releases delete, the review page and the dataset builder read from the
object store, and an object store that is away is a ``StoreError`` soon -- never a hung line.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.composition import ServiceContext
from api.http.app import create_app
from api.services.auth import Role
from datasets.from_reviews import build_from_reviews_report
from datasets.library import DatasetLibrary
from inspection.errors import ConfigError, InvalidFrameError, NotFoundError, StoreError
from inspection.reviews import Decision, ReviewDecision
from inspection.settings import Settings, load_settings
from inspection.store import BatchedResultWriter, LocalEvidenceStore, ResultsStore
from inspection.store.backends import open_evidence_store
from inspection.store.evidence_s3 import S3EvidenceStore, ca_bundle_or_flag, parse_s3_url, s3_client
from inspection.store.reviews import ReviewService
from inspection.types import Frame, Verdict
from tests.api.conftest import jpeg, login, seed, service_settings
from tests.builders import Candidate, tiny_package
from tests.inspection.store.factories import finding, result, standard_book
from tests.s3_server import S3Server


def frame_bytes(seed_value: int = 1) -> bytes:
    """A real 32x24 PNG whose pixels depend on ``seed_value``."""
    img = np.random.default_rng(seed_value).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def station_store(server: S3Server, bucket: str, prefix: str = "frames", **kwargs: Any) -> S3EvidenceStore:
    """What one station holds: its own client (own connection pool) on the shared bucket."""
    return S3EvidenceStore(server.client(), bucket, prefix, endpoint=server.endpoint, **kwargs)


def object_keys(server: S3Server, bucket: str) -> list[str]:
    listed = server.client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


@pytest.fixture
def s3_store(s3_server: S3Server, s3_bucket: str) -> S3EvidenceStore:
    return station_store(s3_server, s3_bucket)


# -- the backend itself -------------------------------------------------------------------------------------

def test_put_get_exists_delete_round_trip(s3_server: S3Server, s3_bucket: str, s3_store: S3EvidenceStore) -> None:
    data = frame_bytes(1)
    sha, ref = s3_store.put_file(data, ".png")
    assert sha == hashlib.sha256(data).hexdigest()
    assert ref == f"s3://{s3_bucket}/frames/{sha[:2]}/{sha}"
    assert object_keys(s3_server, s3_bucket) == [f"frames/{sha[:2]}/{sha}"]
    info = s3_store.stat(sha)
    assert info is not None and (info.size, info.media_type, info.ref) == (len(data), "image/png", ref)
    assert s3_store.exists(sha) and s3_store.read(sha) == data
    s3_store.check()  # the bucket answers
    with s3_store.open(sha) as reader:
        chunks = list(reader.chunks(size=100))
    assert len(chunks) > 1 and b"".join(chunks) == data  # streamed, not one read
    assert s3_store.delete(sha) is True
    assert not s3_store.exists(sha) and s3_store.stat(sha) is None
    assert s3_store.delete(sha) is False
    with pytest.raises(NotFoundError):
        s3_store.open(sha)


def test_put_is_idempotent_and_stored_once(s3_server: S3Server, s3_bucket: str, s3_store: S3EvidenceStore) -> None:
    data = frame_bytes(2)
    first = s3_store.put_file(data, ".png")
    again = s3_store.put_file(data, ".png")
    assert first == again
    assert s3_store.put(data, ".png") == first[0]
    assert len(object_keys(s3_server, s3_bucket)) == 1
    sha, _ = s3_store.put_image(np.full((16, 16, 3), 90, np.uint8))
    info = s3_store.stat(sha)
    assert info is not None and info.media_type == "image/jpeg"
    decoded = cv2.imdecode(np.frombuffer(s3_store.read(sha), np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape == (16, 16, 3)


def test_two_stations_share_one_bucket(s3_server: S3Server, s3_bucket: str) -> None:
    line_1, line_2 = station_store(s3_server, s3_bucket), station_store(s3_server, s3_bucket)
    data = frame_bytes(3)
    barrier = threading.Barrier(2)
    refs: list[str] = []

    def write(store: S3EvidenceStore) -> None:
        barrier.wait()
        refs.append(store.put_file(data, ".png")[1])

    threads = [threading.Thread(target=write, args=(s,)) for s in (line_1, line_2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(refs) == 2 and refs[0] == refs[1]  # the same frame from two stations at once: one object
    assert len(object_keys(s3_server, s3_bucket)) == 1
    only_2 = frame_bytes(4)
    sha_2 = line_2.put(only_2, ".png")
    assert line_1.read(sha_2) == only_2  # a frame one station wrote, another reads
    assert line_1.delete(sha_2) and not line_2.exists(sha_2)


def test_a_frame_recorded_under_another_stations_prefix_is_found(s3_server: S3Server, s3_bucket: str) -> None:
    """Lines may keep their own prefix (lifecycle rules, ownership); the central review service, configured
    with a prefix of its own, still reads every line's frames through the path each row recorded."""
    line_1, central = station_store(s3_server, s3_bucket, "line-1"), station_store(s3_server, s3_bucket, "central")
    data = frame_bytes(9)
    sha, ref = line_1.put_file(data, ".png")
    assert not central.exists(sha)  # not under its own prefix ...
    info = central.locate(ref, sha)
    assert info is not None and info.ref == ref and info.size == len(data)  # ... but where the row says
    reader = central.open_ref(ref)  # the sha256 is read from the ref's name when not given
    assert reader is not None and reader.read_all() == data
    assert central.locate(f"s3://other-bucket/line-1/{sha[:2]}/{sha}", sha) is None  # only its own bucket
    line_1.delete(sha)
    assert central.locate(ref, sha) is None and central.open_ref(ref, sha) is None


def test_reads_are_capped(s3_server: S3Server, s3_bucket: str) -> None:
    data = frame_bytes(5)
    small = station_store(s3_server, s3_bucket, max_read_bytes=len(data) - 1)
    sha = small.put(data, ".png")  # writing is not capped here: the service caps uploads
    with pytest.raises(StoreError, match="more than"):
        small.read(sha)


def test_an_altered_object_is_refused(s3_server: S3Server, s3_bucket: str, s3_store: S3EvidenceStore) -> None:
    data = frame_bytes(6)
    sha = hashlib.sha256(data).hexdigest()
    s3_server.client().put_object(Bucket=s3_bucket, Key=s3_store.key(sha), Body=data[:-10])  # tampered
    with pytest.raises(InvalidFrameError, match="does not match its sha256"):
        s3_store.read(sha)
    with pytest.raises(StoreError):  # a frame whose bytes do not match the name given: the server refuses it
        s3_store.put_file(data, ".png", sha256=hashlib.sha256(b"other").hexdigest())


@pytest.mark.parametrize("name", ["missing-bucket", "wrong-secret"])
def test_a_missing_bucket_or_wrong_keys_are_store_errors(s3_server: S3Server, s3_bucket: str, name: str) -> None:
    if name == "missing-bucket":
        store = S3EvidenceStore(s3_server.client(), "qc-no-such-bucket-here", "x")
    else:
        client = s3_client(endpoint_url=s3_server.endpoint, access_key=s3_server.access_key,
                           secret_key="not-the-secret", region="us-east-1")
        store = S3EvidenceStore(client, s3_bucket, "x")
    with pytest.raises(StoreError):
        store.put(frame_bytes(7), ".png")
    with pytest.raises(StoreError):
        store.check()


# -- an object store that is away ---------------------------------------------------------------------------

@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A port that accepts connections and never answers: the worst kind of network outage."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        server.close()


def closed_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed


def finishes(call: Callable[[], object], bound_s: float = 60.0) -> BaseException | None:
    """Run ``call`` in a thread; the exception it raised. Fails the test if it is still running after
    ``bound_s`` (a hang guard, far above the configured timeouts, not a timing assertion)."""
    caught: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as e:
            caught.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound_s)
    assert not thread.is_alive(), f"the call was still waiting after {bound_s} s: the line would hang"
    return caught[0] if caught else None


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_unreachable_s3_is_a_store_error_not_a_hang(kind: str, silent_endpoint: str, tmp_path: Path) -> None:
    endpoint = closed_endpoint() if kind == "refused" else silent_endpoint
    settings = Settings(data_dir=tmp_path, evidence_url="s3://qcline-evidence/line-1", s3_endpoint_url=endpoint,
                        s3_access_key="k", s3_secret_key=SecretStr("s"), s3_timeout_s=0.3, s3_max_attempts=2)
    store = open_evidence_store(settings)  # opening contacts nothing: a station starts while S3 is away
    data = frame_bytes(8)
    sha = hashlib.sha256(data).hexdigest()
    for call in (lambda: store.put(data, ".png"), lambda: store.stat(sha), lambda: store.read(sha),
                 lambda: store.delete(sha)):
        error = finishes(call)
        assert isinstance(error, StoreError), error
        assert "unreachable" in str(error) and error.__cause__ is not None  # raise ... from e


# -- choosing the backend from settings ---------------------------------------------------------------------

def test_settings_pick_the_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert isinstance(open_evidence_store(Settings(data_dir=tmp_path)), LocalEvidenceStore)
    default = open_evidence_store(Settings(data_dir=tmp_path))
    assert isinstance(default, LocalEvidenceStore) and default.root == tmp_path / "frames"
    folder = open_evidence_store(Settings(data_dir=tmp_path, evidence_url=f"file://{tmp_path}/elsewhere"))
    assert isinstance(folder, LocalEvidenceStore) and folder.root == tmp_path / "elsewhere"
    for name, value in {"QC_EVIDENCE_URL": "s3://plant-evidence/line-07/", "QC_S3_ENDPOINT_URL": "http://s3:8333",
                        "QC_S3_ACCESS_KEY": "station", "QC_S3_SECRET_KEY": "hunter2", "QC_S3_REGION": "eu-1",
                        "QC_S3_VERIFY_TLS": "false", "QC_EVIDENCE_MAX_MB": "8"}.items():
        monkeypatch.setenv(name, value)
    store = open_evidence_store(load_settings(data_dir=tmp_path))
    assert isinstance(store, S3EvidenceStore)
    assert (store.bucket, store.prefix, store.max_read_bytes) == ("plant-evidence", "line-07", 8 * 1024 * 1024)
    assert store.client.meta.region_name == "eu-1" and store.client.meta.endpoint_url == "http://s3:8333"
    assert "hunter2" not in repr(store) + repr(load_settings())


@pytest.mark.parametrize(("url", "problem"), [
    ("s3://", "bucket"), ("s3://ab/x", "bucket"), ("s3://Upper/x", "bucket"), ("s3://" + "b" * 64, "bucket"),
    ("s3://bucket/../x", "prefix"), ("s3://bucket/a//b", "prefix"), ("s3://bucket/a b", "prefix"),
])
def test_bad_evidence_urls_are_config_errors(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_s3_url(url)


def test_half_a_key_pair_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="both"):
        open_evidence_store(Settings(data_dir=tmp_path, evidence_url="s3://qcline/x", s3_access_key="only-id"))
    with pytest.raises(ConfigError, match="s3://bucket"):
        open_evidence_store(Settings(data_dir=tmp_path, evidence_url="gs://elsewhere/x"))
    with pytest.raises(ConfigError, match="CA_BUNDLE"):
        open_evidence_store(Settings(data_dir=tmp_path, evidence_url="s3://qcline/x",
                                     s3_ca_bundle=tmp_path / "no-such-ca.pem"))
    assert ca_bundle_or_flag(False, None) is False
    pem = tmp_path / "plant-ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    assert ca_bundle_or_flag(True, pem) == str(pem)


# -- the station, the review page and the dataset builder on the object store --------------------------------

@pytest.fixture
def s3_results(s3_server: S3Server, s3_bucket: str, db_url: str) -> Iterator[ResultsStore]:
    store = ResultsStore.open(db_url, station_store(s3_server, s3_bucket, "line-1"))
    store.import_order_book(standard_book())
    try:
        yield store
    finally:
        store.close()


def test_the_writer_keeps_failing_units_frames_in_s3_and_releases_pass_ones(
        s3_server: S3Server, s3_bucket: str, s3_results: ResultsStore, tmp_path: Path) -> None:
    failed = result("U1", camera="top", seq=1, verdict=Verdict.FAIL, findings=[finding()], with_bytes=True)
    clean_view = result("U1", camera="side", seq=2, with_bytes=True)
    passed = result("U2", camera="top", seq=3)  # no original bytes: JPEG-encoded from the pixels
    passed_side = result("U2", camera="side", seq=4)
    with BatchedResultWriter(s3_results) as writer:  # both required views in: the store rolls each unit up
        for item in (failed, clean_view, passed, passed_side):
            writer.submit(item).result(timeout=30)
    stats = writer.stats
    assert (stats.written, stats.evidence_written, stats.evidence_failures) == (4, 4, 0)
    assert stats.evidence_released >= 1
    assert s3_results.unit_record("U1").verdict == "FAIL" and s3_results.unit_record("U2").verdict == "PASS"
    frames = {f["camera_id"]: f for f in s3_results.unit_record("U1").to_json()["frames"]}
    assert isinstance(failed.frame, Frame)
    sha = failed.frame.sha256
    assert frames["top"]["evidence_path"] == f"s3://{s3_bucket}/line-1/{sha[:2]}/{sha}"
    assert len(object_keys(s3_server, s3_bucket)) == 2  # U1's two views; U2 (PASS) released
    assert s3_results.unit_record("U2").frames[0].evidence_path is None

    service = ReviewService(s3_results)
    inspection = int(frames["top"]["id"])
    with service.evidence_of(inspection) as reader:
        assert reader.read_all() == failed.frame.data
    service.record(ReviewDecision(inspection, Decision.CONFIRM, actor="ana"))  # reads the frame size from S3
    [row] = service.latest_reviews()
    assert row.evidence_exists and row.evidence_path is not None and row.evidence_path.startswith("s3://")
    library = DatasetLibrary(tmp_path / "datasets")
    built = build_from_reviews_report(s3_results, library, model_classes=("scratch",))
    [entry] = built.snapshot.entries
    assert entry.image.sha256 == sha and entry.image.path.read_bytes() == failed.frame.data
    assert built.result.skipped == ()

    # The object store goes away: reading a frame is a StoreError (503 on the page), never "gone", and a
    # dataset build stops instead of quietly skipping every sample.
    dead = S3EvidenceStore(s3_client(endpoint_url=closed_endpoint(), access_key="k", secret_key="s",
                                     region="us-east-1", timeout_s=0.5, max_attempts=1), s3_bucket, "line-1")
    away = ResultsStore(s3_results.engine, dead)  # same database, evidence unreachable
    with pytest.raises(StoreError):
        ReviewService(away).evidence_of(inspection)
    with pytest.raises(StoreError):
        build_from_reviews_report(away, library, model_classes=("scratch",))


def test_the_review_page_serves_a_frame_from_s3(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    """The service wired from settings alone (QC_EVIDENCE_URL and friends): a camera posts a frame that
    fails, the frame lands in the bucket, and the review page's image URL streams it back from there."""
    model = tiny_package(tmp_path / "tiny-model",
                         [Candidate(32, 32, 16, 16, 0, 0.9), Candidate(12, 12, 8, 8, 1, 0.6)])
    settings = service_settings(
        tmp_path / "data", model, evidence_url=f"s3://{s3_bucket}/station-a", s3_endpoint_url=s3_server.endpoint,
        s3_access_key=s3_server.access_key, s3_secret_key=SecretStr(s3_server.secret_key))
    ctx = ServiceContext.open(settings)
    keys = seed(ctx)
    frame = jpeg(255, noise=7)
    with TestClient(create_app(context=ctx)) as client:
        assert ctx.wait_ready(30), ctx.load_error
        camera = {"Authorization": f"Bearer {keys[Role.CAMERA]}"}
        posted = client.post("/v1/frames", headers=camera, data={"unit_id": "U-s3", "order_id": "ORD-1",
                                                                 "camera_id": "top"},
                             files={"image": ("frame.jpg", frame, "image/jpeg")})
        assert posted.status_code == 200 and posted.json()["verdict"] == "FAIL", posted.text
        ctx.writer.flush(timeout=30)
        sha = hashlib.sha256(frame).hexdigest()
        assert object_keys(s3_server, s3_bucket) == [f"station-a/{sha[:2]}/{sha}"]
        # The operator signs in to the review page, opens the unit and its <img> loads the frame from S3.
        signed_in = login(client, keys[Role.OPERATOR], follow_redirects=False)
        assert signed_in.status_code == 303, signed_in.text
        page = client.get("/review/units/U-s3")
        assert page.status_code == 200
        [src] = re.findall(r'<img class="frame-image" src="([^"]+)"', page.text)
        image = client.get(src)
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        assert image.content == frame and image.headers["etag"] == f'"{sha}"'
        client.cookies.clear()
        assert client.get(src).status_code == 401  # still behind the sign-in
