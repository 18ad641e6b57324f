"""Give every host its policy values: parameters by default, tier, group; opsrunner_* context."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleError
from ansible.inventory.host import Host
from ansible.plugins.vars import BaseVarsPlugin
from ansible.utils.unsafe_proxy import wrap_var

DOCUMENTATION = r"""
---
name: opsrunner_policy
version_added: "0.1"
short_description: Policy parameters, tier, roster, windows and notices for each host
description:
  - Loads the opsrunner policy once per process (opsrunner.policy.load_policy) and gives each
    host every parameter value - default, then the host's tier (first group of policy.yml
    tiers the host is in), then group overrides in the order listed.
  - Also sets opsrunner_tier (tier or "none"), opsrunner_roster (people and role_map),
    opsrunner_windows and opsrunner_notices (for the host's groups) and opsrunner_policy_digest.
  - The policy directory is $OPSRUNNER_POLICY_DIR, else the policy/ directory of the project
    this plugin belongs to. A policy error fails the run with file:line messages.
  - Works for any inventory (the lab's, molecule's, a user's); group variables are not set,
    only host variables, so playbook and inventory host_vars still override policy values.
"""

# Runs for every inventory without being listed in vars_plugins_enabled.
REQUIRES_ENABLED = False

_CACHE: dict[str, Any] = {}
_HOST_VARS: dict[str, dict[str, Any]] = {}


def _policy_dir() -> Path:
    env = os.environ.get("OPSRUNNER_POLICY_DIR")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[2] / "policy"


def _load(directory: Path) -> Any:
    """The validated policy of a directory, loaded once per process."""
    key = str(directory)
    if key not in _CACHE:
        project = str(directory.parent)
        try:
            from opsrunner.policy import PolicyError, load_policy
        except ImportError:
            # ansible-playbook run outside the venv that has opsrunner installed: use the checkout.
            sys.path.insert(0, project)
            from opsrunner.policy import PolicyError, load_policy
        try:
            _CACHE[key] = load_policy(directory)
        except PolicyError as exc:
            raise AnsibleError(f"opsrunner policy is invalid:\n{exc}") from None
    return _CACHE[key]


class VarsModule(BaseVarsPlugin):
    """Host variables from policy/."""

    REQUIRES_ENABLED = False

    def get_vars(self, loader, path, entities, cache=True):  # type: ignore[no-untyped-def]
        super().get_vars(loader, path, entities)
        if not isinstance(entities, list):
            entities = [entities]
        result: dict[str, Any] = {}
        for entity in entities:
            if not isinstance(entity, Host):
                continue
            directory = _policy_dir()
            groups = frozenset({g.name for g in entity.get_groups()} | {"all"})
            key = f"{directory}|{','.join(sorted(groups))}"
            if key not in _HOST_VARS:
                _HOST_VARS[key] = _load(directory).host_vars(groups)
            # A copy: Ansible may mutate what it is given, the cache must stay as loaded. Policy
            # strings are data, never templates: a title or roster field holding "{{ … }}"
            # reaches the host as written (ansible-core 2.19 already leaves plugin values
            # untrusted; wrap_var says so explicitly and keeps it so on other versions).
            result.update(wrap_var(copy.deepcopy(_HOST_VARS[key])))
        return result
