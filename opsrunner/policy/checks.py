"""Checks beyond one policy: clause coverage, and controls against role task names both ways."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsrunner.policy.loader import Policy, Problem, display_path
from opsrunner.policy.safeyaml import Path_, YamlProblem, load_file

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


__all__ = [
    "RoleTask",
    "coverage_problems",
    "crosscheck_problems",
    "role_tasks",
    "tasks_for_control",
]
