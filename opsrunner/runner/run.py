"""Audit, enforce and operate runs on ansible-runner, streamed into the store as events arrive."""

from __future__ import annotations

import configparser
import contextlib
import datetime as dt
import getpass
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import ansible_runner  # type: ignore[import-untyped]
import yaml

from opsrunner import config, paths
from opsrunner.runner import artifacts, mitogen, timing
from opsrunner.runner import scope as scoping
from opsrunner.runner.events import CONTROL_ID, Collector, read_artifact_events
from opsrunner.runner.progress import NullReporter, Reporter
from opsrunner.runner.reap import reap
from opsrunner.store import LockBusy, ResultRecord, RunRecord, Store, timings
from opsrunner.store import evidence as stored_evidence

MODES = ("audit", "enforce", "operate")
RUN_META = "opsrunner-run.json"


class RunError(RuntimeError):
    """A run could not be started (bad input); nothing was recorded."""


class RunAborted(RunError):
    """A started run stopped on an error of this machine (a full disk, a store that fails):
    what was committed stays, `runs import` finishes the record once the cause is fixed."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def lock_name(policy_root: Path, inventory: Path) -> str:
    """One lock per policy and inventory."""
    return f"opsrunner:{policy_root.resolve()}|{inventory.resolve()}"


@contextlib.contextmanager
def _signals_cancel(cancel: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM ask ansible-runner to cancel, so what was done still gets recorded."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        cancel.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _open_store(store: Store | str | None, settings: config.Settings) -> tuple[Store, bool]:
    if isinstance(store, Store):
        return store, False
    return Store.open(store or settings.store, config.state_dir(settings)), True


def ansible_playbook() -> str:
    """ansible-playbook of this Python environment (the venv need not be on PATH)."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.is_file():
        return str(beside)
    found = shutil.which("ansible-playbook")
    if not found:
        raise RunError("ansible-playbook not found next to this Python or on PATH")
    return found


def _site_playbook(private: Path, roles: list[str]) -> Path:
    """A playbook importing only the given roles' playbooks (for --controls)."""
    plays = [{"ansible.builtin.import_playbook": str(scoping.playbook_path(r))} for r in roles]
    path = private / "selected.yml"
    path.write_text(yaml.safe_dump(plays, sort_keys=False), encoding="utf-8")
    return path


def callback_dirs(ansible_cfg: Path) -> list[str]:
    """Callback plugin directories for ANSIBLE_CALLBACK_PLUGINS.

    ansible-runner sets ANSIBLE_CALLBACK_PLUGINS (adding its own `awx_display` directory), and an
    environment variable wins over ansible.cfg's `callback_plugins`: without this, the project's
    callback (`opsrunner_results`, enabled in ansible.cfg) would not load under opsrunner and
    results.json, the recovery path, would be missing. So: the caller's own
    $ANSIBLE_CALLBACK_PLUGINS, then ansible.cfg's `callback_plugins` (relative to the file),
    then this project's plugins/callback. ansible-runner appends its directory after these.
    """
    dirs: list[str] = []
    dirs += [d for d in os.environ.get("ANSIBLE_CALLBACK_PLUGINS", "").split(os.pathsep) if d]
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(ansible_cfg, encoding="utf-8")
        configured = parser.get("defaults", "callback_plugins", fallback="")
    except configparser.Error:
        configured = ""
    for item in re.split(r"[:,]", configured):
        item = item.strip()
        if item:
            path = Path(item).expanduser()
            dirs.append(str(path if path.is_absolute() else (ansible_cfg.parent / path).resolve()))
    own = Path(__file__).resolve().parents[2] / "plugins" / "callback"
    if own.is_dir():
        dirs.append(str(own))
    return list(dict.fromkeys(dirs))


def _ansible_env(policy_root: Path, ident: str, private: Path) -> dict[str, str]:
    """The environment ansible-playbook runs with (the run itself and the --tags listing)."""
    cfg = paths.project_root() / "ansible.cfg"
    # Opt-in Mitogen ($OPSRUNNER_MITOGEN); when it won't load, Ansible's own strategy runs.
    faster, note = mitogen.strategy_env()
    if note and not faster:
        print(f"opsrunner: {note}", file=sys.stderr)
    return faster | {
        "ANSIBLE_CONFIG": str(cfg),
        "ANSIBLE_CALLBACK_PLUGINS": os.pathsep.join(callback_dirs(cfg)),
        "ANSIBLE_NOCOLOR": "1",
        "OPSRUNNER_POLICY_DIR": str(policy_root),
        "OPSRUNNER_RESULTS_FILE": str(private / "results.json"),
        "OPSRUNNER_RUN_IDENT": ident,
        # ansible-runner finds ansible-playbook on PATH: put this environment's first.
        "PATH": os.pathsep.join([str(Path(ansible_playbook()).parent), os.environ.get("PATH", "")]),
    }


_ID_TAG = re.compile(r"^[a-z][a-z0-9]{1,7}-\d{3}$")
_LISTED_TASK = re.compile(r"^\s+(?P<name>.*?)\tTAGS: \[(?P<tags>[^\]]*)\]\s*$")


def listed_tasks(text: str) -> list[tuple[str, set[str]]]:
    """(task name without its "role : " prefix, tags) from `ansible-playbook --list-tasks`."""
    out = []
    for line in text.splitlines():
        match = _LISTED_TASK.match(line)
        if not match or line.lstrip().startswith("play #"):
            continue
        name = match.group("name").strip()
        if " : " in name and not CONTROL_ID.match(name):
            name = name.split(" : ", 1)[1]
        tags = {t.strip() for t in match.group("tags").split(",") if t.strip()}
        out.append((name, tags))
    return out


def tag_selection(
    controls: Iterable[Any], tags: str, listing: Iterable[tuple[str, set[str]]]
) -> set[str]:
    """The controls a `--tags` run selects.

    A control is selected when a tag names it (`fw-001`), names its role (`firewall`) or is
    `all`; or when a task named after the control ("SSH-001 | …") runs under one of the tags
    that is neither a control id nor `always` (group tags such as `ssh` or `tls`) — read from
    `ansible-playbook --list-tasks --tags`, so tags inherited through imports count. A task of
    another control that carries this control's id tag (the firewall's shared rule-set tasks)
    does not select it: its report does not run.
    """
    wanted = {t.strip() for t in tags.split(",") if t.strip()}
    chosen: set[str] = set()
    for control in controls:
        if control.kind != "automated":
            continue
        if {"all", control.id.lower(), str(control.role)} & wanted:
            chosen.add(control.id)
    groupish = {t for t in wanted if t != "always" and not _ID_TAG.match(t)}
    for name, task_tags in listing:
        match = CONTROL_ID.match(name)
        if match and task_tags & groupish:
            chosen.add(match.group(1))
    return chosen


def _list_tasks(
    playbook: Path, inventory: Path, limit: str | None, tags: str, env: Mapping[str, str]
) -> list[tuple[str, set[str]]]:
    argv = [ansible_playbook(), "-i", str(inventory.resolve()), str(playbook)]
    argv += ["--list-tasks", "--tags", tags] + (["--limit", limit] if limit else [])
    try:
        done = subprocess.run(
            argv,
            cwd=paths.project_root(),
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RunError(f"--tags {tags}: cannot list the tasks it selects: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RunError(f"--tags {tags}: ansible-playbook --list-tasks failed:\n" + "\n".join(tail))
    return listed_tasks(done.stdout)


def disruptive_roles() -> dict[str, Path]:
    """Roles of the project with a `<role>_disruptive` switch (in defaults or argument specs)."""
    found = {}
    for role in sorted((paths.project_root() / "roles").glob("*/")):
        name = role.name
        for place in ("defaults/main.yml", "meta/argument_specs.yml"):
            file = role / place
            if file.is_file() and f"{name}_disruptive" in file.read_text(encoding="utf-8"):
                found[name] = role
                break
    return found


def check_disruptive(mode: str, roles: Iterable[str] | None) -> tuple[str, ...]:
    """Validated `--allow-disruptive` roles (RunError names the bad one)."""
    names = [r.strip() for r in (roles or ()) if r.strip()]
    if not names:
        return ()
    if mode != "enforce":
        raise RunError("--allow-disruptive goes with enforce only (audit and operate never)")
    known = disruptive_roles()
    for name in names:
        if name not in known:
            raise RunError(
                f"--allow-disruptive {name}: no role with a {name}_disruptive switch "
                f"(roles with disruptive steps: {', '.join(known) or 'none'})"
            )
    return tuple(dict.fromkeys(names))


# The events that may make results final (a play or the run ended) or start a task: results
# waiting are written then. Only these and a task's end feed the timing collector.
_BOUNDARY = frozenset(("playbook_on_task_start", "playbook_on_play_start", "playbook_on_stats"))
_TIMED = frozenset(
    (
        "playbook_on_task_start",
        "runner_on_ok",
        "runner_on_failed",
        "runner_on_skipped",
        "runner_on_unreachable",
    )
)


class _Streamer:
    """The event handler: feeds the collector, writes batches, drives the reporter."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        collector: Collector,
        reporter: Reporter,
        batch: int,
        max_wait: float = 1.0,
        keeper: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.keeper = keeper
        self.run_id = run_id
        self.collector = collector
        self.reporter = reporter
        self.batch = batch
        self.max_wait = max_wait
        self.last_flush = time.monotonic()
        self.unreachable_told: set[str] = set()
        self.told = 0
        self.timings = timing.TimingCollector()
        # Results written are let go by the collector; this store gives them back should their
        # control report again in a later play (memory stays flat as the run grows).
        collector.reload = self._reload

    def _reload(self, host: str, cid: str) -> tuple[str, bytes] | None:
        return stored_evidence.stored_report(self.store, self.run_id, host, cid)

    def __call__(self, event: dict[str, Any]) -> bool:
        self.collector.feed(event)
        kind = event.get("event")
        if kind in _TIMED:
            self.timings.feed(event)
            if kind == "runner_on_unreachable":
                host = str((event.get("event_data") or {}).get("host") or "")
                if host and host not in self.unreachable_told:
                    self.unreachable_told.add(host)
                    self.reporter.unreachable(host, self.collector.hosts[host].reason)
        # Results are final when their play ends (the collector seals them). Write them when a
        # batch is full, when they have waited max_wait seconds, or at a task or play boundary.
        waiting = self.collector.dirty_count
        if waiting and (
            waiting >= self.batch
            or kind in _BOUNDARY
            or time.monotonic() - self.last_flush > self.max_wait
        ):
            self.flush()
        if self.keeper is None:
            return True  # ansible-runner keeps the whole event in its artifacts
        # The recovery path keeps only what re-import needs, no task output (runner.artifacts).
        self.keeper(event)
        return False

    def flush(self) -> None:
        """Write the final results waiting (one transaction per batch) and report each once."""
        self.write(self.collector.pop_dirty())
        # Full reports this run wrote and has since superseded (a control reported again).
        stored_evidence.discard(self.store, self.collector.pop_superseded())
        self.last_flush = time.monotonic()

    def write(self, results: list[ResultRecord]) -> None:
        """Store results in batches of `batch` and tell the reporter about each of them."""
        size = max(1, self.batch)
        for start in range(0, len(results), size):
            chunk = results[start : start + size]
            self.store.add_results(self.run_id, chunk)
            for result in chunk:
                self.told += 1
                self.reporter.result(result, self.told)


def _final_status(runner_status: str, has_stats: bool) -> str:
    if runner_status in ("canceled", "timeout"):
        return runner_status
    if not has_stats:
        return "interrupted"
    return "successful" if runner_status == "successful" else "failed"


def run(
    mode: str,
    inventory: str | os.PathLike[str] | None = None,
    *,
    limit: str | None = None,
    controls: Iterable[str] | None = None,
    store: Store | str | None = None,
    job: str | None = None,
    settings: config.Settings | None = None,
    policy_path: str | os.PathLike[str] | None = None,
    reporter: Reporter | None = None,
    cancel: threading.Event | None = None,
    scheduled_for: dt.datetime | None = None,
    late: bool = False,
    extravars: Mapping[str, Any] | None = None,
    tags: str | None = None,
    allow_disruptive: Iterable[str] | None = None,
    executor: Callable[..., RunRecord] | None = None,
) -> RunRecord:
    """Run the policy's playbooks (audit: check mode; enforce) or an operate job, and record it.

    Returns the recorded run. A run whose lock (policy + inventory) is held elsewhere is recorded
    as `skipped` and not started. Ctrl-C / SIGTERM / `cancel.set()` cancel cleanly.

    `tags` (ansible tags) selects controls (`tag_selection`): the run records them as its
    `controls`, the other controls in scope `notchecked` ("filtered out by --tags …").
    `allow_disruptive` (enforce only) names roles whose disruptive steps this run may take: they
    get `<role>_disruptive: true` as extra vars, and the run records them.
    `executor` replaces the local execution (same arguments as `_execute`): the scale-out
    over execution nodes (`opsrunner.runner.nodes`) uses it.
    """
    from opsrunner.policy import PolicyError, load_policy

    if mode not in MODES:
        raise RunError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "operate" and not job:
        raise RunError("operate needs a job name (playbooks/operate_<job>.yml)")
    disruptive = check_disruptive(mode, allow_disruptive)
    tags = tags.strip() if tags and tags.strip() else None
    settings = settings or config.load()
    reporter = reporter or NullReporter()
    cancel = cancel or threading.Event()
    state = config.state_dir(settings)
    inventory_path = Path(inventory) if inventory else config.inventory(settings)
    try:
        where = policy_path or settings.policy
        policy = load_policy(Path(where) if where else None)
    except PolicyError as exc:
        raise RunError(f"the policy does not load:\n{exc}") from exc
    try:
        hosts = scoping.inventory_groups(inventory_path, limit)
        wanted = scoping.check_controls(policy, controls) if controls else None
        selected_roles: list[str] | None = None
        if mode == "operate":
            playbook = scoping.playbook_path(f"operate_{job}")
            in_scope: dict[str, list[str]] = {}
        else:
            site = scoping.playbook_path("site")
            roles = scoping.site_roles(site)
            if wanted:
                needed = {policy.control(c).role for c in wanted}
                missing = sorted(str(r) for r in needed if r not in roles)
                if missing:
                    raise scoping.ScopeError(
                        f"--controls: site.yml runs no playbook for role {', '.join(missing)}"
                    )
                roles = [r for r in roles if r in needed]
                selected_roles = roles
            playbook = site
            in_scope = scoping.controls_in_scope(policy, hosts, roles, wanted)
    except scoping.ScopeError as exc:
        raise RunError(str(exc)) from exc
    if not hosts:
        raise RunError(
            f"{inventory_path}: no hosts match --limit {limit!r}"
            if limit
            else f"{inventory_path}: no hosts"
        )

    ident = f"{_now():%Y%m%dT%H%M%SZ}-{mode}-{uuid.uuid4().hex[:8]}"
    private = state / "runs" / ident
    selected: list[str] | None = None
    if tags and mode != "operate":
        listing = _list_tasks(
            playbook, inventory_path, limit, tags, _ansible_env(policy.root, ident, private)
        )
        covered = {cid for cids in in_scope.values() for cid in cids}
        chosen = tag_selection(policy.controls, tags, listing)
        selected = sorted(covered & chosen)
        if not selected:
            raise RunError(
                f"--tags {tags}: selects none of the {len(covered)} controls in scope (tags are "
                "control ids such as fw-001, role names such as firewall, or the roles' own "
                "group tags such as ssh)"
            )
    record = RunRecord(
        ident=ident,
        mode=mode,
        job=job or "",
        playbook=str(playbook.relative_to(paths.project_root()))
        if playbook.is_relative_to(paths.project_root())
        else str(playbook),
        status="running",
        started_at=_now(),
        user=getpass.getuser(),
        controller=socket.gethostname(),
        inventory=str(inventory_path),
        limit=limit or "",
        controls=tuple(selected if selected is not None else (wanted or ())),
        disruptive=disruptive,
        policy_commit=scoping.policy_commit(policy.root),
        policy_digest=policy.digest(),
        scheduled_for=scheduled_for,
        late=late,
        artifact_dir=str(private / "artifacts" / ident),
    )
    opened, close = _open_store(store, settings)
    try:
        try:
            # Everything the run leaves (artifacts, results.json, locks) is owner-only.
            with paths.owner_only(), opened.lock(lock_name(policy.root, inventory_path)):
                return (executor or _execute)(
                    opened,
                    record,
                    private=private,
                    playbook=playbook,
                    hosts=hosts,
                    in_scope=in_scope,
                    wanted=wanted,
                    selected_roles=selected_roles,
                    settings=settings,
                    policy_root=policy.root,
                    inventory_path=inventory_path,
                    reporter=reporter,
                    cancel=cancel,
                    extravars=extravars,
                    tags=tags,
                    selected=selected,
                )
        except LockBusy as exc:
            now = _now()
            skipped = opened.begin_run(
                _replace(
                    record,
                    status="skipped",
                    ended_at=now,
                    reason=f"overlaps a running job: {exc}",
                    artifact_dir="",
                )
            )
            reporter.finish(skipped)
            return skipped
    finally:
        if close:
            opened.close()


def _replace(record: RunRecord, **changes: Any) -> RunRecord:
    import dataclasses

    return dataclasses.replace(record, **changes)


def _execute(
    store: Store,
    record: RunRecord,
    *,
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
    private.mkdir(parents=True, exist_ok=True)
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
            },
            default=str,
            indent=2,
        ),
        encoding="utf-8",
    )
    collector = Collector(config.state_dir(settings), wanted)
    streamer = _Streamer(
        store,
        started.id,
        collector,
        reporter,
        settings.batch_size,
        keeper=artifacts.Keeper(Path(record.artifact_dir)),
    )
    reporter.start(started, sum(len(v) for v in in_scope.values()), len(hosts))
    if selected_roles is not None:
        playbook = _site_playbook(private, selected_roles)
    cmdline = ["--check", "--diff"] if record.mode == "audit" else []
    if tags:
        cmdline += ["--tags", tags]
    envvars = _ansible_env(policy_root, record.ident, private)
    variables = dict(extravars or {})
    # Per-run authorisation of disruptive steps (recorded on the run as `disruptive`).
    variables.update({f"{role}_disruptive": True for role in record.disruptive})
    if settings.task_timeout:
        envvars["ANSIBLE_TASK_TIMEOUT"] = str(settings.task_timeout)
    runner_status = "failed"
    rc: int | None = None
    error = ""
    try:
        with _signals_cancel(cancel):
            result = ansible_runner.run(
                private_data_dir=str(private),
                project_dir=str(paths.project_root()),
                ident=record.ident,
                playbook=str(playbook),
                inventory=str(inventory_path.resolve()),
                limit=record.limit or None,
                cmdline=" ".join(cmdline) or None,
                envvars=envvars,
                extravars=variables,
                forks=settings.forks,
                event_handler=streamer,
                cancel_callback=cancel.is_set,
                timeout=settings.run_timeout or None,
                quiet=True,
                # No console text on disk: the keeper writes Ansible's warnings and errors.
                settings={"suppress_ansible_output": True, "suppress_output_file": True},
            )
        runner_status, rc = str(result.status), result.rc
    except BaseException as exc:
        # Whatever broke the runner itself, the run is recorded as interrupted, never compliant.
        error = f"{type(exc).__name__}: {exc}"
        reap(record.ident)
        try:
            final = _finish(
                streamer, in_scope, hosts, "interrupted", rc, error, started, selected, tags
            )
            reporter.finish(final)
        except Exception as again:
            if not _machine_error(exc):
                raise exc from again
            exc = again if _machine_error(again) else exc
        if _machine_error(exc):
            raise RunAborted(
                f"run {record.ident} stopped: {_first_line(exc)}. Results committed before "
                f"are kept; once fixed, `opsrunner runs import {private}` completes the record"
            ) from exc
        raise
    status = _final_status(runner_status, collector.has_stats)
    if status in ("timeout", "canceled", "interrupted"):
        reap(record.ident)  # workers and ssh clients still waiting on a hung host
    reason = {
        "timeout": f"run exceeded {settings.run_timeout}s",
        "canceled": "canceled (Ctrl-C, SIGTERM or cancel request)",
        "interrupted": "no final stats event: ansible-playbook did not finish",
    }.get(status, "")
    final = _finish(streamer, in_scope, hosts, status, rc, reason, started, selected, tags)
    reporter.finish(final)
    return final


def _machine_error(exc: BaseException) -> bool:
    """A fault of this machine rather than of the run (a full disk, a failing store)."""
    from sqlalchemy.exc import OperationalError

    from opsrunner.store import StoreError

    return isinstance(exc, OSError | OperationalError | StoreError)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def _finish(
    streamer: _Streamer,
    in_scope: Mapping[str, Iterable[str]],
    hosts: Mapping[str, list[str]],
    status: str,
    rc: int | None,
    reason: str,
    run: RunRecord,
    selected: Collection[str] | None,
    tags: str | None,
) -> RunRecord:
    """Write what is left, then a row for every in-scope host x control nobody reported."""
    store, collector = streamer.store, streamer.collector
    assert run.id is not None
    now = _now()
    # A run that ended without its stats event still records the results and failures it saw.
    collector.seal()
    streamer.flush()
    down = [h for h, state in collector.hosts.items() if not state.reachable and h in in_scope]
    # An unreachable host keeps the applicability it had when it was last checked.
    known = store.last_known(down, before=run.started_at) if down else {}
    streamer.write(
        collector.missing(
            in_scope,
            status,
            now,
            selected=selected,
            filtered=f"--tags {tags}" if tags else "",
            last_known=known,
        )
    )
    store.set_hosts(run.id, collector.host_records(hosts))
    if run.artifact_dir:  # Ansible writes its fact cache 0644 whatever the umask
        artifacts.scrub(Path(run.artifact_dir))  # what a crash or another writer left whole
        paths.tighten_tree(Path(run.artifact_dir).parents[1])
    timings.set_timings(store, run.id, streamer.timings.records())
    stats = {h: dict(s.stats) for h, s in collector.hosts.items() if s.stats}
    return store.finish_run(run.id, status, ended_at=now, rc=rc, reason=reason, stats=stats)


def import_artifacts(store: Store, private_dir: Path, state_dir: Path | None = None) -> RunRecord:
    """Re-import a run from its private data dir (after a crash). Idempotent: no duplicate rows.

    A run still marked `running` is finished from what the artifacts show: without a final
    stats event it is `interrupted`, and every unreported control in scope `unknown`.
    """
    meta_file = private_dir / RUN_META
    if not meta_file.is_file():
        raise RunError(f"{meta_file}: not an opsrunner run directory")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    fields = dict(meta["record"])
    for key in ("started_at", "ended_at", "scheduled_for"):
        if fields.get(key):
            fields[key] = dt.datetime.fromisoformat(fields[key])
    fields["controls"] = tuple(fields.get("controls") or ())
    fields["disruptive"] = tuple(fields.get("disruptive") or ())
    record = store.ensure_run(RunRecord(**fields))
    assert record.id is not None
    artifact = Path(record.artifact_dir)
    collector = Collector(state_dir, meta.get("controls"))
    durations = timing.TimingCollector()
    for event in read_artifact_events(artifact):
        collector.feed(event)
        durations.feed(event)
    store.add_results(record.id, collector.results())
    timings.set_timings(store, record.id, durations.records())
    if record.status != "running":
        store.set_hosts(record.id, collector.host_records(meta.get("hosts") or {}))
        return store.get_run(record.id)
    status_file = artifact / "status"
    runner_status = (
        status_file.read_text(encoding="utf-8").strip() if status_file.is_file() else "failed"
    )
    rc_file = artifact / "rc"
    rc = (
        int(rc_file.read_text().strip())
        if rc_file.is_file() and rc_file.read_text().strip().lstrip("-").isdigit()
        else None
    )
    status = _final_status(runner_status, collector.has_stats)
    reason = "recovered from artifacts" + ("" if collector.has_stats else ": no final stats event")
    filtered = str(meta.get("filtered") or "")
    streamer = _Streamer(store, record.id, collector, NullReporter(), 1000)
    streamer.timings = durations
    return _finish(
        streamer,
        meta.get("scope") or {},
        meta.get("hosts") or {},
        status,
        rc,
        reason,
        record,
        meta.get("selected"),
        filtered.removeprefix("--tags ") or None,
    )


def recover_stale(
    store: Store, run_timeout: int, now: dt.datetime | None = None
) -> list[RunRecord]:
    """Finish runs left `running` by a crashed controller, from their artifacts.

    Only runs older than the run timeout (plus a minute) are touched: ansible-runner would have
    stopped them by then, so none of them can still be alive. Runs whose artifacts are not on
    this controller are left for the controller that has them.
    """
    if run_timeout <= 0:
        return []
    moment = now or _now()
    limit = dt.timedelta(seconds=run_timeout + 60)
    done = []
    for record in store.running():
        private = Path(record.artifact_dir).parents[1] if record.artifact_dir else None
        if (
            moment - record.started_at < limit
            or private is None
            or not (private / RUN_META).is_file()
        ):
            continue
        done.append(import_artifacts(store, private))
    return done
