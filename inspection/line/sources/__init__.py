"""Trigger sources: the channels that say which unit is at the station, built from the station config's
``triggers:`` list.

Each entry is a mapping with a ``kind`` (``modbus``, ``opcua``, ``mqtt``, ``label``; ``http`` is served by the
station's API and built there) and is validated by the pydantic model of its kind: a wrong or unknown key
is a one-line ``ConfigError`` naming the entry and the key, before anything connects. Building connects
nothing in the caller's thread: every source connects (and reconnects, with back-off) on its own thread
once started. Register / node / topic maps and one example per kind: docs/deployment.md, "Trigger sources".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from inspection.errors import ConfigError
from inspection.identity import LabelSettings
from inspection.line.sources.base import SourceStats
from inspection.line.sources.label import LabelTriggerSource, LatestFrame
from inspection.line.sources.modbus import ModbusTriggerLayout, ModbusTriggerReader, UnitFormat
from inspection.line.sources.mqtt import MqttTriggerSource
from inspection.line.sources.plc import CounterState, PlcTriggerSource, TriggerMode
from inspection.line.triggers import TriggerChannel, TriggerSource
from inspection.settings import Settings
from inspection.signals.handshake import PlcOutput, ResultCodes
from inspection.signals.modbus import UNIT_ID_WORDS, ModbusBackend, ModbusLink, register_map
from inspection.signals.mqtt import MqttConfig

log = logging.getLogger(__name__)

__all__ = ["TRIGGER_KINDS", "LabelTriggerSource", "MqttTriggerSource", "PlcTriggerSource", "SourceStats",
           "build_trigger_sources", "parse_trigger_specs"]

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Address = Annotated[int, Field(ge=0, le=65535)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name | None = Field(default=None, description="Default <kind>-<index>; in trigger ids and metrics.")


class Codes(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ok: Address = 1
    ng: Address = 2
    review: Address = 3
    error: Address = 4


class _Results(BaseModel):
    """The result handshake this source answers through when the station has no ``PlcOutput`` for the same
    PLC (``QC_MODBUS_HOST`` / ``QC_OPCUA_URL``); with one, that one is used and these keys are ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    handshake: Literal["four-step", "sequence"] = "four-step"
    ack_timeout_s: float = Field(default=5.0, gt=0.0, le=600.0)
    heartbeat_s: float = Field(default=1.0, gt=0.0, le=60.0)
    max_pending: int = Field(default=64, ge=1, le=10_000)
    poll_ms: float = Field(default=2.0, ge=0.1, le=1000.0)
    codes: Codes = Codes()


class ModbusResults(_Results):
    registers: dict[str, int] = Field(default_factory=dict, description="Overrides of the result register map.")


class OpcUaResults(_Results):
    node_prefix: str = "ns=2;s=qcline."
    nodes: dict[str, str] = Field(default_factory=dict)


class ModbusRegisters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    trigger: Address = 100
    unit: Address = 101
    order: Address | None = None


class ModbusTriggerSpec(_Spec):
    kind: Literal["modbus"]
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=502, ge=1, le=65535)
    device_id: int = Field(default=1, ge=0, le=255)
    timeout_s: float = Field(default=1.0, gt=0.0, le=60.0)
    mode: TriggerMode = "counter"
    poll_ms: float = Field(default=20.0, ge=1.0, le=10_000.0)
    registers: ModbusRegisters = ModbusRegisters()
    unit_format: UnitFormat = "ascii"
    unit_words: int = Field(default=UNIT_ID_WORDS, ge=1, le=64)
    order_format: UnitFormat = "ascii"
    order_words: int = Field(default=UNIT_ID_WORDS, ge=1, le=64)
    slots: int = Field(default=1, ge=1, le=16)
    slot_stride: int | None = Field(default=None, ge=1, le=4096)
    results: ModbusResults = ModbusResults()


class OpcUaNodes(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    trigger: str = Field(min_length=1)
    unit: str = Field(min_length=1)
    order: str | None = None


class OpcUaTriggerSpec(_Spec):
    kind: Literal["opcua"]
    url: str = Field(pattern=r"^opc\.tcp://")
    nodes: OpcUaNodes
    mode: TriggerMode = "counter"
    poll_ms: float = Field(default=20.0, ge=1.0, le=10_000.0)
    timeout_s: float = Field(default=2.0, gt=0.0, le=60.0)
    username: str | None = None
    password: SecretStr | None = None
    security: str | None = None
    results: OpcUaResults = OpcUaResults()


class MqttTriggerSpec(_Spec):
    kind: Literal["mqtt"]
    url: str | None = Field(default=None, description="Default QC_MQTT_URL (and its credentials and TLS files).")
    topic_prefix: str | None = Field(default=None, description="Default QC_MQTT_TOPIC_PREFIX.")
    topic: str | None = Field(default=None, max_length=256, description="Default <prefix>/<station>/trigger.")
    answer_topic: str | None = Field(default=None, max_length=256)
    error_topic: str | None = Field(default=None, max_length=256)
    allow_reply_to: bool = True
    max_payload_bytes: int = Field(default=4096, ge=64, le=262_144)
    dedup_window: int = Field(default=4096, ge=16, le=1_000_000)
    max_clock_skew_s: float = Field(default=10.0, ge=0.0, le=86_400.0, description="An 'at' further from the "
                                    "station's clock is refused (0: any).")
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = Field(default=None, max_length=128)


class LabelTriggerSpec(_Spec):
    kind: Literal["label"]
    camera: str = Field(min_length=1, max_length=128, description="The camera whose frames are watched.")
    label: LabelSettings = LabelSettings()
    interval_ms: float = Field(default=50.0, ge=1.0, le=10_000.0, description="How often the newest frame is read.")
    rearm_s: float = Field(default=2.0, gt=0.0, le=3600.0, description="Gap after which the same label is a new "
                           "trigger.")
    confirm_frames: int = Field(default=1, ge=1, le=100)


class HttpTriggerSpec(BaseModel):
    """``POST /v1/triggers``: served by the station's API, nothing to build here (other keys are its own)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: Literal["http"]


TriggerSpec = ModbusTriggerSpec | OpcUaTriggerSpec | MqttTriggerSpec | LabelTriggerSpec | HttpTriggerSpec
SPECS: dict[str, type[BaseModel]] = {"modbus": ModbusTriggerSpec, "opcua": OpcUaTriggerSpec,
                                     "mqtt": MqttTriggerSpec, "label": LabelTriggerSpec, "http": HttpTriggerSpec}
TRIGGER_KINDS = tuple(SPECS)


def _where(index: int, raw: Mapping[str, object], where: str = "") -> str:
    name = raw.get("name")
    return (where or f"triggers[{index}]") + (f" ({name})" if isinstance(name, str) else "")


def _entry(raw: object) -> tuple[object, str]:
    """A mapping, or a config record with ``kind``, ``options`` and ``where`` (the station config's own
    ``TriggerSpec``): the mapping, and where it is written for the error messages."""
    options = getattr(raw, "options", None)
    kind = getattr(raw, "kind", None)
    if not isinstance(raw, Mapping) and isinstance(options, Mapping) and isinstance(kind, str):
        return {"kind": kind, **options}, str(getattr(raw, "where", "") or "")
    return raw, ""


def parse_trigger_specs(specs: Sequence[Mapping[str, object]] | Sequence[object]) -> list[TriggerSpec]:
    """Validate every entry; the first wrong one is a ``ConfigError`` naming it and its keys, on one line."""
    parsed: list[TriggerSpec] = []
    names: set[str] = set()
    for i, entry in enumerate(specs):
        raw, where = _entry(entry)
        if not isinstance(raw, Mapping):
            raise ConfigError(f"triggers[{i}] must be a mapping with a kind, not {type(raw).__name__}")
        kind = raw.get("kind")
        model = SPECS.get(kind) if isinstance(kind, str) else None
        if model is None:
            raise ConfigError(f"{_where(i, raw, where)}: kind must be one of {', '.join(TRIGGER_KINDS)}, not {kind!r}")
        try:
            spec = model.model_validate(dict(raw))
        except ValidationError as e:
            raise ConfigError(f"{_where(i, raw, where)} (kind {kind}): " + "; ".join(
                f"{'.'.join(map(str, x['loc'])) or '(entry)'}: {x['msg']}" for x in e.errors())) from e
        if not isinstance(spec, HttpTriggerSpec):
            name = spec.name or f"{kind}-{i}"  # type: ignore[attr-defined]
            if name in names:
                raise ConfigError(f"{_where(i, raw, where)}: name {name!r} is used by another trigger entry")
            names.add(name)
            spec = spec.model_copy(update={"name": name})
        parsed.append(spec)  # type: ignore[arg-type]
    return parsed


def _output(results: _Results, backend: object) -> PlcOutput:
    c = results.codes
    return PlcOutput(backend,  # type: ignore[arg-type]
                     codes=ResultCodes(c.ok, c.ng, c.review, c.error), ack_timeout_s=results.ack_timeout_s,
                     heartbeat_s=results.heartbeat_s, max_pending=results.max_pending, mode=results.handshake,
                     poll_s=results.poll_ms / 1000.0)


def _result_ranges(registers: Mapping[str, int]) -> list[tuple[str, int, int]]:
    return [(name, a, UNIT_ID_WORDS if name == "unit_id" else 1) for name, a in registers.items()]


def _check_apart(layout: ModbusTriggerLayout, results: Mapping[str, int], where: str) -> None:
    for name, address, width in layout.signals():
        for rname, raddress, rwidth in _result_ranges(results):
            if address < raddress + rwidth and raddress < address + width:
                raise ConfigError(f"registers: trigger register {name} ({address}) overlaps result register "
                                  f"{rname} ({raddress}) of {where}")


def _build_modbus(spec: ModbusTriggerSpec, where: str, shared: Sequence[PlcOutput], state: CounterState | None
                  ) -> PlcTriggerSource:
    r = spec.registers
    layout = ModbusTriggerLayout(trigger=r.trigger, unit=r.unit, unit_format=spec.unit_format,
                                 unit_words=spec.unit_words, order=r.order, order_format=spec.order_format,
                                 order_words=spec.order_words, slots=spec.slots, stride=spec.slot_stride)
    if spec.mode == "bit" and spec.slots != 1:
        raise ConfigError("slots: a trigger bit has one slot (slots > 1 needs mode: counter)")
    same = [o for o in shared if isinstance(o.backend, ModbusBackend) and o.backend.link.host == spec.host
            and o.backend.link.port == spec.port and o.backend.link.device_id == spec.device_id]
    if same:
        output, owns = same[0], False
        registers = same[0].backend.registers  # type: ignore[attr-defined]
    else:
        registers = register_map(spec.results.registers)
        _check_apart(layout, registers, where)  # before the handshake thread starts
        output, owns = _output(spec.results, ModbusBackend(spec.host, spec.port, device_id=spec.device_id,
                                                            registers=spec.results.registers,
                                                            timeout_s=spec.timeout_s)), True
    if not owns:
        _check_apart(layout, registers, where)
    reader = ModbusTriggerReader(ModbusLink(spec.host, spec.port, device_id=spec.device_id,
                                            timeout_s=spec.timeout_s), layout)
    assert spec.name is not None
    log.info("trigger source %s: Modbus %s, %s mode, answers through %s", spec.name, reader.description, spec.mode,
             "the station's PLC output (QC_MODBUS_HOST)" if not owns else "its own result handshake")
    return PlcTriggerSource(reader, output, name=spec.name, channel=TriggerChannel.MODBUS, mode=spec.mode,
                            poll_s=spec.poll_ms / 1000.0, answer_verdicts=owns, owns_output=owns, state=state)


def _build_opcua(spec: OpcUaTriggerSpec, where: str, shared: Sequence[PlcOutput], state: CounterState | None
                 ) -> PlcTriggerSource:
    from inspection.line.sources.opcua import OpcUaTriggerReader  # asyncua is the optional [opcua] extra
    from inspection.signals.opcua import OpcUaBackend

    password = spec.password.get_secret_value() if spec.password else None
    nodes = {k: v for k, v in spec.nodes.model_dump().items() if v is not None}
    reader = OpcUaTriggerReader(spec.url, nodes, username=spec.username, password=password,
                                security=spec.security, timeout_s=spec.timeout_s)
    same = [o for o in shared if isinstance(o.backend, OpcUaBackend) and o.backend.description == spec.url]
    if same:
        output, owns = same[0], False
    else:
        backend = OpcUaBackend(spec.url, node_prefix=spec.results.node_prefix, nodes=spec.results.nodes,
                               username=spec.username, password=password, security=spec.security,
                               timeout_s=spec.timeout_s)
        clash = set(nodes.values()) & set(backend.node_ids.values())
        if clash:
            raise ConfigError(f"nodes: {sorted(clash)} are also result nodes")
        output, owns = _output(spec.results, backend), True
    assert spec.name is not None
    return PlcTriggerSource(reader, output, name=spec.name, channel=TriggerChannel.OPCUA, mode=spec.mode,
                            poll_s=spec.poll_ms / 1000.0, answer_verdicts=owns, owns_output=owns, state=state)


def _build_mqtt(spec: MqttTriggerSpec, where: str, station_id: str, settings: Settings | None) -> MqttTriggerSource:
    url = spec.url or (settings.mqtt_url if settings else None)
    if not url:
        raise ConfigError("url: no url and no QC_MQTT_URL to take it from")
    options: dict[str, object] = {"topic_prefix": spec.topic_prefix or (settings.mqtt_topic_prefix if settings
                                                                        else "qcline")}
    if settings is not None and not spec.url:  # the station's broker: its credentials and TLS files too
        options.update(username=settings.mqtt_username, ca_file=settings.mqtt_ca_file,
                       cert_file=settings.mqtt_cert_file, key_file=settings.mqtt_key_file,
                       keepalive_s=settings.mqtt_keepalive_s,
                       password=settings.mqtt_password.get_secret_value() if settings.mqtt_password else None)
    if spec.username:
        options["username"] = spec.username
    if spec.password:
        options["password"] = spec.password.get_secret_value()
    config = MqttConfig.from_url(url, station_id=station_id, **options)
    assert spec.name is not None
    return MqttTriggerSource(config, name=spec.name, topic=spec.topic, answer_topic=spec.answer_topic,
                             error_topic=spec.error_topic, allow_reply_to=spec.allow_reply_to,
                             max_payload_bytes=spec.max_payload_bytes, dedup_window=spec.dedup_window,
                             client_id=spec.client_id, max_clock_skew_s=spec.max_clock_skew_s)


def build_trigger_sources(specs: Sequence[Mapping[str, object]] | Sequence[object], *, station_id: str,
                          settings: Settings | None = None, line_signals: Sequence[object] = (),
                          latest_frame_for: Callable[[str], LatestFrame] | None = None,
                          data_dir: Path | None = None) -> list[TriggerSource]:
    """The sources of the ``triggers:`` entries (none for ``http``), not yet started. An entry is a mapping
    with a ``kind``, or a record with ``kind``, ``options`` and ``where`` (the station config's ``TriggerSpec``).

    ``line_signals``: the station's sinks (``build_line_signals``); a ``PlcOutput`` to the same PLC as a
    ``modbus`` / ``opcua`` entry answers that entry's triggers, so one PLC sees one handshake.
    ``latest_frame_for(camera_id)``: the callable a ``label`` entry reads frames through.
    ``data_dir`` (default ``settings.data_dir``): where a PLC counter's last value is kept across restarts
    (``<data_dir>/line/trigger-<name>.json``); without one it is re-read from the PLC on start.
    """
    parsed = parse_trigger_specs(specs)
    shared = [s for s in line_signals if isinstance(s, PlcOutput)]
    folder = data_dir or (settings.data_dir if settings is not None else None)
    sources: list[TriggerSource] = []
    try:
        for i, spec in enumerate(parsed):
            where = f"triggers[{i}] ({getattr(spec, 'name', '')})"
            try:
                built = _build_one(spec, where, station_id, settings, shared, latest_frame_for, folder)
            except (ConfigError, ValueError) as e:
                raise ConfigError(f"{where}: {e}") from e
            if built is not None:
                sources.append(built)
    except BaseException:
        close_trigger_sources(sources)
        raise
    return sources


def _build_one(spec: TriggerSpec, where: str, station_id: str, settings: Settings | None,
               shared: Sequence[PlcOutput], latest_frame_for: Callable[[str], LatestFrame] | None,
               folder: Path | None) -> TriggerSource | None:
    if isinstance(spec, ModbusTriggerSpec | OpcUaTriggerSpec):
        state = CounterState(folder / "line" / f"trigger-{spec.name}.json") if folder is not None else None
        if isinstance(spec, ModbusTriggerSpec):
            return _build_modbus(spec, where, shared, state)
        return _build_opcua(spec, where, shared, state)
    if isinstance(spec, MqttTriggerSpec):
        return _build_mqtt(spec, where, station_id, settings)
    if isinstance(spec, LabelTriggerSpec):
        if latest_frame_for is None:
            raise ConfigError("a label trigger needs the station's cameras (latest_frame_for)")
        assert spec.name is not None
        return LabelTriggerSource(latest_frame_for(spec.camera), spec.label, name=spec.name, camera_id=spec.camera,
                                  interval_s=spec.interval_ms / 1000.0, rearm_s=spec.rearm_s,
                                  confirm_frames=spec.confirm_frames)
    return None  # http: the station's API


def close_trigger_sources(sources: Sequence[TriggerSource]) -> None:
    """Close each source; one failing close does not keep the others open."""
    for source in sources:
        try:
            source.close()
        except Exception:
            log.exception("closing trigger source %s failed", source.name)
