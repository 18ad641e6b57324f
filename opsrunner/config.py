"""Runner settings, found like Ansible users expect: --config, OPSRUNNER_CONFIG, ./, ~/.config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from opsrunner import paths

CONFIG_ENV = "OPSRUNNER_CONFIG"
CONFIG_NAME = "opsrunner.yml"


class ConfigError(ValueError):
    """A configuration file that cannot be read or does not validate."""


class Settings(BaseModel):
    """Every setting; each one is also a command-line flag that wins over the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str | None = Field(
        default=None,
        description="Store URL: a path or sqlite:///… (default under the state dir) or postgresql://…",
    )
    inventory: str | None = Field(
        default=None, description="Inventory path (default: inventories/lab)"
    )
    policy: str | None = Field(
        default=None, description="Policy directory (default: <project>/policy)"
    )
    state_dir: str | None = Field(
        default=None, description="Evidence files, artifacts, SQLite store"
    )
    forks: int = Field(default=20, ge=1, le=500, description="Parallel hosts")
    task_timeout: int = Field(default=600, ge=0, description="Seconds one task may take (0 = none)")
    run_timeout: int = Field(default=3600, ge=0, description="Seconds one run may take (0 = none)")
    batch_size: int = Field(
        default=500, ge=1, description="Results written to the store per transaction"
    )
    scoring_model: str | None = Field(
        default=None,
        pattern="^(xccdf|default|flat|flat_unweighted|absolute)$",
        description="Default: the policy's",
    )
    scrape_interval: int = Field(default=60, ge=1, description="Seconds between monitoring scrapes")
    scrape_timeout: float = Field(default=5.0, gt=0, description="Seconds one scrape may take")
    retention_days: int = Field(default=400, ge=1, description="Default for `store prune`")
    schedules: dict[str, str] = Field(
        default_factory=dict, description="Job name -> cron (UTC), overriding the derived schedule"
    )


def discover(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read: --config, then $OPSRUNNER_CONFIG, ./opsrunner.yml, the user's."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found (given with --config)")
        return path
    env = os.environ.get(CONFIG_ENV)
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found (given in ${CONFIG_ENV})")
        return path
    for candidate in (
        Path.cwd() / CONFIG_NAME,
        Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
        / "opsrunner"
        / CONFIG_NAME,
    ):
        if candidate.is_file():
            return candidate
    return None


def _line_of(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(f"{key}:"):
            return number
    return 1


def load(explicit: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read the discovered file, then apply flags given on the command line (None = not given)."""
    path = discover(explicit)
    data: dict[str, Any] = {}
    text = ""
    if path is not None:
        text = path.read_text(encoding="utf-8")
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 1
            raise ConfigError(f"{path}:{line}: not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}:1: the config must be a mapping of settings")
        data.update(loaded)
    data.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "(root)"
            where = (
                f"{path}:{_line_of(text, str(error['loc'][0]))}"
                if path and error["loc"]
                else "flags"
            )
            problems.append(f"{where} {field}: {error['msg']}")
        raise ConfigError("\n".join(problems)) from exc


def state_dir(settings: Settings) -> Path:
    """The state directory for these settings."""
    return Path(settings.state_dir).resolve() if settings.state_dir else paths.state_dir()


def inventory(settings: Settings) -> Path:
    """The inventory these settings name, relative paths taken from the project root."""
    if settings.inventory:
        path = Path(settings.inventory)
        return path if path.is_absolute() or path.exists() else paths.project_root() / path
    return paths.project_root() / "inventories" / "lab"
