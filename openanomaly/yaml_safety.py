"""YAML read with bounded cost: the configuration, pipeline files and the web editor take
YAML from people, and a few bytes of nested anchors and aliases can stand for billions of
values (every later walk over the document would expand them)."""

from __future__ import annotations

from typing import Any

import yaml

# Values a document may stand for once its aliases are expanded: far above any real
# configuration (a thousand pipelines of a few dozen settings), far below a bomb's cost.
MAX_EXPANDED_NODES = 200_000
MAX_DEPTH = 100


class YamlTooLarge(yaml.YAMLError):
    """A document whose aliases expand beyond the bound, or that nests too deep."""


class _BoundedLoader(yaml.SafeLoader):
    def construct_document(self, node: yaml.Node) -> Any:
        _check(node)
        return super().construct_document(node)


def _check(root: yaml.Node) -> None:
    sizes: dict[int, int] = {}  # expanded size per node, so shared nodes count once to find

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise YamlTooLarge(f"the document nests deeper than {MAX_DEPTH} levels")
        known = sizes.get(id(node))
        if known is not None:
            return known
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(key, depth + 1) + size(value, depth + 1)
                         for key, value in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item, depth + 1) for item in node.value)
        if total > MAX_EXPANDED_NODES:
            raise YamlTooLarge(
                f"its anchors and aliases expand to more than {MAX_EXPANDED_NODES:,} values; "
                "write the values out, or use fewer nested aliases")
        sizes[id(node)] = total
        return total

    size(root, 0)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses alias bombs and extreme nesting (YamlTooLarge, a
    YAMLError, so callers' existing error handling reports it)."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except RecursionError:
        raise YamlTooLarge(f"the document nests deeper than {MAX_DEPTH} levels") from None
