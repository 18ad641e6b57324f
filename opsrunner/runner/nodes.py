"""Scale-out: slice a run's hosts across execution nodes (ansible-runner transmit|worker|process
over SSH) and record the slices as one run, through the same ingest path as a local run."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import importlib
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import ansible_runner  # type: ignore[import-untyped]
import yaml
from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from opsrunner import config, paths
from opsrunner.policy.safeyaml import YamlProblem, load_file, render_path
from opsrunner.runner import artifacts
from opsrunner.runner import scope as scoping
from opsrunner.runner.events import Collector
from opsrunner.runner.progress import Reporter
from opsrunner.runner.run import (
    RUN_META,
    RunError,
    _final_status,
    _signals_cancel,
    _Streamer,
)
from opsrunner.store import ResultRecord, RunRecord, Store

#: The run's stats key that records its slices (node, hosts, status, reason): what
#: `--retry-failed` reads back from the store, so any controller sharing the store can retry.
SLICES_KEY = "_slices"
#: Slice statuses that leave its hosts' results unknown: `--retry-failed` reruns those slices.
RETRYABLE = ("interrupted", "timeout", "canceled", "unstarted")
#: What an execution node needs (exact versions from constraints.txt); pydantic and croniter
#: are for the policy vars plugin, which loads the policy on the node.
NODE_PACKAGES = ("ansible-core", "ansible-runner", "pydantic", "croniter")
DEFAULT_PREFIX = "/opt/opsrunner-node"

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
# No leading "-" (it would be read as an ssh option) and nothing a shell would interpret.
_HOST = r"^[A-Za-z0-9_\[\]][A-Za-z0-9_.:%\[\]-]{0,252}$"
_PATH = r"^[A-Za-z0-9_./-]+$"
_ABS_PATH = r"^/[A-Za-z0-9_./-]*$"
_SSH_OPTION = r"^[A-Za-z][A-Za-z0-9]*=[^\n]+$"


class NodesError(ValueError):
    """A nodes file that does not load, or no node that can run a slice."""


class Node(BaseModel):
    """One execution node: reached over SSH, runs `ansible-runner worker`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME, description="Name shown in runs and reasons.")
    host: str = Field(pattern=_HOST, description="Address or DNS name ssh connects to.")
    user: str = Field("root", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    port: int = Field(22, ge=1, le=65535)
    identity_file: str | None = Field(None, description="Key the controller uses for the node.")
    ssh_options: tuple[Annotated[str, Field(pattern=_SSH_OPTION)], ...] = Field(
        (), description="Extra `-o Key=Value` options (e.g. StrictHostKeyChecking=yes)."
    )
    runner: str = Field(
        f"{DEFAULT_PREFIX}/bin/ansible-runner",
        pattern=_PATH,
        description="ansible-runner on the node; its directory goes first on PATH.",
    )
    work_dir: str = Field(
        "/var/lib/opsrunner-worker",
        pattern=_ABS_PATH,
        description="Where each slice's private data dir lives on the node (deleted after).",
    )
    capacity: int = Field(1, ge=1, le=1000, description="Relative share of the hosts.")


class NodesFile(BaseModel):
    """nodes.yml: the execution nodes and how their Ansible reaches the targets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nodes: tuple[Node, ...] = Field(min_length=1)
    target_key: str | None = Field(
        None,
        description="Private key the nodes' Ansible uses for the targets. It travels inside the "
        "transmit stream (over SSH) and lives on the node only in that run's ssh-agent, fed "
        "through a FIFO: never written to the node's disk, gone when the slice ends.",
    )
    connect_timeout: int = Field(10, ge=1, le=300, description="Seconds to reach a node.")

    @model_validator(mode="after")
    def _unique(self) -> NodesFile:
        seen: set[str] = set()
        for node in self.nodes:
            if node.name in seen:
                raise ValueError(f"node name {node.name!r} appears twice")
            seen.add(node.name)
        return self


def load_nodes(path: str | os.PathLike[str]) -> NodesFile:
    """nodes.yml validated; every problem as `file:line field: message` (NodesError)."""
    where = Path(path)
    if not where.is_file():
        raise NodesError(f"{where}: no such file")
    try:
        located = load_file(where)
    except YamlProblem as exc:
        field = f" {exc.field}" if exc.field else ""
        raise NodesError(f"{where}:{exc.line}{field}: {exc.message}") from exc
    data = located.data
    if isinstance(data, list):
        data = {"nodes": data}
    try:
        loaded = NodesFile.model_validate(data)
    except ValidationError as exc:
        lines = []
        errors = exc.errors()
        if any(len(e["loc"]) > 1 for e in errors):
            # A bad entry also makes the tuple "too short": say only what is wrong in the entry.
            errors = [e for e in errors if not (e["type"] == "too_short" and len(e["loc"]) == 1)]
        for error in errors:
            loc = tuple(error["loc"])
            # Errors of a model validator carry no field: point at the entry itself.
            lines.append(
                f"{where}:{located.line_for(loc)} {render_path(loc) or 'nodes'}: "
                f"{error['msg'].removeprefix('Value error, ')}"
            )
        raise NodesError("\n".join(lines)) from exc
    base = where.resolve().parent
    fixed = []
    for node in loaded.nodes:
        if node.identity_file and not Path(node.identity_file).is_absolute():
            node = node.model_copy(update={"identity_file": str(base / node.identity_file)})
        fixed.append(node)
    key = loaded.target_key
    if key and not Path(key).is_absolute():
        key = str(base / key)
    if key and not Path(key).is_file():
        line = located.line_for(("target_key",))
        raise NodesError(f"{where}:{line} target_key: {key}: no such file")
    return loaded.model_copy(update={"nodes": tuple(fixed), "target_key": key})


# -- slicing ---------------------------------------------------------------------------------
def slice_hosts(hosts: Iterable[str], nodes: Sequence[Node]) -> list[tuple[Node, list[str]]]:
    """Contiguous slices of the sorted hosts, sized by the nodes' capacity; empty slices go.

    Pure and stable: the same hosts and nodes give the same slices (so a rerun of the same
    targets lands on the same nodes).
    """
    ordered = sorted(set(hosts))
    total = sum(n.capacity for n in nodes)
    out: list[tuple[Node, list[str]]] = []
    start, share = 0, 0
    for node in nodes:
        share += node.capacity
        end = (len(ordered) * share + total - 1) // total if total else 0
        chunk = ordered[start:end]
        start = end
        if chunk:
            out.append((node, chunk))
    return out


# -- ssh -------------------------------------------------------------------------------------
def ssh_argv(node: Node, connect_timeout: int = 10) -> list[str]:
    """The ssh command prefix for a node (batch mode; a dead node is noticed within ~15 s)."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}"]
    argv += ["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
    argv += ["-p", str(node.port), "-l", node.user]
    if node.identity_file:
        argv += ["-i", node.identity_file, "-o", "IdentitiesOnly=yes"]
    for option in node.ssh_options:
        argv += ["-o", option]
    return [*argv, node.host]


def _bin_path(node: Node) -> str:
    where = str(Path(node.runner).parent) if "/" in node.runner else ""
    return f"PATH={shlex.quote(where)}:$PATH " if where else ""


def worker_command(node: Node, remote_dir: str) -> str:
    """The remote command of one slice: ansible-runner's worker on its own private data dir."""
    return (
        f"{_bin_path(node)}{shlex.quote(node.runner)} worker "
        f"--private-data-dir {shlex.quote(remote_dir)} --delete"
    )


def check_node(node: Node, connect_timeout: int = 10) -> str:
    """'' when the node answers and has ansible-runner; else why not."""
    cmd = f"{_bin_path(node)}{shlex.quote(node.runner)} --version"
    try:
        done = subprocess.run(
            [*ssh_argv(node, connect_timeout), cmd],
            capture_output=True,
            text=True,
            timeout=connect_timeout + 30,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"ssh failed: {exc}"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        return f"`{node.runner} --version` exited {done.returncode}: {tail[0][:200]}"
    return ""


def usable_nodes(loaded: NodesFile) -> tuple[list[Node], dict[str, str]]:
    """The nodes that answer (checked in parallel), and why each of the others does not."""
    problems: dict[str, str] = {}
    lock = threading.Lock()

    def probe(node: Node) -> None:
        why = check_node(node, loaded.connect_timeout)
        if why:
            with lock:
                problems[node.name] = why

    threads = [threading.Thread(target=probe, args=(n,), daemon=True) for n in loaded.nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [n for n in loaded.nodes if n.name not in problems], problems


# -- provisioning ----------------------------------------------------------------------------
def node_python(node: Node, connect_timeout: int = 10) -> str:
    """The node's python3 version as "3.11"."""
    done = subprocess.run(
        [
            *ssh_argv(node, connect_timeout),
            "python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'",
        ],
        capture_output=True,
        text=True,
        timeout=connect_timeout + 30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    version = done.stdout.strip()
    if done.returncode != 0 or not re.fullmatch(r"3\.\d+", version):
        raise NodesError(f"node {node.name}: no python3 ({done.stderr.strip()[:200]})")
    return version


def _pins() -> list[str]:
    """The node packages at the versions this controller runs (its constraints)."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in NODE_PACKAGES]


def wheelhouse(python: str, cache: Path | None = None) -> Path:
    """Wheels for a node's Python (manylinux x86_64), downloaded once with this venv's pip.

    Exact versions: the node packages as installed here, their dependencies from
    constraints.txt; binary wheels only, so the node needs no compiler and no package index.
    """
    pins = _pins()
    constraints = paths.project_root() / "constraints.txt"
    text = constraints.read_text(encoding="utf-8") if constraints.is_file() else ""
    key = hashlib.sha256(("\n".join(pins) + text).encode()).hexdigest()[:12]
    where = (cache or paths.cache_dir()) / "node-wheels" / f"cp{python.replace('.', '')}-{key}"
    where.mkdir(parents=True, exist_ok=True)
    # Nodes are often installed in parallel: one download, the others wait for it.
    with FileLock(str(where) + ".lock"):
        if not (where / ".complete").is_file():
            _download(where, python, pins, constraints if text else None)
    return where


def _download(where: Path, python: str, pins: list[str], constraints: Path | None) -> None:
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(where)]
    argv += ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    argv += ["--abi", f"cp{python.replace('.', '')}"]
    for platform in ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"):
        argv += ["--platform", platform]
    argv += ["--platform", "any"]
    if constraints is not None:
        argv += ["-c", str(constraints)]
    done = subprocess.run([*argv, *pins], capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise NodesError(f"pip download for python {python} failed:\n{done.stderr[-2000:]}")
    (where / ".complete").write_text("\n".join(pins) + "\n", encoding="utf-8")


# Runs on the node (its own python3, stdlib only): unpack the wheels into the venv and write
# the console scripts of their entry points. That is what installing a wheel is (PEP 427);
# the set was resolved by pip on the controller, and pip itself on the node took 10x longer.
_UNPACK = """
import configparser, glob, os, sys, zipfile
prefix, wheels = sys.argv[1], sys.argv[2]
site = glob.glob(prefix + "/lib/python3*/site-packages")[0]
for wheel in sorted(glob.glob(wheels + "/*.whl")):
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
for points in glob.glob(site + "/*.dist-info/entry_points.txt"):
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(points)
    if not parser.has_section("console_scripts"):
        continue
    for name, target in parser.items("console_scripts"):
        module, _, attrs = target.split()[0].partition(":")
        script = os.path.join(prefix, "bin", name)
        with open(script, "w") as out:
            out.write(
                "#!" + prefix + "/bin/python\\n"
                "import importlib, sys\\n"
                "target = importlib.import_module(" + repr(module) + ")\\n"
                "for attr in " + repr(attrs.split(".")) + ":\\n"
                "    target = getattr(target, attr)\\n"
                "sys.exit(target())\\n"
            )
        os.chmod(script, 0o755)
"""


def install_node(
    node: Node,
    *,
    prefix: str = DEFAULT_PREFIX,
    connect_timeout: int = 10,
    cache: Path | None = None,
) -> str:
    """Install ansible-core, ansible-runner, pydantic and croniter on a node from this
    controller's wheels, in a venv at `prefix` (the node needs python3 and ssh, no package
    index). Returns the node's ansible-runner path."""
    if not re.match(_ABS_PATH, prefix):
        raise NodesError(f"prefix {prefix!r}: give an absolute path")
    wheels = wheelhouse(node_python(node, connect_timeout), cache)
    remote = f"{prefix}.wheels"
    script = " && ".join(
        [
            f"rm -rf {remote} {prefix}",
            f"mkdir -p {remote}",
            f"tar -x -C {remote}",
            f"python3 -m venv --without-pip {prefix}",
            f"python3 -c {shlex.quote(_UNPACK)} {prefix} {remote}",
            f"rm -rf {remote}",
            f"{prefix}/bin/ansible-runner --version",
        ]
    )
    tar = subprocess.run(
        ["tar", "-c", "-C", str(wheels), *sorted(p.name for p in wheels.glob("*.whl"))],
        capture_output=True,
        check=True,
    )
    done = subprocess.run(
        [*ssh_argv(node, connect_timeout), script],
        input=tar.stdout,
        capture_output=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise NodesError(
            f"node {node.name}: install failed: {done.stderr.decode(errors='replace')[-1500:]}"
        )
    return f"{prefix}/bin/ansible-runner"


# -- the project a node receives -------------------------------------------------------------
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".git", ".opsrunner", "molecule")


def _stage(
    transmit: Path, policy_root: Path, inventory: Path, selected_roles: list[str] | None
) -> tuple[Path, Path]:
    """Copy what a node runs into the transmit dir: project/ (ansible.cfg, playbooks, roles,
    plugins, collections, the policy and the opsrunner.policy package its vars plugin loads)
    and inventory/. Returns the playbook dir and the inventory path in it."""
    root = paths.project_root()
    project = transmit / "project"
    project.mkdir(parents=True)
    shutil.copy2(root / "ansible.cfg", project / "ansible.cfg")
    for name in ("playbooks", "roles", "plugins", "collections"):
        if (root / name).is_dir():
            shutil.copytree(root / name, project / name, symlinks=True, ignore=_IGNORE)
    shutil.copytree(policy_root, project / "policy", symlinks=False, ignore=_IGNORE)
    package = Path(__file__).resolve().parents[1]
    (project / "opsrunner").mkdir()
    for name in ("__init__.py", "paths.py", "py.typed"):
        if (package / name).is_file():
            shutil.copy2(package / name, project / "opsrunner" / name)
    shutil.copytree(package / "policy", project / "opsrunner" / "policy", ignore=_IGNORE)
    if selected_roles is not None:
        plays = [
            {"ansible.builtin.import_playbook": scoping.playbook_path(r).name}
            for r in selected_roles
        ]
        (project / "playbooks" / "opsrunner-selected.yml").write_text(
            yaml.safe_dump(plays, sort_keys=False), encoding="utf-8"
        )
    inv_dir = transmit / "inventory"
    inv_dir.mkdir()
    if inventory.is_dir():
        shutil.copytree(inventory, inv_dir / inventory.name, ignore=_IGNORE)
        inv_path = inv_dir / inventory.name
    else:
        shutil.copy2(inventory, inv_dir / inventory.name)
        inv_path = inv_dir / inventory.name
        for sibling in ("group_vars", "host_vars"):
            if (inventory.parent / sibling).is_dir():
                shutil.copytree(inventory.parent / sibling, inv_dir / sibling, ignore=_IGNORE)
    return project / "playbooks", inv_path


def _node_env(remote: str, ident: str, task_timeout: int) -> dict[str, str]:
    """The environment ansible-playbook runs with on the node (paths in the slice's dir)."""
    project = f"{remote}/project"
    env = {
        "ANSIBLE_CONFIG": f"{project}/ansible.cfg",
        "ANSIBLE_CALLBACK_PLUGINS": f"{project}/plugins/callback",
        "ANSIBLE_NOCOLOR": "1",
        "OPSRUNNER_POLICY_DIR": f"{project}/policy",
        "OPSRUNNER_RESULTS_FILE": f"{remote}/results.json",
        "OPSRUNNER_RUN_IDENT": ident,
    }
    if task_timeout:
        env["ANSIBLE_TASK_TIMEOUT"] = str(task_timeout)
    return env


# -- one slice -------------------------------------------------------------------------------
@dataclasses.dataclass
class Slice:
    """One node's share of a run and how it went."""

    node: Node
    hosts: list[str]
    ident: str
    collector: Collector
    status: str = "unstarted"
    runner_status: str = "unstarted"
    reason: str = ""
    rc: int | None = None
    proc: subprocess.Popen[bytes] | None = None

    def summary(self) -> dict[str, Any]:
        """What the store keeps of the slice (the run's stats, under SLICES_KEY)."""
        return {
            "node": self.node.name,
            "hosts": list(self.hosts),
            "status": self.status,
            "reason": self.reason,
            "ident": self.ident,
        }


class _Shared:
    """What the slices' event handlers share: one lock around the store and the reporter."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.told = 0


class _SliceStreamer(_Streamer):
    """The local run's event handler, serialised across slices (one store, one reporter)."""

    def __init__(self, shared: _Shared, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shared = shared

    def __call__(self, event: dict[str, Any]) -> bool:
        with self.shared.lock:
            return bool(super().__call__(event))

    def write(self, results: list[ResultRecord]) -> None:
        size = max(1, self.batch)
        for start in range(0, len(results), size):
            chunk = results[start : start + size]
            self.store.add_results(self.run_id, chunk)
            for result in chunk:
                self.shared.told += 1
                self.reporter.result(result, self.shared.told)


def _run_slice(
    sl: Slice,
    streamer: _SliceStreamer,
    *,
    transmit_dir: Path,
    private: Path,
    job_kwargs: Mapping[str, Any],
    connect_timeout: int,
    cancel: threading.Event,
) -> None:
    """transmit → ssh node ansible-runner worker → process, for one slice (runs in a thread)."""
    remote = f"{sl.node.work_dir}/{sl.ident}"
    stderr_path = private / f"ssh-{sl.node.name}.log"
    with stderr_path.open("wb") as stderr:
        sl.proc = subprocess.Popen(
            [*ssh_argv(sl.node, connect_timeout), worker_command(sl.node, remote)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    proc = sl.proc
    assert proc.stdin is not None and proc.stdout is not None
    kwargs = dict(job_kwargs)
    kwargs["envvars"] = {
        **_node_env(remote, str(kwargs.pop("run_ident")), int(kwargs.pop("task_timeout") or 0)),
    }
    try:
        ansible_runner.run(
            streamer="transmit",
            _output=proc.stdin,
            private_data_dir=str(transmit_dir),
            ident=sl.ident,
            limit=",".join(sl.hosts),
            suppress_env_files=True,
            quiet=True,
            **kwargs,
        )
    except OSError as exc:
        # The node went away before it took the job; the processor below sees the same end.
        sl.reason = f"transmit failed: {exc}"
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()

    def status_handler(data: Mapping[str, Any], runner_config: Any = None) -> None:
        if data.get("status") == "error" and data.get("job_explanation"):
            sl.reason = sl.reason or str(data["job_explanation"])[:300]

    processor = ansible_runner.run(
        streamer="process",
        _input=proc.stdout,
        private_data_dir=str(private),
        ident=sl.ident,
        event_handler=streamer,
        status_handler=status_handler,
        quiet=True,
    )
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    sl.runner_status = str(processor.status or "error")
    rc_file = private / "artifacts" / sl.ident / "rc"
    if rc_file.is_file() and rc_file.read_text().strip().lstrip("-").isdigit():
        sl.rc = int(rc_file.read_text().strip())
    if cancel.is_set():
        pass
    elif sl.runner_status == "error":
        # The stream ended without its eof line: the node, its sshd or the worker died.
        said = _last_line(stderr_path)
        lost = f"execution node {sl.node.name} lost mid-run (ssh exited {code}"
        lost += f": {said})" if said else ")"
        sl.reason = f"{lost}; {sl.reason}" if sl.reason else lost
    elif not streamer.collector.has_stats:
        said = _last_line(private / "artifacts" / sl.ident / "stdout")
        sl.reason = f"ansible-playbook on node {sl.node.name} exited {sl.rc} without its final "
        sl.reason += f"stats: {said}" if said else "stats"
    if cancel.is_set():
        sl.status = "canceled"
    else:
        sl.status = _final_status(sl.runner_status, streamer.collector.has_stats)


def _last_line(path: Path) -> str:
    """The last non-empty line of a text file ('' when there is none)."""
    if not path.is_file():
        return ""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    return next((line[:200] for line in reversed(lines) if line), "")


# -- the sliced run --------------------------------------------------------------------------
def executor(loaded: NodesFile, log: Callable[[str], None] | None = None) -> Callable[..., Any]:
    """The run's executor for `run.run(..., executor=…)`: the same scope, lock and record as a
    local run; the hosts sliced across the nodes that answer."""

    def execute(store: Store, record: RunRecord, **kwargs: Any) -> RunRecord:
        return _execute(store, record, loaded=loaded, log=log or (lambda _m: None), **kwargs)

    return execute


def _execute(
    store: Store,
    record: RunRecord,
    *,
    loaded: NodesFile,
    log: Callable[[str], None],
    private: Path,
    playbook: Path,
    hosts: Mapping[str, list[str]],
    in_scope: Mapping[str, list[str]],
    wanted: list[str] | None,
    selected_roles: list[str] | None,
    settings: config.Settings,
    policy_root: Path,
    inventory_path: Path,
    reporter: Reporter,
    cancel: threading.Event,
    extravars: Mapping[str, Any] | None,
    tags: str | None,
    selected: list[str] | None,
) -> RunRecord:
    if record.mode == "enforce" and "patching" in (
        selected_roles if selected_roles is not None else scoping.site_roles(playbook)
    ):
        # Its staged rollout (canary batch first, halt the fleet on a failed batch) spans every
        # host and writes its record on the controller: sliced, each node would roll out alone.
        raise RunError(
            "enforce --nodes: the patching role's staged rollout spans the whole fleet; "
            "enforce patching without --nodes (or --controls for the other roles)"
        )
    live, problems = usable_nodes(loaded)
    for name, why in problems.items():
        log(f"node {name} left out: {why}")
    if not live:
        raise RunError(
            "no execution node answers: "
            + "; ".join(f"{name}: {why}" for name, why in problems.items())
        )
    plan = slice_hosts(hosts, live)
    private.mkdir(parents=True, exist_ok=True)
    transmit_dir = private / "transmit"
    playbook_dir, inv_path = _stage(transmit_dir, policy_root, inventory_path, selected_roles)
    if selected_roles is not None:
        staged = playbook_dir / "opsrunner-selected.yml"
    else:
        staged = playbook_dir / playbook.relative_to(paths.project_root() / "playbooks")
    started = store.begin_run(record)
    assert started.id is not None
    (private / RUN_META).write_text(
        json.dumps(
            {
                "record": {k: v for k, v in started.__dict__.items() if k != "id"},
                "hosts": hosts,
                "scope": in_scope,
                "controls": wanted,
                "selected": selected,
                "filtered": f"--tags {tags}" if tags else "",
                "slices": {node.name: chunk for node, chunk in plan},
            },
            default=str,
            indent=2,
        ),
        encoding="utf-8",
    )
    reporter.start(started, sum(len(v) for v in in_scope.values()), len(hosts))
    cmdline = ["--check", "--diff"] if record.mode == "audit" else []
    if tags:
        cmdline += ["--tags", tags]
    variables = dict(extravars or {})
    variables.update({f"{role}_disruptive": True for role in record.disruptive})
    key = Path(loaded.target_key).read_text(encoding="utf-8") if loaded.target_key else None
    job_kwargs: dict[str, Any] = {
        "playbook": str(staged),
        "inventory": str(inv_path),
        "cmdline": " ".join(cmdline) or None,
        "extravars": variables,
        "forks": settings.forks,
        "timeout": settings.run_timeout or None,
        "run_ident": record.ident,
        "task_timeout": settings.task_timeout,
    }
    if key:
        job_kwargs["ssh_key"] = key
    shared = _Shared()
    slices: list[Slice] = []
    threads = []
    for node, chunk in plan:
        collector = Collector(config.state_dir(settings), wanted)
        sl = Slice(node=node, hosts=chunk, ident=f"{record.ident}.{node.name}", collector=collector)
        streamer = _SliceStreamer(
            shared,
            store,
            started.id,
            collector,
            reporter,
            settings.batch_size,
            keeper=artifacts.Keeper(private / "artifacts" / sl.ident),
        )
        slices.append(sl)
        log(f"node {node.name}: {len(chunk)} host(s) {', '.join(chunk)}")
        threads.append(
            threading.Thread(
                target=_guarded,
                args=(sl, streamer),
                kwargs={
                    "transmit_dir": transmit_dir,
                    "private": private,
                    "job_kwargs": job_kwargs,
                    "connect_timeout": loaded.connect_timeout,
                    "cancel": cancel,
                },
                name=f"slice-{node.name}",
                daemon=True,
            )
        )
    with _signals_cancel(cancel):
        for thread in threads:
            thread.start()
        watcher = threading.Thread(target=_cancel_watch, args=(cancel, slices), daemon=True)
        watcher.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)
    final = _finish(
        store, started, slices, in_scope, hosts, selected, tags, cancel, reporter, shared
    )
    shutil.rmtree(transmit_dir, ignore_errors=True)
    reporter.finish(final)
    return final


def _guarded(sl: Slice, streamer: _SliceStreamer, **kwargs: Any) -> None:
    """Run a slice; whatever breaks, the slice ends recorded (never passing)."""
    try:
        _run_slice(sl, streamer, **kwargs)
    except Exception as exc:  # the slice is recorded as interrupted, with what broke it
        sl.status = "interrupted"
        sl.reason = f"{type(exc).__name__}: {exc}"[:300]
        if sl.proc is not None and sl.proc.poll() is None:
            sl.proc.kill()
    finally:
        # The slice's events are all in; its streamer must not be fed again.
        sl.collector.seal()


def _cancel_watch(cancel: threading.Event, slices: list[Slice]) -> None:
    """On cancel, end the ssh sessions: the workers stop and each slice records what it saw."""
    cancel.wait()
    for sl in slices:
        if sl.proc is not None and sl.proc.poll() is None:
            sl.proc.terminate()


def _run_status(slices: Sequence[Slice], cancel: threading.Event) -> str:
    states = {sl.status for sl in slices}
    if cancel.is_set() or "canceled" in states:
        return "canceled"
    for status in ("interrupted", "unstarted", "timeout", "failed"):
        if status in states:
            return "interrupted" if status == "unstarted" else status
    return "successful"


def _finish(
    store: Store,
    run: RunRecord,
    slices: Sequence[Slice],
    in_scope: Mapping[str, Iterable[str]],
    hosts: Mapping[str, list[str]],
    selected: list[str] | None,
    tags: str | None,
    cancel: threading.Event,
    reporter: Reporter,
    shared: _Shared,
) -> RunRecord:
    """Per slice what `run._finish` does for a local run (the rows it writes are reported too,
    so the progress lines add up to the results stored), then the run's own record."""
    assert run.id is not None
    now = dt.datetime.now(dt.UTC)
    host_records = []
    stats: dict[str, Any] = {}
    for sl in slices:
        collector = sl.collector
        collector.seal()
        streamer = _SliceStreamer(shared, store, run.id, collector, reporter, 1000)
        streamer.flush()
        scope = {h: list(in_scope[h]) for h in sl.hosts if h in in_scope}
        down = [h for h, s in collector.hosts.items() if not s.reachable and h in scope]
        known = store.last_known(down, before=run.started_at) if down else {}
        missing = collector.missing(
            scope,
            sl.status,
            now,
            selected=selected,
            filtered=f"--tags {tags}" if tags else "",
            last_known=known,
        )
        if sl.status in RETRYABLE and sl.reason:
            missing = [
                dataclasses.replace(r, reason=f"{r.reason}: {sl.reason}")
                if r.status == "unknown" and r.reason.startswith("run ")
                else r
                for r in missing
            ]
        streamer.write(missing)
        host_records += collector.host_records({h: hosts[h] for h in sl.hosts if h in hosts})
        if run.artifact_dir:  # the node's artifacts came back whole: events, console text
            artifacts.scrub(Path(run.artifact_dir).parent / sl.ident)
        stats.update({h: dict(s.stats) for h, s in collector.hosts.items() if s.stats})
    store.set_hosts(run.id, host_records)
    stats[SLICES_KEY] = [sl.summary() for sl in slices]
    status = _run_status(slices, cancel)
    reasons = [f"node {sl.node.name} ({sl.status}): {sl.reason}" for sl in slices if sl.reason]
    bad = [sl for sl in slices if sl.status in RETRYABLE]
    if bad:
        reasons.append(f"--retry-failed {run.ident} reruns the {len(bad)} slice(s) left unknown")
    rcs = [sl.rc for sl in slices if sl.rc is not None]
    rc = max(rcs) if rcs else None
    return store.finish_run(
        run.id, status, ended_at=now, rc=rc, reason="; ".join(reasons)[:2000], stats=stats
    )


# -- retry -----------------------------------------------------------------------------------
def retry_hosts(store: Store, run_key: str, mode: str) -> tuple[RunRecord, list[str]]:
    """The run to retry and the hosts to rerun: those of its slices left unknown (interrupted,
    timed out, canceled, never started); for a run that was not sliced, the hosts with an
    `unknown` result."""
    run = store.get_run(run_key)
    if run.mode != mode:
        raise NodesError(
            f"--retry-failed {run_key}: run {run.ident} is an {run.mode} run, not {mode}"
        )
    assert run.id is not None
    sliced = run.stats.get(SLICES_KEY) if isinstance(run.stats, dict) else None
    if isinstance(sliced, list):
        chosen = sorted(
            {
                str(h)
                for item in sliced
                if isinstance(item, dict) and item.get("status") in RETRYABLE
                for h in item.get("hosts") or ()
            }
        )
    else:
        chosen = sorted({r.host for r in store.results(run.id) if r.status == "unknown"})
    if not chosen:
        raise NodesError(f"--retry-failed {run_key}: run {run.ident} left nothing unknown to rerun")
    return run, chosen


def run(
    mode: str,
    inventory: str | os.PathLike[str] | None = None,
    *,
    nodes: str | os.PathLike[str] | NodesFile | None = None,
    retry_failed: str | None = None,
    log: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> RunRecord:
    """`run.run` with `--nodes` (slice across execution nodes) and `--retry-failed RUN` (rerun
    only the hosts a run left unknown: its interrupted slices). Raises RunError on bad input."""
    loaded: NodesFile | None = None
    if nodes is not None:
        try:
            loaded = nodes if isinstance(nodes, NodesFile) else load_nodes(nodes)
        except NodesError as exc:
            raise RunError(str(exc)) from exc
    if retry_failed:
        if kwargs.get("limit"):
            raise RunError("--retry-failed reruns the hosts the run left unknown: no --limit")
        store = kwargs.get("store")
        opened = store if isinstance(store, Store) else None
        try:
            if opened is None:
                settings = kwargs.get("settings") or config.load()
                opened = Store.open(store or settings.store, config.state_dir(settings))
                try:
                    previous, chosen = retry_hosts(opened, retry_failed, mode)
                finally:
                    opened.close()
            else:
                previous, chosen = retry_hosts(opened, retry_failed, mode)
        except NodesError as exc:
            raise RunError(str(exc)) from exc
        kwargs["limit"] = ",".join(chosen)
        if not kwargs.get("controls") and not kwargs.get("tags") and previous.controls:
            kwargs["controls"] = list(previous.controls)
        (log or (lambda _m: None))(
            f"retrying {len(chosen)} host(s) of run {previous.ident}: {', '.join(chosen)}"
        )
    if loaded is not None:
        kwargs["executor"] = executor(loaded, log)
    # Looked up when called, not bound at import: tests replace run.run.
    local_run: Callable[..., RunRecord] = importlib.import_module("opsrunner.runner.run").run
    return local_run(mode, inventory, **kwargs)
