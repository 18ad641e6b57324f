"""Incidents (5.3): open, update with the timeline, close with a post-incident review."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import func, select

from opsrunner.policy.loader import Policy
from opsrunner.policy.models import Text, UserName
from opsrunner.policy.safeyaml import YamlProblem, load_file, render_path
from opsrunner.store import Store
from opsrunner.store.models import Incident

KINDS = ("failure", "data_loss", "security", "other")
ENTRY_KINDS = ("response", "action", "progress", "resolved", "note")
STAGES = ("open", "resolved", "closed")


class IncidentError(Exception):
    """An incident input that is refused; nothing was written."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActionItem(_Strict):
    """An improvement the review asks for, with an owner and a due date (5.3.3)."""

    id: str = Field(pattern=r"^A\d{1,3}$")
    what: Text
    owner: UserName
    due: dt.date
    done_at: dt.datetime | None = None


class Review(_Strict):
    """A post-incident review in the Google SRE / PagerDuty postmortem shape."""

    summary: Text
    impact: Text
    root_causes: list[Text] = Field(min_length=1)
    trigger: Text
    detection: Text
    resolution: Text
    went_well: list[Text] = Field(min_length=1)
    went_wrong: list[Text] = Field(min_length=1)
    action_items: list[ActionItem] = Field(min_length=1)

    @field_validator("action_items")
    @classmethod
    def _unique(cls, items: list[ActionItem]) -> list[ActionItem]:
        ids = [i.id for i in items]
        if len(set(ids)) != len(ids):
            raise ValueError("action item ids are listed twice")
        return items


def _utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _minutes(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() / 60.0, 1)


class View:
    """An incident as read from the store, with its measured times."""

    def __init__(self, row: Incident) -> None:
        self.ident = row.ident
        self.title = row.title
        self.severity = int(row.severity)
        self.hosts: list[str] = list(row.hosts.get("hosts", []))
        self.data: dict[str, Any] = dict(row.data)
        self.closed_at = row.closed_at
        self.detected_at = row.opened_at
        self.occurred_at = _parse(self.data["occurred_at"])
        self.timeline: list[dict[str, Any]] = list(self.data.get("timeline", []))
        self.review = (
            Review.model_validate(self.data["review"]) if self.data.get("review") else None
        )

    @property
    def kind(self) -> str:
        """failure, data_loss, security or other."""
        return str(self.data["kind"])

    @property
    def stage(self) -> str:
        """open, resolved or closed."""
        if self.closed_at is not None:
            return "closed"
        return "resolved" if self.resolved_at is not None else "open"

    def _first(self, kinds: Collection[str]) -> dt.datetime | None:
        times = [_parse(e["at"]) for e in self.timeline if e["kind"] in kinds]
        return min((t for t in times if t is not None), default=None)

    @property
    def responded_at(self) -> dt.datetime | None:
        """The first response or action on the timeline."""
        return self._first(("response", "action"))

    @property
    def resolved_at(self) -> dt.datetime | None:
        """When the timeline says service was restored."""
        return self._first(("resolved",))

    def times(self) -> dict[str, float | None]:
        """Minutes to detect (occurred → detected), respond and resolve (from detection)."""
        return {
            "detect_minutes": _minutes(self.occurred_at, self.detected_at),
            "respond_minutes": _minutes(self.detected_at, self.responded_at),
            "resolve_minutes": _minutes(self.detected_at, self.resolved_at),
        }

    def overdue_items(self, today: dt.date) -> list[ActionItem]:
        """Open action items past their due date."""
        if self.review is None:
            return []
        return [i for i in self.review.action_items if i.done_at is None and i.due < today]

    def as_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready."""
        return {
            "ident": self.ident,
            "title": self.title,
            "stage": self.stage,
            "kind": self.kind,
            "severity": self.severity,
            "system": self.data["system"],
            "hosts": self.hosts,
            "symptoms": self.data["symptoms"],
            "impact": self.data["impact"],
            "reported_by": self.data["reported_by"],
            "occurred_at": self.data["occurred_at"],
            "detected_at": _utc(self.detected_at),
            "closed_at": _utc(self.closed_at) if self.closed_at else None,
            "timeline": self.timeline,
            "review": self.review.model_dump(mode="json") if self.review else None,
            **self.times(),
        }


def _now(now: dt.datetime | None) -> dt.datetime:
    return (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)


def _aware(label: str, value: dt.datetime, now: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise IncidentError(f"{label}: give a time zone (…Z or +08:00)")
    value = value.astimezone(dt.UTC)
    if value > now:
        raise IncidentError(f"{label}: {_utc(value)} is in the future (now {_utc(now)})")
    return value


def _person(policy: Policy, label: str, user: str) -> None:
    try:
        policy.person(user)
    except KeyError:
        raise IncidentError(f"{label}: {user!r} is not on the roster") from None


def _get(session: Any, ident: str) -> Incident:
    row = session.scalar(select(Incident).where(Incident.ident == ident))
    if row is None:
        raise IncidentError(f"no incident {ident}")
    return row  # type: ignore[no-any-return]


def _next_ident(session: Any, year: int) -> str:
    prefix = f"INC-{year}-"
    idents = session.scalars(select(Incident.ident).where(Incident.ident.like(prefix + "%")))
    taken = [int(i[len(prefix) :]) for i in idents if i[len(prefix) :].isdigit()]
    return f"{prefix}{max(taken, default=0) + 1:03d}"


def open_incident(
    store: Store,
    policy: Policy,
    *,
    title: str,
    kind: str,
    severity: int,
    system: str,
    hosts: Sequence[str],
    known_hosts: Collection[str],
    symptoms: str,
    impact: str,
    occurred_at: dt.datetime,
    detected_at: dt.datetime,
    reported_by: str,
    now: dt.datetime | None = None,
) -> View:
    """Record a new incident with the facts of 5.3.1; refuse missing or inconsistent facts."""
    moment = _now(now)
    for label, text in (
        ("--title", title),
        ("--system", system),
        ("--symptoms", symptoms),
        ("--impact", impact),
    ):
        if not text.strip():
            raise IncidentError(f"{label}: required when opening an incident (5.3.1)")
    if kind not in KINDS:
        raise IncidentError(f"--kind: {kind!r} is not one of {', '.join(KINDS)}")
    grades = sorted(p.grade for p in policy.plans)
    if severity not in grades:
        shown = ", ".join(str(g) for g in grades) or "none: no plans in policy/plans"
        raise IncidentError(f"--severity: {severity} is not a plan grade ({shown})")
    if not hosts:
        raise IncidentError("--host: name at least one affected host")
    unknown = [h for h in hosts if h not in known_hosts]
    if unknown:
        raise IncidentError(f"--host: {', '.join(unknown)} not in the inventory")
    occurred = _aware("--occurred", occurred_at, moment)
    detected = _aware("--detected", detected_at, moment)
    if detected < occurred:
        raise IncidentError(f"--detected: {_utc(detected)} is before --occurred {_utc(occurred)}")
    _person(policy, "--by", reported_by)
    with store.session() as session:
        ident = _next_ident(session, detected.year)
        row = Incident(
            ident=ident,
            opened_at=detected,
            closed_at=None,
            severity=str(severity),
            title=title.strip(),
            hosts={"hosts": list(hosts)},
            data={
                "kind": kind,
                "system": system.strip(),
                "symptoms": symptoms.strip(),
                "impact": impact.strip(),
                "occurred_at": _utc(occurred),
                "reported_by": reported_by,
                "recorded_at": _utc(moment),
                "timeline": [],
                "review": None,
            },
        )
        session.add(row)
        session.flush()
        return View(row)


def update(
    store: Store,
    policy: Policy,
    ident: str,
    *,
    kind: str,
    text: str,
    by: str,
    at: dt.datetime | None = None,
    done: Sequence[str] = (),
    now: dt.datetime | None = None,
) -> View:
    """Add a timeline entry (response, action, progress report, resolved, note), or mark review
    action items done (`done`). Entries come in time order, never before detection."""
    moment = _now(now)
    when = _aware("--at", at, moment) if at is not None else moment
    _person(policy, "--by", by)
    with store.session() as session:
        row = _get(session, ident)
        view = View(row)
        data = dict(row.data)
        if done:
            if view.review is None:
                raise IncidentError(f"--done: {ident} has no review (and so no action items)")
            items = {i.id: i for i in view.review.action_items}
            missing = [d for d in done if d not in items]
            if missing:
                raise IncidentError(f"--done: {ident} has no action item {', '.join(missing)}")
            review = view.review.model_dump(mode="json")
            for item in review["action_items"]:
                if item["id"] in done:
                    if item["done_at"]:
                        raise IncidentError(f"--done: {item['id']} is already done")
                    item["done_at"] = _utc(when)
            data["review"] = review
            row.data = data
            return View(row)
        if view.stage == "closed":
            raise IncidentError(f"{ident} is closed; open a new incident for new facts")
        if kind not in ENTRY_KINDS:
            raise IncidentError(f"--kind: {kind!r} is not one of {', '.join(ENTRY_KINDS)}")
        if not text.strip():
            raise IncidentError("--text: say what was done or found")
        if when < view.detected_at:
            raise IncidentError(
                f"--at: {_utc(when)} is before the detection at {_utc(view.detected_at)}"
            )
        last = max((dt.datetime.fromisoformat(e["at"]) for e in view.timeline), default=None)
        if last is not None and when < last:
            raise IncidentError(f"--at: {_utc(when)} is before the last entry at {_utc(last)}")
        if kind == "resolved" and view.resolved_at is not None:
            raise IncidentError(f"--kind resolved: {ident} was resolved at {view.resolved_at}")
        entry = {"at": _utc(when), "kind": kind, "by": by, "text": text.strip()}
        data["timeline"] = [*view.timeline, entry]
        row.data = data
        return View(row)


def read_review(path: Path, policy: Policy) -> Review:
    """A review YAML file, validated; problems as file:line: field: message."""
    try:
        located = load_file(path)
    except YamlProblem as exc:
        raise IncidentError(f"{path}:{exc.line}: {exc.field}: {exc.message}") from None
    except OSError as exc:
        raise IncidentError(f"--review: {path}: {exc.strerror or exc}") from None
    if not isinstance(located.data, dict):
        raise IncidentError(f"{path}:1: the review is a YAML mapping (see docs/emergency.md)")
    try:
        review = Review.model_validate(located.data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            message = "required field is missing" if error["type"] == "missing" else error["msg"]
            lines.append(f"{path}:{located.line_for(loc)}: {render_path(loc)}: {message}")
        raise IncidentError("\n".join(lines)) from None
    for i, item in enumerate(review.action_items):
        try:
            policy.person(item.owner)
        except KeyError:
            line = located.line_for(("action_items", i, "owner"))
            raise IncidentError(
                f"{path}:{line}: action_items[{i}].owner: {item.owner!r} is not on the roster"
            ) from None
    return review


def close(
    store: Store,
    ident: str,
    *,
    review: Review,
    at: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> View:
    """Close a resolved incident with its post-incident review."""
    moment = _now(now)
    when = _aware("--at", at, moment) if at is not None else moment
    with store.session() as session:
        row = _get(session, ident)
        view = View(row)
        if view.stage == "closed":
            raise IncidentError(f"{ident} is already closed")
        if view.resolved_at is None:
            raise IncidentError(
                f"{ident} is not resolved: add a 'resolved' entry (incident update --kind "
                "resolved) before closing"
            )
        if view.responded_at is None:
            raise IncidentError(f"{ident} has no response or action on its timeline (5.3.2)")
        if when < view.resolved_at:
            raise IncidentError(f"--at: {_utc(when)} is before the resolution {view.resolved_at}")
        data = dict(row.data)
        data["review"] = review.model_dump(mode="json")
        row.data = data
        row.closed_at = when
        return View(row)


def listing(
    store: Store,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    stage: Literal["open", "resolved", "closed"] | None = None,
) -> list[View]:
    """Incidents detected in [since, until), oldest first."""
    query = select(Incident).order_by(Incident.opened_at, Incident.id)
    if since is not None:
        query = query.where(Incident.opened_at >= since)
    if until is not None:
        query = query.where(Incident.opened_at < until)
    with store.session() as session:
        views = [View(row) for row in session.scalars(query)]
    return [v for v in views if stage is None or v.stage == stage]


def show(store: Store, ident: str) -> View:
    """One incident."""
    with store.session() as session:
        return View(_get(session, ident))


def count(store: Store) -> int:
    """How many incidents are on record."""
    with store.session() as session:
        return int(session.scalar(select(func.count(Incident.id))) or 0)
