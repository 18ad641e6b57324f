"""Maintenance windows and advance notices (3.1.3) evaluated for one host, on the controller."""

from __future__ import annotations

import datetime as _dt
from typing import Any
from zoneinfo import ZoneInfo

from ansible.errors import AnsibleFilterError

try:
    from croniter import croniter

    HAS_CRONITER = True
except ImportError:  # the controller lacks croniter: the filter says so when it is used
    HAS_CRONITER = False

UTC = _dt.UTC


def _instant(value: Any, what: str) -> _dt.datetime:
    """An aware datetime from a datetime, a date or an ISO 8601 string (naive means UTC)."""
    if isinstance(value, _dt.datetime):
        parsed = value
    elif isinstance(value, _dt.date):
        parsed = _dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value.strip():
        try:
            parsed = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise AnsibleFilterError(
                f"patching_window_state: {what}: not an ISO 8601 time: {value!r}"
            ) from exc
    else:
        raise AnsibleFilterError(f"patching_window_state: {what}: missing or not a time: {value!r}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(value: _dt.datetime | None) -> str | None:
    return (
        value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        if value
        else None
    )


def _field(window: dict[str, Any], key: str, index: int) -> Any:
    if key not in window or window[key] in (None, ""):
        raise AnsibleFilterError(f"patching_window_state: windows[{index}].{key} is required")
    return window[key]


def _notice_for(
    name: str, start: _dt.datetime, notice_hours: float, notices: list[dict[str, Any]]
) -> dict[str, Any]:
    """The notice on record for one window occurrence, and whether it came early enough."""
    due = start - _dt.timedelta(hours=notice_hours)
    found: list[dict[str, Any]] = []
    for index, notice in enumerate(notices):
        if str(notice.get("window", "")) != name:
            continue
        if _instant(notice.get("window_start"), f"notices[{index}].window_start") != start:
            continue
        sent = _instant(notice.get("sent_at"), f"notices[{index}].sent_at")
        found.append(
            {"ticket": str(notice.get("ticket", "")), "sent_at": _iso(sent), "in_time": sent <= due}
        )
    in_time = [n for n in found if n["in_time"]]
    return {"due": _iso(due), "on_record": bool(in_time), "notice": (in_time or found or [None])[0]}


def patching_window_state(
    windows: list[dict[str, Any]] | None,
    notices: list[dict[str, Any]] | None,
    host_groups: list[str] | None,
    now: Any = None,
) -> dict[str, Any]:
    """Where a host stands against its maintenance windows right now.

    Returns ``enforce_allowed`` (inside a window whose notice was on record the
    required hours before its start), ``compliant`` (PAT-006: a window exists and
    no notice is overdue) and the evidence for both. ``now`` exists for tests.
    """
    if not HAS_CRONITER:
        raise AnsibleFilterError(
            "patching_window_state needs the croniter Python package on the controller"
        )
    current = _instant(now, "now") if now is not None else _dt.datetime.now(UTC)
    groups = set(host_groups or []) | {"all"}
    notices = list(notices or [])
    mine: list[dict[str, Any]] = []
    for index, window in enumerate(windows or []):
        if not isinstance(window, dict):
            raise AnsibleFilterError(f"patching_window_state: windows[{index}] must be a mapping")
        if not groups & set(window.get("groups") or []):
            continue
        name = str(_field(window, "name", index))
        zone_name = str(_field(window, "timezone", index))
        try:
            zone = ZoneInfo(zone_name)
        except (KeyError, ValueError) as exc:
            raise AnsibleFilterError(
                f"patching_window_state: windows[{index}].timezone: unknown zone {zone_name!r}"
            ) from exc
        expr = str(_field(window, "start", index))
        if not croniter.is_valid(expr):
            raise AnsibleFilterError(
                f"patching_window_state: windows[{index}].start: invalid cron expression {expr!r}"
            )
        duration = _dt.timedelta(minutes=float(_field(window, "duration_minutes", index)))
        notice_hours = float(window.get("notice_hours") or 0)
        local_now = current.astimezone(zone)
        last = croniter(expr, local_now).get_prev(_dt.datetime)
        upcoming = croniter(expr, local_now).get_next(_dt.datetime)
        # croniter steps strictly before/after: a window that starts exactly now is the current one.
        if (
            croniter.match(expr, local_now.replace(second=0, microsecond=0))
            and local_now.second == 0 == local_now.microsecond
        ):
            last = local_now
        inside = last <= local_now < last + duration
        entry = {
            "name": name,
            "timezone": zone_name,
            "notice_hours": notice_hours,
            "inside": inside,
            "current": None,
            "next": {"start": _iso(upcoming), **_notice_for(name, upcoming, notice_hours, notices)},
        }
        entry["next"]["notice_overdue"] = (not entry["next"]["on_record"]) and current >= _instant(
            entry["next"]["due"], "due"
        )
        if inside:
            entry["current"] = {
                "start": _iso(last),
                "end": _iso(last + duration),
                **_notice_for(name, last, notice_hours, notices),
            }
        mine.append(entry)

    if not mine:
        return {
            "windows": [],
            "inside": False,
            "enforce_allowed": False,
            "compliant": False,
            "window": None,
            "reason": "no maintenance window in the policy covers the groups "
            f"{sorted(groups - {'all'})}",
            "evidence": "no maintenance window defined for this host",
            "now": _iso(current),
        }

    open_now = [w for w in mine if w["inside"]]
    allowed = [w for w in open_now if w["current"]["on_record"]]
    if allowed:
        chosen = allowed[0]
        cur = chosen["current"]
        reason = (
            f"inside window {chosen['name']} ({cur['start']} to {cur['end']}), "
            f"notice {cur['notice']['ticket'] or '(no ticket)'} sent {cur['notice']['sent_at']}"
        )
    elif open_now:
        chosen = open_now[0]
        cur = chosen["current"]
        late = cur["notice"]
        reason = (
            f"inside window {chosen['name']} ({cur['start']} to {cur['end']}) "
            "but no notice was on record "
            f"{chosen['notice_hours']:g} h before its start (due {cur['due']}"
            + (f"; notice {late['ticket']} sent late at {late['sent_at']}" if late else "")
            + ")"
        )
    else:
        chosen = min(mine, key=lambda w: str(w["next"]["start"]))
        nxt = chosen["next"]["start"]
        reason = f"outside every maintenance window; next is {chosen['name']} at {nxt}"

    problems: list[str] = []
    for w in mine:
        if w["inside"] and not w["current"]["on_record"]:
            problems.append(
                f"window {w['name']} at {w['current']['start']} opened without notice "
                f"on record by {w['current']['due']}"
            )
        if w["next"]["notice_overdue"]:
            problems.append(
                f"notice for window {w['name']} at {w['next']['start']} is overdue "
                f"(due {w['next']['due']})"
            )
    if problems:
        evidence = "; ".join(problems)
    else:
        evidence = "; ".join(
            f"{w['name']}: next {w['next']['start']}, notice "
            + ("on record" if w["next"]["on_record"] else f"due by {w['next']['due']}")
            for w in mine
        )
    return {
        "windows": mine,
        "inside": bool(open_now),
        "enforce_allowed": bool(allowed),
        "compliant": not problems,
        "window": chosen["name"],
        "reason": reason,
        "evidence": evidence,
        "now": _iso(current),
    }


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"patching_window_state": patching_window_state}
