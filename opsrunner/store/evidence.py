"""The store's evidence table: each full report once, content-addressed by its sha256."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from sqlalchemy import Integer, LargeBinary, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from opsrunner.store.models import Base, Result

if TYPE_CHECKING:
    from opsrunner.store.store import Store


class EvidenceBlob(Base):
    """The full report behind one result (every check, untrimmed), keyed by its sha256.

    Results point here through `results.evidence_sha256`; a run's evidence is written in the
    same transaction as its results (no file per result), so it is as durable and as shared
    (PostgreSQL) as they are.
    """

    __tablename__ = "evidence"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)


def discard(store: Store, hashes: Iterable[str]) -> None:
    """Delete these blobs unless a stored result still points to them (reports a run wrote and
    has since superseded: a control reported again after its play ended)."""
    wanted = sorted(set(hashes))
    if not wanted:
        return
    store._check_writable()
    with store.session() as session:
        used = set(
            session.scalars(
                select(Result.evidence_sha256).where(Result.evidence_sha256.in_(wanted))
            )
        )
        gone = [sha for sha in wanted if sha not in used]
        if gone:
            session.execute(delete(EvidenceBlob).where(EvidenceBlob.sha256.in_(gone)))


def stored_report(store: Store, run_id: int, host: str, cid: str) -> tuple[str, bytes] | None:
    """(sha256, full report) of one stored result of a run, or None when it is not stored."""
    with store.session() as session:
        row = session.execute(
            select(Result.evidence_sha256, EvidenceBlob.body)
            .join(EvidenceBlob, EvidenceBlob.sha256 == Result.evidence_sha256)
            .where(Result.run_id == run_id, Result.host == host, Result.control_id == cid)
        ).first()
    return None if row is None else (str(row[0]), bytes(row[1]))


def prune_unreferenced(session: Session) -> int:
    """Delete every blob no stored result points to (after `Store.prune`); return how many."""
    used = select(Result.evidence_sha256).where(Result.evidence_sha256 != "").distinct()
    done = session.execute(delete(EvidenceBlob).where(EvidenceBlob.sha256.not_in(used)))
    return int(getattr(done, "rowcount", 0) or 0)


def load(store: Store, sha256: str) -> bytes | None:
    """The stored full report of a hash, or None when the store does not hold it."""
    with store.session() as session:
        body = session.scalar(select(EvidenceBlob.body).where(EvidenceBlob.sha256 == sha256))
    return None if body is None else bytes(body)


def problems(store: Store) -> tuple[int, list[str]]:
    """(blobs checked, blobs whose content no longer hashes to their key)."""
    checked, bad = 0, []
    for sha, body in _each(store):
        checked += 1
        if hashlib.sha256(body).hexdigest() != sha:
            bad.append(f"stored evidence {sha}: content does not match its sha256 (altered)")
    return checked, bad


def hashes(store: Store) -> set[str]:
    """Every hash the evidence table holds."""
    with store.session() as session:
        return set(session.scalars(select(EvidenceBlob.sha256)))


def _each(store: Store) -> Iterator[tuple[str, bytes]]:
    with store.session() as session:
        rows = session.execute(
            select(EvidenceBlob.sha256, EvidenceBlob.body).execution_options(yield_per=500)
        )
        for sha, body in rows:
            yield str(sha), bytes(body)
