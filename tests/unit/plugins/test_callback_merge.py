"""The results callback merges like opsrunner: a fail beside an error keeps both reasons."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


def _load() -> ModuleType:
    path = ROOT / "plugins" / "callback" / "opsrunner_results.py"
    spec = importlib.util.spec_from_file_location("opsrunner_test_callback_merge", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _result(task: str, status: str, reason: str, evidence: str) -> Any:
    control = {"id": "AUD-001", "status": status, "reason": reason, "evidence": evidence}
    return SimpleNamespace(
        _host=SimpleNamespace(get_name=lambda: "h1"),
        _task=SimpleNamespace(name=task, get_name=lambda: task),
        _result={"opsrunner_control": {**control, "data": {}, "remediated": False}},
    )


def test_fail_then_error_keeps_the_fail_reason_first() -> None:
    cb = _load().CallbackModule()
    cb.v2_runner_on_ok(_result("AUD-001 | a", "pass", "", "auditd on"))
    cb.v2_runner_on_ok(_result("AUD-001 | b", "fail", "no rule for /etc/shadow", "rules: 1"))
    cb.v2_runner_on_ok(_result("AUD-001 | c", "error", "auditctl failed", "rc=1"))
    entry = cb.hosts["h1"]["controls"]["AUD-001"]
    assert entry["status"] == "error"
    assert entry["reason"] == "no rule for /etc/shadow; auditctl failed"
    assert entry["evidence"] == "rules: 1; rc=1"
    assert len(entry["checks"]) == 3
