"""Attest manual controls: records in policy/attestations.yml, evidence kept by sha256."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from opsrunner.policy.loader import Policy
from opsrunner.policy.models import Attestation, Control, Evidence, Scope
from opsrunner.policy.recordfile import append_item, commit, quote, stamp
from opsrunner.policy.safeyaml import parse_text
from opsrunner.runner.evidence import evidence_dir

FILE = "attestations.yml"
# A control names the job its owner does (models.Owner); the roster names the role each person
# holds (roster.yml role_map). Who may attest a control: an active person in one of these roles.
OWNER_ROLES: dict[str, tuple[str, ...]] = {
    "system_administrator": ("sysadmin",),
    "data_administrator": ("data_administrator",),
    "business_support": ("business_support",),
    # The roster has no business-department accounts; business support speaks for them (2.1.3).
    "business_department": ("business_support",),
    "rnd": ("developer",),
    "management": ("manager",),
}
# EMG-001 (written plans) holds only while every plan's review is current.
PLANS_CONTROL = "EMG-001"


class AttestError(Exception):
    """An attestation that is refused; nothing was written."""


def attested_dir(state_dir: Path) -> Path:
    """Where attested evidence files live: <state>/evidence/attested/<sha[:2]>/<sha>.

    A level below the run evidence, so pruning run evidence (which walks evidence/*/*) never
    removes a file an attestation in git still points to.
    """
    return evidence_dir(state_dir) / "attested"


def evidence_file(state_dir: Path, sha256: str) -> Path:
    """The kept copy of one attested evidence file."""
    return attested_dir(state_dir) / sha256[:2] / sha256


def _hash(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _keep(state_dir: Path, source: Path, sha: str) -> None:
    target = evidence_file(state_dir, sha)
    if target.is_file():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(fd)
    shutil.copyfile(source, tmp)
    Path(tmp).chmod(0o440)
    Path(tmp).replace(target)


def _next_id(policy: Policy, year: int) -> str:
    prefix = f"ATT-{year}-"
    taken = [
        int(a.id[len(prefix) :])
        for a in policy.attestations
        if a.id is not None and a.id.startswith(prefix)
    ]
    return f"{prefix}{max(taken, default=0) + 1:03d}"


def _manual(policy: Policy, control_id: str) -> Control:
    try:
        control = policy.control(control_id)
    except KeyError:
        raise AttestError(f"control: unknown control id {control_id!r}") from None
    if control.kind != "manual":
        raise AttestError(
            f"control: {control.id} is automated (role {control.role}); its runs are its evidence"
        )
    return control


def _attester(policy: Policy, control: Control, user: str) -> None:
    try:
        person = policy.person(user)
    except KeyError:
        raise AttestError(f"--by: {user!r} is not on the roster (policy/roster.yml)") from None
    if person.status != "active":
        raise AttestError(f"--by: {user} is {person.status}; only active staff attest")
    allowed = OWNER_ROLES[control.owner]
    if person.role not in allowed:
        raise AttestError(
            f"--by: {user} is {person.role}; {control.id} is owned by {control.owner} "
            f"(roster role {' or '.join(allowed)})"
        )


def _revoker(policy: Policy, control: Control, user: str) -> None:
    # Management may withdraw any attestation; others only those of their own controls.
    try:
        if policy.person(user).role == "manager" and policy.person(user).status == "active":
            return
    except KeyError:
        pass
    _attester(policy, control, user)


def plans_review_due(policy: Policy) -> dt.datetime | None:
    """The earliest next-review date of the emergency plans, as a UTC midnight (None: no plans)."""
    if not policy.plans:
        return None
    due = min(p.review_due() for p in policy.plans)
    return dt.datetime(due.year, due.month, due.day, tzinfo=dt.UTC)


def attest(
    policy: Policy,
    *,
    control: str,
    evidence: Sequence[Path],
    by: str,
    state_dir: Path,
    valid_until: dt.datetime | None = None,
    hosts: Sequence[str] = (),
    groups: Sequence[str] = (),
    note: str = "",
    limits: Sequence[tuple[dt.datetime, str]] = (),
    now: dt.datetime | None = None,
) -> Attestation:
    """Record that `by` attests `control` with these evidence files; keep the files by hash.

    Refuses an unknown or automated control, missing or empty evidence, a validity beyond the
    control's frequency (and for EMG-001 beyond the plans' next review, and beyond any of
    `limits`: (time, why) such as an incident action item's due date), and an attester not on
    the roster or without the role the control's owner names. Nothing is written then.
    """
    moment = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    target = _manual(policy, control)
    _attester(policy, target, by)
    if not evidence:
        raise AttestError(f"--evidence: {target.id} needs evidence: {target.evidence_required}")
    files: list[tuple[Path, str, int]] = []
    for path in evidence:
        if not path.is_file():
            raise AttestError(f"--evidence: {path}: no such file")
        sha, size = _hash(path)
        if size == 0:
            raise AttestError(f"--evidence: {path} is empty")
        files.append((path, sha, size))
    longest = moment + target.frequency.max_age
    reason = f"{target.id} is due {target.frequency}"
    due = plans_review_due(policy) if target.id == PLANS_CONTROL else None
    bounds = list(limits)
    if due is not None:
        bounds.append((due, f"the emergency plans are due for review on {due.date()}"))
    for bound, why in sorted(bounds):
        if bound <= moment:
            raise AttestError(f"control: {target.id} cannot be attested now: {why}")
        if bound < longest:
            longest, reason = bound, why
    if valid_until is None:
        valid_until = longest
    elif valid_until.tzinfo is None:
        raise AttestError("--valid-until: give a time zone (…Z) or a date")
    valid_until = valid_until.astimezone(dt.UTC)
    if valid_until > longest:
        raise AttestError(
            f"--valid-until: {stamp(valid_until)} is after {stamp(longest)}: {reason}"
        )
    if valid_until <= moment:
        raise AttestError(f"--valid-until: {stamp(valid_until)} is not in the future")
    scope = Scope(hosts=list(hosts), groups=list(groups)) if hosts or groups else None
    items = [Evidence(file=p.name, sha256=sha, size=size) for p, sha, size in files]
    record = Attestation(
        id=_next_id(policy, moment.year),
        control=target.id,
        attested_by=by,
        attested_at=moment,
        evidence=items[0],
        more_evidence=items[1:],
        valid_until=valid_until,
        note=note,
        scope=scope,
    )

    def ev(item: Evidence) -> str:
        return f"{{file: {quote(item.file)}, sha256: {item.sha256}, size: {item.size}}}"

    block = [
        f"  - id: {record.id}\n",
        f"    control: {record.control}\n",
        f"    attested_by: {by}\n",
        f"    attested_at: {stamp(moment)}\n",
        f"    evidence: {ev(items[0])}\n",
    ]
    if items[1:]:
        block.append("    more_evidence:\n")
        block += [f"      - {ev(item)}\n" for item in items[1:]]
    block.append(f"    valid_until: {stamp(valid_until)}\n")
    if scope is not None:
        shown_hosts, shown_groups = ", ".join(scope.hosts), ", ".join(scope.groups)
        block.append(f"    scope: {{hosts: [{shown_hosts}], groups: [{shown_groups}]}}\n")
    if note:
        block.append(f"    note: {quote(note)}\n")
    path = policy.root / FILE
    text = path.read_text(encoding="utf-8") if path.exists() else "attestations: []\n"
    # Keep the evidence first: a record in git always has its file under the state dir.
    for source, sha, _ in files:
        _keep(state_dir, source, sha)
    commit(policy, FILE, append_item(text, "attestations", "".join(block)))
    return record


def find(policy: Policy, attestation_id: str) -> tuple[int, Attestation]:
    """An attestation by id, with its index in attestations.yml."""
    for index, record in enumerate(policy.attestations):
        if record.id == attestation_id:
            return index, record
    raise AttestError(f"no attestation {attestation_id} in {FILE}")


def revoke(
    policy: Policy,
    attestation_id: str,
    *,
    by: str,
    reason: str,
    now: dt.datetime | None = None,
) -> Attestation:
    """Mark an attestation revoked from now: its control fails from then on."""
    moment = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    index, record = find(policy, attestation_id)
    if record.revoked_at is not None:
        raise AttestError(f"{attestation_id} was already revoked {stamp(record.revoked_at)}")
    if not reason.strip():
        raise AttestError("--reason: say why the attestation no longer holds")
    _revoker(policy, policy.control(record.control), by)
    path = policy.root / FILE
    text = path.read_text(encoding="utf-8")
    located = parse_text(text)
    anchor = located.lines[("attestations", index, "attested_by")]
    lines = text.splitlines(keepends=True)
    key_line = lines[anchor - 1]
    indent = key_line[: len(key_line) - len(key_line.lstrip())]
    insert = [
        f"{indent}revoked_at: {stamp(moment)}\n",
        f"{indent}revoked_by: {by}\n",
        f"{indent}revoke_reason: {quote(reason.strip())}\n",
    ]
    updated = commit(policy, FILE, "".join([*lines[:anchor], *insert, *lines[anchor:]]))
    return find(updated, attestation_id)[1]


def state(record: Attestation, now: dt.datetime) -> str:
    """valid, expired, revoked or future at `now`."""
    if record.revoked(now):
        return "revoked"
    if now < record.attested_at:
        return "future"
    return "valid" if now < record.valid_until else "expired"


def expiring(
    policy: Policy, within: dt.timedelta, now: dt.datetime | None = None
) -> list[Attestation]:
    """The newest record per control when it is valid now and expires within `within`."""
    moment = now or dt.datetime.now(dt.UTC)
    found = []
    for control in policy.controls:
        records = policy.attestations_for(control.id)
        newest = records[0] if records else None
        if newest and state(newest, moment) == "valid" and newest.valid_until - moment <= within:
            found.append(newest)
    return sorted(found, key=lambda a: a.valid_until)


@dataclass(frozen=True)
class Check:
    """One evidence file checked against the hash its record holds."""

    file: str
    sha256: str
    ok: bool
    message: str


def verify(
    policy: Policy, attestation_id: str, state_dir: Path, against: Sequence[Path] = ()
) -> list[Check]:
    """Check the kept evidence files (and any copies given) against the record's hashes."""
    _, record = find(policy, attestation_id)
    checks: list[Check] = []
    for item in record.evidence_files:
        kept = evidence_file(state_dir, item.sha256)
        if not kept.is_file():
            checks.append(Check(item.file, item.sha256, False, f"missing: {kept}"))
            continue
        sha, size = _hash(kept)
        if sha != item.sha256:
            checks.append(Check(item.file, item.sha256, False, f"{kept} now hashes to {sha}"))
        elif item.size is not None and size != item.size:
            checks.append(Check(item.file, item.sha256, False, f"size {size}, not {item.size}"))
        else:
            checks.append(Check(item.file, item.sha256, True, f"kept copy matches ({size} bytes)"))
    wanted = {item.sha256: item.file for item in record.evidence_files}
    for path in against:
        if not path.is_file():
            checks.append(Check(str(path), "", False, "no such file"))
            continue
        sha, _ = _hash(path)
        ok = sha in wanted
        message = f"matches {wanted[sha]}" if ok else f"sha256 {sha} is not in {attestation_id}"
        checks.append(Check(str(path), sha, ok, message))
    return checks
