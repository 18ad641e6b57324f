"""Bench: cold vs warm `lab up` of 3 hosts, side by side, as a ratio.

Run as root: .venv/bin/python -m bench.lab_up [--hosts 3] [--warm-runs 3] [--cold unpack|build]

- cold ``build``: an empty image cache (a temporary OPSRUNNER_CACHE_DIR): mmdebstrap builds
  the image (downloads from the Debian mirror), unpacks it, then the hosts boot.
- cold ``unpack`` (default): the cached tarball is copied to a temporary cache dir and
  unpacked there, then the hosts boot (a fresh checkout on a machine that has the tarball).
- warm: image unpacked, lab down → lab up again (what every test run after the first pays).
Also times ``reset`` of every host and ``down``. The shared cache in /var/cache/opsrunner
is never touched, so labs of other people keep running. Timings are never asserted in tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

from opsrunner.lab import image
from opsrunner.lab.core import Lab


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    """Measure and print cold, warm, reset and down times and the cold/warm ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--cold", choices=("unpack", "build"), default="unpack")
    parser.add_argument("--name", default="bench")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/lab_up.py needs root (it boots lab hosts)")

    shared = image.image_paths()
    with tempfile.TemporaryDirectory(prefix="opsrunner-bench-cache-", dir="/var/tmp") as tmp:
        os.environ["OPSRUNNER_CACHE_DIR"] = tmp
        if args.cold == "unpack":
            if not shared.tarball.is_file():
                raise SystemExit(f"no cached image {shared.tarball}: run `opsrunner lab up` once")
            shutil.copy2(shared.tarball, image.image_paths().tarball)
            shutil.copytree(shared.debs, image.image_paths().debs, copy_function=os.link)
        lab = Lab(args.name)
        lab.down(force=True)
        try:
            cold = _timed(lambda: lab.up(args.hosts))
            down_times = [_timed(lab.down)]
            warm: list[float] = []
            for _ in range(args.warm_runs):
                warm.append(_timed(lambda: lab.up(args.hosts)))
                down_times.append(_timed(lab.down))
            lab.up(args.hosts)
            hosts = list(lab.hosts)

            def reset_all() -> None:
                for h in hosts:
                    lab.reset(h, wait=False)
                for h in hosts:
                    lab.wait_ready(h)

            reset = _timed(reset_all)
        finally:
            lab.down(force=True)
    warm_median = statistics.median(warm)
    print(f"lab up of {args.hosts} hosts (load average {os.getloadavg()[0]:.1f}):")
    print(f"  cold ({args.cold}): {cold:7.2f} s")
    print(
        f"  warm (median of {len(warm)}): {warm_median:7.2f} s   runs: "
        + ", ".join(f"{w:.2f}" for w in warm)
    )
    print(f"  cold / warm ratio:  {cold / warm_median:7.1f} x")
    print(f"  reset of all {len(hosts)} hosts: {reset:7.2f} s")
    print(f"  down (median):       {statistics.median(down_times):7.2f} s")


if __name__ == "__main__":
    main()
