"""`refnet import` / `refnet export` against onnxruntime, on random-weight AlexNet graphs built with
onnx.helper (nothing downloaded).

The graphs run at refnet's smallest input (67, pool5 1x1, fc6 256 -> 4096) with 10 classes and a
batch of 2, except one at the model zoo's bvlcalexnet shape (declared 224x224, rounded-up pooling,
1000 classes, batch 1). Weights are He-scaled and inputs at Caffe's 0-255 pixel scale, so LRN's
alpha * sum x^2 is comparable to k (checked) and the conversions are visible in the logits. The
comparison: max |refnet - onnxruntime| over the logits, relative to the largest |logit|, <= 1e-5.
"""

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import refnet  # noqa: E402
from refnet import onnx_io  # noqa: E402
from refnet.checkpoint import load_checkpoint  # noqa: E402
from refnet.cli import main  # noqa: E402
from refnet.evaluate import network_from_checkpoint  # noqa: E402

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SIZE, CLASSES, BATCH = 67, 10, 2
TOLERANCE = 1e-5
CAFFE_LRN = dict(size=5, alpha=1e-4, beta=0.75)  # ONNX/Caffe alpha: divided by size in the formula


def build_graph(order="lrn-pool", groups=2, bias=1.0, opset=12, size=SIZE, classes=CLASSES, dropout=0.5,
                fc="gemm", flatten="flatten", pool_pads=None, seed=0, softmax=True, lrn=CAFFE_LRN):
    """A random-weight AlexNet ModelProto (He-scaled weights, biases 0.1)."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    current = "data"

    def const(name, array):
        inits.append(numpy_helper.from_array(np.require(array, requirements="C"), name))
        return name

    def he(shape, fan_in):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))).astype(np.float32)

    def add(op, inputs, name, **attrs):
        nonlocal current
        nodes.append(helper.make_node(op, [current, *inputs], [name], name=name, **attrs))
        current = name

    def conv(name, cin, cout, k, stride, pad, g):
        w = const(f"{name}_w", he((cout, cin // g, k, k), cin // g * k * k))
        b = const(f"{name}_b", np.full(cout, 0.1, np.float32))
        add("Conv", [w, b], name, kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4, group=g)
        add("Relu", [], f"{name}_relu")

    def pool(name):
        extra = {} if pool_pads is None else {"pads": [0, 0, *pool_pads]}
        add("MaxPool", [], name, kernel_shape=[3, 3], strides=[2, 2], **extra)

    def norm(name):
        add("LRN", [], name, bias=bias, **lrn)

    def stage(index):
        if order == "pool-lrn":
            pool(f"pool{index}")
            norm(f"norm{index}")
        else:
            norm(f"norm{index}")
            pool(f"pool{index}")

    def linear(name, fin, fout, relu=True):
        w = he((fout, fin), fin)
        if fc == "gemm":
            add("Gemm", [const(f"{name}_w", w), const(f"{name}_b", np.full(fout, 0.1, np.float32))], name, transB=1)
        else:
            add("MatMul", [const(f"{name}_w", np.ascontiguousarray(w.T))], f"{name}_mm")
            add("Add", [const(f"{name}_b", np.full(fout, 0.1, np.float32))], name)
        if relu:
            add("Relu", [], f"{name}_relu")

    def drop(name):
        if not dropout:
            return
        if opset >= 12:
            add("Dropout", [const(f"{name}_ratio", np.array(dropout, np.float32))], name)
        else:
            add("Dropout", [], name, ratio=dropout)

    conv("conv1", 3, 96, 11, 4, 0, 1)
    stage(1)
    conv("conv2", 96, 256, 5, 1, 2, groups)
    stage(2)
    conv("conv3", 256, 384, 3, 1, 1, 1)
    conv("conv4", 384, 384, 3, 1, 1, groups)
    conv("conv5", 384, 256, 3, 1, 1, groups)
    pool("pool5")
    fc6_in = refnet.model.build_layers(input_size=227 if size == 224 else size)[15].in_shape[0]
    if flatten == "flatten":
        add("Flatten", [], "flat", axis=1)
    else:
        add("Reshape", [const("flat_shape", np.array([1 if flatten == "reshape1" else -1, fc6_in], np.int64))], "flat")
    linear("fc6", fc6_in, 4096)
    drop("drop6")
    linear("fc7", 4096, 4096)
    drop("drop7")
    linear("fc8", 4096, classes, relu=False)
    if softmax:
        add("Softmax", [], "prob", axis=1)
    graph = helper.make_graph(nodes, "alexnet", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [None, 3, size, size])],
                              [helper.make_tensor_value_info(current, TensorProto.FLOAT, [None, classes])], inits)  # fmt: skip
    opsets = [helper.make_opsetid("", opset)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))


def logits_model(model):
    """The same graph with the Softmax removed, so onnxruntime returns the logits."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    if graph.node[-1].op_type == "Softmax":
        last = graph.node[-1]
        graph.output[0].name = last.input[0]
        graph.node.remove(last)
    return model


def onnxruntime_logits(model, x):
    session = ort.InferenceSession(logits_model(model).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def pixels(n=BATCH, size=SIZE, seed=1):
    """Caffe's scale: 0-255 pixels minus a mean near 117."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 255, (n, 3, size, size)) - 117.0).astype(np.float32)


def relative_error(got, want):
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


def imported_net(path):
    network, params, _, _ = onnx_io.read_alexnet(str(path))
    net = refnet.AlexNet.from_network_config(network)
    net.load_state_dict(params)
    return net


def saved(tmp_path, model, name="m.onnx"):
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def lrn_load(net, x):
    """alpha * sum x^2 over norm1's window, its median over the map, against k (relu1's output)."""
    p, layer = net.params, net.layers[0]
    h = refnet.ops.relu_forward(refnet.ops.conv2d_forward(x, p["conv1.weight"], p["conv1.bias"], layer.stride, 0, 1))
    if net.order == "pool-lrn":
        h, _ = refnet.ops.maxpool2d_forward(h, 3, 2)
    h64 = h.astype(np.float64) ** 2
    sums = sum(np.roll(h64, s, axis=1) for s in range(-2, 3))  # interior channels' windows
    return float(np.median(net.lrn.alpha * sums[:, 2:-2])), net.lrn.k


# ---------------------------------------------------------------------------------------- import


# A half fraction of the 2^4 combinations of order, groups, LRN bias and opset (the opset set by
# the parity of the other three): every pair of settings is met in both of its levels, at half
# the time of all sixteen.
HALF_FRACTION = [(order, groups, bias, 12 if (i + j + k) % 2 else 9)
                 for i, order in enumerate(("pool-lrn", "lrn-pool")) for j, groups in enumerate((1, 2))
                 for k, bias in enumerate((1.0, 2.0))]  # fmt: skip


@pytest.mark.parametrize("order, groups, bias, opset", HALF_FRACTION)
def test_imported_logits_match_onnxruntime(tmp_path, order, groups, bias, opset):
    fc, flatten = ("gemm", "flatten") if opset == 12 else ("matmul", "reshape")
    model = build_graph(order, groups, bias, opset, fc=fc, flatten=flatten, seed=groups + 2 * opset)
    net = imported_net(saved(tmp_path, model))
    assert (net.order, net.layers[4].groups, net.lrn.k, net.lrn.alpha) == (order, groups, bias, 1e-4 / 5)
    x = pixels()
    load, k = lrn_load(net, x)
    assert 0.1 * k < load < 10 * k, f"alpha * sum x^2 = {load:g} vs k = {k:g}: LRN would not matter"
    assert relative_error(net.forward(x), onnxruntime_logits(model, x)) <= TOLERANCE


def test_the_comparison_is_sharp(tmp_path, monkeypatch):
    """A swapped LRN/pool order, a missed alpha/size conversion and a missed dropout factor each
    fail the tolerance by orders of magnitude."""
    model = build_graph("lrn-pool", 2, 1.0, 12)
    path = saved(tmp_path, model)
    x = pixels()
    want = onnxruntime_logits(model, x)
    network, params, _, _ = onnx_io.read_alexnet(str(path))
    assert relative_error(imported_net(path).forward(x), want) <= TOLERANCE

    swapped = refnet.AlexNet(**{k: network[k] for k in ("variant", "num_classes", "input_size", "dropout", "lrn")},
                             order="pool-lrn")  # fmt: skip
    swapped.load_state_dict(params)
    errors = {"swapped order": relative_error(swapped.forward(x), want)}

    with monkeypatch.context() as m:
        m.setattr(onnx_io, "lrn_from_onnx", lambda size, alpha, beta, bias: refnet.model.LRNConstants(
            int(size), onnx_io.decimal_float32(alpha), beta, bias))  # alpha left at ONNX's, not / size
        errors["alpha not divided by size"] = relative_error(imported_net(path).forward(x), want)
    with monkeypatch.context() as m:
        m.setattr(onnx_io, "dropout_fold_factor", lambda p: 1.0)
        errors["dropout factor missed"] = relative_error(imported_net(path).forward(x), want)
    assert all(error > 100 * TOLERANCE for error in errors.values()), errors


def test_model_zoo_shape_imports_for_227(tmp_path, capsys):
    """bvlcalexnet's shape: declared 224x224, pooling padded bottom/right (Caffe's rounding up),
    a Reshape to (1, 9216), 1000 classes, Softmax. It imports for 227, says so, and matches
    onnxruntime running the same graph at 227 (where rounding up and down agree)."""
    model = build_graph("lrn-pool", 2, 1.0, 9, size=224, classes=1000, flatten="reshape1", pool_pads=[1, 1])
    path = saved(tmp_path, model)
    out = tmp_path / "zoo.h5"
    assert main(["import", str(path), "--checkpoint-out", str(out), "--bgr", "--mean", "104,117,123"]) == 0
    captured = capsys.readouterr()
    assert "imported for input 227x227: the graph declares 224x224" in captured.err
    ckpt = load_checkpoint(out)
    assert ckpt.network["input_size"] == 227 and ckpt.preprocessing["channels"] == "BGR"
    assert ckpt.preprocessing["mean"] == [104.0, 117.0, 123.0]
    at_227 = onnx.ModelProto.FromString(model.SerializeToString())
    for d in (2, 3):
        at_227.graph.input[0].type.tensor_type.shape.dim[d].dim_value = 227
    x = pixels(1, 227)
    assert relative_error(network_from_checkpoint(ckpt).forward(x), onnxruntime_logits(at_227, x)) <= TOLERANCE


# ---------------------------------------------------------------------------------------- export


def random_checkpoint(tmp_path, variant, order, lrn=None, name="net.h5"):
    """A refnet checkpoint with He-scaled random weights, written through `refnet import` of a
    graph, then given refnet's own LRN constants and preprocessing by hand."""
    from refnet.checkpoint import Checkpoint, save_checkpoint

    net = refnet.AlexNet(CLASSES, variant, SIZE, order=order, lrn=lrn, seed=3)
    rng = np.random.default_rng(5)
    params = {}
    for name_, shape in net.param_shapes.items():
        fan_in = int(np.prod(shape[1:])) if name_.endswith("weight") else 1
        params[name_] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in) if fan_in > 1
                         else np.full(shape, 0.1)).astype(np.float32)  # fmt: skip
    config = {"variant": variant, "num_classes": CLASSES, "input_size": SIZE, "dropout": 0.5, "seed": 3,
              "image_size": 80}  # fmt: skip
    path = tmp_path / name
    save_checkpoint(path, Checkpoint(params=params, momentum=params, step=0, epoch=0, batch_in_epoch=0, config=config,
                                     network=net.network_config(), classes=[f"n{i:08d}" for i in range(CLASSES)],
                                     mean_image=np.full((80, 80, 3), 117.0, np.float32),
                                     preprocessing={"channels": "BGR", "pixel_max": 1.0, "mean": "image", "crop": SIZE,
                                                    "resize": 80}))  # fmt: skip
    return path


@pytest.mark.parametrize("variant, order, opset", [("seed", "pool-lrn", 9), ("paper", "lrn-pool", 12)])
def test_exported_logits_match_onnxruntime(tmp_path, capsys, variant, order, opset):
    ckpt_path = random_checkpoint(tmp_path, variant, order)
    out = tmp_path / "out.onnx"
    assert main(["export", "--checkpoint", str(ckpt_path), "--onnx", str(out), "--opset", str(opset)]) == 0
    model = onnx.load(str(out))
    assert {n.op_type for n in model.graph.node} == {"Conv", "Relu", "LRN", "MaxPool", "Flatten", "Gemm", "Dropout"}
    net = network_from_checkpoint(load_checkpoint(ckpt_path))
    x = pixels()
    load, k = lrn_load(net, x)
    assert 0.1 * k < load < 10 * k
    assert relative_error(net.forward(x), onnxruntime_logits(model, x)) <= TOLERANCE


def test_round_trip_is_identical(tmp_path, capsys):
    lrn = {"size": 5, "alpha": 2e-5, "beta": 0.75, "k": 1.0}
    ckpt_path = random_checkpoint(tmp_path, "paper", "lrn-pool", lrn=lrn)
    onnx_path, back = tmp_path / "a.onnx", tmp_path / "back.h5"
    assert main(["export", "--checkpoint", str(ckpt_path), "--onnx", str(onnx_path)]) == 0
    assert main(["import", str(onnx_path), "--checkpoint-out", str(back)]) == 0
    a, b = load_checkpoint(ckpt_path), load_checkpoint(back)
    assert sorted(a.params) == sorted(b.params)
    for name, value in a.params.items():
        np.testing.assert_array_equal(b.params[name], value, err_msg=name)
    assert b.network == a.network and b.network["lrn"] == lrn and b.network["order"] == "lrn-pool"
    assert b.preprocessing == a.preprocessing and b.classes == a.classes


# ---------------------------------------------------------------------------------------- refusals


def _unsupported(tmp_path):
    model = build_graph()
    relu3 = next(i for i, n in enumerate(model.graph.node) if n.name == "conv3_relu")
    sigmoid = helper.make_node("Sigmoid", ["conv3_relu"], ["odd"], name="odd")
    model.graph.node.insert(relu3 + 1, sigmoid)
    model.graph.node[relu3 + 2].input[0] = "odd"
    return saved(tmp_path, model), "node 'odd' (Sigmoid) is not supported"


def _wrong_shape(tmp_path):
    model = build_graph()
    w = next(t for t in model.graph.initializer if t.name == "conv3_w")
    w.CopyFrom(numpy_helper.from_array(np.zeros((384, 256, 5, 5), np.float32), "conv3_w"))
    return saved(tmp_path, model), "node 'conv3' (Conv): conv3.weight has shape (384, 256, 5, 5), refnet's conv3 needs (384, 256, 3, 3)"


def _truncated(tmp_path):
    data = build_graph().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    return path, "cut.onnx"


def _not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("these are not the weights you are looking for\n" * 20)
    return path, "notes.onnx: not an ONNX model"


@pytest.mark.parametrize("make_bad", [_unsupported, _wrong_shape, _truncated, _not_onnx])
def test_bad_files_are_one_line_errors_and_write_nothing(tmp_path, capsys, make_bad):
    path, message = make_bad(tmp_path)
    out = tmp_path / "out" / "ckpt.h5"
    out.parent.mkdir()
    assert main(["import", str(path), "--checkpoint-out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("refnet import: error: ") and message in lines[0], captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert list(out.parent.iterdir()) == []


def test_export_refuses_an_opset_it_cannot_write(tmp_path, capsys):
    ckpt_path = random_checkpoint(tmp_path, "seed", "pool-lrn")
    out = tmp_path / "x.onnx"
    assert main(["export", "--checkpoint", str(ckpt_path), "--onnx", str(out), "--opset", "7"]) == 2
    assert "--opset: expected 9 to" in capsys.readouterr().err and not out.exists()


def test_import_records_the_given_preprocessing_and_classes(tmp_path, capsys):
    path = saved(tmp_path, build_graph())
    classes = tmp_path / "synsets.txt"
    classes.write_text("".join(f"n{i:08d} class {i}\n" for i in range(CLASSES)))
    out = tmp_path / "c.h5"
    assert main(["import", str(path), "--checkpoint-out", str(out), "--bgr", "--mean", "104,117,123",
                 "--classes", str(classes)]) == 0  # fmt: skip
    ckpt = load_checkpoint(out)
    assert ckpt.classes == [f"n{i:08d}" for i in range(CLASSES)]
    assert ckpt.preprocessing == {"channels": "BGR", "pixel_max": 255.0, "mean": [104.0, 117.0, 123.0],
                                  "crop": SIZE, "resize": 256}  # fmt: skip
    assert json.loads(json.dumps(ckpt.network))["lrn"] == {"size": 5, "alpha": 2e-5, "beta": 0.75, "k": 1.0}
