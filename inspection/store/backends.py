"""Open the stores a station's settings name: the I/O side of the store constructors.

Constructors (``LocalEvidenceStore(root)``, ``S3EvidenceStore(client, bucket, prefix)``,
``ResultsStore(engine, evidence)``) take ready objects so tests inject their own; the functions here read
settings, build clients and pick the backend, in one place for the CLI station and the service.
"""

from __future__ import annotations

import logging
from pathlib import Path

from inspection.errors import ConfigError
from inspection.settings import Settings
from inspection.store.evidence import EvidenceStore, LocalEvidenceStore
from inspection.store.evidence_s3 import S3EvidenceStore, ca_bundle_or_flag, parse_s3_url, s3_client
from inspection.store.repository import ResultsStore

log = logging.getLogger(__name__)


def open_evidence_store(settings: Settings) -> EvidenceStore:
    """The evidence store ``QC_EVIDENCE_URL`` names: unset means ``<data_dir>/frames``; ``s3://bucket/prefix``
    the object store at ``QC_S3_ENDPOINT_URL``; a path (or ``file://`` URL) that local folder.

    Nothing is contacted here: a station starts while the object store is away, and its writes fail with
    ``StoreError`` until it is back (the outbox keeps them meanwhile).
    """
    url = (settings.evidence_url or "").strip()
    max_bytes = int(settings.evidence_max_mb * 1024 * 1024)
    if not url:
        return LocalEvidenceStore(settings.evidence_dir, max_read_bytes=max_bytes)
    if url.startswith("s3://"):
        bucket, prefix = parse_s3_url(url)
        secret = settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None
        client = s3_client(endpoint_url=settings.s3_endpoint_url, access_key=settings.s3_access_key,
                           secret_key=secret, region=settings.s3_region,
                           verify=ca_bundle_or_flag(settings.s3_verify_tls, settings.s3_ca_bundle),
                           timeout_s=settings.s3_timeout_s, max_attempts=settings.s3_max_attempts)
        store = S3EvidenceStore(client, bucket, prefix, endpoint=settings.s3_endpoint_url, max_read_bytes=max_bytes)
        log.info("evidence frames go to %s", store.describe())
        return store
    if url.startswith("file://"):
        return LocalEvidenceStore(Path(url[len("file://"):]), max_read_bytes=max_bytes)
    if "://" in url:
        raise ConfigError(f"QC_EVIDENCE_URL {url!r}: use s3://bucket/prefix, file:///path or a folder path")
    return LocalEvidenceStore(Path(url), max_read_bytes=max_bytes)


def open_results_store(settings: Settings) -> ResultsStore:
    """The results database and evidence store of ``settings``, migrated and ready."""
    return ResultsStore.open(settings.resolved_database_url, open_evidence_store(settings))
