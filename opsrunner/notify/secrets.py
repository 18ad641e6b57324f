"""Channel secrets from an owner-only YAML file or an ansible-vault file, never from the policy."""

from __future__ import annotations

import stat
from pathlib import Path

import yaml

VAULT_HEADER = "$ANSIBLE_VAULT;"


class SecretsError(RuntimeError):
    """The secrets file is missing, too open, unreadable or lacks a secret."""


class Secrets:
    """Named secrets, read once on first use (a policy without secrets never opens the file)."""

    def __init__(self, path: Path, vault_password_file: Path | None = None) -> None:
        self.path = path
        self.vault_password_file = vault_password_file
        self._values: dict[str, str] | None = None

    def get(self, name: str) -> str:
        """The secret's value; SecretsError (naming the secret, never its value) when absent."""
        values = self._load()
        if name not in values:
            raise SecretsError(f"{self.path}: no secret named {name!r}")
        return values[name]

    def _load(self) -> dict[str, str]:
        if self._values is None:
            self._values = read_secrets(self.path, self.vault_password_file)
        return self._values


def _owner_only(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretsError(
            f"{path}: readable by others (mode {stat.S_IMODE(mode):04o}); chmod 600 it"
        )


def read_secrets(path: Path, vault_password_file: Path | None = None) -> dict[str, str]:
    """Read a mapping of secret name → value (strings), decrypting an ansible-vault file."""
    if not path.is_file():
        raise SecretsError(f"{path}: secrets file not found")
    _owner_only(path)
    raw = path.read_bytes()
    if raw.lstrip().startswith(VAULT_HEADER.encode()):
        raw = _decrypt(path, raw, vault_password_file)
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SecretsError(f"{path}: not a YAML mapping of secrets ({type(exc).__name__})") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str | int) for k, v in data.items()
    ):
        raise SecretsError(f"{path}: must be a mapping of secret names to strings")
    return {k: str(v) for k, v in data.items()}


def _decrypt(path: Path, raw: bytes, password_file: Path | None) -> bytes:
    if password_file is None:
        raise SecretsError(f"{path}: is ansible-vault encrypted; set vault_password_file")
    if not password_file.is_file():
        raise SecretsError(f"{password_file}: vault password file not found")
    _owner_only(password_file)
    from ansible.errors import AnsibleError  # type: ignore[import-untyped]
    from ansible.parsing.vault import VaultLib, VaultSecret  # type: ignore[import-untyped]

    secret = VaultSecret(password_file.read_bytes().strip())
    try:
        plain: bytes = VaultLib([("default", secret)]).decrypt(raw)
    except AnsibleError as exc:
        raise SecretsError(f"{path}: cannot decrypt with {password_file}") from exc
    return plain
