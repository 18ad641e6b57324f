"""Support tickets (6.3.2) and user-satisfaction surveys (7.1.1) imported from CSV."""

from __future__ import annotations

import csv
import datetime as dt
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from opsrunner.policy.models import SupportTarget
from opsrunner.store import Store
from opsrunner.store.models import SupportTicket, SurveyResponse

CHANNELS = ("phone", "email", "im")
COMPLEXITIES = ("simple", "complex")
TICKET_COLUMNS = ("id", "channel", "opened", "first_response", "resolved", "complexity")
SURVEY_COLUMNS = ("survey", "respondent", "answered", "score", "comment")


class ImportError_(Exception):
    """A CSV that is refused: every problem as file:line: column: message; nothing written."""


def _time(text: str, now: dt.datetime) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.strip())
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    moment = moment.astimezone(dt.UTC)
    if moment > now:
        raise ValueError(f"{text.strip()} is in the future")
    return moment


def _rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ImportError_(f"{path}: {exc.strerror or exc}") from None
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in columns if c not in header]
        if missing:
            raise ImportError_(
                f"{path}:1: header lacks {', '.join(missing)} (columns: {', '.join(columns)})"
            )
        return [
            (reader.line_num, {k.strip(): (v or "").strip() for k, v in row.items() if k})
            for row in reader
        ]


def import_tickets(store: Store, path: Path, now: dt.datetime | None = None) -> dict[str, int]:
    """Import a help desk export; tickets already imported (same id) are skipped."""
    moment = now or dt.datetime.now(dt.UTC)
    problems: list[str] = []
    tickets: list[SupportTicket] = []
    seen: set[str] = set()
    for line, row in _rows(path, TICKET_COLUMNS):

        def bad(column: str, message: str, line: int = line) -> None:
            problems.append(f"{path}:{line}: {column}: {message}")

        ident = row["id"]
        if not ident:
            bad("id", "required")
        elif ident in seen:
            bad("id", f"{ident} is listed twice")
        seen.add(ident)
        if row["channel"] not in CHANNELS:
            bad("channel", f"{row['channel']!r} is not one of {', '.join(CHANNELS)}")
        if row["complexity"] not in COMPLEXITIES:
            bad("complexity", f"{row['complexity']!r} is not one of {', '.join(COMPLEXITIES)}")
        times: dict[str, dt.datetime | None] = {}
        for column in ("opened", "first_response", "resolved"):
            if not row[column]:
                if column == "opened":
                    bad(column, "required")
                times[column] = None
                continue
            try:
                times[column] = _time(row[column], moment)
            except ValueError as exc:
                bad(column, str(exc))
                times[column] = None
        opened, first, resolved = times["opened"], times["first_response"], times["resolved"]
        if opened and first and first < opened:
            bad("first_response", "is before opened")
        if opened and resolved and resolved < opened:
            bad("resolved", "is before opened")
        if resolved and not row["first_response"]:
            bad("first_response", "a resolved ticket was answered first")
        if opened:
            tickets.append(
                SupportTicket(
                    ident=ident,
                    channel=row["channel"],
                    complexity=row["complexity"],
                    opened_at=opened,
                    first_response_at=first,
                    resolved_at=resolved,
                    source=f"{path.name}:{line}",
                    data={},
                )
            )
    if problems:
        raise ImportError_("\n".join(problems))
    with store.session() as session:
        existing = set(session.scalars(select(SupportTicket.ident)))
        new = [t for t in tickets if t.ident not in existing]
        session.add_all(new)
    return {"imported": len(new), "skipped": len(tickets) - len(new)}


def import_survey(store: Store, path: Path, now: dt.datetime | None = None) -> dict[str, int]:
    """Import survey answers (score 1 to 5); answers already imported are skipped."""
    moment = now or dt.datetime.now(dt.UTC)
    problems: list[str] = []
    answers: list[SurveyResponse] = []
    for line, row in _rows(path, SURVEY_COLUMNS):
        where = f"{path}:{line}"
        for column in ("survey", "respondent"):
            if not row[column]:
                problems.append(f"{where}: {column}: required")
        try:
            answered = _time(row["answered"], moment)
        except ValueError as exc:
            problems.append(f"{where}: answered: {exc}")
            continue
        try:
            score = float(row["score"])
        except ValueError:
            problems.append(f"{where}: score: {row['score']!r} is not a number")
            continue
        if not 1 <= score <= 5:
            problems.append(f"{where}: score: {score:g} is not between 1 and 5")
            continue
        answers.append(
            SurveyResponse(
                survey=row["survey"],
                respondent=row["respondent"],
                answered_at=answered,
                score=score,
                comment=row["comment"],
                source=f"{path.name}:{line}",
            )
        )
    if problems:
        raise ImportError_("\n".join(problems))
    with store.session() as session:
        existing = set(session.execute(select(SurveyResponse.survey, SurveyResponse.respondent)))
        new = [a for a in answers if (a.survey, a.respondent) not in existing]
        session.add_all(new)
    return {"imported": len(new), "skipped": len(answers) - len(new)}


@dataclass(frozen=True)
class TicketStats:
    """Tickets of one complexity opened in a period, against the response targets."""

    complexity: str
    count: int
    responded_in_time: int
    resolved_in_time: int
    median_first_response_minutes: float | None
    median_resolve_hours: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return dict(self.__dict__)


def ticket_stats(
    store: Store,
    start: dt.datetime,
    end: dt.datetime,
    targets: Mapping[Any, SupportTarget],
) -> list[TicketStats]:
    """Per complexity: tickets opened in [start, end) answered and resolved within target.

    A ticket not yet answered (or resolved) by `end` counts as in time only while its target
    has not passed at `end`.
    """
    with store.session() as session:
        rows = list(
            session.scalars(
                select(SupportTicket).where(
                    SupportTicket.opened_at >= start, SupportTicket.opened_at < end
                )
            )
        )
    out = []
    for complexity in COMPLEXITIES:
        target = targets[complexity]
        mine = [r for r in rows if r.complexity == complexity]
        respond = dt.timedelta(minutes=target.first_response_minutes)
        resolve = dt.timedelta(hours=target.resolve_hours)

        def within(at: dt.datetime | None, opened: dt.datetime, limit: dt.timedelta) -> bool:
            return (at - opened <= limit) if at is not None else (end - opened <= limit)

        firsts = [
            (r.first_response_at - r.opened_at).total_seconds() / 60
            for r in mine
            if r.first_response_at
        ]
        resolves = [
            (r.resolved_at - r.opened_at).total_seconds() / 3600 for r in mine if r.resolved_at
        ]
        out.append(
            TicketStats(
                complexity=complexity,
                count=len(mine),
                responded_in_time=sum(
                    within(r.first_response_at, r.opened_at, respond) for r in mine
                ),
                resolved_in_time=sum(within(r.resolved_at, r.opened_at, resolve) for r in mine),
                median_first_response_minutes=(
                    round(statistics.median(firsts), 1) if firsts else None
                ),
                median_resolve_hours=round(statistics.median(resolves), 2) if resolves else None,
            )
        )
    return out


def survey_mean(store: Store, start: dt.datetime, end: dt.datetime) -> tuple[float | None, int]:
    """Mean satisfaction score of the answers given in [start, end), and how many."""
    with store.session() as session:
        scores = list(
            session.scalars(
                select(SurveyResponse.score).where(
                    SurveyResponse.answered_at >= start, SurveyResponse.answered_at < end
                )
            )
        )
    return (round(statistics.fmean(scores), 2) if scores else None), len(scores)
