"""audit_trail's path_state probe: owner, group, mode and parent of many paths at once."""

from __future__ import annotations

import grp
import importlib.util
import os
import pwd
from pathlib import Path

_PATH = Path(__file__).resolve().parents[3] / "roles" / "audit_trail" / "library" / "path_state.py"
_SPEC = importlib.util.spec_from_file_location("path_state", _PATH)
assert _SPEC and _SPEC.loader
ps = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ps)


def test_present_absent_wrong_and_watchable(tmp_path: Path) -> None:
    owner = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    good = tmp_path / "good"
    good.write_text("x")
    good.chmod(0o640)
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    link = tmp_path / "link"
    link.symlink_to(good)  # read with lstat: the link itself, never its target
    found = ps.probe(
        [
            {"path": str(good), "owner": owner, "group": group, "mode": "0640"},
            {"path": str(loose) + "/", "owner": owner, "group": group, "mode": "750"},
            {"path": str(tmp_path / "gone"), "owner": "root", "group": "root", "mode": "0600"},
            {"path": str(tmp_path / "nodir" / "file")},
            {"path": str(link)},
        ]
    )
    assert found["present"] == [str(good), str(loose) + "/", str(link)]
    assert found["absent"] == [str(tmp_path / "gone"), str(tmp_path / "nodir" / "file")]
    assert found["wrong"] == [f"{loose}/ is {owner}:{group} 0777, want {owner}:{group} 0750"]
    assert [item["path"] for item in found["wrong_items"]] == [str(loose) + "/"]
    assert found["unwatchable"] == [str(tmp_path / "nodir" / "file")]
    assert found["state"][str(link)]["mode"] == "0777"
    assert found["state"][str(tmp_path / "gone")] == {"exists": False, "parent_exists": True}
