"""The one way qcline reads YAML a user wrote (order books, profiles, data.yaml): bounded.

``yaml.safe_load`` stops code execution but not a bomb: nine levels of anchors and aliases in 414 bytes
expand to millions of nodes (each alias level x10), and a document nested a few thousand levels deep ends in
a ``RecursionError``. ``load`` uses PyYAML's safe constructors with a composer that

* refuses anchors and aliases (``&a`` / ``*a``, and so ``<<`` merge keys): no file of ours needs them;
* refuses nesting deeper than ``max_depth`` and more than ``max_nodes`` nodes;
* refuses text over ``max_bytes`` before parsing.

Every refusal and every syntax error is a one-line ``YamlRefusedError``, a ``yaml.YAMLError``, so callers
that already wrap YAML errors into their own (``ProfileError``, ``DatasetError``: 422 / a CLI line) keep doing
so unchanged.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, CollectionStartEvent
from yaml.nodes import MappingNode, Node, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

MAX_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 1_000_000


class YamlRefusedError(yaml.YAMLError):
    """YAML that does not parse, or that is refused as unsafe (aliases, too deep, too large); one line."""


class _BoundedComposer(Composer):
    max_depth = MAX_DEPTH
    max_nodes = MAX_NODES

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()  # type: ignore[attr-defined]  # from the Parser mixin
        where = f"line {event.start_mark.line + 1}" if event.start_mark else "?"
        if isinstance(event, AliasEvent):
            raise YamlRefusedError(f"{where}: aliases (*{event.anchor}) are not accepted")
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise YamlRefusedError(f"{where}: anchors (&{anchor}) are not accepted")
        self._nodes += 1
        if self._nodes > self.max_nodes:
            raise YamlRefusedError(f"{where}: more than {self.max_nodes} values")
        nested = isinstance(event, CollectionStartEvent)
        if nested:
            self._depth += 1
            if self._depth > self.max_depth:
                raise YamlRefusedError(f"{where}: nested deeper than {self.max_depth} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            if nested:
                self._depth -= 1


class _BoundedLoader(Reader, Scanner, Parser, _BoundedComposer, SafeConstructor, Resolver):
    def __init__(self, stream: str, max_depth: int, max_nodes: int) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _BoundedComposer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.max_depth = max_depth
        self.max_nodes = max_nodes


def load(text: str | bytes, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
         max_nodes: int = MAX_NODES) -> Any:
    """One YAML (or JSON) document as plain Python values, within the limits, or ``YamlRefusedError``."""
    return _load(text, max_bytes, max_depth, max_nodes, lines=None)


def load_with_lines(text: str | bytes, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
                    max_nodes: int = MAX_NODES) -> tuple[Any, dict[tuple[str | int, ...], int]]:
    """``load``, plus the line (1-based) where each value starts, by its path of keys and list indexes
    (``("cameras", 0, "url")``), so a validator can say *where* in a file a bad value is."""
    lines: dict[tuple[str | int, ...], int] = {}
    return _load(text, max_bytes, max_depth, max_nodes, lines=lines), lines


def _walk(node: Node, path: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, MappingNode):
        for key, value in node.value:
            _walk(value, (*path, str(key.value)), lines)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines)


def _load(text: str | bytes, max_bytes: int, max_depth: int, max_nodes: int, *,
          lines: dict[tuple[str | int, ...], int] | None) -> Any:
    """The one bounded load both entry points use; ``lines`` (when given) is filled with each value's line."""
    if len(text) > max_bytes:
        raise YamlRefusedError(f"YAML of {len(text)} bytes is larger than the {max_bytes} bytes accepted")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise YamlRefusedError(f"not UTF-8 text: {exc}") from exc
    loader = _BoundedLoader(text, max_depth, max_nodes)
    try:
        if lines is None:
            return loader.get_single_data()
        node = loader.get_single_node()
        if node is None:
            return None
        _walk(node, (), lines)
        return loader.construct_document(node)
    except YamlRefusedError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise YamlRefusedError(f"{where}{exc.problem or exc.context or 'invalid YAML'}") from exc
    except yaml.YAMLError as exc:
        raise YamlRefusedError(" ".join(str(exc).split())) from exc
    except RecursionError as exc:  # belt and braces: max_depth stops it long before
        raise YamlRefusedError("nested too deeply") from exc
    finally:
        loader.dispose()


def load_file(path: Any, **limits: int) -> Any:
    """``load`` of a file's text (``OSError`` / ``UnicodeDecodeError`` are the caller's to word)."""
    with open(path, "rb") as handle:
        data = handle.read(limits.get("max_bytes", MAX_BYTES) + 1)
    return load(data.decode("utf-8"), **limits)


__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "YamlRefusedError", "load", "load_file", "load_with_lines"]
