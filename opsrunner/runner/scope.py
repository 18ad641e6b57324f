"""What a run covers: hosts and their groups, playbooks, controls in scope, policy origin."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from opsrunner import paths


class ScopeError(ValueError):
    """Bad run input: unknown control, missing playbook or inventory."""


def inventory_groups(inventory: Path, limit: str | None = None) -> dict[str, list[str]]:
    """Each host the run targets (after --limit) with its inventory groups."""
    if not inventory.exists():
        raise ScopeError(f"{inventory}: inventory not found")
    from ansible.inventory.manager import InventoryManager  # type: ignore[import-untyped]
    from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]

    manager = InventoryManager(loader=DataLoader(), sources=[str(inventory)])
    if limit:
        manager.subset(limit)
    out: dict[str, list[str]] = {}
    for host in manager.get_hosts("all"):
        out[host.get_name()] = sorted(g.get_name() for g in host.get_groups())
    return out


def host_vars(inventory: Path) -> dict[str, dict[str, Any]]:
    """Inventory variables per host (the daemon reads ansible_host and the exporter port)."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    manager = InventoryManager(loader=DataLoader(), sources=[str(inventory)])
    return {h.get_name(): dict(h.get_vars()) for h in manager.get_hosts("all")}


def site_roles(playbook: Path) -> list[str]:
    """Roles a site playbook runs: the stems of the playbooks it imports (playbooks/<role>.yml)."""
    data = yaml.safe_load(playbook.read_text(encoding="utf-8")) or []
    roles = []
    for play in data:
        if not isinstance(play, dict):
            continue
        target = play.get("ansible.builtin.import_playbook") or play.get("import_playbook")
        if isinstance(target, str):
            roles.append(Path(target).stem)
        for role in play.get("roles") or []:
            name = role.get("role") if isinstance(role, dict) else role
            if isinstance(name, str):
                roles.append(name.rsplit(".", 1)[-1])
    return roles


def controls_in_scope(
    policy: Any,
    hosts: Mapping[str, Sequence[str]],
    roles: Iterable[str],
    wanted: Iterable[str] | None = None,
) -> dict[str, list[str]]:
    """Per host: automated controls whose role runs and whose applies_to covers the host."""
    role_set = set(roles)
    selected = set(wanted) if wanted is not None else None
    scope: dict[str, list[str]] = {host: [] for host in hosts}
    for control in policy.controls:
        if control.kind != "automated" or control.role not in role_set:
            continue
        if selected is not None and control.id not in selected:
            continue
        targets = set(control.applies_to)
        for host, groups in hosts.items():
            if "all" in targets or targets & set(groups):
                scope[host].append(control.id)
    return scope


def check_controls(policy: Any, wanted: Iterable[str]) -> list[str]:
    """The requested control ids, validated against the policy (ScopeError names the bad one)."""
    known = {c.id: c for c in policy.controls}
    out = []
    for cid in wanted:
        cid = cid.strip().upper()
        if not cid:
            continue
        if cid not in known:
            raise ScopeError(f"--controls {cid}: no such control in {policy.root}")
        if known[cid].kind != "automated":
            raise ScopeError(f"--controls {cid}: a manual control is met by attestation, not a run")
        out.append(cid)
    return out


def policy_commit(policy_dir: Path) -> str:
    """The git commit the policy comes from, `+dirty` when the policy has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(policy_dir), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(policy_dir), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+dirty" if dirty else "")


def playbook_path(name: str) -> Path:
    """playbooks/<name>.yml of the project (ScopeError when absent)."""
    path = paths.project_root() / "playbooks" / f"{name}.yml"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yml"))
        raise ScopeError(f"{path}: no such playbook (have: {', '.join(available) or 'none'})")
    return path
