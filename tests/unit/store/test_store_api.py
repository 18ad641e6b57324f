"""The store behaves the same on SQLite and PostgreSQL: runs, results, samples, upkeep, locks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect

from opsrunner.runner import evidence
from opsrunner.store import (
    HostRecord,
    LockBusy,
    ResultRecord,
    RunRecord,
    SampleRecord,
    Store,
    StoreError,
)

T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)


def _run(
    store: Store, ident: str, *, at: dt.datetime = T0, status: str = "running", mode: str = "audit"
) -> RunRecord:
    return store.begin_run(
        RunRecord(ident=ident, mode=mode, status=status, started_at=at, user="alice")
    )


def _result(
    host: str, control: str, status: str, at: dt.datetime = T0, **extra: object
) -> ResultRecord:
    return ResultRecord(host=host, control_id=control, status=status, checked_at=at, **extra)  # type: ignore[arg-type]


def test_migrations_create_every_table(store: Store) -> None:
    tables = set(inspect(store.engine).get_table_names())
    assert {
        "runs",
        "results",
        "run_hosts",
        "samples",
        "incidents",
        "drills",
        "notices",
        "alerts",
        "support_tickets",
        "survey_responses",
        "task_timings",
    } <= tables
    assert store.schema_revision() == "0007"


def test_reopening_migrates_nothing_and_keeps_data(store: Store, tmp_path: Path) -> None:
    _run(store, "r1")
    url = store.engine.url.render_as_string(hide_password=False)
    again = Store.open(url, tmp_path)
    try:
        assert [r.ident for r in again.list_runs()] == ["r1"]
    finally:
        again.close()


def test_run_roundtrip_keeps_utc_and_fields(store: Store) -> None:
    record = RunRecord(
        ident="abc123",
        mode="enforce",
        status="running",
        started_at=dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))),
        controls=("FW-001", "FW-002"),
        policy_commit="deadbeef",
        policy_digest="sha256:00",
        inventory="inventories/lab",
        limit="web",
    )
    run = store.begin_run(record)
    assert run.id is not None
    done = store.finish_run(
        run.id, "failed", ended_at=T0 + dt.timedelta(days=1), rc=2, stats={"h1": {"ok": 3}}
    )
    got = store.get_run("abc")
    assert got == done
    assert got.started_at == dt.datetime(2026, 11, 2, 2, 0, tzinfo=dt.UTC)
    assert got.started_at.tzinfo is not None
    assert got.controls == ("FW-001", "FW-002")
    assert got.status == "failed" and got.rc == 2 and got.stats == {"h1": {"ok": 3}}


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.begin_run(
            RunRecord(ident="x", mode="audit", status="running", started_at=dt.datetime(2026, 1, 1))
        )
    with pytest.raises(ValueError, match="naive"):
        _result("h1", "FW-001", "pass", at=dt.datetime(2026, 1, 1))


def test_unknown_run_is_a_clear_error(store: Store) -> None:
    with pytest.raises(StoreError, match="not found"):
        store.get_run("nope")


def test_results_upsert_is_idempotent_and_last_write_wins(store: Store) -> None:
    run = _run(store, "r1")
    assert run.id is not None
    batch = [
        _result("h1", "FW-001", "pass", evidence="policy drop", evidence_sha256="a" * 64),
        _result("h1", "FW-002", "fail", reason="port 23 open", data={"ports": [23]}),
        _result("h2", "FW-001", "unknown", reason="unreachable"),
    ]
    store.add_results(run.id, batch)
    store.add_results(run.id, batch)
    store.add_results(run.id, [_result("h1", "FW-002", "error", reason="nft missing")])
    got = {(r.host, r.control_id): r for r in store.results(run.id)}
    assert len(got) == 3
    assert got[("h1", "FW-002")].status == "error"
    assert got[("h1", "FW-001")].evidence_sha256 == "a" * 64
    assert got[("h1", "FW-001")].run_id == run.id


def test_hosts_upsert(store: Store) -> None:
    run = _run(store, "r1")
    assert run.id is not None
    store.set_hosts(
        run.id, [HostRecord("h1"), HostRecord("h2", reachable=False, reason="x", groups=("web",))]
    )
    store.set_hosts(run.id, [HostRecord("h1", stats={"ok": 4})])
    hosts = store.hosts(run.id)
    assert [(h.host, h.reachable) for h in hosts] == [("h1", True), ("h2", False)]
    assert hosts[0].stats == {"ok": 4} and hosts[0].groups == ()
    assert hosts[1].groups == ("web",)


def test_latest_results_take_the_newest_finished_evidence(store: Store) -> None:
    old = _run(store, "old", at=T0)
    new = _run(store, "new", at=T0 + dt.timedelta(days=1))
    live = _run(store, "live", at=T0 + dt.timedelta(days=2))
    assert old.id and new.id and live.id
    store.add_results(old.id, [_result("h1", "FW-001", "fail"), _result("h1", "FW-002", "pass")])
    store.add_results(new.id, [_result("h1", "FW-001", "pass", at=T0 + dt.timedelta(days=1))])
    store.add_results(live.id, [_result("h1", "FW-001", "fail", at=T0 + dt.timedelta(days=2))])
    store.finish_run(old.id, "successful", ended_at=T0)
    store.finish_run(new.id, "successful", ended_at=T0 + dt.timedelta(days=1))
    latest = {(r.host, r.control_id): r for r in store.latest_results()}
    # The still-running run is not evidence yet.
    assert latest[("h1", "FW-001")].status == "pass"
    assert latest[("h1", "FW-002")].run_id == old.id
    as_of = {(r.host, r.control_id): r.status for r in store.latest_results(as_of=T0)}
    assert as_of == {("h1", "FW-001"): "fail", ("h1", "FW-002"): "pass"}


def test_list_runs_newest_first_with_filters(store: Store) -> None:
    for day, (mode, status) in enumerate(
        [("audit", "successful"), ("enforce", "failed"), ("audit", "skipped")]
    ):
        _run(store, f"r{day}", at=T0 + dt.timedelta(days=day), mode=mode, status=status)
    assert [r.ident for r in store.list_runs()] == ["r2", "r1", "r0"]
    assert [r.ident for r in store.list_runs(mode="audit")] == ["r2", "r0"]
    assert [r.ident for r in store.list_runs(status="failed")] == ["r1"]
    assert [r.ident for r in store.list_runs(limit=1)] == ["r2"]


def test_samples_in_a_window(store: Store) -> None:
    store.add_samples(
        [
            SampleRecord(
                "h1",
                T0 + dt.timedelta(minutes=m),
                ok=m != 2,
                metrics={"up": 1.0},
                error="" if m != 2 else "refused",
            )
            for m in range(5)
        ]
    )
    got = store.samples(
        host="h1", since=T0 + dt.timedelta(minutes=1), until=T0 + dt.timedelta(minutes=4)
    )
    assert [s.ok for s in got] == [True, False, True]
    assert got[1].error == "refused"


def test_prune_keeps_the_latest_evidence_of_every_control(store: Store) -> None:
    first = _run(store, "first", at=T0)
    second = _run(store, "second", at=T0 + dt.timedelta(days=10))
    recent = _run(store, "recent", at=T0 + dt.timedelta(days=100))
    assert first.id and second.id and recent.id
    store.add_results(first.id, [_result("h1", "FW-001", "pass"), _result("h1", "ACC-001", "pass")])
    store.add_results(second.id, [_result("h1", "FW-001", "fail", at=T0 + dt.timedelta(days=10))])
    store.add_results(recent.id, [_result("h1", "FW-001", "pass", at=T0 + dt.timedelta(days=100))])
    for run in (first, second, recent):
        assert run.id
        store.finish_run(run.id, "successful", ended_at=run.started_at)
    store.add_samples(
        [SampleRecord("h1", T0, ok=True), SampleRecord("h1", T0 + dt.timedelta(days=99), ok=True)]
    )
    cutoff = T0 + dt.timedelta(days=50)
    assert store.prune(cutoff, dry_run=True)["runs"] == 1
    counts = store.prune(cutoff)
    # "first" still holds the only ACC-001 evidence, so it stays; "second" is superseded.
    assert counts == {"runs": 1, "results": 1, "samples": 1, "kept_runs": 1, "evidence": 0}
    assert {r.ident for r in store.list_runs()} == {"first", "recent"}
    assert len(store.samples()) == 1


def test_export_import_roundtrip_is_idempotent(store: Store, tmp_path: Path) -> None:
    run = _run(store, "r1")
    assert run.id
    full = b'{"checks": [{"evidence": "port 23 open \xe2\x80\xa6"}]}'
    sha = hashlib.sha256(full).hexdigest()
    result = _result("h1", "FW-001", "fail", data={"ports": [23]})
    result = dataclasses.replace(result, evidence_sha256=sha, full=full)
    store.add_results(run.id, [result])
    store.set_hosts(run.id, [HostRecord("h1")])
    store.finish_run(run.id, "failed", ended_at=T0 + dt.timedelta(minutes=3))
    store.add_samples([SampleRecord("h1", T0, ok=False, error="timeout")])
    dump = tmp_path / "export.jsonl"
    counts = store.export(dump)
    assert counts["runs"] == 1 and counts["results"] == 1 and counts["samples"] == 1
    assert counts["evidence"] == 1

    target = Store.open(None, tmp_path / "other")
    try:
        first = target.import_(dump)
        second = target.import_(dump)
        assert first["runs"] == 1 and first["results"] == 1 and first["samples"] == 1
        assert second == dict.fromkeys(second, 0)
        copied = target.get_run("r1")
        assert copied.status == "failed" and copied.ended_at == T0 + dt.timedelta(minutes=3)
        assert copied.id is not None
        assert [r.data for r in target.results(copied.id)] == [{"ports": [23]}]
        assert first["evidence"] == 1 and evidence.load(target, sha) == full
    finally:
        target.close()


def test_import_names_the_bad_line(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "opsrunner-store/1"}\n{"table": "runs"}\n', encoding="utf-8")
    with pytest.raises(StoreError, match=r"bad.jsonl:2"):
        store.import_(bad)


def test_lock_excludes_a_second_holder_and_is_released(store: Store) -> None:
    seen: list[str] = []
    with store.lock("policy+inventory"):

        def other() -> None:
            try:
                with store.lock("policy+inventory"):
                    seen.append("got it")
            except LockBusy:
                seen.append("busy")

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        with store.lock("another key"):
            seen.append("other key free")
    with store.lock("policy+inventory"):
        seen.append("free again")
    assert seen == ["busy", "other key free", "free again"]


def test_migrations_match_the_models(store: Store) -> None:
    # A model changed without a migration would be missing from databases opened later.
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from opsrunner.store.models import Base

    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_run_records_the_roles_allowed_disruptive_steps(store: Store) -> None:
    run = store.begin_run(
        RunRecord(
            ident="enforce-1",
            mode="enforce",
            status="running",
            started_at=T0,
            disruptive=("account_cleanup", "patching"),
        )
    )
    assert run.id is not None
    assert store.get_run(run.id).disruptive == ("account_cleanup", "patching")
    assert _run(store, "audit-1").disruptive == ()


def _store_at_0001_with_a_run(url: str) -> None:
    """A database at revision 0001 holding one finished run, as an older opsrunner left it."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    from opsrunner.store import migrations

    engine = create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(text("DROP SCHEMA public CASCADE"))
                connection.execute(text("CREATE SCHEMA public"))
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "0001")
            connection.execute(
                text(
                    'INSERT INTO runs (ident, mode, job, playbook, status, started_at, "user", '
                    'controller, inventory, "limit", controls, policy_commit, policy_digest, '
                    "late, reason, artifact_dir, stats) VALUES ('old-run', 'enforce', '', '', "
                    "'successful', :at, '', '', '', '', '{}', '', '', :late, '', '', '{}')"
                ),
                {"at": dt.datetime(2026, 11, 1, 8, 0), "late": False},
            )
    finally:
        engine.dispose()


def _opened_past_0002(url: str, tmp_path: Path) -> None:
    with Store.open(url, tmp_path) as store:
        # Upgraded past 0002 (to whatever the newest revision is): the old run allowed no
        # disruptive step, a new one records its roles.
        assert int(store.schema_revision()) >= 2
        assert store.get_run("old-run").disruptive == ()
        new = store.begin_run(
            RunRecord(
                ident="new-run",
                mode="enforce",
                status="running",
                started_at=T0,
                disruptive=("account_cleanup",),
            )
        )
        assert store.get_run(new.id or 0).disruptive == ("account_cleanup",)


def test_migration_0002_keeps_runs_recorded_before_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _store_at_0001_with_a_run(url)
    _opened_past_0002(url, tmp_path)


@pytest.mark.postgres
@pytest.mark.slow
def test_migration_0002_keeps_runs_recorded_before_it_on_postgresql(
    pg_url: str, tmp_path: Path
) -> None:
    from opsrunner.store import normalise_url

    _store_at_0001_with_a_run(normalise_url(pg_url, tmp_path))
    _opened_past_0002(pg_url, tmp_path)


def test_last_known_skips_unknown_and_notchecked_and_names_the_run(store: Store) -> None:
    first = _run(store, "first", at=T0)
    second = _run(store, "second", at=T0 + dt.timedelta(days=1))
    live = _run(store, "live", at=T0 + dt.timedelta(days=2))
    assert first.id and second.id and live.id
    day = dt.timedelta(days=1)
    store.add_results(
        first.id,
        [
            _result("h1", "FW-001", "notapplicable", reason="no nftables"),
            _result("h1", "FW-002", "pass"),
            _result("h2", "FW-001", "fail"),
        ],
    )
    store.add_results(
        second.id,
        [
            _result("h1", "FW-001", "unknown", at=T0 + day),
            _result("h1", "FW-002", "notchecked", at=T0 + day),
        ],
    )
    store.add_results(live.id, [_result("h1", "FW-001", "pass", at=T0 + 2 * day)])
    store.finish_run(first.id, "successful", ended_at=T0)
    store.finish_run(second.id, "failed", ended_at=T0 + day)
    known = store.last_known(["h1"])
    assert set(known) == {("h1", "FW-001"), ("h1", "FW-002")}
    assert known[("h1", "FW-001")].status == "notapplicable"
    assert known[("h1", "FW-001")].run_ident == "first"
    assert known[("h1", "FW-001")].reason == "no nftables"
    assert known[("h1", "FW-001")].checked_at == T0
    assert known[("h1", "FW-002")].status == "pass"
    assert store.last_known(["h1"], before=T0) == {}
    assert store.last_known([]) == {}
