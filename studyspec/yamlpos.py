"""Safe YAML loading that remembers where every value came from.

The file is parsed into events (libyaml when present) and built here, so that every
hostile input is a located error, never a traceback, a hang or a silent surprise:

- the file is read up to MAX_BYTES (a spec is a short text; `/dev/zero` is refused);
  it must be UTF-8 (a UTF-8 byte-order mark is allowed); control characters are refused;
- nesting deeper than MAX_DEPTH and aliases expanding to more than MAX_VALUES values
  (the "billion laughs") are refused, and so is an alias inside the node it names;
- only the plain YAML types are built (map, seq, str, int, float, bool, null); any other
  tag (`!!python/...`, `!!set`, `!include`) is refused wherever it stands;
- keys are plain scalars; the merge key `<<: *defaults` (or `<<: [*a, *b]`) is supported:
  keys written in the mapping win over merged ones, earlier merged mappings over later;
- numbers are finite and integers fit in 64 bits; a sexagesimal `1:30:00` stays the
  string it looks like (YAML 1.1 would make it the integer 5400), and so does a date.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

Pos = tuple[int, int]  # 1-based line, column

MAX_BYTES = 1 << 20  # 1 MiB
MAX_DEPTH = 64
MAX_VALUES = 1_000_000  # values after alias expansion
_CORE = "tag:yaml.org,2002:"
_STR = _CORE + "str"
_INT = _CORE + "int"
_SCALARS = {_CORE + t for t in ("str", "int", "float", "bool", "null")}
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")


class Located:
    """Plain Python data from a YAML file plus the position of every node in it."""

    def __init__(self, data, positions: dict[tuple, Pos], keys: dict[tuple, Pos], file: str, text: str):
        self.data = data
        self.positions = positions  # path tuple -> (line, col) of the value; () is the document
        self.keys = keys  # path tuple -> (line, col) of the key naming that value
        self.file = file
        self.text = text

    def position(self, path, key: bool = False) -> tuple[Pos | None, tuple]:
        """Position of the deepest node on `path` that exists, and that node's path;
        with key=True, the position of the key that names it (for unknown keys).

        Path items that are not keys of the data (for instance the tag pydantic
        adds for a discriminated union) are skipped.
        """
        node, found = self.data, ()
        for item in path:
            if isinstance(node, dict) and _hashable(item) and item in node:
                node, found = node[item], found + (item,)
            elif isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node):
                node, found = node[item], found + (item,)
        return (self.keys if key and found in self.keys else self.positions).get(found), found


def _hashable(item) -> bool:
    try:
        hash(item)
    except TypeError:
        return False
    return True


def _error(message: str, file: str, line: int | None = None, col: int | None = None, hint: str | None = None):
    from .errors import UserError

    return UserError.single(message, file=file, line=line, col=col, hint=hint)


def load(path: str | Path) -> Located:
    """Load a YAML file (UTF-8, at most MAX_BYTES); raise UserError on any problem."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise _error(f"cannot read spec: {e.strerror or e}", str(path)) from None
    if len(raw) > MAX_BYTES:
        raise _too_large(raw[:MAX_BYTES], b"\n", str(path))
    return loads(decode(raw, str(path)), str(path))


def _too_large(head, newline, file: str):
    """The error for a file past MAX_BYTES, located where it passes the limit."""
    line = head.count(newline) + 1
    col = len(head) - head.rfind(newline)
    return _error(f"the spec is larger than {MAX_BYTES // 1024} KiB (it passes the limit here): "
                  "a spec is a short text file", file, line, min(col, 10**6), "is this the right file?")


def decode(raw: bytes, file: str) -> str:
    """The text of a spec file: UTF-8, else a located error that says so."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(raw) > 1 and (raw[0] == 0) != (raw[1] == 0)):
        raise _error("the spec is UTF-16 (or UTF-32) encoded: specs are read as UTF-8", file, 1, 1,
                     "save the file as UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        start = raw.rfind(b"\n", 0, e.start) + 1
        col = len(raw[start:e.start].decode("utf-8", "replace")) + 1
        raise _error(f"byte 0x{raw[e.start]:02x} is not UTF-8: specs are read as UTF-8", file, line, col,
                     "save the file as UTF-8 (this byte looks like another encoding, e.g. Latin-1)") from None


def loads(text: str, file: str = "<spec>") -> Located:
    if len(text) > MAX_BYTES:
        raise _too_large(text[:MAX_BYTES], "\n", file)
    bad = _BAD_CHAR.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        col = bad.start() - text.rfind("\n", 0, bad.start())
        raise _error(f"control character U+{ord(bad.group()):04X} is not allowed in a spec", file, line, col,
                     "remove it (was the file saved as text?)")
    try:
        root = _Builder(file).compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise _error(f"YAML syntax error: {getattr(e, 'problem', None) or e}", file,
                     mark.line + 1 if mark else None, mark.column + 1 if mark else None,
                     "check indentation and that every 'key: value' has a space after the colon") from None
    if root is None:
        raise _error("the spec file is empty", file, 1, 1)
    positions: dict[tuple, Pos] = {}
    keys: dict[tuple, Pos] = {}
    return Located(_build(root, (), positions, keys, file), positions, keys, file, text)


class _Node:
    """A composed node: kind "scalar" (value), "seq" (items) or "map" ((key, value) pairs)."""

    __slots__ = ("kind", "value", "pos", "size", "height", "open")

    def __init__(self, kind: str, value, pos: Pos):
        self.kind, self.value, self.pos = kind, value, pos
        self.size, self.height, self.open = 1, 1, True


class _Builder:
    """Events -> a tree of _Node (aliases shared, never expanded here)."""

    def __init__(self, file: str):
        self.file = file
        self.anchors: dict[str, _Node] = {}
        self.values = 0  # values after alias expansion
        self.resolver = yaml.resolver.Resolver()
        self.constructor = yaml.SafeLoader("")

    def fail(self, message: str, mark, hint: str | None = None):
        return _error(message, self.file, mark.line + 1, mark.column + 1, hint)

    def compose(self, text: str) -> _Node | None:
        loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        loader = loader_cls(text)
        stack: list[_Node] = []
        root = None
        documents = 0
        try:
            while loader.check_event():
                event = loader.get_event()
                kind = type(event)
                if kind is yaml.ScalarEvent:
                    if len(stack) >= MAX_DEPTH:
                        raise self.fail(f"nesting deeper than {MAX_DEPTH} levels", event.start_mark)
                    self._count(1, event.start_mark)
                    node = _Node("scalar", self._scalar(event, stack),
                                 (event.start_mark.line + 1, event.start_mark.column + 1))
                    node.open = False
                    if event.anchor is not None:
                        self.anchors[event.anchor] = node
                elif kind is yaml.SequenceEndEvent or kind is yaml.MappingEndEvent:
                    node = stack.pop()
                    node.open = False
                    if node.kind == "map":
                        node.value = list(zip(node.value[::2], node.value[1::2]))
                elif kind is yaml.AliasEvent:
                    node = self.anchors.get(event.anchor)
                    if node is None:
                        raise self.fail(f"alias *{event.anchor} names no anchor (&{event.anchor}) before it",
                                        event.start_mark)
                    if node.open:
                        raise self.fail(f"alias *{event.anchor} is inside the node it names (a recursive alias)",
                                        event.start_mark, "an alias must refer to a finished node")
                    self._count(node.size, event.start_mark)
                    if len(stack) + node.height > MAX_DEPTH:
                        raise self.fail(f"alias *{event.anchor} makes the spec deeper than {MAX_DEPTH} levels",
                                        event.start_mark)
                elif kind is yaml.SequenceStartEvent or kind is yaml.MappingStartEvent:
                    if len(stack) >= MAX_DEPTH:
                        raise self.fail(f"nesting deeper than {MAX_DEPTH} levels", event.start_mark,
                                        "a spec needs only a few levels")
                    self._count(1, event.start_mark)
                    name = "seq" if kind is yaml.SequenceStartEvent else "map"
                    if event.tag not in (None, "!", _CORE + name):
                        raise self._bad_tag(event.tag, event.start_mark)
                    node = _Node(name, [], (event.start_mark.line + 1, event.start_mark.column + 1))
                    if event.anchor is not None:
                        self.anchors[event.anchor] = node
                    stack.append(node)
                    continue
                elif kind is yaml.DocumentStartEvent:
                    documents += 1
                    if documents > 1:
                        raise self.fail("a spec is one YAML document: remove the second '---'", event.start_mark)
                    continue
                else:  # stream start/end, document end
                    continue
                if stack:  # a finished node joins its parent
                    parent = stack[-1]
                    parent.value.append(node)
                    parent.size += node.size
                    if node.height >= parent.height:
                        parent.height = node.height + 1
                else:
                    root = node
        finally:
            loader.dispose()
        return root

    def _count(self, n: int, mark):
        self.values += n
        if self.values > MAX_VALUES:
            raise self.fail(f"the spec expands to more than {MAX_VALUES:,} values (aliases included)", mark,
                            "an alias repeats the whole node it names: is this an alias bomb?")

    def _bad_tag(self, tag: str, mark):
        return self.fail(f"YAML tag {tag} is not allowed in a spec", mark,
                         "write plain values, lists and mappings (tags never build objects here)")

    def _scalar(self, event, stack):
        tag = event.tag
        if tag in (None, "!"):
            if tag == "!" or not event.implicit[0]:  # quoted or block: a string
                tag = _CORE + "str"
            else:
                tag = self.resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
                if tag in (_CORE + "int", _CORE + "float") and ":" in event.value:
                    tag = _CORE + "str"  # YAML 1.1 sexagesimal (1:30:00 -> 5400): keep the text
                elif tag in (_CORE + "timestamp", _CORE + "value"):
                    tag = _CORE + "str"
                elif tag == _CORE + "merge":
                    if stack and stack[-1].kind == "map" and len(stack[-1].value) % 2 == 0:
                        return _MERGE
                    tag = _CORE + "str"
        if tag not in _SCALARS:
            raise self._bad_tag(tag, event.start_mark)
        if tag == _STR:
            return event.value
        text = event.value
        if tag == _INT and 0 < len(text) < 19 and text.isascii() and text.isdigit() and (text[0] != "0" or text == "0"):
            return int(text)  # a plain decimal (a long seed list): what the constructor gives, without it
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            value = self.constructor.construct_object(node, deep=True)
        except Exception as e:  # noqa: BLE001 -- e.g. `!!int twenty`, a 5000-digit integer
            raise self.fail(f"cannot read {event.value[:40]!r} as {tag.rsplit(':', 1)[-1]}: "
                            f"{getattr(e, 'problem', None) or e}", event.start_mark) from None
        if isinstance(value, int) and not isinstance(value, bool) and not -(1 << 63) <= value < (1 << 63):
            raise self.fail("integer too large (more than 64 bits)", event.start_mark)
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(f"{event.value!r} is not a finite number", event.start_mark,
                            "give a finite number (.inf and .nan are not allowed in a spec)")
        return value


class _Merge:
    def __repr__(self):
        return "<<"


_MERGE = _Merge()


def _build(node: _Node, path: tuple, positions: dict, keys: dict, file: str):
    positions[path] = node.pos
    if node.kind == "scalar":
        return node.value
    if node.kind == "seq":
        return [_build(v, path + (i,), positions, keys, file) for i, v in enumerate(node.value)]
    out: dict = {}
    for key_node, value_node, written in _pairs(node, file):
        key = key_node.value
        if key in out:
            if written:
                raise _error(f"key {key!r} appears twice", file, *key_node.pos)
            continue  # a merged key: the written one, or the first merged one, wins
        out[key] = _build(value_node, path + (key,), positions, keys, file)
        keys[path + (key,)] = key_node.pos
    return out


def _pairs(node: _Node, file: str, depth: int = 0):
    """(key node, value node, written here) of a mapping: its written keys first, then those of
    the mappings it merges (`<<`), each expanded the same way, in order."""
    merged: list[_Node] = []
    for key_node, value_node in node.value:
        if key_node.kind != "scalar":
            raise _error("a key must be a plain value, not a list or mapping", file, *key_node.pos,
                         "write `name: value`")
        if key_node.value is _MERGE:
            sources = value_node.value if value_node.kind == "seq" else [value_node]
            if any(s.kind != "map" for s in sources):
                raise _error("`<<` merges a mapping or a list of mappings, e.g. `<<: *defaults`", file,
                             *value_node.pos)
            merged += sources
        else:
            yield key_node, value_node, depth == 0
    for source in merged:
        yield from _pairs(source, file, depth + 1)
