"""Hot-swapping the champion on a running line: real ONNX packages, a real ``Inspector``, fakes around it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspection.detector import OnnxDetector
from inspection.errors import ModelPackageError
from inspection.hotswap import ModelWatcher, champion_lookup
from inspection.model_package import MODEL_FILE, ModelPackage
from inspection.pipeline import Inspector
from inspection.profiles import InspectionProfile
from inspection.types import Frame
from models.registry import CHAMPION, ModelRegistry
from tests.builders import Candidate, tiny_package
from tests.inspection.test_pipeline import FakeOrders, ListSink, frame

LINE = InspectionProfile.model_validate({"name": "line", "required_views": ["top"]})
SCRATCH = Candidate(32, 32, 20, 20, 0, 0.9)  # the old model sees a scratch on every white frame
DENT = Candidate(20, 20, 10, 10, 1, 0.8)  # the new one a dent


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("hotswap")
    corrupt = tiny_package(base / "corrupt", [SCRATCH, DENT])
    with (corrupt / MODEL_FILE).open("ab") as handle:  # tampered after its sha256 was written
        handle.write(b"tampered")
    return {"old": tiny_package(base / "old", [SCRATCH]), "new": tiny_package(base / "new", [DENT]),
            "other": tiny_package(base / "other", [DENT, DENT]), "corrupt": corrupt}


def sha(path: Path) -> str:
    return ModelPackage.load(path, verify=False).metadata.sha256


class Champion:
    """A registry lookup whose answer the test changes."""

    def __init__(self, path: Path) -> None:
        self.value: tuple[str, Path] | None = (sha(path), path)
        self.calls = 0

    def set(self, path: Path) -> None:
        self.value = (sha(path), path)

    def __call__(self) -> tuple[str, Path] | None:
        self.calls += 1
        return self.value


class CountingLoader:
    def __init__(self) -> None:
        self.loaded: list[Path] = []

    def __call__(self, path: Path) -> OnnxDetector:
        self.loaded.append(path)
        return OnnxDetector.from_package(path)


def line(packages: dict[str, Path], batch_size: int) -> tuple[Inspector, ListSink]:
    orders = FakeOrders()
    orders.orders["O-LINE"] = LINE
    sink = ListSink()
    return Inspector(OnnxDetector.from_package(packages["old"]), orders, [sink], batch_size=batch_size), sink


def white(i: int) -> Frame:
    return frame(f"U{i}", "O-LINE", "top", 255, i)


def assert_switched_once(sink: ListSink, n: int, old: str, new: str) -> None:
    """Every frame judged exactly once; the model changes once and never back; each verdict's sha is the
    model that really produced its detections (old: scratch, new: dent)."""
    seqs = [r.frame.source_seq for r in sink.frames if isinstance(r.frame, Frame)]
    assert len(sink.frames) == n and sorted(seqs) == list(range(n)), "a frame was dropped or judged twice"
    shas = [r.verdict.model_sha256 for r in sink.frames]
    assert set(shas) == {old, new}
    switch = shas.index(new)
    assert shas == [old] * switch + [new] * (n - switch)
    expected = {old: ["scratch"], new: ["dent"]}
    for result in sink.frames:
        assert result.detections is not None
        names = [result.detections.class_name(i) for i in range(len(result.detections))]
        assert names == expected[result.verdict.model_sha256]


@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_swap_between_batches_judges_every_frame_once(packages: dict[str, Path], batch_size: int) -> None:
    inspector, sink = line(packages, batch_size)
    champion, loader = Champion(packages["old"]), CountingLoader()
    watcher = ModelWatcher(champion, inspector.swap_detector, current_sha=sha(packages["old"]), loader=loader)

    def frames() -> Iterator[Frame]:
        for i in range(12):
            if i == 5:
                champion.set(packages["new"])
            watcher.check_once()  # the poll happens while the line is reading frames
            yield white(i)

    inspector.process(frames(), prefetch=False)  # polls inside the source: their timing must be exact
    assert_switched_once(sink, 12, sha(packages["old"]), sha(packages["new"]))
    assert loader.loaded == [packages["new"]]  # loaded once, not on every poll
    stats = watcher.stats()
    assert (stats.swaps, stats.failed_swaps, stats.current_sha) == (1, 0, sha(packages["new"]))
    assert stats.polls == 12


def test_swap_from_the_background_thread(packages: dict[str, Path]) -> None:
    inspector, sink = line(packages, 2)
    champion = Champion(packages["old"])
    watcher = ModelWatcher(champion, inspector.swap_detector, current_sha=sha(packages["old"]), poll_interval_s=0.01)
    n = 40

    def frames() -> Iterator[Frame]:
        for i in range(n):
            if i == 10:
                champion.set(packages["new"])
            if i == n - 6:  # make sure the swap landed before the last batches
                deadline = time.monotonic() + 20
                while watcher.swaps == 0 and time.monotonic() < deadline:
                    time.sleep(0.01)
            time.sleep(0.002)
            yield white(i)

    watcher.start()
    try:
        inspector.process(frames())
    finally:
        watcher.stop()
    assert_switched_once(sink, n, sha(packages["old"]), sha(packages["new"]))
    assert watcher.swaps == 1 and watcher.failed_swaps == 0 and champion.calls >= 2


def test_a_corrupt_package_is_refused_and_the_old_model_keeps_serving(packages: dict[str, Path],
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    inspector, sink = line(packages, 2)
    old = sha(packages["old"])
    champion, loader = Champion(packages["old"]), CountingLoader()
    swapped: list[OnnxDetector] = []

    def swap(detector: OnnxDetector) -> None:
        swapped.append(detector)
        inspector.swap_detector(detector)

    watcher = ModelWatcher(champion, swap, current_sha=old, loader=loader, retry_after_polls=3)
    champion.set(packages["corrupt"])
    with caplog.at_level("ERROR", logger="inspection.hotswap"):
        assert watcher.check_once() is False
    assert "cannot switch" in caplog.text and "sha256" in caplog.text
    assert watcher.failed_swaps == 1 and watcher.current_sha == old and swapped == []
    inspector.process([white(i) for i in range(4)])
    assert {r.verdict.model_sha256 for r in sink.frames} == {old}

    # the same broken sha is not reloaded on every poll, only after retry_after_polls
    for _ in range(2):
        watcher.check_once()
    assert len(loader.loaded) == 1 and watcher.failed_swaps == 1
    watcher.check_once()
    assert len(loader.loaded) == 2 and watcher.failed_swaps == 2

    # a new (good) champion is tried at once
    champion.set(packages["new"])
    assert watcher.check_once() is True
    assert len(swapped) == 1 and watcher.current_sha == sha(packages["new"]) and watcher.stats().last_error == ""
    inspector.process([white(i) for i in range(4, 8)])
    assert [r.verdict.model_sha256 for r in sink.frames[4:]] == [sha(packages["new"])] * 4


def test_a_package_that_is_not_the_registered_sha_is_refused(packages: dict[str, Path]) -> None:
    swapped: list[OnnxDetector] = []
    watcher = ModelWatcher(lambda: ("f" * 64, packages["new"]), swapped.append, current_sha=sha(packages["old"]))
    assert watcher.check_once() is False
    assert watcher.failed_swaps == 1 and swapped == [] and "registry's champion" in watcher.stats().last_error


def test_warmup_failure_and_lookup_errors_keep_the_old_model(packages: dict[str, Path]) -> None:
    class ColdDetector:
        model_sha256 = sha(packages["new"])

        def warmup(self) -> None:
            raise ModelPackageError("out of memory")

    swapped: list[object] = []
    watcher = ModelWatcher(lambda: (sha(packages["new"]), packages["new"]), swapped.append,
                           current_sha=sha(packages["old"]), loader=lambda _p: ColdDetector())  # type: ignore[arg-type,return-value]
    assert watcher.check_once() is False and watcher.failed_swaps == 1 and swapped == []

    def down() -> tuple[str, Path] | None:
        raise ConnectionError("database unreachable")

    flaky = ModelWatcher(down, swapped.append, current_sha=sha(packages["old"]))
    assert flaky.check_once() is False and flaky.stats().lookup_errors == 1 and swapped == []
    nobody = ModelWatcher(lambda: None, swapped.append, current_sha=sha(packages["old"]))
    assert nobody.check_once() is False and swapped == []


def test_counters_are_consistent_under_concurrent_checks(packages: dict[str, Path]) -> None:
    champion, loader = Champion(packages["new"]), CountingLoader()
    swapped: list[OnnxDetector] = []
    watcher = ModelWatcher(champion, swapped.append, current_sha=sha(packages["old"]), loader=loader)
    threads = [threading.Thread(target=watcher.check_once) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(swapped) == 1 and len(loader.loaded) == 1 and watcher.stats().polls == 8


def test_follows_a_real_registry(packages: dict[str, Path], tmp_path: Path) -> None:
    registry = ModelRegistry.open(f"sqlite:///{tmp_path / 'qcline.db'}", tmp_path / "models")
    try:
        old = registry.register(packages["old"], stage=CHAMPION)
        new = registry.register(packages["new"])
        inspector, sink = line(packages, 2)
        watcher = ModelWatcher(champion_lookup(registry), inspector.swap_detector, current_sha=old.sha256)
        assert watcher.check_once() is False
        registry.promote(new.id, force=True, reason="test")
        assert watcher.check_once() is True
        inspector.process([white(0)])
        assert sink.frames[0].verdict.model_sha256 == new.sha256
        registry.rollback("test", "back")
        assert watcher.check_once() is True and watcher.current_sha == old.sha256
    finally:
        registry.close()
