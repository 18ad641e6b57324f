"""Where a run's time went: task durations from runner events, per role, task, control, host."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opsrunner.runner.events import CONTROL_ID
from opsrunner.store import RunRecord, Store
from opsrunner.store.timings import TimingRecord
from opsrunner.store.timings import timings as stored_timings

# The events that end one task on one host, and the status each gives it.
_ENDS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}


def _moment(value: Any) -> dt.datetime | None:
    """An event's start/end stamp as an aware UTC time (ansible-runner writes naive UTC)."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


class TimingCollector:
    """Collects one record per task x host from a run's events (fed in any order, once each).

    ansible-runner stamps every runner_on_ok/failed/skipped/unreachable event with the task's
    start on that host and its duration in seconds; a task that loops over items ends with one
    such event covering all its items. Feeding the same event twice (artifact re-import) keeps
    one record.
    """

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], TimingRecord] = {}
        self._order: dict[str, int] = {}

    def feed(self, event: Mapping[str, Any]) -> None:
        """Take one ansible-runner event (a job_events/*.json dict)."""
        kind = str(event.get("event") or "")
        data = event.get("event_data") or {}
        uuid = str(data.get("task_uuid") or "")
        if kind == "playbook_on_task_start" and uuid:
            self._seq(uuid, event)
            return
        status = _ENDS.get(kind)
        host = str(data.get("host") or "")
        if status is None or not host or not uuid:
            return
        res = data.get("res") or {}
        if status == "ok" and isinstance(res, dict) and res.get("changed"):
            status = "changed"
        if status == "failed" and data.get("ignore_errors"):
            status = "ignored"
        start = _moment(data.get("start"))
        end = _moment(data.get("end"))
        duration = data.get("duration")
        if not isinstance(duration, int | float):
            duration = (end - start).total_seconds() if start and end else 0.0
        self._records[(uuid, host)] = TimingRecord(
            seq=self._seq(uuid, event),
            host=host,
            play=str(data.get("play") or ""),
            role=str(data.get("role") or ""),
            task=str(data.get("task") or ""),
            action=str(data.get("resolved_action") or data.get("task_action") or ""),
            status=status,
            started_at=start,
            duration=max(0.0, float(duration)),
        )

    def _seq(self, uuid: str, event: Mapping[str, Any]) -> int:
        if uuid not in self._order:
            counter = event.get("counter")
            self._order[uuid] = counter if isinstance(counter, int) else len(self._order)
        return self._order[uuid]

    def records(self) -> list[TimingRecord]:
        """Every task x host seen, in the order the tasks started."""
        return sorted(self._records.values(), key=lambda r: (r.seq, r.host))


@dataclasses.dataclass(frozen=True)
class Line:
    """One row of a timing table: a role, a task, a control or a host."""

    name: str
    seconds: float  # summed over hosts (host-seconds)
    share: float  # of all tasks' host-seconds in the run, 0..1
    tasks: int  # task x host executions
    hosts: int
    slowest_host: str
    slowest_seconds: float  # the longest single task x host execution in this row
    role: str = ""


@dataclasses.dataclass(frozen=True)
class Timing:
    """Where a run's time went, each table sorted slowest first."""

    run: str
    wall: float | None  # the run's end minus start, seconds (None while running)
    hosts: int
    executions: int
    seconds: float  # all tasks' host-seconds
    roles: list[Line]
    tasks: list[Line]
    controls: list[Line]
    by_host: list[Line]


def _lines(groups: Mapping[tuple[str, str], list[TimingRecord]], total: float) -> list[Line]:
    lines = []
    for (role, name), records in groups.items():
        seconds = sum(r.duration for r in records)
        slowest = max(records, key=lambda r: r.duration)
        lines.append(
            Line(
                name=name,
                role=role,
                seconds=seconds,
                share=seconds / total if total > 0 else 0.0,
                tasks=len(records),
                hosts=len({r.host for r in records}),
                slowest_host=slowest.host,
                slowest_seconds=slowest.duration,
            )
        )
    return sorted(lines, key=lambda line: (-line.seconds, line.role, line.name))


def _role(record: TimingRecord) -> str:
    # Tasks outside any role (fact gathering, play-level tasks) count under their play.
    return record.role or f"(play) {record.play}"


def summarise(
    records: Sequence[TimingRecord],
    run: str = "",
    started: dt.datetime | None = None,
    ended: dt.datetime | None = None,
) -> Timing:
    """Sum the records per role, task, control and host; slowest first."""
    total = sum(r.duration for r in records)
    roles: dict[tuple[str, str], list[TimingRecord]] = {}
    tasks: dict[tuple[str, str], list[TimingRecord]] = {}
    controls: dict[tuple[str, str], list[TimingRecord]] = {}
    hosts: dict[tuple[str, str], list[TimingRecord]] = {}
    for record in records:
        role = _role(record)
        roles.setdefault(("", role), []).append(record)
        tasks.setdefault((role, record.task), []).append(record)
        hosts.setdefault(("", record.host), []).append(record)
        match = CONTROL_ID.match(record.task)
        if match:
            controls.setdefault((role, match.group(1)), []).append(record)
    wall = (ended - started).total_seconds() if started and ended else None
    return Timing(
        run=run,
        wall=wall,
        hosts=len(hosts),
        executions=len(records),
        seconds=total,
        roles=_lines(roles, total),
        tasks=_lines(tasks, total),
        controls=_lines(controls, total),
        by_host=_lines(hosts, total),
    )


def to_json(timing: Timing) -> dict[str, Any]:
    """The timing as plain JSON data (every row, not only the slowest)."""
    return {
        "run": timing.run,
        "wall_seconds": timing.wall,
        "hosts": timing.hosts,
        "task_executions": timing.executions,
        "host_seconds": timing.seconds,
        "share_of": "host_seconds: all task x host durations summed",
        "roles": [dataclasses.asdict(line) for line in timing.roles],
        "tasks": [dataclasses.asdict(line) for line in timing.tasks],
        "controls": [dataclasses.asdict(line) for line in timing.controls],
        "hosts_detail": [dataclasses.asdict(line) for line in timing.by_host],
    }


def _table(title: str, lines: Iterable[Line], limit: int | None, with_role: bool) -> list[str]:
    rows = list(lines)
    shown = rows if limit is None else rows[:limit]
    more = f" (slowest {len(shown)} of {len(rows)})" if len(shown) < len(rows) else ""
    out = [f"{title}, slowest first{more}:"]
    out.append(
        f"  {'seconds':>9} {'share':>6} {'runs':>5} {'slowest':>8}  "
        + ("role / " if with_role else "")
        + "name"
    )
    for line in shown:
        where = f"{line.role} / " if with_role and line.role else ""
        out.append(
            f"  {line.seconds:>9.1f} {line.share:>6.1%} {line.tasks:>5} "
            f"{line.slowest_seconds:>8.1f}  {where}{line.name}"
        )
    return out


def render(timing: Timing, top: int | None = 20) -> str:
    """The timing as text: totals, then roles, controls, tasks (top N) and hosts."""
    wall = f"{timing.wall:.1f}s" if timing.wall is not None else "still running"
    out = [
        f"run {timing.run}: wall {wall}, {timing.hosts} hosts, "
        f"{timing.executions} task runs, {timing.seconds:.1f} host-seconds in tasks",
        "  seconds: summed over hosts; share: of all tasks' host-seconds; runs: task x host;"
        " slowest: the longest single run",
        "",
    ]
    out += _table("Roles", timing.roles, None, False)
    out.append("")
    out += _table("Controls (tasks named by control id)", timing.controls, top, True)
    out.append("")
    out += _table("Tasks", timing.tasks, top, True)
    out.append("")
    out += _table("Hosts", timing.by_host, None, False)
    return "\n".join(out)


def dumps(timing: Timing) -> str:
    """The timing as indented JSON text."""
    return json.dumps(to_json(timing), indent=2)


def show(store: Store, run: RunRecord, output: str = "text") -> str:
    """`runs show RUN --timing`: the stored run's timing as text or JSON."""
    if output not in ("text", "json"):
        raise ValueError(f"--format {output}: choose text or json")
    assert run.id is not None
    records = stored_timings(store, run.id)
    result = summarise(records, run.ident, run.started_at, run.ended_at)
    if output == "json":
        return dumps(result)
    if not records:
        return (
            f"run {run.ident}: no task durations recorded (runs stored before the store's "
            "revision 0005 have none; `opsrunner runs import` of its artifacts records them)"
        )
    return render(result)
