"""`python -m bench`: run the arms of issue 14, print the table of ratios, write it as JSON.

    PYTHONPATH=$PWD .venv/bin/python -m bench                     # every arm, issue sizes
    PYTHONPATH=$PWD .venv/bin/python -m bench --arms 2,3 --pairs 3
    PYTHONPATH=$PWD .venv/bin/python -m bench --tiny --inventory inventories/lab/hosts.yml

Arms 1, 4, 5 and 6 need lab hosts: an inventory of a running lab (--inventory), or the bench
boots its own lab (root; name --lab-name, torn down at the end). Folded-in older benches:
`python -m bench.lab_up`, `python -m bench.store_batching`, `python -m bench.reports_fleet`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench import arms as A
from bench.harness import ROOT, Row
from bench.lab import lab

ALL = ("1", "2", "3", "4", "5", "6")
LAB_ARMS = {"1", "4", "5", "6"}


def _ints(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The bench's options (sizes default to the issue's; --tiny shrinks every one)."""
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--arms", default=",".join(ALL), help="comma-separated arms (default all)")
    p.add_argument("--pairs", type=int, default=None, help="rounds per arm (default 5; tiny 1)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes: checks the bench works")
    p.add_argument("--inventory", type=Path, default=None, help="a running lab's hosts.yml")
    p.add_argument("--lab-name", default=f"bench{os.getpid() % 10000}")
    p.add_argument("--hosts", type=int, default=None, help="lab hosts for arms 1, 4, 5 (10)")
    p.add_argument("--growth", default=None, help="host counts for arm 6 (1,5,10,20)")
    p.add_argument(
        "--playbook",
        choices=("site", "module"),
        default=None,
        help="arms 4-6: the full site audit (default) or the bench's module playbook",
    )
    p.add_argument("--ingest-sizes", default=None, help="arm 2 event counts (1e5,1e6)")
    p.add_argument("--fleet", default=None, help="arm 3 HOSTSxCONTROLS (10000x200)")
    p.add_argument("--no-pg", action="store_true", help="arm 2 without PostgreSQL")
    p.add_argument(
        "--mitogen",
        default=os.environ.get("OPSRUNNER_MITOGEN", ""),
        help="arm 4's optional Mitogen arm: the directory holding ansible_mitogen, "
        "or 1 if importable (default: off)",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=ROOT / "bench" / "results.json",
        help="where the table goes as JSON (default bench/results.json)",
    )
    args = p.parse_args(argv)
    tiny = args.tiny
    args.pairs = args.pairs or (1 if tiny else 5)
    args.hosts = args.hosts or (1 if tiny else 10)
    args.growth = _ints(args.growth) if args.growth else ([1, 2] if tiny else [1, 5, 10, 20])
    args.playbook = args.playbook or ("module" if tiny else "site")
    args.ingest_sizes = (
        _ints(args.ingest_sizes)
        if args.ingest_sizes
        else ([2000, 4000] if tiny else [100_000, 1_000_000])
    )
    fleet = args.fleet or ("50x20" if tiny else "10000x200")
    h, c = fleet.lower().split("x")
    args.fleet = (int(h), int(c))
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    bad = [a for a in args.arms if a not in ALL]
    if bad:
        p.error(f"--arms: unknown {', '.join(bad)} (choose from {', '.join(ALL)})")
    return args


def render(rows: list[Row], title: str) -> None:
    """The table: arm, what, figure, target, met."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in ("arm", "measure", "figure", "target", "met", "detail"):
        table.add_column(col, overflow="fold")
    for r in rows:
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        table.add_row(r.arm, r.measure, r.figure, r.target, met, r.detail)
    Console(width=int(os.environ.get("COLUMNS", "160"))).print(table)


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run the chosen arms, print the table, write the JSON; exit 0 when every arm ran."""
    args = parse(argv)
    # SIGTERM unwinds like Ctrl-C, so a lab or PostgreSQL the bench started is stopped.
    signal.signal(signal.SIGTERM, _interrupted)

    def log(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    started = time.time()
    load_before = os.getloadavg()[0]
    rows: list[Row] = []
    needs_lab = bool(LAB_ARMS & set(args.arms))
    lab_size = max([args.hosts, *args.growth]) if "6" in args.arms else args.hosts
    with tempfile.TemporaryDirectory(prefix="opsrunner-bench-", dir="/var/tmp") as tmp:
        ctx = A.Context(
            pairs=args.pairs,
            tiny=args.tiny,
            inventory=args.inventory,
            hosts=[],
            work=Path(tmp),
            log=log,
            lab_playbook=args.playbook,
            lab_hosts=args.hosts,
            growth=args.growth,
            ingest_sizes=args.ingest_sizes,
            fleet=args.fleet,
            pg=not args.no_pg,
            mitogen=args.mitogen,
        )
        if "2" in args.arms:
            rows += A.run_checked(lambda: A.ingest(ctx), "2 ingest")
        if "3" in args.arms:
            rows += A.run_checked(lambda: A.fleet_report(ctx), "3 score+report")
        if needs_lab:
            with lab(args.inventory, lab_size, args.lab_name) as (inventory, hosts):
                ctx.inventory, ctx.hosts = inventory, hosts
                if "1" in args.arms:
                    rows += A.run_checked(lambda: A.runner_overhead(ctx), "1 runner overhead")
                tuned = None
                if "4" in args.arms or "5" in args.arms:
                    try:
                        more, got = A.tuned_vs_stock(ctx)
                        tuned = got["tuned"]
                        if "4" in args.arms:
                            rows += more
                    except A.BenchError as exc:
                        rows.append(Row("4 tuned vs stock", "failed", "-", "-", False, str(exc)))
                if "5" in args.arms and tuned:
                    rows += A.cpu_per_host(ctx, tuned)
                if "6" in args.arms:
                    rows += A.run_checked(lambda: A.growth(ctx), "6 growth")
    title = (
        f"opsrunner bench {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}Z, {args.pairs} rounds, "
        f"load {load_before:.1f}->{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        + (" (TINY sizes: not figures)" if args.tiny else "")
    )
    render(rows, title)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "title": title,
                "tiny": args.tiny,
                "pairs": args.pairs,
                "seconds": round(time.time() - started, 1),
                "options": {k: v for k, v in vars(args).items() if k not in ("json",)},
                "rows": [dataclasses.asdict(r) for r in rows],
            },
            indent=2,
            default=str,
        )
        + "\n",
        encoding="utf-8",
    )
    log(f"table written to {args.json}")
    return 1 if any(r.measure == "failed" for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
