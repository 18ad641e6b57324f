"""Measure commands side by side: A B A B …, medians of CPU (process + children), wall, peak RSS."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Sample:
    """One measured command: wall seconds, CPU seconds (user+sys of it and its waited-for
    children), the largest resident set of any one process in its tree (MB), and what it said."""

    wall: float
    cpu: float
    rss_mb: float
    rc: int
    stdout: str = ""

    @property
    def data(self) -> dict[str, Any]:
        """The JSON object a worker printed last (empty when none)."""
        for line in reversed(self.stdout.strip().splitlines()):
            if line.startswith("{"):
                try:
                    value = json.loads(line)
                except ValueError:
                    return {}
                return value if isinstance(value, dict) else {}
        return {}


class BenchError(RuntimeError):
    """A measured command failed: the bench reports it instead of a figure."""


def measure(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: float = 7200,
) -> Sample:
    """Run argv once; CPU and peak RSS come from wait4() of exactly this child (not the machine)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd or ROOT,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        deadline = started + timeout
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.05)
        except BaseException:
            # Interrupted (SIGTERM, Ctrl-C): leave no measured command behind.
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    sample = Sample(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        rss_mb=usage.ru_maxrss / 1024,
        rc=proc.returncode,
        stdout=stdout,
    )
    if check and sample.rc != 0:
        tail = "\n".join((stderr or stdout).strip().splitlines()[-15:])
        raise BenchError(f"{' '.join(argv[:4])} … exited {sample.rc}:\n{tail}")
    return sample


def python(*args: str) -> list[str]:
    """This interpreter running `args` (e.g. `-m bench.worker ingest …`)."""
    return [sys.executable, *args]


def interleave(
    arms: Mapping[str, Callable[[], Sample]], pairs: int, log: Callable[[str], None]
) -> dict[str, list[Sample]]:
    """Run every arm once per round, alternating the order each round (A B, B A, …).

    Alternating cancels a drift in machine load; the medians of each arm are then compared.
    """
    names = list(arms)
    samples: dict[str, list[Sample]] = {n: [] for n in names}
    for round_ in range(pairs):
        order = names if round_ % 2 == 0 else list(reversed(names))
        for name in order:
            sample = arms[name]()
            samples[name].append(sample)
            log(
                f"  round {round_ + 1}/{pairs} {name}: wall {sample.wall:.2f}s "
                f"cpu {sample.cpu:.2f}s rss {sample.rss_mb:.0f}MB"
            )
    return samples


def median(samples: Sequence[Sample], field: str) -> float:
    """The median of one field over samples."""
    return float(statistics.median(getattr(s, field) for s in samples))


def spread(samples: Sequence[Sample], field: str) -> str:
    """min-max of one field, to show how noisy the medians were."""
    values = [getattr(s, field) for s in samples]
    return f"{min(values):.2f}-{max(values):.2f}"


@dataclasses.dataclass
class Row:
    """One line of the table: what was measured, the figure, the target and whether it is met."""

    arm: str
    measure: str
    figure: str
    target: str
    met: bool | None  # None: no target, or not measured
    detail: str = ""
    values: dict[str, Any] = dataclasses.field(default_factory=dict)
