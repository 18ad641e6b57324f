"""The daemon's notify step: send due notices, evaluate alerts, retry the outbox."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from opsrunner import config
from opsrunner.notify import alerts, notices
from opsrunner.notify.routing import secrets_for
from opsrunner.policy.loader import Policy
from opsrunner.store import Store

log = logging.getLogger("opsrunner.daemon")


class Notifier:
    """One call per daemon loop: due notices go out, alerts are evaluated, the outbox drains."""

    def __init__(self, policy: Policy, store: Store, inventory: Path) -> None:
        self.policy = policy
        self.store = store
        self.inventory = inventory
        self.secrets = secrets_for(policy, store.state_dir)

    def __call__(self, now: dt.datetime) -> alerts.Evaluation:
        due = notices.due_notices(self.policy, self.store, now)
        if due:
            from opsrunner.runner.scope import ScopeError, inventory_groups

            try:
                groups = inventory_groups(self.inventory)
            except ScopeError as exc:
                log.error("notices not sent: %s", exc)
                groups = {}
            for occ in due if groups else []:
                try:
                    sent = notices.send_notice(
                        self.policy,
                        self.store,
                        occ.window.name,
                        groups,
                        now,
                        start=occ.start,
                        secrets=self.secrets,
                    )
                    log.info("notice %s: %s", sent.ident, sent.status)
                except notices.NoticeError as exc:
                    log.error("notice for %s not sent: %s", occ.window.name, exc)
        done = alerts.evaluate(self.policy, self.store, now, secrets=self.secrets)
        notices.settle_all(self.store)
        notices.write_vars_file(self.store)
        for item in done.delivered:
            if not item.ok:
                log.warning(
                    "delivery %d to %s:%s failed (%s, attempt %d): %s",
                    item.id,
                    item.channel,
                    item.recipient,
                    item.status,
                    item.attempts,
                    item.detail,
                )
        return done


def default_notifier(settings: config.Settings, store: Store, inventory: Path) -> Notifier | None:
    """The daemon's notifier when the policy routes any message, else None."""
    from opsrunner.policy import PolicyError, load_policy

    try:
        policy = load_policy(Path(settings.policy) if settings.policy else None)
    except PolicyError as exc:
        log.error("notices and alerts off: the policy does not load: %s", exc)
        return None
    if not policy.notifications.routes:
        return None
    return Notifier(policy, store, inventory)
