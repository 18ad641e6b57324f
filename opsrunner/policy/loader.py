"""The one policy loader: read policy/, validate every file and cross-reference, or say why not."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from opsrunner.paths import project_root
from opsrunner.policy.models import (
    Attestation,
    AttestationsFile,
    Clause,
    Control,
    ControlsFile,
    Notice,
    NotificationsFile,
    Parameter,
    ParametersFile,
    Person,
    Plan,
    PlanFile,
    RegulationFile,
    RosterFile,
    Settings,
    TargetsFile,
    Waiver,
    WaiversFile,
    Window,
    WindowsFile,
)
from opsrunner.policy.safeyaml import Located, Path_, YamlProblem, load_file, render_path

M = TypeVar("M", bound=BaseModel)

# Files the loader knows at the top of policy/; any other *.yml there is a typo or a stray file.
_TOP_FILES = (
    "policy.yml",
    "regulation.yml",
    "windows.yml",
    "roster.yml",
    "waivers.yml",
    "attestations.yml",
    "targets.yml",
    "notifications.yml",
)
_REQUIRED = ("policy.yml", "regulation.yml", "roster.yml")
_MAX_FILES = 500


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the policy, pointing at file, line and field."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:"
        return f"{where} {self.field}: {self.message}" if self.field else f"{where} {self.message}"


class PolicyError(Exception):
    """The policy is not valid; `problems` lists every reason, one per file:line:field."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Location:
    """Where a record is written: file (as displayed) and line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def default_policy_dir() -> Path:
    """$OPSRUNNER_POLICY_DIR, else <project>/policy."""
    env = os.environ.get("OPSRUNNER_POLICY_DIR")
    return Path(env).resolve() if env else project_root() / "policy"


def display_path(path: Path) -> str:
    """A path as a user reads it in messages: relative to the working directory when below it."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


@dataclass(frozen=True)
class Policy:
    """The whole validated policy. Immutable; build it with `load_policy`."""

    root: Path
    settings: Settings
    regulation: RegulationFile
    controls: tuple[Control, ...]
    parameters: Mapping[str, Parameter]
    windows: tuple[Window, ...]
    notices: tuple[Notice, ...]
    roster: RosterFile
    waivers: tuple[Waiver, ...]
    attestations: tuple[Attestation, ...]
    locations: Mapping[str, Location] = field(repr=False)
    sources: Mapping[str, Located] = field(repr=False)
    canonical: str = field(repr=False)
    plans: tuple[Plan, ...] = ()
    targets: TargetsFile | None = None
    notifications: NotificationsFile = field(default_factory=NotificationsFile)

    # -- lookups -----------------------------------------------------------------------------
    @property
    def clauses(self) -> tuple[Clause, ...]:
        """Every clause of the regulation, in document order."""
        return tuple(self.regulation.clauses)

    def clause(self, number: str) -> Clause:
        """A clause by number (KeyError if absent)."""
        for clause in self.regulation.clauses:
            if clause.number == number:
                return clause
        raise KeyError(number)

    def is_leaf(self, number: str) -> bool:
        """Whether a clause has no sub-clauses."""
        return not any(c.parent == number for c in self.regulation.clauses)

    def leaf_clauses(self) -> tuple[Clause, ...]:
        """Clauses without sub-clauses: each needs a control or a not-applicable reason."""
        parents = {c.parent for c in self.regulation.clauses}
        return tuple(c for c in self.regulation.clauses if c.number not in parents)

    def control(self, control_id: str) -> Control:
        """A control by id (KeyError if absent)."""
        for control in self.controls:
            if control.id == control_id:
                return control
        raise KeyError(control_id)

    def controls_for_clause(self, number: str, *, below: bool = True) -> tuple[Control, ...]:
        """Controls citing the clause (and, with `below`, any of its sub-clauses)."""

        def hit(source: str) -> bool:
            return source == number or (below and source.startswith(number + "."))

        return tuple(c for c in self.controls if any(hit(s) for s in c.source))

    def location(self, kind: str, key: str) -> Location | None:
        """Where a record is written: kind: control, clause, parameter, waiver, person, window."""
        return self.locations.get(f"{kind}:{key}")

    def person(self, user: str) -> Person:
        """A roster entry by user name (KeyError if absent)."""
        for person in self.roster.people:
            if person.user == user:
                return person
        raise KeyError(user)

    def digest(self) -> str:
        """sha256 of the canonical content: same policy, same digest in run records."""
        return hashlib.sha256(self.canonical.encode("utf-8")).hexdigest()

    # -- per host ----------------------------------------------------------------------------
    def tier_for(self, groups: Iterable[str]) -> str | None:
        """The first tier (policy.yml order) the host's groups contain, or None."""
        names = set(groups)
        return next((tier for tier in self.settings.tiers if tier in names), None)

    def params_for_host(self, groups: Iterable[str]) -> dict[str, Any]:
        """Every parameter value for a host: default → tier → groups in listed order."""
        names = set(groups)
        tier = self.tier_for(names)
        values: dict[str, Any] = {}
        for name, param in self.parameters.items():
            found = param.has_default
            value = param.default
            if tier is not None and tier in param.tiers:
                found, value = True, param.tiers[tier]
            for group, override in param.groups.items():
                if group in names:
                    found, value = True, override
            if found:
                values[name] = _plain(value)
        return values

    def windows_for(self, groups: Iterable[str]) -> tuple[Window, ...]:
        """Maintenance windows whose groups include one of the host's groups."""
        names = set(groups)
        return tuple(w for w in self.windows if names & set(w.groups))

    def notices_for(self, groups: Iterable[str]) -> tuple[Notice, ...]:
        """Notices on record for the host's windows."""
        windows = {w.name for w in self.windows_for(groups)}
        return tuple(n for n in self.notices if n.window in windows)

    def host_vars(self, groups: Iterable[str]) -> dict[str, Any]:
        """Everything the vars plugin gives a host: parameters plus opsrunner_* context."""
        names = set(groups)
        values = self.params_for_host(names)
        values["opsrunner_tier"] = self.tier_for(names) or "none"
        values["opsrunner_roster"] = self.roster.model_dump(mode="json")
        values["opsrunner_windows"] = [w.model_dump(mode="json") for w in self.windows_for(names)]
        values["opsrunner_notices"] = [n.model_dump(mode="json") for n in self.notices_for(names)]
        values["opsrunner_policy_digest"] = self.digest()
        # Disruptive steps the policy authorises on this host's tier (policy.yml disruptive).
        values.update({f"{role}_disruptive": True for role in self.disruptive_roles_for(names)})
        return values

    def disruptive_roles_for(self, groups: Iterable[str]) -> list[str]:
        """Roles whose disruptive steps the policy authorises on a host of these groups."""
        tier = self.tier_for(groups)
        if tier is None:
            return []
        return sorted(r for r, grant in self.settings.disruptive.items() if tier in grant.tiers)

    def waivers_for(
        self, control_id: str, host: str, groups: Iterable[str], now: dt.datetime
    ) -> tuple[Waiver, ...]:
        """Waivers that apply to this control on this host at `now`."""
        names = list(groups)
        return tuple(
            w for w in self.waivers if w.control == control_id and w.applies(host, names, now)
        )

    def attestations_for(self, control_id: str) -> tuple[Attestation, ...]:
        """Attestation records of one manual control, newest first."""
        found = [a for a in self.attestations if a.control == control_id]
        return tuple(sorted(found, key=lambda a: a.attested_at, reverse=True))


def _plain(value: Any) -> Any:
    """Parameter values as JSON-like data (dates become ISO strings) for Ansible."""
    return json.loads(json.dumps(value, default=str))


class _Collector:
    """Accumulates problems while the files are read, so one run reports all of them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []
        self.located: dict[str, Located] = {}

    def add(self, file: str, path: Path_, message: str, line: int | None = None) -> None:
        if line is None:
            located = self.located.get(file)
            line = located.line_for(path) if located else 1
        self.problems.append(Problem(file, line, render_path(path), message))

    def read(self, path: Path, model: type[M]) -> M | None:
        # A symlink out of the policy tree (controls/x.yml -> /etc/shadow) would print whatever
        # the CI user can read into the CI log: refuse it by its own name, unread.
        if not path.resolve().is_relative_to(self.root):
            shown = str(path.absolute())
            self.problems.append(
                Problem(shown, 1, "", "a symlink leaving the policy directory is refused (unread)")
            )
            return None
        name = display_path(path)
        try:
            located = load_file(path)
        except YamlProblem as exc:
            self.problems.append(Problem(name, exc.line, exc.field, exc.message))
            return None
        except OSError as exc:
            self.problems.append(Problem(name, 1, "", f"cannot read: {exc.strerror or exc}"))
            return None
        self.located[name] = located
        if not isinstance(located.data, dict):
            self.add(name, (), "the top level must be a YAML mapping (see docs/policy-format.md)")
            return None
        try:
            return model.model_validate(located.data)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc = tuple(part for part in error["loc"] if part != "[key]")
                message = str(error["msg"]).removeprefix("Value error, ")
                if message.startswith("@"):
                    # Model validators name the field they fault as "@field.sub: message".
                    field, _, message = message[1:].partition(": ")
                    loc = (*loc, *field.split("."))
                if error["type"] == "extra_forbidden":
                    message = "unknown field (not in the policy format; see docs/policy-format.md)"
                elif error["type"] == "missing":
                    message = "required field is missing"
                self.add(name, loc, message)
            return None


def load_policy(path: Path | None = None) -> Policy:
    """Load and validate the policy directory (`$OPSRUNNER_POLICY_DIR` or `<project>/policy`).

    Raises PolicyError listing every problem as `file:line: field: message`; nothing half-loaded
    is ever returned.
    """
    root = (path or default_policy_dir()).resolve()
    out = _Collector(root)
    if not root.is_dir():
        raise PolicyError([Problem(display_path(root), 1, "", "policy directory does not exist")])

    for name in _REQUIRED:
        if not (root / name).is_file():
            out.add(display_path(root / name), (), "required policy file is missing", line=1)
    for stray in sorted(root.glob("*.y*ml")):
        if stray.name not in _TOP_FILES:
            out.add(
                display_path(stray),
                (),
                f"unknown policy file (expected one of {', '.join(_TOP_FILES)})",
                line=1,
            )

    def top(name: str, model: type[M]) -> M | None:
        file = root / name
        return out.read(file, model) if file.is_file() else None

    settings = top("policy.yml", Settings)
    regulation = top("regulation.yml", RegulationFile)
    roster = top("roster.yml", RosterFile)
    windows_file = top("windows.yml", WindowsFile) or WindowsFile()
    waivers_file = top("waivers.yml", WaiversFile) or WaiversFile()
    attest_file = top("attestations.yml", AttestationsFile) or AttestationsFile()
    targets = top("targets.yml", TargetsFile)
    notifications = top("notifications.yml", NotificationsFile)

    control_files = sorted((root / "controls").glob("*.yml"))
    param_files = sorted((root / "parameters").glob("*.yml"))
    if len(control_files) + len(param_files) > _MAX_FILES:
        raise PolicyError(
            [Problem(display_path(root), 1, "", f"more than {_MAX_FILES} policy files")]
        )
    plan_files = sorted((root / "plans").glob("*.yml"))
    if len(control_files) + len(param_files) + len(plan_files) > _MAX_FILES:
        raise PolicyError(
            [Problem(display_path(root), 1, "", f"more than {_MAX_FILES} policy files")]
        )
    plans: list[tuple[str, Plan]] = []
    for plan_file in plan_files:
        loaded_plan = out.read(plan_file, PlanFile)
        if loaded_plan:
            plans.append((display_path(plan_file), loaded_plan.plan))
    if not control_files:
        out.add(display_path(root / "controls"), (), "no controls/*.yml files", line=1)
    controls: list[tuple[str, int, Control]] = []
    # When a controls file is broken, references to its controls would only add noise.
    before_controls = len(out.problems)
    for cfile in control_files:
        loaded = out.read(cfile, ControlsFile)
        if loaded:
            controls += [(display_path(cfile), i, c) for i, c in enumerate(loaded.controls)]
    controls_complete = len(out.problems) == before_controls
    parameters: list[tuple[str, str, Parameter]] = []
    for pfile in param_files:
        loaded_params = out.read(pfile, ParametersFile)
        if loaded_params:
            parameters += [(display_path(pfile), n, p) for n, p in loaded_params.parameters.items()]

    locations: dict[str, Location] = {}

    def at(file: str, path: Path_) -> Location:
        located = out.located.get(file)
        return Location(file, located.line_for(path) if located else 1)

    f_reg = display_path(root / "regulation.yml")
    f_win, f_ros = display_path(root / "windows.yml"), display_path(root / "roster.yml")
    f_wai, f_att = display_path(root / "waivers.yml"), display_path(root / "attestations.yml")

    # Regulation: unique numbers, every sub-clause under an existing parent, n/a only on leaves.
    numbers: set[str] = set()
    if regulation:
        parents = {c.parent for c in regulation.clauses}
        for i, clause in enumerate(regulation.clauses):
            where: Path_ = ("clauses", i, "number")
            if clause.number in numbers:
                out.add(f_reg, where, f"clause {clause.number} is listed twice")
            numbers.add(clause.number)
            locations[f"clause:{clause.number}"] = at(f_reg, ("clauses", i))
            if clause.parent and clause.parent not in numbers:
                out.add(
                    f_reg,
                    where,
                    f"clause {clause.number} comes before (or without) its parent {clause.parent}",
                )
            if clause.not_applicable is not None and clause.number in parents:
                out.add(
                    f_reg,
                    ("clauses", i, "not_applicable"),
                    "only a leaf clause can be marked not applicable",
                )

    # Controls: unique ids, known clauses.
    by_id: dict[str, Control] = {}
    for file, i, control in controls:
        if control.id in by_id:
            first = locations[f"control:{control.id}"]
            out.add(
                file, ("controls", i, "id"), f"control {control.id} is already defined at {first}"
            )
            continue
        by_id[control.id] = control
        locations[f"control:{control.id}"] = at(file, ("controls", i))
        if regulation:
            for j, source in enumerate(control.source):
                if source not in numbers:
                    out.add(
                        file,
                        ("controls", i, "source", j),
                        f"clause {source} is not in regulation.yml",
                    )

    # policy.yml disruptive: each role named there checks some automated control.
    if settings and controls_complete:
        checked = sorted({str(c.role) for c in by_id.values() if c.role})
        for role in settings.disruptive:
            if role not in checked:
                out.add(
                    display_path(root / "policy.yml"),
                    ("disruptive", role),
                    f"role {role!r} checks no control (roles: {', '.join(checked)})",
                )

    # Parameters: unique names, tiers from policy.yml, known clauses.
    by_name: dict[str, Parameter] = {}
    for file, name, param in parameters:
        if name in by_name:
            first = locations[f"parameter:{name}"]
            out.add(file, ("parameters", name), f"parameter {name} is already defined at {first}")
            continue
        by_name[name] = param
        locations[f"parameter:{name}"] = at(file, ("parameters", name))
        if settings:
            for tier in param.tiers:
                if tier not in settings.tiers:
                    out.add(
                        file,
                        ("parameters", name, "tiers", tier),
                        f"{tier!r} is not a tier of policy.yml",
                    )
        if regulation:
            for j, source in enumerate(param.source):
                if source not in numbers:
                    out.add(
                        file,
                        ("parameters", name, "source", j),
                        f"clause {source} is not in regulation.yml",
                    )

    # Windows and notices.
    window_names: set[str] = set()
    for i, window in enumerate(windows_file.windows):
        if window.name in window_names:
            out.add(f_win, ("windows", i, "name"), f"window {window.name!r} is defined twice")
        window_names.add(window.name)
        locations[f"window:{window.name}"] = at(f_win, ("windows", i))
    for i, notice in enumerate(windows_file.notices):
        if notice.window not in window_names:
            out.add(f_win, ("notices", i, "window"), f"no window named {notice.window!r}")

    # Roster.
    users: set[str] = set()
    if roster:
        for i, person in enumerate(roster.people):
            if person.user in users:
                out.add(f_ros, ("people", i, "user"), f"user {person.user!r} is listed twice")
            users.add(person.user)
            locations[f"person:{person.user}"] = at(f_ros, ("people", i))
            for fname in ("role", "previous_role"):
                role = getattr(person, fname)
                if role is not None and role not in roster.role_map:
                    out.add(f_ros, ("people", i, fname), f"role {role!r} is not in role_map")

    # Waivers: known control, bounded expiry, people on the roster.
    waiver_ids: set[str] = set()
    for i, waiver in enumerate(waivers_file.waivers):
        if waiver.id in waiver_ids:
            out.add(f_wai, ("waivers", i, "id"), f"waiver {waiver.id} is listed twice")
        waiver_ids.add(waiver.id)
        locations[f"waiver:{waiver.id}"] = at(f_wai, ("waivers", i))
        target = by_id.get(waiver.control)
        if target is None:
            if controls_complete:
                out.add(f_wai, ("waivers", i, "control"), f"unknown control id {waiver.control}")
        elif settings:
            limit = settings.waiver_max_days[target.severity]
            if waiver.expires_at - waiver.requested_at > dt.timedelta(days=limit):
                out.add(
                    f_wai,
                    ("waivers", i, "expires_at"),
                    f"more than {limit} days after requested_at "
                    f"(waiver_max_days for {target.severity} "
                    f"controls such as {target.id})",
                )
        if roster:
            for fname in ("requester", "approver"):
                user = getattr(waiver, fname)
                if user is not None and user not in users:
                    out.add(f_wai, ("waivers", i, fname), f"{user!r} is not on the roster")

    # Attestations: manual controls only, by people on the roster, each id once.
    attestation_ids: set[str] = set()
    for i, attestation in enumerate(attest_file.attestations):
        if attestation.id is not None:
            if attestation.id in attestation_ids:
                out.add(
                    f_att,
                    ("attestations", i, "id"),
                    f"attestation {attestation.id} is listed twice",
                )
            attestation_ids.add(attestation.id)
            locations[f"attestation:{attestation.id}"] = at(f_att, ("attestations", i))
        if roster and attestation.revoked_by is not None and attestation.revoked_by not in users:
            out.add(
                f_att,
                ("attestations", i, "revoked_by"),
                f"{attestation.revoked_by!r} is not on the roster",
            )
        target = by_id.get(attestation.control)
        if target is None:
            if controls_complete:
                out.add(
                    f_att,
                    ("attestations", i, "control"),
                    f"unknown control id {attestation.control}",
                )
        elif target.kind != "manual":
            out.add(
                f_att,
                ("attestations", i, "control"),
                f"{target.id} is automated; only manual controls are attested",
            )
        if roster and attestation.attested_by not in users:
            out.add(
                f_att,
                ("attestations", i, "attested_by"),
                f"{attestation.attested_by!r} is not on the roster",
            )

    # Emergency plans (5.1): one per grade, tiers of policy.yml, people on the roster.
    grades: dict[int, str] = {}
    plan_ids: set[str] = set()
    for file, plan in plans:
        locations[f"plan:{plan.id}"] = at(file, ("plan",))
        if plan.id in plan_ids:
            out.add(file, ("plan", "id"), f"plan {plan.id} is defined twice")
        plan_ids.add(plan.id)
        if plan.grade in grades:
            out.add(file, ("plan", "grade"), f"grade {plan.grade} already has {grades[plan.grade]}")
        grades.setdefault(plan.grade, plan.id)
        if settings:
            for j, tier in enumerate(plan.tiers):
                if tier not in settings.tiers:
                    out.add(file, ("plan", "tiers", j), f"{tier!r} is not a tier of policy.yml")
        if roster:
            named: list[tuple[Path_, str]] = [
                (("plan", "owner"), plan.owner),
                (("plan", "approved_by"), plan.approved_by),
            ]
            for j, duty in enumerate(plan.roles):
                named += [(("plan", "roles", j, "people", k), u) for k, u in enumerate(duty.people)]
            for where_, user in named:
                if user not in users:
                    out.add(file, where_, f"{user!r} is not on the roster")

    if notifications is not None:
        _check_notifications(
            out,
            display_path(root / "notifications.yml"),
            notifications,
            users if roster else None,
        )

    if out.problems:
        raise PolicyError(out.problems)
    if (
        settings is None or regulation is None or roster is None
    ):  # pragma: no cover - reported above
        raise PolicyError(
            [Problem(display_path(root), 1, "", "required policy files did not load")]
        )

    canonical = json.dumps(
        {
            "settings": settings.model_dump(mode="json"),
            "regulation": regulation.model_dump(mode="json"),
            "controls": [
                c.model_dump(mode="json") for c in sorted(by_id.values(), key=lambda c: c.id)
            ],
            "parameters": {n: p.model_dump(mode="json") for n, p in sorted(by_name.items())},
            "windows": windows_file.model_dump(mode="json"),
            "roster": roster.model_dump(mode="json"),
            "waivers": waivers_file.model_dump(mode="json"),
            "attestations": attest_file.model_dump(mode="json"),
            # Only when present, so a policy without them keeps the digest it had.
            **({"plans": [p.model_dump(mode="json") for _, p in plans]} if plans else {}),
            **({"targets": targets.model_dump(mode="json")} if targets else {}),
            **({"notifications": notifications.model_dump(mode="json")} if notifications else {}),
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return Policy(
        root=root,
        settings=settings,
        regulation=regulation,
        controls=tuple(sorted(by_id.values(), key=lambda c: c.id)),
        parameters=MappingProxyType(by_name),
        windows=tuple(windows_file.windows),
        notices=tuple(windows_file.notices),
        roster=roster,
        waivers=tuple(waivers_file.waivers),
        attestations=tuple(attest_file.attestations),
        locations=MappingProxyType(locations),
        sources=MappingProxyType(out.located),
        canonical=canonical,
        plans=tuple(sorted((p for _, p in plans), key=lambda p: p.grade)),
        targets=targets,
        notifications=notifications or NotificationsFile(),
    )


def _check_notifications(
    out: _Collector,
    file: str,
    notes: NotificationsFile,
    users: set[str] | None,
) -> None:
    """notifications.yml: people on the roster, channels and departments that exist."""
    emails = [n for n, c in notes.channels.items() if c.type == "email"]
    for name, dept in notes.departments.items():
        for k, user in enumerate(dept.people):
            if users is not None and user not in users:
                out.add(file, ("departments", name, "people", k), f"{user!r} is not on the roster")
        for k, channel in enumerate(dept.channels):
            if channel not in notes.channels:
                out.add(file, ("departments", name, "channels", k), f"no channel {channel!r}")
            elif notes.channels[channel].type == "email":
                out.add(
                    file,
                    ("departments", name, "channels", k),
                    f"{channel!r} is an e-mail channel; list addresses under emails",
                )
    for i, route in enumerate(notes.routes):
        for k, dept_name in enumerate(route.departments):
            if dept_name not in notes.departments:
                out.add(file, ("routes", i, "departments", k), f"no department {dept_name!r}")
        for k, user in enumerate(route.people):
            if users is not None and user not in users:
                out.add(file, ("routes", i, "people", k), f"{user!r} is not on the roster")
        for k, channel in enumerate(route.channels):
            if channel not in notes.channels:
                out.add(file, ("routes", i, "channels", k), f"no channel {channel!r}")
        if route.email_channel is not None:
            if route.email_channel not in emails:
                out.add(
                    file,
                    ("routes", i, "email_channel"),
                    f"no e-mail channel {route.email_channel!r}",
                )
        elif (route.departments or route.people) and len(emails) != 1:
            out.add(
                file,
                ("routes", i, "email_channel"),
                f"name the e-mail channel ({len(emails)} defined)",
            )
