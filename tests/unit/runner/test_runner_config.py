"""Config discovery order and errors that name the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsrunner import config


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPSRUNNER_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_discovery_order(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.discover() is None
    user = _write(home / "xdg" / "opsrunner" / "opsrunner.yml", "forks: 3\n")
    assert config.discover() == user
    local = _write(home / "opsrunner.yml", "forks: 4\n")
    assert config.discover() == local
    env = _write(home / "env.yml", "forks: 5\n")
    monkeypatch.setenv("OPSRUNNER_CONFIG", str(env))
    assert config.load().forks == 5
    explicit = _write(home / "explicit.yml", "forks: 6\n")
    assert config.load(explicit).forks == 6
    # A flag wins over every file; None means "not given".
    assert config.load(explicit, forks=7, store=None).forks == 7


def test_errors_name_file_line_and_field(home: Path) -> None:
    bad = _write(home / "opsrunner.yml", "store: x.db\nforks: 0\nbogus: 1\n")
    with pytest.raises(config.ConfigError) as info:
        config.load()
    message = str(info.value)
    assert f"{bad}:2 forks" in message and f"{bad}:3 bogus" in message
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(home / "missing.yml")
    _write(home / "opsrunner.yml", "forks: [1\n")
    with pytest.raises(config.ConfigError, match=r"opsrunner.yml:\d+: not valid YAML"):
        config.load()
