"""A scratch copy of the real policy, a SQLite store, an inventory and a config naming them."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from opsrunner import config
from opsrunner.paths import project_root
from opsrunner.policy import Policy, load_policy
from opsrunner.store import Store

UTC = dt.UTC
INVENTORY = """\
all:
  children:
    critical:
      hosts:
        host1: {ansible_host: 10.0.0.11}
    standard:
      hosts:
        host2: {ansible_host: 10.0.0.12}
        host3: {ansible_host: 10.0.0.13}
"""


@dataclass
class Site:
    """Everything a test needs, under tmp_path."""

    root: Path
    policy_dir: Path
    state_dir: Path
    inventory: Path
    config: Path
    settings: config.Settings

    def policy(self) -> Policy:
        return load_policy(self.policy_dir)

    def store(self) -> Store:
        return Store.open(self.settings.store, self.state_dir)

    def evidence(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(text, encoding="utf-8")
        return path


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    policy_dir = tmp_path / "policy"
    shutil.copytree(project_root() / "policy", policy_dir)
    state = tmp_path / "state"
    state.mkdir()
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(INVENTORY, encoding="utf-8")
    cfg = tmp_path / "opsrunner.yml"
    cfg.write_text(
        f"store: sqlite:///{state / 'store.db'}\n"
        f"inventory: {inventory}\n"
        f"policy: {policy_dir}\n"
        f"state_dir: {state}\n",
        encoding="utf-8",
    )
    yield Site(tmp_path, policy_dir, state, inventory, cfg, config.load(str(cfg)))


@pytest.fixture
def store(site: Site) -> Iterator[Store]:
    opened = site.store()
    try:
        yield opened
    finally:
        opened.close()
