"""The product's tables, one module per domain (results, reviews, registry, service, audit, line), on one
``Base`` (``base.py``). Importing this package loads every table, so ``Base.metadata`` is the whole schema
(Alembic's ``migrations/env.py`` and ``tests/inspection/store/test_db.py`` compare it to the migrations).
Persistence stays in one room, ``inspection/store`` (as MLflow's ``store/``); each domain's rows are named here.
"""

from inspection.store.tables import audit, line, registry, results, reviews, service
from inspection.store.tables.base import Base

__all__ = ["Base", "audit", "line", "registry", "results", "reviews", "service"]
