"""`opsrunner policy diff` over two real git revisions: every line, and the effect re-scored."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsrunner.cli import app
from opsrunner.policy import default_policy_dir, load_policy
from opsrunner.reports import diff
from opsrunner.scoring import score
from opsrunner.store import Store

AT = dt.datetime(2026, 11, 3, 4, 0, tzinfo=dt.UTC)
WAIVER_1 = """waivers:
  - id: WVR-2026-001
    control: ACC-002
    scope: {hosts: [host1]}
    justification: Departure processed late
    requester: alice
    approver: bruce
    approved_at: 2026-10-20T09:00:00Z
    ticket: OPS-7
    requested_at: 2026-10-19T09:00:00Z
    expires_at: 2026-11-15T00:00:00Z
"""
WAIVER_2 = """waivers:
  - id: WVR-2026-003
    control: FW-001
    scope: {groups: [web]}
    justification: Legacy port until the migration
    requester: alice
    approver: bruce
    approved_at: 2026-10-05T09:00:00Z
    ticket: OPS-9
    requested_at: 2026-10-05T08:00:00Z
    expires_at: 2026-11-01T00:00:00Z
"""
ATTESTATION = """attestations:
  - control: GOV-001
    attested_by: chen
    attested_at: 2026-10-01T00:00:00Z
    evidence:
      file: regulation-signed.pdf
      sha256: "%s"
    valid_until: 2027-10-01T00:00:00Z
""".replace("%s", "c" * 64)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository whose policy/ has two revisions, tagged v1 and v2."""
    root = tmp_path_factory.mktemp("diffrepo")
    policy = root / "policy"
    shutil.copytree(default_policy_dir(), policy)
    (policy / "waivers.yml").write_text(WAIVER_1, encoding="utf-8")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "config", "user.email", "t@example.invalid")
    _git(root, "config", "user.name", "t")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "v1")
    _git(root, "tag", "v1")
    fw = policy / "controls" / "firewall.yml"
    text = fw.read_text(encoding="utf-8")
    text = text.replace(
        'source: ["4.2.1", "4.1.2"]\n    owner: system_administrator\n    severity: high',
        'source: ["4.2.1"]\n    owner: system_administrator\n    severity: critical',
        1,
    )
    text = text.replace(
        "title: Management SSH from the admin networks is always accepted",
        "title: Management SSH from the admin networks stays open",
        1,
    )
    fw.write_text(text, encoding="utf-8")
    params = policy / "parameters" / "firewall.yml"
    params.write_text(
        params.read_text(encoding="utf-8").replace("    default: 22\n", "    default: 2222\n", 1),
        encoding="utf-8",
    )
    (policy / "waivers.yml").write_text(WAIVER_2, encoding="utf-8")
    (policy / "attestations.yml").write_text(ATTESTATION, encoding="utf-8")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "v2")
    _git(root, "tag", "v2")
    return root


def test_every_line_of_the_diff(repo: Path) -> None:
    old = diff.policy_at(repo / "policy", "v1")
    new = diff.policy_at(repo / "policy", "v2")
    lines = [c.text() for c in diff.changes(old, new, AT)]
    # The project's own policy grows; the clause line is spelled from revision 1's controls.
    cited = sorted(c.id for c in old.controls if "4.1.2" in c.source)
    assert "FW-001" in cited
    left = ", ".join(cited)
    right = ", ".join(c for c in cited if c != "FW-001")
    assert lines == [
        "~ control FW-001: severity high → critical",
        "~ control FW-001: clauses [4.2.1, 4.1.2] → [4.2.1]",
        "~ control FW-002: renamed Management SSH from the admin networks is always accepted"
        " → Management SSH from the admin networks stays open",
        "~ parameter firewall_ssh_port: default 22 → 2222",
        "- waiver WVR-2026-001 (ACC-002)",
        "+ waiver WVR-2026-003 (FW-001)",
        "~ waiver WVR-2026-003: expired 2026-11-01T00:00:00Z",
        "+ attestation GOV-001@2026-10-01T00:00:00Z (chen)",
        f"~ clause 4.1.2: covered by [{left}] → [{right}]",
    ]


def test_projected_effect_matches_a_rescore(repo: Path, store: Store) -> None:
    old = diff.policy_at(repo / "policy", "v1")
    new = diff.policy_at(repo / "policy", "v2")
    results = store.latest_results(as_of=AT)
    hosts = store.host_groups()
    effects = diff.effects(old, new, results, hosts, AT)
    before = score(old, results, hosts, AT)
    after = score(new, results, hosts, AT)
    for effect in effects:
        assert effect.old == pytest.approx(before.by_host[effect.host].get().percent, abs=0.01)
        assert effect.new == pytest.approx(after.by_host[effect.host].get().percent, abs=0.01)
    moved = [e for e in effects if e.delta]
    assert moved, "the revision changes some host's score"
    # GOV-001's new attestation lifts the organisation's manual score.
    org = next(e for e in effects if e.host == "(organisation)")
    assert org.delta is not None and org.delta > 0
    worst = min(moved, key=lambda e: e.delta or 0.0)
    if worst.delta is not None and worst.delta < 0:
        assert worst.old is not None and worst.new is not None
        gate = round((worst.old + worst.new) / 2, 2)
        assert diff.effect_line(worst, gate).endswith(f"falls below the {gate:g} gate")


def test_policy_diff_command(repo: Path, store: Store) -> None:
    state = store.state_dir
    url = str(store.engine.url)
    runner = CliRunner()
    args = ["policy", "diff", "v1..v2", "--policy", str(repo / "policy"), "--store", url]
    args += ["--state-dir", str(state), "--at", "2026-11-03T04:00:00Z"]
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.output
    assert text.output.startswith("Policy diff v1..v2\n")
    assert "~ control FW-001: severity high → critical" in text.output
    assert "Projected effect on the latest results" in text.output
    as_json = runner.invoke(app, [*args, "--format", "json"])
    data = json.loads(as_json.output)
    assert data["changes"][0]["text"] == "~ control FW-001: severity high → critical"
    new = load_policy(repo / "policy")
    after = score(new, store.latest_results(as_of=AT), store.host_groups(), AT)
    for row in data["effect"]:
        assert row["new"] == pytest.approx(after.by_host[row["host"]].get().percent, abs=0.01)
    md = runner.invoke(app, [*args, "--format", "md"])
    assert md.output.startswith("# Policy diff v1..v2")
