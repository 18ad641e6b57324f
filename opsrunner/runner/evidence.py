"""Evidence: trimmed text in the store, the full report content-addressed under the state dir."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from opsrunner import paths

TRIM = 1000


def evidence_dir(state_dir: Path) -> Path:
    """Where evidence files live: <state>/evidence/<sha[:2]>/<sha>."""
    return state_dir / "evidence"


def evidence_path(state_dir: Path, sha256: str) -> Path:
    """The file of one evidence hash."""
    return evidence_dir(state_dir) / sha256[:2] / sha256


def canonical(report: dict[str, Any]) -> bytes:
    """The bytes that are hashed: sorted-key JSON, so the same report gives the same hash."""
    return json.dumps(report, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")


def sha256_of(report: dict[str, Any]) -> str:
    """The hash a report is saved under."""
    return hashlib.sha256(canonical(report)).hexdigest()


def exists(state_dir: Path, sha256: str) -> bool:
    """Whether the evidence file of a hash is there."""
    return evidence_path(state_dir, sha256).is_file()


def discard(state_dir: Path, sha256: str) -> None:
    """Remove one evidence file (a superseded report the same run wrote); absent is fine."""
    evidence_path(state_dir, sha256).unlink(missing_ok=True)


def save(state_dir: Path | None, report: dict[str, Any]) -> str:
    """Write the full report once under its sha256 (no-op when present); return the hash."""
    content = canonical(report)
    sha = hashlib.sha256(content).hexdigest()
    if state_dir is None:
        return sha
    path = evidence_path(state_dir, sha)
    if not path.exists():
        # Owner-only whatever the umask: evidence holds what hosts revealed (mkstemp: 0600).
        paths.private_dir(path.parent, tighten=False)
        # Write then rename: a reader never sees half a file, two writers write the same bytes.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        Path(tmp).replace(path)
    return sha


def trim(text: str, limit: int = TRIM) -> tuple[str, bool]:
    """At most `limit` characters, and whether anything was cut."""
    if len(text) <= limit:
        return text, False
    return text[: limit - 1] + "…", True


def prune_files(state_dir: Path, keep: set[str]) -> int:
    """Delete evidence files no stored result points to; return how many."""
    removed = 0
    root = evidence_dir(state_dir)
    if not root.is_dir():
        return 0
    for path in root.glob("*/*"):
        if path.is_file() and path.name not in keep and not path.name.endswith(".tmp"):
            path.unlink()
            removed += 1
    return removed
