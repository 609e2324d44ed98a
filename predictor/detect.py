"""Kernel detection: an ONNX graph -> the kernels a runtime executes, with their configs.

1. shapes are inferred with static input dimensions (`predictor.graph.OnnxGraph`: our own
   propagation for the ops it knows, `predictor.shapes`, else ONNX's shape inference);
2. multi-node patterns become one op each (`predictor.patterns`: SE, GELU, h-swish, SiLU,
   decomposed LayerNorm, attention, channel shuffle); every other node is one op, except
   view/metadata nodes (`predictor.ops.DUMMY`) which are no kernel at all;
3. ops fuse into kernels along single-consumer edges as the `FusionRules` allow;
4. blocks are recognised over the kernels: inverted residuals (expansion recorded on each
   of their kernels) and transformer MLPs (FC -> GELU -> FC).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import onnx
from pydantic import BaseModel, ConfigDict, Field

from predictor.fusion import ACTIVATIONS, FusionRules, default_rules
from predictor.graph import OnnxGraph
from predictor.ops import DUMMY, Op, composite_op, node_op
from predictor.patterns import find_composites


class Kernel(BaseModel):
    """One kernel: ``type`` is its first op's kind plus the fused tokens (``pwconv+relu6``,
    ``conv+bn+add+relu``); ``ops`` the fusion tokens; ``nodes`` the ONNX nodes it covers;
    ``inputs`` the kernels it reads."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: str
    ops: list[str]
    nodes: list[str]
    inputs: list[str] = Field(default_factory=list)
    config: dict[str, object] = Field(default_factory=dict)


class Block(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    kernels: list[str]
    config: dict[str, object] = Field(default_factory=dict)


class Detection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kernels: list[Kernel]
    blocks: list[Block]
    rules: FusionRules

    def of_type(self, prefix: str) -> list[Kernel]:
        return [k for k in self.kernels if k.type.split("+")[0] == prefix]


EPILOGUE_ACTS = frozenset({*ACTIVATIONS, "gelu", "silu"})


def _ops(g: OnnxGraph) -> list[Op]:
    position = {n.name: i for i, n in enumerate(g.nodes)}
    placed: list[tuple[int, Op]] = []
    taken: set[str] = set()
    for comp in find_composites(g):
        taken.update(n.name for n in comp.nodes)
        placed.append((max(position[n.name] for n in comp.nodes), composite_op(g, comp)))
    for node in g.nodes:
        if node.name in taken:
            continue
        op = node_op(g, node)
        if op is not None:
            placed.append((position[node.name], op))
    placed.sort(key=lambda p: p[0])
    return [op for _, op in placed]


def _resolve(g: OnnxGraph, tensor: str, owner: Mapping[str, Op]) -> Op | None:
    """The op whose output ``tensor`` is, looking through `DUMMY` nodes."""
    seen = 0
    while tensor not in owner and seen < 32:
        node = g.source(tensor)
        if node is None or node.op_type not in DUMMY or not node.input:
            return None
        tensor = node.input[0]
        seen += 1
    return owner.get(tensor)


def detect_kernels(
    model: onnx.ModelProto,
    rules: FusionRules | None = None,
    dims: Mapping[str, int] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    inference: Literal["auto", "onnx"] = "auto",
) -> Detection:
    """Split ``model`` into kernels under ``rules`` (default: `default_rules`). ``dims`` fixes
    symbolic input dimensions by name (others become 1); ``input_shapes`` fix whole input
    shapes by input name; ``inference="onnx"`` forces ONNX's shape inference
    (`predictor.graph.OnnxGraph`; same kernels, slower)."""
    rules = rules or default_rules()
    g = OnnxGraph(model, dims, input_shapes, inference)
    ops = _ops(g)
    # `FusionRules.allows`, as a set: every prefix of every pattern
    prefixes = {tuple(p[:n]) for p in rules.patterns for n in range(1, len(p) + 1)}
    owner = {op.output: op for op in ops}
    users: dict[int, list[Op]] = {}
    for op in ops:
        for t in op.inputs:
            src = owner.get(t)
            if src is not None:
                users.setdefault(id(src), []).append(op)
    kernel_of: dict[int, int] = {}
    groups: list[list[Op]] = []
    for op in ops:
        if id(op) in kernel_of:
            continue
        chain = [op]
        kernel_of[id(op)] = len(groups)
        while True:
            last = chain[-1]
            nxt = users.get(id(last), [])
            if len(nxt) != 1 or last.output in g.graph_outputs or id(nxt[0]) in kernel_of:
                break
            cand = nxt[0]
            if (*(o.token for o in chain), cand.token) not in prefixes:
                break
            if cand.token in ("add", "mul") and all(owner.get(t) is last for t in cand.inputs):
                break
            chain.append(cand)
            kernel_of[id(cand)] = len(groups)
        groups.append(chain)
    kernels = [_kernel(i, chain) for i, chain in enumerate(groups)]
    for kernel, chain in zip(kernels, groups, strict=True):
        members = {id(o) for o in chain}
        for op in chain:
            for t in op.inputs:
                src = _resolve(g, t, owner)
                if src is not None and id(src) not in members:
                    name = kernels[kernel_of[id(src)]].name
                    if name not in kernel.inputs:
                        kernel.inputs.append(name)
    return Detection(kernels=kernels, blocks=_blocks(kernels), rules=rules)


def _kernel(index: int, chain: list[Op]) -> Kernel:
    head = chain[0]
    tokens = [o.token for o in chain]
    config = dict(head.config)
    config["output_shape"] = chain[-1].config.get("output_shape", [])
    acts = [t for t in tokens[1:] if t in EPILOGUE_ACTS]
    if len(chain) > 1 or head.token in ("conv", "dwconv", "fc"):
        config["activation"] = acts[-1] if acts else None
        config["bn"] = "bn" in tokens[1:]
        config["residual"] = "add" in tokens[1:]
    kind = "+".join([head.kind, *tokens[1:]])
    nodes = [n.name for o in chain for n in o.nodes]
    return Kernel(name=f"{kind}#{index}", type=kind, ops=tokens, nodes=nodes, config=config)


def _blocks(kernels: list[Kernel]) -> list[Block]:
    by_name = {k.name: k for k in kernels}
    readers: dict[str, list[Kernel]] = {}
    for k in kernels:
        for i in k.inputs:
            readers.setdefault(i, []).append(k)

    def only_reader(k: Kernel) -> Kernel | None:
        r = readers.get(k.name, [])
        return r[0] if len(r) == 1 else None

    def base(k: Kernel | None) -> str:
        return k.type.split("+")[0] if k is not None else ""

    blocks: list[Block] = []
    for dw in kernels:
        if base(dw) != "dwconv":
            continue
        project = only_reader(dw)
        if project is None or base(project) != "pwconv":
            continue
        src = by_name.get(dw.inputs[0]) if dw.inputs else None
        expand = (
            src if src is not None and base(src) == "pwconv" and only_reader(src) is dw else None
        )
        first = expand or dw
        cin = int(first.config["cin"])  # type: ignore[call-overload]
        expansion = round(int(dw.config["cin"]) / cin, 3)  # type: ignore[call-overload]
        residual = bool(project.config.get("residual"))
        after = only_reader(project)
        if not residual and after is not None and after.ops[0] == "add":
            residual = True
        members = [k for k in (expand, dw, project) if k is not None]
        for k in members:
            k.config["expansion"] = expansion
        blocks.append(
            Block(
                type="inverted_residual",
                kernels=[k.name for k in members],
                config={
                    "hw": first.config["hw"],
                    "cin": cin,
                    "cout": project.config["cout"],
                    "expansion": expansion,
                    "kernel": dw.config["kernel"],
                    "stride": dw.config["stride"],
                    "residual": residual,
                },
            )
        )
    for fc1 in kernels:
        if base(fc1) != "fc":
            continue
        gelu: Kernel | None = fc1 if "gelu" in fc1.ops else only_reader(fc1)
        if gelu is None or (gelu is not fc1 and gelu.ops[0] != "gelu"):
            continue
        fc2 = only_reader(gelu)
        if fc2 is None or base(fc2) != "fc":
            continue
        names = list(dict.fromkeys([fc1.name, gelu.name, fc2.name]))
        blocks.append(
            Block(
                type="mlp",
                kernels=names,
                config={
                    "tokens": fc1.config["tokens"],
                    "dim": fc1.config["cin"],
                    "hidden": fc1.config["cout"],
                    "out": fc2.config["cout"],
                },
            )
        )
    return blocks
