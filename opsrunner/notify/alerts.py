"""Alerts: conditions found in the store and the policy, raised once per fingerprint, repeated,
muted inside an announced maintenance window, resolved when they clear (5.3.1)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter  # type: ignore[import-untyped]
from sqlalchemy import select

from opsrunner.notify import outbox
from opsrunner.notify.channels import Message, SecretSource, utc_iso
from opsrunner.notify.routing import audience, secrets_for
from opsrunner.policy.loader import Policy
from opsrunner.policy.models import Window
from opsrunner.store import Store
from opsrunner.store.notices import AlertState, NoticeRecord

FINISHED = ("successful", "failed", "timeout", "canceled", "interrupted")
BAD_RUN = ("failed", "interrupted")


class AlertError(ValueError):
    """Bad alert input (unknown or ambiguous fingerprint)."""


@dataclasses.dataclass(frozen=True)
class Condition:
    """Something wrong right now; the same labels always give the same fingerprint."""

    rule: str
    severity: str
    summary: str
    labels: dict[str, str]
    host: str = ""

    @property
    def fingerprint(self) -> str:
        """sha256 of the rule and labels, 16 hex digits (Alertmanager's length)."""
        raw = json.dumps({"rule": self.rule, **self.labels}, sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


# -- conditions ----------------------------------------------------------------------------------
def _failing_controls(policy: Policy, store: Store) -> list[Condition]:
    wanted = set(policy.notifications.alerts.fail_severities)
    severity = {c.id: c.severity for c in policy.controls}
    out = []
    for r in store.latest_results():
        if r.status in ("fail", "error") and severity.get(r.control_id) in wanted:
            why = (r.reason or r.evidence or "").strip().splitlines()
            out.append(
                Condition(
                    "control_failing",
                    severity[r.control_id],
                    f"{r.control_id} {r.status} on {r.host}" + (f": {why[0][:200]}" if why else ""),
                    {"alertname": "ControlFailing", "control": r.control_id, "host": r.host},
                    r.host,
                )
            )
    return out


def _unknown_hosts(policy: Policy, store: Store) -> list[Condition]:
    needed = policy.notifications.alerts.unknown_runs
    streak: dict[str, list[bool]] = {}
    for run in store.list_runs(limit=200):  # newest first
        if run.status not in FINISHED or run.mode == "operate" or run.id is None:
            continue
        for host in store.hosts(run.id):
            seen = streak.setdefault(host.host, [])
            if len(seen) < needed:
                seen.append(not host.reachable)
    return [
        Condition(
            "host_unknown",
            "high",
            f"{host} unreachable in the last {needed} runs",
            {"alertname": "HostUnknown", "host": host},
            host,
        )
        for host, seen in sorted(streak.items())
        if len(seen) == needed and all(seen)
    ]


def _bad_runs(store: Store) -> list[Condition]:
    latest: dict[str, Any] = {}
    for run in store.list_runs(limit=500):  # newest first
        if run.status in FINISHED:
            latest.setdefault(run.job or run.mode, run)
    return [
        Condition(
            "run_failed",
            "high",
            f"run {run.ident} ({job}) ended {run.status}"
            + (f": {run.reason}" if run.reason else ""),
            {"alertname": "RunFailed", "job": job},
        )
        for job, run in sorted(latest.items())
        if run.status in BAD_RUN
    ]


def _expiring(policy: Policy, now: dt.datetime) -> list[Condition]:
    horizon = now + dt.timedelta(days=policy.notifications.alerts.expiring_days)
    out = []
    for w in policy.waivers:
        if w.status(now) == "active" and w.expires_at <= horizon:
            out.append(
                Condition(
                    "waiver_expiring",
                    "medium",
                    f"waiver {w.id} ({w.control}) expires {utc_iso(w.expires_at)}",
                    {"alertname": "WaiverExpiring", "waiver": w.id},
                )
            )
    for control in policy.controls:
        if control.kind != "manual":
            continue
        valid = [a for a in policy.attestations_for(control.id) if a.valid_at(now)]
        if valid and max(a.valid_until for a in valid) <= horizon:
            until = max(a.valid_until for a in valid)
            out.append(
                Condition(
                    "attestation_expiring",
                    "medium",
                    f"attestation of {control.id} expires {utc_iso(until)}",
                    {"alertname": "AttestationExpiring", "control": control.id},
                )
            )
    return out


def _stale(policy: Policy, store: Store, now: dt.datetime) -> list[Condition]:
    if not policy.notifications.alerts.stale:
        return []
    controls = {c.id: c for c in policy.controls}
    hosts: dict[str, list[str]] = {}
    for r in store.latest_results():
        control = controls.get(r.control_id)
        if control is not None and control.frequency.is_stale(r.checked_at, now):
            hosts.setdefault(r.control_id, []).append(r.host)
    return [
        Condition(
            "stale_evidence",
            "medium",
            f"{cid} evidence older than its {controls[cid].frequency} frequency on "
            + ", ".join(sorted(names)),
            {"alertname": "StaleEvidence", "control": cid},
        )
        for cid, names in sorted(hosts.items())
    ]


def _overdue_actions(store: Store, now: dt.datetime) -> list[Condition]:
    from opsrunner.emergency import incidents

    return [
        Condition(
            "incident_action_overdue",
            "high",
            f"{view.ident}: action {item.id} ({item.what}, owner {item.owner}) was due {item.due}",
            {"alertname": "IncidentActionOverdue", "incident": view.ident, "action": item.id},
        )
        for view in incidents.listing(store, until=now)
        for item in view.overdue_items(now.date())
    ]


def conditions(policy: Policy, store: Store, now: dt.datetime) -> list[Condition]:
    """Everything that is wrong now, one condition per fingerprint."""
    found = [
        *_failing_controls(policy, store),
        *_unknown_hosts(policy, store),
        *_bad_runs(store),
        *_expiring(policy, now),
        *_stale(policy, store, now),
        *_overdue_actions(store, now),
    ]
    return list({c.fingerprint: c for c in found}.values())


# -- muting --------------------------------------------------------------------------------------
def _open_at(window: Window, now: dt.datetime) -> dt.datetime | None:
    """The start of the window's opening that `now` falls in, or None."""
    zone = ZoneInfo(window.timezone)
    probe = now.astimezone(zone) + dt.timedelta(seconds=1)
    start = croniter(window.start, probe).get_prev(dt.datetime).astimezone(dt.UTC)
    end = start + dt.timedelta(minutes=window.duration_minutes)
    return start if start <= now < end else None


def announced_window(policy: Policy, store: Store, groups: Iterable[str], now: dt.datetime) -> str:
    """The name of an open window covering these groups whose notice went out, else ""."""
    names = set(groups) | {"all"}
    for window in policy.windows_for(names):
        start = _open_at(window, now)
        if start is None:
            continue
        with store.session() as session:
            sent = session.scalars(
                select(NoticeRecord.id).where(
                    NoticeRecord.window_name == window.name,
                    NoticeRecord.window_start == start,
                    NoticeRecord.status == "sent",
                )
            ).first()
        if sent is not None:
            return window.name
    return ""


# -- the state machine ---------------------------------------------------------------------------
@dataclasses.dataclass
class Evaluation:
    """What one evaluation did, by fingerprint."""

    raised: list[str] = dataclasses.field(default_factory=list)
    repeated: list[str] = dataclasses.field(default_factory=list)
    resolved: list[str] = dataclasses.field(default_factory=list)
    muted: list[str] = dataclasses.field(default_factory=list)
    delivered: list[outbox.Delivered] = dataclasses.field(default_factory=list)


def _message(row: AlertState, status: str, now: dt.datetime, repeat: bool) -> Message:
    word = {"firing": "FIRING", "resolved": "RESOLVED"}[status]
    again = " (repeat)" if repeat else ""
    text = [
        row.summary,
        "",
        f"Rule:        {row.rule}",
        f"Severity:    {row.severity}",
        f"Since:       {utc_iso(row.started_at)}",
        f"Fingerprint: {row.fingerprint}",
    ]
    if status == "resolved":
        text.append(f"Resolved:    {utc_iso(now)}")
    return Message(
        kind="resolved" if status == "resolved" else "alert",
        subject=f"[opsrunner] {word}{again} {row.severity}: {row.summary}"[:250],
        text="\n".join(text) + "\n",
        ref=row.fingerprint,
        status=status,
        severity=row.severity,
        labels={**{k: str(v) for k, v in row.labels.items()}, "severity": row.severity},
        annotations={"rule": row.rule},
        starts_at=utc_iso(row.started_at),
        ends_at=utc_iso(now) if status == "resolved" else "",
    )


def _send(
    policy: Policy,
    store: Store,
    row: AlertState,
    groups: Sequence[str],
    status: str,
    now: dt.datetime,
    repeat: bool = False,
) -> None:
    who = audience(policy, "alert", groups, row.severity)
    outbox.enqueue(
        store,
        "resolved" if status == "resolved" else "alert",
        row.fingerprint,
        who.recipients,
        _message(row, status, now, repeat),
        now,
    )


def evaluate(
    policy: Policy,
    store: Store,
    now: dt.datetime,
    *,
    found: Sequence[Condition] | None = None,
    secrets: SecretSource | None = None,
    sender: outbox.Sender | None = None,
    deliver: bool = True,
) -> Evaluation:
    """Compare the conditions with the alerts on record; raise, repeat, mute, resolve; deliver."""
    current = {
        c.fingerprint: c for c in (conditions(policy, store, now) if found is None else found)
    }
    host_groups: Mapping[str, list[str]] = store.host_groups()
    repeat = dt.timedelta(minutes=policy.notifications.alerts.repeat_minutes)
    out = Evaluation()
    # Messages are queued after each transaction closes: one writer at a time (SQLite).
    sends: list[tuple[AlertState, list[str], str, bool]] = []
    with store.session() as session:
        rows = {r.fingerprint: r for r in session.scalars(select(AlertState))}
    for fp, cond in current.items():
        groups = host_groups.get(cond.host, []) if cond.host else []
        muted = announced_window(policy, store, groups, now) if cond.host else ""
        with store.session() as session:
            row = session.scalars(select(AlertState).where(AlertState.fingerprint == fp)).first()
            fresh = row is None or row.status == "resolved"
            if row is None:
                row = AlertState(fingerprint=fp, sent_count=0)
                session.add(row)
            if fresh:
                row.started_at, row.status, row.resolved_at = now, "firing", None
                row.last_sent_at, row.acked_by, row.acked_at = None, "", None
                out.raised.append(fp)
            row.rule, row.severity, row.host = cond.rule, cond.severity, cond.host
            row.summary, row.labels, row.last_seen_at = cond.summary, dict(cond.labels), now
            row.muted_by = muted
            session.flush()
            if muted:
                out.muted.append(fp)
                continue
            due = row.last_sent_at is None or (
                not row.acked_by and now - row.last_sent_at >= repeat
            )
            if due:
                again = row.last_sent_at is not None
                row.last_sent_at, row.sent_count = now, row.sent_count + 1
                session.flush()
                sends.append((row, groups, "firing", again))
                if again:
                    out.repeated.append(fp)
    for fp, row in rows.items():
        if fp in current or row.status != "firing":
            continue
        with store.session() as session:
            live = session.get(AlertState, row.id)
            assert live is not None
            live.status, live.resolved_at, live.muted_by = "resolved", now, ""
            session.flush()
            out.resolved.append(fp)
            if live.last_sent_at is not None:  # never told: nothing to take back
                groups = host_groups.get(live.host, []) if live.host else []
                sends.append((live, groups, "resolved", False))
    for row, groups, status, again in sends:
        _send(policy, store, row, groups, status, now, repeat=again)
    if deliver:
        out.delivered = outbox.deliver_due(
            store,
            dict(policy.notifications.channels),
            secrets or secrets_for(policy, store.state_dir),
            policy.notifications.delivery,
            now,
            sender=sender,
        )
    return out


def list_alerts(store: Store, status: str | None = None) -> list[AlertState]:
    """Alerts on record (firing first, newest first)."""
    query = select(AlertState).order_by(AlertState.status, AlertState.started_at.desc())
    if status:
        query = query.where(AlertState.status == status)
    with store.session() as session:
        return list(session.scalars(query))


def find_alert(store: Store, prefix: str) -> AlertState:
    """An alert by fingerprint or a unique prefix of it."""
    if len(prefix) < 4:
        raise AlertError("give at least 4 characters of the fingerprint")
    with store.session() as session:
        rows = list(
            session.scalars(select(AlertState).where(AlertState.fingerprint.startswith(prefix)))
        )
    if not rows:
        raise AlertError(f"no alert with fingerprint {prefix!r} (see `opsrunner alert list`)")
    if len(rows) > 1:
        raise AlertError(
            f"fingerprint {prefix!r} is ambiguous: {', '.join(r.fingerprint for r in rows)}"
        )
    return rows[0]


def ack(store: Store, prefix: str, by: str, now: dt.datetime) -> AlertState:
    """Acknowledge a firing alert: it stops repeating until it resolves or fires again."""
    row = find_alert(store, prefix)
    if row.status != "firing":
        raise AlertError(f"alert {row.fingerprint} is {row.status}; only a firing alert is acked")
    with store.session() as session:
        live = session.get(AlertState, row.id)
        assert live is not None
        live.acked_by, live.acked_at = by, now
        return live
