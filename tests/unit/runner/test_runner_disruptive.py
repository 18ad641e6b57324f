"""`enforce --allow-disruptive ROLE[,ROLE]`: validated, passed to the roles, recorded on the run."""

from __future__ import annotations

import datetime as dt
import importlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsrunner.cli import app
from opsrunner.runner.run import RunError, check_disruptive, disruptive_roles
from opsrunner.store import RunRecord, Store


def test_roles_with_a_disruptive_switch_are_known() -> None:
    roles = disruptive_roles()
    assert {"account_cleanup", "patching", "backup"} <= set(roles)
    # The firewall role has no disruptive steps: naming it is a mistake, refused.
    assert "firewall" not in roles


def test_only_enforce_and_only_known_roles() -> None:
    assert check_disruptive("enforce", ["account_cleanup", " patching", "account_cleanup"]) == (
        "account_cleanup",
        "patching",
    )
    assert check_disruptive("audit", None) == ()
    with pytest.raises(RunError, match="enforce only"):
        check_disruptive("audit", ["account_cleanup"])
    with pytest.raises(RunError, match="enforce only"):
        check_disruptive("operate", ["backup"])
    with pytest.raises(RunError, match="--allow-disruptive acount_cleanup: no role") as caught:
        check_disruptive("enforce", ["acount_cleanup"])
    assert "account_cleanup" in str(caught.value)


def test_the_cli_passes_the_roles_and_refuses_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The package re-exports the function `run`, which hides the module of the same name.
    run_module = importlib.import_module("opsrunner.runner.run")
    seen: dict[str, object] = {}
    real_run = run_module.run

    def fake_run(mode: str, inventory: object, **kwargs: object) -> RunRecord:
        seen.update(kwargs, mode=mode)
        return RunRecord(
            ident="20261128T000000Z-enforce-cafe0003",
            mode=mode,
            status="successful",
            started_at=dt.datetime.now(dt.UTC),
        )

    monkeypatch.setattr(run_module, "run", fake_run)
    args = ["--state-dir", str(tmp_path), "--no-summary"]
    ok = CliRunner().invoke(
        app,
        ["enforce", *args, "--allow-disruptive", "account_cleanup,patching"],
    )
    assert ok.exit_code == 0, ok.output
    assert seen["mode"] == "enforce" and seen["allow_disruptive"] == ["account_cleanup", "patching"]
    refused = CliRunner().invoke(app, ["audit", *args, "--allow-disruptive", "account_cleanup"])
    assert refused.exit_code == 2 and "--allow-disruptive goes with enforce only" in refused.output
    # A misspelt role is refused before anything runs or is recorded.
    monkeypatch.setattr(run_module, "run", real_run)
    bad = CliRunner().invoke(app, ["enforce", *args, "--allow-disruptive", "acount_cleanup"])
    assert bad.exit_code == 2 and "--allow-disruptive acount_cleanup: no role" in bad.output
    with Store.open(None, tmp_path) as store:
        assert store.list_runs() == []


def test_runs_show_names_the_roles(tmp_path: Path) -> None:
    with Store.open(None, tmp_path) as store:
        run = store.begin_run(
            RunRecord(
                ident="20261128T000000Z-enforce-cafe0004",
                mode="enforce",
                status="running",
                started_at=dt.datetime.now(dt.UTC),
                disruptive=("account_cleanup",),
            )
        )
        assert run.id is not None
        store.finish_run(run.id, "successful", ended_at=dt.datetime.now(dt.UTC))
    args = ["--store", str(tmp_path / "opsrunner.db"), "--state-dir", str(tmp_path)]
    shown = CliRunner().invoke(app, ["runs", "show", "20261128T000000Z-enforce-cafe0004", *args])
    assert shown.exit_code == 0 and "disruptive: account_cleanup" in shown.output
    as_json = CliRunner().invoke(
        app, ["runs", "show", "20261128T000000Z-enforce-cafe0004", "--json", *args]
    )
    assert '"disruptive": [\n      "account_cleanup"\n    ]' in as_json.output
