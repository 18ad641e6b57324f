"""How often a control must be checked or attested: a named period or a cron expression."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Annotated, Any

from croniter import croniter  # type: ignore[import-untyped]
from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

# Named periods: the longest time evidence may age, and when the scheduler runs them (UTC).
_NAMED: dict[str, tuple[dt.timedelta, str]] = {
    "daily": (dt.timedelta(days=1), "0 3 * * *"),
    "weekly": (dt.timedelta(days=7), "0 3 * * MON"),
    "monthly": (dt.timedelta(days=31), "0 3 1 * *"),
    "quarterly": (dt.timedelta(days=92), "0 3 1 1,4,7,10 *"),
    "annual": (dt.timedelta(days=366), "0 3 1 1 *"),
}
# A fixed base makes the age of a cron frequency reproducible (same answer on every run).
_BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_SAMPLES = 400


@dataclass(frozen=True)
class Frequency:
    """A control's frequency: `max_age` bounds evidence age; `cron` schedules checks."""

    spec: str

    @classmethod
    def parse(cls, value: object) -> Frequency:
        """Accept a named period or a 5-field cron expression; raise ValueError otherwise."""
        if isinstance(value, Frequency):
            return value
        if not isinstance(value, str) or not value.strip():
            raise ValueError(
                "frequency must be daily, weekly, monthly, quarterly, annual or a cron expression"
            )
        spec = " ".join(value.split())
        if spec in _NAMED:
            return cls(spec)
        if len(spec.split()) != 5 or not croniter.is_valid(spec):
            raise ValueError(
                f"{value!r} is neither daily/weekly/monthly/quarterly/annual "
                "nor a 5-field cron expression"
            )
        return cls(spec)

    @property
    def cron(self) -> str:
        """The cron expression the scheduler uses."""
        return _NAMED[self.spec][1] if self.spec in _NAMED else self.spec

    @property
    def max_age(self) -> dt.timedelta:
        """The longest gap between two scheduled checks: evidence older than this is stale."""
        if self.spec in _NAMED:
            return _NAMED[self.spec][0]
        return _cron_max_age(self.spec)

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The next scheduled time after `moment` (UTC)."""
        result: dt.datetime = croniter(self.cron, moment).get_next(dt.datetime)
        return result

    def is_stale(self, evidence_at: dt.datetime, now: dt.datetime) -> bool:
        """True when evidence taken at `evidence_at` is too old at `now`."""
        return now - evidence_at > self.max_age

    def __str__(self) -> str:
        return self.spec


@functools.lru_cache(maxsize=256)
def _cron_max_age(spec: str) -> dt.timedelta:
    # Scoring asks for every item of every run: walk the schedule once per expression.
    it = croniter(spec, _BASE)
    previous: dt.datetime = it.get_next(dt.datetime)
    longest = dt.timedelta(0)
    for _ in range(_SAMPLES):
        current: dt.datetime = it.get_next(dt.datetime)
        longest = max(longest, current - previous)
        previous = current
    return longest


def _parse(value: Any) -> Frequency:
    return Frequency.parse(value)


FrequencyField = Annotated[
    Frequency,
    BeforeValidator(_parse),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "description": "daily|weekly|monthly|quarterly|annual or a 5-field cron expression",
            "examples": ["daily", "weekly", "0 2 * * SUN"],
        }
    ),
]
