"""Helpers every lab test uses: run a playbook, read control results, check network safety.

Typical role test (the session ``lab`` fixture comes from tests/conftest.py)::

    from tests.lab_helpers import controls, run_playbook, snapshots

    @pytest.mark.lab
    @pytest.mark.slow
    def test_audit_finds_drift(lab):
        lab.ssh("host2", "nft flush ruleset", check=True)          # break a control
        before = snapshots(lab)
        res = run_playbook(lab, "playbooks/firewall.yml", check=True, tags=["fw-001"])
        assert controls(res, "host2")["FW-001"] == "fail"
        assert snapshots(lab) == before                          # the audit changed nothing
        lab.reset("host2")                                       # pristine host again, seconds
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from opsrunner.lab import net
from opsrunner.lab.core import Lab, Snapshot
from opsrunner.paths import project_root

ROOT = project_root()


class Results(dict[str, Any]):
    """The parsed ``opsrunner-results/1`` JSON of one run, plus the run's rc, stdout and stderr."""

    rc: int
    stdout: str
    stderr: str
    cmd: list[str]

    def __str__(self) -> str:  # shown when an assert on the results fails
        return (
            f"rc={self.rc}\n--- stdout (tail) ---\n{self.stdout[-4000:]}\n"
            f"--- stderr (tail) ---\n{self.stderr[-2000:]}"
        )


def run_playbook(
    lab: Lab,
    playbook: str | Path,
    *,
    check: bool = True,
    diff: bool = False,
    limit: str | list[str] | None = None,
    extra_vars: dict[str, Any] | None = None,
    tags: str | list[str] | None = None,
    skip_tags: str | list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 900,
) -> Results:
    """Run ``ansible-playbook`` from the project root on the lab inventory; return the results.

    ``check=True`` is the audit (``--check``). The results file is the one the project's
    callback writes (docs/result-contract.md); ``.rc``/``.stdout``/``.stderr`` carry the run.
    A playbook path is taken relative to the project root.
    """
    path = Path(playbook)
    if not path.is_absolute():
        path = ROOT / path
    with tempfile.TemporaryDirectory(prefix="opsrunner-results-") as tmp:
        results_file = Path(tmp) / "results.json"
        cmd = [
            str(ROOT / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(lab.inventory_path),
            str(path),
        ]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if limit:
            cmd += ["--limit", limit if isinstance(limit, str) else ",".join(limit)]
        if tags:
            cmd += ["--tags", tags if isinstance(tags, str) else ",".join(tags)]
        if skip_tags:
            cmd += ["--skip-tags", skip_tags if isinstance(skip_tags, str) else ",".join(skip_tags)]
        if extra_vars:
            cmd += ["--extra-vars", json.dumps(extra_vars)]
        run_env = {
            **os.environ,
            "OPSRUNNER_RESULTS_FILE": str(results_file),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            **(env or {}),
        }
        proc = subprocess.run(
            cmd, cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=timeout, check=False
        )
        data: dict[str, Any] = {}
        if results_file.is_file():
            data = json.loads(results_file.read_text())
    res = Results(data)
    res.rc, res.stdout, res.stderr, res.cmd = proc.returncode, proc.stdout, proc.stderr, cmd
    if not data:
        raise AssertionError(f"no results file written by the opsrunner_results callback\n{res}")
    return res


def controls(results: dict[str, Any], host: str) -> dict[str, str]:
    """``{control id: status}`` of one host; ``{"*": "unreachable"}`` for an unreachable host."""
    entry = results.get("hosts", {}).get(host)
    if entry is None:
        raise AssertionError(
            f"host {host!r} is not in the results (hosts: {sorted(results.get('hosts', {}))})"
        )
    if not entry.get("reachable", True):
        return {"*": "unreachable"}
    return {cid: c["status"] for cid, c in entry.get("controls", {}).items()}


def control(results: dict[str, Any], host: str, cid: str) -> dict[str, Any]:
    """The full record of one control on one host (status, evidence, data, reason, checks)."""
    entry = results.get("hosts", {}).get(host, {}).get("controls", {}).get(cid)
    if entry is None:
        raise AssertionError(
            f"control {cid} not reported for {host}; reported: {sorted(controls(results, host))}"
        )
    return dict(entry)


def snapshots(lab: Lab, hosts: list[str] | None = None) -> dict[str, Snapshot]:
    """Snapshot of every (or the given) host's persistent state; compare before/after an audit."""
    return {h: lab.snapshot(h) for h in (hosts or list(lab.hosts))}


def reset_hosts(lab: Lab, *hosts: str) -> None:
    """Return hosts to the pristine image (default: all of them)."""
    lab.reset_many(list(hosts) if hosts else None)


def network_problems(lab: Lab | None = None) -> list[str]:
    """Network-safety violations: ip_forward on, any NAT rule, a default route in any lab host."""
    problems = []
    if net.ip_forward() != "0":
        problems.append(f"net.ipv4.ip_forward is {net.ip_forward()}")
    problems += [f"NAT rule on the VM: {r}" for r in net.nat_rules()]
    if lab is not None:
        for name in lab.hosts:
            ns = net.netns_name(lab.name, name)
            for family in ("-4", "-6"):
                out = net.ip(
                    "-n", ns, family, "route", "show", "default", check=False
                ).stdout.strip()
                if out:
                    problems.append(f"{name} has a default route ({family}): {out}")
            inside = lab.ssh(name, "ip route show default; ip -6 route show default").stdout.strip()
            if inside:
                problems.append(f"{name} sees a default route inside: {inside}")
    return problems


def leftovers(lab_name: str, addresses: list[str] | None = None) -> list[str]:
    """What of a lab is still on the VM: processes, mounts, netns, links, cgroups, neighbours."""
    from opsrunner.lab.core import CGROUP_ROOTS, lab_root

    found: list[str] = []
    lab_dir = str(lab_root() / lab_name)
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if lab_dir + "/" in cmd or f"--machine={lab_name}-" in cmd:
            found.append(f"process {p.name}: {cmd[:120]}")
    for line in Path("/proc/self/mounts").read_text().splitlines():
        if lab_dir + "/" in line.split()[1]:
            found.append(f"mount {line.split()[1]}")
    found += [f"netns {n}" for n in net.lab_netns(lab_name)]
    found += [f"link {n}" for n in net.lab_links(lab_name)]
    for root in CGROUP_ROOTS:
        if (root / "opsrunner" / lab_name).exists():
            found.append(f"cgroup {root / 'opsrunner' / lab_name}")
    # Ansible's ssh ControlMasters to the lab's hosts (socket name: sha1("addr-port-user")[:10])
    import hashlib

    masters = {
        hashlib.sha1(f"{a}-{p}-root".encode()).hexdigest()[:10]
        for a in addresses or []
        for p in ("None", "22")
    }
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ssh: ") and any(f"/{m} [mux]" in cmd for m in masters):
                found.append(f"ssh master {p.name}: {cmd}")
    prop = Path("/run/systemd/nspawn/propagate")
    if prop.is_dir():
        for p in prop.iterdir():
            rest = p.name.removeprefix(f"{lab_name}-")
            if rest != p.name and "-" not in rest:
                found.append(f"nspawn runtime dir {p}")
    neigh = net.ip("neigh", "show").stdout
    found += [
        f"neighbour {line}" for line in neigh.splitlines() if net.bridge_name(lab_name) in line
    ]
    return found
