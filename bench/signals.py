"""Line-signal latency: from a unit verdict handed to the sinks to the message at an MQTT subscriber on the
broker, and to the result being readable in the PLC's registers (pymodbus server), at N cameras' rate.

Prints one JSON line on stdout; progress goes to stderr.

Method: one process holds the station's sinks as ``build_line_signals`` makes them (``MqttSink`` with its
SQLite spool in a temporary data dir, ``PlcOutput`` over ``ModbusBackend``), the peers, and the clock:

* the far side (subscriber, PLC server, PLC program) runs in a second process, as it would on other
  machines, so it does not share the station's interpreter lock; both processes stamp with
  ``time.monotonic`` (CLOCK_MONOTONIC, one clock for the whole machine);
* a feeder thread plays ``--cameras`` cameras at ``--fps`` each: every frame goes to both sinks'
  ``submit`` (``--fail-ratio`` of them FAIL, so frame events are published too), and every ``--views``-th
  frame completes a unit whose verdict goes to ``submit_unit_verdict`` of the MQTT sink then the PLC sink,
  as the ``Inspector`` calls its sinks; the time just before that hand-over is the start;
* MQTT: a paho subscriber on the Mosquitto at 127.0.0.1:1883 (a unique topic prefix per run) stamps each
  unit verdict as it arrives;
* Modbus: a pymodbus TCP server on a free loopback port stamps the moment the station's ``result_valid = 1``
  write is applied (the result is readable from then on); a simulated PLC (``drills.plc.PlcProgram``: a
  Modbus client in its own thread, scanning every ``--plc-scan-ms``) runs the handshake, and its own first
  sight of each result is reported too (``plc_seen``: includes its scan time);
* the peer, measured in the same run: the same rate of QoS 1 messages published straight through a plain
  paho client (no spool, no sink) to the same subscriber: ``mqtt_direct``; ``mqtt_vs_direct_p99`` is the
  ratio. ``submit_ms`` is what a unit verdict costs the inspection thread in the MQTT sink (the spool write).

Target: p99 under 100 ms at 8 cameras. Caveats: the subscriber, the broker, the PLC and the station share
the machine; loopback hides network latency; other processes running at the same time skew everything
(``loadavg`` is printed).

Usage: python bench/signals.py [--cameras 8] [--fps 10] [--views 1] [--seconds 20] [--fail-ratio 0.1]
                               [--plc-scan-ms 2] [--handshake four-step|sequence]
                               [--plc-poll-ms 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from drills.peers import wait_until  # noqa: E402
from drills.plc import ModbusServer, PlcProgram, ResultStamps  # noqa: E402
from inspection.settings import load_settings  # noqa: E402
from inspection.signals import build_line_signals, close_line_signals  # noqa: E402
from inspection.signals.handshake import PlcOutput  # noqa: E402
from inspection.signals.mqtt import MqttSink  # noqa: E402
from inspection.types import Verdict  # noqa: E402
from tests.inspection.signals.peers import BROKER_HOST, BROKER_PORT, broker_reachable  # noqa: E402
from tests.inspection.signals.records import frame_result, unit_verdict  # noqa: E402


def percentiles(values_s: list[float]) -> dict[str, float | int]:
    if not values_s:
        return {"n": 0}
    ms = sorted(v * 1000 for v in values_s)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
    return {"n": len(ms), "p50_ms": round(q[49], 2), "p99_ms": round(q[98], 2), "max_ms": round(ms[-1], 2)}


class Stamps:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[object, float] = {}

    def put(self, key: object, when: float | None = None) -> None:
        with self.lock:
            self.values.setdefault(key, time.monotonic() if when is None else when)


def subscriber(topic: str, stamps: Stamps, direct: Stamps) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{secrets.token_hex(4)}")
    subscribed = threading.Event()

    def on_message(c: paho.Client, u: object, message: paho.MQTTMessage) -> None:
        now = time.monotonic()
        if message.topic.endswith("/verdict"):
            stamps.put(json.loads(message.payload)["unit_id"], now)
        elif "/direct/" in message.topic:
            direct.put(int(message.topic.rsplit("/", 1)[1]), now)

    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect(BROKER_HOST, BROKER_PORT)
    client.loop_start()
    client.subscribe(topic, qos=1)
    subscribed.wait(5)
    return client


def paced(n: int, rate: float, body: object) -> None:
    """Call ``body(i)`` for i in 0..n-1 at ``rate`` per second on an absolute schedule (no drift)."""
    start = time.monotonic()
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        body(i)  # type: ignore[operator]


def run_direct(prefix: str, n: int, rate: float, sent: dict[int, float]) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-direct-{secrets.token_hex(4)}")
    client.connect(BROKER_HOST, BROKER_PORT)
    client.loop_start()

    def send(i: int) -> None:
        sent[i] = time.monotonic()
        client.publish(f"{prefix}/direct/{i}", b'{"unit_id":"x"}', qos=1)

    paced(n, rate, send)
    time.sleep(1)
    client.loop_stop()
    client.disconnect()


def peers(prefix: str, scan_s: float, clear_ack: bool, conn: Connection) -> None:
    """The far side, in its own process as it would be on its own machines: the MQTT subscriber, the PLC's
    Modbus server and the simulated PLC program. Sends the Modbus port, then on request every stamp."""
    mqtt_seen, direct_seen, plc_seen = Stamps(), Stamps(), Stamps()
    valid_at = ResultStamps()  # inside the Modbus server, as the station's result_valid = 1 write applies
    sub = subscriber(f"{prefix}/#", mqtt_seen, direct_seen)
    with ModbusServer(on_write=valid_at) as server, PlcProgram(
            server.port, lambda taken: plc_seen.put(taken.sequence, taken.seen_at), scan_s=scan_s,
            four_step=clear_ack):
        conn.send(server.port)
        conn.recv()  # the station is done
    sub.loop_stop()
    sub.disconnect()
    conn.send({"valid": valid_at.valid_at, **{name: stamps.values for name, stamps in
                                              (("mqtt", mqtt_seen), ("direct", direct_seen), ("plc", plc_seen))}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second per camera")
    parser.add_argument("--views", type=int, default=1, help="frames per unit (each unit's last frame completes it)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fail-ratio", type=float, default=0.1)
    parser.add_argument("--plc-scan-ms", type=float, default=2.0)
    parser.add_argument("--handshake", choices=("four-step", "sequence"), default="four-step")
    parser.add_argument("--plc-poll-ms", type=float, default=2.0, help="the station's QC_PLC_POLL_MS")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if not broker_reachable():
        sys.exit(f"no MQTT broker on {BROKER_HOST}:{BROKER_PORT}: start Mosquitto first")

    frame_rate = args.cameras * args.fps
    frames = int(frame_rate * args.seconds)
    units = frames // args.views
    prefix = f"qcbench/{secrets.token_hex(6)}"
    handed: dict[str, float] = {}
    submit_cost: list[float] = []
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    far = multiprocessing.get_context("spawn").Process(target=peers,
                                                       args=(prefix, args.plc_scan_ms / 1000,
                                                             args.handshake == "four-step", theirs),
                                                       daemon=True)
    far.start()
    modbus_port = ours.recv()
    direct_sent: dict[int, float] = {}
    direct_n = min(units, int(frame_rate / args.views * 5))
    print(f"peer: {direct_n} direct QoS 1 publishes at {frame_rate / args.views:.0f}/s", file=sys.stderr)
    run_direct(prefix, direct_n, frame_rate / args.views, direct_sent)

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp), station_id="bench", mqtt_url=f"mqtt://{BROKER_HOST}:{BROKER_PORT}",
                                 mqtt_topic_prefix=prefix, modbus_host="127.0.0.1", modbus_port=modbus_port,
                                 plc_ack_timeout_s=5.0, plc_max_pending=10_000, plc_handshake=args.handshake,
                                 plc_poll_ms=args.plc_poll_ms)
        signals = build_line_signals(settings)
        mqtt = next(s for s in signals if isinstance(s, MqttSink))
        plc = next(s for s in signals if isinstance(s, PlcOutput))
        wait_until(lambda: mqtt.stats().connected and plc.stats().connected, 15)
        print(f"station: {args.cameras} cameras x {args.fps} fps, {units} units over {args.seconds} s",
              file=sys.stderr)
        every_fail = max(1, round(1 / args.fail_ratio)) if args.fail_ratio > 0 else 0

        def frame(i: int) -> None:
            unit = f"U{i // args.views}"
            verdict = Verdict.FAIL if every_fail and i % every_fail == 0 else Verdict.PASS
            result = frame_result(unit, verdict, camera_id=f"cam{i % args.cameras}")
            for s in signals:
                s.submit(result)
            if (i + 1) % args.views == 0:
                v = unit_verdict(unit, verdict)
                t0 = time.monotonic()
                handed[unit] = t0
                mqtt.submit_unit_verdict(v)
                submit_cost.append(time.monotonic() - t0)
                plc.submit_unit_verdict(v)

        paced(frames, frame_rate, frame)
        wait_until(lambda: mqtt.stats().published >= units + frames // max(every_fail, 1) * bool(every_fail)
                   and plc.stats().acknowledged >= units, 30)
        time.sleep(0.5)
        plc_stats = plc.stats()
        close_line_signals(signals)
    ours.send("done")
    stamps = ours.recv()
    far.join(10)

    order = [f"U{k}" for k in range(units)]  # presented in order: sequence k+1 is unit k
    mqtt_seen, valid_at, plc_seen, direct_seen = stamps["mqtt"], stamps["valid"], stamps["plc"], stamps["direct"]
    mqtt_lat = [mqtt_seen[u] - handed[u] for u in order if u in mqtt_seen]
    reg_lat = [valid_at[k + 1] - handed[u] for k, u in enumerate(order) if k + 1 in valid_at]
    seen_lat = [plc_seen[k + 1] - handed[u] for k, u in enumerate(order) if k + 1 in plc_seen]
    direct_lat = [direct_seen[i] - t for i, t in direct_sent.items() if i in direct_seen]
    mqtt_p, direct_p = percentiles(mqtt_lat), percentiles(direct_lat)
    reg_p = percentiles(reg_lat)
    figures = {
        "bench": "signals", "cameras": args.cameras, "fps_per_camera": args.fps, "views_per_unit": args.views,
        "units_per_s": round(frame_rate / args.views, 1), "units": units,
        "mqtt": {**mqtt_p, "received": len(mqtt_seen), "expected": units},
        "mqtt_direct": {**direct_p, "sent": len(direct_sent)},
        "mqtt_vs_direct_p99": round(float(mqtt_p.get("p99_ms", 0)) / float(direct_p["p99_ms"]), 2)
        if direct_p.get("p99_ms") else None,
        "modbus_register": {**reg_p, "presented": len(valid_at), "expected": units,
                            "acknowledged": plc_stats.acknowledged, "ack_timeouts": plc_stats.ack_timeouts,
                            "dropped": plc_stats.dropped},
        "plc_seen": {**percentiles(seen_lat), "scan_ms": args.plc_scan_ms}, "handshake": args.handshake,
        "station_poll_ms": args.plc_poll_ms,
        "submit_ms": percentiles(submit_cost),
        "target_p99_ms": 100,
        "meets_target": bool(mqtt_p.get("p99_ms", 1e9) < 100 and reg_p.get("p99_ms", 1e9) < 100
                             and len(mqtt_lat) == units and len(reg_lat) == units),
        "cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
