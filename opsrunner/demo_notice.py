"""The demo's site policy: a copy of policy/ with a maintenance window opening in minutes,
notices routed to an SMTP and a webhook receiver on the controller's loopback.

The copy is the demo's own site configuration, never the reviewed policy: the demo names it
and its digest on every run. Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import http.server
import os
import secrets
import shutil
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from opsrunner import paths

WINDOW = "demo-now"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Sinks:
    """An SMTP server and an HTTP receiver on 127.0.0.1 that keep what they receive."""

    smtp_port: int = field(default_factory=_free_port)
    http_port: int = field(default_factory=_free_port)
    mails: list[tuple[str, list[str], str]] = field(default_factory=list)  # sender, rcpts, subject
    posts: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # path, headers
    _smtp: Any = None
    _http: http.server.ThreadingHTTPServer | None = None

    def __enter__(self) -> Sinks:
        from email import message_from_bytes

        from aiosmtpd.controller import Controller  # the dev environment's SMTP server

        sinks = self

        class _Mail:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
                message = message_from_bytes(envelope.content)
                sinks.mails.append(
                    (envelope.mail_from, list(envelope.rcpt_tos), str(message["Subject"]))
                )
                return "250 OK"

        class _Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                sinks.posts.append((self.path, dict(self.headers.items())))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_args: Any) -> None:
                return

        self._smtp = Controller(_Mail(), hostname="127.0.0.1", port=self.smtp_port)
        self._smtp.start()
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", self.http_port), _Hook)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._smtp is not None:
            self._smtp.stop()


def window_start(now: dt.datetime, lead: dt.timedelta) -> dt.datetime:
    """The demo window's opening: `lead` from now, on a whole minute (cron's resolution)."""
    start = (now + lead).replace(second=0, microsecond=0)
    return start + dt.timedelta(minutes=1)


def site_policy(state: Path, sinks: Sinks, start: dt.datetime) -> Path:
    """Write <state>/demo-policy: policy/ plus the demo window and the loopback channels."""
    target = state / "demo-policy"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(paths.project_root() / "policy", target)
    windows = yaml.safe_load((target / "windows.yml").read_text(encoding="utf-8"))
    windows["windows"].append(
        {
            "name": WINDOW,
            "description": "The demo's window: opens minutes after the demo sends its notice.",
            "groups": ["critical", "standard"],
            "timezone": "UTC",
            "start": f"{start.minute} {start.hour} * * *",
            "duration_minutes": 60,
            "notice_hours": 0,
        }
    )
    (target / "windows.yml").write_text(yaml.safe_dump(windows, sort_keys=False), "utf-8")
    secrets_file = state / "secrets" / "demo-notify.yml"
    secrets_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(f"ops-webhook-hmac: {secrets.token_urlsafe(32)}\n")
    notify_file = target / "notifications.yml"
    notify = yaml.safe_load(notify_file.read_text(encoding="utf-8"))
    notify["secrets_file"] = str(secrets_file)
    notify["channels"]["ops-mail"].update({"port": sinks.smtp_port, "starttls": False})
    notify["channels"]["ops-webhook"]["url"] = f"http://127.0.0.1:{sinks.http_port}/opsrunner"
    notify_file.write_text(yaml.safe_dump(notify, sort_keys=False), "utf-8")
    return target
