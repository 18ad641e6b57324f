"""Secrets in clear: a password, secret or token written as a literal in the policy or inventory."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from opsrunner.policy.loader import Problem, display_path
from opsrunner.policy.safeyaml import Located, YamlProblem, load_file, render_path

# A variable whose name says it holds a credential.
SECRET_NAME = re.compile(
    r"(^|[_.-])(password|passwd|passphrase|secret|token|api_?key|private_?key|credentials?)"
    r"($|[_.-])",
    re.IGNORECASE,
)
# Names that say the value is something else: a file or path holding the secret, a policy about
# passwords (lengths, ages, algorithms), or — in the policy's notifications — the *name* of a
# secret kept in the secrets file (`password_secret: smtp-password`).
NOT_A_SECRET = re.compile(
    r"(_file|_path|_dir|_name|_names|_secret|_env|_length|_len|_min|_max|_days|_age|_count"
    r"|_algorithm|_algorithms|_hash_algorithm|_rounds|_policy|_required|_enabled|_auth"
    r"|_authentication|_expiry|_warn_age|_retries|_lifetime|_remember)$",
    re.IGNORECASE,
)
# Values that are not the secret itself: ansible-vault ciphertext, a lookup of the
# environment, or a reference to another variable (the usual `vault_` indirection).
_VAULT = "$ANSIBLE_VAULT;"
_ENV_LOOKUP = re.compile(
    r"^\{\{\s*(lookup|query)\(\s*['\"](ansible\.builtin\.)?env['\"]\s*,[^}]*\)\s*\}\}$"
)
_VAR_REFERENCE = re.compile(r"^\{\{\s*[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*\s*\}\}$")
_YAML_SUFFIXES = (".yml", ".yaml")


def _clear(value: Any) -> bool:
    if not isinstance(value, str):
        return False  # numbers and booleans are settings about passwords, not passwords
    text = value.strip()
    if not text or text.startswith(_VAULT):
        return False
    return not (_ENV_LOOKUP.match(text) or _VAR_REFERENCE.match(text))


def _walk(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*path, key), value
            yield from _walk(value, (*path, key))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            yield from _walk(item, (*path, index))


# Keys of a policy parameter that describe it rather than give its value.
_DESCRIBING = frozenset({"description", "source", "type", "title"})


def _values(path: tuple[Any, ...], value: Any) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """The value of a credential-named key: itself, or, for a policy parameter, every value it
    gives (default, tiers, groups). Other mappings' keys speak for themselves."""
    if not isinstance(value, dict) or not _DESCRIBING & set(value):
        yield path, value
        return
    for sub, leaf in _walk(value, path):
        if not isinstance(leaf, dict | list) and not set(sub[len(path) :]) & _DESCRIBING:
            yield sub, leaf


def _problems(file: Path, located: Located) -> list[Problem]:
    found = []
    for path, value in _walk(located.data):
        key = path[-1]
        if not isinstance(key, str) or not SECRET_NAME.search(key) or NOT_A_SECRET.search(key):
            continue
        for where, leaf in _values(path, value):
            if not _clear(leaf):
                continue
            found.append(
                Problem(
                    display_path(file),
                    located.line_for(where),
                    render_path(where),
                    f"{key!r} holds a secret in clear text: encrypt it with ansible-vault "
                    "(`ansible-vault encrypt_string`) or read it from the environment "
                    "(`{{ lookup('ansible.builtin.env', 'NAME') }}`); the value is not shown",
                )
            )
    return found


def cleartext_problems(files: Iterable[Path]) -> list[Problem]:
    """Every credential-named variable with a literal value in these YAML/JSON files."""
    problems: list[Problem] = []
    for file in files:
        if file.is_symlink() or not file.is_file():
            continue  # the loader refuses symlinks leaving the tree; nothing to read here
        try:
            if file.suffix == ".json":
                located = Located(json.loads(file.read_text(encoding="utf-8")))
            else:
                # Ansible files carry !vault and !unsafe tags: read them as text.
                located = load_file(file, strict_tags=False)
        except (YamlProblem, ValueError, OSError):
            continue  # unreadable files are reported by the policy and inventory checks
        problems += _problems(file, located)
    return problems


def policy_files(root: Path) -> list[Path]:
    """The policy's YAML files."""
    return sorted(p for p in root.rglob("*") if p.suffix in _YAML_SUFFIXES)


def inventory_files(inventory: Path) -> list[Path]:
    """An inventory's YAML files and its group_vars/ and host_vars/ (files or directories)."""
    if inventory.is_file():
        base, files = inventory.parent, [inventory]
    else:
        base = inventory
        files = [p for p in sorted(inventory.glob("*")) if p.suffix in _YAML_SUFFIXES]
    for kind in ("group_vars", "host_vars"):
        folder = base / kind
        if folder.is_dir():
            files += sorted(
                p
                for p in folder.rglob("*")
                if p.is_file() and (p.suffix in (*_YAML_SUFFIXES, ".json") or not p.suffix)
            )
    return files
