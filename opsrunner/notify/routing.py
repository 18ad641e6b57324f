"""Who receives a message: the policy's routes resolved to channel and address pairs."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from opsrunner.notify.secrets import Secrets
from opsrunner.policy.loader import Policy


@dataclasses.dataclass(frozen=True)
class Recipient:
    """One delivery target: an e-mail address on an e-mail channel, or a webhook/chat channel."""

    channel: str
    address: str
    via: str  # why: "department finance", "person alice", "route 2"


@dataclasses.dataclass(frozen=True)
class Audience:
    """Resolved recipients, the departments and people they stand for, and who was unreachable."""

    recipients: tuple[Recipient, ...]
    names: tuple[str, ...]
    unreachable: tuple[str, ...]


def _route_matches(
    kinds: Iterable[str],
    groups: Iterable[str],
    severities: Iterable[str],
    kind: str,
    host_groups: set[str],
    severity: str | None,
) -> bool:
    if kind not in kinds:
        return False
    route_groups = set(groups)
    if "all" not in route_groups and not route_groups & host_groups:
        return False
    return severity is None or severity in set(severities)


def audience(
    policy: Policy, kind: str, groups: Iterable[str], severity: str | None = None
) -> Audience:
    """Everyone the routes name for this kind of message about hosts in these groups."""
    notes = policy.notifications
    host_groups = set(groups)
    emails = [n for n, c in notes.channels.items() if c.type == "email"]
    found: dict[tuple[str, str], Recipient] = {}
    names: list[str] = []
    unreachable: list[str] = []

    def person(user: str, channel: str | None, via: str) -> None:
        try:
            entry = policy.person(user)
        except KeyError:
            unreachable.append(f"{user} (not on the roster)")
            return
        if entry.status == "departed":
            return  # left the company: no longer told anything
        if not entry.email or channel is None:
            unreachable.append(f"{user} (no e-mail address)" if channel else f"{user} (no channel)")
            return
        found.setdefault((channel, entry.email), Recipient(channel, entry.email, via))

    for index, route in enumerate(notes.routes):
        if not _route_matches(
            route.kinds, route.groups, route.severities, kind, host_groups, severity
        ):
            continue
        mail = route.email_channel or (emails[0] if len(emails) == 1 else None)
        for name in route.departments:
            dept = notes.departments[name]
            names.append(name)
            for user in dept.people:
                person(user, mail, f"department {name}")
            for address in dept.emails:
                if mail is None:
                    unreachable.append(f"{address} (no e-mail channel)")
                else:
                    found.setdefault(
                        (mail, address), Recipient(mail, address, f"department {name}")
                    )
            for channel in dept.channels:
                found.setdefault(
                    (channel, channel), Recipient(channel, channel, f"department {name}")
                )
        for user in route.people:
            names.append(user)
            person(user, mail, f"person {user}")
        for channel in route.channels:
            found.setdefault((channel, channel), Recipient(channel, channel, f"route {index}"))
    return Audience(
        tuple(sorted(found.values(), key=lambda r: (r.channel, r.address))),
        tuple(dict.fromkeys(names)),
        tuple(dict.fromkeys(unreachable)),
    )


def secrets_for(policy: Policy, state_dir: Path) -> Secrets:
    """The secrets file the policy names (relative to the policy dir), else the state dir's."""
    notes = policy.notifications
    path = Path(notes.secrets_file) if notes.secrets_file else state_dir / "notify-secrets.yml"
    if not path.is_absolute():
        path = policy.root / path
    vault = Path(notes.vault_password_file) if notes.vault_password_file else None
    if vault is not None and not vault.is_absolute():
        vault = policy.root / vault
    return Secrets(path, vault)
