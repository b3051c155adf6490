"""One exception tree for the whole product.

Every failure a user can cause or meet is a ``QCError``; third-party errors are wrapped with
``raise ... from e`` so the cause stays visible in logs while the CLI and the API map one family of
exceptions to exit codes and HTTP statuses in one place each.
"""

from __future__ import annotations


class QCError(Exception):
    """Base of every error qcline raises on purpose."""


class ConfigError(QCError):
    """A setting, path or URL that cannot work."""


class InvalidFrameError(QCError):
    """An image that cannot be decoded or is not a usable frame (empty, truncated, wrong shape)."""


class ModelPackageError(QCError):
    """A model package folder that is missing files, has bad metadata or fails its sha256 check."""


class ProfileError(QCError):
    """An inspection profile that does not parse or contradicts itself."""


class NotFoundError(QCError):
    """An order, unit, profile, snapshot or model id that does not exist."""


class ConflictError(QCError):
    """A request that contradicts what was already recorded (e.g. an order with another profile)."""


class SourceError(QCError):
    """A frame source that cannot be opened or read (missing file, unreachable camera, bad manifest)."""


class StoreError(QCError):
    """The results store failed (database unreachable, migration failed)."""


class DatasetError(QCError):
    """A dataset folder or annotation file that cannot be imported."""


class TrainingError(QCError):
    """Training or export failed, or the training extra is not installed."""


class UnsupportedMediaError(QCError):
    """A request's body is not a type its receiver takes (HTTP 415)."""


class PayloadTooLargeError(QCError):
    """A request's body is larger than its receiver accepts (HTTP 413)."""


class BadRequestError(QCError):
    """Malformed request: bad JSON, a form field missing or not what was expected (HTTP 400/422)."""
