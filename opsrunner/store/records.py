"""Plain records that cross the store's edge (runner → store → scoring), free of SQLAlchemy."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

RUN_STATUSES = ("running", "successful", "failed", "timeout", "canceled", "interrupted", "skipped")
RESULT_STATUSES = ("pass", "fail", "error", "notapplicable", "notchecked", "unknown")
# Worst status wins when several reports of one control on one host merge (result contract).
STATUS_RANK = {"notchecked": 0, "notapplicable": 1, "pass": 2, "fail": 3, "unknown": 4, "error": 5}


def _aware(value: dt.datetime | None, what: str) -> None:
    # Everything is stored in UTC (DESIGN.md, Time): a naive time is a bug at the caller.
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{what}: naive datetime {value.isoformat()}; give a UTC time")


@dataclasses.dataclass(frozen=True, slots=True)
class ResultRecord:
    """One host x control status, with trimmed evidence and the hash of the full output.

    Slotted: a fleet's run holds millions of them."""

    host: str
    control_id: str
    status: str
    checked_at: dt.datetime
    reason: str = ""
    evidence: str = ""
    evidence_sha256: str = ""
    evidence_truncated: bool = False
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    remediated: bool = False
    task: str = ""
    run_id: int | None = None
    # The full report's canonical bytes (what evidence_sha256 hashes), stored beside the result
    # in the store's evidence table; None when it is already stored or read back from the store.
    full: bytes | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.status not in RESULT_STATUSES:
            raise ValueError(f"{self.host} {self.control_id}: unknown status {self.status!r}")
        _aware(self.checked_at, f"{self.host} {self.control_id} checked_at")


@dataclasses.dataclass(frozen=True)
class LastKnown:
    """The last known status of one host x control from earlier runs (`Store.last_known`)."""

    status: str
    checked_at: dt.datetime
    run_ident: str
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class HostRecord:
    """A host as one run saw it."""

    host: str
    reachable: bool = True
    reason: str = ""
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)
    groups: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One run as recorded: who, what, against which policy, and how it ended."""

    ident: str
    mode: str
    status: str
    started_at: dt.datetime
    id: int | None = None
    job: str = ""
    playbook: str = ""
    rc: int | None = None
    ended_at: dt.datetime | None = None
    user: str = ""
    controller: str = ""
    inventory: str = ""
    limit: str = ""
    controls: tuple[str, ...] = ()
    policy_commit: str = ""
    policy_digest: str = ""
    scheduled_for: dt.datetime | None = None
    late: bool = False
    reason: str = ""
    artifact_dir: str = ""
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Roles whose disruptive steps this run was allowed (`enforce --allow-disruptive`).
    disruptive: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in RUN_STATUSES:
            raise ValueError(f"run {self.ident}: unknown status {self.status!r}")
        for name in ("started_at", "ended_at", "scheduled_for"):
            _aware(getattr(self, name), f"run {self.ident} {name}")


@dataclasses.dataclass(frozen=True)
class SampleRecord:
    """One monitoring scrape of one host."""

    host: str
    scraped_at: dt.datetime
    ok: bool
    target: str = ""
    duration_ms: float = 0.0
    error: str = ""
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
