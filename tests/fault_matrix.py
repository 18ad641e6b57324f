"""The fault matrix (issue 15): the `fault_record` fixture and the session's summary line.

A test marked `faults` records what it measured through `fault_record`::

    @pytest.mark.faults
    def test_runner_killed(fault_record):
        ...
        fault_record(row=3, injected=5, survived=5, figure="5 kills, 0 duplicates")

Calls add up (counts: injected, survived, lost, duplicates, secret_hits, xss). A `faults` test
that never calls it counts as one fault injected, survived when the test passed. A test that
fails counts what it injected and nothing survived; a skipped test counts nothing. At the end
of the session each faults test's figure is printed, then the line ``faults injected N,
survived N, results lost 0, duplicates 0, secret hits 0, XSS 0``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator
from typing import Any

import pytest

COUNTS = ("injected", "survived", "lost", "duplicates", "secret_hits", "xss")


@dataclasses.dataclass
class FaultFigures:
    """What one test measured."""

    rows: set[int] = dataclasses.field(default_factory=set)
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    figures: list[str] = dataclasses.field(default_factory=list)
    recorded: bool = False


_FIGURES = pytest.StashKey[FaultFigures]()
_OUTCOME = pytest.StashKey[str]()
_ITEMS = pytest.StashKey[list[pytest.Item]]()


@pytest.fixture
def fault_record(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Record the figures of a fault test (see the module docstring)."""
    figures = request.node.stash.setdefault(_FIGURES, FaultFigures())

    def record(row: int | None = None, figure: str = "", **counts: int) -> None:
        unknown = set(counts) - set(COUNTS)
        if unknown:
            raise TypeError(f"fault_record: unknown counts {sorted(unknown)} (use {COUNTS})")
        figures.recorded = True
        if row is not None:
            figures.rows.add(row)
        for key, value in counts.items():
            figures.counts[key] += int(value)
        if figure:
            figures.figures.append(figure)
            print(f"fault figure (row {row}): {figure}")

    return record


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    config.stash[_ITEMS] = [item for item in items if item.get_closest_marker("faults")]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, Any]:
    report = yield
    if item.get_closest_marker("faults"):
        before = item.stash.get(_OUTCOME, "")
        if report.failed:
            item.stash[_OUTCOME] = "failed"
        elif report.skipped and before != "failed":
            item.stash[_OUTCOME] = "skipped"
        elif report.when == "call" and report.passed and before == "":
            item.stash[_OUTCOME] = "passed"
    return report


def totals(items: list[pytest.Item]) -> tuple[dict[str, int], list[str]]:
    """Sum the figures of the faults tests that ran; one line per test."""
    sums = dict.fromkeys(COUNTS, 0)
    lines = []
    for item in items:
        outcome = item.stash.get(_OUTCOME, "")
        if outcome in ("", "skipped"):
            continue
        got = item.stash.get(_FIGURES, FaultFigures())
        counts = dict(got.counts)
        if not got.recorded:
            counts.update(injected=1, survived=1)
        if outcome != "passed":
            counts["survived"] = 0
        for key in COUNTS:
            sums[key] += counts[key]
        marker = item.get_closest_marker("faults")
        rows = sorted(got.rows) or [
            a for a in (marker.args if marker else ()) if isinstance(a, int)
        ]
        where = "row " + ",".join(map(str, rows)) if rows else "row ?"
        said = "; ".join(got.figures) or outcome
        lines.append(
            f"{where:>8}  {item.nodeid}: injected {counts['injected']}, "
            f"survived {counts['survived']} — {said}"
        )
    return sums, lines


def summary_line(sums: dict[str, int]) -> str:
    """The issue's line, from what the tests measured."""
    return (
        f"faults injected {sums['injected']}, survived {sums['survived']}, "
        f"results lost {sums['lost']}, duplicates {sums['duplicates']}, "
        f"secret hits {sums['secret_hits']}, XSS {sums['xss']}"
    )


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    sums, lines = totals(config.stash.get(_ITEMS, []))
    if not lines:
        return
    terminalreporter.section("fault matrix")
    for line in lines:
        terminalreporter.write_line(line)
    terminalreporter.write_line(summary_line(sums))
