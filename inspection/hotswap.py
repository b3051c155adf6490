"""Follow the registry's champion on a running station, swapping models without stopping the line.

The station must never serve a model that has not been verified and warmed up, and a broken new
champion must never take a working line down. So the watcher loads the new package off the inference
path (``OnnxDetector.from_package`` re-checks its sha256 on the bytes that create the session), warms it
up, and only then hands it to ``Inspector.swap_detector``, which switches between two batches: every
frame is judged exactly once, by exactly one model. If loading fails the old model keeps serving and the
failure is counted; the same broken sha is retried only every ``retry_after_polls`` polls (a package
copy that was still being written may heal), a different sha at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from inspection.detector import OnnxDetector

log = logging.getLogger(__name__)

ChampionLookup = Callable[[], tuple[str, Path] | None]
"""Returns the champion's ``(sha256, package folder)``, or ``None`` when there is no champion."""


class _RegisteredLike(Protocol):
    @property
    def sha256(self) -> str: ...

    @property
    def path(self) -> Path: ...


class _RegistryLike(Protocol):
    def champion(self) -> _RegisteredLike | None: ...


def champion_lookup(registry: _RegistryLike) -> ChampionLookup:
    """Adapt a ``models.registry.ModelRegistry`` (or anything with ``champion()``) to a ``ChampionLookup``."""

    def lookup() -> tuple[str, Path] | None:
        champion = registry.champion()
        return None if champion is None else (champion.sha256, Path(champion.path))

    return lookup


@dataclass(frozen=True)
class WatcherStats:
    """A consistent copy of the watcher's counters (read under its lock)."""

    current_sha: str
    polls: int
    swaps: int
    failed_swaps: int
    lookup_errors: int
    last_error: str


class ModelWatcher:
    """Polls ``registry_lookup`` and swaps the inspector's detector when the champion changes.

    ``check_once`` can be called directly (tests, a "reload now" endpoint) or from the daemon thread
    ``start`` runs; checks never overlap, and the counters are safe to read from any thread.
    """

    def __init__(self, registry_lookup: ChampionLookup, inspector_swap: Callable[[OnnxDetector], None], *,
                 current_sha: str, loader: Callable[[Path], OnnxDetector] = OnnxDetector.from_package,
                 poll_interval_s: float = 2.0, retry_after_polls: int = 30) -> None:
        self._lookup = registry_lookup
        self._swap = inspector_swap
        self._loader = loader
        self.poll_interval_s = max(0.01, poll_interval_s)
        self.retry_after_polls = max(1, retry_after_polls)
        self._check_lock = threading.Lock()  # one check at a time: never load the same model twice at once
        self._stats_lock = threading.Lock()
        self._current_sha = current_sha
        self._polls = self._swaps = self._failed_swaps = self._lookup_errors = 0
        self._last_error = ""
        self._failed_sha: str | None = None
        self._failed_at_poll = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- counters -------------------------------------------------------------------------------------

    @property
    def current_sha(self) -> str:
        with self._stats_lock:
            return self._current_sha

    @property
    def swaps(self) -> int:
        with self._stats_lock:
            return self._swaps

    @property
    def failed_swaps(self) -> int:
        with self._stats_lock:
            return self._failed_swaps

    def stats(self) -> WatcherStats:
        with self._stats_lock:
            return WatcherStats(self._current_sha, self._polls, self._swaps, self._failed_swaps, self._lookup_errors,
                                self._last_error)

    # -- one poll -------------------------------------------------------------------------------------

    def check_once(self) -> bool:
        """Look up the champion once; returns True when a new model was handed to the inspector."""
        with self._check_lock:
            with self._stats_lock:
                self._polls += 1
                poll = self._polls
            try:
                found = self._lookup()
            except Exception as e:  # a database hiccup must not stop the station or the watcher
                with self._stats_lock:
                    self._lookup_errors += 1
                    self._last_error = f"champion lookup failed: {e}"
                log.warning("champion lookup failed (still serving %s): %s", self._current_sha[:12], e)
                return False
            if found is None:
                return False
            sha, path = found
            if sha == self._current_sha:
                return False
            if sha == self._failed_sha and poll - self._failed_at_poll < self.retry_after_polls:
                return False  # known broken: do not reload (and log) it on every poll
            return self._load_and_swap(sha, Path(path), poll)

    def _load_and_swap(self, sha: str, path: Path, poll: int) -> bool:
        log.info("champion changed %s -> %s: loading %s", self._current_sha[:12], sha[:12], path)
        try:
            detector = self._loader(path)
            if detector.model_sha256 != sha:
                raise ValueError(f"package at {path} holds model {detector.model_sha256[:12]}, "
                                 f"but the registry's champion is {sha[:12]}")
            detector.warmup()
        except Exception as e:  # any failure (bad sha256, onnxruntime, warmup) keeps the old model serving
            with self._stats_lock:
                self._failed_swaps += 1
                self._last_error = f"model {sha[:12]} from {path}: {e}"
            self._failed_sha, self._failed_at_poll = sha, poll
            log.error("cannot switch to champion %s from %s; still serving %s (retry in %d polls): %s",
                      sha[:12], path, self._current_sha[:12], self.retry_after_polls, e, exc_info=True)
            return False
        self._swap(detector)
        with self._stats_lock:
            self._current_sha = sha
            self._swaps += 1
            self._last_error = ""
        self._failed_sha = None
        log.info("model %s verified and warmed up; it serves from the next batch", sha[:12])
        return True

    # -- background thread ------------------------------------------------------------------------------

    def start(self) -> None:
        """Check now, then every ``poll_interval_s``, in a daemon thread (so it never blocks shutdown)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="qcline-model-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop polling; waits for a load in progress (at most ``timeout`` seconds)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_once()
            except Exception:  # e.g. inspector_swap raised: log it, keep watching
                log.exception("model watcher check failed")
            if self._stop.wait(self.poll_interval_s):
                break
