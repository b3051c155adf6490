"""The results log: every frame verdict, unit verdict and evidence frame, with the versions that made them.

``ResultsStore`` is the database API (SQLite by default, PostgreSQL by URL), ``EvidenceStore`` the
content-addressed evidence frames (``LocalEvidenceStore`` on disk, ``S3EvidenceStore`` in an object store;
``backends.open_evidence_store`` picks one from settings), and ``BatchedResultWriter`` the background sink that keeps
database commits off the inference path.
"""

from inspection.store.db import normalise_url, open_database
from inspection.store.evidence import EvidenceStore, LocalEvidenceStore
from inspection.store.repository import ResultsStore
from inspection.store.writer import BatchedResultWriter, WriterStats

__all__ = ["BatchedResultWriter", "EvidenceStore", "LocalEvidenceStore", "ResultsStore", "WriterStats", "normalise_url",
           "open_database"]
