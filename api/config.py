"""Settings of the HTTP service: the station's settings plus what only a server needs (``QC_`` prefix)."""

from __future__ import annotations

from pydantic import Field

from inspection.settings import Settings


class ServiceSettings(Settings):
    host: str = Field(default="127.0.0.1", description="Interface `qcline serve` binds to.")
    port: int = Field(default=8000, ge=1, le=65535)
    batch_wait_ms: float = Field(
        default=4.0, ge=0.0, le=1000.0,
        description="How long a forward pass may wait for more camera requests that are already arriving "
        "(dynamic batching). It only waits while other requests are in flight, so a lone camera pays nothing.")
    max_queue: int = Field(default=256, ge=1, description="Frames waiting for inference before 503 (shed load).")
    max_upload_mb: float = Field(default=20.0, gt=0.0, description="Largest request body accepted (413 above).")
    session_hours: float = Field(default=12.0, gt=0.0, description="How long a review page sign-in lasts.")
    model_poll_s: float = Field(default=2.0, gt=0.0, description="How often the registry is asked for a new "
                                "champion (a promotion through the API swaps at once).")
    follow_champion: bool = Field(default=True, description="Swap in each newly promoted champion while serving.")
    commit_give_up_s: float = Field(default=20.0, gt=0.0, description="How long a failing commit is retried "
                                    "before the cameras waiting on it are answered 503 (never 200; their retry is "
                                    "judged and stored exactly once).")
    idempotency_hours: float = Field(default=48.0, gt=0.0, description="How long a request's first answer is "
                                     "kept for retries with the same Idempotency-Key.")

    max_json_kb: float = Field(default=1024.0, gt=0.0, description="Largest body of a JSON route (413 above, "
                               "before it is read).")
    max_import_mb: float = Field(default=8.0, gt=0.0, description="Largest order book import body.")
    metrics_public: bool = Field(default=False, description="Serve /metrics without a key (else a key of role "
                                 "metrics, engineer or admin).")
    docs_public: bool = Field(default=False, description="Serve /docs, /redoc and /openapi.json without a key.")
    trusted_origins: list[str] = Field(default_factory=list, description="Other origins (scheme://host:port) "
                                       "the review page is served from, e.g. behind a reverse proxy.")
    secure_cookies: bool | None = Field(default=None, description="Mark the review page's cookies Secure; unset: "
                                        "when the request came over https (set true behind a TLS proxy).")
    timeout_keep_alive_s: float = Field(default=5.0, gt=0.0, description="Idle keep-alive connections close.")
    header_timeout_s: float = Field(default=10.0, gt=0.0, description="A connection that sends no complete "
                                    "request head in this time is closed (slowloris).")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_json_bytes(self) -> int:
        return int(self.max_json_kb * 1024)

    @property
    def max_import_bytes(self) -> int:
        return int(self.max_import_mb * 1024 * 1024)


def load_service_settings(**overrides: object) -> ServiceSettings:
    """Read ``QC_*`` variables (and ``overrides``, which win) into a fresh ``ServiceSettings``."""
    return ServiceSettings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
