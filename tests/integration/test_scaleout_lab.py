"""Scale-out on real lab hosts: execution nodes run slices with ansible-runner's
transmit | worker | process over SSH, results go to a real PostgreSQL store.

The session lab grows by three hosts for this module (host4 a target, host5 and host6 the
execution nodes, installed from the controller's wheels) and shrinks back afterwards. Four
targets, the firewall's five controls: a local audit and a sliced audit record the same
statuses and scores; a node killed mid-run leaves its slice unknown (interrupted) and the other
slice stored; `--retry-failed` reruns only that slice, on the node still standing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsrunner.config import Settings
from opsrunner.lab.core import HostSpec, Lab, ssh_key
from opsrunner.runner import nodes
from opsrunner.store import RunRecord, Store
from tests.unit.store.conftest import _unavailable, pg_server

FW = ["FW-001", "FW-002", "FW-003", "FW-004", "FW-005"]
TARGETS = ["host1", "host2", "host3", "host4"]
NODES = {"n1": "host5", "n2": "host6"}
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def pg() -> Iterator[str]:
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    with pg_server() as url:
        yield url


Baseline = tuple[RunRecord, dict[tuple[str, str], str]]


@pytest.fixture(scope="module")
def scale_lab(
    lab: Lab, pg: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Lab, Path, Baseline]]:
    """The session lab plus host4..host6; host5 and host6 installed as execution nodes while
    a local audit of the four targets runs (the reference both tests compare with)."""
    original = [HostSpec(name=h.name, groups=h.groups) for h in lab.hosts.values()]
    extra = [HostSpec(name=n, groups=("standard",)) for n in ("host4", "host5", "host6")]
    base = tmp_path_factory.mktemp("scaleout")
    try:
        lab.up(hosts=original + extra)
        nodes_yml = base / "nodes.yml"
        nodes_yml.write_text(
            json.dumps(
                {
                    "target_key": str(ssh_key()),
                    "connect_timeout": 5,
                    "nodes": [
                        {
                            "name": name,
                            "host": lab.host(host).address,
                            "identity_file": str(ssh_key()),
                            "ssh_options": [
                                "StrictHostKeyChecking=no",
                                "UserKnownHostsFile=/dev/null",
                                "LogLevel=ERROR",
                            ],
                        }
                        for name, host in NODES.items()
                    ],
                }
            ),
            encoding="utf-8",
        )
        loaded = nodes.load_nodes(nodes_yml)
        errors: list[BaseException] = []

        def install(node: nodes.Node) -> None:
            try:
                nodes.install_node(node)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=install, args=(n,)) for n in loaded.nodes]
        for thread in threads:
            thread.start()
        local = nodes.run(
            "audit",
            lab.inventory_path,
            store=pg,
            limit=",".join(TARGETS),
            controls=FW,
            settings=_settings(base / "local"),
        )
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert local.status == "successful", local
        statuses = _statuses(pg, local)
        assert len(statuses) == len(TARGETS) * len(FW)
        yield lab, nodes_yml, (local, statuses)
    finally:
        lab.up(hosts=original)


def _settings(base: Path) -> Settings:
    return Settings(state_dir=str(base / "state"), task_timeout=120, run_timeout=900)


def _statuses(url: str, run: RunRecord) -> dict[tuple[str, str], str]:
    with Store.open(url, None) as store:
        assert run.id is not None
        return {(r.host, r.control_id): r.status for r in store.results(run.id)}


def _scores(lab: Lab, url: str, run: RunRecord, state: Path) -> dict[str, Any]:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "opsrunner", "score", "--run", run.ident, "--json"),
            *("--store", url, "--state-dir", str(state), "-i", str(lab.inventory_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    return {k: v for k, v in data.items() if k not in ("run", "as_of")}


def _nothing_left(lab: Lab, host: str) -> None:
    """The lent key is gone with the slice: no agent, no key file, no slice dir on the node.

    ssh-agent notices that its playbook ended within 10 s (it checks its parent every 10 s).
    """
    deadline = time.monotonic() + 25
    while True:
        left = lab.ssh(
            host,
            "pgrep -a ssh-agent; ls -A /var/lib/opsrunner-worker; grep -rl 'PRIVATE KEY' "
            "/var/lib/opsrunner-worker /root /tmp /var/tmp 2>/dev/null; true",
        ).stdout.strip()
        if left == "" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert left == "", f"{host} keeps: {left}"


def test_sliced_audit_matches_local(
    scale_lab: tuple[Lab, Path, Baseline], pg: str, tmp_path: Path
) -> None:
    lab, nodes_yml, (local, expected) = scale_lab
    settings = _settings(tmp_path)
    common: dict[str, Any] = {"limit": ",".join(TARGETS), "controls": FW, "settings": settings}
    sliced = nodes.run("audit", lab.inventory_path, store=pg, nodes=nodes_yml, **common)
    assert sliced.status == "successful", sliced
    assert [(s["node"], s["hosts"], s["status"]) for s in sliced.stats[nodes.SLICES_KEY]] == [
        ("n1", ["host1", "host2"], "successful"),
        ("n2", ["host3", "host4"], "successful"),
    ]
    assert _statuses(pg, sliced) == expected
    state = Path(settings.state_dir or "")
    scores: dict[str, dict[str, Any]] = {}

    def score(run: RunRecord) -> None:
        scores[run.ident] = _scores(lab, pg, run, state)

    both = [threading.Thread(target=score, args=(r,)) for r in (local, sliced)]
    for thread in both:
        thread.start()
    for thread in both:
        thread.join()
    assert scores[sliced.ident] == scores[local.ident]
    for host in NODES.values():
        _nothing_left(lab, host)


@pytest.mark.extended
def test_node_killed_mid_run_then_retry(
    scale_lab: tuple[Lab, Path, Baseline], pg: str, tmp_path: Path
) -> None:
    lab, nodes_yml, (_, expected) = scale_lab
    settings = _settings(tmp_path)
    state = Path(settings.state_dir or "")
    common: dict[str, Any] = {"limit": ",".join(TARGETS), "controls": FW, "settings": settings}
    outcome: list[RunRecord | BaseException] = []

    def sliced() -> None:
        try:
            outcome.append(
                nodes.run("audit", lab.inventory_path, store=pg, nodes=nodes_yml, **common)
            )
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=sliced)
    thread.start()
    # Kill node n2 (host6) once its slice has a result from a target: mid-run, for real.
    deadline = time.monotonic() + 600
    killed = False
    while thread.is_alive() and time.monotonic() < deadline and not killed:
        for events in state.glob("runs/*/artifacts/*.n2/job_events"):
            if any("runner_on_ok" in p.read_text() for p in events.glob("*.json")):
                lab.reset(NODES["n2"], wait=False)
                killed = True
                break
        time.sleep(0.2)
    thread.join(600)
    assert killed, "the n2 slice never got going"
    (record,) = outcome
    assert isinstance(record, RunRecord), record
    assert record.status == "interrupted", record
    slices = {s["node"]: s for s in record.stats[nodes.SLICES_KEY]}
    assert slices["n1"]["status"] == "successful"
    assert slices["n2"]["status"] == "interrupted"
    assert "execution node n2 lost mid-run" in slices["n2"]["reason"]
    got = _statuses(pg, record)
    # The other slice is stored as a local run stores it; the killed one is unknown, never passing.
    assert {k: v for k, v in got.items() if k[0] in ("host1", "host2")} == {
        k: v for k, v in expected.items() if k[0] in ("host1", "host2")
    }
    with Store.open(pg, None) as store:
        assert record.id is not None
        lost = [r for r in store.results(record.id) if r.host in ("host3", "host4")]
    assert len(lost) == 2 * len(FW)
    # What n2 reported before it died is kept (as a local interrupted run keeps it); the rest
    # is unknown with the reason, never passing.
    unknown = [r for r in lost if r.status == "unknown"]
    assert unknown, lost
    assert all("execution node n2 lost mid-run" in r.reason for r in unknown), unknown
    assert all(r.status == expected[(r.host, r.control_id)] for r in lost if r not in unknown)
    # host6 came back pristine (no ansible-runner): the retry leaves it out and n1 runs the slice.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPSRUNNER_STATE_DIR": str(state)}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "opsrunner", "audit", "--retry-failed", record.ident),
            *("--nodes", str(nodes_yml), "--store", pg, "-i", str(lab.inventory_path)),
            *("--plain", "--no-summary", "--task-timeout", "120"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "node n2 left out" in done.stderr, done.stderr
    assert "retrying 2 host(s)" in done.stderr, done.stderr
    with Store.open(pg, None) as store:
        retry = store.list_runs(limit=1)[0]
    assert retry.status == "successful" and retry.limit == "host3,host4", retry
    assert [(s["node"], s["hosts"]) for s in retry.stats[nodes.SLICES_KEY]] == [
        ("n1", ["host3", "host4"])
    ]
    assert _statuses(pg, retry) == {k: v for k, v in expected.items() if k[0] in ("host3", "host4")}
