"""Store fixtures: every store test runs against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from opsrunner.store import Store

PG_BIN = Path(os.environ.get("OPSRUNNER_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _unavailable() -> str:
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL not installed in {PG_BIN}"
    if os.geteuid() != 0:
        return "needs root to run PostgreSQL as the postgres user"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user"
    return ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(*argv: str) -> None:
    # postgres refuses to run as root, so every server command runs as its own user.
    subprocess.run(
        ["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, timeout=120
    )


@contextmanager
def pg_server() -> Iterator[str]:
    """A fresh PostgreSQL 15 on 127.0.0.1 and a free port, in a temp dir; stopped afterwards."""
    base = Path(tempfile.mkdtemp(prefix="opsrunner-pg-"))
    data = base / "data"
    shutil.chown(base, "postgres", "postgres")
    port = _free_port()
    _as_postgres(
        str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
    )
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off -c shared_buffers=16MB"
    )
    _as_postgres(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(base / "log"),
        "-w",
        "start",
    )
    try:
        _as_postgres(
            str(PG_BIN / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "opsrunner_test",
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/opsrunner_test"
    finally:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    with pg_server() as url:
        yield url


def _fresh_pg(url: str, tmp_path: Path) -> Store:
    with Store.open(url, tmp_path) as store, store.engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    return Store.open(url, tmp_path)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.slow])]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same store tests against both databases."""
    if request.param == "sqlite":
        opened = Store.open(None, tmp_path)
    else:
        opened = _fresh_pg(request.getfixturevalue("pg_url"), tmp_path)
    try:
        yield opened
    finally:
        opened.close()
