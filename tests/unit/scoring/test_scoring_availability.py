"""Availability (7.1.1) = successful scrapes / expected scrapes per host and period."""

from __future__ import annotations

import datetime as dt

import pytest

from opsrunner.scoring import availability
from opsrunner.store import SampleRecord

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)


def test_missing_and_failed_scrapes_count_as_down() -> None:
    samples = [
        SampleRecord("h1", T0 + n * MIN, ok=n != 3) for n in range(8)
    ]  # one failed, 2 missing
    samples.append(SampleRecord("h1", T0 + 20 * MIN, ok=True))  # outside the period
    got = availability(samples, ["h1", "h2"], T0, T0 + 10 * MIN, MIN)
    assert (got["h1"].ok, got["h1"].expected) == (7, 10)
    assert got["h1"].percent == pytest.approx(70.0)
    assert got["h2"].percent == 0.0


def test_bad_period_is_refused() -> None:
    with pytest.raises(ValueError):
        availability([], ["h1"], T0, T0, MIN)
