"""The HTML report in headless Chromium: screenshot, no console message, request or injection."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from opsrunner.reports import Report, render

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow

# Every host name resolves to nothing: neither the page nor the browser's own background
# services can reach the network, whatever the page holds.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--enable-logging=stderr",
    "--v=0",
)
PROBE = (
    "<!DOCTYPE html><html><head><meta http-equiv='Content-Security-Policy' "
    "content=\"default-src 'none'\"></head><body><script>console.error('probe')</script>"
    "<img src='http://page-probe.invalid/x.png'></body></html>"
)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (scripts/bootstrap installs it)")
    return found


def _open(page: Path, screenshot: Path | None = None) -> tuple[str, str, list[str]]:
    """(DOM after scripts ran, console lines, URLs the page asked for)."""
    browser = _chromium()
    with tempfile.TemporaryDirectory() as profile:
        netlog = Path(profile) / "net.json"
        common = [browser, *FLAGS, f"--user-data-dir={profile}", f"--log-net-log={netlog}"]
        if screenshot is not None:
            shot = subprocess.run(
                [*common, f"--screenshot={screenshot}", "--window-size=1280,2400", page.as_uri()],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert screenshot.is_file(), shot.stderr[-2000:]
        dumped = subprocess.run(
            [*common, "--dump-dom", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        log = json.loads(netlog.read_text())
    kinds = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    requests = []
    for event in log["events"]:
        params = event.get("params", {})
        if kinds.get(event["type"]) != "URL_REQUEST_START_JOB":
            continue
        # Requests the page made carry the file:// page as their site; the browser's own don't.
        page_made = "file://" in str(params.get("site_for_cookies", "")) or "file://" in str(
            params.get("network_isolation_key", "")
        )
        if page_made and not str(params.get("url", "")).startswith("file:"):
            requests.append(params["url"])
    console = [line for line in dumped.stderr.splitlines() if ":CONSOLE" in line]
    return dumped.stdout, "\n".join(console), requests


def test_the_detectors_see_a_request_and_a_console_message(tmp_path: Path) -> None:
    page = tmp_path / "probe.html"
    page.write_text(PROBE, encoding="utf-8")
    _dom, console, requests = _open(page)
    assert "Content Security Policy" in console
    assert requests == [] or all("page-probe" in u for u in requests)
    page.write_text(PROBE.replace("default-src 'none'", "default-src *"), encoding="utf-8")
    _dom, console, requests = _open(page)
    assert "probe" in console
    assert requests == ["http://page-probe.invalid/x.png"]


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]


def test_report_in_chromium(report: Report, tmp_path: Path) -> None:
    artifacts = Path(os.environ.get("OPSRUNNER_TEST_ARTIFACTS", ROOT / "artifacts")) / "reports"
    artifacts.mkdir(parents=True, exist_ok=True)
    for level, lang in (("auditor", "en"), ("manager", "zh")):
        page = tmp_path / f"report-{level}-{lang}.html"
        page.write_text(render(report, "html", level=level, lang=lang), encoding="utf-8")
        shot = artifacts / f"report-{level}-{lang}.png"
        shot.unlink(missing_ok=True)
        dom, console, requests = _open(page, shot)
        assert shot.stat().st_size > 10_000
        assert console == "", console
        assert requests == []
        parsed = _Elements()
        parsed.feed(dom)
        assert "img" not in parsed.tags and "iframe" not in parsed.tags
        assert parsed.tags.count("script") == (1 if level == "auditor" else 0)
        assert parsed.handlers == []
        assert "\u202e" not in dom
        if level == "auditor":
            # The hostile host name is text in the matrix header, not an element.
            assert re.search(r'data-host="evil&lt;img src=x onerror=alert\(1\)&gt;"', dom)
            assert "uid=" not in dom
