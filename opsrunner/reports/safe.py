"""Neutralising untrusted text (host names, facts, reasons, evidence) for each output format."""

from __future__ import annotations

import re

# Bidirectional overrides and isolates (Trojan Source), other invisible format characters, and
# control characters other than tab and newline: shown as <U+XXXX> so a reader sees them.
_INVISIBLE = re.compile(
    "[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"
    "\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb"
    "\ud800-\udfff\ufffe\uffff]"
)
# What a spreadsheet reads as a formula when a cell starts with it.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def visible(text: object) -> str:
    """The text with every invisible or control character (but tab and newline) made visible."""
    return _INVISIBLE.sub(lambda m: f"<U+{ord(m.group()):04X}>", "" if text is None else str(text))


def one_line(text: object, limit: int = 0) -> str:
    """Visible text on one line, cut at `limit` characters (0: no cut)."""
    flat = " ".join(visible(text).split())
    if limit and len(flat) > limit:
        return flat[: limit - 1] + "…"
    return flat


def csv_cell(value: object) -> str:
    """A CSV cell no spreadsheet evaluates: a leading formula character gets a quote before it."""
    text = visible(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>])")


def md(text: object, limit: int = 0) -> str:
    """Markdown-safe inline text: HTML entities for <, >, &, backslash before Markdown syntax."""
    flat = one_line(text, limit)
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", flat)
