"""`policy validate` refuses secrets in clear in the policy and the inventory, with file:line."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from opsrunner.cli import app

ROOT = Path(__file__).resolve().parents[3]
MINIMAL = ROOT / "tests" / "fixtures" / "policies" / "valid" / "minimal"
CANARY = "hunter2-canary"

_PARAMETER = f"""
  accounts_api_token:
    description: A token the roles would send to hosts.
    source: ["1.1"]
    type: str
    default: {CANARY}
    tiers: {{critical: "{{{{ lookup('ansible.builtin.env', 'API_TOKEN') }}}}"}}
"""
_GROUP_VARS = f"""\
db_password: {CANARY}
backup_password_file: /etc/opsrunner/backup.pass
password_max_days: 90
api_token: "{{{{ lookup('env', 'API_TOKEN') }}}}"
ansible_become_password: "{{{{ vault_become_password }}}}"
vault_become_password: !vault |
  $ANSIBLE_VAULT;1.1;AES256
  6231386239663462
smtp:
  credentials:
    user: ops
    secret: {CANARY}
"""
_HOSTS = """\
all:
  children:
    critical:
      hosts:
        h1:
    standard:
      hosts:
        h2:
"""


def _validate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["policy", "validate", "--no-crosscheck", *args])
    return result.exit_code, result.output


def test_clear_secrets_are_refused_with_file_and_line(tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    shutil.copytree(MINIMAL, policy)
    params = next((policy / "parameters").glob("*.yml"))
    params.write_text(params.read_text() + _PARAMETER)
    inventory = tmp_path / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(_HOSTS)
    (inventory / "group_vars" / "all.yml").write_text(_GROUP_VARS)
    code, out = _validate("--policy", str(policy), "--inventory", str(inventory))
    assert code == 1
    flagged = [line for line in out.splitlines() if "in clear text" in line]
    param_line = params.read_text().splitlines().index(f"    default: {CANARY}") + 1
    assert [line.split(" ")[0] for line in flagged] == [
        f"{params}:{param_line}:",
        f"{inventory / 'group_vars' / 'all.yml'}:1:",
        f"{inventory / 'group_vars' / 'all.yml'}:12:",
    ], out
    assert "accounts_api_token.default" in flagged[0] and "smtp.credentials.secret" in flagged[2]
    assert CANARY not in out  # the secret itself is never echoed


def test_vault_and_environment_pass(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(_HOSTS)
    (inventory / "group_vars" / "all.yml").write_text(
        _GROUP_VARS.split("smtp:")[0].replace(
            f"db_password: {CANARY}", 'db_password: "{{ vault_db_password }}"'
        )
    )
    code, out = _validate("--policy", str(MINIMAL), "--inventory", str(inventory))
    assert code == 0, out


def test_policy_dir_is_a_hidden_deprecated_alias_of_policy() -> None:
    code, out = _validate("--policy-dir", str(MINIMAL))
    assert code == 0 and "--policy-dir is deprecated, use --policy" in out
    helped = CliRunner().invoke(app, ["policy", "validate", "--help"])
    assert "--policy " in helped.output and "--policy-dir" not in helped.output
