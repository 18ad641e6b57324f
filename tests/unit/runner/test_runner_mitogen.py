"""Mitogen is opt-in: off by default, used when it loads, dropped cleanly when it does not."""

from __future__ import annotations

import importlib
from pathlib import Path

from opsrunner.runner.mitogen import ENV, STRATEGY, strategy_env

runmod = importlib.import_module("opsrunner.runner.run")


def _fake(root: Path, body: str) -> Path:
    pkg = root / "ansible_mitogen" / "plugins" / "strategy"
    pkg.mkdir(parents=True)
    for folder in (root / "ansible_mitogen", root / "ansible_mitogen" / "plugins", pkg):
        (folder / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "mitogen_linear.py").write_text(body, encoding="utf-8")
    return root


def test_off_by_default(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert strategy_env() == ({}, "")
    assert strategy_env("0") == ({}, "")


def test_a_strategy_that_loads_is_used(tmp_path):
    where = _fake(tmp_path, "LOADED = True\n")
    env, note = strategy_env(str(where))
    assert env["ANSIBLE_STRATEGY"] == STRATEGY
    assert env["ANSIBLE_STRATEGY_PLUGINS"] == str(where / "ansible_mitogen/plugins/strategy")
    assert env["PYTHONPATH"].split(":")[0] == str(where)
    assert STRATEGY in note


def test_a_strategy_that_refuses_to_load_falls_back(tmp_path):
    # What mitogen does on an ansible-core it does not support: raise at import.
    where = _fake(tmp_path, "raise ImportError('Ansible 2.99 is not yet supported')\n")
    env, note = strategy_env(str(where))
    assert env == {}
    assert "not yet supported" in note and "mitogen not used" in note


def test_missing_mitogen_falls_back_and_the_run_env_keeps_ansible_defaults(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv(ENV, str(tmp_path / "nowhere"))
    env = runmod._ansible_env(tmp_path, "ident", tmp_path)
    assert "ANSIBLE_STRATEGY" not in env and "ANSIBLE_STRATEGY_PLUGINS" not in env
    assert env["ANSIBLE_CONFIG"].endswith("ansible.cfg")
    assert "mitogen not used" in capsys.readouterr().err
