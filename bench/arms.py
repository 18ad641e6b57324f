"""The six arms of issue 14: each one interleaved with its baseline, one or more table rows."""

from __future__ import annotations

import dataclasses
import itertools
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import project
from bench.harness import ROOT, BenchError, Row, Sample, interleave, measure, median, python

ANSIBLE_PLAYBOOK = str(Path(python()[0]).parent / "ansible-playbook")
_RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=\d+\s+unreachable=(?P<unr>\d+)\s+"
    r"failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)",
    re.M,
)


@dataclasses.dataclass
class Context:
    """What every arm needs: rounds, the lab, where to write, how to log."""

    pairs: int
    tiny: bool
    inventory: Path | None
    hosts: list[str]
    work: Path
    log: Callable[[str], None]
    lab_playbook: str  # "site" (the full audit) or "module" (the bench's module-task playbook)
    lab_hosts: int
    growth: Sequence[int]
    ingest_sizes: Sequence[int]
    fleet: tuple[int, int]
    pg: bool
    mitogen: str


def _ssh_cleanup(control_dir: Path) -> None:
    """Stop the SSH masters a sample left (ControlPersist), so the next sample starts cold too."""
    for sock in control_dir.glob("*"):
        subprocess.run(
            ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench"],
            capture_output=True,
            timeout=20,
            check=False,
        )
    shutil.rmtree(control_dir, ignore_errors=True)


def _ansible_sample(argv: list[str], env: dict[str, str], cwd: Path, ctx: Context) -> Sample:
    control = Path(tempfile.mkdtemp(prefix="cp-", dir=ctx.work))
    try:
        return measure(argv, env={**env, "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control)}, cwd=cwd)
    finally:
        _ssh_cleanup(control)


def tasks_per_host(stdout: str) -> float:
    """Mean task executions per host from ansible-playbook's PLAY RECAP (ok+failed+skipped)."""
    rows = [
        int(m["ok"]) + int(m["failed"]) + int(m["skipped"]) + int(m["unr"])
        for m in _RECAP.finditer(stdout)
    ]
    return sum(rows) / len(rows) if rows else 0.0


def _ratio_row(
    arm: str, what: str, a: list[Sample], b: list[Sample], field: str, target: float, up: bool
) -> Row:
    ra, rb = median(a, field), median(b, field)
    ratio = ra / rb if rb else float("inf")
    met = ratio >= target if up else ratio <= target
    return Row(
        arm,
        what,
        f"{ratio:.2f}x",
        f"{'>=' if up else '<='} {target:g}x",
        met,
        f"{field} median {ra:.2f}s vs {rb:.2f}s over {len(a)} pairs; "
        f"RSS {median(a, 'rss_mb'):.0f} vs {median(b, 'rss_mb'):.0f} MB",
        {"ratio": ratio, "a": ra, "b": rb, "pairs": len(a)},
    )


# -- arm 1 -------------------------------------------------------------------
def runner_overhead(ctx: Context) -> list[Row]:
    """`opsrunner audit` vs `ansible-playbook --check --diff` of the same playbook, same hosts."""
    hosts = ctx.hosts[: ctx.lab_hosts]
    limit = ",".join(hosts)
    controls = 3 if ctx.tiny else 20
    rows = []
    for kind, target in (("module", 1.03), ("controller", 1.10)):
        where = project.make(ctx.work / f"project-{kind}", kind, controls)
        state = ctx.work / f"state-{kind}"
        env = {
            "OPSRUNNER_PROJECT": str(where),
            "OPSRUNNER_STATE_DIR": str(state),
            "ANSIBLE_CONFIG": str(where / "ansible.cfg"),
            "OPSRUNNER_RESULTS_FILE": str(ctx.work / f"results-{kind}.json"),
            "PYTHONPATH": str(ROOT),
        }
        inv = str(ctx.inventory)
        opsrunner = python("-m", "opsrunner", "audit", "--inventory", inv, "--limit", limit)
        opsrunner += ["--plain", "--store", str(state / "bench.db")]
        plain = [ANSIBLE_PLAYBOOK, "-i", inv, "playbooks/site.yml", "--check", "--diff"]
        plain += ["--limit", limit]
        ctx.log(f"arm 1 ({kind} tasks, {len(hosts)} hosts, {controls} controls)")
        got = interleave(
            {
                "opsrunner audit": lambda a=opsrunner, e=env, w=where: _ansible_sample(  # type: ignore[misc]
                    a, e, w, ctx
                ),
                "ansible-playbook": lambda a=plain, e=env, w=where: _ansible_sample(  # type: ignore[misc]
                    a, e, w, ctx
                ),
            },
            ctx.pairs,
            ctx.log,
        )
        row = _ratio_row(
            "1 runner overhead",
            f"CPU opsrunner/ansible, {kind} tasks ({len(hosts)} hosts)",
            got["opsrunner audit"],
            got["ansible-playbook"],
            "cpu",
            target,
            up=False,
        )
        wall = median(got["opsrunner audit"], "wall") / median(got["ansible-playbook"], "wall")
        row.detail += f"; wall ratio {wall:.2f}x"
        rows.append(row)
    return rows


# -- arm 2 -------------------------------------------------------------------
def ingest(ctx: Context) -> list[Row]:
    """Synthetic events through the runner's event handler into SQLite (and PostgreSQL)."""
    rows: list[Row] = []
    per_size: dict[int, dict[str, list[Sample]]] = {}
    pg_url = ""
    pg_stack = None
    if ctx.pg:
        pg_url, pg_stack = _start_pg(ctx)
    try:
        for size in ctx.ingest_sizes:
            ctx.log(f"arm 2 (ingest {size:,} events)")
            arms: dict[str, Callable[[], Sample]] = {
                "ingest sqlite": lambda n=size: measure(  # type: ignore[misc]
                    python("-m", "bench.worker", "ingest", "--events", str(n))
                ),
                "ingest sqlite, no evidence files": lambda n=size: measure(  # type: ignore[misc]
                    python(
                        "-m", "bench.worker", "ingest", "--events", str(n), "--no-evidence-files"
                    )
                ),
                "raw sqlite3": lambda n=size: measure(  # type: ignore[misc]
                    python("-m", "bench.worker", "sqlite", "--rows", str(n // 4))
                ),
            }
            if pg_url:
                arms["ingest postgresql"] = lambda n=size: measure(  # type: ignore[misc]
                    python("-m", "bench.worker", "ingest", "--events", str(n), "--store", pg_url)
                )
            per_size[size] = interleave(arms, ctx.pairs, ctx.log)
    finally:
        if pg_stack is not None:
            pg_stack.close()

    def rate(samples: list[Sample], key: str) -> float:
        values = sorted(s.data.get(key, 0.0) for s in samples)
        return float(values[len(values) // 2])

    for size, got in per_size.items():
        ev = rate(got["ingest sqlite"], "events_per_s")
        ev_cpu = rate(got["ingest sqlite"], "events_per_cpu_s")
        res = rate(got["ingest sqlite"], "results_per_s")
        raw = rate(got["raw sqlite3"], "rows_per_s")
        raw_cpu = rate(got["raw sqlite3"], "rows_per_cpu_s")
        nofiles = rate(got["ingest sqlite, no evidence files"], "events_per_s")
        nofiles_cpu = rate(got["ingest sqlite, no evidence files"], "events_per_cpu_s")
        rows.append(
            Row(
                "2 ingest",
                f"SQLite events/s at {size:,} events (wall; per CPU-s)",
                f"{ev:,.0f}; {ev_cpu:,.0f}",
                ">= 200,000",
                ev >= 200_000,
                f"{res:,.0f} results/s = {res / raw:.3f}x raw batched sqlite3 ({raw:,.0f} rows/s, "
                f"{raw_cpu:,.0f}/CPU-s); without evidence files {nofiles:,.0f} events/s "
                f"({nofiles_cpu:,.0f}/CPU-s); RSS {median(got['ingest sqlite'], 'rss_mb'):.0f} MB",
                {
                    "events_per_s": ev,
                    "events_per_cpu_s": ev_cpu,
                    "results_per_s": res,
                    "raw_rows_per_s": raw,
                    "raw_rows_per_cpu_s": raw_cpu,
                    "no_files_events_per_s": nofiles,
                    "no_files_events_per_cpu_s": nofiles_cpu,
                    "rss_mb": median(got["ingest sqlite"], "rss_mb"),
                },
            )
        )
        if "ingest postgresql" in got:
            pg = rate(got["ingest postgresql"], "events_per_s")
            pg_cpu = rate(got["ingest postgresql"], "events_per_cpu_s")
            rows.append(
                Row(
                    "2 ingest",
                    f"PostgreSQL events/s at {size:,} events (wall; per client CPU-s)",
                    f"{pg:,.0f}; {pg_cpu:,.0f}",
                    "(beside SQLite)",
                    None,
                    f"{pg / ev:.2f}x the SQLite rate; "
                    f"RSS {median(got['ingest postgresql'], 'rss_mb'):.0f} MB",
                    {"events_per_s": pg},
                )
            )
    sizes = sorted(per_size)
    if len(sizes) >= 2:
        small = median(per_size[sizes[0]]["ingest sqlite"], "rss_mb")
        big = median(per_size[sizes[-1]]["ingest sqlite"], "rss_mb")
        growth = big / small
        rows.append(
            Row(
                "2 ingest",
                f"memory {sizes[-1]:,} / {sizes[0]:,} events",
                f"{growth:.2f}x",
                "flat (<= 1.2x)",
                growth <= 1.2,
                f"peak RSS {small:.0f} MB -> {big:.0f} MB",
                {"small_mb": small, "big_mb": big},
            )
        )
    return rows


def _start_pg(ctx: Context) -> tuple[str, Any]:
    """A real PostgreSQL server as the store tests start it (tests/unit/store/conftest.py)."""
    import contextlib
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_pg", ROOT / "tests" / "unit" / "store" / "conftest.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    why = module._unavailable()
    if why:
        ctx.log(f"arm 2: no PostgreSQL ({why})")
        return "", None
    stack = contextlib.ExitStack()
    url = stack.enter_context(module.pg_server())
    return str(url), stack


# -- arm 3 -------------------------------------------------------------------
def fleet_report(ctx: Context) -> list[Row]:
    """Score every model and render HTML + JSON for a synthetic fleet (no baseline: absolute)."""
    hosts, controls = ctx.fleet
    ctx.log(f"arm 3 (scoring + report, {hosts:,} hosts x {controls} controls)")
    argv = python("-m", "bench.worker", "fleet", "--hosts", str(hosts))
    got = interleave(
        {"fleet": lambda: measure([*argv, "--controls", str(controls)])}, ctx.pairs, ctx.log
    )["fleet"]
    data = [s.data for s in got]

    def med(key: str) -> float:
        values = sorted(float(d.get(key, 0)) for d in data)
        return values[len(values) // 2]

    # CPU seconds (wall on these shared cores says more about the neighbours than about us):
    # every scoring model, the document, HTML and JSON.
    seconds = (
        med("score_all_models_cpu_s")
        + med("document_cpu_s")
        + med("html_cpu_s")
        + med("json_cpu_s")
    )
    others = med("score_all_models_cpu_s") - med("score_cpu_s")
    rss = median(got, "rss_mb")
    html = med("html_mb")
    what = f"{hosts:,} hosts x {controls} controls"
    return [
        Row(
            "3 score+report",
            f"CPU seconds, {what}",
            f"{seconds:.1f} s",
            "< 5 s",
            seconds < 5,
            f"CPU-s: score {med('score_cpu_s'):.1f} (+{others:.1f} the other models)"
            f", document {med('document_cpu_s'):.1f}, "
            f"html {med('html_cpu_s'):.1f}, json {med('json_cpu_s'):.1f} "
            f"(making the results {med('results_s'):.1f}s wall not counted); CPU of the process "
            f"{med('cpu_s'):.1f}s; wall score+document+html+json "
            f"{med('score_s') + med('document_s') + med('html_s') + med('json_s'):.1f}s",
            {"seconds": seconds, **{k: med(k) for k in data[0]}},
        ),
        Row(
            "3 score+report",
            f"peak memory, {what}",
            f"{rss:,.0f} MB",
            "< 1,024 MB",
            rss < 1024,
            "largest process RSS, synthetic results included",
            {"rss_mb": rss},
        ),
        Row(
            "3 score+report",
            f"HTML size, {what}",
            f"{html:.1f} MB",
            "< 20 MB",
            html < 20,
            f"JSON {med('json_mb'):.1f} MB",
            {"html_mb": html},
        ),
    ]


# -- arms 4, 5 and 6 -----------------------------------------------------------
def _lab_playbook(ctx: Context) -> tuple[Path, list[str]]:
    """(cwd, playbook argv tail) of the lab arms' audit: the full site.yml or the bench's own."""
    if ctx.lab_playbook == "site":
        return ROOT, ["playbooks/site.yml"]
    where = project.make(ctx.work / "project-lab", "module", 3 if ctx.tiny else 20)
    return where, ["playbooks/site.yml"]


STOCK_CFG = """# Ansible's defaults, with only what it needs to find the project's roles and plugins
# and to reach lab hosts whose keys are new on every boot.
[defaults]
roles_path = {root}/roles
collections_path = {root}/collections
callback_plugins = {root}/plugins/callback
vars_plugins = {root}/plugins/vars
callbacks_enabled = opsrunner_results
host_key_checking = false
"""


def tuned_vs_stock(ctx: Context) -> tuple[list[Row], dict[str, list[Sample]]]:
    """The project's ansible.cfg vs Ansible's defaults (and Mitogen, when asked), full sweep."""
    from opsrunner.runner.mitogen import strategy_env

    cwd, book = _lab_playbook(ctx)
    hosts = ctx.hosts[: ctx.lab_hosts]
    stock = ctx.work / "stock.cfg"
    stock.write_text(STOCK_CFG.format(root=ROOT), encoding="utf-8")
    base = {"OPSRUNNER_RESULTS_FILE": str(ctx.work / "results-tuned.json")}
    argv = [ANSIBLE_PLAYBOOK, "-i", str(ctx.inventory), *book, "--check", "--diff"]
    argv += ["--limit", ",".join(hosts)]
    tuned_env = {**base, "ANSIBLE_CONFIG": str(cwd / "ansible.cfg")}
    stock_env = {**base, "ANSIBLE_CONFIG": str(stock)}
    arms: dict[str, Callable[[], Sample]] = {
        "tuned": lambda: _ansible_sample(argv, tuned_env, cwd, ctx),
        "stock": lambda: _ansible_sample(argv, stock_env, cwd, ctx),
    }
    note = ""
    if ctx.mitogen:
        mitogen_env, note = strategy_env(ctx.mitogen)
        ctx.log(f"arm 4: {note}")
        if mitogen_env:
            env = {**tuned_env, **mitogen_env}
            arms["mitogen"] = lambda: _ansible_sample(argv, env, cwd, ctx)
    what = f"{ctx.lab_playbook} audit, {len(hosts)} hosts"
    ctx.log(f"arm 4 (tuned vs stock, {what})")
    got = interleave(arms, ctx.pairs, ctx.log)
    rows = [
        _ratio_row(
            "4 tuned vs stock",
            f"wall stock/tuned, {what}",
            got["stock"],
            got["tuned"],
            "wall",
            2.0,
            up=True,
        )
    ]
    cpu = median(got["stock"], "cpu") / median(got["tuned"], "cpu")
    rows[0].detail += f"; CPU stock/tuned {cpu:.2f}x"
    if "mitogen" in got:
        row = _ratio_row(
            "4 tuned vs stock",
            f"wall tuned/mitogen, {what}",
            got["tuned"],
            got["mitogen"],
            "wall",
            1.0,
            up=True,
        )
        row.target, row.met = "(optional, off by default)", None
        rows.append(row)
    elif ctx.mitogen:
        rows.append(Row("4 tuned vs stock", "mitogen", "not measured", "(optional)", None, note))
    return rows, got


def cpu_per_host(ctx: Context, tuned: list[Sample]) -> list[Row]:
    """Controller CPU-s per host audited and tasks per host, from the tuned sweep's samples."""
    hosts = len(ctx.hosts[: ctx.lab_hosts])
    cpu = median(tuned, "cpu") / hosts
    tasks = tasks_per_host(tuned[0].stdout)
    return [
        Row(
            "5 CPU per host",
            f"controller CPU-s/host, {ctx.lab_playbook} audit",
            f"{cpu:.1f}",
            "<= 5",
            cpu <= 5,
            f"{tasks:.0f} tasks/host; wall {median(tuned, 'wall'):.0f}s for {hosts} hosts "
            f"(ssh masters' CPU not counted)",
            {"cpu_per_host": cpu, "tasks_per_host": tasks, "hosts": hosts},
        ),
    ]


def growth(ctx: Context) -> list[Row]:
    """Audit wall at 1, 5, 10, 20 hosts, interleaved; linear or not, and where the knee is."""
    cwd, book = _lab_playbook(ctx)
    sizes = [n for n in ctx.growth if n <= len(ctx.hosts)]
    env = {
        "OPSRUNNER_RESULTS_FILE": str(ctx.work / "results-growth.json"),
        "ANSIBLE_CONFIG": str(cwd / "ansible.cfg"),
    }
    arms: dict[str, Callable[[], Sample]] = {}
    for n in sizes:
        argv = [
            ANSIBLE_PLAYBOOK,
            "-i",
            str(ctx.inventory),
            *book,
            "--check",
            "--diff",
            "--limit",
            ",".join(ctx.hosts[:n]),
        ]
        arms[f"{n} hosts"] = lambda a=argv: _ansible_sample(a, env, cwd, ctx)  # type: ignore[misc]
    ctx.log(f"arm 6 (growth, {ctx.lab_playbook} audit at {sizes} hosts)")
    got = interleave(arms, ctx.pairs, ctx.log)
    walls = {n: median(got[f"{n} hosts"], "wall") for n in sizes}
    cpus = {n: median(got[f"{n} hosts"], "cpu") for n in sizes}
    verdict, knee = shape(walls)
    figures = ", ".join(f"{n}: {walls[n]:.0f}s" for n in sizes)
    per_host = ", ".join(f"{n}: {walls[n] / n:.1f}s" for n in sizes)
    return [
        Row(
            "6 growth",
            f"{ctx.lab_playbook} audit wall by hosts",
            figures,
            "(say the shape)",
            None,
            f"{verdict}; knee {knee}; wall/host {per_host}; "
            f"CPU {', '.join(f'{n}: {cpus[n]:.0f}s' for n in sizes)}",
            {"wall": walls, "cpu": cpus, "verdict": verdict, "knee": knee},
        ),
    ]


def shape(walls: dict[int, float]) -> tuple[str, str]:
    """Linear or not, and the knee: the first size after which each added host costs at least
    1.5x what hosts cost before it (marginal seconds per host between consecutive sizes)."""
    sizes = sorted(walls)
    if len(sizes) < 3:
        return "too few sizes to tell", "-"
    marginal = [(walls[b] - walls[a]) / (b - a) for a, b in itertools.pairwise(sizes)]
    knee = "-"
    for i in range(1, len(marginal)):
        if marginal[i] >= 1.5 * max(marginal[i - 1], 1e-9):
            knee = f"after {sizes[i]} hosts"
            break
    lo, hi = min(marginal), max(marginal)
    linear = hi <= 1.5 * max(lo, 1e-9)
    text = ", ".join(f"{m:.1f}" for m in marginal)
    return (f"{'linear' if linear else 'not linear'} (added s/host between sizes: {text})", knee)


def run_checked(fn: Callable[[], list[Row]], arm: str) -> list[Row]:
    """An arm whose command failed is a row saying so, not a crash of the whole bench."""
    try:
        return fn()
    except BenchError as exc:
        return [Row(arm, "failed", "-", "-", False, str(exc)[-600:])]
