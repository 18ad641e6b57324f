"""deploy/postgresql-roles.sql: a writer that migrates and writes, a reporter that only reads."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, ProgrammingError
from typer.testing import CliRunner

from opsrunner.cli import app
from opsrunner.store import HostRecord, ResultRecord, RunRecord, Store, normalise_url

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
    now = dt.datetime.now(dt.UTC)
    with Store.open(base.format("opsrunner_writer:w-secret"), tmp_path) as writer:
        assert writer.schema_revision() == "0007"
        writer.begin_run(RunRecord(ident="r1", mode="audit", status="running", started_at=now))
        with writer.lock("policy|inventory"):
            pass
        done = writer.begin_run(
            RunRecord(ident="r2", mode="audit", status="running", started_at=now)
        )
        assert done.id is not None
        writer.add_results(
            done.id, [ResultRecord("host1", "FW-001", "fail", now, reason="input policy accept")]
        )
        writer.set_hosts(done.id, [HostRecord("host1", groups=("critical", "db"))])
        writer.finish_run(done.id, "failed", ended_at=now, rc=2)
        # Even the writer (the schema's owner) cannot rewrite the ledger by accident.
        with (
            pytest.raises(DBAPIError, match="append-only"),
            writer.engine.begin() as connection,
        ):
            connection.execute(text("UPDATE ledger SET kind = 'x'"))
    # The reporter opens the store as every command does (no migration is due), reads, scores,
    # reports and verifies; it writes nothing, the ledger included.
    reporter_url = base.format("opsrunner_reporter:r-secret")
    for argv in (
        ["score", "--run", "r2"],
        ["report", "r2", "--format", "json"],
        ["verify"],
    ):
        done_cli = CliRunner().invoke(
            app, [*argv, "--store", reporter_url, "--state-dir", str(tmp_path)]
        )
        assert done_cli.exit_code in (0, 1), done_cli.output  # score exits 1 on a failing run
        assert "permission denied" not in done_cli.output, done_cli.output
        assert "Traceback" not in done_cli.output, done_cli.output
        if argv[0] == "verify":
            assert done_cli.exit_code == 0 and "verify: OK" in done_cli.output
        if argv[0] == "report":
            assert json.loads(done_cli.stdout)["run"]["ident"] == "r2"
    with (
        Store.open(reporter_url, tmp_path) as reading,
        pytest.raises(ProgrammingError, match="permission denied"),
    ):
        reading.begin_run(RunRecord(ident="r3", mode="audit", status="running", started_at=now))
    # No migrations for the reporter: it cannot, and need not, change the schema.
    reporter = Store(
        create_engine(normalise_url(base.format("opsrunner_reporter:r-secret"), tmp_path)), tmp_path
    )
    try:
        assert sorted(r.ident for r in reporter.list_runs()) == ["r1", "r2"]
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
        for statement in (
            "INSERT INTO ledger (seq, kind, run_ident, prev, body, sha256) "
            "VALUES (99, 'run', 'x', 'p', '{}', 's')",
            "UPDATE results SET status = 'pass'",
        ):
            with (
                pytest.raises(ProgrammingError, match="permission denied"),
                reporter.engine.begin() as connection,
            ):
                connection.execute(text(statement))
    finally:
        reporter.close()
