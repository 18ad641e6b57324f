"""Checks beyond one policy: clause coverage, and controls against role task names both ways."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsrunner.policy.loader import Policy, Problem, display_path
from opsrunner.policy.safeyaml import Path_, YamlProblem, load_file, render_path

# The same pattern the results callback uses to tie a task to a control.
TASK_CONTROL_RE = re.compile(r"^\s*([A-Z][A-Z0-9]{1,7}-\d{3})\s*\|")
_TASK_LISTS = ("block", "rescue", "always")


@dataclass(frozen=True)
class RoleTask:
    """A task of a role whose name may carry a control id."""

    role: str
    file: str
    line: int
    name: str

    @property
    def control_id(self) -> str | None:
        """The control id at the start of the name (`FW-001 | …`), if any."""
        match = TASK_CONTROL_RE.match(self.name)
        return match.group(1) if match else None

    def matches(self, prefix: str) -> bool:
        """Whether the name starts with a control's task prefix followed by a separator."""
        rest = self.name.strip()
        if not rest.startswith(prefix):
            return False
        tail = rest[len(prefix) :]
        return not tail or tail[0] in " |:"


def coverage_problems(policy: Policy) -> list[Problem]:
    """Every leaf clause is covered by a control or says why it is not applicable."""
    problems: list[Problem] = []
    for clause in policy.leaf_clauses():
        if clause.not_applicable is not None:
            continue
        if not policy.controls_for_clause(clause.number, below=False):
            where = policy.location("clause", clause.number)
            problems.append(
                Problem(
                    where.file if where else "regulation.yml",
                    where.line if where else 1,
                    f"clause {clause.number}",
                    "no control covers this clause and it has no not_applicable reason",
                )
            )
    return problems


def _walk_tasks(data: Any, path: Path_) -> Iterator[tuple[Path_, dict[str, Any]]]:
    if isinstance(data, list):
        for index, item in enumerate(data):
            if isinstance(item, dict):
                yield (*path, index), item
                for key in _TASK_LISTS:
                    if isinstance(item.get(key), list):
                        yield from _walk_tasks(item[key], (*path, index, key))


def role_tasks(roles_dir: Path, role: str) -> tuple[list[RoleTask], list[Problem]]:
    """Named tasks of a role's tasks/ and handlers/ files, with the line of each name."""
    tasks: list[RoleTask] = []
    problems: list[Problem] = []
    base = roles_dir / role
    for sub in ("tasks", "handlers"):
        for file in sorted((base / sub).rglob("*.yml")) if (base / sub).is_dir() else []:
            shown = display_path(file)
            try:
                located = load_file(file, strict_tags=False)
            except YamlProblem as exc:
                problems.append(Problem(shown, exc.line, exc.field, exc.message))
                continue
            for path, task in _walk_tasks(located.data, ()):
                name = task.get("name")
                if isinstance(name, str):
                    tasks.append(RoleTask(role, shown, located.line_for((*path, "name")), name))
    return tasks, problems


def crosscheck_problems(policy: Policy, roles_dir: Path) -> list[Problem]:
    """Automated controls have tasks in their role, and every control id in a task name is known."""
    problems: list[Problem] = []
    by_role: dict[str, list[RoleTask]] = {}
    for control in policy.controls:
        if control.kind != "automated" or control.role is None:
            continue
        where = policy.location("control", control.id)
        file, line = (where.file, where.line) if where else ("controls", 1)
        if not (roles_dir / control.role / "tasks").is_dir():
            problems.append(
                Problem(
                    file,
                    line,
                    f"{control.id}.role",
                    f"role {control.role!r} does not exist "
                    f"({display_path(roles_dir / control.role)}/tasks is missing)",
                )
            )
            continue
        if control.role not in by_role:
            found, broken = role_tasks(roles_dir, control.role)
            by_role[control.role] = found
            problems += broken
        if not any(t.matches(control.prefix) for t in by_role[control.role]):
            problems.append(
                Problem(
                    file,
                    line,
                    f"{control.id}.task_prefix",
                    f"no task in role {control.role!r} is named '{control.prefix} | …'",
                )
            )
    # A task is known when its id is a control, or is the task_prefix an automated control uses.
    known = {c.id for c in policy.controls} | {c.prefix for c in policy.controls if c.role}
    for role_dir in (
        sorted(p for p in roles_dir.iterdir() if p.is_dir()) if roles_dir.is_dir() else []
    ):
        if role_dir.name not in by_role:
            found, broken = role_tasks(roles_dir, role_dir.name)
            by_role[role_dir.name] = found
            problems += broken
        reported: set[tuple[str, str]] = set()
        for task in by_role[role_dir.name]:
            cid = task.control_id
            # One problem per unknown id and file: every task of that control shares the cause.
            if cid is not None and cid not in known and (task.file, cid) not in reported:
                reported.add((task.file, cid))
                problems.append(
                    Problem(
                        task.file,
                        task.line,
                        "name",
                        f"task {task.name!r} names control {cid}, which is not in the policy",
                    )
                )
    return problems


def tasks_for_control(policy: Policy, control_id: str, roles_dir: Path) -> list[RoleTask]:
    """The role tasks that implement one automated control (empty for manual controls)."""
    control = policy.control(control_id)
    if control.role is None:
        return []
    found, _ = role_tasks(roles_dir, control.role)
    return [t for t in found if t.matches(control.prefix)]


# --- inventories (`policy validate --inventory`) --------------------------------------------

#: Groups every Ansible inventory has.
IMPLICIT_GROUPS = frozenset({"all", "ungrouped"})
_GROUP_KEYS = ("hosts", "children", "vars")
_YAML_SUFFIXES = (".yml", ".yaml")
#: Files Ansible skips in an inventory directory (INVENTORY_IGNORE_EXTS and friends).
_IGNORED_SUFFIXES = (".md", ".txt", ".rst", ".orig", ".cfg", ".retry", ".bak", ".swp", "~")
#: Host variables the policy's vars plugin sets besides the parameters.
POLICY_CONTEXT_VARS = frozenset(
    {
        "opsrunner_tier",
        "opsrunner_roster",
        "opsrunner_windows",
        "opsrunner_notices",
        "opsrunner_policy_digest",
    }
)


def policy_groups(policy: Policy) -> dict[str, str]:
    """Inventory groups the policy names → where it names them first (for messages)."""
    known: dict[str, str] = {}

    def add(group: str, where: str) -> None:
        known.setdefault(group, where)

    for tier in policy.settings.tiers:
        add(tier, "policy.yml tiers")
    for name, parameter in sorted(policy.parameters.items()):
        for group in parameter.groups:
            add(group, f"parameter {name}")
    for window in policy.windows:
        for group in window.groups:
            add(group, f"window {window.name}")
    for control in policy.controls:
        for group in control.applies_to:
            add(group, f"control {control.id} applies_to")
    for person in policy.roster.people:
        for group in person.hosts:
            add(group, f"roster {person.user}")
    for waiver in policy.waivers:
        for group in waiver.scope.groups:
            add(group, f"waiver {waiver.id}")
    return known


@dataclass
class _Inventory:
    """What the inventory files declare, with the file and line of each declaration."""

    groups: dict[str, tuple[str, int]]
    members: dict[str, dict[str, tuple[str, int]]]  # host → group → where it is listed
    parents: dict[str, set[str]]  # group → its parent groups
    problems: list[Problem]

    def host_groups(self, host: str) -> set[str]:
        """Every group a host is in, its groups' ancestors included."""
        found: set[str] = set()
        todo = list(self.members.get(host, {}))
        while todo:
            group = todo.pop()
            if group not in found:
                found.add(group)
                todo.extend(self.parents.get(group, ()))
        return found | {"all"}


def _inventory_files(root: Path) -> tuple[list[Path], list[Problem]]:
    if root.is_file():
        return [root], []
    if not root.is_dir():
        return [], [Problem(display_path(root), 1, "", "no such inventory file or directory")]
    files: list[Path] = []
    problems: list[Problem] = []
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or path.name in ("group_vars", "host_vars"):
            continue
        if path.is_dir() or path.name.endswith(_IGNORED_SUFFIXES):
            continue
        if path.suffix in _YAML_SUFFIXES:
            files.append(path)
        else:
            problems.append(
                Problem(
                    display_path(path),
                    1,
                    "",
                    "not a YAML inventory (.yml/.yaml): only YAML inventories are checked; "
                    "convert it with `ansible-inventory -i FILE --list --yaml`",
                )
            )
    if not files and not problems:
        problems.append(Problem(display_path(root), 1, "", "no inventory file (hosts.yml) here"))
    return files, problems


def _vars_problems(
    policy: Policy, values: Any, file: str, located: Any, path: Path_, owner: str
) -> list[Problem]:
    """Variables an inventory sets that the policy's vars plugin overrides (they never apply)."""
    problems: list[Problem] = []
    if values is None:
        return problems
    if not isinstance(values, dict):
        return [Problem(file, located.line_for(path), render_path(path), "vars must be a mapping")]
    for name in values:
        if name in policy.parameters:
            where = policy.location("parameter", str(name))
            problems.append(
                Problem(
                    file,
                    located.line_for((*path, name)),
                    render_path((*path, name)),
                    f"{name} ({owner}) is a policy parameter: the policy's value always wins "
                    "over inventory variables, so this setting has no effect; change it in "
                    f"{where.file if where else 'policy/parameters/'} (reviewed in git)",
                )
            )
        elif name in POLICY_CONTEXT_VARS:
            problems.append(
                Problem(
                    file,
                    located.line_for((*path, name)),
                    render_path((*path, name)),
                    f"{name} ({owner}) is set by the policy's vars plugin; the inventory's value "
                    "has no effect",
                )
            )
    return problems


def _read_inventory(policy: Policy, files: list[Path]) -> _Inventory:
    inv = _Inventory(groups={}, members={}, parents={}, problems=[])

    def group(
        name: str, node: Any, path: Path_, file: str, located: Any, parent: str | None
    ) -> None:
        line = located.line_for(path)
        inv.groups.setdefault(name, (file, line))
        if parent is not None:
            inv.parents.setdefault(name, set()).add(parent)
        if node is None:
            return
        if not isinstance(node, dict):
            inv.problems.append(
                Problem(
                    file, line, render_path(path), "a group is a mapping of hosts, children, vars"
                )
            )
            return
        for key in node:
            if key not in _GROUP_KEYS:
                inv.problems.append(
                    Problem(
                        file,
                        located.line_for((*path, key)),
                        render_path((*path, key)),
                        f"unknown key {key!r}: a group holds only hosts, children and vars "
                        "(a group inside a group goes under children)",
                    )
                )
        inv.problems.extend(
            _vars_problems(
                policy, node.get("vars"), file, located, (*path, "vars"), f"group {name}"
            )
        )
        hosts = node.get("hosts")
        if hosts is not None and not isinstance(hosts, dict):
            inv.problems.append(
                Problem(
                    file,
                    located.line_for((*path, "hosts")),
                    render_path((*path, "hosts")),
                    "hosts must be a mapping of host name to its variables (or nothing)",
                )
            )
        for host, host_vars in (hosts or {}).items() if isinstance(hosts, dict) else ():
            where = (file, located.line_for((*path, "hosts", host)))
            inv.members.setdefault(str(host), {}).setdefault(name, where)
            inv.problems.extend(
                _vars_problems(
                    policy, host_vars, file, located, (*path, "hosts", host), f"host {host}"
                )
            )
        children = node.get("children")
        if children is not None and not isinstance(children, dict):
            inv.problems.append(
                Problem(
                    file,
                    located.line_for((*path, "children")),
                    render_path((*path, "children")),
                    "children must be a mapping of group names",
                )
            )
        for child, child_node in (children or {}).items() if isinstance(children, dict) else ():
            group(str(child), child_node, (*path, "children", child), file, located, name)

    for path in files:
        file = display_path(path)
        try:
            located = load_file(path, strict_tags=False)
        except YamlProblem as exc:
            inv.problems.append(Problem(file, exc.line, exc.field, exc.message))
            continue
        except OSError as exc:
            inv.problems.append(Problem(file, 1, "", f"cannot read: {exc.strerror or exc}"))
            continue
        if located.data is None:
            continue
        if not isinstance(located.data, dict):
            inv.problems.append(
                Problem(file, 1, "", "a YAML inventory is a mapping of groups (usually all:)")
            )
            continue
        for name, node in located.data.items():
            group(str(name), node, (name,), file, located, None)
    return inv


def _vars_dir_problems(policy: Policy, root: Path, inv: _Inventory) -> list[Problem]:
    """group_vars/ and host_vars/ beside the inventory: known names, no policy parameters."""
    problems: list[Problem] = []
    base = root if root.is_dir() else root.parent
    for kind, names in (
        ("group_vars", inv.groups.keys() | IMPLICIT_GROUPS),
        ("host_vars", inv.members),
    ):
        folder = base / kind
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(".") or entry.name.endswith(_IGNORED_SUFFIXES):
                continue
            name = entry.name if entry.is_dir() else entry.stem
            if entry.is_file() and entry.suffix not in (*_YAML_SUFFIXES, ".json"):
                name = entry.name
            what = "group" if kind == "group_vars" else "host"
            if name not in names:
                problems.append(
                    Problem(
                        display_path(entry),
                        1,
                        "",
                        f"{kind}/{entry.name}: no {what} {name!r} in the inventory "
                        "(Ansible would silently ignore these variables)",
                    )
                )
            files = sorted(entry.rglob("*")) if entry.is_dir() else [entry]
            for file in files:
                if not file.is_file() or file.suffix not in _YAML_SUFFIXES:
                    continue
                shown = display_path(file)
                try:
                    located = load_file(file, strict_tags=False)
                except YamlProblem as exc:
                    problems.append(Problem(shown, exc.line, exc.field, exc.message))
                    continue
                problems += _vars_problems(
                    policy, located.data, shown, located, (), f"{what} {name}"
                )
    return problems


def inventory_problems(policy: Policy, inventory: Path) -> tuple[list[Problem], dict[str, Any]]:
    """Check an Ansible inventory (a YAML file, or a directory with group_vars/) against the policy.

    Every host sits in exactly one tier group; every group is one the policy names (tiers,
    parameter groups, windows, applies_to, roster, waivers); no inventory variable sets a
    policy parameter (the policy's vars plugin would override it). Returns the problems and a
    summary (hosts per tier, groups) for a clean inventory.
    """
    files, problems = _inventory_files(inventory)
    inv = _read_inventory(policy, files)
    problems += inv.problems
    known = policy_groups(policy)
    tiers = list(policy.settings.tiers)
    for name, (file, line) in sorted(inv.groups.items(), key=lambda kv: kv[1]):
        if name in IMPLICIT_GROUPS or name in known:
            continue
        problems.append(
            Problem(
                file,
                line,
                name,
                f"group {name!r} is not known to the policy: it names the tiers "
                f"{', '.join(tiers)} and the groups "
                f"{', '.join(sorted(set(known) - set(tiers) - IMPLICIT_GROUPS)) or '-'} "
                "(a typo, or a group the policy should name first)",
            )
        )
    per_tier: dict[str, int] = dict.fromkeys(tiers, 0)
    for host in sorted(inv.members):
        in_tiers = [t for t in tiers if t in inv.host_groups(host)]
        listed = min(inv.members[host].values(), key=lambda w: (w[0], w[1]))
        if not in_tiers:
            problems.append(
                Problem(
                    listed[0],
                    listed[1],
                    host,
                    f"host {host!r} is in no tier group: put it in exactly one of "
                    f"{', '.join(tiers)} (policy.yml tiers)",
                )
            )
        elif len(in_tiers) > 1:
            places = ", ".join(
                f"{t} ({inv.members[host][t][0]}:{inv.members[host][t][1]})"
                if t in inv.members[host]
                else f"{t} (through a child group)"
                for t in in_tiers
            )
            problems.append(
                Problem(
                    listed[0],
                    listed[1],
                    host,
                    f"host {host!r} is in {len(in_tiers)} tier groups, {places}: a host has "
                    "exactly one tier",
                )
            )
        else:
            per_tier[in_tiers[0]] += 1
    if not inv.members and files:
        problems.append(Problem(display_path(files[0]), 1, "", "the inventory lists no hosts"))
    problems += _vars_dir_problems(policy, inventory, inv)
    summary = {
        "hosts": len(inv.members),
        "tiers": per_tier,
        "groups": sorted(set(inv.groups) - IMPLICIT_GROUPS),
    }
    return problems, summary


__all__ = [
    "RoleTask",
    "coverage_problems",
    "crosscheck_problems",
    "inventory_problems",
    "policy_groups",
    "role_tasks",
    "tasks_for_control",
]
