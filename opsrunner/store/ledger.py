"""The evidence ledger: a hash chain over every recorded run's results, kept in the store."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from opsrunner.store.models import Base, Result, Run, RunHost

LEDGER_VERSION = 1
GENESIS = "0" * 64
# Runs whose results are final: a ledger entry is written when a run reaches one of these.
FINAL = ("successful", "failed", "timeout", "canceled", "interrupted", "skipped")


class LedgerEntry(Base):
    """One link of the chain: the canonical JSON that was hashed, and its sha256."""

    __tablename__ = "ledger"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))  # run | prune
    run_ident: Mapped[str] = mapped_column(String(64), default="", index=True)
    prev: Mapped[str] = mapped_column(String(64), unique=True)  # no fork: one successor each
    body: Mapped[str] = mapped_column(Text)  # canonical JSON, exactly the bytes hashed
    sha256: Mapped[str] = mapped_column(String(64), unique=True)


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8, datetimes as ISO 8601 UTC."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_iso
    ).encode("utf-8")


def _iso(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    raise TypeError(f"cannot put {type(value).__name__} in the ledger")


def sha256(data: bytes) -> str:
    """Hex sha256."""
    return hashlib.sha256(data).hexdigest()


_RUN_FIELDS = (
    "ident",
    "mode",
    "job",
    "playbook",
    "status",
    "rc",
    "started_at",
    "ended_at",
    "user",
    "controller",
    "inventory",
    "limit",
    "controls",
    "policy_commit",
    "policy_digest",
    "scheduled_for",
    "late",
    "reason",
    "stats",
    "disruptive",
)
#: A result's fields, in the order the ledger digests them (and the store binds them, after
#: run_id).
RESULT_FIELDS = (
    "host",
    "control_id",
    "status",
    "reason",
    "evidence",
    "evidence_sha256",
    "evidence_truncated",
    "data",
    "remediated",
    "task",
    "checked_at",
)
_HOST_FIELDS = ("host", "reachable", "reason", "groups", "stats")


def run_content(session: Session, run: Run) -> dict[str, Any]:
    """What a run's ledger digest covers: the run row, its hosts and every result, as stored."""
    # Plain rows, not ORM objects: the same values, without building an object per result
    # (finish_run digests a whole run under the write lock).
    results = session.execute(
        select(*(getattr(Result, name) for name in RESULT_FIELDS))
        .where(Result.run_id == run.id)
        .order_by(Result.host, Result.control_id)
    )
    hosts = session.execute(
        select(*(getattr(RunHost, name) for name in _HOST_FIELDS))
        .where(RunHost.run_id == run.id)
        .order_by(RunHost.host)
    )
    return {
        "run": {name: getattr(run, name) for name in _RUN_FIELDS},
        "hosts": [dict(zip(_HOST_FIELDS, row, strict=True)) for row in hosts],
        "results": [dict(zip(RESULT_FIELDS, row, strict=True)) for row in results],
    }


def run_digest(session: Session, run: Run) -> tuple[str, int, int]:
    """(sha256 of the run's canonical content, number of results, number of hosts)."""
    content = run_content(session, run)
    return sha256(canonical(content)), len(content["results"]), len(content["hosts"])


def _head(session: Session) -> LedgerEntry | None:
    return session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq.desc()).limit(1)).first()


def _append(session: Session, kind: str, body: dict[str, Any], run_ident: str = "") -> LedgerEntry:
    head = _head(session)
    seq = 1 if head is None else head.seq + 1
    prev = GENESIS if head is None else head.sha256
    full = {
        "v": LEDGER_VERSION,
        "seq": seq,
        "prev": prev,
        "kind": kind,
        "recorded_at": dt.datetime.now(dt.UTC),
        **body,
    }
    text = canonical(full).decode("utf-8")
    entry = LedgerEntry(
        seq=seq, kind=kind, run_ident=run_ident, prev=prev, body=text, sha256=sha256(text.encode())
    )
    session.add(entry)
    session.flush()
    return entry


def record_run(session: Session, run: Run) -> LedgerEntry | None:
    """Append an entry for a run that reached a final status, in the caller's transaction.

    A run recorded again with the same content adds nothing; recorded again with other content
    (re-imported from its artifacts) it gets a new entry, and the newest entry is the one the
    stored results must match.
    """
    if run.status not in FINAL:
        return None
    session.flush()
    digest, n_results, n_hosts = run_digest(session, run)
    last = session.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.run_ident == run.ident, LedgerEntry.kind == "run")
        .order_by(LedgerEntry.seq.desc())
        .limit(1)
    ).first()
    if last is not None and json.loads(last.body).get("results_sha256") == digest:
        return None
    return _append(
        session,
        "run",
        {
            "run": run.ident,
            "status": run.status,
            "mode": run.mode,
            "policy_commit": run.policy_commit,
            "policy_digest": run.policy_digest,
            "results_sha256": digest,
            "results": n_results,
            "hosts": n_hosts,
        },
        run.ident,
    )


def record_prune(session: Session, idents: Iterable[str], before: dt.datetime) -> None:
    """Append an entry naming the runs `store prune` deleted, so their absence is accounted for."""
    names = sorted(idents)
    if names:
        _append(session, "prune", {"runs": names, "older_than": before})


def adopt(session: Session) -> int:
    """On the first open after the upgrade that adds the ledger: one entry per finished run
    already in the store, oldest first, so every run from here on is covered."""
    if _head(session) is not None:
        return 0
    runs = session.scalars(
        select(Run).where(Run.status.in_(FINAL)).order_by(Run.started_at, Run.id)
    ).all()
    for run in runs:
        record_run(session, run)
    return len(runs)


@dataclasses.dataclass(frozen=True)
class Problem:
    """The first thing wrong, named by ledger entry (seq) and run where there is one."""

    seq: int | None
    run: str
    message: str

    def __str__(self) -> str:
        where = f"ledger entry {self.seq}" if self.seq is not None else "store"
        return f"{where}{f' (run {self.run})' if self.run else ''}: {self.message}"


@dataclasses.dataclass(frozen=True)
class Report:
    """What `verify` found."""

    entries: int
    head: str
    runs_checked: int
    problems: tuple[Problem, ...]
    chain_ok: bool = True  # False: `entries` counts the entries before the first bad one

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


def check_chain(
    session: Session,
) -> tuple[list[tuple[LedgerEntry, dict[str, Any]]], Problem | None]:
    """Walk the chain from its first entry; stop at the first entry that does not hold.

    Each entry's body must hash to its stored sha256, be canonical JSON, carry its own seq,
    and name the previous entry's hash; seqs run 1, 2, 3 … without a gap.
    """
    good: list[tuple[LedgerEntry, dict[str, Any]]] = []
    prev, expected = GENESIS, 1
    for entry in session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)):
        problem = _entry_problem(entry, prev, expected)
        if problem is not None:
            return good, problem
        good.append((entry, json.loads(entry.body)))
        prev, expected = entry.sha256, entry.seq + 1
    return good, None


def chain_holds(session: Session) -> bool:
    """The open-time check: every entry's body hashes to its sha256 and links to the one
    before, seqs without a gap. Plain rows and one hash each (no JSON parsing): cheap however
    long the chain. What it does not look at (canonical form, the body's own seq and prev, the
    stored results) `check_chain` and `verify` do."""
    prev, expected = GENESIS, 1
    rows = session.execute(
        select(LedgerEntry.seq, LedgerEntry.prev, LedgerEntry.body, LedgerEntry.sha256).order_by(
            LedgerEntry.seq
        )
    )
    for seq, link, body, digest in rows:
        if seq != expected or link != prev or sha256(body.encode("utf-8")) != digest:
            return False
        prev, expected = digest, seq + 1
    return True


def _entry_problem(entry: LedgerEntry, prev: str, expected: int) -> Problem | None:
    def bad(message: str) -> Problem:
        return Problem(entry.seq, entry.run_ident, message)

    if entry.seq != expected:
        return bad(f"expected entry {expected} here: entries are missing")
    if sha256(entry.body.encode("utf-8")) != entry.sha256:
        return bad("content does not match its hash (the entry was altered)")
    try:
        body = json.loads(entry.body)
    except ValueError:
        return bad("not JSON (the entry was altered)")
    if not isinstance(body, dict) or canonical(body).decode("utf-8") != entry.body:
        return bad("not canonical JSON (the entry was altered)")
    if body.get("seq") != entry.seq or body.get("kind") != entry.kind:
        return bad("seq or kind differ from the hashed content")
    if body.get("prev") != prev or entry.prev != prev:
        return bad(f"does not chain to the previous entry (expected prev {prev[:16]}…)")
    if entry.kind == "run" and body.get("run") != entry.run_ident:
        return bad("run differs from the hashed content")
    return None


def verify(session: Session) -> Report:
    """Check the whole chain, then every finished run's stored results against its entry."""
    good, problem = check_chain(session)
    head = good[-1][0].sha256 if good else GENESIS
    if problem is not None:
        return Report(len(good), head, 0, (problem,), chain_ok=False)
    newest: dict[str, tuple[int, dict[str, Any]]] = {}
    pruned: set[str] = set()
    for entry, body in good:
        if entry.kind == "run":
            newest[entry.run_ident] = (entry.seq, body)
        elif entry.kind == "prune":
            pruned.update(body.get("runs") or ())
    problems: list[Problem] = []
    checked = 0
    seen: set[str] = set()
    for run in session.scalars(select(Run).order_by(Run.id)):
        seen.add(run.ident)
        if run.status not in FINAL:
            continue
        found = newest.get(run.ident)
        if found is None:
            problems.append(Problem(None, run.ident, f"{run.status} run not in the ledger"))
            continue
        seq, body = found
        digest, n_results, _ = run_digest(session, run)
        checked += 1
        if digest != body.get("results_sha256"):
            problems.append(
                Problem(
                    seq,
                    run.ident,
                    f"stored run or results differ from the ledger ({n_results} results stored, "
                    f"{body.get('results')} recorded)",
                )
            )
    for ident, (seq, _body) in newest.items():
        if ident not in seen and ident not in pruned:
            problems.append(Problem(seq, ident, "run deleted from the store (no prune entry)"))
    problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    return Report(len(good), head, checked, tuple(problems))


def entry_hash(session: Session, seq: int) -> str | None:
    """The stored hash of entry seq (for signed checkpoints)."""
    entry = session.get(LedgerEntry, seq)
    return None if entry is None else entry.sha256


__all__ = [
    "GENESIS",
    "LedgerEntry",
    "Problem",
    "Report",
    "adopt",
    "canonical",
    "chain_holds",
    "check_chain",
    "record_prune",
    "record_run",
    "verify",
]
