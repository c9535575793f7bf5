"""Safe YAML loading that remembers where every value came from."""

from __future__ import annotations

from pathlib import Path

import yaml

Pos = tuple[int, int]  # 1-based line, column


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
            if isinstance(node, dict) and item in node:
                node, found = node[item], found + (item,)
            elif isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node):
                node, found = node[item], found + (item,)
        return (self.keys if key and found in self.keys else self.positions).get(found), found


def load(path: str | Path) -> Located:
    """Load a YAML file with the safe loader; raise UserError on syntax errors."""
    from .errors import UserError

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise UserError.single(f"cannot read spec: {e.strerror}", file=str(path)) from None
    return loads(text, str(path))


def loads(text: str, file: str = "<spec>") -> Located:
    from .errors import Problem, UserError

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise UserError([Problem(
            f"YAML syntax error: {getattr(e, 'problem', None) or e}",
            file=file,
            line=mark.line + 1 if mark else None,
            col=mark.column + 1 if mark else None,
            hint="check indentation and that every 'key: value' has a space after the colon",
        )]) from None
    if root is None:
        raise UserError.single("the spec file is empty", file=file, line=1, col=1)
    positions: dict[tuple, Pos] = {}
    keys: dict[tuple, Pos] = {}
    constructor = yaml.SafeLoader("")

    def build(node, path):
        positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            out = {}
            for key_node, value_node in node.value:
                key = constructor.construct_object(key_node, deep=True)
                if key in out:
                    raise UserError.single(
                        f"key {key!r} appears twice", file=file,
                        line=key_node.start_mark.line + 1, col=key_node.start_mark.column + 1,
                        where=".".join(map(str, path)))
                out[key] = build(value_node, path + (key,))
                keys[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(v, path + (i,)) for i, v in enumerate(node.value)]
        try:
            return constructor.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            raise UserError.single(
                f"cannot read value: {e}", file=file,
                line=node.start_mark.line + 1, col=node.start_mark.column + 1) from None

    return Located(build(root, ()), positions, keys, file, text)
