"""Audit, enforce and operate runs on ansible-runner, streamed into the store as events arrive."""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import ansible_runner  # type: ignore[import-untyped]
import yaml

from opsrunner import config, paths
from opsrunner.runner import scope as scoping
from opsrunner.runner.events import Collector, read_artifact_events
from opsrunner.runner.progress import NullReporter, Reporter
from opsrunner.store import LockBusy, RunRecord, Store

MODES = ("audit", "enforce", "operate")
RUN_META = "opsrunner-run.json"


class RunError(RuntimeError):
    """A run could not be started (bad input); nothing was recorded."""


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
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.collector = collector
        self.reporter = reporter
        self.batch = batch
        self.max_wait = max_wait
        self.last_flush = time.monotonic()
        self.unreachable_told: set[str] = set()

    def __call__(self, event: dict[str, Any]) -> bool:
        self.collector.feed(event)
        if event.get("event") == "runner_on_unreachable":
            host = str((event.get("event_data") or {}).get("host") or "")
            if host and host not in self.unreachable_told:
                self.unreachable_told.add(host)
                self.reporter.unreachable(host, self.collector.hosts[host].reason)
        # Write when a batch is full, when results have waited max_wait seconds, or when the
        # next task starts: a long task (a backup, a reboot) never holds earlier results back.
        waiting = self.collector.dirty_count
        waited = time.monotonic() - self.last_flush
        boundary = event.get("event") == "playbook_on_task_start"
        if waiting and (waiting >= self.batch or boundary or waited > self.max_wait):
            self.flush()
        # True keeps the event in ansible-runner's artifacts: the recovery path.
        return True

    def flush(self) -> None:
        results = self.collector.pop_dirty()
        if results:
            self.store.add_results(self.run_id, results)
            done = len(self.collector.entries)
            for result in results:
                self.reporter.result(result, done)
        self.last_flush = time.monotonic()


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
) -> RunRecord:
    """Run the policy's playbooks (audit: check mode; enforce) or an operate job, and record it.

    Returns the recorded run. A run whose lock (policy + inventory) is held elsewhere is recorded
    as `skipped` and not started. Ctrl-C / SIGTERM / `cancel.set()` cancel cleanly.
    """
    from opsrunner.policy import PolicyError, load_policy

    if mode not in MODES:
        raise RunError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "operate" and not job:
        raise RunError("operate needs a job name (playbooks/operate_<job>.yml)")
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
        controls=tuple(wanted or ()),
        policy_commit=scoping.policy_commit(policy.root),
        policy_digest=policy.digest(),
        scheduled_for=scheduled_for,
        late=late,
        artifact_dir=str(private / "artifacts" / ident),
    )
    opened, close = _open_store(store, settings)
    try:
        try:
            with opened.lock(lock_name(policy.root, inventory_path)):
                return _execute(
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
            },
            default=str,
            indent=2,
        ),
        encoding="utf-8",
    )
    collector = Collector(config.state_dir(settings), wanted)
    streamer = _Streamer(store, started.id, collector, reporter, settings.batch_size)
    reporter.start(started, sum(len(v) for v in in_scope.values()), len(hosts))
    if selected_roles is not None:
        playbook = _site_playbook(private, selected_roles)
    cmdline = ["--check", "--diff"] if record.mode == "audit" else []
    if tags:
        cmdline += ["--tags", tags]
    envvars = {
        "ANSIBLE_CONFIG": str(paths.project_root() / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "OPSRUNNER_POLICY_DIR": str(policy_root),
        "OPSRUNNER_RESULTS_FILE": str(private / "results.json"),
        "OPSRUNNER_RUN_IDENT": record.ident,
        # ansible-runner finds ansible-playbook on PATH: put this environment's first.
        "PATH": os.pathsep.join([str(Path(ansible_playbook()).parent), os.environ.get("PATH", "")]),
    }
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
                extravars=dict(extravars or {}),
                forks=settings.forks,
                event_handler=streamer,
                cancel_callback=cancel.is_set,
                timeout=settings.run_timeout or None,
                quiet=True,
                settings={"suppress_ansible_output": True},
            )
        runner_status, rc = str(result.status), result.rc
    except BaseException as exc:
        # Whatever broke the runner itself, the run is recorded as interrupted, never compliant.
        error = f"{type(exc).__name__}: {exc}"
        streamer.flush()
        final = _finish(store, started.id, collector, in_scope, hosts, "interrupted", rc, error)
        reporter.finish(final)
        raise
    streamer.flush()
    status = _final_status(runner_status, collector.has_stats)
    reason = {
        "timeout": f"run exceeded {settings.run_timeout}s",
        "canceled": "canceled (Ctrl-C, SIGTERM or cancel request)",
        "interrupted": "no final stats event: ansible-playbook did not finish",
    }.get(status, "")
    final = _finish(store, started.id, collector, in_scope, hosts, status, rc, reason)
    reporter.finish(final)
    return final


def _finish(
    store: Store,
    run_id: int,
    collector: Collector,
    in_scope: Mapping[str, Iterable[str]],
    hosts: Mapping[str, list[str]],
    status: str,
    rc: int | None,
    reason: str,
) -> RunRecord:
    now = _now()
    # A run that ended without its stats event still records the failures it saw.
    collector.settle()
    store.add_results(run_id, collector.pop_dirty())
    store.add_results(run_id, collector.missing(in_scope, status, now))
    store.set_hosts(run_id, collector.host_records(hosts))
    stats = {h: dict(s.stats) for h, s in collector.hosts.items() if s.stats}
    return store.finish_run(run_id, status, ended_at=now, rc=rc, reason=reason, stats=stats)


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
    record = store.ensure_run(RunRecord(**fields))
    assert record.id is not None
    artifact = Path(record.artifact_dir)
    collector = Collector(state_dir, meta.get("controls"))
    for event in read_artifact_events(artifact):
        collector.feed(event)
    store.add_results(record.id, collector.results())
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
    return _finish(
        store,
        record.id,
        collector,
        meta.get("scope") or {},
        meta.get("hosts") or {},
        status,
        rc,
        reason,
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
