"""Evidence: trimmed text on each result, the full report content-addressed (store or file)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsrunner import paths

if TYPE_CHECKING:
    from opsrunner.store import Store

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
    if state_dir is not None:
        write(state_dir, sha, content)
    return sha


# Folders <state>/evidence/<xx> known to exist: a run writes one file per result, and a mkdir
# per file cost more than the write itself (bench/ arm 2).
_MADE: set[str] = set()


def write(state_dir: Path, sha256: str, content: bytes) -> bool:
    """Write `content` (the canonical bytes of a report) as the file of `sha256` unless it is
    there; return whether this call created it.

    Plain os calls on strings (ruff PTH off here): this runs once per result, and pathlib's
    object churn was a third of the ingest path's time (bench/ arm 2).
    """
    folder = os.path.join(state_dir, "evidence", sha256[:2])  # noqa: PTH118
    path = os.path.join(folder, sha256)  # noqa: PTH118
    if os.path.exists(path):  # noqa: PTH110
        return False
    if folder not in _MADE:
        paths.private_dir(Path(folder), tighten=False)  # owner-only, 0700
        _MADE.add(folder)
    # Write then rename: a reader never sees half a file, two writers write the same bytes.
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except FileNotFoundError:
        # The folder went away since it was made (a prune, a test's tmp dir): make it again.
        paths.private_dir(Path(folder), tighten=False)  # owner-only, 0700
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    os.replace(tmp, path)  # noqa: PTH105
    return True


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


def load(store: Store, sha256: str) -> bytes | None:
    """The full report of a result: from the store's evidence table, else (results stored
    before revision 0007) its file under the store's state directory; None when neither is
    there (pruned, or kept on another controller)."""
    from opsrunner.store import evidence as stored

    body = stored.load(store, sha256)
    if body is not None:
        return body
    path = evidence_path(store.state_dir, sha256)
    return path.read_bytes() if path.is_file() else None
