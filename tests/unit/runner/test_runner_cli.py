"""The runner's commands on a store filled by hand: runs, score gates and explain, store upkeep."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsrunner.cli import app
from opsrunner.policy import load_policy
from opsrunner.scoring import run_scores
from opsrunner.store import HostRecord, ResultRecord, RunRecord, Store

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def filled(tmp_path: Path) -> dict[str, object]:
    policy = load_policy(ROOT / "policy")
    fw = [c.id for c in policy.controls if c.role == "firewall"]
    end = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    with Store.open(None, tmp_path) as store:
        run = store.begin_run(
            RunRecord(
                ident="20261128T000000Z-audit-cafe0001",
                mode="audit",
                status="running",
                started_at=end - dt.timedelta(minutes=2),
                controls=tuple(fw),
            )
        )
        assert run.id is not None
        results = [ResultRecord("host1", cid, "pass", end, evidence=f"{cid} ok") for cid in fw]
        results[0] = ResultRecord(
            "host1", fw[0], "fail", end, reason="tcp/8080 open", evidence="tcp/8080 from any"
        )
        store.add_results(run.id, results)
        store.set_hosts(run.id, [HostRecord("host1", groups=("all", "critical"))])
        run = store.finish_run(run.id, "successful", ended_at=end)
        scores = run_scores(policy, run, store.results(run.id), store.hosts(run.id), model="flat")
    args = ["--store", str(tmp_path / "opsrunner.db"), "--state-dir", str(tmp_path)]
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    critical:\n      hosts:\n        host1:\n")
    return {
        "args": args,
        "run": run,
        "scores": scores,
        "fw": fw,
        "tmp": tmp_path,
        "inventory": ["--inventory", str(inventory)],
    }


def _invoke(*argv: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(argv))
    return result.exit_code, result.stdout, result.stderr


def test_runs_list_and_show(filled: dict[str, object]) -> None:
    args = filled["args"]
    assert isinstance(args, list)
    code, out, _ = _invoke("runs", "list", *args)
    assert code == 0 and "20261128T000000Z-audit-cafe0001" in out and "successful" in out
    code, out, _ = _invoke("runs", "show", "20261128T000000Z-audit-cafe", "--json", *args)
    data = json.loads(out)
    assert code == 0 and data["run"]["status"] == "successful"
    assert {r["status"] for r in data["results"]} == {"pass", "fail"}
    code, _, err = _invoke("runs", "show", "nope", *args)
    assert code == 2 and "not found" in err


def test_score_figures_and_gates(filled: dict[str, object]) -> None:
    args = filled["args"]
    assert isinstance(args, list)
    run = filled["run"]
    assert isinstance(run, RunRecord)
    expected = filled["scores"].overall.get("effective", "all").percent  # type: ignore[attr-defined]
    code, out, _ = _invoke("score", "--run", run.ident, "--model", "flat", "--json", *args)
    assert code == 0
    assert json.loads(out)["overall"]["effective/all"]["percent"] == pytest.approx(expected)
    code, _, err = _invoke(
        "score", "--run", run.ident, "--model", "flat", "--fail-under", "100", *args
    )
    assert code == 1 and "under 100%" in err
    code, _, _ = _invoke("score", "--run", run.ident, "--model", "flat", "--fail-under", "1", *args)
    assert code == 0
    severity = load_policy(ROOT / "policy").control(filled["fw"][0]).severity  # type: ignore[index]
    code, _, err = _invoke("score", "--run", run.ident, "--max-failed", f"{severity}=0", *args)
    assert code == 1 and f"{severity} results not passing" in err
    code, _, err = _invoke("score", "--max-failed", "severe=1", *args)
    assert code == 2 and "SEVERITY=N" in err


def test_score_explain_and_latest(filled: dict[str, object]) -> None:
    args = filled["args"]
    assert isinstance(args, list)
    fw = filled["fw"]
    assert isinstance(fw, list)
    inventory = filled["inventory"]
    assert isinstance(inventory, list)
    code, out, _ = _invoke("score", "--explain", fw[0], "--model", "flat", *args, *inventory)
    assert code == 0 and "tcp/8080 open" in out and "raw=fail" in out
    # The formula with its numbers: one control on one host, failing.
    assert "Σ weight of passing / Σ weight of counted results = 0 / " in out
    code, out, _ = _invoke("score", "--explain", "host1", *args, *inventory)
    assert code == 0 and out.startswith("host host1")
    code, _, err = _invoke("score", "--explain", "ZZZ-999", *args, *inventory)
    assert code == 2 and "ZZZ-999" in err


def test_score_latest_scores_the_inventory_and_lists_retired_hosts(
    filled: dict[str, object],
) -> None:
    args, tmp = filled["args"], filled["tmp"]
    assert isinstance(args, list) and isinstance(tmp, Path)
    inventory = tmp / "other.yml"
    inventory.write_text("all:\n  children:\n    critical:\n      hosts:\n        host2:\n")
    code, out, _ = _invoke("score", "--json", "--inventory", str(inventory), *args)
    data = json.loads(out)
    assert code == 0 and data["retired"] == ["host1"]
    assert list(data["hosts"]) == ["(organisation)", "host2"]
    # host2 has no evidence at all: every automated control counts and none passes.
    assert data["overall"]["raw/automated"]["percent"] == 0.0
    code, _, err = _invoke("score", "--inventory", str(tmp / "absent.yml"), *args)
    assert code == 2 and "absent.yml: inventory not found" in err


def test_score_at_a_later_time_lists_what_goes_stale(filled: dict[str, object]) -> None:
    args, inventory, fw = filled["args"], filled["inventory"], filled["fw"]
    assert isinstance(args, list) and isinstance(inventory, list) and isinstance(fw, list)
    code, out, _ = _invoke("score", "--at", "+40d", *args, *inventory)
    assert code == 0
    # Every firewall control is checked at least monthly: in 40 days all are stale.
    assert f"{len(fw)} current result(s) will be stale by" in out
    code, out, _ = _invoke("score", "--at", "+40d", "--json", *args, *inventory)
    assert {e["control"] for e in json.loads(out)["stale_by"]} == set(fw)
    code, _, err = _invoke("score", "--at", "friday", *args, *inventory)
    assert code == 2 and "ISO 8601" in err
    code, _, err = _invoke("score", "--at", "+1d", "--run", "x", *args)
    assert code == 2 and "--at" in err


def test_a_partial_run_says_so_above_its_figures(filled: dict[str, object]) -> None:
    args, run, fw = filled["args"], filled["run"], filled["fw"]
    assert isinstance(args, list) and isinstance(run, RunRecord) and isinstance(fw, list)
    code, out, _ = _invoke("score", "--run", run.ident, *args)
    total = sum(1 for c in load_policy(ROOT / "policy").controls if c.kind == "automated")
    first = out.splitlines()[0]
    assert code == 0
    assert first.startswith(f"PARTIAL RUN: {len(fw)} OF {total} AUTOMATED CONTROLS")


def test_score_under_another_policy_revision(filled: dict[str, object]) -> None:
    args = filled["args"]
    assert isinstance(args, list)
    run = filled["run"]
    assert isinstance(run, RunRecord)
    code, out, err = _invoke("score", "--run", run.ident, "--policy-rev", "HEAD", "--json", *args)
    assert code == 0, err
    assert json.loads(out)["run"] == run.ident
    code, _, err = _invoke("score", "--run", run.ident, "--policy-rev", "no-such-rev", *args)
    assert code == 2 and "no-such-rev" in err


def test_store_export_import_prune(filled: dict[str, object]) -> None:
    args = filled["args"]
    tmp = filled["tmp"]
    assert isinstance(args, list) and isinstance(tmp, Path)
    dump = tmp / "dump.jsonl"
    code, out, _ = _invoke("store", "export", str(dump), *args)
    assert code == 0 and "runs 1" in out
    other = ["--store", str(tmp / "other.db"), "--state-dir", str(tmp / "o")]
    assert _invoke("store", "import", str(dump), *other)[0] == 0
    code, out, _ = _invoke("store", "import", str(dump), *other)
    assert code == 0 and "runs 0" in out
    code, out, _ = _invoke("store", "prune", "--older-than", "1s", "--dry-run", *args)
    # The only run holds the latest evidence: pruning must keep it.
    assert code == 0 and "would delete 0 runs" in out and "kept 1" in out
    assert _invoke("store", "prune", "--older-than", "soon", *args)[0] == 2
    code, out, _ = _invoke("store", "info", *args)
    head = max(p.name[:4] for p in (ROOT / "opsrunner/store/migrations/versions").glob("0*.py"))
    assert code == 0 and f"schema {head}" in out and "runs 1" in out


def test_schedule_export(tmp_path: Path) -> None:
    code, out, _ = _invoke("schedule", "export", "--systemd", str(tmp_path / "units"))
    assert code == 0
    timers = sorted(p.name for p in (tmp_path / "units").glob("*.timer"))
    assert "opsrunner-audit-daily.timer" in timers
    code, out, _ = _invoke("schedule", "export", "--cron")
    assert code == 0 and "--schedule-job audit-daily" in out
    assert _invoke("schedule", "export")[0] == 2


def test_availability_from_samples(filled: dict[str, object]) -> None:
    from opsrunner.store import SampleRecord

    args = filled["args"]
    tmp = filled["tmp"]
    assert isinstance(args, list) and isinstance(tmp, Path)
    now = dt.datetime.now(dt.UTC)
    with Store.open(None, tmp) as store:
        # An hour at one scrape a minute (the config below): 60 expected, 4 answered.
        store.add_samples(
            [
                SampleRecord("host1", now - dt.timedelta(minutes=m), ok=m % 2 == 0)
                for m in range(1, 9)
            ]
        )
    cfg = tmp / "opsrunner.yml"
    cfg.write_text("scrape_interval: 60\n", encoding="utf-8")
    code, out, _ = _invoke("score", "--availability", "10m", "--json", "--config", str(cfg), *args)
    assert code == 0
    assert json.loads(out)["host1"] == {"ok": 4, "expected": 10, "percent": 40.0}
    code, _, err = _invoke(
        "score", "--availability", "10m", "--fail-under", "99.9", "--config", str(cfg), *args
    )
    assert code == 1 and "host1 availability under 99.9%" in err


def test_emergency_enforce_passes_the_override_and_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    # The package re-exports the function `run`, which hides the module of the same name.
    run_module = importlib.import_module("opsrunner.runner.run")
    seen: dict[str, object] = {}

    def fake_run(mode: str, inventory: object, **kwargs: object) -> RunRecord:
        seen.update(kwargs, mode=mode)
        return RunRecord(
            ident="20261128T000000Z-enforce-cafe0002",
            mode=mode,
            status="successful",
            started_at=dt.datetime.now(dt.UTC),
            job=str(kwargs.get("job") or ""),
        )

    monkeypatch.setattr(run_module, "run", fake_run)
    args = ["--state-dir", str(tmp_path), "--no-summary"]
    result = CliRunner().invoke(app, ["enforce", *args, "--emergency", "CVE-2026-41001 exploited"])
    assert result.exit_code == 0, result.output
    assert seen["mode"] == "enforce" and seen["job"] == "emergency"
    assert seen["extravars"] == {
        "opsrunner_notice_records": [],  # the store's notices on record (none here)
        "patching_emergency": True,
        "patching_emergency_reason": "CVE-2026-41001 exploited",
    }
    refused = CliRunner().invoke(app, ["audit", *args, "--emergency", "x"])
    assert refused.exit_code != 0 and "enforce only" in refused.output
    blank = CliRunner().invoke(app, ["enforce", *args, "--emergency", " "])
    assert blank.exit_code != 0 and "needs a reason" in blank.output
