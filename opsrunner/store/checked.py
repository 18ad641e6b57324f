"""Skip the open-time `quick_check` of a SQLite store unchanged since its last clean check.

`PRAGMA quick_check` reads every page: on an 800 MB store it costs seconds on every open (every
CLI command). A store whose file (and write-ahead log) has not changed since a check found it
sound is still sound, so the check is skipped then. The stamp (`<store>.checked`, owner-only)
holds the file's identity, size and modification time at that check; any write, a flipped
byte or a copy over it changes them and the next open checks again. It guards against damage,
not against someone who can also reset mtimes: the full walk is `opsrunner verify`'s.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

SUFFIX = ".checked"


def _identity(database: Path) -> list[int] | None:
    """The database file's device, inode, size and mtime, and its WAL's (None: no file)."""
    try:
        main = database.stat()
    except OSError:
        return None
    out = [main.st_dev, main.st_ino, main.st_size, main.st_mtime_ns]
    try:
        wal = Path(f"{database}-wal").stat()
    except OSError:
        wal = None
    # An empty WAL holds nothing: SQLite creates and removes it as connections come and go.
    out += [wal.st_size, wal.st_mtime_ns] if wal is not None and wal.st_size else [0, 0]
    return out


class Stamp:
    """The identity a store had when its check last found it sound."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = database.with_name(database.name + SUFFIX)
        self.before = _identity(database)

    def unchanged(self) -> bool:
        """The store is the file its last clean check saw (so the check may be skipped)."""
        if self.before is None:
            return False
        try:
            return bool(json.loads(self.path.read_text(encoding="utf-8")) == self.before)
        except (OSError, ValueError):
            return False

    def save(self) -> None:
        """Record a clean check, unless the file changed since this stamp was taken (a write
        came in between: the next open checks again)."""
        now = _identity(self.database)
        if now is None or now != self.before:
            self.path.unlink(missing_ok=True)
            return
        with contextlib.suppress(OSError):
            temporary = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(now, handle)
            temporary.replace(self.path)

    def forget(self) -> None:
        """The check found damage: no stamp."""
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
