"""The bench's lab: an existing inventory (--inventory), or a lab it boots and tears down."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import yaml


def hosts_of(inventory: Path) -> list[str]:
    """Host names of a lab inventory (hosts.yml written by `opsrunner lab up`), in order."""
    data = yaml.safe_load(inventory.read_text(encoding="utf-8")) or {}
    names = list((data.get("all") or {}).get("hosts") or {})
    if not names:
        raise SystemExit(f"{inventory}: no hosts under all.hosts")

    def key(name: str) -> tuple[int, str]:
        digits = "".join(ch for ch in name if ch.isdigit())
        return (int(digits) if digits else 0, name)

    return sorted(names, key=key)


@contextlib.contextmanager
def lab(inventory: Path | None, hosts: int, name: str) -> Iterator[tuple[Path, list[str]]]:
    """(inventory, host names): the given inventory, or a lab of `hosts` named `name`."""
    if inventory is not None:
        names = hosts_of(inventory)
        if len(names) < hosts:
            raise SystemExit(f"{inventory}: {len(names)} hosts, the arms asked need {hosts}")
        yield inventory, names
        return
    if os.geteuid() != 0:
        raise SystemExit("the lab arms boot lab hosts and need root (or pass --inventory)")
    from opsrunner.lab.core import Lab

    the_lab = Lab(name)
    try:
        the_lab.up(hosts)
        yield the_lab.inventory_path, hosts_of(the_lab.inventory_path)
    finally:
        the_lab.down(force=True)
