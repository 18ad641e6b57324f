"""Run progress: a rich bar (hosts x controls) on a terminal, plain lines otherwise.

Each host x control is reported once, with the status the store keeps: the runner tells the
reporter when a result is final (its play ended), and tells it the `unknown`, `notchecked`,
`notapplicable` and `error` rows it writes at the end of the run too, so the lines printed add
up to the results stored.
"""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from opsrunner.store.records import ResultRecord, RunRecord


class Reporter(Protocol):
    """Receives a run's progress; the runner calls it from the event handler."""

    def start(self, run: RunRecord, total: int, hosts: int) -> None:
        """The run began: `total` host x control results are expected."""

    def result(self, result: ResultRecord, done: int) -> None:
        """A result was recorded with its final status (once per host x control: when its play
        ended, or at the end of the run for the rows written then); `done` results so far."""

    def unreachable(self, host: str, reason: str) -> None:
        """A host could not be reached."""

    def finish(self, run: RunRecord) -> None:
        """The run ended."""


class NullReporter:
    """Silence (the Python API's default)."""

    def start(self, run: RunRecord, total: int, hosts: int) -> None:
        """Nothing."""

    def result(self, result: ResultRecord, done: int) -> None:
        """Nothing."""

    def unreachable(self, host: str, reason: str) -> None:
        """Nothing."""

    def finish(self, run: RunRecord) -> None:
        """Nothing."""


class PlainReporter:
    """One line per event, for CI logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.total = 0

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, run: RunRecord, total: int, hosts: int) -> None:
        """Announce the run."""
        self.total = total
        self._say(f"run {run.ident} ({run.mode}) started: {hosts} hosts, {total} results expected")

    def result(self, result: ResultRecord, done: int) -> None:
        """One line per result."""
        reason = f" — {result.reason}" if result.reason and result.status != "pass" else ""
        self._say(
            f"[{done}/{self.total}] {result.host} {result.control_id} {result.status}{reason}"
        )

    def unreachable(self, host: str, reason: str) -> None:
        """Say so."""
        self._say(f"{host} UNREACHABLE — {reason}")

    def finish(self, run: RunRecord) -> None:
        """The final status."""
        self._say(f"run {run.ident} {run.status}" + (f": {run.reason}" if run.reason else ""))


class RichReporter:
    """A progress bar of host x control results on a terminal."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.task: TaskID | None = None

    def start(self, run: RunRecord, total: int, hosts: int) -> None:
        """Show the bar."""
        self.progress.start()
        self.task = self.progress.add_task(f"{run.mode} on {hosts} hosts", total=total or None)

    def result(self, result: ResultRecord, done: int) -> None:
        """Advance; print failures above the bar."""
        if self.task is not None:
            self.progress.update(self.task, completed=done)
        if result.status in ("fail", "error", "unknown"):
            self.progress.console.print(
                f"[red]{result.host} {result.control_id} {result.status}[/red] {result.reason}",
                markup=True,
                highlight=False,
            )

    def unreachable(self, host: str, reason: str) -> None:
        """Print above the bar."""
        self.progress.console.print(f"[red]{host} unreachable[/red] {reason}", highlight=False)

    def finish(self, run: RunRecord) -> None:
        """Stop the bar."""
        if self.task is not None:
            # Controls never reported were recorded at the end (notchecked/unknown): all done.
            total = self.progress.tasks[0].total
            self.progress.update(self.task, completed=total or 0)
        self.progress.stop()
        colour = "green" if run.status == "successful" else "red"
        self.console.print(
            f"run {run.ident} [{colour}]{run.status}[/{colour}] {run.reason}", highlight=False
        )


def for_terminal(stream: TextIO | None = None) -> Reporter:
    """A rich bar on a TTY, plain lines otherwise."""
    target = stream or sys.stdout
    if target.isatty():
        return RichReporter()
    return PlainReporter(target)
