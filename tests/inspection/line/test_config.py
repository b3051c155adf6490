"""The station file: what it accepts, and a one-line refusal naming the file, the key and the line otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspection.errors import ConfigError
from inspection.line.config import MAX_CAMERAS, StationConfig, load_station_config

GOOD = """\
station: press-3
capture: {policy: burst, frames: 4}
budgets: {frame_wait_ms: 600, answer_within_ms: 900}
queue_max: 8
order_from_unit: '^(?P<order>ORD-\\d+)-'
cameras:
  - {name: top, url: "rtsp://user:secret@10.0.0.21:554/stream1", ring: 4, max_fps: 30}
  - name: side
    url: usb:0
    capture: {policy: window, window_ms: 120}
  - {name: replay, url: clips/top.mp4}
triggers:
  - kind: http
  - {kind: modbus, host: 10.0.0.5, unit_register: 100}
"""


def test_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(GOOD)
    config = load_station_config(path)
    assert config.station == "press-3" and [c.name for c in config.cameras] == ["top", "side", "replay"]
    assert config.capture_for("top").policy == "burst" and config.capture_for("side").policy == "window"
    assert config.cameras[1].target == 0 and config.cameras[0].read_mode == "live"
    replay = config.cameras[2]
    assert replay.is_file and replay.read_mode == "replay" and replay.url == str(tmp_path / "clips" / "top.mp4")
    assert config.order_of_unit("ORD-7-12") == "ORD-7" and config.order_of_unit("X-1") is None
    modbus = config.triggers[1]
    assert modbus.kind == "modbus" and dict(modbus.options) == {"host": "10.0.0.5", "unit_register": 100}
    assert "line 14" in modbus.where and "triggers[1]" in modbus.where
    assert config.http_triggers


def _cameras(n: int) -> str:
    return "\n".join(f"  - {{name: c{i}, url: usb:{i}}}" for i in range(n))


BAD = {
    "not yaml": ("station: [\n", "line 2"),
    "not a mapping": ("- a\n- b\n", "a station config is a mapping"),
    "no station": ("cameras: []\n", "station: Field required"),
    "unknown key": ("station: s\ncamras: []\n", "line 2, camras: Extra inputs are not permitted"),
    "bad url scheme": ("station: s\ncameras:\n  - name: top\n    url: ftp://cam\n",
                       "line 4, cameras[0].url: a camera url is rtsp://"),
    "bad usb": ("station: s\ncameras:\n  - {name: top, url: 'usb:x'}\n", "line 3, cameras[0].url: usb camera"),
    "view name": ("station: s\ncameras:\n  - {name: 'top view', url: usb:0}\n", "cameras[0].name: a camera name"),
    "ring too big": ("station: s\ncameras:\n  - {name: a, url: usb:0, ring: 1000}\n", "cameras[0].ring"),
    "same camera twice": ("station: s\ncameras:\n  - {name: a, url: usb:0}\n  - {name: a, url: usb:1}\n",
                          "camera names must be distinct: a"),
    "too many cameras": (f"station: s\ncameras:\n{_cameras(MAX_CAMERAS + 1)}\n",
                         f"line 3, cameras: Tuple should have at most {MAX_CAMERAS}"),
    "burst too long": ("station: s\ncapture: {policy: burst, frames: 500}\n", "line 2, capture.frames"),
    "unknown policy": ("station: s\ncapture: {policy: best}\n", "capture.policy"),
    "reconnect backwards": ("station: s\ncameras:\n  - {name: a, url: usb:0, reconnect: {min_s: 5, max_s: 1}}\n",
                            "max_s (1) must be >= min_s (5)"),
    "unknown trigger kind": ("station: s\ntriggers:\n  - {kind: carrier-pigeon}\n", "triggers[0].kind must be one of"),
    "http with options": ("station: s\ntriggers:\n  - {kind: http, port: 80}\n", "an http trigger takes no options"),
    "pattern without group": ("station: s\norder_from_unit: '^ORD'\n", "order_from_unit: needs a named group"),
    "alias bomb": ("station: &a s\nx: *a\n", "anchors"),
    "queue zero": ("station: s\nqueue_max: 0\n", "line 2, queue_max"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_file_is_one_line_naming_file_key_and_line(name: str) -> None:
    text, expected = BAD[name]
    with pytest.raises(ConfigError) as caught:
        StationConfig.parse(text, origin="station.yaml")
    message = str(caught.value)
    assert message.startswith("station.yaml") and "\n" not in message and expected in message, message


def test_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the station config .*missing\.yaml"):
        load_station_config(tmp_path / "missing.yaml")
