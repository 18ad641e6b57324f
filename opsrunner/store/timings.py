"""The store's table of task durations per run x host x task (issue 14: where a run's time went)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Float, ForeignKey, Integer, String, Text, delete, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from opsrunner.store.models import Base

if TYPE_CHECKING:
    from opsrunner.store.store import Store


class TaskTiming(Base):
    """How long one task took on one host in one run (from ansible-runner's event durations)."""

    __tablename__ = "task_timings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # order of the task's first event in the run
    host: Mapped[str] = mapped_column(String(255))
    play: Mapped[str] = mapped_column(Text, default="")
    role: Mapped[str] = mapped_column(String(255), default="")
    task: Mapped[str] = mapped_column(Text, default="")
    action: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(16))  # ok | changed | failed | skipped | unreachable
    started_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    duration: Mapped[float] = mapped_column(Float)  # seconds


@dataclasses.dataclass(frozen=True)
class TimingRecord:
    """One task on one host: where it ran, how it ended and how many seconds it took."""

    seq: int
    host: str
    play: str
    role: str
    task: str
    action: str
    status: str
    started_at: dt.datetime | None
    duration: float


_FIELDS = [f.name for f in dataclasses.fields(TimingRecord)]


def set_timings(store: Store, run_id: int, timings: Sequence[TimingRecord]) -> int:
    """Replace a run's task timings in one transaction (importing a run twice changes nothing)."""
    with store.session() as session:
        session.execute(delete(TaskTiming).where(TaskTiming.run_id == run_id))
        if timings:
            session.execute(
                insert(TaskTiming),
                [{"run_id": run_id, **dataclasses.asdict(t)} for t in timings],
            )
    return len(timings)


def timings(store: Store, run_id: int) -> list[TimingRecord]:
    """A run's task timings, in the order the tasks ran."""
    with store.session() as session:
        rows = session.scalars(
            select(TaskTiming)
            .where(TaskTiming.run_id == run_id)
            .order_by(TaskTiming.seq, TaskTiming.host)
        )
        return [TimingRecord(**{name: getattr(row, name) for name in _FIELDS}) for row in rows]
