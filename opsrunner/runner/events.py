"""Turn ansible-runner events into host x control results (the result contract), as they come."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import sys
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from opsrunner.runner import evidence
from opsrunner.store.records import STATUS_RANK, HostRecord, LastKnown, ResultRecord

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


@dataclasses.dataclass(slots=True)
class _Entry:
    status: str
    reason: str
    evidence: str
    data: dict[str, Any]
    remediated: bool
    task: str
    at: dt.datetime
    checks: list[dict[str, Any]]
    sha: str = ""  # the hash this result was last handed out with ("" before that)


@dataclasses.dataclass
class _Host:
    reachable: bool = True
    reason: str = ""
    failed_msg: str = ""
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)


# A finding is what a report says is wrong: when one control reports both, the stored row keeps
# the worst status and every finding's reason and evidence, failures first, then errors.
FINDINGS = ("fail", "error")

# What a full report is rebuilt from when a control reports again after its result was written
# and let go: (the stored result's evidence hash, its full report's bytes), or None.
Reload = Callable[[str, str], "tuple[str, bytes] | None"]


def _joined(values: Iterable[str]) -> str:
    """Distinct non-empty texts in order, joined with "; "."""
    seen: list[str] = []
    for value in values:
        value = value.strip()
        if value and value not in seen:
            seen.append(value)
    return "; ".join(seen)


def _merge(entry: _Entry) -> None:
    """Recompute an entry's merged view from all its reports (the result contract's merge).

    The worst status wins. When that status is a finding (`fail` or `error`), the reason and
    evidence join those of every finding report, `fail` reports first: an `error` beside a
    `fail` never hides the finding. Otherwise they join the reports of the worst status. The
    data and task are those of the first report of the worst status; when errors outrank
    failures, the failures' data is kept under `failed_checks`.
    """
    checks = entry.checks
    if len(checks) == 1:
        # One report (nearly every result): the same as below without the sorting and joining.
        only = checks[0]
        entry.status = only["status"]
        entry.reason = str(only.get("reason") or "").strip()
        entry.evidence = str(only.get("evidence") or "").strip()
        entry.data = dict(only.get("data") or {})
        entry.task = str(only.get("task") or "")
        entry.remediated = bool(only.get("remediated"))
        return
    worst = max((c["status"] for c in checks), key=STATUS_RANK.__getitem__)
    same = [c for c in checks if c["status"] == worst]
    if worst in FINDINGS:
        chosen = [c for s in FINDINGS for c in checks if c["status"] == s]
    else:
        chosen = same
    entry.status = worst
    entry.reason = _joined(str(c.get("reason") or "") for c in chosen)
    entry.evidence = _joined(str(c.get("evidence") or "") for c in chosen)
    entry.data = dict(same[0].get("data") or {})
    if worst == "error":
        failed = [dict(c.get("data") or {}) for c in checks if c["status"] == "fail"]
        if failed:
            entry.data["failed_checks"] = failed
    entry.task = str(same[0].get("task") or "")
    entry.remediated = any(bool(c.get("remediated")) for c in checks)


class Collector:
    """Aggregates events of one run; `pop_dirty()` gives the final results not yet taken.

    Several report tasks of one control on one host merge (`_merge`): the worst status wins,
    every finding's reason is kept, every report is kept under `checks` (the result contract).
    A merged result is provisional until its play ends (the next play starts, or the final
    stats arrive): a later task of the play may still report the same control. Only then is it
    sealed and handed out by `pop_dirty()` with its full report (`ResultRecord.full`, stored
    in the store's evidence table with the result), so every host x control is handed out
    once, with its final status. Feeding the same events again yields the same results, which
    is what makes artifact import idempotent.

    Memory stays flat as a run grows when `reload` is set (the run's event handler sets it to
    read its store): a result handed out is let go, and should its control report again in a
    later play, its full report is read back from the store and merged with the new one. What
    is kept per result is the control id in `reported` (what `missing()` needs); events seen
    are one bit each.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        controls: Iterable[str] | None = None,
        *,
        evidence: bool = True,
    ) -> None:
        # state_dir: where evidence files went before the store packed them (kept for callers).
        self.state_dir = state_dir
        self.keep_evidence = evidence
        self.only = set(controls) if controls is not None else None
        self.entries: dict[tuple[str, str], _Entry] = {}
        self.hosts: dict[str, _Host] = {}
        self.reported: dict[str, set[str]] = {}
        self.has_stats = False
        self.reload: Reload | None = None
        self._seen = bytearray()
        self._seen_other: set[int] = set()
        # Changed since the last seal (provisional), and sealed but not yet taken (final).
        self._open: set[tuple[str, str]] = set()
        self._dirty: set[tuple[str, str]] = set()
        # Evidence hashes handed out before and since superseded (`pop_superseded`).
        self._superseded: list[str] = []
        # Failures of control tasks wait here: a block's rescue may still report the control.
        self._pending: dict[tuple[str, str], tuple[dict[str, Any], str, dt.datetime]] = {}

    # -- feeding ---------------------------------------------------------
    def _first_time(self, counter: int) -> bool:
        """Whether this event counter is new (one bit per counter: re-fed events are skipped)."""
        if counter < 0:
            if counter in self._seen_other:
                return False
            self._seen_other.add(counter)
            return True
        byte, bit = counter >> 3, 1 << (counter & 7)
        seen = self._seen
        if byte >= len(seen):
            seen.extend(bytes(byte - len(seen) + 4096))
        if seen[byte] & bit:
            return False
        seen[byte] |= bit
        return True

    def feed(self, event: Mapping[str, Any]) -> None:
        """Take one ansible-runner event (a job_events/*.json dict)."""
        counter = event.get("counter")
        if counter.__class__ is int and not self._first_time(counter):
            return
        kind = event.get("event", "")
        # The cheap test first: most events are a task starting, or ending without a report.
        if kind == "runner_on_ok":
            data = event.get("event_data") or {}
            host = data.get("host")
            if not host:
                return
            host = str(host)
            if host not in self.hosts:
                self.hosts[host] = _Host()
            res = data.get("res")
            if isinstance(res, dict) and ("opsrunner_control" in res or "results" in res):
                self._reports(host, data, event)
        elif kind in ("runner_on_start", "runner_on_skipped"):
            host = (event.get("event_data") or {}).get("host")
            if host and str(host) not in self.hosts:
                self.hosts[str(host)] = _Host()
        elif kind == "playbook_on_play_start":
            # The previous play is over (all its serial batches): its results are final.
            self.seal()
        elif kind == "playbook_on_stats":
            self.has_stats = True
            self.seal()
            self._stats(event.get("event_data") or {})
        elif kind == "runner_on_failed":
            data = event.get("event_data") or {}
            if data.get("host"):
                self._failed(str(data["host"]), data, event)
        elif kind == "runner_on_unreachable":
            data = event.get("event_data") or {}
            if data.get("host"):
                entry = self._host(str(data["host"]))
                entry.reachable = False
                entry.reason = str((data.get("res") or {}).get("msg") or "unreachable")[:500]

    def _host(self, host: str) -> _Host:
        return self.hosts.setdefault(host, _Host())

    def _reports(self, host: str, data: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
        res = data.get("res") or {}
        task = str(data.get("task") or "")
        found = False
        at: dt.datetime | None = None
        items = res.get("results")
        for item in [res, *items] if isinstance(items, list) else (res,):
            if isinstance(item, dict) and isinstance(item.get("opsrunner_control"), dict):
                at = at or _when(event)
                self._record(host, item["opsrunner_control"], task, at)
                if self._pending:
                    self._pending.pop((host, str(item["opsrunner_control"].get("id") or "")), None)
                found = True
        return found

    def _failed(self, host: str, data: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        entry = self._host(host)
        res = data.get("res") or {}
        message = str(res.get("msg") or res.get("stderr") or "task failed")[:500]
        if self._reports(host, data, event) or data.get("ignore_errors"):
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
            self._pending[(host, match.group(1))] = (report, task, _when(event))

    def settle(self) -> None:
        """Failures that no rescue reported by the end of the play stand as `error`."""
        pending, self._pending = self._pending, {}
        for (host, _cid), (report, task, at) in sorted(pending.items()):
            self._record(host, report, task, at)

    def seal(self) -> None:
        """The play ended: settle its failures and make its merged results final."""
        if self._pending:
            self.settle()
        if self._open:
            self._dirty |= self._open
            self._open = set()

    def _record(self, host: str, report: Mapping[str, Any], task: str, at: dt.datetime) -> None:
        cid = str(report.get("id") or "")
        if not cid or (self.only is not None and cid not in self.only):
            return
        status = str(report.get("status") or "error")
        if status not in STATUS_RANK:
            status = "error"
        check = dict(report, status=status, task=task, at=at.isoformat())
        key = (host, cid)
        previous = self.entries.get(key)
        if previous is None:
            previous = self.entries[key] = self._reopened(host, cid, at) or _Entry(
                status=status,
                reason="",
                evidence="",
                data={},
                remediated=False,
                task=task,
                at=at,
                checks=[],
            )
            cids = self.reported.get(host)
            if cids is None:
                cids = self.reported[sys.intern(host)] = set()
            cids.add(sys.intern(cid))
        previous.checks.append(check)
        _merge(previous)
        if at > previous.at:
            previous.at = at
        self._open.add(key)

    def _reopened(self, host: str, cid: str, at: dt.datetime) -> _Entry | None:
        """The entry of a result already handed out and let go, rebuilt from its stored full
        report (a control reported again in a later play), or None."""
        if self.reload is None or cid not in self.reported.get(host, ()):
            return None
        stored = self.reload(host, cid)
        if stored is None:
            return None
        sha, body = stored
        checks = list(json.loads(body).get("checks") or [])
        if not checks:
            return None
        moments = [_when({"created": c.get("at")}) for c in checks if c.get("at")]
        entry = _Entry("", "", "", {}, False, "", max(moments, default=at), checks, sha)
        _merge(entry)
        return entry

    def _stats(self, data: Mapping[str, Any]) -> None:
        for key in STAT_KEYS:
            for host, count in (data.get(key) or {}).items():
                self._host(str(host)).stats[key] = count
        for host, count in (data.get("dark") or {}).items():
            if count:
                self._host(str(host)).reachable = False

    # -- reading ---------------------------------------------------------
    def record(self, host: str, cid: str) -> ResultRecord:
        """The merged result of one host x control, trimmed, with its full report's hash (and
        bytes, in `full`, for the store's evidence table)."""
        entry = self.entries[(host, cid)]
        content = evidence.canonical(
            {
                "host": host,
                "control": cid,
                "status": entry.status,
                "reason": entry.reason,
                "evidence": entry.evidence,
                "data": entry.data,
                "checks": entry.checks,
            }
        )
        sha = hashlib.sha256(content).hexdigest()
        if entry.sha and entry.sha != sha:
            self._superseded.append(entry.sha)
        entry.sha = sha
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
            full=content if self.keep_evidence else None,
        )

    @property
    def dirty_count(self) -> int:
        """Final results not yet taken by `pop_dirty()`."""
        return len(self._dirty)

    def pop_dirty(self) -> list[ResultRecord]:
        """Final results not taken yet (what the next store batch writes), by host x control.

        With `reload` set, each is let go once handed out (unless its control already
        reported again since): the store holds it from here on."""
        keys, self._dirty = sorted(self._dirty), set()
        out = [self.record(host, cid) for host, cid in keys]
        if self.reload is not None:
            for key in keys:
                if key not in self._open:
                    del self.entries[key]
        return out

    def pop_superseded(self) -> list[str]:
        """Evidence hashes handed out before and replaced since (to delete from the store)."""
        gone, self._superseded = self._superseded, []
        return gone

    def results(self) -> list[ResultRecord]:
        """Every result so far (not yet let go), all made final (failures still pending count
        as `error`)."""
        self.seal()
        self._dirty = set()
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
        self,
        scope: Mapping[str, Iterable[str]],
        run_status: str,
        now: dt.datetime,
        *,
        selected: Collection[str] | None = None,
        filtered: str = "",
        last_known: Mapping[tuple[str, str], LastKnown] | None = None,
    ) -> list[ResultRecord]:
        """Results for in-scope host x control pairs that no event reported.

        - A control the user filtered out (`selected` does not hold it, e.g. a `--tags` run):
          `notchecked`, "filtered out by <filtered>".
        - Unreachable host: `unknown` with the reason (never passing) — except a control whose
          last known result on that host (`last_known`, from earlier runs) was `notapplicable`:
          it keeps that applicability, saying when and in which run it was last checked.
        - A run that timed out, was canceled or interrupted, or a host that failed before the
          control reported: `unknown`.
        - Otherwise the playbooks should have reported it and did not: `error`, "no result
          reported" (a silent role never drops out of the score).
        """
        out = []
        for host, controls in sorted(scope.items()):
            state = self.hosts.get(host, _Host())
            done = self.reported.get(host, set())
            for cid in sorted(controls):
                if cid in done:
                    continue
                known = (last_known or {}).get((host, cid))
                if selected is not None and cid not in selected:
                    status, reason = "notchecked", f"filtered out by {filtered or 'the run'}"
                elif not state.reachable:
                    why = f"host unreachable: {state.reason or 'no answer'}"
                    if known is not None and known.status == "notapplicable":
                        when = known.checked_at.astimezone(dt.UTC).isoformat(timespec="seconds")
                        status = "notapplicable"
                        reason = (
                            f"{why}; not applicable when last checked {when} "
                            f"(run {known.run_ident})"
                        ) + (f": {known.reason}" if known.reason else "")
                    else:
                        status, reason = "unknown", why
                elif run_status in ("timeout", "canceled", "interrupted"):
                    status, reason = "unknown", f"run {run_status} before this control reported"
                elif state.failed_msg or state.stats.get("failures"):
                    status = "unknown"
                    reason = f"host failed before this control reported: {state.failed_msg}"
                else:
                    status = "error"
                    reason = (
                        "no result reported (the playbooks ran on this host, "
                        "no task reported this control)"
                    )
                out.append(
                    ResultRecord(
                        host=host, control_id=cid, status=status, checked_at=now, reason=reason
                    )
                )
        return out


def read_artifact_events(artifact_dir: Path) -> list[dict[str, Any]]:
    """Every event ansible-runner saved under <artifact_dir>/job_events, in counter order."""
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
