"""The store: SQLite (default) or PostgreSQL behind one API; alembic migrations run on open."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import filelock
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, delete, event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from opsrunner import paths
from opsrunner.store import checked, ledger, migrations
from opsrunner.store import evidence as stored_evidence
from opsrunner.store.bulk import BulkInsert
from opsrunner.store.models import (
    Alert,
    Base,
    Drill,
    Incident,
    Notice,
    Result,
    Run,
    RunHost,
    Sample,
    UTCDateTime,
)
from opsrunner.store.records import (
    HostRecord,
    LastKnown,
    ResultRecord,
    RunRecord,
    SampleRecord,
)
from opsrunner.store.timings import TaskTiming

EXPORT_FORMAT = "opsrunner-store/1"
# The order of the values `add_results` binds.
_RESULT_COLUMNS = ("run_id", *ledger.RESULT_FIELDS)
_SQLITE_BUSY_MS = 30_000


class StoreError(RuntimeError):
    """The store cannot be opened or an operation on it failed in a way the user must see."""


class LockBusy(RuntimeError):
    """Another run holds the lock for this policy and inventory."""


def default_url(state_dir: Path) -> str:
    """The SQLite file under the state directory."""
    return f"sqlite:///{state_dir / 'opsrunner.db'}"


def normalise_url(url: str | None, state_dir: Path) -> str:
    """Accept a URL, a plain file path, or None (the default SQLite file)."""
    if not url:
        return default_url(state_dir)
    if "://" not in url:
        return f"sqlite:///{Path(url).resolve()}"
    if url.startswith("postgresql://"):
        # psycopg 3 is the driver the project ships.
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _lock_key(name: str) -> int:
    # pg advisory locks take a signed 64-bit key.
    return int(struct.unpack(">q", hashlib.sha256(name.encode()).digest()[:8])[0])


def _run_record(row: Run) -> RunRecord:
    return RunRecord(
        id=row.id,
        ident=row.ident,
        mode=row.mode,
        job=row.job,
        playbook=row.playbook,
        status=row.status,
        rc=row.rc,
        started_at=row.started_at,
        ended_at=row.ended_at,
        user=row.user,
        controller=row.controller,
        inventory=row.inventory,
        limit=row.limit,
        controls=tuple((row.controls or {}).get("ids", ())),
        policy_commit=row.policy_commit,
        policy_digest=row.policy_digest,
        scheduled_for=row.scheduled_for,
        late=row.late,
        reason=row.reason,
        artifact_dir=row.artifact_dir,
        stats=dict(row.stats or {}),
        disruptive=tuple(row.disruptive or ()),
    )


def _result_record(row: Result) -> ResultRecord:
    return ResultRecord(
        run_id=row.run_id,
        host=row.host,
        control_id=row.control_id,
        status=row.status,
        reason=row.reason,
        evidence=row.evidence,
        evidence_sha256=row.evidence_sha256,
        evidence_truncated=row.evidence_truncated,
        data=dict(row.data or {}),
        remediated=row.remediated,
        task=row.task,
        checked_at=row.checked_at,
    )


def _run_values(record: RunRecord) -> dict[str, Any]:
    return {
        "ident": record.ident,
        "mode": record.mode,
        "job": record.job,
        "playbook": record.playbook,
        "status": record.status,
        "rc": record.rc,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "user": record.user,
        "controller": record.controller,
        "inventory": record.inventory,
        "limit": record.limit,
        "controls": {"ids": list(record.controls)},
        "policy_commit": record.policy_commit,
        "policy_digest": record.policy_digest,
        "scheduled_for": record.scheduled_for,
        "late": record.late,
        "reason": record.reason,
        "artifact_dir": record.artifact_dir,
        "stats": record.stats,
        "disruptive": list(record.disruptive),
    }


class Store:
    """Runs, results, evidence metadata and monitoring samples in one database."""

    def __init__(self, engine: Engine, state_dir: Path) -> None:
        self.engine = engine
        self.state_dir = state_dir
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # Set when the evidence ledger does not verify on open: the first bad entry, named.
        self.refuse_writes = ""
        self._results_upsert: Any = None

    # -- opening ---------------------------------------------------------
    @classmethod
    def open(cls, url: str | None = None, state_dir: Path | None = None) -> Store:
        """Open (creating if needed) and migrate the store at URL (None: SQLite in state dir)."""
        state = state_dir or paths.state_dir()
        full = normalise_url(url, state)
        parsed = make_url(full)
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                # Owner-only before SQLite opens it: its -wal and -shm files copy these modes.
                folder = Path(database).parent
                paths.private_dir(folder, tighten=folder.resolve() == state.resolve())
                paths.private_file(Path(database))
            engine = create_engine(full, connect_args={"timeout": _SQLITE_BUSY_MS / 1000})
            event.listen(engine, "connect", _sqlite_pragmas)
        elif parsed.get_backend_name() == "postgresql":
            engine = create_engine(full, pool_pre_ping=True)
        else:
            raise StoreError(f"--store {url}: only sqlite and postgresql stores are supported")
        store = cls(engine, state)
        shown = parsed.render_as_string(hide_password=True)
        stamp = None
        if parsed.get_backend_name() == "sqlite":
            if database and database != ":memory:":
                stamp = checked.Stamp(Path(database))  # unchanged since a clean check: skip it
            problem = "" if stamp is not None and stamp.unchanged() else store.integrity_problem()
            if problem:
                if stamp is not None:
                    stamp.forget()
                engine.dispose()
                raise StoreError(
                    f"store {shown} is corrupted ({problem}); opsrunner refuses to write to it. "
                    "Keep the file for analysis and restore the store from a backup "
                    "(or export what is readable with sqlite3 .recover)"
                )
        try:
            store.migrate()
            store._open_ledger()
        except Exception as exc:
            engine.dispose()
            raise StoreError(f"cannot open store {shown}: {exc}") from exc
        if stamp is not None and store.refuse_writes:
            stamp.forget()
        elif stamp is not None:
            stamp.save()
        return store

    def _open_ledger(self) -> None:
        """Cover the runs recorded before the ledger existed, then check the chain: a chain
        that does not hold refuses every write until someone looks (`opsrunner verify`)."""
        with self.session() as session:
            empty = session.scalar(select(func.count()).select_from(ledger.LedgerEntry)) == 0
            finished = empty and session.scalar(
                select(func.count()).select_from(Run).where(Run.status.in_(ledger.FINAL))
            )
        if finished:
            with self._write() as session:
                ledger.adopt(session)
        with self.session() as session:
            # The full walk only names what the cheap check found broken (`opsrunner verify`).
            problem = None if ledger.chain_holds(session) else ledger.check_chain(session)[1]
        if problem is not None:
            self.refuse_writes = str(problem)

    def _check_writable(self) -> None:
        if self.refuse_writes:
            raise StoreError(
                f"the evidence ledger does not verify ({self.refuse_writes}); writes are "
                "refused until it is repaired — run `opsrunner verify` for the details"
            )

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        """A transaction that may append to the ledger: one writer at a time, so the chain
        never forks (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction advisory lock)."""
        self._check_writable()
        with self._sessions.begin() as session:
            if self.dialect == "sqlite":
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            else:
                session.execute(
                    text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key("opsrunner:ledger")}
                )
            yield session

    def verify(self) -> ledger.Report:
        """Check the ledger's chain and every finished run's stored results against it."""
        with self.session() as session:
            return ledger.verify(session)

    def integrity_problem(self) -> str:
        """SQLite's `PRAGMA quick_check` on open: "" when sound, else its first finding.

        A torn or overwritten page is found here, before any write could spread it; the run
        then refuses to start rather than record results into a damaged store.
        """
        import sqlite3

        try:
            with self.engine.connect() as connection:
                rows = [str(r[0]) for r in connection.exec_driver_sql("PRAGMA quick_check(5)")]
        except Exception as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, sqlite3.Error) else exc
            name = str(getattr(cause, "sqlite_errorname", ""))
            if not name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
                return ""  # not damage (a full disk, no permission): opening says what it is
            return f"sqlite: {str(cause).splitlines()[0][:300]}"
        if rows == ["ok"]:
            return ""
        lines = [ln for r in rows for ln in r.splitlines() if ln and not ln.startswith("***")]
        first = lines[0][:300] if lines else "no answer"
        more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
        return f"sqlite quick_check: {first}{more}"

    def migrate(self) -> None:
        """Bring the schema to the newest alembic revision."""
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
        with self.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

    @property
    def dialect(self) -> str:
        """sqlite or postgresql."""
        return self.engine.dialect.name

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    # -- runs ------------------------------------------------------------
    def begin_run(self, record: RunRecord) -> RunRecord:
        """Record a run (usually status running); returns it with its id."""
        with self._write() as session:
            row = Run(**_run_values(record))
            session.add(row)
            session.flush()
            ledger.record_run(session, row)  # a run recorded finished at once (skipped)
            return _run_record(row)

    def ensure_run(self, record: RunRecord) -> RunRecord:
        """The run with this ident, recorded now if it is not yet (artifact import)."""
        existing = self.find_run(record.ident)
        return existing if existing is not None else self.begin_run(record)

    def finish_run(
        self,
        run_id: int,
        status: str,
        *,
        ended_at: dt.datetime,
        rc: int | None = None,
        reason: str = "",
        stats: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Set a run's final status, and append the run's results to the evidence ledger."""
        with self._write() as session:
            row = session.get(Run, run_id)
            if row is None:
                raise StoreError(f"run {run_id} not found")
            row.status = status
            row.ended_at = ended_at
            row.rc = rc
            if reason:
                row.reason = reason
            if stats is not None:
                row.stats = stats
            session.flush()
            ledger.record_run(session, row)
            return _run_record(row)

    def get_run(self, key: int | str) -> RunRecord:
        """A run by id or ident (a unique ident prefix is enough)."""
        found = self.find_run(key)
        if found is None:
            raise StoreError(f"run {key} not found in the store")
        return found

    def find_run(self, key: int | str) -> RunRecord | None:
        """A run by id or ident, or None."""
        with self.session() as session:
            row: Run | None = None
            if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
                row = session.get(Run, int(key))
            if row is None and isinstance(key, str):
                rows = session.scalars(select(Run).where(Run.ident.startswith(key)).limit(2)).all()
                row = rows[0] if len(rows) == 1 else None
            return None if row is None else _run_record(row)

    def list_runs(
        self, *, limit: int = 50, mode: str | None = None, status: str | None = None
    ) -> list[RunRecord]:
        """Newest runs first."""
        query = select(Run).order_by(Run.started_at.desc(), Run.id.desc()).limit(limit)
        if mode:
            query = query.where(Run.mode == mode)
        if status:
            query = query.where(Run.status == status)
        with self.session() as session:
            return [_run_record(row) for row in session.scalars(query)]

    def running(self) -> list[RunRecord]:
        """Runs still marked running (after a crash: candidates for recovery)."""
        with self.session() as session:
            return [
                _run_record(r) for r in session.scalars(select(Run).where(Run.status == "running"))
            ]

    # -- results ---------------------------------------------------------
    def add_results(self, run_id: int, results: Sequence[ResultRecord]) -> int:
        """Upsert a batch of results, and the full reports they carry (`full`, into the
        evidence table), in one transaction; the same batch twice changes nothing."""
        if not results:
            return 0
        self._check_writable()
        latest = {(r.host, r.control_id): r for r in results}.values()
        rows = [
            (
                run_id,
                r.host,
                r.control_id,
                r.status,
                r.reason,
                r.evidence,
                r.evidence_sha256,
                r.evidence_truncated,
                r.data,
                r.remediated,
                r.task,
                r.checked_at,
            )
            for r in latest
        ]
        blobs = {r.evidence_sha256: r.full for r in latest if r.full is not None}
        results_insert, evidence_insert = self._bulk()
        with self.engine.begin() as connection:
            results_insert.execute(connection, rows)
            evidence_insert.execute(
                connection, [(sha, len(body), body) for sha, body in blobs.items()]
            )
        return len(rows)

    def _bulk(self) -> tuple[BulkInsert, BulkInsert]:
        """The results upsert and the evidence insert, compiled once per store (per-batch
        compiling and per-row parameter handling cost more than the rows, bench/ arm 2)."""
        if self._results_upsert is None:
            keys = ("run_id", "host", "control_id")
            self._results_upsert = (
                BulkInsert(
                    self.engine,
                    Result.__table__,
                    _RESULT_COLUMNS,
                    lambda s: s.on_conflict_do_update(
                        index_elements=list(keys),
                        set_={c: s.excluded[c] for c in _RESULT_COLUMNS if c not in keys},
                    ),
                ),
                BulkInsert(
                    self.engine,
                    stored_evidence.EvidenceBlob.__table__,
                    ("sha256", "size", "body"),
                    lambda s: s.on_conflict_do_nothing(index_elements=["sha256"]),
                ),
            )
        return self._results_upsert  # type: ignore[no-any-return]

    def set_hosts(self, run_id: int, hosts: Sequence[HostRecord]) -> None:
        """Upsert the hosts of a run."""
        if not hosts:
            return
        self._check_writable()
        rows = [
            {
                "run_id": run_id,
                "host": h.host,
                "reachable": h.reachable,
                "reason": h.reason,
                "stats": h.stats,
                "groups": list(h.groups),
            }
            for h in {h.host: h for h in hosts}.values()
        ]
        statement = self._insert(RunHost.__table__)
        statement = statement.on_conflict_do_update(
            index_elements=["run_id", "host"],
            set_={k: statement.excluded[k] for k in ("reachable", "reason", "stats", "groups")},
        )
        with self.session() as session:
            session.execute(statement, rows)

    def hosts(self, run_id: int) -> list[HostRecord]:
        """The hosts a run saw."""
        with self.session() as session:
            rows = session.scalars(
                select(RunHost).where(RunHost.run_id == run_id).order_by(RunHost.host)
            )
            return [
                HostRecord(
                    r.host, r.reachable, r.reason, dict(r.stats or {}), tuple(r.groups or ())
                )
                for r in rows
            ]

    def host_groups(self) -> dict[str, list[str]]:
        """Each host's inventory groups as its newest run saw them."""
        query = (
            select(RunHost.host, RunHost.groups)
            .join(Run, Run.id == RunHost.run_id)
            .order_by(Run.started_at, Run.id)
        )
        with self.session() as session:
            return {host: list(groups or []) for host, groups in session.execute(query)}

    def results(self, run_id: int) -> list[ResultRecord]:
        """Every result of one run, by host then control."""
        query = (
            select(Result).where(Result.run_id == run_id).order_by(Result.host, Result.control_id)
        )
        with self.session() as session:
            return [_result_record(r) for r in session.scalars(query)]

    def latest_results(
        self, *, as_of: dt.datetime | None = None, modes: Iterable[str] = ("audit", "enforce")
    ) -> list[ResultRecord]:
        """The newest result per host x control from finished runs, as of a time."""
        finished = ("successful", "failed", "timeout", "canceled", "interrupted")
        newest = (
            select(Result.host, Result.control_id, func.max(Result.checked_at).label("at"))
            .join(Run, Run.id == Result.run_id)
            .where(Run.status.in_(finished), Run.mode.in_(tuple(modes)))
            # "notchecked" says nothing about the host: older evidence stays the latest word.
            .where(Result.status != "notchecked")
        )
        if as_of is not None:
            newest = newest.where(Result.checked_at <= as_of)
        sub = newest.group_by(Result.host, Result.control_id).subquery()
        query = (
            select(Result)
            .join(
                sub,
                (Result.host == sub.c.host)
                & (Result.control_id == sub.c.control_id)
                & (Result.checked_at == sub.c.at),
            )
            .order_by(Result.host, Result.control_id, Result.id.desc())
        )
        with self.session() as session:
            seen: dict[tuple[str, str], ResultRecord] = {}
            for row in session.scalars(query):
                seen.setdefault((row.host, row.control_id), _result_record(row))
            return list(seen.values())

    def last_known(
        self, hosts: Iterable[str], *, before: dt.datetime | None = None
    ) -> dict[tuple[str, str], LastKnown]:
        """Per host x control of these hosts: the newest result of a finished run that says
        something about the host (neither `unknown` nor `notchecked`), checked before a time.

        An unreachable host keeps the applicability it last had (a control that did not apply
        then is recorded `notapplicable`, not `unknown`).
        """
        names = sorted(set(hosts))
        if not names:
            return {}
        finished = ("successful", "failed", "timeout", "canceled", "interrupted")
        query = (
            select(Result, Run.ident)
            .join(Run, Run.id == Result.run_id)
            .where(
                Run.status.in_(finished),
                Result.host.in_(names),
                Result.status.not_in(("unknown", "notchecked")),
            )
            .order_by(Result.checked_at.desc(), Result.id.desc())
        )
        if before is not None:
            query = query.where(Result.checked_at < before)
        out: dict[tuple[str, str], LastKnown] = {}
        with self.session() as session:
            for row, ident in session.execute(query):
                out.setdefault(
                    (row.host, row.control_id),
                    LastKnown(row.status, row.checked_at, ident, row.reason),
                )
        return out

    # -- samples ---------------------------------------------------------
    def add_samples(self, samples: Sequence[SampleRecord]) -> None:
        """Record a batch of monitoring scrapes in one transaction."""
        if not samples:
            return
        self._check_writable()
        with self.session() as session:
            session.add_all(
                Sample(
                    host=s.host,
                    target=s.target,
                    scraped_at=s.scraped_at,
                    ok=s.ok,
                    duration_ms=s.duration_ms,
                    error=s.error,
                    metrics=s.metrics,
                )
                for s in samples
            )

    def samples(
        self,
        *,
        host: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[SampleRecord]:
        """Scrapes in [since, until), oldest first."""
        query = select(Sample).order_by(Sample.scraped_at, Sample.id)
        if host:
            query = query.where(Sample.host == host)
        if since is not None:
            query = query.where(Sample.scraped_at >= since)
        if until is not None:
            query = query.where(Sample.scraped_at < until)
        with self.session() as session:
            return [
                SampleRecord(
                    s.host,
                    s.scraped_at,
                    s.ok,
                    s.target,
                    s.duration_ms,
                    s.error,
                    dict(s.metrics or {}),
                )
                for s in session.scalars(query)
            ]

    # -- upkeep ----------------------------------------------------------
    def prune(self, older_than: dt.datetime, *, dry_run: bool = False) -> dict[str, int]:
        """Delete runs and samples older than a time, keeping every run that still holds the
        newest result of some host x control (the evidence scores and reports stand on)."""
        keep = {r.run_id for r in self.latest_results()}
        if not dry_run:
            self._check_writable()
        with self.session() if dry_run else self._write() as session:
            old = session.scalars(
                select(Run.id).where(Run.started_at < older_than, Run.status != "running")
            ).all()
            doomed = [run_id for run_id in old if run_id not in keep]
            counts = {
                "runs": len(doomed),
                "results": session.scalar(
                    select(func.count()).select_from(Result).where(Result.run_id.in_(doomed))
                )
                or 0,
                "samples": session.scalar(
                    select(func.count()).select_from(Sample).where(Sample.scraped_at < older_than)
                )
                or 0,
                "kept_runs": len(old) - len(doomed),
            }
            if not dry_run:
                idents = session.scalars(select(Run.ident).where(Run.id.in_(doomed))).all()
                # Children first: SQLite only cascades when foreign keys are on for this connection.
                session.execute(delete(Result).where(Result.run_id.in_(doomed)))
                session.execute(delete(TaskTiming).where(TaskTiming.run_id.in_(doomed)))
                session.execute(delete(RunHost).where(RunHost.run_id.in_(doomed)))
                session.execute(delete(Run).where(Run.id.in_(doomed)))
                session.execute(delete(Sample).where(Sample.scraped_at < older_than))
                counts["evidence"] = stored_evidence.prune_unreferenced(session)
                ledger.record_prune(session, idents, older_than)
        return counts

    def evidence_hashes(self) -> set[str]:
        """Every evidence sha256 that a stored result or a change record's test still points to
        (what `store prune` must keep under <state>/evidence)."""
        from opsrunner.store.notices import ChangeRecord

        with self.session() as session:
            kept = {h for h in session.scalars(select(Result.evidence_sha256).distinct()) if h}
            for data in session.scalars(select(ChangeRecord.data)):
                for test in (data or {}).get("tests", []):
                    kept.update(f["sha256"] for f in test.get("files", []) if f.get("sha256"))
            return kept

    def export(self, path: Path) -> dict[str, int]:
        """Write every table as JSON lines (portable between SQLite and PostgreSQL)."""
        counts: dict[str, int] = {}
        with path.open("w", encoding="utf-8") as handle, self.session() as session:
            handle.write(json.dumps({"format": EXPORT_FORMAT}) + "\n")
            for model in (Run, RunHost, Result, TaskTiming, Sample, Incident, Drill, Notice, Alert):
                table = model.__table__
                name = str(model.__tablename__)
                count = 0
                for row in session.execute(select(model).order_by(model.id)).scalars():
                    values = {c.name: getattr(row, c.key) for c in table.columns}
                    handle.write(
                        json.dumps({"table": name, "row": values}, default=_json_default) + "\n"
                    )
                    count += 1
                counts[name] = count
            # The full evidence reports (bytes, base64): one line each, by hash.
            blobs = stored_evidence.EvidenceBlob
            count = 0
            query = select(blobs.sha256, blobs.body).order_by(blobs.sha256)
            for sha, body in session.execute(query.execution_options(yield_per=500)):
                blob = {"sha256": sha, "body_base64": base64.b64encode(bytes(body)).decode()}
                handle.write(json.dumps({"table": "evidence", "row": blob}) + "\n")
                count += 1
            counts["evidence"] = count
        return counts

    def import_(self, path: Path) -> dict[str, int]:
        """Load an export; runs already present (same ident) are left as they are."""
        models = {
            m.__tablename__: m
            for m in (Run, RunHost, Result, TaskTiming, Sample, Incident, Drill, Notice, Alert)
        }
        counts = dict.fromkeys([*models, "evidence"], 0)
        blobs: dict[str, bytes] = {}
        run_ids: dict[int, int | None] = {}
        with path.open(encoding="utf-8") as handle, self._write() as session:
            header = json.loads(handle.readline() or "{}")
            if header.get("format") != EXPORT_FORMAT:
                raise StoreError(
                    f"{path}:1: not an opsrunner store export (format {header.get('format')!r})"
                )
            for number, line in enumerate(handle, start=2):
                try:
                    item = json.loads(line)
                    table, values = item["table"], dict(item["row"])
                    if table == "evidence":
                        body = base64.b64decode(values["body_base64"], validate=True)
                        if hashlib.sha256(body).hexdigest() != values["sha256"]:
                            raise ValueError(f"evidence {values['sha256']}: altered content")
                        blobs[str(values["sha256"])] = body
                        continue
                    model = models[table]
                except (ValueError, KeyError) as exc:
                    raise StoreError(f"{path}:{number}: unreadable export line: {exc}") from exc
                for column in model.__table__.columns:
                    if isinstance(column.type, UTCDateTime) and values.get(column.name):
                        values[column.name] = dt.datetime.fromisoformat(values[column.name])
                old_id = values.pop("id", None)
                if model is Run:
                    existing = session.scalar(select(Run.id).where(Run.ident == values["ident"]))
                    if existing is not None:
                        run_ids[old_id] = None  # already there: keep its children as they are
                        continue
                    row = Run(**values)
                    session.add(row)
                    session.flush()
                    run_ids[old_id] = row.id
                elif model in (RunHost, Result, TaskTiming):
                    new_run = run_ids.get(values["run_id"])
                    if new_run is None:
                        continue
                    values["run_id"] = new_run
                    session.add(model(**values))
                elif model is Drill:
                    values["run_id"] = (
                        run_ids.get(values["run_id"]) if values.get("run_id") else None
                    )
                    session.add(Drill(**values))
                elif model is Sample:
                    dup = session.scalar(
                        select(Sample.id).where(
                            Sample.host == values["host"], Sample.scraped_at == values["scraped_at"]
                        )
                    )
                    if dup is not None:
                        continue
                    session.add(Sample(**values))
                else:
                    session.add(model(**values))
                counts[table] += 1
            session.flush()
            have = set(
                session.scalars(
                    select(stored_evidence.EvidenceBlob.sha256).where(
                        stored_evidence.EvidenceBlob.sha256.in_(list(blobs))
                    )
                )
            )
            for sha in sorted(set(blobs) - have):
                body = blobs[sha]
                session.add(stored_evidence.EvidenceBlob(sha256=sha, size=len(body), body=body))
                counts["evidence"] += 1
            # Imported runs join this store's ledger as they arrived.
            for new_id in run_ids.values():
                imported = session.get(Run, new_id) if new_id is not None else None
                if imported is not None:
                    ledger.record_run(session, imported)
        return counts

    # -- locks -----------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the lock NAME for the block, or raise LockBusy at once if someone else has it.

        With PostgreSQL an advisory lock, so it holds across controllers sharing the store;
        with SQLite a file lock next to the database.
        """
        if self.dialect == "postgresql":
            key = _lock_key(name)
            with self.engine.connect() as connection:
                if not connection.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}):
                    raise LockBusy(f"another run holds the lock {name!r}")
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    connection.commit()
        else:
            directory = paths.private_dir(self.state_dir / "locks", tighten=False)
            file = directory / f"{hashlib.sha256(name.encode()).hexdigest()[:24]}.lock"
            flock = filelock.FileLock(str(file), timeout=0, mode=0o600)
            try:
                flock.acquire()
            except filelock.Timeout as exc:
                raise LockBusy(f"another run holds the lock {name!r}") from exc
            try:
                yield
            finally:
                flock.release()

    def schema_revision(self) -> str:
        """The alembic revision the database is at."""
        with self.engine.connect() as connection:
            return str(connection.scalar(text("SELECT version_num FROM alembic_version")))


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot export {type(value).__name__}")


__all__ = ["Base", "LockBusy", "Store", "StoreError", "default_url", "normalise_url"]
