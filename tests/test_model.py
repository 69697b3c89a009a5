"""refnet.AlexNet: the graph's shapes and parameter layout, init, state, validation, and the forward /
backward passes against an independent float64 numpy forward at the smallest input (67, batch 2,
10 classes)."""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import refnet
from refnet.model import LRN_ALPHA, LRN_BETA, LRN_K, build_layers, dropout_seed

SMALL = dict(num_classes=10, input_size=67)
BATCH = 2

PARAM_NAMES = [f"{layer}.{kind}" for layer in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
               for kind in ("weight", "bias")]  # fmt: skip


@pytest.fixture(scope="module")
def small_net():
    return refnet.AlexNet(**SMALL, seed=7)


@pytest.fixture
def batch():
    rng = np.random.default_rng(2012)
    x = rng.standard_normal((BATCH, 3, 67, 67), dtype=np.float32)
    labels = np.array([3, 8], dtype=np.int32)
    return x, labels


# ---------------------------------------------------------------- graph, layout, init


@pytest.mark.parametrize("variant, count", [("seed", 62_378_344), ("paper", 60_965_224)])
def test_param_count_of_the_full_network(variant, count):
    net = refnet.AlexNet(variant=variant)
    assert net.param_count() == count
    assert net.flat_params.size == net.flat_grads.size == net.flat_momentum.size == count


def test_paper_variant_normalises_before_pooling_at_227():
    """Section 3.5: LRN follows conv1 and conv2 (on their 55x55 and 27x27 maps), max-pooling
    follows LRN; the seed's table (test below) pools first."""
    layers = build_layers(variant="paper")
    assert [layer.name for layer in layers][:10] == [
        "conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2", "conv3", "relu3"]
    shapes = {layer.name: layer.out_shape for layer in layers}
    assert shapes["norm1"] == (96, 55, 55) and shapes["pool1"] == (96, 27, 27)
    assert shapes["norm2"] == (256, 27, 27) and shapes["pool2"] == (256, 13, 13)
    assert [layer.name for layer in build_layers(variant="paper", order="pool-lrn")][2:4] == ["pool1", "norm1"]


def test_layers_and_output_shapes_at_227():
    layers = build_layers()
    shapes = {layer.name: layer.out_shape for layer in layers}
    assert [layer.name for layer in layers] == [
        "conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2", "conv3", "relu3", "conv4", "relu4",
        "conv5", "relu5", "pool5", "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8",
    ]  # fmt: skip
    assert shapes == {
        "conv1": (96, 55, 55), "relu1": (96, 55, 55), "pool1": (96, 27, 27), "norm1": (96, 27, 27),
        "conv2": (256, 27, 27), "relu2": (256, 27, 27), "pool2": (256, 13, 13), "norm2": (256, 13, 13),
        "conv3": (384, 13, 13), "relu3": (384, 13, 13), "conv4": (384, 13, 13), "relu4": (384, 13, 13),
        "conv5": (256, 13, 13), "relu5": (256, 13, 13), "pool5": (256, 6, 6),
        "fc6": (4096,), "relu6": (4096,), "drop6": (4096,), "fc7": (4096,), "relu7": (4096,), "drop7": (4096,),
        "fc8": (1000,),
    }  # fmt: skip
    fc6 = layers[15]
    assert fc6.in_shape == (256 * 6 * 6,) and fc6.weight_shape == (4096, 9216)


def test_layer_hyperparameters_are_the_papers():
    by_name = {layer.name: layer for layer in build_layers(variant="paper")}
    conv = {n: (by_name[n].size, by_name[n].stride, by_name[n].pad, by_name[n].groups) for n in
            ("conv1", "conv2", "conv3", "conv4", "conv5")}  # fmt: skip
    assert conv == {"conv1": (11, 4, 0, 1), "conv2": (5, 1, 2, 2), "conv3": (3, 1, 1, 1),
                    "conv4": (3, 1, 1, 2), "conv5": (3, 1, 1, 2)}  # fmt: skip
    assert by_name["conv2"].weight_shape == (256, 48, 5, 5)
    assert all(by_name[n].size == 3 and by_name[n].stride == 2 for n in ("pool1", "pool2", "pool5"))
    assert (by_name["norm1"].size, LRN_ALPHA, LRN_BETA, LRN_K) == (5, 1e-4, 0.75, 2.0)
    assert by_name["drop6"].p == by_name["drop7"].p == 0.5


def test_shapes_at_the_smallest_input(small_net):
    shapes = {layer.name: layer.out_shape for layer in small_net.layers}
    assert shapes["conv1"] == (96, 15, 15) and shapes["pool1"] == (96, 7, 7)
    assert shapes["conv2"] == (256, 7, 7) and shapes["pool2"] == (256, 3, 3)
    assert shapes["conv5"] == (256, 3, 3) and shapes["pool5"] == (256, 1, 1)
    assert shapes["fc8"] == (10,)
    assert {name: p.shape for name, p in small_net.params.items()}["fc6.weight"] == (4096, 256)


def test_dropout_zero_removes_the_dropout_layers():
    names = [layer.name for layer in build_layers(dropout=0.0)]
    assert "drop6" not in names and "drop7" not in names and len(names) == 20


def test_params_and_grads_are_named_views_of_one_flat_buffer(small_net):
    for views, flat in ((small_net.params, small_net.flat_params), (small_net.grads, small_net.flat_grads),
                        (small_net.momentum, small_net.flat_momentum)):  # fmt: skip
        assert list(views) == PARAM_NAMES
        assert flat.dtype == np.float32 and flat.ndim == 1
        assert all(np.shares_memory(v, flat) and v.dtype == np.float32 for v in views.values())
        offset = 0  # views tile the flat buffer in name order, without gaps
        for v in views.values():
            assert v.__array_interface__["data"][0] == flat.__array_interface__["data"][0] + 4 * offset
            offset += v.size
        assert offset == flat.size
    before = small_net.flat_params[-1]
    small_net.params["fc8.bias"][-1] = 123.0
    assert small_net.flat_params[-1] == 123.0
    small_net.flat_params[-1] = before


def test_init_is_the_papers(small_net):
    for name, p in small_net.params.items():
        if name.endswith(".weight"):
            assert abs(float(p.mean())) < 0.01 * 5 / np.sqrt(p.size), name
            assert float(p.std()) == pytest.approx(0.01, rel=0.06), name
        else:
            expected = 1.0 if name.split(".")[0] in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
            assert np.all(p == expected), name
    assert not small_net.flat_momentum.any()


def test_init_is_deterministic_given_the_seed(small_net):
    same = refnet.AlexNet(**SMALL, seed=7)
    other = refnet.AlexNet(**SMALL, seed=8)
    assert np.array_equal(same.flat_params, small_net.flat_params)
    assert not np.array_equal(other.params["conv1.weight"], small_net.params["conv1.weight"])


def test_state_dict_round_trip_copies(small_net):
    state = small_net.state_dict()
    assert list(state) == PARAM_NAMES
    assert not any(np.shares_memory(a, small_net.flat_params) for a in state.values())
    other = refnet.AlexNet(**SMALL, seed=1)
    other.load_state_dict(state)
    assert np.array_equal(other.flat_params, small_net.flat_params)
    momentum = {name: np.full(shape, 0.5, np.float32) for name, shape in other.param_shapes.items()}
    other.load_momentum_dict(momentum)
    assert np.all(other.flat_momentum == 0.5) and np.all(other.momentum_dict()["fc7.weight"] == 0.5)


def test_summary_method(small_net):
    text = small_net.summary()
    assert "21,622,154" in text and "3x67x67" in text and "256x1x1" in text


def test_dropout_seeds_differ_per_step_and_layer():
    seeds = {dropout_seed(0, step, layer) for step in range(50) for layer in (17, 20)}
    assert len(seeds) == 100 and all(0 <= s < 2**31 for s in seeds)
    assert dropout_seed(5, 3, 17) == dropout_seed(5, 3, 17) != dropout_seed(6, 3, 17)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(variant="vgg"), "variant"),
        (dict(device="tpu"), "device"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=-0.1), "dropout"),
        (dict(dropout=float("nan")), "dropout"),
        (dict(input_size=66), "input_size: 66 is too small"),
        (dict(input_size=0), "input_size"),
        (dict(input_size=67.0), "input_size"),
        (dict(num_classes=0), "num_classes"),
        (dict(seed=-1), "seed"),
        (dict(order="lrn-first"), "order: expected one of pool-lrn, lrn-pool"),
        (dict(lrn={"size": 4, "alpha": 1e-4, "beta": 0.75, "k": 2.0}), "size: expected an odd window"),
        (dict(lrn={"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 0.0}), "k: expected > 0"),
        (dict(lrn={"size": 5}), "lrn: expected a dict with keys"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        refnet.AlexNet(**{**SMALL, **kwargs})


def test_every_valid_input_size_is_accepted():
    assert build_layers(input_size=67)[-8].out_shape == (256, 1, 1)
    assert build_layers(input_size=70)[-8].out_shape == (256, 1, 1)
    with pytest.raises(ValueError, match="smallest valid input_size is 67"):
        build_layers(input_size=10)


def test_cuda_without_a_gpu_is_a_clear_error():
    from numba import cuda

    if cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        refnet.AlexNet(**SMALL, device="cuda")


def test_load_state_dict_rejects_mismatches(small_net):
    state = small_net.state_dict()
    missing = {k: v for k, v in state.items() if k != "fc7.bias"}
    with pytest.raises(ValueError, match=r"missing \['fc7.bias'\]"):
        small_net.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"unexpected \['fc9.weight'\]"):
        small_net.load_state_dict({**state, "fc9.weight": state["fc8.weight"]})
    with pytest.raises(ValueError, match=r"state_dict\['conv1.weight'\]: expected shape \(96, 3, 11, 11\)"):
        small_net.load_state_dict({**state, "conv1.weight": np.zeros((96, 3, 11, 10), np.float32)})
    with pytest.raises(ValueError, match="expected dtype float32, got float64"):
        small_net.load_state_dict({**state, "fc8.bias": state["fc8.bias"].astype(np.float64)})
    with pytest.raises(ValueError, match="momentum"):
        small_net.load_momentum_dict(missing)
    assert np.array_equal(small_net.flat_params, refnet.AlexNet(**SMALL, seed=7).flat_params)  # nothing half-loaded


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((2, 3, 67, 67), np.float64), "x: expected dtype float32"),
        (np.zeros((2, 3, 68, 68), np.float32),
         r"x: expected shape \(N, 3, 67, 67\) \(NCHW images of input_size 67\), got \(2, 3, 68, 68\)"),
        (np.zeros((2, 67, 67, 3), np.float32), "x: expected shape"),
        (np.zeros((3, 67, 67), np.float32), "x: expected a 4-D array"),
        (np.zeros((2, 3, 67, 134), np.float32)[:, :, :, ::2], "C-contiguous"),
        (np.zeros((0, 3, 67, 67), np.float32), "at least one image"),
    ],
)
def test_bad_batches_are_rejected(small_net, x, message):
    with pytest.raises(ValueError, match=message):
        small_net.forward(x)
    with pytest.raises(ValueError, match=message):
        small_net.forward_backward(x, np.zeros(x.shape[:1], np.int32))


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array([0, 10], np.int32), r"labels: expected values in \[0, 9\], got 10"),
        (np.array([-1, 0], np.int32), "got -1"),
        (np.array([0, 1], np.int64), "labels: expected dtype int32"),
        (np.array([0, 1, 2], np.int32), r"labels: expected shape \(2,\)"),
        ([0, 1], "labels: expected a numpy int32 array"),
    ],
)
def test_bad_labels_are_rejected(small_net, batch, labels, message):
    step = small_net.step
    with pytest.raises(ValueError, match=message):
        small_net.forward_backward(batch[0], labels)
    assert small_net.step == step


# ---------------------------------------------------------------- float64 reference forward
# Written directly from the paper's layer table with numpy in float64 (einsum over sliding windows
# for the convolutions): independent of refnet's kernels and of its layer list, and fast enough at
# input 67 to evaluate a few hundred times for central differences.


def ref_conv(x, w, b, stride, pad, groups):
    k, cg, r, s = w.shape
    kg = k // groups
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(xp, (r, s), axis=(2, 3))[:, :, ::stride, ::stride]  # (N, C, P, Q, R, S)
    parts = [np.einsum("ncpqrs,kcrs->nkpq", windows[:, g * cg:(g + 1) * cg], w[g * kg:(g + 1) * kg], optimize=True)
             for g in range(groups)]  # fmt: skip
    return np.concatenate(parts, axis=1) + b[None, :, None, None]


def ref_maxpool(x):
    return sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2].max(axis=(-2, -1))


def ref_lrn(x, size=5, alpha=1e-4, beta=0.75, k=2.0):
    squares = x * x
    c, half = x.shape[1], size // 2
    sums = np.stack([squares[:, max(0, i - half):min(c, i + half + 1)].sum(axis=1) for i in range(c)], axis=1)
    return x / (k + alpha * sums) ** beta


def ref_relu(x):
    return np.maximum(x, 0.0)


def ref_linear(h, w, b):
    return (w @ h.T).T + b  # this order is the fast BLAS call for a (4096, 4096) float64 w


def ref_stages(groups=1, drop=0.5, masks=None, order="pool-lrn", lrn=(5, 1e-4, 0.75, 2.0)):
    """AlexNet as 8 stages, one per parametrised layer: [(layer name, f(h, params) -> h)].
    masks None: test-time dropout (x (1 - drop)); else the training masks (mask6, mask7).
    order "pool-lrn": the seed's table (max-pool, then LRN); "lrn-pool": the paper's section 3.5."""
    mask6, mask7 = (None, None) if masks is None else masks

    def pool_and_norm(h):
        if order == "pool-lrn":
            return ref_lrn(ref_maxpool(h), *lrn)
        return ref_maxpool(ref_lrn(h, *lrn))

    def dropout(h, mask):
        if drop == 0:
            return h
        return h * (1.0 - drop) if mask is None else h * mask

    def conv(name, stride, pad, g):
        return lambda h, p: ref_relu(ref_conv(h, p[f"{name}.weight"], p[f"{name}.bias"], stride, pad, g))

    def fc(name):
        return lambda h, p: ref_relu(ref_linear(h, p[f"{name}.weight"], p[f"{name}.bias"]))

    conv1, conv2 = conv("conv1", 4, 0, 1), conv("conv2", 1, 2, groups)
    conv5, fc6, fc7 = conv("conv5", 1, 1, groups), fc("fc6"), fc("fc7")
    return [
        ("conv1", lambda h, p: pool_and_norm(conv1(h, p))),
        ("conv2", lambda h, p: pool_and_norm(conv2(h, p))),
        ("conv3", conv("conv3", 1, 1, 1)),
        ("conv4", conv("conv4", 1, 1, groups)),
        ("conv5", lambda h, p: ref_maxpool(conv5(h, p)).reshape(h.shape[0], -1)),  # NCHW flatten (c, h, w)
        ("fc6", lambda h, p: dropout(fc6(h, p), mask6)),
        ("fc7", lambda h, p: dropout(fc7(h, p), mask7)),
        ("fc8", lambda h, p: ref_linear(h, p["fc8.weight"], p["fc8.bias"])),
    ]


def ref_forward(p, x, groups=1, drop=0.5, masks=None, order="pool-lrn", lrn=(5, 1e-4, 0.75, 2.0)):
    """Logits (N, num_classes) in float64."""
    h = x
    for _, stage in ref_stages(groups, drop, masks, order, lrn):
        h = stage(h, p)
    return h


def ref_loss(logits, labels):
    m = logits.max(axis=1, keepdims=True)
    log_z = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
    return float(np.mean(log_z - logits[np.arange(len(labels)), labels]))


def float64_params(net):
    return {name: a.astype(np.float64) for name, a in net.state_dict().items()}


def training_masks(net, n):
    """The dropout masks of drop6 and drop7 at the net's current step, drawn through the public op
    with the documented per-layer seed (so this also pins how the net derives its seeds)."""
    masks = []
    for i, layer in enumerate(net.layers):
        if layer.kind == "dropout":
            ones = np.ones((n, *layer.out_shape), np.float32)
            _, mask = refnet.ops.dropout_forward(ones, layer.p, dropout_seed(net.seed, net.step, i))
            masks.append(mask.astype(np.float64))
    return tuple(masks)


def assert_logits_close(got, want):
    # float32 kernels against float64: errors are float32 rounding accumulated over fan-ins of up
    # to 4096, relative to the size of the logits.
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)


# ---------------------------------------------------------------- forward and backward


@pytest.mark.parametrize("variant, groups, order", [("seed", 1, "pool-lrn"), ("paper", 2, "lrn-pool")])
def test_eval_forward_matches_the_float64_reference(batch, variant, groups, order):
    net = refnet.AlexNet(**SMALL, variant=variant, seed=3)
    x, _ = batch
    logits = net.forward(x)
    assert logits.shape == (BATCH, 10) and logits.dtype == np.float32
    assert_logits_close(logits, ref_forward(float64_params(net), x.astype(np.float64), groups, order=order))


@pytest.mark.parametrize("order", ["pool-lrn", "lrn-pool"])
def test_either_order_with_other_lrn_constants_matches_the_reference(batch, order):
    """An imported network's own LRN (Caffe's bvlc_alexnet: k=1, alpha=2e-5), in either order,
    at a weight scale where LRN changes the output (alpha * sum x^2 comparable to k)."""
    lrn = {"size": 5, "alpha": 2e-5, "beta": 0.75, "k": 1.0}
    net = refnet.AlexNet(**SMALL, variant="paper", order=order, lrn=lrn, seed=3)
    net.load_state_dict({name: (a * 40).astype(np.float32) for name, a in net.state_dict().items()})
    x = batch[0] * np.float32(60)
    p = float64_params(net)
    want = ref_forward(p, x.astype(np.float64), 2, order=order, lrn=(5, 2e-5, 0.75, 1.0))
    assert_logits_close(net.forward(x), want)
    other = ref_forward(p, x.astype(np.float64), 2, order=order, lrn=(5, 1e-4, 0.75, 2.0))
    assert np.abs(other - want).max() > 1e-2 * np.abs(want).max()  # the constants matter here


def test_training_forward_uses_the_steps_dropout_masks(small_net, batch):
    x, _ = batch
    small_net.step = 5
    masks = training_masks(small_net, BATCH)
    assert 0.3 < masks[0].mean() < 0.7
    want = ref_forward(float64_params(small_net), x.astype(np.float64), masks=masks)
    assert_logits_close(small_net.forward(x, train=True), want)
    assert small_net.step == 5  # only forward_backward advances the step
    assert not np.allclose(small_net.forward(x, train=False), small_net.forward(x, train=True))


def test_forward_backward_loss_and_step(batch):
    net = refnet.AlexNet(**SMALL, seed=11)
    x, labels = batch
    masks = training_masks(net, BATCH)
    loss = net.forward_backward(x, labels)
    assert isinstance(loss, float) and net.step == 1
    want = ref_loss(ref_forward(float64_params(net), x.astype(np.float64), masks=masks), labels)
    assert loss == pytest.approx(want, rel=1e-5)
    assert np.allclose(net.last_logits(BATCH), ref_forward(float64_params(net), x.astype(np.float64), masks=masks),
                       rtol=1e-4, atol=1e-5)  # fmt: skip


def nudged(array, index, delta):
    """A copy of `array` with flat entry `index` changed by `delta`."""
    copy = array.copy()
    copy.reshape(-1)[index] += delta
    return copy


@pytest.mark.parametrize("variant, groups, order", [("seed", 1, "pool-lrn"), ("paper", 2, "lrn-pool")])
def test_gradients_match_central_differences_of_the_float64_reference(batch, variant, groups, order):
    """Every parameter gradient of the float32 network against central differences of the float64
    reference loss, with the same dropout masks.

    Why this check: differencing the float32 network itself would need eps ~1e-2 to rise above
    float32 rounding of the loss (~1e-7 / eps), and its truncation error would then swamp a tight
    tolerance. Differencing the float64 reference (eps 1e-6) gives derivatives accurate to ~1e-9,
    so the tolerance below only has to cover the float32 rounding of the analytic gradients:
    measured at most 6e-6 x the tensor's largest gradient per entry (3e-6 x largest x sqrt(size)
    for the directional sums), so the bounds leave a 15-20x margin and still catch any real error.
    Per tensor: one directional derivative along a random +-1 direction (tests every element at
    once) and the entries with the largest and a random nonzero gradient.
    """
    net = refnet.AlexNet(**SMALL, variant=variant, seed=5)
    x, labels = batch
    masks = training_masks(net, BATCH)
    net.forward_backward(x, labels)
    grads = net.grad_dict()
    params = float64_params(net)
    stages = ref_stages(groups, masks=masks, order=order)

    # the input of every stage with unperturbed parameters, so a perturbed layer re-runs from there
    inputs = [x.astype(np.float64)]
    for _, stage in stages[:-1]:
        inputs.append(stage(inputs[-1], params))

    def loss_from(first, p):
        h = inputs[first]
        for _, stage in stages[first:]:
            h = stage(h, p)
        return ref_loss(h, labels)

    rng = np.random.default_rng(0)
    eps = 1e-6
    for first, (layer, _) in enumerate(stages):
        for name in (f"{layer}.weight", f"{layer}.bias"):
            g = grads[name].astype(np.float64)
            scale = float(np.abs(g).max())
            assert scale > 0, f"{name}: gradient is all zero"
            base = params[name]

            def loss_at(value):
                return loss_from(first, {**params, name: value})

            # every weight moves at once, so each pre-activation moves by a random-sign sum over
            # its fan-in: about step * sqrt(fan-in) * |input| ~ 1e-7, too little to cross a ReLU or
            # max-pool kink
            fan_in = base.size // base.shape[0]
            step = 1e-7 / np.sqrt(fan_in)
            direction = rng.choice([-1.0, 1.0], size=base.shape)
            numeric = (loss_at(base + step * direction) - loss_at(base - step * direction)) / (2 * step)
            analytic = float(np.dot(g.reshape(-1), direction.reshape(-1)))
            assert analytic == pytest.approx(numeric, rel=1e-5, abs=5e-5 * scale * np.sqrt(g.size)), name

            nonzero = np.flatnonzero(g)
            for index in {int(np.argmax(np.abs(g))), int(rng.choice(nonzero))}:
                numeric = (loss_at(nudged(base, index, eps)) - loss_at(nudged(base, index, -eps))) / (2 * eps)
                analytic = g.reshape(-1)[index]
                assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-4 * scale), f"{name}[{index}]"


def test_every_gradient_is_written_each_step(batch):
    net = refnet.AlexNet(**SMALL, seed=5)
    x, labels = batch
    net.flat_grads[...] = np.nan  # an entry no backward writes stays NaN
    net.forward_backward(x, labels)
    assert np.isfinite(net.flat_grads).all()


def test_a_step_reuses_its_buffers(small_net, batch):
    x, labels = batch
    small_net.forward_backward(x, labels)
    ws = small_net._workspaces[BATCH]
    arrays = [*ws.acts, *ws.d_out, *ws.argmax.values(), *ws.scale.values(), *ws.mask.values(), ws.probs]
    small_net.forward_backward(x, labels)
    assert small_net._workspaces[BATCH] is ws
    after = [*ws.acts, *ws.d_out, *ws.argmax.values(), *ws.scale.values(), *ws.mask.values(), ws.probs]
    assert all(a is b for a, b in zip(arrays, after))
    logits = small_net.forward(x)
    assert not np.shares_memory(logits, ws.acts[-1])  # the caller gets a copy it may keep


def test_another_batch_size_gets_its_own_buffers(small_net, batch):
    x, labels = batch
    one = small_net.forward(x[:1])
    assert np.allclose(one, small_net.forward(x)[:1], rtol=1e-5, atol=1e-6)
    assert {1, BATCH} <= set(small_net._workspaces)


def test_dropout_masks_are_reproducible_from_the_step(batch):
    x, labels = batch
    run = refnet.AlexNet(**SMALL, seed=9)
    run.forward_backward(x, labels)
    first = run.grad_dict()
    run.forward_backward(x, labels)  # step 1: new masks, same parameters
    second = run.grad_dict()
    assert not np.array_equal(first["fc7.weight"], second["fc7.weight"])

    resumed = refnet.AlexNet(**SMALL, seed=9)
    resumed.step = 1
    resumed.forward_backward(x, labels)
    assert all(np.array_equal(second[name], g) for name, g in resumed.grad_dict().items())


def test_no_dropout_network_is_deterministic_in_training(batch):
    x, labels = batch
    net = refnet.AlexNet(**SMALL, dropout=0.0, seed=4)
    assert_logits_close(net.forward(x, train=True), ref_forward(float64_params(net), x.astype(np.float64), drop=0))
    assert net.forward_backward(x, labels) == net.forward_backward(x, labels)


def test_step_must_be_a_non_negative_integer(small_net):
    for bad in (-1, 1.5, "3"):
        with pytest.raises(ValueError, match="step"):
            small_net.step = bad
