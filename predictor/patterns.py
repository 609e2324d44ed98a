"""Multi-node patterns that a runtime executes as one kernel, found before pairwise fusion.

Each matcher finds a structure in the ONNX graph and returns a `Composite`: the nodes it
covers, the tensor it reads, the tensor it writes and its configuration. Matchers run in
the order of `find_composites`; a node belongs to at most one composite.

- ``se``: GlobalAveragePool/ReduceMean(x) -> 1x1 conv/FC -> act -> 1x1 conv/FC ->
  Sigmoid/HardSigmoid -> Mul(x, .)
- ``gelu`` (Erf form and tanh approximation), ``hswish`` (x*HardSigmoid(x)), ``silu``
  (x*Sigmoid(x)): a Mul of x with an elementwise function of x. The written-out h-swish
  x*relu6(x+3)/6 (OFA's ``Hswish`` as exported) is no composite: the runtime runs its
  four elementwise ops one by one (measured: docs/predictor.md, "Exported networks")
- ``layernorm``: ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div(/Mul/Add)
- ``attention``: MatMul(q, k) (-> scale) (-> mask Add) -> Softmax -> MatMul(., v)
- ``channel_shuffle``: Reshape -> Transpose -> Reshape
"""

from __future__ import annotations

from dataclasses import dataclass, field

from predictor.graph import OnnxGraph
from predictor.nodes import GraphNode

ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Pow", "Erf", "Tanh", "Sigmoid", "HardSigmoid", "Clip",
    "Relu", "Sqrt", "ReduceMean",
}  # fmt: skip
SE_BODY = {
    "Conv", "Gemm", "MatMul", "Relu", "Clip", "Add", "HardSigmoid", "Sigmoid", "HardSwish",
    "Mul", "Flatten", "Reshape", "Squeeze", "Unsqueeze",
}  # fmt: skip


@dataclass
class Composite:
    token: str
    nodes: list[GraphNode]
    input: str
    output: str
    config: dict[str, object] = field(default_factory=dict)


def _between(
    g: OnnxGraph, x: str, tensor: str, allowed: set[str], limit: int = 12
) -> list[GraphNode] | None:
    """Nodes on every path from tensor ``x`` to ``tensor`` in graph order, if ``tensor``
    depends only on ``x`` and constants through ``allowed`` ops (at most ``limit`` nodes)."""
    seen: dict[str, GraphNode] = {}
    stack = [tensor]
    while stack:
        t = stack.pop()
        if t == x or g.is_const(t):
            continue
        node = g.source(t)
        if node is None or node.op_type not in allowed:
            return None
        if node.name in seen:
            continue
        seen[node.name] = node
        if len(seen) > limit:
            return None
        stack.extend(i for i in node.input if i)
    return sorted(seen.values(), key=lambda n: g.position[n.name]) or None


def _private(g: OnnxGraph, nodes: list[GraphNode], output: str) -> bool:
    """True when no tensor inside ``nodes`` except ``output`` is read outside them."""
    names = {n.name for n in nodes}
    for node in nodes:
        for out in node.output:
            if out == output:
                continue
            if out in g.graph_outputs or any(u.name not in names for u in g.users(out)):
                return False
    return True


def _single_user(g: OnnxGraph, tensor: str, op: str) -> GraphNode | None:
    users = g.users(tensor)
    if len(users) == 1 and users[0].op_type == op and tensor not in g.graph_outputs:
        return users[0]
    return None


def _const_tail(g: OnnxGraph, node: GraphNode, ops: tuple[str, ...]) -> list[GraphNode]:
    """Consecutive single-user ops in ``ops`` with a constant second operand after ``node``."""
    tail: list[GraphNode] = []
    cur = node
    while True:
        users = g.users(cur.output[0])
        if len(users) != 1 or users[0].op_type not in ops or cur.output[0] in g.graph_outputs:
            return tail
        nxt = users[0]
        others = [i for i in nxt.input if i != cur.output[0]]
        if not others or not all(g.is_const(i) for i in others):
            return tail
        tail.append(nxt)
        cur = nxt


def _se(g: OnnxGraph, mul: GraphNode) -> Composite | None:
    for x, gate in ((mul.input[0], mul.input[1]), (mul.input[1], mul.input[0])):
        sig = g.source(gate)
        if sig is None or sig.op_type not in ("Sigmoid", "HardSigmoid"):
            continue
        body = _between(g, x, gate, SE_BODY | {"GlobalAveragePool", "ReduceMean"}, limit=16)
        if not body:
            continue
        pools = [n for n in body if n.op_type in ("GlobalAveragePool", "ReduceMean")]
        if len(pools) != 1 or pools[0].input[0] != x:
            continue
        nodes = [*body, mul]
        if not _private(g, nodes, mul.output[0]):
            continue
        shape = g.shape(x)
        convs = [n for n in body if n.op_type in ("Conv", "Gemm", "MatMul")]
        mid = g.shape(convs[0].output[0]) if convs else []
        return Composite(
            "se",
            nodes,
            x,
            mul.output[0],
            {
                "hw": shape[2] if len(shape) == 4 else 1,
                "cin": shape[1] if len(shape) > 1 else 0,
                "mid": mid[1] if len(mid) > 1 else 0,
                "gate": "hsigmoid" if sig.op_type == "HardSigmoid" else "sigmoid",
            },
        )
    return None


def _gated(g: OnnxGraph, mul: GraphNode) -> Composite | None:
    """x * f(x) for an elementwise f: GELU (Erf or tanh form), h-swish, SiLU."""
    pairs: list[tuple[str, str, list[GraphNode]]] = []
    for a, b in ((mul.input[0], mul.input[1]), (mul.input[1], mul.input[0])):
        pairs.append((a, b, []))
        half = g.source(a)
        if half is not None and half.op_type == "Mul":
            for i, j in ((0, 1), (1, 0)):
                if g.is_const(half.input[j]) and not g.is_const(half.input[i]):
                    pairs.append((half.input[i], b, [half]))
    for x, gate, extra in pairs:
        if g.is_const(x) or g.is_const(gate):
            continue
        body = _between(g, x, gate, ELEMENTWISE)
        if not body or any(x in n.output for n in body):
            continue
        ops = {n.op_type for n in body}
        if "ReduceMean" in ops:
            continue
        if "Erf" in ops:
            token, form = "gelu", "erf"
        elif "Tanh" in ops:
            token, form = "gelu", "tanh"
        elif "HardSigmoid" in ops:
            token, form = "hswish", "decomposed"
        elif "Clip" in ops or "Relu" in ops:
            # written out (OFA's Hswish, x * relu6(x + 3) / 6): no one kernel; onnxruntime
            # runs its Add, Clip, Mul and Div one by one (bench.predictor_exported)
            continue
        elif ops == {"Sigmoid"}:
            token, form = "silu", "decomposed"
        else:
            continue
        nodes = [*extra, *body, mul]
        nodes += _const_tail(g, mul, ("Mul", "Div"))
        out = nodes[-1].output[0]
        if not _private(g, nodes, out):
            continue
        return Composite(token, nodes, x, out, {"form": form})
    return None


def _layernorm(g: OnnxGraph, div: GraphNode) -> Composite | None:
    sqrt = g.source(div.input[1])
    sub = g.source(div.input[0])
    if sqrt is None or sqrt.op_type != "Sqrt" or sub is None or sub.op_type != "Sub":
        return None
    x = sub.input[0]
    mean = g.source(sub.input[1])
    if mean is None or mean.op_type != "ReduceMean" or mean.input[0] != x:
        return None
    body = _between(g, x, div.output[0], ELEMENTWISE)
    if not body:
        return None
    tail = _const_tail(g, div, ("Mul", "Add"))[:2]
    nodes = [*body, *tail]
    out = nodes[-1].output[0]
    if not _private(g, nodes, out):
        return None
    return Composite("layernorm", nodes, x, out, {"form": "decomposed"})


def _attention(g: OnnxGraph, softmax: GraphNode) -> Composite | None:
    mm2 = _single_user(g, softmax.output[0], "MatMul")
    if mm2 is None or mm2.input[0] != softmax.output[0]:
        return None
    nodes = [softmax, mm2]
    cur = g.source(softmax.input[0])
    scaled = masked = False
    while cur is not None and cur.op_type in ("Add", "Mul", "Div") and len(nodes) < 5:
        if len(g.users(cur.output[0])) != 1:
            return None
        if cur.op_type == "Add":
            masked = True
        else:
            scaled = True
        nodes.insert(0, cur)
        data = [i for i in cur.input if not g.is_const(i)]
        if cur.op_type == "Add" and len(data) == 2:
            data = [
                d
                for d in data
                if (s := g.source(d)) is not None and s.op_type in ("MatMul", "Mul", "Div")
            ][:1] or data[:1]
        cur = g.source(data[0]) if data else None
    if cur is None or cur.op_type != "MatMul" or len(g.users(cur.output[0])) != 1:
        return None
    mm1 = cur
    nodes.insert(0, mm1)
    q, k, v = mm1.input[0], mm1.input[1], mm2.input[1]
    qs, ks = g.shape(q), g.shape(k)
    if len(qs) < 2 or len(ks) < 2:
        return None
    return Composite(
        "attention",
        nodes,
        q,
        mm2.output[0],
        {
            "batch": qs[0] if len(qs) >= 3 else 1,
            "heads": qs[-3] if len(qs) >= 4 else 1,
            "seq": qs[-2],
            "seq_kv": ks[-1],
            "dim": qs[-1],
            "scaled": scaled,
            "masked": masked,
            "k": k,
            "v": v,
        },
    )


def _shuffle(g: OnnxGraph, tr: GraphNode) -> Composite | None:
    before = g.source(tr.input[0])
    after = _single_user(g, tr.output[0], "Reshape")
    if before is None or before.op_type != "Reshape" or after is None:
        return None
    x = before.input[0]
    xs, mid, out = g.shape(x), g.shape(before.output[0]), g.shape(after.output[0])
    perm = g.attr_ints(tr, "perm")
    if len(xs) != 4 or len(mid) != 5 or xs != out or perm != [0, 2, 1, 3, 4]:
        return None
    nodes = [before, tr, after]
    if not _private(g, nodes, after.output[0]):
        return None
    return Composite(
        "channel_shuffle", nodes, x, after.output[0], {"groups": mid[1], "cin": xs[1], "hw": xs[2]}
    )


def find_composites(g: OnnxGraph) -> list[Composite]:
    """All composites of ``g``; each node is in at most one."""
    taken: set[str] = set()
    found: list[Composite] = []
    passes = (
        ("Mul", _se),
        ("Mul", _gated),
        ("Div", _layernorm),
        ("Softmax", _attention),
        ("Transpose", _shuffle),
    )
    for op, matcher in passes:
        for node in g.nodes:
            if node.op_type != op or node.name in taken:
                continue
            comp = matcher(g, node)
            if comp is None or any(n.name in taken for n in comp.nodes):
                continue
            taken.update(n.name for n in comp.nodes)
            found.append(comp)
    return found
