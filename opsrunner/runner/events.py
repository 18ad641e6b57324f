"""Turn ansible-runner events into host x control results (the result contract), as they come."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from opsrunner.runner import evidence
from opsrunner.store.records import STATUS_RANK, HostRecord, ResultRecord

CONTROL_ID = re.compile(r"^\s*([A-Z][A-Z0-9]{1,7}-\d{3})\s*\|")
STAT_KEYS = ("ok", "failures", "dark", "changed", "skipped", "rescued", "ignored")


def _when(event: Mapping[str, Any]) -> dt.datetime:
    created = event.get("created")
    if isinstance(created, str) and created:
        try:
            moment = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            return dt.datetime.now(dt.UTC)
        # ansible-runner stamps events in UTC without a zone.
        return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass
class _Entry:
    status: str
    reason: str
    evidence: str
    data: dict[str, Any]
    remediated: bool
    task: str
    at: dt.datetime
    checks: list[dict[str, Any]]


@dataclasses.dataclass
class _Host:
    reachable: bool = True
    reason: str = ""
    failed_msg: str = ""
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)


class Collector:
    """Aggregates events of one run; `pop_dirty()` gives the results changed since last call.

    Several report tasks of one control on one host merge: the worst status wins, evidence of
    equal status is joined, every report is kept under `checks` (the result contract). Feeding
    the same events again yields the same results, which is what makes artifact import
    idempotent.
    """

    def __init__(
        self, state_dir: Path | None = None, controls: Iterable[str] | None = None
    ) -> None:
        self.state_dir = state_dir
        self.only = set(controls) if controls is not None else None
        self.entries: dict[tuple[str, str], _Entry] = {}
        self.hosts: dict[str, _Host] = {}
        self.has_stats = False
        self.seen: set[int] = set()
        self._dirty: set[tuple[str, str]] = set()
        # Failures of control tasks wait here: a block's rescue may still report the control.
        self._pending: dict[tuple[str, str], tuple[dict[str, Any], str, dt.datetime]] = {}

    # -- feeding ---------------------------------------------------------
    def feed(self, event: Mapping[str, Any]) -> None:
        """Take one ansible-runner event (a job_events/*.json dict)."""
        counter = event.get("counter")
        if isinstance(counter, int):
            if counter in self.seen:
                return
            self.seen.add(counter)
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = str(data.get("host") or "")
        if kind == "playbook_on_stats":
            self.has_stats = True
            self.settle()
            self._stats(data)
        elif not host:
            return
        elif kind == "runner_on_ok":
            self._host(host)
            self._reports(host, data, _when(event))
        elif kind == "runner_on_failed":
            self._failed(host, data, _when(event))
        elif kind == "runner_on_unreachable":
            entry = self._host(host)
            entry.reachable = False
            entry.reason = str((data.get("res") or {}).get("msg") or "unreachable")[:500]
        elif kind in ("runner_on_start", "runner_on_skipped"):
            self._host(host)

    def _host(self, host: str) -> _Host:
        return self.hosts.setdefault(host, _Host())

    def _reports(self, host: str, data: Mapping[str, Any], at: dt.datetime) -> bool:
        res = data.get("res") or {}
        task = str(data.get("task") or "")
        found = False
        for item in [res, *(res.get("results") or [])]:
            if isinstance(item, dict) and isinstance(item.get("opsrunner_control"), dict):
                self._record(host, item["opsrunner_control"], task, at)
                self._pending.pop((host, str(item["opsrunner_control"].get("id") or "")), None)
                found = True
        return found

    def _failed(self, host: str, data: Mapping[str, Any], at: dt.datetime) -> None:
        entry = self._host(host)
        res = data.get("res") or {}
        message = str(res.get("msg") or res.get("stderr") or "task failed")[:500]
        if self._reports(host, data, at) or data.get("ignore_errors"):
            # An ignored probe failure is the role's business: it reports through the contract.
            return
        task = str(data.get("task") or "")
        entry.failed_msg = f"task '{task}' failed: {message}"
        match = CONTROL_ID.match(task)
        if match:
            report: dict[str, Any] = {
                "id": match.group(1),
                "status": "error",
                "evidence": "",
                "data": {},
                "reason": entry.failed_msg,
                "remediated": False,
            }
            self._pending[(host, match.group(1))] = (report, task, at)

    def settle(self) -> None:
        """Failures that no rescue reported by the end of the play stand as `error`."""
        pending, self._pending = self._pending, {}
        for (host, _cid), (report, task, at) in sorted(pending.items()):
            self._record(host, report, task, at)

    def _record(self, host: str, report: Mapping[str, Any], task: str, at: dt.datetime) -> None:
        cid = str(report.get("id") or "")
        if not cid or (self.only is not None and cid not in self.only):
            return
        status = str(report.get("status") or "error")
        if status not in STATUS_RANK:
            status = "error"
        check = dict(report, task=task, at=at.isoformat())
        key = (host, cid)
        previous = self.entries.get(key)
        if previous is None:
            self.entries[key] = _Entry(
                status=status,
                reason=str(report.get("reason") or ""),
                evidence=str(report.get("evidence") or ""),
                data=dict(report.get("data") or {}),
                remediated=bool(report.get("remediated")),
                task=task,
                at=at,
                checks=[check],
            )
        else:
            previous.checks.append(check)
            if STATUS_RANK[status] > STATUS_RANK[previous.status]:
                previous.status = status
                previous.reason = str(report.get("reason") or "")
                previous.evidence = str(report.get("evidence") or "")
                previous.data = dict(report.get("data") or {})
                previous.task = task
            elif status == previous.status and report.get("evidence"):
                previous.evidence = "; ".join(
                    e for e in (previous.evidence, str(report["evidence"])) if e
                )
            previous.remediated = previous.remediated or bool(report.get("remediated"))
            previous.at = max(previous.at, at)
        self._dirty.add(key)

    def _stats(self, data: Mapping[str, Any]) -> None:
        for key in STAT_KEYS:
            for host, count in (data.get(key) or {}).items():
                self._host(str(host)).stats[key] = count
        for host, count in (data.get("dark") or {}).items():
            if count:
                self._host(str(host)).reachable = False

    # -- reading ---------------------------------------------------------
    def record(self, host: str, cid: str) -> ResultRecord:
        """The merged result of one host x control, with evidence saved and trimmed."""
        entry = self.entries[(host, cid)]
        full = {
            "host": host,
            "control": cid,
            "status": entry.status,
            "reason": entry.reason,
            "evidence": entry.evidence,
            "data": entry.data,
            "checks": entry.checks,
        }
        sha = evidence.save(self.state_dir, full)
        text, cut = evidence.trim(entry.evidence)
        truncated = cut or any(bool(c.get("evidence_truncated")) for c in entry.checks)
        return ResultRecord(
            host=host,
            control_id=cid,
            status=entry.status,
            checked_at=entry.at,
            reason=entry.reason,
            evidence=text,
            evidence_sha256=sha,
            evidence_truncated=truncated,
            data=entry.data,
            remediated=entry.remediated,
            task=entry.task,
        )

    @property
    def dirty_count(self) -> int:
        """Results changed since the last `pop_dirty()`."""
        return len(self._dirty)

    def pop_dirty(self) -> list[ResultRecord]:
        """Results changed since the last call (what the next store batch writes)."""
        keys, self._dirty = sorted(self._dirty), set()
        return [self.record(host, cid) for host, cid in keys]

    def results(self) -> list[ResultRecord]:
        """Every result so far (failures still pending count as `error`)."""
        self.settle()
        return [self.record(host, cid) for host, cid in sorted(self.entries)]

    def host_records(self, groups: Mapping[str, Iterable[str]] | None = None) -> list[HostRecord]:
        """Every host seen (and every host in `groups`), with reachability and final stats."""
        names = set(self.hosts) | set(groups or {})
        out = []
        for name in sorted(names):
            host = self.hosts.get(name, _Host())
            out.append(
                HostRecord(
                    host=name,
                    reachable=host.reachable,
                    reason=host.reason,
                    stats=dict(host.stats),
                    groups=tuple(sorted((groups or {}).get(name, ()))),
                )
            )
        return out

    def missing(
        self, scope: Mapping[str, Iterable[str]], run_status: str, now: dt.datetime
    ) -> list[ResultRecord]:
        """Results for in-scope host x control pairs that no event reported.

        Unreachable host, or a run that timed out, was canceled or interrupted: `unknown` with
        the reason (never passing). A host that failed before the control: `unknown`. Otherwise
        the playbooks simply did not report it: `notchecked`.
        """
        out = []
        for host, controls in sorted(scope.items()):
            state = self.hosts.get(host, _Host())
            for cid in sorted(controls):
                if (host, cid) in self.entries:
                    continue
                if not state.reachable:
                    status, reason = "unknown", f"host unreachable: {state.reason or 'no answer'}"
                elif run_status in ("timeout", "canceled", "interrupted"):
                    status, reason = "unknown", f"run {run_status} before this control reported"
                elif state.failed_msg or state.stats.get("failures"):
                    status = "unknown"
                    reason = f"host failed before this control reported: {state.failed_msg}"
                else:
                    status, reason = "notchecked", "no result reported by the playbooks"
                out.append(
                    ResultRecord(
                        host=host, control_id=cid, status=status, checked_at=now, reason=reason
                    )
                )
        return out


def read_artifact_events(artifact_dir: Path) -> list[dict[str, Any]]:
    """Every event ansible-runner saved under <artifact_dir>/job_events, in counter order."""
    import json

    events: list[dict[str, Any]] = []
    folder = artifact_dir / "job_events"
    if not folder.is_dir():
        return events
    for path in folder.glob("*.json"):
        try:
            events.append(json.loads(path.read_text(encoding="utf-8")))
        except ValueError:
            # A crash can leave a half-written event file; the rest is still evidence.
            continue
    events.sort(key=lambda e: int(e.get("counter") or 0))
    return events
