"""`opsrunner lab …`: boot, inspect and tear down lab hosts."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Annotated

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from opsrunner.lab.core import DEFAULT_LAB, HostSpec, Lab, all_labs, ssh_key
from opsrunner.lab.image import prune_images
from opsrunner.lab.net import LabError

app = typer.Typer(
    help="Disposable real Debian lab hosts (systemd-nspawn over SSH).", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)

NameOpt = typer.Option(
    DEFAULT_LAB,
    "--name",
    help="Lab name (1-9 lowercase letters/digits); decides bridge, subnet, netns.",
)


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[red]lab:[/red] {exc}")
    return typer.Exit(1)


def _parse_host(text: str) -> HostSpec:
    name, _, groups = text.partition(":")
    return HostSpec(
        name=name.strip(), groups=tuple(g.strip() for g in groups.split(",") if g.strip())
    )


def _load_spec(path: Path) -> list[HostSpec]:
    """A YAML/JSON list of {name, groups} (or {hosts: [...]}); errors name file, line, field."""
    try:
        text = path.read_text()
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except (OSError, yaml.YAMLError) as exc:
        raise LabError(f"{path}: cannot read host spec: {exc}") from exc
    items = root
    if isinstance(data, dict) and isinstance(root, yaml.MappingNode):
        data = data.get("hosts")
        items = next((v for k, v in root.value if k.value == "hosts"), None)
    if not isinstance(data, list) or not isinstance(items, yaml.SequenceNode):
        raise LabError(f"{path}: expected a list of hosts or a mapping with 'hosts:'")
    specs = []
    for i, (item, node) in enumerate(zip(data, items.value, strict=True)):
        try:
            specs.append(HostSpec.model_validate(item))
        except ValidationError as exc:
            line = node.start_mark.line + 1
            problems = "; ".join(
                f"{path}:{line}: hosts[{i}]"
                + "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in err["loc"])
                + f": {err['msg']}"
                for err in exc.errors()
            )
            raise LabError(problems) from exc
    return specs


HostsOpt = Annotated[
    list[str] | None,
    typer.Option("--host", help="Explicit host NAME:group1,group2 (repeatable; replaces -n)."),
]
SpecOpt = Annotated[
    Path | None, typer.Option("--spec", help="YAML/JSON file listing hosts {name, groups}.")
]
InventoryOpt = Annotated[
    Path | None, typer.Option("--inventory", help="Where to write the Ansible inventory.")
]


@app.command()
def up(
    n: int = typer.Option(
        3, "-n", "--hosts-count", help="Number of hosts host1..hostN with the default groups."
    ),
    name: str = NameOpt,
    host: HostsOpt = None,
    spec: SpecOpt = None,
    inventory: InventoryOpt = None,
    as_json: bool = typer.Option(
        False, "--json", help="Print the lab as JSON (for scripts, molecule)."
    ),
) -> None:
    """Boot (or complete) a lab and write its Ansible inventory; idempotent."""
    try:
        hosts = [_parse_host(h) for h in host] if host else (_load_spec(spec) if spec else None)
        lab = Lab(name, inventory=inventory)
        lab.up(n, hosts=hosts)
    except (LabError, ValueError) as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(_as_dict(lab), indent=2))
    else:
        _print_status(lab)


def _as_dict(lab: Lab) -> dict[str, object]:
    st = lab.state()
    if st is None:
        return {"name": lab.name, "up": False}
    return {
        "name": lab.name,
        "up": True,
        "inventory": st.inventory,
        "ssh_key": str(ssh_key()),
        "repo_url": lab.repo.url,
        "hosts": [
            {**h.model_dump(), "running": lab.is_running(h.name), "boots": lab.boots(h.name)}
            for h in st.hosts
        ],
    }


@app.command()
def status(
    name: str | None = typer.Option(
        None, "--name", help="One lab (default: every lab on this machine)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the labs as JSON."),
) -> None:
    """Show labs, hosts, addresses, groups and whether each host runs."""
    names = [name] if name else all_labs()
    if as_json:
        typer.echo(json.dumps([_as_dict(Lab(n)) for n in names], indent=2))
        return
    if not names:
        console.print("no lab is up")
    for n in names:
        try:
            _print_status(Lab(n))
        except LabError as exc:
            raise _fail(exc) from exc


def _print_status(lab: Lab) -> None:
    st = lab.state()
    if st is None:
        console.print(
            f"lab {lab.name}: no state (leftovers? `opsrunner lab down --name {lab.name} --force`)"
        )
        return
    table = Table(title=f"lab {lab.name}  repo {lab.repo.url}  inventory {st.inventory}")
    for col in ("host", "address", "groups", "running", "boots"):
        table.add_column(col)
    for h in st.hosts:
        table.add_row(
            h.name,
            h.address,
            ",".join(h.groups),
            "yes" if lab.is_running(h.name) else "NO",
            str(lab.boots(h.name)),
        )
    console.print(table)


@app.command()
def ssh(
    host: str = typer.Argument(..., help="Inventory host name, e.g. host1."),
    cmd: list[str] = typer.Argument(None, help="Command to run (default: an interactive shell)."),  # noqa: B008
    name: str = NameOpt,
) -> None:
    """Open a shell on a lab host or run a command there."""
    try:
        args = Lab(name).ssh_args(host)
    except LabError as exc:
        raise _fail(exc) from exc
    if cmd:
        raise typer.Exit(subprocess.run([*args, " ".join(cmd)], check=False).returncode)
    # An interactive shell replaces this process, so the terminal belongs to ssh.
    os.execvp(args[0], [*args[:-1], "-t", args[-1]])  # noqa: S606


@app.command()
def down(
    name: str = NameOpt,
    all_: bool = typer.Option(
        False, "--all", help="Every lab on this machine (including other people's)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Also sweep leftovers of a killed run by naming pattern."
    ),
) -> None:
    """Tear a lab down: no process, mount, netns, veth, bridge, cgroup or neighbour entry left."""
    names = all_labs() if all_ else [name]
    for n in names:
        try:
            removed = Lab(n).down(force=force)
        except LabError as exc:
            raise _fail(exc) from exc
        console.print(f"lab {n}: down" + (f" ({len(removed)} items removed)" if removed else ""))


@app.command()
def prune() -> None:
    """Delete cached lab images that neither the package list nor any lab uses."""
    in_use = set()
    for n in all_labs():
        st = Lab(n).state()
        if st is not None:
            in_use.add(st.image_key)
    removed = prune_images(in_use)
    for p in removed:
        console.print(f"removed {p}")
    kept = ", ".join(sorted(in_use)) or "the current one"
    console.print(f"{len(removed)} cache entries removed; images in use kept: {kept}")
