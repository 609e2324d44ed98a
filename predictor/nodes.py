"""Graph nodes as plain Python objects: what kernel detection and shape propagation read."""

from __future__ import annotations

import onnx
from onnx import helper


class GraphNode:
    """One ONNX node's fields, read once from its ``NodeProto`` (every protobuf field read
    builds a new Python object; detection reads each node's fields many times). ``name``
    is the node's own, or the one detection gives a node without (`predictor.graph`)."""

    __slots__ = ("_attrs", "attribute", "domain", "input", "name", "op_type", "output")

    def __init__(self, node: onnx.NodeProto, name: str) -> None:
        self.name = name
        self.op_type: str = node.op_type
        self.domain: str = node.domain
        self.input: tuple[str, ...] = tuple(node.input)
        self.output: tuple[str, ...] = tuple(node.output)
        self.attribute = node.attribute
        self._attrs: dict[str, object] | None = None

    @property
    def attrs(self) -> dict[str, object]:
        """Attribute name -> value (``onnx.helper.get_attribute_value``), read once."""
        if self._attrs is None:
            self._attrs = {a.name: helper.get_attribute_value(a) for a in self.attribute}
        return self._attrs
