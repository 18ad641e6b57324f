"""Advance notices of maintenance (3.1.3): compose, record, deliver, hand to the patching role."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
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
from opsrunner.store.notices import NoticeRecord

PATCH_CONTROLS = ("PAT-001", "PAT-002")
#: The extra variable the patching role reads the store's notices from (docs/notices.md).
ANSIBLE_VAR = "opsrunner_notice_records"
VARS_FILE = "notice-records.json"


class NoticeError(ValueError):
    """Bad notice input: unknown window, a start that is not an opening, nobody to tell."""


@dataclasses.dataclass(frozen=True)
class Occurrence:
    """One opening of a window, in UTC."""

    window: Window
    start: dt.datetime
    end: dt.datetime

    @property
    def due(self) -> dt.datetime:
        """The notice must be on record by this time."""
        return self.start - dt.timedelta(hours=self.window.notice_hours)


def occurrence_after(window: Window, after: dt.datetime) -> Occurrence:
    """The first opening of the window that starts after `after` (cron in the window's zone)."""
    zone = ZoneInfo(window.timezone)
    start = croniter(window.start, after.astimezone(zone)).get_next(dt.datetime)
    start = start.astimezone(dt.UTC)
    return Occurrence(window, start, start + dt.timedelta(minutes=window.duration_minutes))


def occurrence_at(window: Window, start: dt.datetime) -> Occurrence:
    """The opening starting exactly at `start`, or NoticeError."""
    found = occurrence_after(window, start - dt.timedelta(seconds=1))
    if found.start != start.astimezone(dt.UTC):
        local = start.astimezone(ZoneInfo(window.timezone)).isoformat()
        raise NoticeError(
            f"window {window.name} does not open at {local} (next opening: "
            f"{found.start.astimezone(ZoneInfo(window.timezone)).isoformat()})"
        )
    return found


def window_by_name(policy: Policy, name: str) -> Window:
    """A window of windows.yml, or NoticeError listing the names."""
    for window in policy.windows:
        if window.name == name:
            return window
    names = ", ".join(w.name for w in policy.windows) or "none defined"
    raise NoticeError(f"no maintenance window {name!r} (windows: {names})")


def hosts_in(window: Window, host_groups: Mapping[str, Sequence[str]]) -> list[str]:
    """Inventory hosts the window covers."""
    wanted = set(window.groups)
    return sorted(h for h, groups in host_groups.items() if wanted & ({"all"} | set(groups)))


def planned_changes(store: Store, hosts: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Per host, the pending updates the newest patching audit found (PAT-001, PAT-002)."""
    wanted = set(hosts)
    out: dict[str, list[dict[str, Any]]] = {h: [] for h in hosts}
    for result in store.latest_results():
        if result.host not in wanted or result.control_id not in PATCH_CONTROLS:
            continue
        data = result.data.get("data", result.data) if isinstance(result.data, dict) else {}
        for item in data.get("pending") or []:
            if isinstance(item, dict) and item.get("name"):
                out[result.host].append(
                    {
                        "package": str(item["name"]),
                        "from": str(item.get("installed", "")),
                        "to": str(item.get("candidate", "")),
                        "kind": "security" if result.control_id == "PAT-001" else "other",
                    }
                )
    for items in out.values():
        items.sort(key=lambda i: (i["kind"] != "security", i["package"]))
    return out


def compose(
    occ: Occurrence,
    hosts: Sequence[str],
    changes: Mapping[str, list[dict[str, Any]]],
    change_ref: str = "",
) -> tuple[str, str]:
    """Subject and body of the notice (the content hash is over both)."""
    zone = ZoneInfo(occ.window.timezone)
    local_start = occ.start.astimezone(zone)
    local_end = occ.end.astimezone(zone)
    subject = (
        f"[opsrunner] Maintenance notice: {occ.window.name} "
        f"{local_start:%Y-%m-%d %H:%M}-{local_end:%H:%M} {occ.window.timezone}"
    )
    lines = [
        "Advance notice of maintenance (regulation 3.1.3)",
        "",
        f"Window:   {occ.window.name}"
        + (f" - {occ.window.description}" if occ.window.description else ""),
        f"Starts:   {local_start.isoformat()} ({utc_iso(occ.start)})",
        f"Ends:     {local_end.isoformat()} ({utc_iso(occ.end)})",
        f"Groups:   {', '.join(occ.window.groups)}",
        f"Hosts:    {', '.join(hosts) or '(none in the inventory)'}",
    ]
    if change_ref:
        lines.append(f"Change:   {change_ref}")
    lines += ["", "Planned changes (pending updates found by the last patching audit):"]
    planned = [(h, c) for h in hosts for c in changes.get(h, [])]
    if not planned:
        lines.append("  none found by the last audit; the window may still restart services")
    for host, item in planned:
        lines.append(f"  {host}: {item['package']} {item['from']} -> {item['to']} ({item['kind']})")
    lines += ["", "Services on these hosts may be interrupted during the window."]
    return subject, "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class NoticeView:
    """A notice as recorded, with each recipient's delivery."""

    ident: str
    window: str
    window_start: dt.datetime
    window_end: dt.datetime
    timezone: str
    created_at: dt.datetime
    sent_at: dt.datetime | None
    status: str
    subject: str
    body: str
    content_sha256: str
    hosts: list[str]
    audience: list[str]
    change: str
    data: dict[str, Any]
    deliveries: list[dict[str, Any]]

    @property
    def in_time(self) -> bool:
        """Whether it reached every recipient before the notice period began."""
        due = self.data.get("due")
        return self.sent_at is not None and due is not None and utc_iso(self.sent_at) <= due

    def as_json(self) -> dict[str, Any]:
        """For --json and the tests."""
        out = dataclasses.asdict(self)
        for key in ("window_start", "window_end", "created_at", "sent_at"):
            out[key] = utc_iso(out[key]) if out[key] else None
        return out


def _view(store: Store, row: NoticeRecord) -> NoticeView:
    deliveries = [
        {
            "channel": m.channel,
            "recipient": m.recipient,
            "status": m.status,
            "attempts": m.attempts,
            "sent_at": utc_iso(m.sent_at) if m.sent_at else None,
            "error": m.last_error,
        }
        for m in outbox.messages(store, ref=row.ident)
    ]
    return NoticeView(
        row.ident,
        row.window_name,
        row.window_start,
        row.window_end,
        row.timezone,
        row.created_at,
        row.sent_at,
        row.status,
        row.subject,
        row.body,
        row.content_sha256,
        list(row.hosts),
        list(row.audience),
        row.change,
        dict(row.data),
        deliveries,
    )


def get_notice(store: Store, ident: str) -> NoticeView:
    """A recorded notice by ident, or NoticeError."""
    with store.session() as session:
        row = session.scalars(select(NoticeRecord).where(NoticeRecord.ident == ident)).first()
    if row is None:
        raise NoticeError(f"no notice {ident!r} (see `opsrunner notice list`)")
    return _view(store, row)


def list_notices(store: Store, window: str | None = None) -> list[NoticeView]:
    """Recorded notices, newest window first."""
    query = select(NoticeRecord).order_by(NoticeRecord.window_start.desc(), NoticeRecord.id.desc())
    if window:
        query = query.where(NoticeRecord.window_name == window)
    with store.session() as session:
        rows = list(session.scalars(query))
    return [_view(store, r) for r in rows]


def _settle(store: Store, ident: str) -> None:
    """A notice counts once every recipient has it: sent_at is then the last delivery's time."""
    with store.session() as session:
        row = session.scalars(select(NoticeRecord).where(NoticeRecord.ident == ident)).one()
        rows = outbox.messages(store, ref=ident)
        if rows and all(m.status == "sent" for m in rows):
            row.status = "sent"
            row.sent_at = max(m.sent_at for m in rows if m.sent_at is not None)
        elif any(m.status == "failed" for m in rows):
            row.status = "failed"
        else:
            row.status = "pending"


def settle_all(store: Store) -> None:
    """Bring every unfinished notice's status up to date with its deliveries."""
    with store.session() as session:
        idents = list(
            session.scalars(select(NoticeRecord.ident).where(NoticeRecord.status == "pending"))
        )
    for ident in idents:
        _settle(store, ident)


def send_notice(
    policy: Policy,
    store: Store,
    window_name: str,
    host_groups: Mapping[str, Sequence[str]],
    now: dt.datetime,
    *,
    start: dt.datetime | None = None,
    change_ref: str = "",
    secrets: SecretSource | None = None,
    sender: outbox.Sender | None = None,
) -> NoticeView:
    """Compose, record and deliver the notice of a window's next (or given) opening.

    Refuses (NoticeError, nothing written) an unknown window, a start that is not an opening,
    an opening already under way, or a window nobody is routed to. A notice already on record
    for that opening is not sent twice: its pending deliveries are retried instead.
    """
    window = window_by_name(policy, window_name)
    occ = occurrence_at(window, start) if start is not None else occurrence_after(window, now)
    if occ.start <= now:
        raise NoticeError(
            f"window {window.name} opened at {utc_iso(occ.start)}: too late to notify"
        )
    who = audience(policy, "notice", window.groups)
    if not who.recipients:
        raise NoticeError(
            f"nobody is routed notices for groups {', '.join(window.groups)} "
            "(policy/notifications.yml: routes with kinds [notice])"
        )
    secrets = secrets or secrets_for(policy, store.state_dir)
    ident = f"NTC-{occ.start:%Y%m%dT%H%MZ}-{window.name}"[:64]
    with store.session() as session:
        existing = session.scalars(
            select(NoticeRecord).where(
                NoticeRecord.window_name == window.name, NoticeRecord.window_start == occ.start
            )
        ).first()
    if existing is None:
        hosts = hosts_in(window, host_groups)
        changes = planned_changes(store, hosts)
        subject, body = compose(occ, hosts, changes, change_ref)
        digest = hashlib.sha256(f"{subject}\n{body}".encode()).hexdigest()
        with store.session() as session:
            session.add(
                NoticeRecord(
                    ident=ident,
                    window_name=window.name,
                    window_start=occ.start,
                    window_end=occ.end,
                    timezone=window.timezone,
                    created_at=now,
                    sent_at=None,
                    status="pending",
                    subject=subject,
                    body=body,
                    content_sha256=digest,
                    hosts=hosts,
                    audience=list(who.names),
                    change=change_ref,
                    data={
                        "due": utc_iso(occ.due),
                        "notice_hours": window.notice_hours,
                        "planned": changes,
                        "unreachable": list(who.unreachable),
                        "late": now > occ.due,
                    },
                )
            )
        message = Message(
            kind="notice",
            subject=subject,
            text=body,
            ref=ident,
            status="firing",
            severity="info",
            labels={"alertname": "MaintenanceNotice", "window": window.name, "kind": "notice"},
            annotations={"hosts": ", ".join(hosts), "content_sha256": digest},
            starts_at=utc_iso(occ.start),
            ends_at=utc_iso(occ.end),
        )
        outbox.enqueue(store, "notice", ident, who.recipients, message, now)
    else:
        ident = existing.ident
    outbox.deliver_due(
        store,
        dict(policy.notifications.channels),
        secrets,
        policy.notifications.delivery,
        now,
        ref=ident,
        sender=sender,
    )
    _settle(store, ident)
    return get_notice(store, ident)


def due_notices(policy: Policy, store: Store, now: dt.datetime) -> list[Occurrence]:
    """Openings whose notice should go out now: within notice period + lead, none on record."""
    if not policy.notifications.routes:
        return []
    lead = dt.timedelta(hours=policy.notifications.delivery.notice_lead_hours)
    out = []
    for window in policy.windows:
        if not audience(policy, "notice", window.groups).recipients:
            continue  # nobody to tell: `notice send` says so, the daemon stays quiet
        occ = occurrence_after(window, now)
        if now < occ.due - lead:
            continue
        with store.session() as session:
            exists = session.scalars(
                select(NoticeRecord.id).where(
                    NoticeRecord.window_name == window.name, NoticeRecord.window_start == occ.start
                )
            ).first()
        if exists is None:
            out.append(occ)
    return out


def ansible_records(store: Store) -> list[dict[str, Any]]:
    """Notices on record in the store, in the shape the patching role reads (`patching_notices`).

    Only a notice every recipient received counts; its `sent_at` is the last delivery's time.
    """
    with store.session() as session:
        rows = list(
            session.scalars(
                select(NoticeRecord)
                .where(NoticeRecord.status == "sent")
                .order_by(NoticeRecord.window_start)
            )
        )
    return [
        {
            "window": r.window_name,
            "window_start": utc_iso(r.window_start),
            "sent_at": utc_iso(r.sent_at) if r.sent_at else None,
            "ticket": r.change or r.ident,
            "audience": list(r.audience),
            "content_sha256": r.content_sha256,
        }
        for r in rows
    ]


def ansible_vars(store: Store) -> dict[str, Any]:
    """Extra vars for a patching run: `{opsrunner_notice_records: [...]}`."""
    return {ANSIBLE_VAR: ansible_records(store)}


def write_vars_file(store: Store, path: Path | None = None) -> Path:
    """Write the extra-vars file plain `ansible-playbook -e @FILE` users pass (owner-only)."""
    target = path or store.state_dir / VARS_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(ansible_vars(store), indent=2) + "\n", encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(target)
    return target
