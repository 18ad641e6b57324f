"""Request, approve and watch waivers: waivers.yml edited as text, atomically, re-validated."""

from __future__ import annotations

import datetime as dt

from opsrunner.policy.loader import Policy
from opsrunner.policy.models import Scope, Waiver
from opsrunner.policy.recordfile import append_item, commit, quote, stamp
from opsrunner.policy.safeyaml import parse_text


class WaiverError(Exception):
    """A waiver request or approval that the policy refuses."""


_stamp = stamp
_quote = quote


def _next_id(policy: Policy, year: int) -> str:
    prefix = f"WVR-{year}-"
    taken = [int(w.id[len(prefix) :]) for w in policy.waivers if w.id.startswith(prefix)]
    return f"{prefix}{max(taken, default=0) + 1:03d}"


def _commit(policy: Policy, new_text: str) -> Policy:
    """Validate the whole policy with the new waivers.yml in a scratch copy, then swap it in."""
    return commit(policy, "waivers.yml", new_text)


def request(
    policy: Policy,
    *,
    control: str,
    hosts: list[str],
    groups: list[str],
    justification: str,
    requester: str,
    ticket: str,
    expires_at: dt.datetime,
    now: dt.datetime | None = None,
) -> Waiver:
    """Append a pending waiver; refuse unknown controls, people, and expiry beyond the maximum."""
    moment = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    try:
        target = policy.control(control)
    except KeyError:
        raise WaiverError(f"unknown control id {control}") from None
    try:
        policy.person(requester)
    except KeyError:
        raise WaiverError(f"requester {requester!r} is not on the roster") from None
    limit = policy.settings.waiver_max_days[target.severity]
    if expires_at.tzinfo is None:
        raise WaiverError("the expiry needs a time zone; give it in UTC (…Z)")
    if expires_at - moment > dt.timedelta(days=limit):
        raise WaiverError(
            f"expiry {_stamp(expires_at)} is more than {limit} days away; waiver_max_days for "
            f"{target.severity} controls such as {target.id} is {limit}"
        )
    waiver = Waiver(
        id=_next_id(policy, moment.year),
        control=control,
        scope=Scope(hosts=hosts, groups=groups),
        justification=justification,
        requester=requester,
        ticket=ticket,
        requested_at=moment,
        expires_at=expires_at.astimezone(dt.UTC),
    )
    block = (
        f"  - id: {waiver.id}\n"
        f"    control: {waiver.control}\n"
        f"    scope: {{hosts: [{', '.join(hosts)}], groups: [{', '.join(groups)}]}}\n"
        f"    justification: {_quote(justification)}\n"
        f"    requester: {requester}\n"
        f"    ticket: {_quote(ticket)}\n"
        f"    requested_at: {_stamp(waiver.requested_at)}\n"
        f"    expires_at: {_stamp(waiver.expires_at)}\n"
    )
    path = policy.root / "waivers.yml"
    text = path.read_text(encoding="utf-8") if path.exists() else "waivers: []\n"
    _commit(policy, append_item(text, "waivers", block))
    return waiver


def approve(
    policy: Policy, waiver_id: str, approver: str, now: dt.datetime | None = None
) -> Waiver:
    """Record the approver and time on a pending waiver; never the requester's own approval."""
    moment = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    index = next((i for i, w in enumerate(policy.waivers) if w.id == waiver_id), None)
    if index is None:
        raise WaiverError(f"no waiver {waiver_id}")
    waiver = policy.waivers[index]
    if waiver.approver is not None:
        raise WaiverError(f"{waiver_id} is already approved by {waiver.approver}")
    if approver == waiver.requester:
        raise WaiverError(f"{approver} requested {waiver_id}; a different person must approve it")
    try:
        policy.person(approver)
    except KeyError:
        raise WaiverError(f"approver {approver!r} is not on the roster") from None
    if waiver.status(moment) == "expired":
        raise WaiverError(f"{waiver_id} expired on {_stamp(waiver.expires_at)}; request a new one")
    path = policy.root / "waivers.yml"
    text = path.read_text(encoding="utf-8")
    located = parse_text(text)
    anchor = located.lines[("waivers", index, "requester")]
    lines = text.splitlines(keepends=True)
    key_line = lines[anchor - 1]
    indent = key_line[: len(key_line) - len(key_line.lstrip())]
    if key_line.lstrip().startswith("- "):
        indent += "  "
    insert = [f"{indent}approver: {approver}\n", f"{indent}approved_at: {_stamp(moment)}\n"]
    new_text = "".join([*lines[:anchor], *insert, *lines[anchor:]])
    updated = _commit(policy, new_text)
    return next(w for w in updated.waivers if w.id == waiver_id)


def expiring(policy: Policy, within: dt.timedelta, now: dt.datetime | None = None) -> list[Waiver]:
    """Active waivers that expire within `within` of `now`, soonest first."""
    moment = now or dt.datetime.now(dt.UTC)
    found = [
        w
        for w in policy.waivers
        if w.status(moment) == "active" and w.expires_at - moment <= within
    ]
    return sorted(found, key=lambda w: w.expires_at)
