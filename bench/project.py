"""A throw-away project for arm 1: the real roles, plugins and policy, a bench playbook as site.

`opsrunner audit` runs `<project>/playbooks/site.yml`; OPSRUNNER_PROJECT points it at this
directory, whose roles/, plugins/, collections/ and policy/ are links to the checkout's, so the
only difference from a real audit is which playbook runs. Plain `ansible-playbook` runs the same
file with the same ansible.cfg.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from bench.harness import ROOT

LINKED = ("roles", "plugins", "collections", "policy")


def _module_tasks(controls: int) -> list[dict[str, Any]]:
    # One read-only probe module on the host and one result-contract report per control: the
    # shape of the roles' audit tasks.
    tasks: list[dict[str, Any]] = []
    for n in range(1, controls + 1):
        cid = f"BEN-{n:03d}"
        tasks += [
            {
                "name": f"{cid} | Probe /etc/passwd",
                "ansible.builtin.stat": {"path": "/etc/passwd", "get_checksum": False},
                "register": f"__bench_{n}",
            },
            {
                "name": f"{cid} | Report",
                "opsrunner.compliance.control": {
                    "id": cid,
                    "passed": f"{{{{ __bench_{n}.stat.exists }}}}",
                    "evidence": f"/etc/passwd mode {{{{ __bench_{n}.stat.mode }}}}",
                },
            },
        ]
    return tasks


def _controller_tasks(controls: int) -> list[dict[str, Any]]:
    # Only controller work per control: a fact, two asserts, a debug and the report — the
    # debug/assert-heavy shape where the runner's own per-event cost shows most.
    tasks: list[dict[str, Any]] = []
    for n in range(1, controls + 1):
        cid = f"BEN-{n:03d}"
        tasks += [
            {"name": f"{cid} | Compute", "ansible.builtin.set_fact": {f"__bench_{n}": n * 7}},
            {
                "name": f"{cid} | Assert it is a number",
                "ansible.builtin.assert": {
                    "that": [f"__bench_{n} | int == {n * 7}"],
                    "quiet": True,
                },
            },
            {
                "name": f"{cid} | Assert the host has a name",
                "ansible.builtin.assert": {"that": ["inventory_hostname | length > 0"]},
            },
            {
                "name": f"{cid} | Show",
                "ansible.builtin.debug": {"msg": f"{cid} value {{{{ __bench_{n} }}}}"},
            },
            {
                "name": f"{cid} | Report",
                "opsrunner.compliance.control": {
                    "id": cid,
                    "passed": True,
                    "evidence": f"value {{{{ __bench_{n} }}}}",
                },
            },
        ]
    return tasks


KINDS = {"module": _module_tasks, "controller": _controller_tasks}


def make(where: Path, kind: str, controls: int) -> Path:
    """Lay out the project in `where` with a site.yml of `kind` tasks; return its directory."""
    where.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        link = where / name
        if not link.exists():
            link.symlink_to(ROOT / name)
    shutil.copy2(ROOT / "ansible.cfg", where / "ansible.cfg")
    (where / "playbooks").mkdir(exist_ok=True)
    play = {
        "name": f"Bench {kind} tasks",
        "hosts": "all",
        "gather_facts": False,
        "tasks": KINDS[kind](controls),
    }
    (where / "playbooks" / "site.yml").write_text(
        yaml.safe_dump([play], sort_keys=False), encoding="utf-8"
    )
    return where
