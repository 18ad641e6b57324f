"""restic helpers shared by the backup role's modules: repositories, snapshots, ages, manifests."""

# Ansible modules follow Ansible's os.path conventions (as plugins/** does in pyproject).
# ruff: noqa: PTH100, PTH103, PTH105, PTH113, PTH114, PTH118, PTH120, PTH123

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from typing import Any

TAG_ROLE = "opsrunner"
KINDS = ("full", "incremental")
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def parse_time(value: str) -> dt.datetime:
    """A restic timestamp (nanoseconds, Z or offset) as an aware UTC datetime."""
    match = _TIME.match(value.strip())
    if not match:
        raise ValueError(f"not a restic timestamp: {value!r}")
    base, frac, zone = match.groups()
    # fromisoformat takes at most microseconds; restic writes nanoseconds.
    frac = (frac or ".0")[:7]
    zone = "+00:00" if zone == "Z" else zone
    return dt.datetime.fromisoformat(base + frac + zone).astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    """Now, aware and in UTC."""
    return dt.datetime.now(dt.UTC)


def iso(value: dt.datetime) -> str:
    """UTC timestamp text as the project stores it."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def snapshot_view(raw: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The fields of a restic snapshot the controls judge, with set, kind and age."""
    tags = list(raw.get("tags") or [])
    set_name = next((t[4:] for t in tags if t.startswith("set:")), "")
    kind = next((t[5:] for t in tags if t.startswith("kind:")), "")
    when = parse_time(str(raw["time"]))
    return {
        "id": raw.get("id", ""),
        "short_id": raw.get("short_id", str(raw.get("id", ""))[:8]),
        "time": iso(when),
        "age_hours": round((now - when).total_seconds() / 3600.0, 3),
        "set": set_name,
        "kind": kind,
        "tags": tags,
        "host": raw.get("hostname", ""),
        "original": raw.get("original", ""),
        "parent": raw.get("parent", ""),
    }


def latest(
    snapshots: list[dict[str, Any]], set_name: str, kind: str | None = None
) -> dict[str, Any] | None:
    """The newest snapshot of a set (of one kind, or of any kind)."""
    chosen = [s for s in snapshots if s["set"] == set_name and (kind is None or s["kind"] == kind)]
    return max(chosen, key=lambda s: s["time"]) if chosen else None


def sha256_file(path: str) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_manifest(paths: list[str]) -> list[tuple[str, str]]:
    """(sha256, absolute path) of every regular file under the paths, sorted by path.

    Symlinks are not followed (restic stores them as links); names with a newline
    cannot be written in the sha256sum format and are left out on purpose.
    """
    entries: dict[str, str] = {}
    for top in paths:
        if os.path.isfile(top) and not os.path.islink(top):
            entries[os.path.abspath(top)] = sha256_file(top)
            continue
        for root, dirs, files in os.walk(top, followlinks=False):
            dirs.sort()
            for name in files:
                full = os.path.join(root, name)
                if "\n" in full or os.path.islink(full) or not os.path.isfile(full):
                    continue
                try:
                    entries[full] = sha256_file(full)
                except OSError:
                    # Unreadable files (races) stay out of the manifest; restic reports them.
                    continue
    return sorted(((h, p) for p, h in entries.items()), key=lambda item: item[1])


def write_manifest(path: str, entries: list[tuple[str, str]]) -> str:
    """Write the manifest in sha256sum format (mode 0600) and return its own sha256."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    text = "".join(f"{digest}  {name}\n" for digest, name in entries)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_manifest(path: str) -> list[tuple[str, str]]:
    """Parse a sha256sum-format manifest."""
    out: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line:
                digest, _, name = line.partition("  ")
                out.append((digest, name))
    return out


def write_json(path: str, value: Any) -> None:
    """Atomic JSON write, mode 0600."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def read_json(path: str) -> Any:
    """JSON from a file, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


class Restic:
    """restic with the role's password file, cache policy and off-site SSH command.

    The password never appears on a command line: restic reads --password-file.
    """

    def __init__(
        self, module: Any, password_file: str, sftp_command: str, cache_dir: str = ""
    ) -> None:
        self.module = module
        self.password_file = password_file
        self.sftp_command = sftp_command
        self.cache_dir = cache_dir

    def argv(self, repo: str, *args: str) -> list[str]:
        """The full restic command line for one repository."""
        out = ["restic", "-r", repo, "--password-file", self.password_file]
        if repo.startswith("sftp:"):
            out += ["-o", f"sftp.command={self.sftp_command}"]
        out += ["--cache-dir", self.cache_dir] if self.cache_dir else ["--no-cache"]
        return out + list(args)

    def run(self, repo: str, *args: str) -> tuple[int, str, str]:
        """Run restic; (rc, stdout, stderr)."""
        rc, out, err = self.module.run_command(
            self.argv(repo, *args), environ_update={"LC_ALL": "C"}
        )
        return int(rc), str(out), str(err)

    def initialized(self, repo: str) -> tuple[bool, str]:
        """Whether the repository opens with the password (it exists and is ours)."""
        rc, _out, err = self.run(repo, "cat", "config", "--no-lock")
        return rc == 0, tail(err)

    def snapshots(self, repo: str, now: dt.datetime) -> list[dict[str, Any]]:
        """The role's snapshots of this host, newest last."""
        rc, out, err = self.run(repo, "snapshots", "--json", "--no-lock", "--tag", TAG_ROLE)
        if rc != 0:
            raise ResticError(f"restic snapshots failed on {display(repo)}: {tail(err)}")
        raw = json.loads(out or "[]") or []
        views = [snapshot_view(item, now) for item in raw]
        return sorted(views, key=lambda s: s["time"])


class ResticError(Exception):
    """A restic command failed; the message is safe to show (no secret in it)."""


def tail(text: str, lines: int = 6) -> str:
    """The last lines of a command's output, for evidence."""
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def display(repo: str) -> str:
    """A repository name for evidence (local path or sftp URL, never a secret)."""
    return repo
