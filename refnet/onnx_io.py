"""AlexNet between ONNX graphs and refnet checkpoints (`refnet import`, `refnet export`).

An ONNX graph imports when it is a chain of AlexNet's shape, in either order of LRN and max-pool
in layers 1-2 (refnet.model ORDERS):

    Conv 96 11x11/4 -> Relu -> {LRN, MaxPool 3/2} -> Conv 256 5x5 p2 (group 1 or 2) -> Relu ->
    {LRN, MaxPool} -> Conv 384 3x3 p1 -> Relu -> Conv 384 3x3 p1 (group g) -> Relu ->
    Conv 256 3x3 p1 (group g) -> Relu -> MaxPool 3/2 -> Flatten or Reshape -> fc6 4096 -> Relu ->
    [Dropout] -> fc7 4096 -> Relu -> [Dropout] -> fc8 -> [Softmax]

with each fully connected layer a Gemm or a MatMul followed by Add. Anything else is refused with
one message naming the first node that does not fit and what it holds.

Conventions converted, so that refnet's forward gives the graph's logits:
  LRN      ONNX (like Caffe, PyTorch, cuDNN) computes x / (bias + alpha/size * sum x^2)^beta; the
           paper's (and refnet's) is x / (k + alpha * sum x^2)^beta: k = bias, alpha = alpha/size.
           A constant read from the graph is taken as the decimal its float32 was written from
           (Caffe's alpha 0.0001 stays 0.0001, then /5 = 2e-5), so import(export(x)) is x.
  Dropout  ONNX's (and Caffe's) scales by 1/(1-p) while training and is the identity at inference;
           refnet's (the paper's) multiplies by (1-p) at test time. So the weights of the layer
           after each dropout are divided by (1-p) on import and multiplied by it on export (for
           p = 0.5 both are exact: a power of two).
  Pooling  refnet rounds output sizes down. A graph that rounds up (ceil_mode, or Caffe's extra
           bottom/right padding, as the model zoo's bvlcalexnet does at its declared 224x224) is
           imported for the smallest input size >= the declared one at which fc6 gets its inputs
           and every pooling of the graph gives refnet's sizes: 227 for bvlcalexnet, Caffe's own
           deploy size, where both roundings agree. The importer says so.
The graph's output is the logits; a final Softmax is dropped (refnet eval/predict apply their own).

Export writes the same chain (Conv, Relu, LRN, MaxPool, Flatten, Gemm, Dropout) with logits as the
output, and refnet's records (network, preprocessing, classes) as metadata_props, which import
reads back, so the round trip keeps them; preprocessing is not part of ONNX and a graph from
elsewhere needs it given (`refnet import --bgr --mean 104,117,123`).
"""

import json

import numpy as np

from .model import LRNConstants, build_layers, network_config

SUPPORTED_OPS = ("Conv", "Relu", "LRN", "MaxPool", "Gemm", "MatMul", "Add", "Reshape", "Flatten", "Dropout",
                 "Softmax", "Constant")  # fmt: skip
MIN_OPSET = 9
META_NETWORK, META_PREPROCESSING, META_CLASSES = "refnet.network", "refnet.preprocessing", "refnet.classes"


class OnnxError(ValueError):
    """A file that is not an ONNX AlexNet refnet can represent; the message names the first problem."""


def decimal_float32(value):
    """The shortest decimal that rounds to float32(value), as a Python float (1e-4, not 9.99999974e-05)."""
    return float(str(np.float32(value)))


def onnx_lrn_attributes(lrn):
    """refnet's LRNConstants -> ONNX LRN attributes (alpha multiplied by size)."""
    return {"size": lrn.size, "alpha": lrn.alpha * lrn.size, "beta": lrn.beta, "bias": lrn.k}


def lrn_from_onnx(size, alpha, beta, bias):
    """ONNX LRN attributes -> refnet's LRNConstants (alpha divided by size)."""
    return LRNConstants(int(size), decimal_float32(alpha) / int(size), decimal_float32(beta), decimal_float32(bias))


def dropout_fold_factor(p):
    """What the weights of the layer after a dropout of probability p are multiplied by on import."""
    return 1.0 / (1.0 - p)


# ---------------------------------------------------------------------------------------- reading


def _onnx():
    """The onnx package, or OnnxError saying how to install it (it is an optional extra)."""
    try:
        import onnx
    except ImportError:
        raise OnnxError("the onnx package is not installed: pip install -e '.[onnx]' (or pip install onnx)") from None
    return onnx


def load_model(path):
    """The parsed ONNX ModelProto, or OnnxError saying why the file is not one."""
    onnx = _onnx()
    from google.protobuf.message import DecodeError

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise OnnxError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        model = onnx.ModelProto.FromString(data)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise OnnxError(f"{path}: not an ONNX model (it does not parse: {exc})") from None
    if not model.graph.node or not model.opset_import:
        raise OnnxError(f"{path}: not an ONNX model (no graph nodes or no opset; truncated or another format?)")
    return model


class _Graph:
    """The graph's initializers and constants by name, and a chain walker."""

    def __init__(self, model):
        from onnx import numpy_helper

        self.model = model
        self.values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)

    def constant(self, node, index, what):
        if index >= len(node.input) or node.input[index] not in self.values:
            raise OnnxError(f"{describe(node)}: its {what} (input {index}) is not a constant of the graph")
        return self.values[node.input[index]]


def describe(node):
    return f"node {node.name or '(unnamed)'!r} ({node.op_type})"


def _attributes(node):
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _tokens(graph, path):
    """The graph's chain as [(kind, node, data)] with kind conv/relu/lrn/maxpool/flatten/linear/
    dropout/softmax, following the one activation tensor from the graph input to its output."""
    from onnx import numpy_helper

    inputs = [i for i in graph.model.graph.input if i.name not in graph.values]
    if len(inputs) != 1:
        raise OnnxError(f"{path}: expected one image input, got {len(inputs)} ({', '.join(i.name for i in inputs)})")
    current = inputs[0].name
    tokens, pending_matmul = [], None
    for node in graph.model.graph.node:
        if node.op_type not in SUPPORTED_OPS:
            raise OnnxError(f"{describe(node)} is not supported: refnet's AlexNet holds only "
                            f"{', '.join(SUPPORTED_OPS)}")  # fmt: skip
        attrs = _attributes(node)
        if node.op_type == "Constant":
            if "value" not in attrs:
                raise OnnxError(f"{describe(node)}: only tensor constants ('value') are supported")
            graph.values[node.output[0]] = numpy_helper.to_array(attrs["value"])
            continue
        if not node.input or node.input[0] != current:
            raise OnnxError(f"{describe(node)} does not continue the chain: its input {node.input[:1]} is not "
                            f"{current!r} (refnet's AlexNet is one chain of layers)")  # fmt: skip
        current = node.output[0]
        kind, data = _token(graph, node, attrs)
        if kind == "matmul":
            pending_matmul = (node, data)
            continue
        if node.op_type == "Add":
            if pending_matmul is None:
                raise OnnxError(f"{describe(node)}: an Add that does not follow a MatMul is not part of AlexNet")
            matmul, weight = pending_matmul
            bias = graph.constant(node, 1, "bias").astype(np.float32).reshape(-1)
            kind, node, data = "linear", matmul, (np.ascontiguousarray(weight.T), bias)
            pending_matmul = None
        elif pending_matmul is not None:
            raise OnnxError(f"{describe(pending_matmul[0])}: a MatMul without its bias Add is not part of AlexNet")
        tokens.append((kind, node, data))
    if pending_matmul is not None:
        raise OnnxError(f"{describe(pending_matmul[0])}: a MatMul without its bias Add is not part of AlexNet")
    outputs = [o.name for o in graph.model.graph.output]
    if current not in outputs:
        raise OnnxError(f"{path}: the chain ends in {current!r}, which is not a graph output ({outputs})")
    return inputs[0], tokens


def _token(graph, node, attrs):
    op = node.op_type
    if op == "Conv":
        weight = graph.constant(node, 1, "weight").astype(np.float32)
        bias = (graph.constant(node, 2, "bias").astype(np.float32) if len(node.input) > 2
                else np.zeros(weight.shape[0], np.float32))  # fmt: skip
        kernel = list(attrs.get("kernel_shape", weight.shape[2:]))
        strides, pads = list(attrs.get("strides", [1, 1])), list(attrs.get("pads", [0, 0, 0, 0]))
        if list(attrs.get("dilations", [1, 1])) != [1, 1] or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise OnnxError(f"{describe(node)}: dilations or auto_pad are not supported")
        if weight.ndim != 4 or kernel[0] != kernel[1] or strides[0] != strides[1] or len(set(pads)) != 1:
            raise OnnxError(f"{describe(node)}: expected a square kernel, equal strides and equal pads, got kernel "
                            f"{kernel}, strides {strides}, pads {pads}")  # fmt: skip
        return "conv", dict(weight=weight, bias=bias, size=kernel[0], stride=strides[0], pad=pads[0],
                            groups=int(attrs.get("group", 1)))  # fmt: skip
    if op == "Relu":
        return "relu", None
    if op == "LRN":
        size = int(attrs["size"])
        if size % 2 == 0:
            raise OnnxError(f"{describe(node)}: size {size} is even; refnet's LRN window is symmetric (odd sizes)")
        return "lrn", lrn_from_onnx(size, attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0))
    if op == "MaxPool":
        kernel, strides = list(attrs.get("kernel_shape", [])), list(attrs.get("strides", [1, 1]))
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if len(node.output) > 1 and node.output[1]:
            raise OnnxError(f"{describe(node)}: the Indices output is not supported")
        if kernel != [3, 3] or strides != [2, 2] or pads[:2] != [0, 0] or list(attrs.get("dilations", [1, 1])) != [1, 1]:
            raise OnnxError(f"{describe(node)}: expected AlexNet's overlapping max-pool (3x3, stride 2, no top/left "
                            f"padding), got kernel {kernel}, strides {strides}, pads {pads}")  # fmt: skip
        return "maxpool", dict(pads_end=pads[2:], ceil=bool(attrs.get("ceil_mode", 0)))
    if op in ("Flatten", "Reshape"):
        if op == "Flatten" and int(attrs.get("axis", 1)) != 1:
            raise OnnxError(f"{describe(node)}: expected axis 1 (N, C*H*W), got {attrs['axis']}")
        shape = [int(v) for v in graph.constant(node, 1, "shape")] if op == "Reshape" else None
        if shape is not None and len(shape) != 2:
            raise OnnxError(f"{describe(node)}: expected a reshape to (N, features), got shape {shape}")
        return "flatten", shape
    if op == "Gemm":
        weight = graph.constant(node, 1, "weight").astype(np.float32)
        if attrs.get("transA", 0):
            raise OnnxError(f"{describe(node)}: transA=1 is not supported")
        weight = weight if attrs.get("transB", 0) else weight.T
        bias = (graph.constant(node, 2, "bias").astype(np.float32).reshape(-1) if len(node.input) > 2
                else np.zeros(weight.shape[0], np.float32))  # fmt: skip
        weight = weight * np.float32(attrs.get("alpha", 1.0))
        bias = bias * np.float32(attrs.get("beta", 1.0))
        return "linear", (np.ascontiguousarray(weight, dtype=np.float32), bias.astype(np.float32))
    if op == "MatMul":
        return "matmul", graph.constant(node, 1, "weight").astype(np.float32)
    if op == "Add":
        return "add", None
    if op == "Dropout":
        ratio = attrs.get("ratio", 0.5)
        if len(node.input) > 1 and node.input[1]:
            ratio = graph.constant(node, 1, "ratio")
            if ratio.size != 1:
                raise OnnxError(f"{describe(node)}: expected a scalar ratio, got shape {ratio.shape}")
            ratio = float(ratio.reshape(-1)[0])
        if len(node.input) > 2 and node.input[2] and bool(graph.constant(node, 2, "training_mode").any()):
            raise OnnxError(f"{describe(node)}: training_mode is true; only inference graphs are supported")
        return "dropout", decimal_float32(ratio)
    return "softmax", None


def layer_order(kinds):
    """The order of a chain of layer kinds: LRN right after conv1's ReLU is the paper's."""
    return "lrn-pool" if kinds[2:3] == ["lrn"] else "pool-lrn"


def _template(order, dropout):
    """The layer kinds refnet builds for `order`, a flatten before fc6, and dropouts when p > 0."""
    layers = network_config("seed", 10, 227, 0.5 if dropout else 0.0, order)["layers"]
    kinds = []
    for name in layers:
        kind = {"conv": "conv", "relu": "relu", "pool": "maxpool", "norm": "lrn", "fc": "linear",
                "drop": "dropout"}[name.rstrip("0123456789")]  # fmt: skip
        if name == "fc6":
            kinds.append(("flatten", "flatten"))
        kinds.append((name, kind))
    return kinds


def _pool_out(size, pads_end, ceil):
    extent = size + max(pads_end) - 3
    return (-(-extent // 2) if ceil else extent // 2) + 1


def _input_size(declared, pools, fc6_inputs, path):
    """The input size refnet runs the graph at (see the module docstring) and a note if not `declared`."""
    for size in range(max(declared, 67), declared + 64):
        layers = {layer.name: layer for layer in build_layers("seed", 10, size, 0.0)}
        if layers["fc6"].in_shape[0] != fc6_inputs:
            continue
        if all(_pool_out(layers[name].in_shape[1], *rule) == layers[name].out_shape[1] for name, rule in pools.items()):
            note = None if size == declared else (
                f"imported for input {size}x{size}: the graph declares {declared}x{declared}, where its pooling "
                f"rounds up (Caffe's ceil mode) to reach fc6's {fc6_inputs} inputs; refnet's rounds down, and at "
                f"{size} both agree")  # fmt: skip
            return size, note
    raise OnnxError(f"{path}: no input size from the declared {declared} on gives fc6 its {fc6_inputs} inputs "
                    f"with refnet's pooling")  # fmt: skip


def _declared_size(image_input, path):
    dims = [d.dim_value if d.HasField("dim_value") else None for d in image_input.type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] != 3 or dims[2] is None or dims[2] != dims[3]:
        raise OnnxError(f"{path}: input {image_input.name!r} has shape {dims}, expected (N, 3, S, S)")
    return dims[2]


def read_alexnet(path):
    """An ONNX file -> (network record, params {name: float32}, metadata {key: value}, notes [str]).

    OnnxError (a one-line message) for anything refnet's AlexNet cannot hold."""
    try:
        return _read_alexnet(path)
    except (KeyError, IndexError, TypeError, AttributeError) as exc:  # a malformed graph's missing pieces
        raise OnnxError(f"{path}: malformed graph ({type(exc).__name__}: {exc})") from None


def _read_alexnet(path):
    model = load_model(path)
    graph = _Graph(model)
    image_input, tokens = _tokens(graph, path)
    declared = _declared_size(image_input, path)
    if tokens and tokens[-1][0] == "softmax":
        tokens = tokens[:-1]
    kinds = [kind for kind, _, _ in tokens]
    order = layer_order(kinds)
    ratios = [data for kind, _, data in tokens if kind == "dropout"]
    template = _template(order, bool(ratios))
    for (name, want), (kind, node, _) in zip(template, tokens):
        if kind != want:
            raise OnnxError(f"{describe(node)} holds a {kind} where refnet's AlexNet ({order}) has {name} ({want})")
    if len(tokens) != len(template):
        where = (f"{describe(tokens[len(template)][1])} follows fc8" if len(tokens) > len(template)
                 else f"the graph ends before {template[len(tokens)][0]}")  # fmt: skip
        raise OnnxError(f"{path}: {where}; refnet's AlexNet ({order}) has {len(template)} layers")
    named = {name: (node, data) for (name, _), (_, node, data) in zip(template, tokens)}

    # one set of LRN constants, one dropout probability, one group count (refnet's variants)
    lrn = named["norm1"][1]
    if named["norm2"][1] != lrn:
        raise OnnxError(f"{describe(named['norm2'][0])}: LRN constants {named['norm2'][1]} differ from norm1's {lrn}")
    p = ratios[0] if ratios else 0.0
    if any(r != p for r in ratios) or not 0.0 <= p < 1.0:
        raise OnnxError(f"{describe(named['drop7'][0])}: dropout ratios {ratios}; refnet needs one ratio in [0, 1)")
    groups = named["conv2"][1]["groups"]
    variant = {1: "seed", 2: "paper"}.get(groups)
    if variant is None:
        raise OnnxError(f"{describe(named['conv2'][0])}: group {groups}; refnet's AlexNet has 1 or 2")

    fc6_inputs = named["fc6"][1][0].shape[1]
    flatten = named["flatten"][1]
    if flatten is not None and flatten[1] not in (-1, fc6_inputs):
        raise OnnxError(f"{describe(named['flatten'][0])}: reshapes to {flatten}, fc6 takes {fc6_inputs} features")
    pools = {name: (d["pads_end"], d["ceil"]) for name, (_, d) in named.items() if name.startswith("pool")}
    input_size, note = _input_size(declared, pools, fc6_inputs, path)
    num_classes = named["fc8"][1][0].shape[0]
    network = network_config(variant, num_classes, input_size, p, order, lrn)
    net_layers = {layer.name: layer for layer in network_layers(network)}
    params = {}
    for name, (node, data) in named.items():
        layer = net_layers.get(name)
        if layer is None or not layer.has_params:
            continue
        weight, bias = (data["weight"], data["bias"]) if layer.kind == "conv" else data
        if layer.kind == "conv":
            got = (data["size"], data["stride"], data["pad"], data["groups"])
            want = (layer.size, layer.stride, layer.pad, layer.groups)
            if got != want:
                raise OnnxError(f"{describe(node)}: kernel, stride, pad, group {got}; refnet's {name} has {want}")
        if name in ("fc7", "fc8") and p > 0:
            weight = (weight * np.float32(dropout_fold_factor(p))).astype(np.float32)
        for pname, value in ((f"{name}.weight", weight), (f"{name}.bias", bias)):
            want = layer.param_shapes[pname]
            if tuple(value.shape) != want:
                raise OnnxError(f"{describe(node)}: {pname} has shape {tuple(value.shape)}, refnet's {name} "
                                f"needs {want}")  # fmt: skip
            params[pname] = np.ascontiguousarray(value, dtype=np.float32)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    network = _exact_constants(network, metadata)
    return network, params, metadata, [note] if note else []


def network_layers(network):
    """The Layer specs of a network record."""
    settings = {key: network[key] for key in ("variant", "num_classes", "input_size", "dropout", "order", "lrn")}
    return build_layers(**settings)


def _exact_constants(network, metadata):
    """The LRN constants and dropout exactly as an exporting refnet recorded them, when the graph
    holds what those export to (so a round trip is exact); else the graph's."""
    try:
        recorded = json.loads(metadata[META_NETWORK])
        lrn = LRNConstants.from_dict(recorded["lrn"])
        dropout = float(recorded["dropout"])
    except (KeyError, ValueError, TypeError):
        return network
    mine = LRNConstants.from_dict(network["lrn"])
    theirs = lrn_from_onnx(**onnx_lrn_attributes(lrn))
    if theirs == mine and decimal_float32(dropout) == network["dropout"]:
        return dict(network, lrn=lrn.to_dict(), dropout=dropout)
    return network


# ---------------------------------------------------------------------------------------- writing


def alexnet_to_onnx(network, params, *, opset, preprocessing=None, classes=None):
    """An onnx ModelProto computing the logits of the network (record) with `params` (host float32)."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    layers = network_layers(network)
    p = network["dropout"]
    nodes, initializers, current = [], [], "data"

    def const(name, array):
        initializers.append(numpy_helper.from_array(np.require(array, requirements="C"), name))  # keeps 0-d 0-d
        return name

    for layer in layers:
        out = layer.name if layer.name != "fc8" else "logits"
        if layer.kind == "conv":
            w, b = const(f"{layer.name}.weight", params[f"{layer.name}.weight"]), const(f"{layer.name}.bias", params[f"{layer.name}.bias"])
            nodes.append(helper.make_node("Conv", [current, w, b], [out], name=layer.name, kernel_shape=[layer.size] * 2,
                                          strides=[layer.stride] * 2, pads=[layer.pad] * 4, group=layer.groups))  # fmt: skip
        elif layer.kind == "linear":
            weight = params[f"{layer.name}.weight"]
            if layer.name in ("fc7", "fc8") and p > 0:
                weight = (weight / np.float32(dropout_fold_factor(p))).astype(np.float32)
            if layer.name == "fc6":
                nodes.append(helper.make_node("Flatten", [current], ["flatten"], name="flatten", axis=1))
                current = "flatten"
            w, b = const(f"{layer.name}.weight", weight), const(f"{layer.name}.bias", params[f"{layer.name}.bias"])
            nodes.append(helper.make_node("Gemm", [current, w, b], [out], name=layer.name, transB=1))
        elif layer.kind == "relu":
            nodes.append(helper.make_node("Relu", [current], [out], name=layer.name))
        elif layer.kind == "maxpool":
            nodes.append(helper.make_node("MaxPool", [current], [out], name=layer.name, kernel_shape=[3, 3], strides=[2, 2]))
        elif layer.kind == "lrn":
            nodes.append(helper.make_node("LRN", [current], [out], name=layer.name, **onnx_lrn_attributes(layer.lrn)))
        elif layer.kind == "dropout":
            if opset >= 12:
                ratio = const(f"{layer.name}.ratio", np.array(p, dtype=np.float32))
                nodes.append(helper.make_node("Dropout", [current, ratio], [out], name=layer.name))
            else:
                nodes.append(helper.make_node("Dropout", [current], [out], name=layer.name, ratio=p))
        current = out
    size = network["input_size"]
    graph = helper.make_graph(
        nodes, "refnet_alexnet",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", network["num_classes"]])],
        initializers,
    )  # fmt: skip
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="refnet",
                              ir_version=helper.find_min_ir_version_for(opsets))  # fmt: skip
    meta = {META_NETWORK: network, META_PREPROCESSING: preprocessing, META_CLASSES: classes}
    helper.set_model_props(model, {key: json.dumps(value, sort_keys=True) for key, value in meta.items() if value})
    onnx.checker.check_model(model)
    return model


def opset_range():
    """(lowest, highest) opset `refnet export` writes."""
    onnx = _onnx()

    return MIN_OPSET, onnx.defs.onnx_opset_version()

