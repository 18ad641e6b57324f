"""The evidence ledger: one chained entry per finished run, checked by `verify`."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from opsrunner.cli import app
from opsrunner.runner import evidence
from opsrunner.store import HostRecord, ResultRecord, RunRecord, Store

T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)


def record_run(store: Store, ident: str, *, at: dt.datetime = T0, evidence_sha: str = "") -> int:
    """A finished audit of two hosts x two controls, as the runner records one."""
    run = store.begin_run(
        RunRecord(
            ident=ident, mode="audit", status="running", started_at=at, policy_commit="c0ffee"
        )
    )
    assert run.id is not None
    store.add_results(
        run.id,
        [
            ResultRecord(
                host=h,
                control_id=c,
                status="pass",
                checked_at=at,
                evidence=f"{ident} {h} {c} evidence",
                evidence_sha256=evidence_sha,
            )
            for h in ("host1", "host2")
            for c in ("FW-001", "FW-002")
        ],
    )
    store.set_hosts(run.id, [HostRecord("host1"), HostRecord("host2")])
    store.finish_run(run.id, "successful", ended_at=at + dt.timedelta(minutes=5), rc=0)
    return run.id


def test_each_finished_run_is_chained_and_verifies(store: Store) -> None:
    record_run(store, "r1")
    record_run(store, "r2", at=T0 + dt.timedelta(hours=1))
    # A run still running has no entry yet; a skipped run is recorded as it is stored.
    store.begin_run(RunRecord(ident="r3", mode="audit", status="running", started_at=T0))
    store.begin_run(RunRecord(ident="r4", mode="audit", status="skipped", started_at=T0))
    report = store.verify()
    assert report.ok, report.problems
    assert (report.entries, report.runs_checked) == (3, 3)
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT seq, prev, sha256 FROM ledger ORDER BY seq")).all()
    assert rows[0].prev == "0" * 64
    assert [r.prev for r in rows[1:]] == [r.sha256 for r in rows[:-1]]
    assert report.head == rows[-1].sha256


def test_ledger_refuses_update_and_delete(store: Store) -> None:
    record_run(store, "r1")
    for statement in ("UPDATE ledger SET kind = 'x'", "DELETE FROM ledger"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as connection:
            connection.execute(text(statement))


def test_a_changed_result_is_named_by_its_entry(store: Store) -> None:
    record_run(store, "r1")
    record_run(store, "r2", at=T0 + dt.timedelta(hours=1))
    with store.engine.begin() as connection:
        connection.execute(
            text("UPDATE results SET status = 'fail' WHERE host = 'host2' AND run_id = 2")
        )
    report = store.verify()
    assert [(p.seq, p.run) for p in report.problems] == [(2, "r2")]
    assert "differ from the ledger" in str(report.problems[0])


def test_prune_is_accounted_for_and_a_deleted_run_is_not(tmp_path: Path) -> None:
    with Store.open(None, tmp_path) as store:
        record_run(store, "old", at=T0 - dt.timedelta(days=900))
        record_run(store, "new")  # newest evidence of every host x control: kept
        record_run(store, "gone", at=T0 - dt.timedelta(days=800))
        with store.engine.begin() as connection:
            connection.execute(
                text("UPDATE results SET checked_at = :t WHERE run_id = 3"),
                {"t": (T0 - dt.timedelta(days=10)).replace(tzinfo=None)},
            )
        assert store.verify().problems[0].run == "gone"  # that UPDATE is caught too
    with Store.open(None, tmp_path) as store:
        counts = store.prune(T0 - dt.timedelta(days=850))
        assert counts["runs"] == 1
        report = store.verify()
        assert [p.run for p in report.problems] == ["gone"]  # only the altered run
        with store.engine.begin() as connection:
            connection.execute(text("DELETE FROM results WHERE run_id = 3"))
            connection.execute(text("DELETE FROM runs WHERE id = 3"))
        problems = store.verify().problems
        assert [(p.seq, p.run) for p in problems] == [(3, "gone")]
        assert "deleted from the store" in problems[0].message


def test_concurrent_runs_never_fork_the_chain(tmp_path: Path) -> None:
    with Store.open(None, tmp_path) as store:
        errors: list[BaseException] = []

        def one(n: int) -> None:
            try:
                record_run(store, f"c{n}", at=T0 + dt.timedelta(minutes=n))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        report = store.verify()
        assert report.ok and report.entries == 8 and report.runs_checked == 8


def test_runs_before_the_ledger_are_adopted_on_open(tmp_path: Path) -> None:
    with Store.open(None, tmp_path) as store:
        record_run(store, "r1")
        with store.engine.begin() as connection:  # a store as it was before migration 0005
            connection.execute(text("DROP TRIGGER ledger_no_delete"))
            connection.execute(text("DELETE FROM ledger"))
        assert not store.verify().ok
    with Store.open(None, tmp_path) as store:
        report = store.verify()
        assert report.ok and report.entries == 1


def _keys(tmp_path: Path) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private, public = tmp_path / "ledger.key", tmp_path / "ledger.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def test_signed_checkpoint_catches_a_rewritten_ledger(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Store.open(None, state) as store:
        record_run(store, "r1")
        record_run(store, "r2", at=T0 + dt.timedelta(hours=1))
    private, public = _keys(tmp_path)
    point = tmp_path / "checkpoint.json"
    base = ["verify", "--state-dir", str(state)]
    signed = CliRunner().invoke(
        app, [*base, "--sign-key", str(private), "--checkpoint", str(point)]
    )
    assert signed.exit_code == 0, signed.output
    assert "signed entry 2" in signed.output
    assert oct(point.stat().st_mode & 0o777) == "0o600"
    checked = CliRunner().invoke(
        app, [*base, "--checkpoint", str(point), "--public-key", str(public)]
    )
    assert checked.exit_code == 0, checked.output
    assert "entry 2 matches, signature good" in checked.output
    # Someone with write access rewrites the whole chain: every entry hashes again, so the
    # chain alone holds, but the signed head no longer does.
    with Store.open(None, state) as store, store.engine.begin() as connection:
        connection.execute(text("DROP TRIGGER ledger_no_delete"))
        connection.execute(text("DELETE FROM ledger"))
    rewritten = CliRunner().invoke(
        app, [*base, "--checkpoint", str(point), "--public-key", str(public)]
    )
    assert rewritten.exit_code == 1
    assert "ledger entry 2: hash" in rewritten.output and "rewritten" in rewritten.output
    # A forged checkpoint (the new head, no new signature) fails its signature.
    point.write_text(point.read_text().replace('"seq":2', '"seq":1'))
    forged = CliRunner().invoke(
        app, [*base, "--checkpoint", str(point), "--public-key", str(public)]
    )
    assert forged.exit_code == 1 and "signature does not match" in forged.output


def test_an_altered_evidence_file_is_named(tmp_path: Path) -> None:
    sha = evidence.save(tmp_path, {"stdout": "nft list ruleset: policy drop"})
    with Store.open(None, tmp_path) as store:
        record_run(store, "r1", evidence_sha=sha)
    path = evidence.evidence_path(tmp_path, sha)
    path.write_bytes(path.read_bytes().replace(b"drop", b"dros"))
    result = CliRunner().invoke(app, ["verify", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert f"evidence file {path}" in result.output


def test_altered_stored_evidence_is_named_and_pruned_evidence_goes(tmp_path: Path) -> None:
    # A run's full reports are packed in the store's evidence table (0007): verify re-hashes
    # them, and an evidence report no result points to any more is pruned with its run.
    body = b'{"checks":[{"evidence":"policy drop"}]}'
    sha = hashlib.sha256(body).hexdigest()
    with Store.open(None, tmp_path) as store:
        run = store.begin_run(RunRecord(ident="r1", mode="audit", status="running", started_at=T0))
        assert run.id is not None
        result = ResultRecord("host1", "FW-001", "pass", T0, evidence_sha256=sha, full=body)
        store.add_results(run.id, [result])
        store.add_results(run.id, [result])  # the same batch twice: one row
        store.finish_run(run.id, "successful", ended_at=T0, rc=0)
        assert evidence.load(store, sha) == body
        assert not (tmp_path / "evidence").exists()
    good = CliRunner().invoke(app, ["verify", "--state-dir", str(tmp_path)])
    assert good.exit_code == 0 and "1 evidence reports checked" in good.output, good.output
    with Store.open(None, tmp_path) as store, store.session() as session:
        session.execute(
            text("UPDATE evidence SET body = :b"), {"b": body.replace(b"drop", b"dros")}
        )
    bad = CliRunner().invoke(app, ["verify", "--state-dir", str(tmp_path)])
    assert bad.exit_code == 1 and f"stored evidence {sha}" in bad.output, bad.output
    with Store.open(None, tmp_path) as store:
        counts = store.prune(T0 + dt.timedelta(days=1))
        # The run holds the newest result of host1 x FW-001: it stays, and so does its report.
        assert (counts["runs"], counts["evidence"]) == (0, 0)
        with store.session() as session:
            session.execute(text("DELETE FROM results"))
        assert store.prune(T0 + dt.timedelta(days=1))["evidence"] == 1
        assert evidence.load(store, sha) is None
