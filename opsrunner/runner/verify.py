"""`opsrunner verify`: the ledger chain, and the stored results and evidence against it."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import typer

from opsrunner import config, paths
from opsrunner.runner import evidence
from opsrunner.store import Store, StoreError, ledger
from opsrunner.store import evidence as stored_evidence

CHECKPOINT_FORMAT = "opsrunner-ledger-checkpoint/1"
KEY_PASSWORD_ENV = "OPSRUNNER_SIGN_KEY_PASSWORD"  # noqa: S105 - the variable's name, not a secret


class VerifyError(RuntimeError):
    """A checkpoint or key that cannot be used."""


def evidence_problems(store: Store, state_dir: Path) -> tuple[int, list[str]]:
    """(evidence checked, evidence whose content no longer hashes to its name): the reports
    packed in the store's evidence table, then the files of results stored before it."""
    checked, bad = stored_evidence.problems(store)
    packed = stored_evidence.hashes(store)
    for sha in sorted(store.evidence_hashes() - packed):
        path = evidence.evidence_path(state_dir, sha)
        if not path.is_file():
            continue  # kept on another controller, or pruned: the store keeps its hash
        checked += 1
        if hashlib.sha256(path.read_bytes()).hexdigest() != sha:
            bad.append(f"evidence file {path}: content does not match its sha256 name (altered)")
    return checked, bad


def _private_key(path: Path) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    secret = os.environ.get(KEY_PASSWORD_ENV)
    try:
        key = load_pem_private_key(path.read_bytes(), secret.encode() if secret else None)
    except (OSError, ValueError, TypeError) as exc:
        raise VerifyError(f"--sign-key {path}: cannot load the private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise VerifyError(f"--sign-key {path}: not an ed25519 private key")
    return key


def _public_key(path: Path) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise VerifyError(f"--public-key {path}: cannot load the public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise VerifyError(f"--public-key {path}: not an ed25519 public key")
    return key


def sign_checkpoint(report: ledger.Report, key_file: Path, out: Path) -> Path:
    """Write the ledger's head as a checkpoint (canonical JSON) and its detached ed25519
    signature beside it (`<out>.sig`, base64). Returns the signature's path."""
    key = _private_key(key_file)
    body = ledger.canonical(
        {
            "format": CHECKPOINT_FORMAT,
            "seq": report.entries,
            "sha256": report.head,
            "signed_at": dt.datetime.now(dt.UTC),
        }
    )
    signature = out.with_name(out.name + ".sig")
    for path, data in ((out, body), (signature, base64.b64encode(key.sign(body)) + b"\n")):
        paths.private_file(path)
        path.write_bytes(data)
    return signature


def check_checkpoint(store: Store, checkpoint: Path, public_key: Path | None) -> str:
    """Check a signed checkpoint against the ledger: the signature (when a public key is given)
    and that entry `seq` still has hash `sha256`. Returns a line for the user; raises on failure."""
    try:
        body = checkpoint.read_bytes()
        data = json.loads(body)
    except (OSError, ValueError) as exc:
        raise VerifyError(f"--checkpoint {checkpoint}: unreadable: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise VerifyError(f"--checkpoint {checkpoint}: not an opsrunner ledger checkpoint")
    signed = ""
    if public_key is not None:
        from cryptography.exceptions import InvalidSignature

        sig_file = checkpoint.with_name(checkpoint.name + ".sig")
        try:
            signature = base64.b64decode(sig_file.read_bytes().strip(), validate=True)
            _public_key(public_key).verify(signature, body)
        except (OSError, ValueError) as exc:
            raise VerifyError(f"{sig_file}: unreadable signature: {exc}") from exc
        except InvalidSignature as exc:
            raise VerifyError(f"{sig_file}: the signature does not match {checkpoint}") from exc
        signed = ", signature good"
    seq, want = data.get("seq"), data.get("sha256")
    with store.session() as session:
        have = ledger.entry_hash(session, int(seq)) if isinstance(seq, int) and seq > 0 else None
    if seq == 0 and want == ledger.GENESIS:
        have = want
    if have != want:
        raise VerifyError(
            f"ledger entry {seq}: hash {str(have)[:16]}… differs from checkpoint {checkpoint} "
            f"({str(want)[:16]}…, signed {data.get('signed_at')}): the ledger was rewritten"
        )
    return f"checkpoint {checkpoint}: entry {seq} matches{signed}"


_STORE = typer.Option(
    None, "--store", help="Store: sqlite path/URL or postgresql://… (default: SQLite in state dir)."
)
_CONFIG = typer.Option(None, "--config", help="Config file.")
_STATE = typer.Option(None, "--state-dir", help="State directory (store, evidence, artifacts).")
_SIGN_KEY = typer.Option(
    None,
    "--sign-key",
    help="ed25519 private key (PEM; password in $OPSRUNNER_SIGN_KEY_PASSWORD): after a good "
    "verify, sign the ledger's head into --checkpoint and <checkpoint>.sig.",
)
_CHECKPOINT = typer.Option(
    None,
    "--checkpoint",
    help="Checkpoint file: written with --sign-key, else checked (the entry it names must "
    "still have its hash).",
)
_PUBLIC_KEY = typer.Option(
    None, "--public-key", help="ed25519 public key (PEM) that checks <checkpoint>.sig."
)
_JSON = typer.Option(False, "--json", help="Print the findings as JSON.")


def verify(
    store: str | None = _STORE,
    config_file: str | None = _CONFIG,
    state_dir: str | None = _STATE,
    sign_key: Path | None = _SIGN_KEY,
    checkpoint: Path | None = _CHECKPOINT,
    public_key: Path | None = _PUBLIC_KEY,
    as_json: bool = _JSON,
) -> None:
    """Check the evidence ledger's hash chain, every stored run's results and the evidence
    files against it; name the first bad entry and exit 1 when anything does not hold."""
    if sign_key is not None and checkpoint is None:
        raise typer.BadParameter("--sign-key needs --checkpoint FILE to write")
    try:
        settings = config.load(config_file, store=store, state_dir=state_dir)
    except config.ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        opened = Store.open(settings.store, config.state_dir(settings))
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    with opened:
        report = opened.verify()
        files, bad_files = evidence_problems(opened, config.state_dir(settings))
        problems = [str(p) for p in report.problems] + bad_files
        notes: list[str] = []
        try:
            if checkpoint is not None and sign_key is None:
                notes.append(check_checkpoint(opened, checkpoint, public_key))
            if sign_key is not None and checkpoint is not None and not problems:
                sig = sign_checkpoint(report, sign_key, checkpoint)
                notes.append(f"signed entry {report.entries} into {checkpoint} and {sig}")
        except VerifyError as exc:
            problems.append(str(exc))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": not problems,
                    "chain_ok": report.chain_ok,
                    "entries": report.entries,
                    "head": report.head,
                    "runs_checked": report.runs_checked,
                    "evidence_files_checked": files,
                    "problems": problems,
                    "notes": notes,
                },
                indent=2,
            )
        )
    else:
        typer.echo(
            f"ledger: {report.entries} entries, head {report.head}; "
            f"{report.runs_checked} runs and {files} evidence reports checked"
            if report.chain_ok
            else f"ledger: the chain holds for its first {report.entries} entries only "
            f"(last good head {report.head}); stored runs not checked against a broken chain"
        )
        for note in notes:
            typer.echo(note)
        for problem in problems:
            typer.echo(f"BAD {problem}", err=True)
        typer.echo("verify: OK" if not problems else f"verify: {len(problems)} problem(s)")
    if problems:
        raise typer.Exit(1)
