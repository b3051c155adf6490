"""The line simulator: a moving line for a station under test. It plays the line's PLC (a pymodbus server on
loopback whose holding registers carry the trigger and the station's result handshake), or the MES (an MQTT
publisher), and the line's cameras (RTSP servers on loopback, ``drills.cameras``), while units of the demo
orders pass at a set rate. Every trigger's answer is collected with its latency.

What happens for one unit, as on a conveyor:

1. the unit arrives in front of the cameras: every camera's scene becomes the unit's image of that view
   (a NEU-DET frame; views the unit has no image for show the empty belt);
2. ``settle_s`` later (the part is in place, the photo-eye trips) the PLC writes the unit id into its trigger
   registers and then bumps the trigger counter; the MES instead publishes the trigger JSON;
3. the station answers: result registers with the ready / result_valid / ack handshake (the simulated PLC
   program, ``drills.plc.PlcProgram``, scans its registers every ``scan_s`` and acknowledges, as
   ``inspection/signals/handshake.py`` describes), or the MQTT verdict. The latency is from the moment the
   trigger became readable (the server applied the counter write; the MQTT publish) to the moment the answer
   did (the server applied ``result_valid = 1``; the verdict message arrived).

The unit stays in view until the next one arrives (``60 / rate`` seconds later).

Run it: ``python -m drills.line_simulator --units 10 --rate 60`` (or ``qcline demo --line``) starts the
simulator and a station (``qcline station run`` on the config file it writes), prints each verdict as the line
answers it and a summary. ``bench/line.py`` drives the same pieces at 4 cameras and ramps the rate.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import os
import queue
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from api.cli.calibrate import calibrate_colour, calibrate_scale
from api.cli.station import station_app
from drills.cameras import SceneCamera, blank_frame, open_camera, rtsp_unavailable, scene_frames
from drills.peers import free_port, wait_until
from drills.plc import ModbusMemory, ModbusServer, PlcProgram, ResultStamps, Taken
from inspection.signals.modbus import DEFAULT_REGISTERS, UNIT_ID_WORDS, ascii_words, words_ascii

log = logging.getLogger("drills.line_simulator")

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / "api" / "demo"
NEU_DET = ROOT.parent / "shared" / "datasets" / "neu-det"

RESULT_REGISTERS: dict[str, int] = dict(DEFAULT_REGISTERS)
"""The station's result registers in the simulated PLC: the station's defaults, so neither side configures them."""
TRIGGER_REGISTERS: dict[str, int] = {"counter": 100, "unit_id": 101}
"""Where the PLC announces a unit (the trigger sources' default ``modbus`` layout): the unit id as ASCII, then the
counter + 1. A map with ``order_id`` also writes the order (the station then needs ``registers.order``)."""
RESULT_CODES: dict[int, str] = {1: "PASS", 2: "FAIL", 3: "REVIEW", 4: "ERROR"}


# -- the units ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SimUnit:
    """One unit that passes the station: its order and, per camera view, the image that camera sees."""

    index: int
    unit_id: str
    order_id: str
    views: Mapping[str, Path]
    known: bool = True  # False: a unit the station has no order for (it must still be answered)


@dataclass
class LineAnswer:
    """What the line heard for one trigger."""

    unit_id: str
    verdict: str  # PASS / REVIEW / FAIL / ERROR (or the raw code)
    latency_ms: float | None
    sequence: int = 0
    code: int = 0
    error: int | str = 0
    order_id: str = ""
    channel: str = "modbus"
    received: float = 0.0  # monotonic


@dataclass
class RunReport:
    """Every trigger of a run and what came back."""

    units: list[SimUnit]
    triggered_at: dict[str, float]
    answers: list[LineAnswer]
    budget_ms: float

    def by_unit(self) -> dict[str, list[LineAnswer]]:
        out: dict[str, list[LineAnswer]] = {}
        for a in self.answers:
            out.setdefault(a.unit_id, []).append(a)
        return out

    def figures(self) -> dict[str, Any]:
        by_unit = self.by_unit()
        triggered = [u for u in self.units if u.unit_id in self.triggered_at]
        unanswered = [u.unit_id for u in triggered if u.unit_id not in by_unit]
        doubled = sorted(u for u, a in by_unit.items() if len(a) > 1)
        stray = sorted(u for u in by_unit if u not in self.triggered_at)
        latencies = [a.latency_ms for a in self.answers if a.latency_ms is not None]
        late = [a.unit_id for a in self.answers if a.latency_ms is not None and a.latency_ms > self.budget_ms]
        order = [a.unit_id for a in self.answers if a.unit_id in self.triggered_at]
        expected = [u.unit_id for u in triggered if u.unit_id in by_unit]
        verdicts: dict[str, int] = {}
        for a in self.answers:
            verdicts[a.verdict] = verdicts.get(a.verdict, 0) + 1
        return {"triggers": len(triggered), "answered": len(triggered) - len(unanswered),
                "unanswered": len(unanswered), "unanswered_units": unanswered[:20], "doubled": len(doubled),
                "stray": len(stray), "late": len(late), "late_units": late[:20],
                "in_order": order == expected, "verdicts": verdicts,
                "latency_ms": percentiles(latencies), "budget_ms": self.budget_ms}


def percentiles(values_ms: Sequence[float]) -> dict[str, float | int]:
    """n, p50, p99 and max (nearest rank) of a list of milliseconds."""
    if not values_ms:
        return {"n": 0}
    ordered = sorted(values_ms)

    def rank(q: float) -> float:
        return ordered[max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5))) - 1]

    return {"n": len(ordered), "p50": round(rank(50), 1), "p99": round(rank(99), 1), "max": round(ordered[-1], 1)}


def demo_units(count: int, work: Path, *, run_tag: str | None = None, views: Sequence[str] = ("top", "bottom", "panel"),
               dataset: Path | None = None) -> tuple[list[SimUnit], dict[str, Path]]:
    """``count`` units of the demo orders (``api/demo/manifest.csv``, in its order, again and again), each with
    the manifest's image for each of its views, re-encoded as one JPEG size per camera under ``work``. Unit ids
    are the manifest's plus a run tag and the lap (``U-1001-A-3f2a1``: new units each run, at most 20
    characters as the PLC's registers hold). Returns the units and each camera's empty-belt frame.

    With ``dataset`` (a NEU-DET folder), laps after the first show other NEU-DET images of the same defect class
    on the steel views, so a long run does not judge the same 13 frames over and over."""
    tag = run_tag or secrets.token_hex(2)
    with (DEMO_DIR / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    plan: dict[str, tuple[str, dict[str, Path]]] = {}
    for row in rows:
        unit = plan.setdefault(row["unit_id"], (row["order_id"], {}))
        unit[1][row["camera_id"]] = DEMO_DIR / row["source"]
    extra = _dataset_images(dataset) if dataset else {}
    sizes: dict[str, tuple[int, int]] = {}
    for _, images in plan.values():
        for view, path in images.items():
            sizes.setdefault(view, _size(path))
    blanks = {view: blank_frame(work / view, sizes.get(view, (200, 200))) for view in views}
    units: list[SimUnit] = []
    names = list(plan)
    for i in range(count):
        lap, base = divmod(i, len(names))
        order_id, images = plan[names[base]]
        unit_id = f"{names[base]}-{tag}{lap}"[: 2 * UNIT_ID_WORDS]
        chosen: dict[str, Path] = {}
        for view in views:
            source = images.get(view)
            if source is None:
                continue
            if lap and extra:
                pool = extra.get(source.stem.rsplit("_", 1)[0])
                if pool:
                    source = pool[(lap * 7 + base) % len(pool)]
            chosen[view] = scene_frames([source], work / view / f"u{i:05d}", size=sizes[view])[0]
        units.append(SimUnit(i, unit_id, order_id, chosen))
    return units, blanks


def _size(path: Path) -> tuple[int, int]:
    import cv2

    image = cv2.imread(str(path))
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return int(image.shape[1]), int(image.shape[0])


def _dataset_images(dataset: Path) -> dict[str, list[Path]]:
    folder = dataset / "images" if (dataset / "images").is_dir() else dataset
    pools: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.jpg")):
        pools.setdefault(path.stem.rsplit("_", 1)[0], []).append(path)
    return pools


# -- the PLC ----------------------------------------------------------------------------------------------

class SimulatedPlc:
    """The line's PLC: a pymodbus server holding the trigger registers and the station's result registers,
    the PLC program that takes each result through the handshake (``drills.plc.PlcProgram``), and the writes
    that announce units.

    ``four_step`` (the station's default ``QC_PLC_HANDSHAKE=four-step``): ack = sequence, then ack = 0 once the
    station dropped result_valid. Otherwise (``sequence``) the ack is left in place. Every result taken lands in
    ``answers`` (a queue) with its latency from the trigger of the same unit.
    """

    def __init__(self, *, scan_s: float = 0.002, four_step: bool = True,
                 results: Mapping[str, int] = RESULT_REGISTERS, triggers: Mapping[str, int] = TRIGGER_REGISTERS,
                 codes: Mapping[int, str] = RESULT_CODES) -> None:
        self.results = dict(results)
        self.trigger_map = dict(triggers)
        self.codes = dict(codes)
        self.scan_s = scan_s
        self.four_step = four_step
        self.answers: queue.Queue[LineAnswer] = queue.Queue()
        self.triggered_at: dict[str, float] = {}  # unit id -> monotonic time the counter write was applied
        self.results_seen = ResultStamps(self.results)
        self.valid_at = self.results_seen.valid_at  # sequence -> monotonic time result_valid = 1 was applied
        self._counter = 0
        self._pending_unit = ""
        self._stamps = threading.Lock()
        self.server = ModbusServer(on_write=self._on_write, registers=max(200, max(triggers.values()) + 20))
        self._program: PlcProgram | None = None
        self._memory: ModbusMemory | None = None

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def taken(self) -> int:
        return self._program.taken if self._program is not None else 0

    # inside the server, as each write is applied (the moment any client can read it)
    def _on_write(self, address: int, values: list[int]) -> None:
        now = time.monotonic()
        self.results_seen(address, values)
        counter = self.trigger_map["counter"]
        with self._stamps:
            if address <= counter < address + len(values) and self._pending_unit:
                self.triggered_at.setdefault(self._pending_unit, now)

    def __enter__(self) -> SimulatedPlc:
        self.server.__enter__()
        self._memory = ModbusMemory(self.port, self.results)
        self._program = PlcProgram(self.port, self._took, scan_s=self.scan_s, four_step=self.four_step,
                                   registers=self.results)
        self._program.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._program is not None:
            self._program.__exit__(*exc)
        if self._memory is not None:
            self._memory.close()
        self.server.__exit__(*exc)

    def _took(self, taken: Taken) -> None:
        """A result the PLC program took: with its latency from the moment the same unit's trigger was readable
        to the moment its result_valid = 1 was."""
        at = self.results_seen.get(taken.sequence)
        with self._stamps:
            since = self.triggered_at.get(taken.unit_id)
        latency = (at - since) * 1000 if at is not None and since is not None else None
        self.answers.put(LineAnswer(taken.unit_id, self.codes.get(taken.code, str(taken.code)), latency,
                                    taken.sequence, taken.code, taken.error, received=at or taken.seen_at))

    def _plc_memory(self) -> ModbusMemory:
        if self._memory is None:
            raise RuntimeError("the simulated PLC is not running (use it as a context manager)")
        return self._memory

    def trigger(self, unit_id: str, order_id: str | None = None) -> None:
        """Announce a unit: its id (and order) into the trigger registers, then counter + 1 in its own write."""
        t, memory = self.trigger_map, self._plc_memory()
        memory.write_words(t["unit_id"], ascii_words(unit_id))
        if "order_id" in t and order_id:
            memory.write_words(t["order_id"], ascii_words(order_id))
        self._counter = self._counter % 65535 + 1
        with self._stamps:
            self._pending_unit = unit_id
        memory.write_words(t["counter"], [self._counter])

    def read(self, name: str) -> int | str:
        """A register of the PLC's memory by its result or trigger name (``unit_id`` as text)."""
        memory = self._plc_memory()
        if name in memory.registers:
            return memory.read(name)
        address = self.trigger_map.get(name)
        if address is None:
            raise KeyError(name)
        if name == "order_id":
            return words_ascii(memory.read_words(address, UNIT_ID_WORDS))
        return memory.read_words(address)[0]


# -- the MES ----------------------------------------------------------------------------------------------

class SimulatedMes:
    """The MES on MQTT: publishes each trigger as JSON on ``trigger_topic`` and listens for verdicts under
    ``verdict_topic`` (a filter); ``parse_verdict(topic, payload)`` turns a message into (unit_id, verdict)."""

    def __init__(self, host: str, port: int, *, trigger_topic: str, verdict_topic: str,
                 trigger_payload: Callable[[SimUnit], dict[str, Any]] | None = None) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.trigger_topic = trigger_topic
        self.verdict_topic = verdict_topic
        self.answers: queue.Queue[LineAnswer] = queue.Queue()
        self.triggered_at: dict[str, float] = {}
        self.probe_prefix = f"PROBE-{secrets.token_hex(3)}-"
        self.probes_answered: set[str] = set()
        self._probes = 0
        self._payload = trigger_payload or (lambda u: {"trigger_id": f"T-{u.unit_id}", "unit_id": u.unit_id})
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"qcline-sim-mes-{secrets.token_hex(4)}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.host, self.port = host, port

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        now = time.monotonic()
        try:
            payload = json.loads(message.payload)
        except ValueError:
            log.warning("MES: not JSON on %s", message.topic)
            return
        if not isinstance(payload, dict) or "unit_id" not in payload:
            return
        unit = str(payload["unit_id"])
        if unit.startswith(self.probe_prefix):
            self.probes_answered.add(unit)
            return
        since = self.triggered_at.get(unit)
        verdict = str(payload.get("verdict") or "ERROR")  # an answer without a verdict says why in error
        error = "" if payload.get("verdict") else str(payload.get("error") or payload.get("outcome") or "")
        self.answers.put(LineAnswer(unit, verdict, (now - since) * 1000 if since is not None else None,
                                    error=error, order_id=str(payload.get("order_id") or ""),
                                    channel="mqtt", received=now))

    def __enter__(self) -> SimulatedMes:
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        self.client.subscribe(self.verdict_topic, qos=1)
        if not self._subscribed.wait(10):
            raise RuntimeError(f"MES: no SUBACK from the broker at {self.host}:{self.port}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def trigger(self, unit: SimUnit) -> None:
        self.triggered_at[unit.unit_id] = time.monotonic()
        self.client.publish(self.trigger_topic, json.dumps(self._payload(unit)), qos=1)

    def probe(self) -> None:
        """A trigger for a unit no order has: the station answers it (an error) once it listens to the topic, which
        is how the MES knows its triggers are heard. Its answer never joins ``answers``."""
        self._probes += 1
        unit = f"{self.probe_prefix}{self._probes}"
        self.client.publish(self.trigger_topic, json.dumps({"trigger_id": f"T-{unit}", "unit_id": unit}), qos=1)


# -- the line ---------------------------------------------------------------------------------------------

@dataclass
class Line:
    """The cameras (by view name) and the trigger channel of one simulated line."""

    cameras: dict[str, SceneCamera]
    blanks: dict[str, Path]
    rtsp: bool
    channel: SimulatedPlc | SimulatedMes
    fallback_note: str = ""
    shown_at: dict[str, float] = field(default_factory=dict)

    def show(self, unit: SimUnit) -> None:
        for view, camera in self.cameras.items():
            camera.show([unit.views.get(view, self.blanks[view])])
        self.shown_at[unit.unit_id] = time.monotonic()

    def trigger(self, unit: SimUnit) -> None:
        if isinstance(self.channel, SimulatedPlc):
            self.channel.trigger(unit.unit_id, None)
        else:
            self.channel.trigger(unit)

    @property
    def answers(self) -> queue.Queue[LineAnswer]:
        return self.channel.answers

    @property
    def triggered_at(self) -> dict[str, float]:
        return self.channel.triggered_at


@contextlib.contextmanager
def open_cameras(blanks: Mapping[str, Path], *, fps: int = 25, rtsp: bool | None = None
                 ) -> Iterator[tuple[dict[str, SceneCamera], bool, str]]:
    """One scene camera per view, started on its empty belt: RTSP where GStreamer's server runs, else the MJPEG
    fallback (the third item says so in one line)."""
    note = ""
    if rtsp is None:
        why = rtsp_unavailable()
        rtsp = why is None
        if why is not None:
            note = f"no RTSP camera here ({why}): the cameras are HTTP MJPEG streams served in-process instead"
    cameras: dict[str, SceneCamera] = {}
    try:
        for view, blank in blanks.items():
            camera = open_camera([blank], fps=fps, mount=f"/{view}", rtsp=rtsp)
            camera.start()
            cameras[view] = camera
        yield cameras, rtsp, note
    finally:
        for camera in cameras.values():
            with contextlib.suppress(Exception):
                camera.stop()


def run_units(line: Line, units: Sequence[SimUnit], *, rate_per_min: float, settle_s: float = 0.3,
              answer_timeout_s: float = 10.0, budget_ms: float = 1500.0,
              on_answer: Callable[[LineAnswer, SimUnit | None], None] | None = None,
              stop: threading.Event | None = None) -> RunReport:
    """Let ``units`` pass at ``rate_per_min``: each is shown, triggered ``settle_s`` later, and the next arrives
    ``60 / rate`` s after it (an absolute schedule, so a slow answer never slows the line). Answers are
    collected while the line runs, then for up to ``answer_timeout_s`` after the last trigger."""
    period = 60.0 / rate_per_min
    if settle_s >= period:
        raise ValueError(f"settle_s ({settle_s}) must be shorter than the unit period ({period:.3f} s)")
    by_id = {u.unit_id: u for u in units}
    answers: list[LineAnswer] = []

    def collect(until: float) -> None:
        while True:
            left = until - time.monotonic()
            try:
                answer = line.answers.get(timeout=max(0.0, min(left, 0.05)))
            except queue.Empty:
                if time.monotonic() >= until:
                    return
                continue
            unit = by_id.get(answer.unit_id)
            if unit is not None:
                answer.order_id = answer.order_id or unit.order_id
            answers.append(answer)
            if on_answer is not None:
                on_answer(answer, unit)

    start = time.monotonic() + 0.2
    for k, unit in enumerate(units):
        if stop is not None and stop.is_set():
            break
        collect(start + k * period)
        line.show(unit)
        collect(start + k * period + settle_s)
        line.trigger(unit)
    deadline = time.monotonic() + answer_timeout_s
    triggered = [u.unit_id for u in units if u.unit_id in line.triggered_at]
    while time.monotonic() < deadline:
        if {a.unit_id for a in answers} >= set(triggered):
            collect(time.monotonic() + 0.3)  # a doubled answer would come right behind
            break
        collect(min(deadline, time.monotonic() + 0.1))
    return RunReport(list(units), dict(line.triggered_at), answers, budget_ms)


# -- the station under test ------------------------------------------------------------------------------

def station_config(path: Path, *, station: str, cameras: Mapping[str, str], triggers: Sequence[Mapping[str, Any]],
                   frame_wait_ms: float = 800.0, answer_within_ms: float = 1500.0, policy: str = "first",
                   extra: Mapping[str, Any] | None = None) -> Path:
    """Write the station configuration file (``QC_STATION_CONFIG``) of the station under test."""
    import yaml

    document: dict[str, Any] = {
        "station": station,
        "capture": {"policy": policy},
        "budgets": {"frame_wait_ms": frame_wait_ms, "answer_within_ms": answer_within_ms},
        "cameras": [{"name": view, "url": url} for view, url in cameras.items()],
        "triggers": [dict(t) for t in triggers],
        **(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def modbus_trigger(port: int, plc: SimulatedPlc, *, poll_ms: float = 10.0, name: str = "plc") -> dict[str, Any]:
    """The ``triggers:`` entry that points the station at the simulated PLC (``inspection.line.sources``'s
    ``modbus`` kind): counter mode, the unit as ASCII, the results through the four-step handshake unless the
    PLC plays the sequence one."""
    t = plc.trigger_map
    return {"kind": "modbus", "name": name, "host": "127.0.0.1", "port": port, "mode": "counter",
            "poll_ms": poll_ms, "registers": {"trigger": t["counter"], "unit": t["unit_id"]},
            "unit_format": "ascii", "unit_words": UNIT_ID_WORDS,
            "results": {"handshake": "four-step" if plc.four_step else "sequence", "poll_ms": 2.0,
                        "registers": {k: v for k, v in plc.results.items() if k in DEFAULT_REGISTERS}}}


def mqtt_trigger(url: str, topic_prefix: str, name: str = "mes") -> dict[str, Any]:
    """The ``triggers:`` entry for the simulated MES: triggers on ``<prefix>/<station>/trigger``, answers on
    ``<prefix>/<station>/trigger/answer``."""
    return {"kind": "mqtt", "name": name, "url": url, "topic_prefix": topic_prefix}


def register_units(settings: Any, units: Sequence[SimUnit]) -> None:
    """Import the demo order book into the station's store and open the run's units under their orders, as the
    MES releases a production plan: the PLC only knows the unit, the station looks its order up."""
    from inspection.profiles import load_order_book
    from inspection.store.repository import ResultsStore

    store = ResultsStore.open(settings.resolved_database_url, settings.data_dir / "frames",
                              station_id=settings.station_id)
    try:
        store.import_order_book(load_order_book(DEMO_DIR / "orders.yaml"))
        for unit in units:
            if unit.known:
                store.ensure_unit(unit.unit_id, unit.order_id)
    finally:
        store.close()


def print_answer(answer: LineAnswer, unit: SimUnit | None, out: Any = sys.stdout) -> None:
    latency = f"{answer.latency_ms:7.1f} ms" if answer.latency_ms is not None else "      ? ms"
    order = unit.order_id if unit else answer.order_id or "?"
    extra = f"  (error {answer.error})" if answer.error not in (0, "", None) else ""
    out.write(f"  {answer.unit_id:<20} {order:<12} {answer.verdict:<7} {latency}{extra}\n")
    out.flush()


# -- the demo: simulator + a real station process ------------------------------------------------------

DEMO_VIEWS = ("top", "bottom", "panel")
BROKER = ("127.0.0.1", 1883)


class StationError(RuntimeError):
    """The station under test did not start or died: no figures."""


def _die_with_parent() -> None:
    """In the station's child process: SIGTERM when the simulator dies (Linux), so no station outlives a crash."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def station_command(config: Path) -> list[str]:
    """``qcline station run --config <config>`` where this install has it, else ``qcline serve`` on a free
    loopback port with ``QC_STATION_CONFIG`` (the service runs the same line station once its model is loaded)."""
    if any(c.name == "run" for c in station_app.registered_commands):
        return [sys.executable, "-m", "api.cli", "station", "run", "--config", str(config)]
    return [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(free_port()),
            "--log-level", "warning"]


@contextlib.contextmanager
def station_process(config: Path, env: Mapping[str, str], *, log_path: Path, ready: Callable[[], bool],
                    timeout_s: float = 120.0) -> Iterator[subprocess.Popen[bytes]]:
    """The station under test as a subprocess on ``config`` (its output to ``log_path``), up once ``ready()``
    holds; stopped with SIGINT (then SIGTERM / SIGKILL) on exit."""
    env = {**os.environ, **env, "QC_STATION_CONFIG": str(config)}
    command = station_command(config)
    log.info("station under test: %s", " ".join(command[1:]))
    out = log_path.open("wb")
    process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                               preexec_fn=_die_with_parent)
    try:
        if not wait_until(lambda: process.poll() is not None or ready(), timeout_s, 0.1) or process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise StationError(f"the station did not come up (exit {process.poll()}); its log ends:\n{tail}")
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
        out.close()


def calibrate_panel(data_dir: Path) -> None:
    """The demo's panel camera calibrated as ``qcline demo`` does it (colour from the white tile, px/mm from the
    checkerboard), so the painted doors are judged on colour and size, not sent to review as uncalibrated."""
    frames = DEMO_DIR / "frames"
    with contextlib.redirect_stdout(io.StringIO()):  # the commands' own confirmation lines
        calibrate_colour(frames / "calib_white.png", camera="panel", patch="0.02,0.025,0.095,0.1",
                         reference="Lab(90, 0, 0)", actor="demo", data_dir=data_dir)
        calibrate_scale(frames / "calib_checkerboard.png", camera="panel", checkerboard="7x5", square_mm=40.0,
                        actor="demo", data_dir=data_dir)


def summary_lines(report: RunReport, *, rate: float, rtsp: bool) -> list[str]:
    f = report.figures()
    lat = f["latency_ms"]
    counts = ", ".join(f"{k} {v}" for k, v in sorted(f["verdicts"].items()))
    lines = [f"{f['answered']} of {f['triggers']} units answered ({counts}) at {rate:g} units/min over "
             f"{'RTSP' if rtsp else 'HTTP MJPEG'} cameras"]
    if lat.get("n"):
        lines.append(f"trigger -> answer: p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms "
                     f"(budget {f['budget_ms']:g} ms, {f['late']} late)")
    problems = [f"{f['unanswered']} never answered" if f["unanswered"] else "",
                f"{f['doubled']} answered twice" if f["doubled"] else "",
                "answers out of order" if not f["in_order"] else ""]
    lines.extend(p for p in problems if p)
    return lines


def run_demo(*, units: int = 10, rate: float = 60.0, settle_s: float = 0.3, fps: int = 25,
             data_dir: Path | None = None, as_json: bool = False, channel: str = "modbus",
             work_dir: Path | None = None, rtsp: bool | None = None, out: TextIO = sys.stdout,
             err: TextIO = sys.stderr) -> int:
    """The whole demo; returns the exit code (0: every unit answered once, in order)."""
    from inspection.settings import load_settings

    settings = load_settings(data_dir=data_dir) if data_dir else load_settings()
    env = {"QC_DATA_DIR": str(settings.data_dir)}
    with contextlib.ExitStack() as keep:
        work = work_dir or Path(keep.enter_context(tempfile.TemporaryDirectory(prefix="qcline-line-")))
        work.mkdir(parents=True, exist_ok=True)
        dataset = NEU_DET if (NEU_DET / "images").is_dir() else None
        plan, blanks = demo_units(units, work / "frames", views=DEMO_VIEWS, dataset=dataset)
        err.write(f"qcline demo --line: {units} units of the demo orders at {rate:g}/min, "
                  f"frames from {'NEU-DET (' + str(dataset) + ')' if dataset else 'the bundled demo frames'}, "
                  f"data {settings.data_dir}\n")
        register_units(settings, plan)
        calibrate_panel(settings.data_dir)
        try:
            report, rtsp = run_line(plan, blanks, env, work, rate=rate, settle_s=settle_s, fps=fps, out=out,
                                    err=err, channel=channel, rtsp=rtsp)
        except StationError as e:
            err.write(f"error: {e}\n")
            return 2
    f = report.figures()
    if as_json:
        out.write(json.dumps({"demo": "line", "rtsp": rtsp, "rate_per_min": rate, **f}) + "\n")
    else:
        for line in summary_lines(report, rate=rate, rtsp=rtsp):
            out.write(line + "\n")
    return 0 if f["unanswered"] == 0 and f["doubled"] == 0 and f["in_order"] else 1


def run_line(plan: Sequence[SimUnit], blanks: Mapping[str, Path], env: Mapping[str, str], work: Path, *,
             rate: float, settle_s: float = 0.3, fps: int = 25, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
             rtsp: bool | None = None, channel: str = "modbus", broker: tuple[str, int] = BROKER,
             station: str = "demo-line") -> tuple[RunReport, bool]:
    """Cameras per view and the simulated PLC (``channel="modbus"``) or MES (``"mqtt"``, on ``broker`` under a
    topic prefix of its own) up, the station config written, ``qcline station run`` started on it (``env`` names
    its data dir), the units passed at ``rate``; each answer printed to ``out``."""
    with contextlib.ExitStack() as stack:
        cameras, rtsp, note = stack.enter_context(open_cameras(blanks, fps=fps, rtsp=rtsp))
        if note:
            err.write(note + "\n")
        if channel == "modbus":
            plc = stack.enter_context(SimulatedPlc())
            trigger: dict[str, Any] = modbus_trigger(plc.port, plc)
            sim: SimulatedPlc | SimulatedMes = plc

            def channel_ready() -> bool:
                return plc.read("ready") == 1
        elif channel == "mqtt":
            prefix = f"qcsim/{secrets.token_hex(6)}"
            base = f"{prefix}/{station}"
            mes = stack.enter_context(SimulatedMes(*broker, trigger_topic=f"{base}/trigger",
                                                   verdict_topic=f"{base}/trigger/answer"))
            sim = mes
            trigger = mqtt_trigger(f"mqtt://{broker[0]}:{broker[1]}", prefix)

            probed = [0.0]

            def channel_ready() -> bool:  # the station answers a probe trigger: it hears the topic
                if mes.probes_answered:
                    return True
                if time.monotonic() - probed[0] > 1.0:
                    mes.probe()
                    probed[0] = time.monotonic()
                return False
        else:
            raise ValueError(f"channel must be modbus or mqtt, not {channel!r}")
        config = station_config(work / "station.yaml", station=station,
                                cameras={view: camera.url for view, camera in cameras.items()}, triggers=[trigger])

        def ready() -> bool:
            return channel_ready() and all(c.clients() > 0 for c in cameras.values())

        stack.enter_context(station_process(config, env, log_path=work / "station.log", ready=ready))
        time.sleep(0.5)  # the first frames decoded on every camera
        out.write(f"  {'unit':<20} {'order':<12} {'verdict':<7} {'latency':>10}\n")
        line = Line(cameras, dict(blanks), rtsp, sim, note)
        report = run_units(line, plan, rate_per_min=rate, settle_s=settle_s,
                           on_answer=lambda a, u: print_answer(a, u, out))
    return report, rtsp


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drills.line_simulator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=10)
    parser.add_argument("--rate", type=float, default=60.0, help="units per minute")
    parser.add_argument("--settle", type=float, default=0.3, help="seconds from a unit in view to its trigger")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--channel", choices=("modbus", "mqtt"), default="modbus",
                        help="the trigger channel: the PLC's registers, or the MES on MQTT (127.0.0.1:1883)")
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the station config, its log and the camera frames here (default: a temp folder)")
    parser.add_argument("--mjpeg", action="store_true",
                        help="HTTP MJPEG cameras even where GStreamer's RTSP server runs (the fallback)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    args = parser.parse_args(argv)
    return run_demo(units=args.units, rate=args.rate, settle_s=args.settle, fps=args.fps, data_dir=args.data_dir,
                    as_json=args.json, channel=args.channel, work_dir=args.work,
                    rtsp=False if args.mjpeg else None)


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("QC_LOG_LEVEL", "WARNING"), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
