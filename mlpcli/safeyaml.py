"""YAML read as hostile input: PyYAML's safe loader with bounds on what a small text can expand to.

A kilobyte of nested anchors ("billion laughs") names a billion nodes; 3,000 nested brackets exhaust
Python's recursion; an integer of 5,000 digits is refused by `int()` deep inside the parser. Here the
nesting is counted while the document is composed, the size of the document with every alias
expanded is counted (without expanding it) before any Python object is built, and integers are
length-checked before conversion — each refused with a ConfigError naming the source.
"""

from __future__ import annotations

from typing import Any

import yaml

from mlpcli.errors import ConfigError

MAX_DEPTH = 32          # nesting levels, aliases expanded (a config needs 5)
MAX_NODES = 100_000     # nodes, aliases expanded (a config has a few hundred)
MAX_INT_CHARS = 64      # characters of an integer (2**128 has 39 digits)


class _Refused(Exception):
    """The document breaks one of the bounds above."""


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self._depth >= MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        """A mapping whose keys are all different: a key written twice is an error, not last-wins (merge
        keys `<<` still fill in what the mapping does not set)."""
        if isinstance(node, yaml.MappingNode):
            lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                if key in lines:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} is given twice (first at line {lines[key]})",
                        key_node.start_mark)
                lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _measure(node, 0, {})
        return self.construct_document(node)


def _construct_int(loader: _BoundedLoader, node: yaml.ScalarNode) -> int:
    if len(node.value) > MAX_INT_CHARS:
        raise _Refused(f"an integer of {len(node.value):,} characters (at most {MAX_INT_CHARS})")
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _measure(node: yaml.Node, depth: int, seen: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(nodes, height) of `node` with its aliases expanded; `seen` memoizes shared (aliased) nodes, so
    the count takes time linear in the text. A recursive alias never ends and so exceeds MAX_DEPTH."""
    too_deep = _Refused(f"nested deeper than {MAX_DEPTH} levels once its aliases are expanded (does an alias "
                        "contain itself?)")
    if id(node) in seen:
        nodes, height = seen[id(node)]
    else:
        if depth > MAX_DEPTH:
            raise too_deep
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        nodes, height = 1, 0
        for child in children:
            child_nodes, child_height = _measure(child, depth + 1, seen)
            nodes, height = nodes + child_nodes, max(height, child_height + 1)
            if nodes > MAX_NODES:
                raise _Refused(f"more than {MAX_NODES:,} values once its aliases are expanded")
        seen[id(node)] = nodes, height
    if depth + height > MAX_DEPTH:
        raise too_deep
    return nodes, height


def load_yaml(text: str, source: str) -> Any:
    """The data in YAML `text`; a ConfigError that starts with `source` (a file name, or the override)
    for malformed YAML or a document past the bounds above."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except _Refused as err:
        raise ConfigError(f"{source}: refused: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{source}: malformed YAML{where}: {problem}") from None
