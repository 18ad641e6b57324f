"""The state directory, store, evidence, locks and reports are owner-only whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsrunner.policy import load_policy
from opsrunner.reports.publish import publish
from opsrunner.runner import evidence
from opsrunner.store import Store
from tests.unit.store.test_ledger import record_run


def loose_paths(root: Path) -> list[str]:
    """Every path under root (root too) that is not a 0700 directory or a 0600 file."""
    loose = []
    for path in [root, *sorted(root.rglob("*"))]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue  # a symlink's own mode means nothing; its target is listed on its own
        want = 0o700 if stat.S_ISDIR(info.st_mode) else 0o600
        if stat.S_IMODE(info.st_mode) != want:
            loose.append(f"{path} {stat.S_IMODE(info.st_mode):04o} (want {want:04o})")
    return loose


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def test_state_is_owner_only_whatever_the_umask(umask: int, tmp_path: Path) -> None:
    state = tmp_path / "fresh" / "state"
    sha = evidence.save(state, {"stdout": "host evidence"})
    with Store.open(None, state) as store:
        record_run(store, "r1", evidence_sha=sha)
        with store.lock("policy|inventory"):
            assert Path(f"{state}/opsrunner.db-wal").exists()  # WAL files are checked too
            written = publish(store, load_policy(), "r1")
            assert loose_paths(state) == []
    assert set(written) == {"html", "json", "latest_html", "latest_json"}
    assert loose_paths(state) == []
    assert loose_paths(tmp_path / "fresh") == []  # a parent opsrunner created


def test_an_existing_loose_state_dir_is_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    (state / "opsrunner.db").touch(mode=0o644)
    os.chmod(state, 0o755)
    os.chmod(state / "opsrunner.db", 0o644)
    Store.open(None, state).close()
    assert loose_paths(state) == []
