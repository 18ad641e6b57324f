"""The file comparisons of the intrusion_detection and log_review probes, without a host."""

from __future__ import annotations

import grp
import importlib.util
import os
import pwd
from pathlib import Path
from types import ModuleType

_ROLES = Path(__file__).resolve().parents[3] / "roles"


def _load(role: str) -> ModuleType:
    path = _ROLES / role / "library" / f"{role}_probe.py"
    spec = importlib.util.spec_from_file_location(f"{role}_probe", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


IDS = _load("intrusion_detection")
LOG = _load("log_review")


def test_ids_file_compares_content_and_mode(tmp_path: Path) -> None:
    jail = tmp_path / "jail.local"
    assert IDS._file(str(jail), "[sshd]\n", "0644") == {
        "exists": False,
        "content_matches": False,
        "owner_ok": False,
        "mode": "",
        "mode_ok": False,
        "ok": False,
    }
    jail.write_text("[sshd]\nmaxretry = 50\n")
    jail.chmod(0o600)
    got = IDS._file(str(jail), "[sshd]\n", "0644")
    assert got["exists"] and not got["content_matches"] and got["mode"] == "0600"
    assert not got["mode_ok"] and not got["ok"]
    jail.write_text("[sshd]\n")
    jail.chmod(0o644)
    got = IDS._file(str(jail), "[sshd]\n", "0644")
    assert got["content_matches"] and got["mode_ok"]
    assert got["ok"] == (os.getuid() == 0 and os.getgid() == 0)


def test_log_review_path_state_names_each_difference(tmp_path: Path) -> None:
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    conf = tmp_path / "zz-opsrunner.conf"
    want = {
        "path": str(conf),
        "state": "file",
        "owner": me,
        "group": group,
        "mode": "0644",
        "content": "[Journal]\nStorage=persistent\n",
    }
    assert LOG._path_state(want)["problems"] == [f"{conf} missing"]
    conf.write_text("[Journal]\nStorage=volatile\n")
    conf.chmod(0o600)
    got = LOG._path_state(want)
    assert got["problems"] == [
        f"{conf} mode 0600, want 0644",
        f"{conf} content differs from the policy",
    ]
    conf.write_text("[Journal]\nStorage=persistent\n")
    conf.chmod(0o644)
    assert LOG._path_state(want) == {
        "exists": True,
        "ok": True,
        "problems": [],
        "mode": "0644",
        "owner": me,
        "group": group,
    }
    wrong_kind = LOG._path_state({"path": str(tmp_path), "state": "file"})
    assert wrong_kind["problems"] == [f"{tmp_path} is not a file"]
