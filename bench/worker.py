"""In-process work the bench measures from outside (CPU and peak RSS come from wait4).

`python -m bench.worker ingest|sqlite|fleet …` prints one JSON line with its own figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HOSTS = 100
CONTROLS_PER_PLAY = 20


def events(count: int, hosts: int = HOSTS) -> Iterator[dict[str, Any]]:
    """`count` ansible-runner events shaped like an audit's: per control, a probe task and a
    report task; per task a task_start, then per host runner_on_start and runner_on_ok (the
    report's carrying the result contract's `opsrunner_control`); a play every 20 controls
    and the final stats. About 4 events per host x control result."""
    counter = 0

    def event(kind: str, data: dict[str, Any]) -> dict[str, Any]:
        nonlocal counter
        counter += 1
        return {
            "counter": counter,
            "event": kind,
            "created": "2026-12-03T10:00:00.123456",
            "uuid": f"00000000-0000-0000-0000-{counter:012d}",
            "event_data": data,
        }

    control = 0
    while counter < count - 1:
        if control % CONTROLS_PER_PLAY == 0:
            yield event("playbook_on_play_start", {"play": f"bench play {control}"})
        control += 1
        cid = f"B{control // 1000:02d}-{control % 1000:03d}"
        for step in ("probe", "report"):
            task = f"{cid} | {step}"
            yield event("playbook_on_task_start", {"task": task})
            for h in range(hosts):
                if counter >= count - 3:
                    break
                host = f"host{h:04d}"
                yield event("runner_on_start", {"host": host, "task": task})
                res: dict[str, Any] = {"changed": False}
                if step == "probe":
                    res["stat"] = {"exists": True, "mode": "0644", "path": "/etc/passwd"}
                else:
                    res["opsrunner_control"] = {
                        "id": cid,
                        "status": "fail" if (h + control) % 9 == 0 else "pass",
                        "evidence": f"/etc/passwd mode 0644 on {host}",
                        "data": {"mode": "0644"},
                        "reason": "",
                        "remediated": False,
                    }
                yield event("runner_on_ok", {"host": host, "task": task, "res": res})
            if counter >= count - 1:
                break
    yield event("playbook_on_stats", {"ok": {f"host{h:04d}": 1 for h in range(hosts)}})


def ingest(count: int, store_url: str | None, state: Path, evidence_files: bool) -> dict[str, Any]:
    """Feed `count` events through the runner's event handler (collector → store), as a run does."""
    from opsrunner.config import Settings
    from opsrunner.runner.events import Collector
    from opsrunner.runner.progress import NullReporter
    from opsrunner.runner.run import _Streamer
    from opsrunner.store import RunRecord, Store

    # What making the events costs here (ansible-runner's work, not ours), measured alone.
    started, gen_cpu = time.perf_counter(), time.process_time()
    for _ in events(count):
        pass
    generate = time.perf_counter() - started
    gen_cpu = time.process_time() - gen_cpu
    with Store.open(store_url, state) as store:
        run = store.begin_run(
            RunRecord(
                ident=f"bench-{time.time_ns()}",
                mode="audit",
                status="running",
                started_at=dt.datetime.now(dt.UTC),
            )
        )
        assert run.id is not None
        collector = Collector(state, evidence=evidence_files)
        streamer = _Streamer(store, run.id, collector, NullReporter(), Settings().batch_size)
        started, cpu = time.perf_counter(), time.process_time()
        for event in events(count):
            streamer(event)
        collector.seal()
        streamer.flush()
        total = time.perf_counter() - started
        cpu = time.process_time() - cpu
        # Counted in SQL: reading every result back would put them all in this process's peak
        # RSS, which is the ingest path's memory the bench reports.
        from sqlalchemy import func, select

        from opsrunner.store.models import Result

        with store.session() as session:
            stored = int(
                session.scalar(
                    select(func.count()).select_from(Result).where(Result.run_id == run.id)
                )
                or 0
            )
    net = max(total - generate, 1e-9)
    net_cpu = max(cpu - gen_cpu, 1e-9)
    return {
        # Per CPU-second of this process: what the machine can do, whatever else runs on it.
        "events_per_cpu_s": count / net_cpu,
        "cpu_seconds": cpu,
        "events": count,
        "results": stored,
        "seconds": total,
        "generate_seconds": generate,
        "events_per_s": count / net,
        "results_per_s": stored / net,
    }


def raw_sqlite(count: int, state: Path) -> dict[str, Any]:
    """The floor: plain sqlite3 executemany of `count` result rows, 1000 per transaction."""
    db = sqlite3.connect(state / "raw.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE results (run_id INTEGER, host TEXT, control_id TEXT, status TEXT, "
        "reason TEXT, evidence TEXT, evidence_sha256 TEXT, evidence_truncated INTEGER, data TEXT, "
        "remediated INTEGER, task TEXT, checked_at TEXT, PRIMARY KEY (run_id, host, control_id))"
    )
    now = dt.datetime.now(dt.UTC).isoformat()
    started, cpu = time.perf_counter(), time.process_time()
    batch: list[tuple[Any, ...]] = []
    for n in range(count):
        batch.append(
            (
                1,
                f"host{n % HOSTS:04d}",
                f"B-{n // HOSTS:06d}",
                "pass",
                "",
                "ok",
                "a" * 64,
                0,
                '{"mode": "0644"}',
                0,
                "task",
                now,
            )
        )
        if len(batch) == 1000:
            with db:
                db.executemany("INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", batch)
            batch = []
    if batch:
        with db:
            db.executemany("INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", batch)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    db.close()
    return {
        "rows": count,
        "seconds": seconds,
        "rows_per_s": count / seconds,
        "rows_per_cpu_s": count / max(cpu, 1e-9),
    }


def fleet(hosts: int, controls: int) -> dict[str, Any]:
    """Score and render a synthetic fleet as bench/reports_fleet.py does."""
    from bench.reports_fleet import measure

    with tempfile.TemporaryDirectory(prefix="opsrunner-bench-") as tmp:
        cpu = time.process_time()
        out = measure(hosts, controls, Path(tmp))
        out["cpu_s"] = time.process_time() - cpu
        return out


def main() -> None:
    """Parse the worker's arguments, do the work, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    one = sub.add_parser("ingest")
    one.add_argument("--events", type=int, required=True)
    one.add_argument("--store", default=None)
    one.add_argument("--no-evidence-files", action="store_true")
    raw = sub.add_parser("sqlite")
    raw.add_argument("--rows", type=int, required=True)
    report = sub.add_parser("fleet")
    report.add_argument("--hosts", type=int, required=True)
    report.add_argument("--controls", type=int, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="opsrunner-bench-", dir="/var/tmp") as tmp:
        if args.what == "ingest":
            out = ingest(args.events, args.store, Path(tmp), not args.no_evidence_files)
        elif args.what == "sqlite":
            out = raw_sqlite(args.rows, Path(tmp))
        else:
            out = fleet(args.hosts, args.controls)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
