"""`opsrunner notice|alert|change`: real sends to loopback receivers, bad input refused with a
clear message and nothing written; notifications.yml cross-checked against the roster."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsrunner.cli import app
from opsrunner.notify import notices
from opsrunner.notify.daemon import Notifier
from opsrunner.policy import PolicyError, load_policy
from opsrunner.store import Store
from tests.unit.notify.conftest import HttpReceiver, SmtpSink
from tests.unit.notify.helpers import record_run


def _inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "hosts.yml"
    inv.write_text(
        "all:\n  children:\n    critical:\n      hosts:\n        host1: {}\n"
        "    standard:\n      hosts:\n        host2: {}\n"
    )
    return inv


def _args(tmp_path: Path, policy_dir: Path | None = None) -> list[str]:
    out = ["--store", f"sqlite:///{tmp_path / 'cli.db'}"]
    return [*out, "--policy", str(policy_dir)] if policy_dir else out


def test_notice_send_list_show(
    tmp_path: Path, policy_dir: Path, smtp_sink: SmtpSink, http_receiver: HttpReceiver
) -> None:
    runner = CliRunner()
    sent = runner.invoke(
        app,
        [
            "notice",
            "send",
            "critical-weekly",
            "-i",
            str(_inventory(tmp_path)),
            *_args(tmp_path, policy_dir),
        ],
    )
    assert sent.exit_code == 0, sent.output
    assert "hook: hook: sent" in sent.output and "finance@biz.example.com: sent" in sent.output
    assert len(smtp_sink.received) == 3 and len(http_receiver.requests) == 1
    listed = runner.invoke(app, ["notice", "list", *_args(tmp_path)])
    assert "critical-weekly" in listed.output and "4/4 delivered" in listed.output
    ident = listed.output.split()[0]
    shown = runner.invoke(app, ["notice", "show", ident, *_args(tmp_path)])
    assert shown.exit_code == 0 and "Hosts:    host1" in shown.output


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["notice", "send", "nope"], "no maintenance window 'nope'"),
        (["notice", "send", "critical-weekly", "--start", "tomorrow"], "not an ISO 8601 time"),
        (["notice", "send", "critical-weekly", "--start", "2026-11-29T02:00"], "give the offset"),
        (["notice", "show", "NTC-x"], "no notice 'NTC-x'"),
        (["alert", "ack", "abcdef", "--by", "nobody"], "'nobody' is not on the roster"),
        (["alert", "ack", "abcdef", "--by", "alice"], "no alert with fingerprint 'abcdef'"),
        (["alert", "list", "--status", "open"], "choose firing or resolved"),
        (
            [
                "change",
                "plan",
                "--title",
                "t",
                "--what",
                "w",
                "--why",
                "y",
                "--hosts",
                "h",
                "--rollback",
                "r",
                "--window",
                "nope",
            ],
            "no maintenance window 'nope'",
        ),
        (["change", "start", "CHG-2026-001"], "no change 'CHG-2026-001'"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    tmp_path: Path, policy_dir: Path, smtp_sink: SmtpSink, argv: list[str], message: str
) -> None:
    takes_policy = argv[:2] in (["notice", "send"], ["alert", "ack"], ["change", "plan"])
    result = CliRunner().invoke(
        app, [*argv, *_args(tmp_path, policy_dir if takes_policy else None)]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    with Store.open(f"sqlite:///{tmp_path / 'cli.db'}", tmp_path) as store:
        assert notices.list_notices(store) == []
        assert notices.outbox.messages(store) == []
    assert smtp_sink.received == []


def test_change_commands_end_to_end(tmp_path: Path, policy_dir: Path) -> None:
    runner = CliRunner()
    base = _args(tmp_path)
    planned = runner.invoke(
        app,
        [
            "change",
            "plan",
            "--title",
            "Patch host1",
            "--what",
            "apt upgrade",
            "--why",
            "PAT-001",
            "--hosts",
            "host1",
            "--rollback",
            "downgrade",
            *_args(tmp_path, policy_dir),
        ],
    )
    assert planned.exit_code == 0 and "CHG-" in planned.output, planned.output
    ident = planned.output.split()[0]
    refused = runner.invoke(app, ["change", "start", ident, *base])
    assert refused.exit_code == 2 and "cannot start" in refused.output
    for kind in ("functional", "performance", "compatibility"):
        ok = runner.invoke(
            app,
            ["change", "test", ident, "--kind", kind, "--result", "pass", "--ref", "ci 7", *base],
        )
        assert ok.exit_code == 0, ok.output
    assert runner.invoke(app, ["change", "start", ident, *base]).exit_code == 0
    closed = runner.invoke(
        app,
        [
            "change",
            "evaluate",
            ident,
            "--outcome",
            "successful",
            "--effect",
            "patched",
            "--lessons",
            "none needed",
            *base,
        ],
    )
    assert closed.exit_code == 0 and "evaluated: successful" in closed.output
    listed = runner.invoke(app, ["change", "list", *base])
    assert f"{ident}  evaluated successful" in listed.output


def test_daemon_notifier_sends_the_due_notice_and_alerts(
    tmp_path: Path, policy_dir: Path, smtp_sink: SmtpSink, http_receiver: HttpReceiver
) -> None:
    policy = load_policy(policy_dir)
    due = dt.datetime(2026, 11, 25, 16, 0, tzinfo=dt.UTC)  # 72 h + 2 h lead before the opening
    with Store.open(None, tmp_path / "state") as store:
        record_run(store, due - dt.timedelta(hours=1), {("host1", "PAT-001"): "fail"})
        done = Notifier(policy, store, _inventory(tmp_path))(due)
        (sent,) = notices.list_notices(store)
        assert sent.status == "sent" and sent.in_time and sent.hosts == ["host1"]
        assert len(done.raised) == 1
        assert (store.state_dir / notices.VARS_FILE).is_file()
    subjects = [str(m.message["Subject"]) for m in smtp_sink.received]
    assert sum("Maintenance notice" in s for s in subjects) == 3
    assert sum("FIRING high" in s for s in subjects) == 1


def test_notifications_yml_names_only_roster_people_and_known_channels(
    policy_dir: Path,
) -> None:
    path = policy_dir / "notifications.yml"
    text = path.read_text()
    path.write_text(
        text.replace("people: [dave]", "people: [nobody]").replace(
            "channels: [hook]", "channels: [pager]"
        )
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(policy_dir)
    problems = [str(p) for p in caught.value.problems]
    assert any(
        "departments.finance.people[0]: 'nobody' is not on the roster" in p for p in problems
    )
    assert any("departments.ops.channels[0]: no channel 'pager'" in p for p in problems)
    assert all("notifications.yml:" in p for p in problems)


def test_daemon_passes_the_notices_on_record_to_audit_and_enforce_jobs(
    tmp_path: Path, policy_dir: Path, smtp_sink: SmtpSink, http_receiver: HttpReceiver
) -> None:
    from typing import Any

    from opsrunner.config import Settings
    from opsrunner.schedule import Daemon, Job
    from opsrunner.store import RunRecord

    seen: dict[str, Any] = {}

    def runner(mode: str, inventory: Path, **kwargs: Any) -> RunRecord:
        seen[mode] = kwargs.get("extravars")
        return kwargs["store"].begin_run(
            RunRecord(
                ident=f"r-{mode}",
                mode=mode,
                job=kwargs["job"],
                status="successful",
                started_at=kwargs["scheduled_for"],
            )
        )

    now = dt.datetime(2026, 11, 28, 18, 5, tzinfo=dt.UTC)
    jobs = [
        Job("enforce-critical-weekly", "enforce", "0 18 * * SAT", limit="critical"),
        Job("audit-daily", "audit", "0 3 * * *"),
        Job("operate-backup", "operate", "0 12 * * *", operate_job="backup"),
    ]
    with Store.open(None, tmp_path / "state") as store:
        notices.send_notice(
            load_policy(policy_dir),
            store,
            "critical-weekly",
            {"host1": ["critical"]},
            dt.datetime(2026, 11, 24, tzinfo=dt.UTC),
        )
        Daemon(Settings(), store, jobs, tmp_path, runner=runner, clock=lambda: now).run_due()
    (record,) = seen["enforce"]["opsrunner_notice_records"]
    assert (
        record["window"] == "critical-weekly" and record["window_start"] == "2026-11-28T18:00:00Z"
    )
    assert seen["audit"] == seen["enforce"]
    assert seen["operate"] is None
