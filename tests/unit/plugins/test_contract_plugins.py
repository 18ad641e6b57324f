"""The result-contract action and the results callback, unit by unit (real runs: integration)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

ROOT = Path(__file__).resolve().parents[3]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


action_mod = _load("opsrunner_test_action_control", ROOT / "plugins" / "action" / "control.py")
callback_mod = _load(
    "opsrunner_test_callback", ROOT / "plugins" / "callback" / "opsrunner_results.py"
)


def _act(args: dict[str, Any], *, check: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    action = object.__new__(action_mod.ActionModule)
    action._task = SimpleNamespace(args=args, check_mode=check)
    result: dict[str, Any] = action.run(task_vars={"ansible_check_mode": check})
    assert result["changed"] is False and result["failed"] is False
    return result["opsrunner_control"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("args", "check", "status", "remediated"),
    [
        ({"passed": True}, True, "pass", False),
        ({"passed": "no"}, False, "fail", False),
        ({"drift": True}, True, "fail", False),  # audit: drift means not compliant
        ({"drift": True}, False, "pass", True),  # enforce: the task fixed it
        ({"drift": False}, True, "pass", False),
        ({"passed": True, "error": "probe broke"}, True, "error", False),  # error wins
        ({"passed": False, "applicable": False, "reason": "no wifi"}, True, "notapplicable", False),
        ({"error": "only an error"}, False, "error", False),
        ({"applicable": "false", "reason": "n/a"}, False, "notapplicable", False),
    ],
)
def test_action_status(
    args: dict[str, Any],
    check: bool,
    status: str,
    remediated: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = _act({"id": "FW-001", **args}, check=check, monkeypatch=monkeypatch)
    assert (out["status"], out["remediated"]) == (status, remediated)
    assert out["mode"] == ("audit" if check else "enforce")
    if status == "fail":
        assert out["reason"]


def test_an_error_reports_why_the_check_broke_not_the_fail_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = _act(
        {"id": "VUL-003", "passed": False, "error": "feed unreachable", "reason": "no scan"},
        check=True,
        monkeypatch=monkeypatch,
    )
    assert (out["status"], out["reason"]) == ("error", "feed unreachable")


def test_action_trims_evidence_and_requires_a_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _act(
        {"id": "X-001", "passed": True, "evidence": "e" * 2500, "data": {"k": 1}},
        check=True,
        monkeypatch=monkeypatch,
    )
    assert (
        len(out["evidence"]) == 2000
        and out["evidence_truncated"] is True
        and out["data"] == {"k": 1}
    )
    with pytest.raises(AnsibleActionFail, match="exactly one of 'passed' or 'drift'"):
        _act({"id": "X-001"}, check=True, monkeypatch=monkeypatch)
    with pytest.raises(AnsibleActionFail, match="exactly one"):
        _act({"id": "X-001", "passed": True, "drift": True}, check=True, monkeypatch=monkeypatch)
    with pytest.raises(AnsibleActionFail, match="'id' is required"):
        _act({"passed": True}, check=True, monkeypatch=monkeypatch)
    with pytest.raises(AnsibleActionFail, match="must be a boolean"):
        _act({"id": "X-001", "passed": "maybe"}, check=True, monkeypatch=monkeypatch)


class _Task:
    def __init__(self, name: str, role: str = "") -> None:
        self.name = name
        self._role = role

    def get_name(self) -> str:
        return f"{self._role} : {self.name}" if self._role else self.name


def _result(host: str, task: str, res: dict[str, Any], role: str = "myrole") -> Any:
    return SimpleNamespace(
        _host=SimpleNamespace(get_name=lambda: host), _task=_Task(task, role), _result=res
    )


def _report(cid: str, status: str, evidence: str = "", reason: str = "") -> dict[str, Any]:
    return {
        "opsrunner_control": {
            "id": cid,
            "status": status,
            "evidence": evidence,
            "data": {},
            "reason": reason,
            "remediated": False,
        }
    }


def _callback() -> Any:
    cb = callback_mod.CallbackModule()
    return cb


def test_callback_worst_status_wins_and_keeps_every_check() -> None:
    cb = _callback()
    cb.v2_runner_on_ok(_result("h1", "FW-001 | Report a", _report("FW-001", "pass", "a")))
    cb.v2_runner_on_ok(_result("h1", "FW-001 | Report b", _report("FW-001", "fail", "b", "bad")))
    cb.v2_runner_on_ok(_result("h1", "FW-001 | Report c", _report("FW-001", "pass", "c")))
    entry = cb.hosts["h1"]["controls"]["FW-001"]
    assert entry["status"] == "fail" and entry["reason"] == "bad" and len(entry["checks"]) == 3
    assert entry["task"] == "FW-001 | Report b"  # the task's own name, no "myrole : "


def test_callback_rescued_failure_is_superseded_by_the_report() -> None:
    cb = _callback()
    cb.v2_runner_on_failed(_result("h1", "BAK-001 | Probe", {"msg": "boom"}))
    cb.v2_runner_on_ok(
        _result(
            "h1", "BAK-001 | Report the broken check", _report("BAK-001", "error", reason="boom")
        )
    )
    cb._settle()
    entry = cb.hosts["h1"]["controls"]["BAK-001"]
    assert entry["status"] == "error" and len(entry["checks"]) == 1


def test_callback_unrescued_failure_is_an_error_and_ignored_ones_are_not() -> None:
    cb = _callback()
    cb.v2_runner_on_failed(_result("h1", "LOG-002 | Read the journal", {"msg": "no journal"}))
    cb.v2_runner_on_failed(
        _result("h1", "LOG-003 | Optional probe", {"msg": "meh"}), ignore_errors=True
    )
    cb.v2_runner_on_failed(_result("h1", "Some helper task", {"msg": "x"}))
    cb._settle()
    controls = cb.hosts["h1"]["controls"]
    assert list(controls) == ["LOG-002"]
    assert controls["LOG-002"]["reason"] == "task 'LOG-002 | Read the journal' failed: no journal"


def test_callback_loop_results_and_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cb = _callback()
    loop = {
        "results": [_report("ACC-001", "pass"), _report("ACC-002", "fail", reason="frank active")]
    }
    cb.v2_runner_on_ok(_result("h1", "ACC | Report each", loop))
    cb.v2_runner_on_unreachable(_result("h2", "Gathering Facts", {"msg": "ssh: no route"}))
    assert cb.hosts["h1"]["controls"]["ACC-002"]["status"] == "fail"
    assert cb.hosts["h2"] == {"reachable": False, "reason": "ssh: no route", "controls": {}}
    target = tmp_path / "out.json"
    monkeypatch.setenv("OPSRUNNER_RESULTS_FILE", str(target))
    cb.playbook = "site.yml"
    cb._write({"format": "opsrunner-results/1", "hosts": cb.hosts, "ended": "2026-11-28T00:00:00Z"})
    assert json.loads(target.read_text())["hosts"]["h1"]["controls"]["ACC-001"]["status"] == "pass"
