"""Station settings from the environment (``QC_`` prefix), built by a function and passed in.

Nothing reads the environment at import time: tests and the CLI build a ``Settings`` explicitly, so two
stations (or two tests) in one process never share hidden state.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from platformdirs import user_data_path
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "neu-det-yolov8n"


def default_data_dir() -> Path:
    """The user-level data folder (``~/.local/share/qcline`` on Linux): the same from any working folder,
    so a command run elsewhere never starts a second, empty database under ``./data``."""
    return user_data_path("qcline", appauthor=False)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QC_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir,
                           description="Embedded database, evidence frames, snapshots (default: the user data dir).")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset means SQLite (WAL) at <data_dir>/qcline.db. "
        "A plain postgresql://user@host:port/db URL is accepted.")
    model_path: Path | None = Field(
        default=None, description="Model package the station runs; unset means the registry's champion, or the "
        "bundled default model when there is none.")
    threads: int = Field(default=0, ge=0, description="Inference threads of the engine; 0 lets the engine choose.")
    engine: Literal["auto", "onnxruntime", "openvino"] = Field(
        default="auto", description="Inference engine; auto picks the fastest this CPU has (logged with why).")
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        default="auto", description="Inference precision; auto: bf16 where the CPU has bf16 units (OpenVINO), "
        "else fp32; int8 needs an int8 package (`qcline models quantize`).")
    batch_size: int = Field(default=8, ge=1, le=64, description="Frames per forward pass.")
    pipeline_overlap: bool = Field(default=False, description=(
        "Detect the next batch in an inference thread while this one is judged (for stations with cores to "
        "spare; serial was faster on 2 cores)."))
    write_batch: int = Field(default=64, ge=1, description="Results per database transaction.")
    keep_pass_frames: bool = Field(default=False, description="Also keep evidence frames of PASS units.")
    outbox: bool | None = Field(
        default=None, description="Store-and-forward outbox (<data_dir>/outbox.db, SQLite WAL) that keeps the station "
        "inspecting while the central database is unreachable; unset means on for PostgreSQL, off for SQLite.")
    outbox_max_mb: float = Field(default=2048.0, gt=0.0, description="Size bound of the outbox (alarm at 80%; "
                                 "full means 503 for new frames, never a dropped result).")

    @property
    def outbox_enabled(self) -> bool:
        if self.outbox is not None:
            return self.outbox
        return bool(self.database_url) and self.resolved_database_url.startswith(("postgres", "postgresql"))
    # -- evidence store (inspection/store/backends.py) --
    evidence_url: str | None = Field(
        default=None, description="Where evidence frames go: unset means <data_dir>/frames; s3://bucket/prefix "
        "an S3-compatible object store shared by stations; a folder path (or file:///path) that folder.")
    evidence_max_mb: float = Field(default=64.0, gt=0.0, description="Largest evidence object a read accepts.")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint, e.g. http://seaweedfs:8333 or https://minio.plant:9000; unset "
        "means AWS S3 itself.")
    s3_access_key: str | None = Field(default=None, description="S3 access key id; unset (with the secret) "
                                      "means the AWS credential chain (AWS_* variables, ~/.aws, instance role).")
    s3_secret_key: SecretStr | None = Field(default=None, description="S3 secret key (never logged).")
    s3_region: str = Field(default="us-east-1", description="S3 region (SeaweedFS and MinIO accept any).")
    s3_verify_tls: bool = Field(default=True, description="Check the S3 endpoint's TLS certificate.")
    s3_ca_bundle: Path | None = Field(default=None, description="CA bundle (PEM) for a plant's own S3 certificate.")
    s3_timeout_s: float = Field(default=3.0, gt=0.0, le=60.0, description="S3 connect and read timeout, each.")
    s3_max_attempts: int = Field(default=2, ge=1, le=10, description="S3 attempts per call (first one included).")

    # -- line signals (inspection/signals): MQTT for the MES, Modbus TCP / OPC UA for the PLC -----------
    station_id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=128,
                            description="This station's name: in MQTT topics and payloads, and the traceability "
                            "chain its writes extend.")
    mqtt_url: str | None = Field(default=None, description="mqtt://[user:password@]host[:port] or mqtts://...; "
                                 "unset means no MQTT.")
    mqtt_username: str | None = Field(default=None, description="Overrides the URL's user.")
    mqtt_password: SecretStr | None = Field(default=None, description="Overrides the URL's password.")
    mqtt_client_id: str | None = Field(default=None, description="Default qcline-<station_id>.")
    mqtt_topic_prefix: str = Field(default="qcline", min_length=1, description="First topic level(s).")
    mqtt_ca_file: Path | None = Field(default=None, description="CA bundle for mqtts:// (default: system CAs).")
    mqtt_cert_file: Path | None = Field(default=None, description="Client certificate (mutual TLS).")
    mqtt_key_file: Path | None = Field(default=None, description="Client certificate's key.")
    mqtt_keepalive_s: int = Field(default=30, ge=5, le=3600)
    mqtt_frame_events: Literal["none", "fail", "all"] = Field(default="fail", description="Which frame results "
                                                              "are published besides every unit verdict.")
    mqtt_spool_max_messages: int = Field(default=100_000, ge=10, description="Undelivered messages kept on disk.")
    mqtt_max_inflight: int = Field(default=64, ge=1, le=65535, description="Messages awaiting PUBACK at once.")
    modbus_host: str | None = Field(default=None, description="PLC for Modbus TCP output; unset means none.")
    modbus_port: int = Field(default=502, ge=1, le=65535)
    modbus_device_id: int = Field(default=1, ge=0, le=255, description="Modbus unit (slave) id.")
    modbus_registers: dict[str, int] = Field(default_factory=dict, description="Holding-register addresses that "
                                             "differ from the default map (README, 'Line signals').")
    opcua_url: str | None = Field(default=None, description="opc.tcp://host:port of the PLC; needs the [opcua] extra.")
    opcua_node_prefix: str = Field(default="ns=2;s=qcline.", description="Node id = prefix + signal name.")
    opcua_nodes: dict[str, str] = Field(default_factory=dict, description="Node ids that differ from prefix+name.")
    opcua_username: str | None = None
    opcua_password: SecretStr | None = None
    opcua_security: str | None = Field(default=None, description="asyncua security string, e.g. "
                                       "Basic256Sha256,SignAndEncrypt,cert.der,key.pem.")
    plc_code_ok: int = Field(default=1, ge=0, le=65535)
    plc_code_ng: int = Field(default=2, ge=0, le=65535)
    plc_code_review: int = Field(default=3, ge=0, le=65535)
    plc_code_error: int = Field(default=4, ge=0, le=65535, description="result_code of a trigger answered without "
                                "a verdict (unknown unit, rejected, failed); the error signal says why.")
    plc_ack_timeout_s: float = Field(default=5.0, gt=0.0, description="How long a result stays valid unacknowledged.")
    plc_heartbeat_s: float = Field(default=1.0, gt=0.0)
    plc_max_pending: int = Field(default=64, ge=1, description="Results queued behind an unacknowledged one.")
    plc_poll_ms: float = Field(default=2.0, ge=0.1, le=1000.0, description="How often the PLC's ack is read while "
                               "a result waits for it (idle, only the heartbeat is written).")
    plc_handshake: Literal["four-step", "sequence"] = Field(default="four-step", description="sequence: the PLC "
                                                            "does not clear ack; results are told apart by sequence.")
    station_config: Path | None = Field(default=None, description="Line station configuration (YAML): cameras the "
                                        "station holds open and the triggers that bind their frames to units "
                                        "(docs/station.example.yaml); unset means no line station.")
    max_frame_pixels: int = Field(
        default=40_000_000, ge=64, le=200_000_000,
        description="Largest frame (declared width x height) decoded; larger ones are refused before decoding.")
    bundled_champion: bool = Field(default=True, description="A registry that never had a champion starts with "
                                   "the bundled model as champion (false: it starts empty; the first promotion "
                                   "then has nothing to be compared with).")
    timezone: str | None = Field(default=None, description="IANA zone (e.g. Europe/Berlin) for times shown to "
                                 "people and for shift hours; unset: the machine's (CLI) or the browser's (page).")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'qcline.db').resolve()}"

    @property
    def evidence_dir(self) -> Path:
        return self.data_dir / "frames"

    @property
    def engine_cache_dir(self) -> Path:
        """OpenVINO's compiled-model cache (``CACHE_DIR``): a restart loads the blob instead of compiling."""
        return self.data_dir / "cache" / "openvino"


def load_settings(**overrides: object) -> Settings:
    """Read ``QC_*`` variables (and ``overrides``, which win) into a fresh ``Settings``."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
