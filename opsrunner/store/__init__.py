"""Runs, results, evidence and samples in SQLite or PostgreSQL (SQLAlchemy 2 + alembic)."""

from __future__ import annotations

from opsrunner.store.records import (
    RESULT_STATUSES,
    RUN_STATUSES,
    STATUS_RANK,
    HostRecord,
    LastKnown,
    ResultRecord,
    RunRecord,
    SampleRecord,
)
from opsrunner.store.store import LockBusy, Store, StoreError, default_url, normalise_url

__all__ = [
    "RESULT_STATUSES",
    "RUN_STATUSES",
    "STATUS_RANK",
    "HostRecord",
    "LastKnown",
    "LockBusy",
    "ResultRecord",
    "RunRecord",
    "SampleRecord",
    "Store",
    "StoreError",
    "default_url",
    "normalise_url",
]
