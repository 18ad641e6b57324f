"""Change records (3.4.1-3.4.3): plan, test evidence, start, what happened, evaluation."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from opsrunner.notify.channels import utc_iso
from opsrunner.runner.evidence import evidence_path
from opsrunner.store import RunRecord, Store
from opsrunner.store.notices import AlertState, ChangeRecord

STATUSES = ("planned", "tested", "started", "evaluated")
TEST_KINDS = ("functional", "performance", "compatibility")
OUTCOMES = ("successful", "partial", "failed", "rolled-back")
HEALTH_CONTROL = "PAT-007"


class ChangeError(ValueError):
    """Bad change input or a step out of order; nothing is written."""


def _get(store: Store, ident: str) -> ChangeRecord:
    with store.session() as session:
        row = session.scalars(select(ChangeRecord).where(ChangeRecord.ident == ident)).first()
    if row is None:
        raise ChangeError(f"no change {ident!r} (see `opsrunner change list`)")
    return row


def _text(value: str, what: str) -> str:
    if not value or not value.strip():
        raise ChangeError(f"{what} is required")
    return value.strip()


def plan(
    store: Store,
    now: dt.datetime,
    *,
    title: str,
    what: str,
    why: str,
    hosts: Sequence[str],
    rollback: str,
    window: str = "",
    by: str = "",
    windows: Sequence[str] | None = None,
) -> ChangeRecord:
    """Record a planned change (what, why, hosts, window, rollback); returns it with its ident."""
    fields = {
        "title": _text(title, "--title"),
        "what": _text(what, "--what"),
        "why": _text(why, "--why"),
        "rollback": _text(rollback, "--rollback"),
    }
    names = sorted({h.strip() for h in hosts if h.strip()})
    if not names:
        raise ChangeError("--hosts names at least one host")
    if window and windows is not None and window not in windows:
        raise ChangeError(f"no maintenance window {window!r} (windows: {', '.join(windows)})")
    with store.session() as session:
        count = session.scalar(
            select(func.count(ChangeRecord.id)).where(ChangeRecord.ident.like(f"CHG-{now:%Y}-%"))
        )
        ident = f"CHG-{now:%Y}-{(count or 0) + 1:03d}"
        row = ChangeRecord(
            ident=ident,
            title=fields["title"],
            status="planned",
            window_name=window,
            hosts=names,
            created_at=now,
            updated_at=now,
            data={
                "plan": {**fields, "by": by, "at": utc_iso(now)},
                "tests": [],
                "runs": [],
                "evaluation": None,
            },
        )
        session.add(row)
        session.flush()
        return row


def _save_file(state_dir: Path, path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ChangeError(f"{path}: no such file")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    target = evidence_path(state_dir, digest)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        target.chmod(0o600)
    return {"file": path.name, "sha256": digest, "size": path.stat().st_size}


def record_test(
    store: Store,
    ident: str,
    now: dt.datetime,
    *,
    kind: str,
    result: str,
    ref: str,
    files: Sequence[Path] = (),
    note: str = "",
) -> ChangeRecord:
    """Add test evidence (functional, performance, compatibility) before the change goes live."""
    row = _get(store, ident)
    if row.status not in ("planned", "tested"):
        raise ChangeError(f"{ident} is {row.status}: tests are recorded before it starts")
    if kind not in TEST_KINDS:
        raise ChangeError(f"--kind {kind!r}: choose one of {', '.join(TEST_KINDS)}")
    if result not in ("pass", "fail"):
        raise ChangeError(f"--result {result!r}: choose pass or fail")
    if not ref.strip() and not files:
        raise ChangeError("give --ref (a molecule or CI run) or --file evidence, or both")
    saved = [_save_file(store.state_dir, Path(f)) for f in files]
    with store.session() as session:
        live = session.get(ChangeRecord, row.id)
        assert live is not None
        data = dict(live.data)
        tests = [
            *data.get("tests", []),
            {
                "kind": kind,
                "result": result,
                "ref": ref.strip(),
                "files": saved,
                "note": note,
                "at": utc_iso(now),
            },
        ]
        data["tests"] = tests
        live.data = data
        passed = {t["kind"] for t in tests if t["result"] == "pass"}
        failed = {t["kind"] for t in tests if t["result"] == "fail"} - passed
        live.status = "tested" if passed >= set(TEST_KINDS) and not failed else "planned"
        live.updated_at = now
        return live


def start(store: Store, ident: str, now: dt.datetime, *, by: str = "") -> ChangeRecord:
    """The change goes live: only after a passing functional, performance and compatibility test."""
    row = _get(store, ident)
    if row.status != "tested":
        tests = row.data.get("tests", [])
        passed = {t["kind"] for t in tests if t["result"] == "pass"}
        missing = [k for k in TEST_KINDS if k not in passed]
        why = f"no passing {', '.join(missing)} test" if missing else "a test failed"
        if row.status != "planned":
            why = f"it is {row.status}"
        raise ChangeError(f"{ident} cannot start: {why} (opsrunner change test {ident} …)")
    with store.session() as session:
        live = session.get(ChangeRecord, row.id)
        assert live is not None
        live.status, live.started_at, live.updated_at = "started", now, now
        live.data = {**live.data, "started_by": by}
        return live


def _is_patching(run: RunRecord) -> bool:
    return run.mode == "enforce" and (
        not run.controls or any(c.startswith("PAT-") for c in run.controls)
    )


def happened(
    store: Store, row: ChangeRecord, now: dt.datetime, end: dt.datetime | None = None
) -> dict[str, Any]:
    """What happened while the change ran: patching runs on its hosts, health checks, alerts."""
    if row.started_at is None:
        return {"runs": [], "health": [], "alerts": []}
    end = end or row.ended_at or now
    hosts = set(row.hosts)
    runs, health = [], []
    for run in store.list_runs(limit=1000, mode="enforce"):
        if run.id is None or not (row.started_at <= run.started_at <= end) or not _is_patching(run):
            continue
        touched = {h.host for h in store.hosts(run.id)}
        if touched and not touched & hosts:
            continue
        runs.append({"run": run.ident, "status": run.status, "at": utc_iso(run.started_at)})
        for result in store.results(run.id):
            if result.control_id == HEALTH_CONTROL and result.host in hosts:
                health.append(
                    {
                        "run": run.ident,
                        "host": result.host,
                        "status": result.status,
                        "evidence": result.evidence[:200],
                    }
                )
    with store.session() as session:
        raised = list(
            session.scalars(
                select(AlertState).where(
                    AlertState.started_at >= row.started_at, AlertState.started_at <= end
                )
            )
        )
    alerts = [
        {"fingerprint": a.fingerprint, "summary": a.summary, "status": a.status}
        for a in raised
        if not a.host or a.host in hosts
    ]
    return {"runs": runs, "health": health, "alerts": alerts}


def evaluate(
    store: Store,
    ident: str,
    now: dt.datetime,
    *,
    outcome: str,
    effect: str,
    problems: str,
    lessons: str,
    by: str = "",
) -> ChangeRecord:
    """Close the change with its evaluation; what happened is frozen into the record."""
    row = _get(store, ident)
    if row.status != "started":
        raise ChangeError(f"{ident} is {row.status}: only a started change is evaluated")
    if outcome not in OUTCOMES:
        raise ChangeError(f"--outcome {outcome!r}: choose one of {', '.join(OUTCOMES)}")
    evaluation = {
        "outcome": outcome,
        "effect": _text(effect, "--effect"),
        "problems": problems.strip() or "none",
        "lessons": _text(lessons, "--lessons"),
        "by": by,
        "at": utc_iso(now),
    }
    seen = happened(store, row, now, end=now)
    with store.session() as session:
        live = session.get(ChangeRecord, row.id)
        assert live is not None
        live.ended_at = now
        live.data = {**live.data, "evaluation": evaluation, "happened": seen}
        live.status, live.updated_at = "evaluated", now
        return live


def show(store: Store, ident: str, now: dt.datetime) -> dict[str, Any]:
    """The whole record as data (what happened computed live until it is evaluated)."""
    row = _get(store, ident)
    seen = row.data.get("happened") if row.status == "evaluated" else happened(store, row, now)
    return {
        "ident": row.ident,
        "title": row.title,
        "status": row.status,
        "window": row.window_name,
        "hosts": list(row.hosts),
        "created_at": utc_iso(row.created_at),
        "started_at": utc_iso(row.started_at) if row.started_at else None,
        "ended_at": utc_iso(row.ended_at) if row.ended_at else None,
        "plan": row.data.get("plan", {}),
        "tests": row.data.get("tests", []),
        "happened": seen,
        "evaluation": row.data.get("evaluation"),
    }


def list_changes(store: Store) -> list[ChangeRecord]:
    """Every change, newest first."""
    with store.session() as session:
        return list(session.scalars(select(ChangeRecord).order_by(ChangeRecord.created_at.desc())))


def outside_changes(store: Store, now: dt.datetime, limit: int = 1000) -> list[RunRecord]:
    """Patching enforce runs that no started change covered (3.4: recorded as such)."""
    spans = [
        (c.started_at, c.ended_at or now, set(c.hosts))
        for c in list_changes(store)
        if c.started_at is not None
    ]
    out = []
    for run in store.list_runs(limit=limit, mode="enforce"):
        if run.status == "skipped" or run.id is None or not _is_patching(run):
            continue
        touched = {h.host for h in store.hosts(run.id)}
        covered = any(
            s <= run.started_at <= e and (not touched or touched <= hosts) for s, e, hosts in spans
        )
        if not covered:
            out.append(run)
    return out


def summary(store: Store, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    """Counts for a period's assessment: changes by status and outcome, runs outside a change."""
    rows = [c for c in list_changes(store) if start <= c.created_at < end]
    by_status = {s: sum(1 for c in rows if c.status == s) for s in STATUSES}
    outcomes = {
        o: sum(1 for c in rows if (c.data.get("evaluation") or {}).get("outcome") == o)
        for o in OUTCOMES
    }
    outside = [r.ident for r in outside_changes(store, end) if start <= r.started_at < end]
    return {
        "changes": len(rows),
        "by_status": by_status,
        "outcomes": outcomes,
        "patching_outside_changes": outside,
    }
