"""Pydantic models of every policy file: one model per file, validated at the edge."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import struct
from collections.abc import Collection
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter  # type: ignore[import-untyped]
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from opsrunner.policy.frequency import FrequencyField

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")
Owner = Literal[
    "system_administrator",
    "data_administrator",
    "business_support",
    "business_department",
    "rnd",
    "management",
]
Kind = Literal["automated", "manual"]
ParamType = Literal["int", "float", "str", "bool", "list", "dict"]

CONTROL_ID_RE = r"^[A-Z][A-Z0-9]{1,7}-\d{3}$"
CLAUSE_RE = r"^\d+(\.\d+){0,2}$"
ControlId = Annotated[str, StringConstraints(pattern=CONTROL_ID_RE)]
ClauseNumber = Annotated[str, StringConstraints(pattern=CLAUSE_RE)]
Name = Annotated[str, StringConstraints(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
Text = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
UserName = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def _utc(value: dt.datetime) -> dt.datetime:
    if value.utcoffset() != dt.timedelta(0):
        raise ValueError("must be in UTC (end with Z or +00:00)")
    return value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


# Records kept in git (waivers, attestations) are in UTC, so diffs and comparisons never
# depend on the reviewer's zone.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
Clauses = Annotated[
    list[ClauseNumber],
    BeforeValidator(_as_list),
    Field(min_length=1),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": CLAUSE_RE},
                {"type": "array", "items": {"type": "string", "pattern": CLAUSE_RE}, "minItems": 1},
            ],
            "description": 'Clause number(s) from regulation.yml, e.g. ["3.2.1"].',
        }
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- policy.yml -------------------------------------------------------------------------------


class DisruptiveGrant(_Model):
    """Disruptive steps of one role that enforce always takes on hosts of some tiers."""

    tiers: list[Name] = Field(
        min_length=1,
        description="Tiers (from `tiers`) whose hosts get `<role>_disruptive: true`.",
    )
    reason: Text = Field(description="Why the policy authorises it (the clause and the risk).")


ReportGrade = Literal["A", "B", "C", "D"]


def _default_grades() -> dict[ReportGrade, float]:
    return {"A": 90.0, "B": 80.0, "C": 70.0, "D": 60.0}


class Settings(_Model):
    """policy.yml: the policy's name, tiers, weights and limits."""

    name: Text
    version: Text
    description: str = ""
    tiers: list[Name] = Field(
        min_length=1, description="Inventory groups in order; a host's tier is the first it is in."
    )
    severity_weights: dict[Severity, float] = Field(
        description="Weight of each severity in the scores."
    )
    waiver_max_days: dict[Severity, Annotated[int, Field(ge=1)]] = Field(
        description="The longest a waiver of a control of this severity may run."
    )
    scoring_model: Literal["xccdf", "flat", "flat_unweighted", "absolute"] = "xccdf"
    grades: dict[ReportGrade, Annotated[float, Field(ge=0, le=100)]] = Field(
        default_factory=_default_grades,
        description="Lowest effective score (percent) of each report grade; below D is F.",
    )
    disruptive: dict[Name, DisruptiveGrant] = Field(
        default_factory=dict,
        description=(
            "Per role: the tiers whose hosts enforce may always take the role's disruptive "
            "steps on (locking accounts, reboots, deleting). Elsewhere a run needs "
            "`opsrunner enforce --allow-disruptive ROLE`."
        ),
    )

    @model_validator(mode="after")
    def _complete(self) -> Settings:
        for label, table in (
            ("severity_weights", self.severity_weights),
            ("waiver_max_days", self.waiver_max_days),
        ):
            missing = [s for s in SEVERITIES if s not in table]
            if missing:
                raise ValueError(f"@{label}: {label} lacks {', '.join(missing)}")
        if len(set(self.tiers)) != len(self.tiers):
            raise ValueError("@tiers: tiers are listed twice")
        steps = [self.grades[g] for g in ("A", "B", "C", "D") if g in self.grades]
        if steps != sorted(steps, reverse=True) or len(set(steps)) != len(steps):
            raise ValueError("@grades: each grade needs a higher minimum than the one after it")
        for role, grant in self.disruptive.items():
            for i, tier in enumerate(grant.tiers):
                if tier not in self.tiers:
                    raise ValueError(
                        f"@disruptive.{role}.tiers.{i}: {tier!r} is not a tier of policy.yml "
                        f"(tiers: {', '.join(self.tiers)})"
                    )
        return self


# --- regulation.yml ---------------------------------------------------------------------------


class Clause(_Model):
    """One numbered clause of the regulation."""

    number: ClauseNumber
    heading_zh: str | None = Field(
        default=None, description="The regulation's own Chinese heading, where it has one."
    )
    heading: str | None = Field(default=None, description="English heading.")
    text: Text = Field(description="What the clause asks, in English.")
    not_applicable: str | None = Field(
        default=None,
        description="Why no control can apply to this leaf clause (instead of covering it).",
    )

    @property
    def depth(self) -> int:
        """1 for a chapter, 2 for a section, 3 for an item."""
        return self.number.count(".") + 1

    @property
    def parent(self) -> str | None:
        """The number of the enclosing clause, if any."""
        return self.number.rsplit(".", 1)[0] if "." in self.number else None


class RegulationFile(_Model):
    """regulation.yml: the regulation's own text as data."""

    title: Text
    title_zh: Text
    note: str = ""
    clauses: list[Clause] = Field(min_length=1)


# --- controls/*.yml ---------------------------------------------------------------------------


class Control(_Model):
    """One control: checked by a role (automated) or met by an attestation (manual)."""

    id: ControlId
    title: Text
    description: Text
    source: Clauses = Field(
        description="Clause numbers from regulation.yml this control implements."
    )
    owner: Owner
    severity: Severity
    weight: float = Field(1.0, gt=0)
    frequency: FrequencyField
    kind: Kind
    role: Name | None = Field(default=None, description="automated: the role that checks it.")
    task_prefix: str | None = Field(
        default=None, description="automated: the task-name prefix in the role (default: id)."
    )
    applies_to: list[Name] = Field(default_factory=lambda: ["all"], min_length=1)
    evidence_required: str | None = Field(
        default=None, description="manual: what the attestation must show."
    )

    @model_validator(mode="after")
    def _kind_fields(self) -> Control:
        if self.kind == "automated":
            if not self.role:
                raise ValueError("@role: an automated control names its role")
            if self.evidence_required is not None:
                raise ValueError("@evidence_required: evidence_required belongs to manual controls")
        else:
            if self.role or self.task_prefix:
                field = "role" if self.role else "task_prefix"
                raise ValueError(f"@{field}: a manual control has no role or task_prefix")
            if not (self.evidence_required or "").strip():
                raise ValueError(
                    "@evidence_required: a manual control says what an attestation must show"
                )
        return self

    @property
    def prefix(self) -> str:
        """The task-name prefix that ties role tasks to this control."""
        return self.task_prefix or self.id

    @property
    def family(self) -> str:
        """FW for FW-001."""
        return self.id.split("-", 1)[0]


class ControlsFile(_Model):
    """controls/<family or role>.yml."""

    controls: list[Control] = Field(min_length=1)


# --- parameters/*.yml -------------------------------------------------------------------------

_PYTYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


def value_matches(kind: str, value: object) -> bool:
    """Whether a YAML value has the declared parameter type (a bool is not an int here)."""
    if isinstance(value, bool) and kind != "bool":
        return False
    return isinstance(value, _PYTYPES[kind])


class Parameter(_Model):
    """A value roles read, per tier and group."""

    description: Text
    source: Clauses
    type: ParamType
    default: Any = None
    tiers: dict[Name, Any] = Field(default_factory=dict)
    groups: dict[Name, Any] = Field(
        default_factory=dict, description="Overrides applied in the order listed."
    )

    @model_validator(mode="after")
    def _typed(self) -> Parameter:
        values: list[tuple[str, object]] = []
        if "default" in self.model_fields_set:
            values.append(("default", self.default))
        values += [(f"tiers.{k}", v) for k, v in self.tiers.items()]
        values += [(f"groups.{k}", v) for k, v in self.groups.items()]
        for where, value in values:
            if not value_matches(self.type, value):
                raise ValueError(f"@{where}: {value!r} is not of type {self.type}")
        return self

    @property
    def has_default(self) -> bool:
        """Whether a default is given (hosts outside every tier and group get only that)."""
        return "default" in self.model_fields_set


class ParametersFile(_Model):
    """parameters/<role>.yml."""

    parameters: dict[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")], Parameter]


# --- windows.yml ------------------------------------------------------------------------------


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


def _cron(value: str) -> str:
    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise ValueError(f"{value!r} is not a 5-field cron expression")
    return value


class Window(_Model):
    """A maintenance window for some inventory groups (3.1.3)."""

    name: Name
    description: str = ""
    groups: list[Name] = Field(min_length=1)
    timezone: Annotated[str, AfterValidator(_zone)]
    start: Annotated[str, AfterValidator(_cron)] = Field(
        description="Cron expression, local to timezone."
    )
    duration_minutes: int = Field(gt=0, le=7 * 24 * 60)
    notice_hours: int = Field(
        ge=0, description="Notice must be on record this long before the start."
    )


class Notice(_Model):
    """An advance notice of maintenance, on record."""

    window: Name
    window_start: AwareDatetime
    sent_at: UtcDatetime
    audience: list[Text] = Field(min_length=1)
    ticket: Text
    channel: Literal["email", "webhook", "meeting", "ticket"] = "email"


class WindowsFile(_Model):
    """windows.yml."""

    windows: list[Window] = Field(default_factory=list)
    notices: list[Notice] = Field(default_factory=list)


# --- roster.yml -------------------------------------------------------------------------------

_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
)


def _ssh_fields(blob: bytes) -> list[bytes]:
    """Split an SSH wire-format key blob into its length-prefixed fields, exactly."""
    fields: list[bytes] = []
    offset = 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise ValueError("the key's base64 body is damaged (truncated field)")
        (length,) = struct.unpack(">I", blob[offset : offset + 4])
        offset += 4
        if offset + length > len(blob):
            raise ValueError("the key's base64 body is damaged (field runs past the end)")
        fields.append(blob[offset : offset + length])
        offset += length
    return fields


def _ssh_key(value: str) -> str:
    parts = value.split()
    if len(parts) < 2 or parts[0] not in _KEY_TYPES:
        raise ValueError(f"not an OpenSSH public key line (type one of {', '.join(_KEY_TYPES)})")
    try:
        fields = _ssh_fields(base64.b64decode(parts[1], validate=True))
        inner = fields[0].decode("ascii") if fields else ""
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("the key's base64 body is damaged") from exc
    if inner != parts[0]:
        raise ValueError(f"the key body says {inner!r} but the line says {parts[0]!r}")
    if parts[0] == "ssh-ed25519" and (len(fields) != 2 or len(fields[1]) != 32):
        raise ValueError("an ed25519 key body holds exactly one 32-byte key")
    return value


class RoleGrant(_Model):
    """What an account of a job role gets on the hosts."""

    description: str = ""
    groups: list[Name] = Field(default_factory=list)
    sudo: bool = False
    ssh: bool = True


class Person(_Model):
    """One person and the account they have, or had (3.3.1 to 3.3.2)."""

    user: UserName
    name: Text
    role: Name
    previous_role: Name | None = None
    status: Literal["active", "departed", "transferred"]
    email: str | None = None
    ssh_keys: list[Annotated[str, AfterValidator(_ssh_key)]] = Field(default_factory=list)
    hosts: list[Name] = Field(
        default_factory=lambda: ["all"], description="Inventory groups where the account lives."
    )
    end_date: dt.date | None = None
    transfer_date: dt.date | None = None

    @model_validator(mode="after")
    def _dates(self) -> Person:
        if self.status == "departed" and self.end_date is None:
            raise ValueError("@status: a departed person has an end_date")
        if self.status != "departed" and self.end_date is not None:
            raise ValueError("@end_date: end_date belongs to departed people")
        if self.status == "transferred" and (
            self.transfer_date is None or self.previous_role is None
        ):
            raise ValueError(
                "@status: a transferred person has a transfer_date and a previous_role"
            )
        if self.status != "transferred" and self.transfer_date is not None:
            raise ValueError("@transfer_date: transfer_date belongs to transferred people")
        return self


class RosterFile(_Model):
    """roster.yml."""

    role_map: dict[Name, RoleGrant] = Field(min_length=1)
    people: list[Person] = Field(default_factory=list)


# --- waivers.yml ------------------------------------------------------------------------------


class Scope(_Model):
    """Where a waiver applies: hosts and/or inventory groups."""

    hosts: list[Name] = Field(default_factory=list)
    groups: list[Name] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> Scope:
        if not self.hosts and not self.groups:
            raise ValueError("a waiver names at least one host or group")
        return self

    def covers(self, host: str, groups: Collection[str]) -> bool:
        """Whether a host (with its groups) is in scope."""
        return host in self.hosts or bool(set(self.groups) & set(groups))


class Waiver(_Model):
    """An accepted exception to a control, for a scope and a limited time."""

    id: Annotated[str, StringConstraints(pattern=r"^WVR-\d{4}-\d{3}$")]
    control: ControlId
    scope: Scope
    justification: Text
    requester: UserName
    approver: UserName | None = Field(
        default=None, description="Empty until approved; never the requester."
    )
    approved_at: UtcDatetime | None = None
    ticket: Text
    requested_at: UtcDatetime
    expires_at: UtcDatetime

    @model_validator(mode="after")
    def _consistent(self) -> Waiver:
        if self.approver is not None and self.approver == self.requester:
            raise ValueError(
                f"@approver: {self.approver!r} is the requester; a waiver needs a second person"
            )
        if (self.approver is None) != (self.approved_at is None):
            raise ValueError("@approved_at: approver and approved_at go together")
        if self.expires_at <= self.requested_at:
            raise ValueError("@expires_at: expires_at is not after requested_at")
        return self

    def status(self, now: dt.datetime) -> Literal["pending", "active", "expired"]:
        """pending (not approved), active, or expired at `now`."""
        if now >= self.expires_at:
            return "expired"
        return "pending" if self.approver is None else "active"

    def applies(self, host: str, groups: Collection[str], now: dt.datetime) -> bool:
        """Whether this waiver covers the host at `now`: approved by then, not yet expired.

        A waiver counts from its approval, never from its request: a finding checked before
        the approval stays a finding (scoring also compares the result's own time).
        """
        return (
            self.status(now) == "active"
            and self.approved_at is not None
            and now >= self.approved_at
            and self.scope.covers(host, groups)
        )


class WaiversFile(_Model):
    """waivers.yml."""

    waivers: list[Waiver] = Field(default_factory=list)


# --- attestations.yml -------------------------------------------------------------------------


class Evidence(_Model):
    """An evidence file: its name, and the sha256 under which the state directory keeps it."""

    file: Text
    sha256: Sha256
    size: int | None = Field(default=None, ge=0, description="Size in bytes when attested.")


class Attestation(_Model):
    """A manual control met by a person, with evidence, until a date (or until revoked)."""

    id: Annotated[str, StringConstraints(pattern=r"^ATT-\d{4}-\d{3}$")] | None = Field(
        default=None, description="ATT-<year>-<nnn>; `opsrunner attest` numbers every record."
    )
    control: ControlId
    attested_by: UserName
    attested_at: UtcDatetime
    evidence: Evidence
    more_evidence: list[Evidence] = Field(
        default_factory=list, description="Further evidence files beside the first."
    )
    valid_until: UtcDatetime
    note: str = ""
    scope: Scope | None = None
    revoked_at: UtcDatetime | None = None
    revoked_by: UserName | None = None
    revoke_reason: str | None = None

    @model_validator(mode="after")
    def _order(self) -> Attestation:
        if self.valid_until <= self.attested_at:
            raise ValueError("@valid_until: valid_until is not after attested_at")
        revocation = (self.revoked_at, self.revoked_by, self.revoke_reason)
        if any(v is not None for v in revocation) and not all(v for v in revocation):
            raise ValueError("@revoked_at: revoked_at, revoked_by and revoke_reason go together")
        if self.revoked_at is not None and self.revoked_at < self.attested_at:
            raise ValueError("@revoked_at: revoked_at is before attested_at")
        return self

    @property
    def evidence_files(self) -> tuple[Evidence, ...]:
        """Every evidence file of the record, the first one first."""
        return (self.evidence, *self.more_evidence)

    def revoked(self, now: dt.datetime) -> bool:
        """Whether the attestation was revoked at or before `now`."""
        return self.revoked_at is not None and self.revoked_at <= now

    def valid_at(self, now: dt.datetime) -> bool:
        """Whether the attestation holds at `now`: attested, not expired, not revoked."""
        return self.attested_at <= now < self.valid_until and not self.revoked(now)


class AttestationsFile(_Model):
    """attestations.yml."""

    attestations: list[Attestation] = Field(default_factory=list)


# --- plans/*.yml and targets.yml (chapters 5 and 7) --------------------------------------------

ScenarioKind = Literal["system_failure", "data_loss", "network_attack"]
SCENARIOS: tuple[ScenarioKind, ...] = ("system_failure", "data_loss", "network_attack")
IndicatorName = Literal[
    "availability", "performance", "data_accuracy", "security_incidents", "satisfaction"
]
INDICATORS: tuple[IndicatorName, ...] = (
    "availability",
    "performance",
    "data_accuracy",
    "security_incidents",
    "satisfaction",
)


class PlanRole(_Model):
    """Who does what during an emergency (5.1.1 roles)."""

    role: Text
    duty: Text
    people: list[UserName] = Field(min_length=1)


class Scenario(_Model):
    """What the plan does for one kind of emergency (5.1.1: the three scenario kinds)."""

    detection: Text
    steps: list[Text] = Field(min_length=1)
    recovery_target: Text


class Revision(_Model):
    """One change to the plan, and the drill or incident that asked for it (5.2.2)."""

    date: dt.date
    change: Text
    reason: str = ""


class Plan(_Model):
    """An emergency plan for one grade of systems (5.1.1, 5.1.2)."""

    id: Annotated[str, StringConstraints(pattern=r"^PLAN-[A-Z0-9-]{1,16}$")]
    title: Text
    grade: Annotated[int, Field(ge=1, le=4)] = Field(
        description="1 is the most important systems; set from importance and risk (5.1.2)."
    )
    tiers: list[Name] = Field(min_length=1, description="Tiers (policy.yml) this grade covers.")
    owner: UserName
    approved_by: UserName
    last_reviewed: dt.date
    review_every_days: int = Field(default=365, ge=1, le=730)
    response_minutes: int = Field(gt=0, description="Longest time from report to first action.")
    escalate_minutes: int = Field(gt=0, description="Report upward when unresolved this long.")
    resolve_hours: float = Field(gt=0, description="Target time to resolve an incident.")
    process: list[Text] = Field(min_length=1)
    roles: list[PlanRole] = Field(min_length=1)
    resources: list[Text] = Field(min_length=1)
    scenarios: dict[ScenarioKind, Scenario]
    revisions: list[Revision] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> Plan:
        missing = [s for s in SCENARIOS if s not in self.scenarios]
        if missing:
            raise ValueError(f"@scenarios: the plan lacks {', '.join(missing)}")
        return self

    def review_due(self) -> dt.date:
        """The date by which the plan must be reviewed again."""
        return self.last_reviewed + dt.timedelta(days=self.review_every_days)


class PlanFile(_Model):
    """plans/<grade>.yml: one emergency plan."""

    plan: Plan


class Indicator(_Model):
    """One indicator of 7.1.1 and its target (7.1.2)."""

    description: Text
    unit: Text
    target: float
    better: Literal["higher", "lower"]

    def met(self, value: float) -> bool:
        """Whether a measured value meets the target."""
        return value >= self.target if self.better == "higher" else value <= self.target


class SupportTarget(_Model):
    """Response and resolution targets of one ticket complexity (6.3.2)."""

    first_response_minutes: float = Field(gt=0)
    resolve_hours: float = Field(gt=0)


class Grade(_Model):
    """A grade of the period assessment: the least it takes to earn it."""

    grade: Annotated[str, StringConstraints(pattern=r"^[A-Z]$")]
    min_indicators_met: int = Field(ge=0, le=5)
    min_compliance: float = Field(ge=0, le=100)


class TargetsFile(_Model):
    """targets.yml: the indicators' targets (7.1.2), support targets (6.3.2) and grades."""

    indicators: dict[IndicatorName, Indicator]
    support: dict[Literal["simple", "complex"], SupportTarget]
    grades: list[Grade] = Field(min_length=1, description="Best first; the last is the floor.")

    @model_validator(mode="after")
    def _complete(self) -> TargetsFile:
        missing = [i for i in INDICATORS if i not in self.indicators]
        if missing:
            raise ValueError(f"@indicators: targets.yml lacks {', '.join(missing)}")
        for kind in ("simple", "complex"):
            if kind not in self.support:
                raise ValueError(f"@support: targets.yml lacks support.{kind}")
        return self


# --- notifications.yml (3.1.3, 3.4, 5.3.1) ----------------------------------------------------

MessageKind = Literal["notice", "alert", "change"]
MESSAGE_KINDS: tuple[MessageKind, ...] = ("notice", "alert", "change")
SecretName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
EmailAddress = Annotated[
    str, StringConstraints(pattern=r"^[^@\s<>\"',;]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
]
HttpUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$")]


class EmailChannel(_Model):
    """E-mail over SMTP: STARTTLS and authentication; the password is a secret's name."""

    type: Literal["email"]
    host: Text
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = Field(default=True, description="Upgrade with STARTTLS before authenticating.")
    ca_file: str | None = Field(
        default=None, description="CA bundle that signs the server's certificate (default: system)."
    )
    sender: EmailAddress
    username: str | None = None
    password_secret: SecretName | None = Field(
        default=None, description="Name of the SMTP password in the secrets file."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _auth(self) -> EmailChannel:
        if (self.username is None) != (self.password_secret is None):
            raise ValueError("@password_secret: username and password_secret go together")
        if self.password_secret is not None and not self.starttls:
            raise ValueError("@starttls: a password is never sent without STARTTLS")
        return self


class WebhookChannel(_Model):
    """HTTP POST of an Alertmanager-like JSON body, signed with HMAC-SHA256."""

    type: Literal["webhook"]
    url: HttpUrl
    hmac_secret: SecretName = Field(description="Name of the HMAC key in the secrets file.")
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)


class ChatChannel(_Model):
    """A chat group robot: DingTalk, WeCom (企业微信) or Feishu/Lark."""

    type: Literal["dingtalk", "wecom", "feishu"]
    base_url: HttpUrl | None = Field(
        default=None, description="The robot API's base URL (default: the vendor's public one)."
    )
    token_secret: SecretName = Field(
        description="Name of the robot's access token / key / hook id in the secrets file."
    )
    sign_secret: SecretName | None = Field(
        default=None, description="DingTalk and Feishu: name of the signing secret."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _sign(self) -> ChatChannel:
        if self.type == "wecom" and self.sign_secret is not None:
            raise ValueError("@sign_secret: WeCom robots do not sign requests")
        return self


NotifyChannel = Annotated[EmailChannel | WebhookChannel | ChatChannel, Field(discriminator="type")]


class Department(_Model):
    """Who a department is for notices: roster people, mailing addresses and chat groups."""

    description: str = ""
    people: list[UserName] = Field(default_factory=list, description="Roster users (their email).")
    emails: list[EmailAddress] = Field(default_factory=list)
    channels: list[Name] = Field(
        default_factory=list, description="Webhook or chat channels that reach the department."
    )

    @model_validator(mode="after")
    def _reachable(self) -> Department:
        if not (self.people or self.emails or self.channels):
            raise ValueError("a department names at least one person, address or channel")
        return self


class Route(_Model):
    """Who receives which messages: by kind, host group and severity."""

    kinds: list[MessageKind] = Field(min_length=1)
    groups: list[Name] = Field(
        default_factory=lambda: ["all"], description="Host groups the message concerns."
    )
    severities: list[Severity] = Field(
        default_factory=lambda: list(SEVERITIES), description="Alerts: which severities."
    )
    departments: list[Name] = Field(default_factory=list)
    people: list[UserName] = Field(default_factory=list)
    channels: list[Name] = Field(default_factory=list, description="Webhook or chat channels.")
    email_channel: Name | None = Field(
        default=None, description="E-mail channel for people and addresses (default: the only one)."
    )

    @model_validator(mode="after")
    def _someone(self) -> Route:
        if not (self.departments or self.people or self.channels):
            raise ValueError("a route names at least one department, person or channel")
        return self


class AlertRules(_Model):
    """When alerts are raised, repeated and how deliveries are retried."""

    repeat_minutes: int = Field(default=240, ge=1, description="Repeat a firing alert this often.")
    unknown_runs: int = Field(
        default=3, ge=1, description="A host unknown this many runs in a row."
    )
    expiring_days: int = Field(
        default=14, ge=0, description="Waivers/attestations expiring this soon."
    )
    fail_severities: list[Severity] = Field(default=["high", "critical"])
    stale: bool = Field(
        default=True, description="Alert on evidence older than the control allows."
    )


class Delivery(_Model):
    """Retries of a failed delivery: exponential backoff, then recorded as failed."""

    max_attempts: int = Field(default=12, ge=1, le=100)
    backoff_seconds: float = Field(default=30.0, gt=0)
    max_backoff_seconds: float = Field(default=3600.0, gt=0)
    notice_lead_hours: float = Field(
        default=6.0, ge=0, description="Send a notice this long before its notice period begins."
    )


class NotificationsFile(_Model):
    """notifications.yml: channels, departments, routes, alert rules (secrets live elsewhere)."""

    secrets_file: str | None = Field(
        default=None,
        description="YAML file (plain, owner-only, or ansible-vault) holding the secrets "
        "(default: <state dir>/notify-secrets.yml).",
    )
    vault_password_file: str | None = Field(
        default=None, description="Password file for an ansible-vault encrypted secrets file."
    )
    channels: dict[Name, NotifyChannel] = Field(default_factory=dict)
    departments: dict[Name, Department] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    alerts: AlertRules = AlertRules()
    delivery: Delivery = Delivery()


FILE_MODELS: dict[str, type[_Model]] = {
    "policy.yml": Settings,
    "regulation.yml": RegulationFile,
    "controls/*.yml": ControlsFile,
    "parameters/*.yml": ParametersFile,
    "windows.yml": WindowsFile,
    "roster.yml": RosterFile,
    "waivers.yml": WaiversFile,
    "attestations.yml": AttestationsFile,
    "notifications.yml": NotificationsFile,
    "plans/*.yml": PlanFile,
    "targets.yml": TargetsFile,
}
