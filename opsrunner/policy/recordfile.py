"""Records kept in git (waivers.yml, attestations.yml) edited as text, atomically, re-validated."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from pathlib import Path

from opsrunner.policy.loader import Policy, PolicyError, Problem, display_path, load_policy


def stamp(moment: dt.datetime) -> str:
    """A UTC time as the record files write it: 2026-12-03T07:00:00Z."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def quote(text: str) -> str:
    """Any text as a YAML scalar: JSON strings are valid YAML double-quoted scalars."""
    return json.dumps(text, ensure_ascii=False)


def append_item(text: str, key: str, block: str) -> str:
    """The file text with `block` (an indented `  - …` list item) appended to the list `key`."""
    lines = text.splitlines(keepends=True)
    # An empty list is written `key: []`; turn it into a block list before appending.
    lines = [f"{key}:\n" if line.rstrip() == f"{key}: []" else line for line in lines]
    if not any(line.startswith(f"{key}:") for line in lines):
        lines.append(f"{key}:\n")
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return "".join(lines) + block


def commit(policy: Policy, name: str, new_text: str) -> Policy:
    """Validate the whole policy with `name` replaced by `new_text` in a scratch copy, then swap
    the file in with a rename; return the policy as reloaded. Nothing is written on a problem.
    """
    target = policy.root / name
    stem = Path(name).stem
    with tempfile.TemporaryDirectory(prefix=f"opsrunner-{stem}-") as scratch:
        copy = Path(scratch) / "policy"
        shutil.copytree(policy.root, copy, ignore=shutil.ignore_patterns("*.json", ".*"))
        (copy / name).write_text(new_text, encoding="utf-8")
        try:
            load_policy(copy)
        except PolicyError as exc:
            # Point the messages at the real file, not the scratch copy.
            shown = display_path(target)
            problems = [
                Problem(shown if p.file.endswith(name) else p.file, p.line, p.field, p.message)
                for p in exc.problems
            ]
            raise PolicyError(problems) from None
    fd, tmp = tempfile.mkstemp(dir=policy.root, prefix=f".{stem}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(new_text)
    if target.exists():
        shutil.copymode(target, tmp)
    Path(tmp).replace(target)
    return load_policy(policy.root)
