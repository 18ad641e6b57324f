"""Where the project, its state and its caches live."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout that holds policy/, roles/ and ansible.cfg (OPSRUNNER_PROJECT overrides)."""
    env = os.environ.get("OPSRUNNER_PROJECT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "ansible.cfg").is_file() and (candidate / "policy").is_dir():
            return candidate
    return Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """Run records, evidence files and the SQLite store (OPSRUNNER_STATE_DIR overrides)."""
    env = os.environ.get("OPSRUNNER_STATE_DIR")
    return Path(env).resolve() if env else project_root() / ".opsrunner"


def cache_dir() -> Path:
    """Large caches kept outside the repository, e.g. the lab's root filesystem."""
    return Path(os.environ.get("OPSRUNNER_CACHE_DIR", "/var/cache/opsrunner"))
