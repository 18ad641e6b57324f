"""Drills (5.2) on real hosts, each recorded as a journal like Chaos Toolkit's, and evaluated.

A journal holds the steady state before, the fault (method), the steady state during and
after, the measured times, the runs it made, its status (`completed`, `deviated`, `aborted`)
and the evaluation of 5.2.2: the plan and scenario it tested, what to revise, and improvement
items (owner, due date) when it found problems.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from opsrunner import config, paths
from opsrunner.policy.loader import Policy
from opsrunner.policy.models import Plan, ScenarioKind
from opsrunner.store import Store
from opsrunner.store.models import Drill
from opsrunner.store.records import ResultRecord, RunRecord

KINDS = ("restore", "service-failure", "attack")
SCENARIO: dict[str, ScenarioKind] = {
    "restore": "data_loss",
    "service-failure": "system_failure",
    "attack": "network_attack",
}
STATUSES = ("completed", "deviated", "aborted")
# How long an improvement item of a drill may stay open.
IMPROVEMENT_DAYS = 30


class DrillError(Exception):
    """A drill that cannot start (bad input); nothing was recorded."""


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Journal:
    """One drill as it happens; `record` stores it."""

    kind: str
    plan: Plan
    hosts: list[str]
    started_at: dt.datetime = field(default_factory=_now)
    ended_at: dt.datetime | None = None
    steady_state_before: dict[str, Any] = field(default_factory=dict)
    method: list[dict[str, Any]] = field(default_factory=list)
    steady_state_during: dict[str, Any] = field(default_factory=dict)
    steady_state_after: dict[str, Any] = field(default_factory=dict)
    measurements: dict[str, float | None] = field(default_factory=dict)
    targets: dict[str, float] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    aborted: str = ""

    def step(self, action: str, **detail: Any) -> None:
        """Append one action of the method, timestamped."""
        self.method.append({"at": _utc(_now()), "action": action, **detail})

    @property
    def status(self) -> str:
        """aborted (the drill broke), deviated (steady state or a target missed), completed."""
        if self.aborted:
            return "aborted"
        ok = self.steady_state_after.get("ok") is True and self.steady_state_before.get("ok")
        return "completed" if ok and not self.problems else "deviated"

    def evaluation(self, today: dt.date) -> dict[str, Any]:
        """5.2.2: the plan tested, what went well, what to revise, improvement items."""
        scenario = SCENARIO[self.kind]
        problems = [*self.problems]
        if self.aborted:
            problems.append(f"the drill was aborted: {self.aborted}")
        revise = [f"{self.plan.id} scenarios.{scenario}: {p}" for p in problems] or [
            f"{self.plan.id} scenarios.{scenario}: no change needed"
        ]
        items = [
            {
                "id": f"A{i}",
                "what": f"Fix and re-drill: {p}",
                "owner": self.plan.owner,
                "due": str(today + dt.timedelta(days=IMPROVEMENT_DAYS)),
                "done_at": None,
            }
            for i, p in enumerate(problems, start=1)
        ]
        return {
            "plan": self.plan.id,
            "scenario": scenario,
            "recovery_target": self.plan.scenarios[scenario].recovery_target,
            "findings": problems or ["steady state held and every target was met"],
            "revise": revise,
            "action_items": items,
        }

    def as_dict(self) -> dict[str, Any]:
        """The journal, JSON-ready."""
        end = self.ended_at or _now()
        return {
            "kind": self.kind,
            "status": self.status,
            "plan": self.plan.id,
            "hosts": self.hosts,
            "started_at": _utc(self.started_at),
            "ended_at": _utc(end),
            "duration_seconds": round((end - self.started_at).total_seconds(), 1),
            "steady_state_before": self.steady_state_before,
            "method": self.method,
            "steady_state_during": self.steady_state_during,
            "steady_state_after": self.steady_state_after,
            "measurements": self.measurements,
            "targets": self.targets,
            "runs": self.runs,
            "notes": self.notes,
            "evaluation": self.evaluation(end.date()),
        }


def plan_for(policy: Policy, groups: Sequence[str]) -> Plan:
    """The plan of the grade covering a host's tier (the most important plan if none does)."""
    if not policy.plans:
        raise DrillError("no emergency plan in policy/plans: a drill tests a plan (5.2.2)")
    tier = policy.tier_for(groups)
    for plan in policy.plans:
        if tier in plan.tiers:
            return plan
    return policy.plans[0]


def record(store: Store, journal: Journal, run_id: int | None = None) -> int:
    """Store a finished journal; returns the drill's id."""
    journal.ended_at = journal.ended_at or _now()
    data = journal.as_dict()
    with store.session() as session:
        row = Drill(
            kind=journal.kind,
            run_id=run_id,
            held_at=journal.started_at,
            outcome=journal.status,
            data=json.loads(json.dumps(data, default=str)),
        )
        session.add(row)
        session.flush()
        return int(row.id)


@dataclass(frozen=True)
class DrillView:
    """A stored drill."""

    id: int
    kind: str
    held_at: dt.datetime
    outcome: str
    data: dict[str, Any]

    def overdue_items(self, today: dt.date) -> list[dict[str, Any]]:
        """Improvement items past due and not done."""
        items = self.data.get("evaluation", {}).get("action_items", [])
        return [
            i for i in items if not i.get("done_at") and dt.date.fromisoformat(i["due"]) < today
        ]


def listing(
    store: Store, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> list[DrillView]:
    """Drills held in [since, until), oldest first."""
    query = select(Drill).order_by(Drill.held_at, Drill.id)
    if since is not None:
        query = query.where(Drill.held_at >= since)
    if until is not None:
        query = query.where(Drill.held_at < until)
    with store.session() as session:
        return [
            DrillView(r.id, r.kind, r.held_at, r.outcome, dict(r.data))
            for r in session.scalars(query)
        ]


def show(store: Store, drill_id: int) -> DrillView:
    """One drill by id."""
    with store.session() as session:
        row = session.get(Drill, drill_id)
        if row is None:
            raise DrillError(f"no drill {drill_id}")
        return DrillView(row.id, row.kind, row.held_at, row.outcome, dict(row.data))


# -- running drills on hosts ---------------------------------------------------------------------

RunFn = Callable[..., RunRecord]


@dataclass
class Context:
    """What a drill needs: where it runs, how it runs playbooks and commands, how long it waits."""

    store: Store
    policy: Policy
    settings: config.Settings
    inventory: Path
    hosts: dict[str, list[str]]
    addresses: dict[str, str]
    run: RunFn
    poll_seconds: float = 2.0
    timeout_seconds: float = 180.0
    # Evidence this fresh stands for the steady state before a fault (no new audit needed).
    fresh_seconds: float = 600.0
    extra_env: dict[str, str] = field(default_factory=dict)

    def results(self, run: RunRecord) -> list[ResultRecord]:
        """The results a run recorded."""
        assert run.id is not None
        return self.store.results(run.id)

    def shell(self, host: str, command: str, timeout: int = 120) -> tuple[int, str]:
        """Run a shell command on one host through Ansible (the hosts' own SSH route)."""
        import ansible_runner  # type: ignore[import-untyped]

        from opsrunner.runner.run import ansible_playbook

        with tempfile.TemporaryDirectory(prefix="opsrunner-drill-") as private:
            result = ansible_runner.run(
                private_data_dir=private,
                project_dir=str(paths.project_root()),
                inventory=str(self.inventory.resolve()),
                host_pattern=host,
                module="ansible.builtin.shell",
                module_args=command,
                envvars={
                    "ANSIBLE_CONFIG": str(paths.project_root() / "ansible.cfg"),
                    # ansible-runner finds `ansible` on PATH: this environment's first.
                    "PATH": os.pathsep.join(
                        [str(Path(ansible_playbook()).parent), os.environ["PATH"]]
                    ),
                },
                timeout=timeout,
                quiet=True,
            )
            out = ""
            for event in result.events:
                if event.get("event") in ("runner_on_ok", "runner_on_failed"):
                    res = event.get("event_data", {}).get("res", {})
                    out = str(res.get("stdout", "")) + str(res.get("stderr", ""))
            return int(result.rc or 0), out


def _by_control(results: Sequence[ResultRecord], host: str) -> dict[str, ResultRecord]:
    return {r.control_id: r for r in results if r.host == host}


def _audit(ctx: Context, journal: Journal, host: str, controls: Sequence[str]) -> dict[str, str]:
    run = ctx.run(
        "audit",
        ctx.inventory,
        limit=host,
        controls=list(controls),
        store=ctx.store,
        settings=ctx.settings,
        policy_path=ctx.policy.root,
    )
    journal.runs.append(run.ident)
    found = _by_control(ctx.results(run), host)
    return {c: found[c].status if c in found else "unknown" for c in controls}


def _steady(
    ctx: Context, journal: Journal, host: str, controls: Sequence[str]
) -> tuple[dict[str, str], str]:
    """The controls' statuses before the fault: recorded evidence when it is fresh (no older
    than `Context.fresh_seconds`), else a new audit. Returns the statuses and their source."""
    now = _now()
    latest = {
        r.control_id: r
        for r in ctx.store.latest_results()
        if r.host == host
        and r.control_id in controls
        and (now - r.checked_at).total_seconds() <= ctx.fresh_seconds
    }
    if set(latest) == set(controls):
        return {c: latest[c].status for c in controls}, "recorded evidence"
    return _audit(ctx, journal, host, controls), "audit"


def _wait_until(ctx: Context, probe: Callable[[], bool], started: float) -> tuple[bool, float]:
    """Poll `probe` until true or the drill's timeout; seconds since `started` when it held."""
    while True:
        if probe():
            return True, round(time.monotonic() - started, 1)
        if time.monotonic() - started > ctx.timeout_seconds:
            return False, round(time.monotonic() - started, 1)
        time.sleep(ctx.poll_seconds)


def drill_restore(ctx: Context, journal: Journal, host: str) -> int | None:
    """Restore the newest snapshot into scratch; checksums compared, RTO and RPO measured."""
    # Steady state: the newest backup of the host has its off-site copy on record (BAK-003,
    # BAK-004 from the last backup job). Read from the store: re-auditing the backup role
    # would add a minute and prove nothing the backup job did not record.
    latest = {
        r.control_id: r
        for r in ctx.store.latest_results(modes=("audit", "enforce", "operate"))
        if r.host == host and r.control_id in ("BAK-003", "BAK-004")
    }
    probes = {c: (latest[c].status if c in latest else "none") for c in ("BAK-003", "BAK-004")}
    journal.steady_state_before = {
        "ok": all(s == "pass" for s in probes.values()),
        "probes": probes,
        "hypothesis": "a full backup and its off-site copy are on record",
    }
    if not journal.steady_state_before["ok"]:
        journal.aborted = f"steady state does not hold before the fault: {probes}"
        return None
    journal.step("restore the newest snapshot of every set into scratch", host=host)
    run = ctx.run(
        "operate",
        ctx.inventory,
        job="restore_test",
        limit=host,
        store=ctx.store,
        settings=ctx.settings,
        policy_path=ctx.policy.root,
    )
    journal.runs.append(run.ident)
    found = _by_control(ctx.results(run), host).get("BAK-007")
    if found is None or found.status not in ("pass", "fail"):
        journal.aborted = f"the restore drill did not report: {found.reason if found else 'none'}"
        return run.id
    data = found.data
    sets = data.get("sets", {})
    verified = sum(int(s.get("files_verified", 0)) for s in sets.values())
    matched = data.get("status") == "passed"
    journal.steady_state_during = {
        "ok": matched,
        "checksums_matched": matched,
        "files_verified": verified,
        "sets": {k: v.get("snapshot") for k, v in sets.items()},
    }
    journal.measurements = {
        "rto_seconds": float(data.get("rto_seconds", 0.0)),
        "rpo_seconds": float(data.get("rpo_seconds", 0.0)),
    }
    journal.targets = {
        "rto_seconds": float(data.get("rto_target_seconds", 0.0)),
        "rpo_seconds": float(data.get("rpo_target_seconds", 0.0)),
    }
    if not matched:
        journal.problems += [str(p) for p in data.get("problems", [])] or ["checksums differ"]
    for key in ("rto_seconds", "rpo_seconds"):
        if journal.targets[key] and (journal.measurements[key] or 0) > journal.targets[key]:
            journal.problems.append(
                f"{key[:3].upper()} {journal.measurements[key]:g} s beyond the target "
                f"{journal.targets[key]:g} s"
            )
    # After: the repositories pass `restic check --read-data` (the drill's own last step).
    problems = [str(p) for p in data.get("problems", [])]
    journal.steady_state_after = {
        "ok": matched and not problems,
        "probes": {"restic check --read-data": problems or "ok"},
    }
    return run.id


SERVICE = "prometheus-node-exporter"
SERVICE_CONTROL = "MON-002"


def drill_service_failure(ctx: Context, journal: Journal, host: str) -> int | None:
    """Stop the monitored exporter; time until its control fails, then until enforce fixes it."""
    before, source = _steady(ctx, journal, host, [SERVICE_CONTROL])
    journal.steady_state_before = {
        "ok": before[SERVICE_CONTROL] == "pass",
        "probes": before,
        "from": source,
        "hypothesis": f"{SERVICE} runs and answers the controller ({SERVICE_CONTROL})",
    }
    if not journal.steady_state_before["ok"]:
        journal.aborted = f"steady state does not hold before the fault: {before}"
        return None
    start = time.monotonic()
    code, out = ctx.shell(host, f"systemctl stop {SERVICE}")
    journal.step(f"systemctl stop {SERVICE}", host=host, rc=code, output=out[-300:])
    if code != 0:
        journal.aborted = f"could not stop {SERVICE}: {out[-200:]}"
        return None
    statuses: list[str] = []

    def failing() -> bool:
        statuses.append(_audit(ctx, journal, host, [SERVICE_CONTROL])[SERVICE_CONTROL])
        return statuses[-1] == "fail"

    detected, detect_s = _wait_until(ctx, failing, start)
    journal.steady_state_during = {"ok": detected, "probes": {SERVICE_CONTROL: statuses}}
    journal.measurements["detect_seconds"] = detect_s if detected else None
    if not detected:
        journal.problems.append(f"{SERVICE_CONTROL} did not fail within {ctx.timeout_seconds:g} s")
    journal.step(
        f"enforce {SERVICE_CONTROL} (the monitoring role restarts the exporter)", host=host
    )
    run = ctx.run(
        "enforce",
        ctx.inventory,
        limit=host,
        controls=[SERVICE_CONTROL],
        store=ctx.store,
        settings=ctx.settings,
        policy_path=ctx.policy.root,
    )
    journal.runs.append(run.ident)
    recovered, recover_s = _wait_until(
        ctx, lambda: _audit(ctx, journal, host, [SERVICE_CONTROL])[SERVICE_CONTROL] == "pass", start
    )
    journal.measurements["recover_seconds"] = recover_s if recovered else None
    journal.steady_state_after = {
        "ok": recovered,
        "probes": {SERVICE_CONTROL: "pass" if recovered else "fail"},
    }
    # The plan's time to resolve an incident of its grade is the recovery target.
    target = journal.plan.resolve_hours * 3600.0
    journal.targets = {"recover_seconds": target}
    if recovered and recover_s > target:
        journal.problems.append(f"recovery took {recover_s:g} s, beyond {target:g} s")
    if not recovered:
        journal.problems.append(f"{SERVICE} did not come back within {ctx.timeout_seconds:g} s")
    return run.id


BURST_EXTRA = 2  # failed logins beyond the larger of maxretry and the log review threshold
BURST_PID = "/run/opsrunner-drill-burst.pid"


def _audit_records(
    ctx: Context, journal: Journal, host: str, controls: Sequence[str]
) -> dict[str, ResultRecord]:
    run = ctx.run(
        "audit",
        ctx.inventory,
        limit=host,
        controls=list(controls),
        store=ctx.store,
        settings=ctx.settings,
        policy_path=ctx.policy.root,
    )
    journal.runs.append(run.ident)
    return _by_control(ctx.results(run), host)


def drill_attack(ctx: Context, journal: Journal, source: str, target: str) -> int | None:
    """A real burst of failed SSH logins from one host to another: log review raises it,
    intrusion detection bans the source; the controller is never banned."""
    if source == target:
        raise DrillError("--source: the attacking host must differ from the target")
    src_addr, dst_addr = ctx.addresses[source], ctx.addresses[target]
    before, origin = _steady(ctx, journal, target, ["IDS-001", "IDS-002", "IDS-003"])
    banned = _banned(ctx, target)
    journal.steady_state_before = {
        "ok": all(s == "pass" for s in before.values()) and src_addr not in banned,
        "probes": {**before, "banned": banned},
        "from": origin,
        "hypothesis": "fail2ban runs with the policy's jail; the source is not banned yet",
    }
    if not journal.steady_state_before["ok"]:
        journal.aborted = f"steady state does not hold before the fault: {before}, banned {banned}"
        return None
    # fail2ban bans after maxretry failures, before log review's per-source threshold is
    # reached: the attacker comes back in waves (the drill lifts each ban as if its bantime
    # had passed) until the failures on record reach the threshold. Each wave runs in the
    # background on the source, attempts 0.4 s apart (each held ~3 s by sshd's failure delay,
    # few enough at once to stay under sshd's MaxStartups). `timeout`: once the ban drops its
    # packets an attempt already connected would hang for minutes, not ConnectTimeout.
    params = ctx.policy.params_for_host(ctx.hosts[target])
    maxretry = int(params.get("intrusion_detection_maxretry", 5))
    threshold = int(params.get("log_review_ssh_failed_threshold", 10))
    waves = math.ceil(threshold / maxretry) + 1
    per_wave = maxretry + BURST_EXTRA
    burst = (
        f"nohup sh -c 'for i in $(seq {per_wave}); do timeout 8 ssh -o BatchMode=yes "
        f"-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=3 "
        f"drill-intruder@{dst_addr} true & sleep 0.4; done; wait' >/dev/null 2>&1 & "
        f"echo $! > {BURST_PID}"
    )
    banned_now: list[str] = []

    def is_banned() -> bool:
        banned_now[:] = _banned(ctx, target)
        return src_addr in banned_now

    start = time.monotonic()
    was_banned, ban_s = False, 0.0
    for wave in range(1, waves + 1):
        wave_start = time.monotonic()
        code, _ = ctx.shell(source, burst)
        journal.step(
            f"wave {wave}/{waves}: {per_wave} failed SSH logins",
            source=source,
            target=target,
            rc=code,
        )
        held, seconds = _wait_until(ctx, is_banned, wave_start)
        if wave == 1:
            was_banned, ban_s = held, seconds
        if not held:
            break
        if wave < waves:
            _end_burst(ctx, source)
            ctx.shell(target, f"fail2ban-client set sshd unbanip {src_addr} || true")
            journal.step("ban lifted, as if its bantime had passed", host=target)
    journal.measurements["ban_seconds"] = ban_s if was_banned else None
    review = _audit_records(ctx, journal, target, ["LOG-002"]).get("LOG-002")
    raised = (
        review is not None
        and review.status == "fail"
        and src_addr in (review.reason + json.dumps(review.data))
    )
    journal.measurements["detect_seconds"] = round(time.monotonic() - start, 1) if raised else None
    others = sorted(set(banned_now) - {src_addr})
    journal.steady_state_during = {
        "ok": was_banned and raised and not others,
        "banned": banned_now,
        "log_review": {
            "status": review.status if review else "none",
            "raised": raised,
            "reason": review.reason[:300] if review else "",
        },
    }
    if not was_banned:
        journal.problems.append(f"{source} ({src_addr}) was not banned on {target}")
    if not raised:
        journal.problems.append(f"log review (LOG-002) did not name {src_addr}")
    if others:
        # The controller and every other address must stay reachable (IDS-003).
        journal.problems.append(f"addresses other than the attacker were banned: {others}")
    _end_burst(ctx, source)
    code, _ = ctx.shell(target, f"fail2ban-client set sshd unbanip {src_addr} || true")
    journal.step("lift the drill's ban", host=target, address=src_addr)
    after = _audit(ctx, journal, target, ["IDS-003"])
    journal.steady_state_after = {
        "ok": after["IDS-003"] == "pass" and src_addr not in _banned(ctx, target),
        "probes": after,
    }
    journal.targets = {"ban_seconds": 300.0}
    if was_banned and ban_s > 300:
        journal.problems.append(f"the ban took {ban_s:g} s, beyond 300 s")
    return None


def _end_burst(ctx: Context, source: str) -> None:
    # Let a burst end so no late attempt bans the source again once the ban is lifted.
    ctx.shell(
        source,
        f"for i in $(seq 60); do kill -0 $(cat {BURST_PID}) 2>/dev/null || break; sleep 1; done; "
        f"rm -f {BURST_PID}",
    )


def _banned(ctx: Context, host: str) -> list[str]:
    code, out = ctx.shell(host, "fail2ban-client get sshd banip || true")
    return out.split() if code == 0 else []


def run_drill(
    ctx: Context, kind: str, *, host: str, source: str | None = None
) -> tuple[int, Journal]:
    """Run one drill and store its journal; returns the drill id and the journal."""
    if kind not in KINDS:
        raise DrillError(f"KIND: {kind!r} is not one of {', '.join(KINDS)}")
    if host not in ctx.hosts:
        raise DrillError(f"--limit: {host} is not in the inventory")
    if source is not None and source not in ctx.hosts:
        raise DrillError(f"--source: {source} is not in the inventory")
    journal = Journal(kind=kind, plan=plan_for(ctx.policy, ctx.hosts[host]), hosts=[host])
    run_id: int | None = None
    try:
        if kind == "restore":
            run_id = drill_restore(ctx, journal, host)
        elif kind == "service-failure":
            run_id = drill_service_failure(ctx, journal, host)
        else:
            attacker = source or next(h for h in ctx.hosts if h != host)
            journal.hosts = [attacker, host]
            run_id = drill_attack(ctx, journal, attacker, host)
    except DrillError:
        raise
    except Exception as exc:  # a broken drill is recorded as aborted, never lost
        journal.aborted = f"{type(exc).__name__}: {exc}"
    journal.ended_at = _now()
    return record(ctx.store, journal, run_id), journal


def context(
    store: Store,
    policy: Policy,
    settings: config.Settings,
    inventory: Path | None = None,
    run: RunFn | None = None,
) -> Context:
    """A drill context on the configured inventory, running playbooks with opsrunner's runner."""
    from opsrunner.runner import scope
    from opsrunner.runner.run import run as run_playbooks

    path = inventory or config.inventory(settings)
    hosts = scope.inventory_groups(path)
    variables = scope.host_vars(path)
    addresses = {h: str(variables[h].get("ansible_host", h)) for h in hosts}
    return Context(
        store=store,
        policy=policy,
        settings=settings,
        inventory=path,
        hosts=hosts,
        addresses=addresses,
        run=run or run_playbooks,
    )
