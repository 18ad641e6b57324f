"""Hostile-input-safe YAML: standard tags, no duplicate keys, bounded size and aliases, lines."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

# A policy file is hand-written YAML of a few hundred lines; anything near this is an attack or
# a mistake, and it is refused before a single byte is parsed.
MAX_FILE_BYTES = 2 * 1024 * 1024
# Aliases are legitimate in small numbers; an alias bomb needs many of them, or expands to many
# nodes. Both are bounded.
MAX_ALIASES = 100
MAX_NODES = 200_000
# PyYAML composes and we build recursively: bound the nesting long before Python's own limit.
MAX_DEPTH = 64
# Keys echoed in messages: a file that fails to parse is shown by a short, escaped excerpt only.
MAX_KEY_SHOWN = 40

_STD = "tag:yaml.org,2002:"
_ALLOWED_TAGS = frozenset(
    _STD + name for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
)

Path_ = tuple[str | int, ...]


class YamlProblem(Exception):
    """A YAML document that cannot be accepted, with the 1-based line where it went wrong."""

    def __init__(self, line: int, field: str, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.field = field
        self.message = message


@dataclass
class Located:
    """A parsed document and the line of every key and sequence item in it."""

    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_for(self, path: Path_) -> int:
        """The line of the deepest known node on `path` (a missing field points at its parent)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return 1


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


def _shown_key(key: object) -> str:
    """A key as a message may show it: plain names as they are, anything else short and escaped."""
    text = str(key)
    if _PLAIN_KEY.match(text) and len(text) <= MAX_KEY_SHOWN:
        return text
    cut = text[:MAX_KEY_SHOWN]
    escaped = cut.encode("unicode_escape").decode("ascii").replace("'", "\\'")
    return f"['{escaped}{'…' if len(text) > len(cut) else ''}']"


def render_path(path: Path_) -> str:
    """('controls', 3, 'severity') -> 'controls[3].severity'; odd keys short and escaped."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = _shown_key(part)
            out += shown if shown.startswith("[") else ("." if out else "") + shown
    return out


class _CountingLoader(Reader, Scanner, Parser, Composer, SafeConstructor, Resolver):
    """PyYAML's safe loader, counting aliases while composing so a bomb stops early."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.alias_count = 0
        self.depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            self.alias_count += 1
            if self.alias_count > MAX_ALIASES:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise YamlProblem(mark.line + 1, "", f"more than {MAX_ALIASES} YAML aliases")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise YamlProblem(mark.line + 1, "", f"nested more than {MAX_DEPTH} levels deep")
            node: Node | None = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        return node


class _Builder:
    """Turns a composed node tree into plain Python data, recording lines and refusing surprises."""

    def __init__(self, loader: _CountingLoader, strict_tags: bool) -> None:
        self.loader = loader
        self.strict_tags = strict_tags
        self.lines: dict[Path_, int] = {}
        self.nodes = 0

    def build(self, node: Node, path: Path_) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            # Report the top-level key being expanded: the alias chain's own marks point elsewhere.
            top = path[:1]
            raise YamlProblem(
                self.lines.get(top, node.start_mark.line + 1),
                render_path(top),
                f"document expands to more than {MAX_NODES} nodes (an alias bomb?)",
            )
        if node.tag not in _ALLOWED_TAGS and isinstance(node, ScalarNode) and not self.strict_tags:
            # Ansible files carry tags such as !unsafe or !vault; read them as plain text.
            return node.value
        if node.tag not in _ALLOWED_TAGS and self.strict_tags:
            raise YamlProblem(
                node.start_mark.line + 1, render_path(path), f"YAML tag {node.tag!r} is not allowed"
            )
        if isinstance(node, MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _STD + "merge":
                    raise YamlProblem(
                        key_node.start_mark.line + 1,
                        render_path(path),
                        "merge keys (<<) are not allowed",
                    )
                key = self.build(key_node, path)
                if isinstance(key, (dict, list)):
                    raise YamlProblem(
                        key_node.start_mark.line + 1, render_path(path), "a key must be a scalar"
                    )
                if key in result:
                    first = self.lines.get((*path, key), 0)
                    raise YamlProblem(
                        key_node.start_mark.line + 1,
                        render_path((*path, key)),
                        f"duplicate key {key!r} (first defined on line {first})",
                    )
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                result[key] = self.build(value_node, (*path, key))
            return result
        if isinstance(node, SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines[(*path, index)] = item.start_mark.line + 1
                items.append(self.build(item, (*path, index)))
            return items
        if isinstance(node, ScalarNode):
            try:
                return self.loader.construct_object(node, deep=True)
            except (yaml.YAMLError, ValueError) as exc:
                raise YamlProblem(
                    node.start_mark.line + 1, render_path(path), f"bad value: {exc}"
                ) from exc
        raise YamlProblem(node.start_mark.line + 1, render_path(path), "unsupported YAML node")


def parse_text(text: str, *, strict_tags: bool = True) -> Located:
    """Parse one YAML document from text (already size-checked)."""
    loader = _CountingLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            raise YamlProblem(line, "", f"malformed YAML: {exc.problem or exc}") from exc
        except yaml.YAMLError as exc:
            raise YamlProblem(1, "", f"malformed YAML: {exc}") from exc
        located = Located(data=None)
        if root is None:
            return located
        builder = _Builder(loader, strict_tags)
        located.data = builder.build(root, ())
        located.lines = builder.lines
        located.lines[()] = root.start_mark.line + 1
        return located
    finally:
        loader.dispose()


def load_file(path: Path, *, strict_tags: bool = True) -> Located:
    """Read and parse a policy YAML file, refusing oversized files before reading them."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise YamlProblem(
            1,
            "",
            f"file is {size} bytes, more than the {MAX_FILE_BYTES} bytes a policy file may have",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YamlProblem(1, "", f"not UTF-8 text: {exc.reason}") from exc
    return parse_text(text, strict_tags=strict_tags)


def is_mapping(value: object) -> bool:
    """True for a YAML mapping."""
    return isinstance(value, Mapping)
