"""Real receivers on loopback for the notify tests: an SMTP server (STARTTLS + AUTH) and an HTTP
receiver that can go down and come back on the same port; a policy routed to both."""

from __future__ import annotations

import datetime as dt
import email
import ipaddress
import json
import shutil
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message as MailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from opsrunner.paths import project_root
from opsrunner.policy import load_policy
from opsrunner.policy.loader import Policy
from opsrunner.store import Store

SMTP_USER, SMTP_PASSWORD = "opsrunner", "smtp-pass-0123"
HMAC_KEY = "webhook-key-4567"
DING_TOKEN, DING_SECRET = "dingtoken01", "SECdingsecret"
WECOM_KEY = "wecom-key-89"
FEISHU_TOKEN, FEISHU_SECRET = "feishu-hook-id", "feishusecret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "opsrunner test smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp.crt", directory / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass
class Mail:
    """One message as the SMTP server received it."""

    mail_from: str
    rcpt_tos: list[str]
    message: MailMessage
    tls: bool
    login: str


@dataclass
class SmtpSink:
    """aiosmtpd on 127.0.0.1 that requires STARTTLS before AUTH, and AUTH before mail."""

    port: int
    ca_file: Path
    received: list[Mail] = field(default_factory=list)

    def by_recipient(self) -> dict[str, Mail]:
        return {rcpt: m for m in self.received for rcpt in m.rcpt_tos}


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.sink.received.append(
            Mail(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                email.message_from_bytes(envelope.content),
                session.ssl is not None,
                session.auth_data.login.decode() if session.authenticated else "",
            )
        )
        return "250 OK"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == SMTP_USER.encode()
        and data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


@contextmanager
def running_smtp(directory: Path) -> Iterator[SmtpSink]:
    """An SMTP server on 127.0.0.1 (STARTTLS required, then AUTH) for as long as the block runs."""
    cert, key = _self_signed(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink = SmtpSink(free_port(), cert)
    controller = Controller(
        _Handler(sink),
        hostname="127.0.0.1",
        port=sink.port,
        tls_context=context,
        require_starttls=True,
        authenticator=_authenticator,
        auth_required=True,
    )
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[SmtpSink]:
    with running_smtp(tmp_path) as sink:
        yield sink


@dataclass
class Request:
    """One HTTP request as the receiver got it."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """A ThreadingHTTPServer on 127.0.0.1 that records every POST; stop() and start() again
    on the same port to play a receiver that is down and comes back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[Request] = []
        self.answer: dict[str, Any] = {"ok": True}
        self.status = 200
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.requests.append(
                    Request(self.path, dict(self.headers.items()), self.rfile.read(length))
                )
                body = json.dumps(receiver.answer).encode()
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def notifications_yaml(smtp: SmtpSink, http: HttpReceiver, secrets: Path) -> str:
    return f"""
secrets_file: {secrets}
channels:
  mail:
    type: email
    host: 127.0.0.1
    port: {smtp.port}
    starttls: true
    ca_file: {smtp.ca_file}
    sender: opsrunner@ops.example.com
    username: {SMTP_USER}
    password_secret: smtp
  hook:
    type: webhook
    url: {http.url}/hook
    hmac_secret: hook
  ding:
    type: dingtalk
    base_url: {http.url}/robot/send
    token_secret: ding_token
    sign_secret: ding_sign
  wecom:
    type: wecom
    base_url: {http.url}/cgi-bin/webhook/send
    token_secret: wecom_key
  feishu:
    type: feishu
    base_url: {http.url}/open-apis/bot/v2/hook
    token_secret: feishu_token
    sign_secret: feishu_sign
departments:
  finance:
    people: [dave]
    emails: [finance@biz.example.com]
  ops:
    people: [alice]
    channels: [hook]
routes:
  - kinds: [notice]
    groups: [critical]
    departments: [finance, ops]
  - kinds: [alert]
    severities: [high, critical]
    departments: [ops]
  - kinds: [alert]
    severities: [medium]
    people: [bruce]
  - kinds: [change]
    departments: [ops]
alerts:
  repeat_minutes: 60
  unknown_runs: 2
  expiring_days: 0
  stale: false
delivery:
  max_attempts: 5
  backoff_seconds: 30
  max_backoff_seconds: 300
  notice_lead_hours: 2
"""


def write_secrets(path: Path) -> Path:
    path.write_text(
        f"smtp: {SMTP_PASSWORD}\nhook: {HMAC_KEY}\nding_token: {DING_TOKEN}\n"
        f"ding_sign: {DING_SECRET}\nwecom_key: {WECOM_KEY}\nfeishu_token: {FEISHU_TOKEN}\n"
        f"feishu_sign: {FEISHU_SECRET}\n"
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def policy_dir(tmp_path: Path, smtp_sink: SmtpSink, http_receiver: HttpReceiver) -> Path:
    """The project's policy plus a notifications.yml routed to the loopback receivers."""
    target = tmp_path / "policy"
    shutil.copytree(project_root() / "policy", target)
    secrets = write_secrets(tmp_path / "secrets.yml")
    (target / "notifications.yml").write_text(notifications_yaml(smtp_sink, http_receiver, secrets))
    return target


@pytest.fixture
def policy(policy_dir: Path) -> Policy:
    return load_policy(policy_dir)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    from tests.unit.store.conftest import _unavailable, pg_server

    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    with pg_server() as url:
        yield url


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.slow])]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Notices, alerts and changes on both databases the store supports."""
    if request.param == "sqlite":
        opened = Store.open(None, tmp_path / "state")
    else:
        from tests.unit.store.conftest import _fresh_pg

        opened = _fresh_pg(request.getfixturevalue("pg_url"), tmp_path / "state")
    try:
        yield opened
    finally:
        opened.close()


def reopen(store: Store) -> Store:
    """The same database opened again, as a restarted daemon would."""
    url = store.engine.url.render_as_string(hide_password=False)
    return Store.open(None if store.dialect == "sqlite" else url, store.state_dir)
