"""What a run leaves in ansible-runner's artifacts: the events re-import needs, no task output.

ansible-runner writes every event whole (task output, module arguments, loop items, diffs) to
`<artifact_dir>/job_events/*.json` and the play's console text to `stdout`; a failing command
that echoes a vault variable or the become password would sit there, owner-only but on disk.
Only `opsrunner runs import` (crash recovery) and the run's timing read the events back, and
they need little of each: `strip` keeps that (the result contract's reports, the failure
message the store's reason holds anyway, the stamps), `Keeper` is the run's writer (the event
handler returns False so ansible-runner writes nothing itself) and `scrub` strips what other
writers left (a scale-out node's artifacts, a partial event file, the console text).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The events the collector and the timing read (runner.events, runner.timing); the others
# (verbose text, item results, includes, warnings…) are not kept.
KEPT = frozenset(
    {
        "playbook_on_play_start",
        "playbook_on_task_start",
        "playbook_on_stats",
        "runner_on_start",
        "runner_on_ok",
        "runner_on_failed",
        "runner_on_skipped",
        "runner_on_unreachable",
    }
)
_TOP = ("event", "counter", "uuid", "parent_uuid", "created", "runner_ident")
_DATA = (
    "host",
    "task",
    "task_uuid",
    "task_action",
    "resolved_action",
    "play",
    "play_uuid",
    "role",
    "start",
    "end",
    "duration",
    "ignore_errors",
    # playbook_on_stats: host -> count
    "ok",
    "failures",
    "dark",
    "changed",
    "skipped",
    "rescued",
    "ignored",
    "processed",
)
# As long as the collector keeps of a failure message (its reason in the store).
MESSAGE_CHARS = 500
# Console lines kept in `stdout`: Ansible's own warnings and errors (first line only), never
# task output. They say why a run did not start or a plugin did not load.
_DIAGNOSTIC = re.compile(r"^\s*(\[WARNING\]|\[DEPRECATION WARNING\]|\[ERROR\]|ERROR!)")
_DIAGNOSTIC_CHARS = 300
STDOUT = "stdout"


def strip(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The part of an event re-import and timing need (None: not needed at all)."""
    kind = event.get("event")
    if kind not in KEPT:
        return None
    out = {key: event[key] for key in _TOP if key in event}
    data = event.get("event_data")
    if isinstance(data, Mapping):
        kept = {key: data[key] for key in _DATA if key in data}
        res = data.get("res")
        if isinstance(res, Mapping):
            kept["res"] = _res(str(kind), res)
        out["event_data"] = kept
    return out


def _res(kind: str, res: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "changed" in res:
        out["changed"] = bool(res.get("changed"))
    if isinstance(res.get("opsrunner_control"), Mapping):
        out["opsrunner_control"] = res["opsrunner_control"]
    items = res.get("results")
    if isinstance(items, list):
        reports = [
            {"opsrunner_control": item["opsrunner_control"]}
            for item in items
            if isinstance(item, Mapping) and isinstance(item.get("opsrunner_control"), Mapping)
        ]
        if reports:
            out["results"] = reports
    if kind == "runner_on_failed":
        message = res.get("msg") or res.get("stderr")
    elif kind == "runner_on_unreachable":
        message = res.get("msg")
    else:
        message = None
    if message:
        out["msg"] = str(message)[:MESSAGE_CHARS]
    return out


def _write(path: Path, content: str) -> None:
    """Owner-only, atomically (a crash leaves the old file or the new one)."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
    temporary.replace(path)


def diagnostics(text: str) -> list[str]:
    """Ansible's warning and error lines in console text (cut short), nothing else."""
    return [
        line.strip()[:_DIAGNOSTIC_CHARS] for line in text.splitlines() if _DIAGNOSTIC.match(line)
    ]


class Keeper:
    """Writes a run's events to its artifacts as `strip` leaves them, as they arrive.

    Call it from the event handler, which then returns False: ansible-runner writes nothing.
    Ansible's warning and error lines go to the artifacts' `stdout` (run with ansible-runner's
    `suppress_output_file`, so that the console text itself is never written).
    """

    def __init__(self, artifact_dir: Path) -> None:
        self.folder = artifact_dir / "job_events"
        self.stdout = artifact_dir / STDOUT
        self.written = 0
        self._ready = False

    def __call__(self, event: Mapping[str, Any]) -> None:
        if not self._ready:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.stdout, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            self._ready = True
        text = event.get("stdout")
        if isinstance(text, str) and text:
            lines = diagnostics(text)
            if lines:
                with self.stdout.open("a", encoding="utf-8") as handle:
                    handle.write("\n".join(lines) + "\n")
        kept = strip(event)
        if kept is None or "counter" not in kept or "uuid" not in kept:
            return
        _write(self.folder / f"{kept['counter']}-{kept['uuid']}.json", json.dumps(kept))
        self.written += 1


def scrub(artifact_dir: Path) -> dict[str, int]:
    """Strip every event file under `artifact_dir` (drop those not needed, and the partial
    files Ansible's callback leaves when the runner dies), keep only the warning and error
    lines of `stdout` and `stderr`, and drop the environment's values from `command`.

    Idempotent; returns what it did (files stripped, dropped).
    """
    done = {"stripped": 0, "dropped": 0}
    folder = artifact_dir / "job_events"
    if folder.is_dir():
        for path in folder.iterdir():
            if not path.name.endswith(".json") or path.name.endswith("-partial.json"):
                path.unlink(missing_ok=True)
                done["dropped"] += 1
                continue
            try:
                event = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                # Half-written: the reader skips it too; it may hold task output.
                path.unlink(missing_ok=True)
                done["dropped"] += 1
                continue
            kept = strip(event) if isinstance(event, dict) else None
            if kept is None:
                path.unlink(missing_ok=True)
                done["dropped"] += 1
            elif kept != event:
                _write(path, json.dumps(kept))
                done["stripped"] += 1
    for name in (STDOUT, "stderr"):
        path = artifact_dir / name
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            lines = diagnostics(text)
            kept_text = "\n".join(lines) + "\n" if lines else ""
            if kept_text != text:
                _write(path, kept_text)
    command = artifact_dir / "command"
    if command.is_file():
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads(command.read_text(encoding="utf-8"))
            if isinstance(saved, dict) and isinstance(saved.get("env"), dict):
                # The names say how the run was set up; values can be secrets.
                saved["env"] = sorted(saved["env"])
                _write(command, json.dumps(saved))
    return done
