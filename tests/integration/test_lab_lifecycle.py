"""A lab's life through the CLI: up (idempotent), ssh, a killed run, down --force, nothing left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from opsrunner.lab import net
from opsrunner.lab.core import Lab
from opsrunner.paths import project_root
from tests.lab_helpers import leftovers, network_problems

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ROOT = project_root()
NAME = f"c{os.getpid() % 10_000_000}"


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "opsrunner"), "lab", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    if check:
        assert proc.returncode == 0, f"opsrunner lab {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc


def test_lab_lifecycle_from_up_to_nothing_left() -> None:
    assert not network_problems(), "network must be safe before"
    addresses: list[str] = []
    try:
        up = json.loads(
            _cli(
                "up",
                "--name",
                NAME,
                "--json",
                "--host",
                "db1:critical,db",
                "--host",
                "web1:standard,web",
            ).stdout
        )
        assert [(h["name"], h["groups"]) for h in up["hosts"]] == [
            ("db1", ["critical", "db"]),
            ("web1", ["standard", "web"]),
        ]
        lab = Lab(NAME)
        addresses = [h.address for h in lab.hosts.values()]
        assert not network_problems(lab)
        pids = {h: (lab.dir / "hosts" / h / "supervisor.pid").read_text() for h in lab.hosts}

        # idempotent: a second up keeps the running hosts (same supervisors, one boot each)
        again = json.loads(
            _cli(
                "up",
                "--name",
                NAME,
                "--json",
                "--host",
                "db1:critical,db",
                "--host",
                "web1:standard,web",
            ).stdout
        )
        assert again == {**up, "hosts": again["hosts"]} and again["hosts"] == up["hosts"]
        assert pids == {
            h: (lab.dir / "hosts" / h / "supervisor.pid").read_text() for h in lab.hosts
        }
        assert all(lab.boots(h) == 1 for h in lab.hosts)

        # hosts reach each other over the bridge, and the lab's HTTP server, nothing else
        web1 = lab.hosts["web1"].address
        assert lab.ssh("db1", f"ping -c1 -W2 {web1}").returncode == 0
        assert (
            lab.ssh(
                "db1", f"curl -fsS -o /dev/null {lab.repo.apt_url}/dists/bookworm/Release"
            ).returncode
            == 0
        )
        assert lab.ssh("db1", "ping -c1 -W1 192.0.2.1").returncode != 0, "no route out"
        assert _cli("ssh", "--name", NAME, "web1", "hostname").stdout.strip() == "web1"

        # a killed run: supervisors die hard, state is lost; up refuses, down --force cleans
        for pid in pids.values():
            os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.5)
        (lab.dir / "state.json").unlink()
        refused = _cli("up", "--name", NAME, check=False)
        assert (
            refused.returncode == 1
            and "stale lab" in refused.stderr
            and "--force" in refused.stderr
        )
        assert leftovers(NAME), "the killed run left nspawn processes, mounts, netns behind"
        _cli("down", "--name", NAME, "--force")
    finally:
        Lab(NAME).down(force=True)
    assert leftovers(NAME, addresses) == []
    assert not net.link_exists(net.bridge_name(NAME))
    assert not network_problems(), "network must be safe after"


def test_clear_error_for_a_lab_that_is_not_up() -> None:
    proc = _cli("ssh", "--name", "nolabhere", "host1", "true", check=False)
    assert proc.returncode == 1
    assert "lab 'nolabhere' is not up" in proc.stderr
