"""Fused operators for the pinned MiniLM graph, built in memory at load time.

The int8 all-MiniLM-L6-v2 export (PyTorch's ONNX exporter) keeps its weights
as int8 with a float scale (``Cast`` then ``Mul``, which onnxruntime folds to
float32 when a session starts) and spells attention and GELU out op by op,
including a guard that sets NaN softmax rows to zero. onnxruntime's own graph
optimizer fuses none of it: profiled, the guard's ``Where``/``IsNaN`` on the
[batch, heads, seq, seq] scores alone took 15 % of ``session.run``.

:func:`fuse_encoder` rewrites each layer's self-attention (the Q, K and V
projections, scaling, mask, softmax, guard and the product with V) into one
``com.microsoft.Attention`` node with packed QKV weights, and each
``x * 0.5 * (1 + erf(x / sqrt 2))`` after a bias into ``BiasGelu``. The
guard is dropped: a softmax row is NaN only when every key is masked, and a
sentence encoder's [CLS] key never is. Nothing else changes; every other
weight stays int8 in the bytes, as shipped. The pinned model's vectors match
the unfused graph's to 1e-6 (tested). The model file is never written.

The graph is read and written with protobuf (which onnxruntime depends on)
through the few ONNX fields used here, declared below; fields not declared
are kept as they are. The ``onnx`` package would do the same, but importing
it took 1.2-1.8 s here (its ``ml_dtypes``), more than loading the model.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Fused", "fuse_encoder"]

_MS = "com.microsoft"
_Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Fused:
    """The rewritten model and how many nodes of each kind were fused."""

    model: bytes
    attention: int
    gelu: int


def fuse_encoder(model: bytes, num_heads: int, mask_input: str = "attention_mask") -> Fused:
    """``model`` with attention and GELU fused where the exporter's patterns are
    found (see the module docstring); unchanged bytes when none is."""
    proto = _proto("ModelProto")()
    proto.ParseFromString(model)
    graph = _Graph(proto.graph)
    attention = _fuse_attention(graph, num_heads, mask_input)
    gelu = _fuse_gelu(graph)
    if not (attention or gelu):
        return Fused(model, 0, 0)
    graph.commit()
    if not any(o.domain == _MS for o in proto.opset_import):
        proto.opset_import.add(domain=_MS, version=1)
    return Fused(proto.SerializeToString(), attention, gelu)


# ONNX's field numbers (onnx/onnx.proto, proto2); enough to read and rewrite nodes.
_FIELDS: dict[str, list[tuple[str, int, str, bool]]] = {  # name, number, type, repeated
    "TensorProto": [
        ("dims", 1, "int64", True),
        ("data_type", 2, "int32", False),
        ("float_data", 4, "float", True),
        ("int32_data", 5, "int32", True),
        ("int64_data", 7, "int64", True),
        ("name", 8, "string", False),
        ("raw_data", 9, "bytes", False),
        ("double_data", 10, "double", True),
    ],
    "AttributeProto": [
        ("name", 1, "string", False),
        ("f", 2, "float", False),
        ("i", 3, "int64", False),
        ("type", 20, "int32", False),
    ],
    "NodeProto": [
        ("input", 1, "string", True),
        ("output", 2, "string", True),
        ("name", 3, "string", False),
        ("op_type", 4, "string", False),
        ("attribute", 5, ".AttributeProto", True),
        ("domain", 7, "string", False),
    ],
    "ValueInfoProto": [("name", 1, "string", False)],
    "GraphProto": [
        ("node", 1, ".NodeProto", True),
        ("initializer", 5, ".TensorProto", True),
        ("input", 11, ".ValueInfoProto", True),
        ("output", 12, ".ValueInfoProto", True),
    ],
    "OperatorSetIdProto": [("domain", 1, "string", False), ("version", 2, "int64", False)],
    "ModelProto": [
        ("graph", 7, ".GraphProto", False),
        ("opset_import", 8, ".OperatorSetIdProto", True),
    ],
}
# TensorProto.DataType values -> numpy, and where a tensor without raw_data keeps them.
_DTYPES: dict[int, tuple[type[np.generic], str]] = {
    1: (np.float32, "float_data"),
    3: (np.int8, "int32_data"),
    6: (np.int32, "int32_data"),
    7: (np.int64, "int64_data"),
    11: (np.float64, "double_data"),
}
_FLOAT, _INT32 = 1, 6
_ATTRIBUTE_FLOAT, _ATTRIBUTE_INT = 1, 2  # AttributeProto.AttributeType


def _proto(name: str) -> Any:
    """The message class ``name`` of the ONNX subset in :data:`_FIELDS`."""
    return _classes()[name]


@functools.cache
def _classes() -> dict[str, Any]:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    package = "abathur_memkit_onnx"
    file = descriptor_pb2.FileDescriptorProto(
        name=f"{package}.proto", package=package, syntax="proto2"
    )
    for message, fields in _FIELDS.items():
        described = file.message_type.add(name=message)
        for fname, number, kind, repeated in fields:
            entry = described.field.add(
                name=fname,
                number=number,
                label=field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL,
            )
            if kind.startswith("."):
                entry.type = field.TYPE_MESSAGE
                entry.type_name = f".{package}{kind}"
            else:
                entry.type = getattr(field, "TYPE_" + kind.upper())
    pool = descriptor_pool.DescriptorPool()  # its own pool: no clash with onnx's own
    pool.Add(file)
    return {
        message: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{message}"))
        for message in _FIELDS
    }


def _to_array(tensor: Any) -> _Array | None:
    """A tensor's values, or None for a type this module never reads."""
    known = _DTYPES.get(tensor.data_type)
    if known is None:
        return None
    dtype, typed = known
    if tensor.raw_data:
        values = np.frombuffer(tensor.raw_data, dtype=np.dtype(dtype).newbyteorder("<"))
    else:
        values = np.asarray(getattr(tensor, typed)).astype(dtype)
    return values.reshape(tuple(tensor.dims)).astype(dtype)


def _tensor(name: str, value: _Array) -> Any:
    value = np.ascontiguousarray(value, dtype="<f4")
    return _proto("TensorProto")(
        name=name, dims=value.shape, data_type=_FLOAT, raw_data=value.tobytes()
    )


def _node(
    op: str, inputs: list[str], output: str, name: str, domain: str = "", **attributes: int | float
) -> Any:
    node = _proto("NodeProto")(op_type=op, input=inputs, output=[output], name=name, domain=domain)
    for key, value in attributes.items():
        if isinstance(value, int):
            node.attribute.add(name=key, i=value, type=_ATTRIBUTE_INT)
        else:
            node.attribute.add(name=key, f=value, type=_ATTRIBUTE_FLOAT)
    return node


class _Graph:
    """Lookups over a GraphProto, the nodes to add and the outputs they replace."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.initializers = {i.name: i for i in graph.initializer}
        self.inputs = {i.name: i for i in graph.input}
        self.replacing: dict[str, Any] = {}  # output name -> the fused node making it
        self.prelude: list[Any] = []  # nodes with no output replaced (the mask's Cast)

    def array(self, name: str) -> _Array | None:
        init = self.initializers.get(name)
        return None if init is None else _to_array(init)

    def scalar(self, name: str) -> float | None:
        value = self.array(name)
        return float(value.reshape(())) if value is not None and value.size == 1 else None

    def made_by(self, name: str, op: str) -> Any:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op else None

    def only_consumer(self, name: str, op: str) -> Any:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    def weight(self, name: str) -> _Array | None:
        """A MatMul's weight as float32: an initializer, or int8 ``Cast`` x scale
        computed as onnxruntime's constant folding does (one float32 multiply)."""
        direct = self.array(name)
        if direct is not None:
            return direct.astype(np.float32) if direct.dtype == np.float32 else None
        mul = self.made_by(name, "Mul")
        cast = mul and self.made_by(mul.input[0], "Cast")
        if not cast:
            return None
        quantized, scale = self.array(cast.input[0]), self.array(mul.input[1])
        if quantized is None or scale is None or scale.dtype != np.float32:
            return None
        weight: _Array = quantized.astype(np.float32) * scale
        return weight

    def add_initializer(self, name: str, value: _Array) -> None:
        self.graph.initializer.append(_tensor(name, value))

    def commit(self) -> None:
        """Put each fused node where its output was made; drop what no output needs."""
        nodes = list(self.prelude)
        for n in self.graph.node:
            nodes.append(self.replacing.get(n.output[0], n) if n.output else n)
        producer = {o: n for n in nodes for o in n.output}
        live: set[int] = set()
        wanted = [o.name for o in self.graph.output]
        while wanted:
            node = producer.get(wanted.pop())
            if node is not None and id(node) not in live:
                live.add(id(node))
                wanted.extend(node.input)
        kept = [n for n in nodes if id(n) in live]
        used = {i for n in kept for i in n.input}
        initializers = [i for i in self.graph.initializer if i.name in used]
        del self.graph.node[:]
        self.graph.node.extend(kept)
        del self.graph.initializer[:]
        self.graph.initializer.extend(initializers)


def _projection(g: _Graph, name: str) -> tuple[str, _Array, _Array] | None:
    """``Transpose(Reshape(Add(MatMul(x, W), b)))``, one head split: (x, W, b)."""
    transpose = g.made_by(name, "Transpose")
    reshape = transpose and g.made_by(transpose.input[0], "Reshape")
    add = reshape and g.made_by(reshape.input[0], "Add")
    matmul = add and g.made_by(add.input[0], "MatMul")
    if not matmul:
        return None
    weight, bias = g.weight(matmul.input[1]), g.array(add.input[1])
    if weight is None or bias is None or weight.ndim != 2 or bias.shape != (weight.shape[1],):
        return None
    return matmul.input[0], weight, bias.astype(np.float32)


def _fuse_attention(g: _Graph, num_heads: int, mask_input: str) -> int:
    if mask_input not in g.inputs:
        return 0
    fused = 0
    mask = "attention_mask_int32"
    for softmax in [n for n in g.graph.node if n.op_type == "Softmax"]:
        add = g.made_by(softmax.input[0], "Add")
        scores = add and g.made_by(add.input[0], "MatMul")
        if not scores:
            continue
        # softmax -> [Where(IsNaN(p), 0, p)] -> MatMul(p, V) -> Transpose -> Reshape
        probs = softmax.output[0]
        guard = _nan_guard(g, probs)
        if guard is not None:
            probs = guard
        context = g.only_consumer(probs, "MatMul")
        merge = context and g.only_consumer(context.output[0], "Transpose")
        out = merge and g.only_consumer(merge.output[0], "Reshape")
        q_scale = g.made_by(scores.input[0], "Mul")
        k_scale = g.made_by(scores.input[1], "Mul")
        if not (out and q_scale and k_scale) or context.input[0] != probs:
            continue
        qs, ks = g.scalar(q_scale.input[1]), g.scalar(k_scale.input[1])
        q = _projection(g, q_scale.input[0])
        k = _projection(g, _key_heads(g, k_scale.input[0]))
        v = _projection(g, context.input[1])
        if qs is None or ks is None or not (q and k and v) or not q[0] == k[0] == v[0]:
            continue
        hidden = q[1].shape[1]
        scale = float(np.float32(qs) * np.float32(ks))
        if hidden % num_heads or not np.isclose(scale, (hidden // num_heads) ** -0.5, rtol=1e-5):
            continue  # not this head count: leave the layer as it is
        weights = f"fused_qkv_weight_{fused}"
        bias = f"fused_qkv_bias_{fused}"
        g.add_initializer(weights, np.concatenate([q[1], k[1], v[1]], axis=1))
        g.add_initializer(bias, np.concatenate([q[2], k[2], v[2]]))
        if not fused:
            g.prelude.append(_node("Cast", [mask_input], mask, "fused_mask", to=_INT32))
        g.replacing[out.output[0]] = _node(
            "Attention",
            [q[0], weights, bias, mask],
            out.output[0],
            f"fused_attention_{fused}",
            domain=_MS,
            num_heads=num_heads,
            scale=scale,
        )
        fused += 1
    return fused


def _nan_guard(g: _Graph, probs: str) -> str | None:
    """The output of ``Where(IsNaN(probs), 0, probs)`` if that is all ``probs`` feeds."""
    users = g.consumers.get(probs, [])
    isnan = next((n for n in users if n.op_type == "IsNaN"), None)
    where = isnan and g.only_consumer(isnan.output[0], "Where")
    if not where or len(users) != 2 or where not in users:
        return None
    if where.input[2] != probs or g.scalar(where.input[1]) != 0.0:
        return None
    return str(where.output[0])


def _key_heads(g: _Graph, name: str) -> str:
    """Walk up the exporter's K transpose (Reshape, Transpose, Reshape) to the
    per-head split that :func:`_projection` recognises."""
    for _ in range(3):
        if _projection(g, name):
            return name
        node = g.producer.get(name)
        if node is None or node.op_type not in ("Reshape", "Transpose"):
            return name
        name = node.input[0]
    return name


def _fuse_gelu(g: _Graph) -> int:
    fused = 0
    for div in [n for n in g.graph.node if n.op_type == "Div"]:
        x = div.input[0]
        root2 = g.scalar(div.input[1])
        erf = g.only_consumer(div.output[0], "Erf")
        one = erf and g.only_consumer(erf.output[0], "Add")
        half = one and g.only_consumer(one.output[0], "Mul")
        out = half and g.only_consumer(half.output[0], "Mul")
        if root2 is None or not np.isclose(root2, 2**0.5) or not out or x not in out.input:
            continue
        constants = [g.scalar(i) for i in (*one.input, *half.input)]
        if sorted(c for c in constants if c is not None) != [0.5, 1.0]:
            continue
        biased = g.made_by(x, "Add")
        bias = biased and g.array(biased.input[1])
        if biased and bias is not None and bias.ndim == 1 and len(g.consumers[x]) == 2:
            node = _node(
                "BiasGelu",
                [biased.input[0], biased.input[1]],
                out.output[0],
                f"fused_gelu_{fused}",
                domain=_MS,
            )
        else:
            node = _node("Gelu", [x], out.output[0], f"fused_gelu_{fused}", domain=_MS)
        g.replacing[out.output[0]] = node
        fused += 1
    return fused
