"""Availability (7.1.1) from monitoring samples: successful scrapes / expected scrapes."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

from opsrunner.store.records import SampleRecord


@dataclasses.dataclass(frozen=True)
class Availability:
    """One host's availability over a period."""

    host: str
    ok: int
    expected: int

    @property
    def percent(self) -> float | None:
        """ok / expected as a percent (capped at 100), None when nothing was expected."""
        if self.expected <= 0:
            return None
        return min(100.0, 100.0 * self.ok / self.expected)


def availability(
    samples: Iterable[SampleRecord],
    hosts: Iterable[str],
    start: dt.datetime,
    end: dt.datetime,
    interval: dt.timedelta,
) -> dict[str, Availability]:
    """Per host: scrapes that succeeded in [start, end) over the scrapes the interval expects.

    A missing scrape counts as down: the daemon not running is no proof the host was up.
    """
    if end <= start or interval <= dt.timedelta(0):
        raise ValueError("availability needs end after start and a positive interval")
    expected = int((end - start) / interval)
    ok: dict[str, int] = dict.fromkeys(hosts, 0)
    for sample in samples:
        if start <= sample.scraped_at < end and sample.ok:
            ok[sample.host] = ok.get(sample.host, 0) + 1
    return {host: Availability(host, count, expected) for host, count in sorted(ok.items())}
