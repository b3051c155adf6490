"""Evidence frames in an S3-compatible object store (SeaweedFS, MinIO, Ceph RGW, AWS S3), shared by stations.

Objects are named ``<prefix>/<sha[:2]>/<sha256>`` -- the content address alone, the media type kept as the
object's ``Content-Type`` -- so a frame is found by one ``HEAD`` whatever its format, and two stations that
write the same frame store it once. A put is one conditional ``PUT`` (``If-None-Match: *``): the first
writer wins, a second gets 412 and that means "already stored" (a server that answers a simultaneous
second writer with an error instead is checked with a ``HEAD``: the object there is the frame). The
server also checks the bytes against the sha256 we send (``x-amz-checksum-sha256``), so a frame corrupted
in transit is refused, not kept.

The client is built outside (``s3_client``, called by ``inspection.store.backends.open_evidence_store``)
and handed in, so tests and other tools inject their own. It is configured with bounded connect/read
timeouts and a bounded number of attempts; every failure becomes a ``StoreError`` (``raise ... from e``),
which the durability code treats like a database outage. Nothing here ever waits without a limit.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from inspection.errors import ConfigError, NotFoundError, StoreError
from inspection.store.evidence import (
    DEFAULT_MAX_READ_BYTES,
    EvidenceInfo,
    EvidenceReader,
    EvidenceStore,
    check_sha,
    media_type_of,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9._/-]*$")
_MISSING = {"404", "NoSuchKey", "NotFound"}
_ALREADY_THERE = {"412", "PreconditionFailed", "409", "ConditionalRequestConflict"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """``("bucket", "prefix")`` of ``s3://bucket/prefix``; ``ConfigError`` naming what is wrong."""
    if not url.startswith("s3://"):
        raise ConfigError(f"evidence URL {url!r} must look like s3://bucket/prefix")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ConfigError(f"evidence URL {url!r}: bucket {bucket!r} is not a valid S3 bucket name "
                          "(3-63 characters: lowercase letters, digits, '.' and '-')")
    prefix = prefix.strip("/")
    parts = prefix.split("/") if prefix else []
    if not _PREFIX_RE.match(prefix) or any(part in ("", ".", "..") for part in parts):
        raise ConfigError(f"evidence URL {url!r}: prefix {prefix!r} may use letters, digits, '.', '_', '-' and '/'")
    return bucket, prefix


def s3_client(*, endpoint_url: str | None, access_key: str | None, secret_key: str | None,
              region: str | None, verify: bool | str = True, timeout_s: float = 5.0, max_attempts: int = 2,
              max_pool: int = 16) -> Any:
    """A boto3 S3 client whose every call ends within about ``max_attempts x 2 x timeout_s`` (plus backoff).

    No network I/O happens here: the client connects on first use. Without keys, boto3's own credential
    chain (``AWS_*`` variables, ``~/.aws``, an instance role) applies. A custom endpoint (SeaweedFS, MinIO)
    gets path-style addressing, which every S3-compatible server understands.
    """
    if bool(access_key) != bool(secret_key):
        raise ConfigError("S3 credentials need both QC_S3_ACCESS_KEY and QC_S3_SECRET_KEY (or neither, to use "
                          "the AWS credential chain)")
    if timeout_s <= 0 or max_attempts < 1:
        raise ConfigError(f"S3 timeout must be > 0 and attempts >= 1, got {timeout_s} s and {max_attempts}")
    config = Config(
        connect_timeout=timeout_s, read_timeout=timeout_s,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=max_pool,
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        # Checksums are sent where we ask for them (put) and not demanded of servers that do not keep them.
        request_checksum_calculation="when_required", response_checksum_validation="when_required",
    )
    try:
        session = boto3.session.Session()  # one per client: sessions are not thread-safe, clients are
        return session.client("s3", endpoint_url=endpoint_url or None, region_name=region or None,
                              aws_access_key_id=access_key or None, aws_secret_access_key=secret_key or None,
                              verify=verify, config=config)
    except (BotoCoreError, ValueError) as e:
        raise ConfigError(f"cannot configure the S3 client for {endpoint_url or 'AWS'}: {e}") from e


def _code(e: ClientError) -> str:
    error = e.response.get("Error", {}) if isinstance(e.response, dict) else {}
    code = str(error.get("Code", ""))
    status = str(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")) if isinstance(
        e.response, dict) else ""
    return code or status


class S3EvidenceStore(EvidenceStore):
    """Frames in ``bucket`` under ``prefix`` through a ready boto3 S3 ``client`` (see ``s3_client``)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", *, endpoint: str | None = None,
                 max_read_bytes: int = DEFAULT_MAX_READ_BYTES) -> None:
        super().__init__(max_read_bytes=max_read_bytes)
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"{where} at {self.endpoint}" if self.endpoint else where

    def key(self, sha: str) -> str:
        check_sha(sha)
        return f"{self.prefix}/{sha[:2]}/{sha}" if self.prefix else f"{sha[:2]}/{sha}"

    def ref(self, sha: str) -> str:
        """The object's URL, recorded as the inspection's evidence path (its name still ends in the sha256)."""
        return f"s3://{self.bucket}/{self.key(sha)}"

    def _call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
        """``fn(**kwargs)`` with every client failure as a ``StoreError``; a ``ClientError`` the caller
        expects (missing object, precondition) is passed on for it to read."""
        try:
            return fn(**kwargs)
        except ClientError as e:
            if _code(e) in _MISSING | _ALREADY_THERE:
                raise
            raise StoreError(f"object store {self.describe()}: {what} failed: {e}") from e
        except (BotoCoreError, OSError) as e:  # unreachable, timed out, connection reset, bad TLS
            raise StoreError(f"object store {self.describe()} unreachable while {what}: {e}") from e

    def check(self) -> None:
        """Raise ``StoreError`` unless the bucket answers (for readiness checks and start-up logs)."""
        try:
            self._call("checking the bucket", self.client.head_bucket, Bucket=self.bucket)
        except ClientError as e:
            raise StoreError(f"object store {self.describe()}: bucket {self.bucket!r} does not exist") from e

    def _store(self, sha: str, data: bytes, suffix: str) -> str:
        key = self.key(sha)
        checksum = base64.b64encode(bytes.fromhex(sha)).decode("ascii")
        try:
            self._call(f"storing evidence {sha[:12]}", self.client.put_object, Bucket=self.bucket, Key=key,
                       Body=data, ContentType=media_type_of(suffix), IfNoneMatch="*",
                       ChecksumSHA256=checksum, Metadata={"suffix": suffix})
        except ClientError as e:
            if _code(e) not in _ALREADY_THERE:  # a 404 on put: the bucket is missing
                raise StoreError(f"object store {self.describe()}: bucket {self.bucket!r} does not exist "
                                 f"(storing evidence {sha[:12]})") from e
            log.debug("evidence %s already in %s", sha[:12], self.describe())  # by us or another station
        except StoreError:
            # Two stations putting the same frame at the same moment: some servers answer the loser with a
            # 500 instead of 409/412. The name is the content's hash, so if the object is there, it is ours.
            if not self._stored_already(sha, len(data)):
                raise
        return self.ref(sha)

    def _stored_already(self, sha: str, size: int) -> bool:
        try:
            info = self.stat(sha)
        except StoreError:
            return False
        return info is not None and info.size == size

    def stat(self, sha: str) -> EvidenceInfo | None:
        return self._head(self.key(sha), sha)

    def open(self, sha: str) -> EvidenceReader:
        return self._get(self.key(sha), sha)

    def _recorded_key(self, ref: str, sha: str) -> str | None:
        """The key of ``ref`` when it names ``sha`` in this bucket under another prefix (another station's)."""
        if not ref.startswith(f"s3://{self.bucket}/"):
            return None
        key = ref[len(f"s3://{self.bucket}/"):]
        return key if key.endswith(f"/{sha}") and key != self.key(sha) else None

    def _stat_recorded(self, ref: str, sha: str) -> EvidenceInfo | None:
        key = self._recorded_key(ref, sha)
        return self._head(key, sha) if key else None

    def _open_info(self, info: EvidenceInfo) -> EvidenceReader:
        key = self._recorded_key(info.ref, info.sha256)
        return self._get(key or self.key(info.sha256), info.sha256)

    def _head(self, key: str, sha: str) -> EvidenceInfo | None:
        try:
            head = self._call(f"looking up evidence {sha[:12]}", self.client.head_object, Bucket=self.bucket,
                              Key=key)
        except ClientError:
            return None  # only "missing" reaches here
        return EvidenceInfo(sha, f"s3://{self.bucket}/{key}", int(head.get("ContentLength", 0)),
                            str(head.get("ContentType") or "application/octet-stream"))

    def _get(self, key: str, sha: str) -> EvidenceReader:
        try:
            got = self._call(f"reading evidence {sha[:12]}", self.client.get_object, Bucket=self.bucket, Key=key)
        except ClientError as e:
            raise NotFoundError(f"evidence frame {sha[:12]} is not stored in {self.describe()}") from e
        info = EvidenceInfo(sha, f"s3://{self.bucket}/{key}", int(got.get("ContentLength", 0)),
                            str(got.get("ContentType") or "application/octet-stream"))
        body = got["Body"]
        try:
            self._check_size(info)
        except StoreError:
            body.close()
            raise
        return EvidenceReader(info, body, max_bytes=self.max_read_bytes, source=self.describe())

    def delete(self, sha: str) -> bool:
        if self.stat(sha) is None:  # S3 answers 204 either way; the writer counts what it released
            return False
        try:
            self._call(f"deleting evidence {sha[:12]}", self.client.delete_object, Bucket=self.bucket,
                       Key=self.key(sha))
        except ClientError:
            return False
        return True


def ca_bundle_or_flag(verify_tls: bool, ca_bundle: Path | None) -> bool | str:
    """boto3's ``verify``: a CA bundle path, or whether to check the server's certificate at all."""
    if ca_bundle is not None:
        if not ca_bundle.is_file():
            raise ConfigError(f"QC_S3_CA_BUNDLE {ca_bundle} is not a file")
        return str(ca_bundle)
    return verify_tls
