"""Where the project, its state and its caches live."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
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


def private_dir(path: Path, *, tighten: bool = True) -> Path:
    """Create a directory (and its missing parents) owner-only, 0700, whatever the umask; with
    `tighten`, an existing one opsrunner's user owns is brought down to 0700 as well."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for created in missing:
        with contextlib.suppress(OSError):
            created.chmod(0o700)
    if tighten:
        _tighten(path, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Create an empty file owner-only, 0600 (an existing one opsrunner owns is tightened)."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
    _tighten(path, 0o600)
    return path


def write_private(path: Path, text: str) -> Path:
    """Replace `path` with `text` atomically, owner-only (0600) whatever the umask.

    The text goes to a temporary file beside it, renamed over the old one: a reader sees the
    old file or the new one, never half of it; on a failure (a full disk) the temporary file is
    removed and the old file stays whole.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _tighten(path: Path, mode: int) -> None:
    # Only what we own: a shared directory given as the state dir's parent is left alone.
    with contextlib.suppress(OSError):
        info = path.stat()
        if info.st_uid == os.geteuid() and info.st_mode & 0o777 & ~mode:
            path.chmod(mode)


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """The process umask `mask` in the block (child processes inherit it), restored after."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def owner_only() -> contextlib.AbstractContextManager[None]:
    """Files created in the block (also by child processes: ansible-runner's artifacts) are
    owner-only: umask 077, restored after."""
    return umask(0o077)


def tighten_tree(root: Path) -> None:
    """Bring a tree opsrunner wrote down to 0700 directories and 0600 files: for what a child
    process created with modes of its own (Ansible writes its fact cache 0644)."""
    if not root.is_dir() or root.is_symlink():
        return
    _tighten(root, 0o700)
    for folder, dirs, files in os.walk(root):
        base = Path(folder)
        for name in dirs:
            if not (base / name).is_symlink():
                _tighten(base / name, 0o700)
        for name in files:
            if not (base / name).is_symlink():
                _tighten(base / name, 0o600)
