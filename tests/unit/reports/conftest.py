"""A store with two synthetic audits of the real policy, written through the real Store API."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsrunner.policy import Policy, default_policy_dir, load_policy
from opsrunner.reports import Report, build
from opsrunner.store import HostRecord, ResultRecord, RunRecord, Store

TM = dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.UTC)
T0 = dt.datetime(2026, 11, 2, 3, 0, tzinfo=dt.UTC)
T1 = dt.datetime(2026, 11, 3, 3, 0, tzinfo=dt.UTC)

# Hostile strings a host name, fact, reason or evidence may carry: markup, a template,
# a spreadsheet formula, a right-to-left override.
EVIL_HOST = "evil<img src=x onerror=alert(1)>"
EVIL_REASON = "</script><script>alert('x')</script> {{ lookup('pipe','id') }} \u202etxt.exe"
EVIL_EVIDENCE = "=cmd|' /C calc'!A0"
HOSTS = {
    "host1": ("critical", "db"),
    "host2": ("standard", "web"),
    EVIL_HOST: ("standard", "backup_target"),
}


def _status(n: int, host: str, control: str, second: bool) -> tuple[str, str]:
    # A deterministic spread of statuses; the second audit fixes some and breaks others.
    pick = (n + (3 if second else 0)) % 9
    if host == EVIL_HOST and control.startswith("FW"):
        return "fail", EVIL_REASON
    if host == "host1" and control == "ACC-002":
        return ("fail", "account bob still enabled") if second else ("pass", "")
    return {
        0: ("fail", "setting is wrong"),
        1: ("error", "probe crashed"),
        2: ("notapplicable", ""),
        3: ("unknown", "host unreachable: timed out"),
    }.get(pick, ("pass", ""))


def _run(store: Store, policy: Policy, ident: str, start: dt.datetime, second: bool) -> RunRecord:
    run = store.begin_run(
        RunRecord(
            ident=ident,
            mode="audit",
            status="running",
            started_at=start,
            user="auditor",
            controller="ctl1",
            inventory="inventories/lab",
            policy_commit="abc1234",
            policy_digest=policy.digest(),
        )
    )
    assert run.id is not None
    store.set_hosts(
        run.id, [HostRecord(host, True, "", {}, groups) for host, groups in HOSTS.items()]
    )
    results = []
    automated = [c for c in policy.controls if c.kind == "automated"]
    for n, control in enumerate(automated):
        for host, groups in HOSTS.items():
            wanted = set(control.applies_to)
            if "all" not in wanted and not wanted & set(groups):
                continue
            status, reason = _status(n + len(host), host, control.id, second)
            evidence = EVIL_EVIDENCE if host == EVIL_HOST else f"{control.id} probe output"
            # host2's FW-001 evidence of the second audit dates from days ago: stale.
            old = second and host == "host2" and control.id == "FW-001"
            results.append(
                ResultRecord(
                    host=host,
                    control_id=control.id,
                    status="pass" if old else status,
                    checked_at=start - dt.timedelta(days=5 if old else 0, minutes=-5),
                    reason=reason,
                    evidence=evidence,
                    evidence_sha256=f"{n:064x}",
                    task=f"{control.prefix} | check",
                )
            )
    store.add_results(run.id, results)
    return store.finish_run(run.id, "successful", ended_at=start + dt.timedelta(minutes=20), rc=0)


# ACC-002 fails on host1 in the second audit: WVR-2026-001 waives it (expiring within 30 days of
# the report), WVR-2026-002 expired before it. GOV-001 is attested, GOV-002's attestation expired.
WAIVERS = """waivers:
  - id: WVR-2026-001
    control: ACC-002
    scope: {hosts: [host1]}
    justification: "Departure processed by HR late; account disabled by hand <b>today</b>"
    requester: alice
    approver: bruce
    approved_at: 2026-10-20T09:00:00Z
    ticket: "=HYPERLINK(\\"http://x\\")"
    requested_at: 2026-10-19T09:00:00Z
    expires_at: 2026-11-15T00:00:00Z
  - id: WVR-2026-002
    control: FW-001
    scope: {groups: [web]}
    justification: Old exception
    requester: alice
    approver: bruce
    approved_at: 2026-09-01T09:00:00Z
    ticket: OPS-1
    requested_at: 2026-09-01T08:00:00Z
    expires_at: 2026-10-01T00:00:00Z
"""
ATTESTATIONS = """attestations:
  - control: GOV-001
    attested_by: chen
    attested_at: 2026-10-01T00:00:00Z
    evidence:
      file: regulation-signed.pdf
      sha256: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    valid_until: 2027-10-01T00:00:00Z
  - control: GOV-002
    attested_by: chen
    attested_at: 2025-01-01T00:00:00Z
    evidence:
      file: org-chart.pdf
      sha256: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
    valid_until: 2025-12-31T00:00:00Z
"""


@pytest.fixture(scope="session")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    """The project's policy with two waivers and two attestations added."""
    root = tmp_path_factory.mktemp("policy") / "policy"
    shutil.copytree(default_policy_dir(), root)
    (root / "waivers.yml").write_text(WAIVERS, encoding="utf-8")
    (root / "attestations.yml").write_text(ATTESTATIONS, encoding="utf-8")
    return load_policy(root)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> Iterator[Store]:
    """Three audits a day apart: the report covers the last, the trend all three."""
    path: Path = tmp_path_factory.mktemp("reports")
    with Store.open(f"sqlite:///{path / 'store.db'}", path) as opened:
        _run(opened, policy, "20261101T030000-audit", TM, second=True)
        _run(opened, policy, "20261102T030000-audit", T0, second=False)
        _run(opened, policy, "20261103T030000-audit", T1, second=True)
        yield opened


@pytest.fixture(scope="session")
def report(store: Store, policy: Policy) -> Report:
    """The report of the second (latest) audit."""
    return build(store, policy, "latest")
