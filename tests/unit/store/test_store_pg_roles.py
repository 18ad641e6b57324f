"""deploy/postgresql-roles.sql: a writer that migrates and writes, a reporter that only reads."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from opsrunner.store import RunRecord, Store, normalise_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
SQL = Path(__file__).resolve().parents[3] / "deploy" / "postgresql-roles.sql"
PSQL = "/usr/lib/postgresql/15/bin/psql"


def test_writer_and_reporter_roles(pg_url: str, tmp_path: Path) -> None:
    url = make_url(pg_url)
    subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            PSQL,
            "-h",
            "127.0.0.1",
            "-p",
            str(url.port),
            "-d",
            "postgres",
            "-v",
            "writer_password=w-secret",
            "-v",
            "reporter_password=r-secret",
            "-f",
            str(SQL),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    base = f"postgresql://{{}}@127.0.0.1:{url.port}/opsrunner"
    with Store.open(base.format("opsrunner_writer:w-secret"), tmp_path) as writer:
        assert writer.schema_revision() == "0005"
        writer.begin_run(
            RunRecord(
                ident="r1", mode="audit", status="running", started_at=dt.datetime.now(dt.UTC)
            )
        )
        with writer.lock("policy|inventory"):
            pass
    # No migrations for the reporter: it cannot, and need not, change the schema.
    reporter = Store(
        create_engine(normalise_url(base.format("opsrunner_reporter:r-secret"), tmp_path)), tmp_path
    )
    try:
        assert [r.ident for r in reporter.list_runs()] == ["r1"]
        with (
            pytest.raises(ProgrammingError, match="permission denied"),
            reporter.engine.begin() as connection,
        ):
            connection.execute(text("DELETE FROM runs"))
        with (
            pytest.raises(ProgrammingError, match="permission denied"),
            reporter.engine.begin() as connection,
        ):
            connection.execute(text("CREATE TABLE sneaky (id int)"))
    finally:
        reporter.close()
