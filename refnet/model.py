"""The fixed AlexNet graph (Krizhevsky, Sutskever & Hinton, NIPS 2012) over flat buffers.

The network is a short list of `Layer` specs, built once from (variant, num_classes, input_size,
dropout, order, lrn); `forward` and `backward` are plain loops over that list that call `refnet.ops` with
`out=` buffers allocated once per batch size. Every computation goes through `refnet.ops`, which
dispatches on the array type, so the same code runs on numpy arrays (device="cpu") and on Numba
CUDA device arrays (device="cuda").

Buffers (llm.c style):
    flat_params, flat_grads, flat_momentum   one float32 1-D buffer each, parameters in the order
                                             conv1.weight conv1.bias ... fc8.weight fc8.bias
    params, grads, momentum                  {name: view into the flat buffer}
    conv weights (K, C/groups, R, S); FC weights (out, in); fc6's inputs are pool5's output
    flattened in NCHW order (c, h, w).

State for checkpoints: state_dict() / load_state_dict(d) and momentum_dict() / load_momentum_dict(d)
({name: numpy float32 array}, shape-checked), `seed` and `step`. The trainer updates the weights
with one ops.sgd_momentum_update(flat_params, flat_grads, flat_momentum, ...) call.

device="cuda": the flat buffers, views and activations are Numba CUDA device arrays; forward and
forward_backward take a host numpy batch (copied into a device buffer) or a device batch.

Gradient convention (the ops' one): every backward writes (=) its gradient, nothing accumulates;
`forward_backward` writes each parameter gradient exactly once per call.

Dropout (the paper's semantics): in training each unit is dropped with probability p and the kept
ones pass unscaled; at test time the layer multiplies by (1 - p). The mask of dropout layer i at
training step s comes from `dropout_seed(seed, s, i)`, so a run resumed at step s (set `net.step`)
draws the same masks as an uninterrupted one.
"""

from dataclasses import dataclass, replace

import numpy as np

from .kernels.cpu.dropout import seed_from_element
from .ops._checks import check_array, check_finite_float, check_positive_int

VARIANTS = ("seed", "paper")
# Where LRN sits in layers 1-2: "pool-lrn" is the seed's table (conv -> ReLU -> max-pool -> LRN),
# "lrn-pool" the paper's section 3.5 (conv -> ReLU -> LRN -> max-pool, LRN on the 55x55 and 27x27
# maps). The variant picks the groups of conv2/4/5 and its default order.
ORDERS = ("pool-lrn", "lrn-pool")
VARIANT_GROUPS = {"seed": 1, "paper": 2}
VARIANT_ORDER = {"seed": "pool-lrn", "paper": "lrn-pool"}
DEVICES = ("cpu", "cuda")
IMAGE_CHANNELS = 3
INIT_WEIGHT_STD = 0.01

# The paper's local response normalisation: alpha is NOT divided by the window size.
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0


@dataclass(frozen=True)
class LRNConstants:
    """y_c = x_c / (k + alpha * sum over `size` channels of x^2)^beta, alpha NOT divided by size
    (refnet.ops.lrn). The paper's by default; an imported network keeps its own (Caffe's
    bvlc_alexnet: k=1, alpha=2e-5 once its alpha/size is converted)."""

    size: int = LRN_SIZE
    alpha: float = LRN_ALPHA
    beta: float = LRN_BETA
    k: float = LRN_K

    def to_dict(self):
        return {"size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k}

    @classmethod
    def from_dict(cls, d):
        """Validated constants from {size, alpha, beta, k} (ValueError naming the bad one)."""
        from .ops.lrn import _check_hyperparameters

        if not isinstance(d, dict) or set(d) != {"size", "alpha", "beta", "k"}:
            raise ValueError(f"lrn: expected a dict with keys size, alpha, beta, k, got {d!r}")
        return cls(*_check_hyperparameters(d["size"], d["alpha"], d["beta"], d["k"]))


PAPER_LRN = LRNConstants()
POOL_SIZE, POOL_STRIDE = 3, 2

# Batch sizes whose activation buffers stay allocated: a training run uses its batch size and the
# last (partial) batch; more would only hold memory.
MAX_CACHED_BATCH_SIZES = 2


@dataclass(frozen=True)
class Layer:
    """One layer of the graph. Shapes are per image: (C, H, W) for maps, (F,) for vectors."""

    name: str
    kind: str  # "conv" | "relu" | "maxpool" | "lrn" | "linear" | "dropout"
    out_channels: int = 0  # conv: filters K; linear: output features
    size: int = 0  # conv: kernel R = S; maxpool: window; lrn: channel window
    stride: int = 1
    pad: int = 0
    groups: int = 1
    bias_init: float = 0.0
    p: float = 0.0  # dropout probability
    lrn: LRNConstants | None = None  # lrn: its constants (size above is lrn.size)
    in_shape: tuple = ()
    out_shape: tuple = ()

    @property
    def has_params(self):
        return self.kind in ("conv", "linear")

    @property
    def weight_shape(self):
        if self.kind == "conv":
            return (self.out_channels, self.in_shape[0] // self.groups, self.size, self.size)
        if self.kind == "linear":
            return (self.out_channels, self.in_shape[0])
        return None

    @property
    def param_shapes(self):
        """{name: shape} of this layer's parameters, weight first."""
        if not self.has_params:
            return {}
        return {f"{self.name}.weight": self.weight_shape, f"{self.name}.bias": (self.out_channels,)}

    @property
    def param_count(self):
        return sum(int(np.prod(s)) for s in self.param_shapes.values())

    @property
    def multiply_adds(self):
        """Multiply-adds per image of the forward pass (conv and linear layers only)."""
        if not self.has_params:
            return 0
        return int(np.prod(self.weight_shape)) * int(np.prod(self.out_shape[1:]))

    def describe(self):
        if self.kind == "conv":
            text = f"conv {self.size}x{self.size}/{self.stride} pad {self.pad}, {self.out_channels}"
            return text + (f", groups {self.groups}" if self.groups > 1 else "")
        if self.kind == "maxpool":
            return f"maxpool {self.size}x{self.size}/{self.stride}"
        if self.kind == "lrn":
            return f"lrn {self.size}, alpha {self.lrn.alpha:g} beta {self.lrn.beta:g} k {self.lrn.k:g}"
        if self.kind == "linear":
            return f"linear {self.in_shape[0]} -> {self.out_channels}"
        if self.kind == "dropout":
            return f"dropout {self.p:g}"
        return self.kind


def _conv(name, filters, size, stride=1, pad=0, groups=1, bias_init=0.0):
    return Layer(name, "conv", out_channels=filters, size=size, stride=stride, pad=pad, groups=groups, bias_init=bias_init)


def _linear(name, features, bias_init=0.0):
    return Layer(name, "linear", out_channels=features, bias_init=bias_init)


def _relu(name):
    return Layer(name, "relu")


def _maxpool(name):
    return Layer(name, "maxpool", size=POOL_SIZE, stride=POOL_STRIDE)


def _lrn(name, constants):
    return Layer(name, "lrn", size=constants.size, lrn=constants)


def _dropout(name, p):
    return [Layer(name, "dropout", p=p)] if p > 0 else []


def _pool_and_norm(order, index, lrn):
    pool, norm = _maxpool(f"pool{index}"), _lrn(f"norm{index}", lrn)
    return [pool, norm] if order == "pool-lrn" else [norm, pool]


def alexnet_layer_specs(variant="seed", num_classes=1000, dropout=0.5, order=None, lrn=PAPER_LRN):
    """The network as the paper's table: a list of Layer specs without shapes. order None: the
    variant's (VARIANT_ORDER)."""
    g = VARIANT_GROUPS.get(variant, 1)
    order = order or VARIANT_ORDER.get(variant, "pool-lrn")
    return [
        _conv("conv1", 96, 11, stride=4),
        _relu("relu1"), *_pool_and_norm(order, 1, lrn),
        _conv("conv2", 256, 5, pad=2, groups=g, bias_init=1.0),
        _relu("relu2"), *_pool_and_norm(order, 2, lrn),
        _conv("conv3", 384, 3, pad=1),
        _relu("relu3"),
        _conv("conv4", 384, 3, pad=1, groups=g, bias_init=1.0),
        _relu("relu4"),
        _conv("conv5", 256, 3, pad=1, groups=g, bias_init=1.0),
        _relu("relu5"), _maxpool("pool5"),
        _linear("fc6", 4096, bias_init=1.0), _relu("relu6"), *_dropout("drop6", dropout),
        _linear("fc7", 4096, bias_init=1.0), _relu("relu7"), *_dropout("drop7", dropout),
        _linear("fc8", num_classes),
    ]  # fmt: skip


def _output_shape(layer, in_shape):
    if layer.kind == "conv":
        c, h, w = in_shape
        return (layer.out_channels, (h + 2 * layer.pad - layer.size) // layer.stride + 1,
                (w + 2 * layer.pad - layer.size) // layer.stride + 1)  # fmt: skip
    if layer.kind == "maxpool":
        c, h, w = in_shape
        return (c, (h - layer.size) // layer.stride + 1, (w - layer.size) // layer.stride + 1)
    if layer.kind == "linear":
        return (layer.out_channels,)
    return in_shape


def check_order(variant, order):
    """The layer order: `order` checked, or the variant's when None."""
    if order is None:
        return VARIANT_ORDER[variant]
    if order not in ORDERS:
        raise ValueError(f"order: expected one of {', '.join(ORDERS)}, got {order!r}")
    return order


def build_layers(variant="seed", num_classes=1000, input_size=227, dropout=0.5, order=None, lrn=None):
    """Validate the settings and return the layer specs with per-image input and output shapes.
    order None: the variant's; lrn None: the paper's constants (an LRNConstants or its dict)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    order = check_order(variant, order)
    lrn = PAPER_LRN if lrn is None else lrn
    lrn = LRNConstants.from_dict(lrn.to_dict() if isinstance(lrn, LRNConstants) else lrn)
    num_classes = check_positive_int("num_classes", num_classes)
    input_size = check_positive_int("input_size", input_size)
    dropout = check_finite_float("dropout", dropout, minimum=0.0, maximum=1.0, open_max=True)
    layers = []
    shape = (IMAGE_CHANNELS, input_size, input_size)
    for layer in alexnet_layer_specs(variant, num_classes, dropout, order, lrn):
        if layer.kind == "linear" and len(shape) == 3:
            shape = (int(np.prod(shape)),)  # NCHW flatten (c, h, w) of pool5's output
        out_shape = _output_shape(layer, shape)
        if min(out_shape) < 1:
            raise ValueError(
                f"input_size: {input_size} is too small: {layer.name} would output "
                f"{'x'.join(map(str, out_shape))} (every layer needs an output of at least 1x1; "
                f"the smallest valid input_size is {smallest_input_size()})"
            )
        layers.append(replace(layer, in_shape=shape, out_shape=out_shape))
        shape = out_shape
    return layers


NETWORK_KEYS = ("variant", "order", "lrn", "num_classes", "input_size", "dropout", "layers")


def network_config(variant="seed", num_classes=1000, input_size=227, dropout=0.5, order=None, lrn=None):
    """The JSON-ready record of a network's configuration, its layer names in order included."""
    layers = build_layers(variant, num_classes, input_size, dropout, order, lrn)
    return {"variant": variant, "order": check_order(variant, order),
            "lrn": next(layer.lrn for layer in layers if layer.kind == "lrn").to_dict(),
            "num_classes": int(num_classes), "input_size": int(input_size), "dropout": float(dropout),
            "layers": [layer.name for layer in layers]}  # fmt: skip


def check_network_config(record):
    """ValueError unless `record` is a network_config whose layer list is the one it builds."""
    if not isinstance(record, dict) or set(record) != set(NETWORK_KEYS):
        raise ValueError(f"network: expected a record with keys {', '.join(NETWORK_KEYS)}, got {record!r}")
    settings = {key: record[key] for key in NETWORK_KEYS if key != "layers"}
    built = network_config(**settings)["layers"]
    if list(record["layers"]) != built:
        raise ValueError(f"network: the recorded layer order {record['layers']} is not the one its settings "
                         f"build ({built})")  # fmt: skip
    return record


def smallest_input_size():
    """The smallest input_size whose every layer output is at least 1x1 (67)."""
    size = 1
    while True:
        shape = (IMAGE_CHANNELS, size, size)
        for layer in alexnet_layer_specs(dropout=0.0):
            if layer.kind == "linear":
                return size
            shape = _output_shape(layer, shape)
            if min(shape) < 1:
                break
        size += 1


_MASK64 = (1 << 64) - 1


def _splitmix64(z):
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def dropout_seed(seed, step, layer_index):
    """The 31-bit seed of dropout layer `layer_index` at training step `step` of a net seeded `seed`.

    A pure function of its arguments (so a resumed run reproduces the masks) that decorrelates
    neighbouring steps and layers.
    """
    return _splitmix64((_splitmix64((_splitmix64(seed) + step) & _MASK64) + layer_index) & _MASK64) >> 33


def _check_device(device):
    if device not in DEVICES:
        raise ValueError(f"device: expected one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cuda":
        from numba import cuda

        if not cuda.is_available():
            raise ValueError(
                "device: 'cuda' was requested but no CUDA GPU is available "
                "(set NUMBA_ENABLE_CUDASIM=1 before importing numba to use the CUDA simulator)"
            )
    return device


def _upload(device_array, pinned, host, stream):
    """Copy a host array to the GPU through a pinned staging buffer on `stream`. The host returns at
    once; kernels launched afterwards on the default stream wait for the copy (an event, so this
    also holds with per-thread default streams). The staging buffer is next written after the
    step's loss has come back, so the copy has finished by then."""
    from numba import cuda

    np.copyto(pinned, host)
    device_array.copy_to_device(pinned, stream=stream)
    done = cuda.event()
    done.record(stream=stream)
    done.wait(stream=cuda.default_stream())


class _Workspace:
    """Every array one batch size needs: activations, pooling indices, LRN scales, dropout masks,
    softmax probabilities, and (allocated on the first training step) two ping-pong gradient
    buffers.

    acts[i] is layer i's output (N, *out_shape); inputs[i] is layer i's input viewed as
    (N, *in_shape) (inputs[0] is the batch itself, given per call). Backward only ever needs the
    gradient of one layer's output and of its input at once, so the gradient of acts[i] lives in
    ping-pong buffer i % 2, which halves the memory of keeping one per layer.
    """

    def __init__(self, net, n):
        layers = net.layers
        self.n = n
        self.acts = [net._empty((n, *layer.out_shape), np.float32) for layer in layers]
        self.inputs = [None] + [self.acts[i - 1].reshape((n, *layers[i].in_shape)) for i in range(1, len(layers))]
        self.argmax = {i: net._empty((n, *l.out_shape), np.int32) for i, l in enumerate(layers) if l.kind == "maxpool"}
        self.scale = {i: net._empty((n, *l.out_shape), np.float32) for i, l in enumerate(layers) if l.kind == "lrn"}
        self.mask = {i: net._empty((n, *l.out_shape), np.uint8) for i, l in enumerate(layers) if l.kind == "dropout"}
        self.probs = net._empty((n, layers[-1].out_shape[0]), np.float32)
        self.row_loss = net._empty((n,), np.float32)
        self.batch = self.labels = self.uploads = None
        if net.device == "cuda":
            from numba import cuda

            self.batch = net._empty((n, *layers[0].in_shape), np.float32)
            self.labels = net._empty((n,), np.int32)
            # host batches go through pinned (page-locked) buffers on a stream of their own: a DMA
            # copy at full bus speed, which the kernels queued after it wait for (see _upload)
            self.host_batch = cuda.pinned_array((n, *layers[0].in_shape), np.float32)
            self.host_labels = cuda.pinned_array((n,), np.int32)
            self.uploads = cuda.stream()
        self.d_out = self.d_in = None
        self._net = net

    def ensure_gradients(self):
        if self.d_out is not None:
            return
        layers, n = self._net.layers, self.n
        biggest = max(int(np.prod(layer.out_shape)) for layer in layers) * n
        pingpong = (self._net._empty((biggest,), np.float32), self._net._empty((biggest,), np.float32))

        def view(buffer, shape):
            return buffer[: n * int(np.prod(shape))].reshape((n, *shape))

        self.d_out = [view(pingpong[i % 2], layer.out_shape) for i, layer in enumerate(layers)]
        self.d_in = [None] + [view(pingpong[(i - 1) % 2], layers[i].in_shape) for i in range(1, len(layers))]


class AlexNet:
    """AlexNet with its parameters, gradients and SGD momentum in three flat float32 buffers.

    net = AlexNet(num_classes=1000, variant="seed", input_size=227, dropout=0.5, device="cpu", seed=0,
                  order=None, lrn=None)                          order/lrn None: the variant's / paper's
    net.forward(x, train=False) -> logits (N, num_classes)      x float32 (N, 3, input_size, input_size)
    net.forward_backward(x, labels) -> float mean loss           overwrites net.grads, then step += 1
    net.step                                                     training steps taken (drives dropout)
    """

    def __init__(self, num_classes=1000, variant="seed", input_size=227, dropout=0.5, device="cpu", seed=0,
                 order=None, lrn=None):
        self.layers = build_layers(variant, num_classes, input_size, dropout, order, lrn)
        self.device = _check_device(device)
        self.seed = check_positive_int("seed", seed, minimum=0)
        self.variant, self.num_classes, self.input_size = variant, int(num_classes), int(input_size)
        self.order = check_order(variant, order)
        self.lrn = next(layer.lrn for layer in self.layers if layer.kind == "lrn")
        self.dropout = float(dropout)
        self.step = 0
        self.sample_offset = 0

        shapes = {name: shape for layer in self.layers for name, shape in layer.param_shapes.items()}
        self.param_shapes = shapes
        self._offsets, offset = {}, 0
        for name, shape in shapes.items():
            self._offsets[name] = (offset, offset + int(np.prod(shape)))
            offset += int(np.prod(shape))
        self._size = offset

        host_params = self._initial_params()
        if self.device == "cpu":
            self.flat_params = host_params
            self.flat_grads = np.zeros(self._size, np.float32)  # calloc: no memory touched until written
            self.flat_momentum = np.zeros(self._size, np.float32)
        else:
            from numba import cuda

            self.flat_params = cuda.to_device(host_params)
            self.flat_grads = cuda.device_array(self._size, np.float32)
            self.flat_momentum = cuda.to_device(np.zeros(self._size, np.float32))
        self.params = self._views(self.flat_params)
        self.grads = self._views(self.flat_grads)
        self.momentum = self._views(self.flat_momentum)
        self._workspaces = {}

    # ------------------------------------------------------------------ setup
    def _initial_params(self):
        """The paper's init on the host: weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6,
        fc7 and 0 elsewhere. One numpy Generator seeded with `seed`, drawn in parameter order."""
        rng = np.random.default_rng(self.seed)
        flat = np.empty(self._size, np.float32)
        for layer in self.layers:
            for name in layer.param_shapes:
                lo, hi = self._offsets[name]
                if name.endswith(".weight"):
                    rng.standard_normal(out=flat[lo:hi], dtype=np.float32)
                    flat[lo:hi] *= np.float32(INIT_WEIGHT_STD)
                else:
                    flat[lo:hi] = np.float32(layer.bias_init)
        return flat

    def _views(self, flat):
        return {name: flat[lo:hi].reshape(self.param_shapes[name]) for name, (lo, hi) in self._offsets.items()}

    def _empty(self, shape, dtype):
        if self.device == "cpu":
            return np.empty(shape, dtype)
        from numba import cuda

        return cuda.device_array(shape, dtype)

    def _workspace(self, n):
        ws = self._workspaces.pop(n, None) or _Workspace(self, n)
        self._workspaces[n] = ws  # most recently used last
        while len(self._workspaces) > MAX_CACHED_BATCH_SIZES:
            del self._workspaces[next(iter(self._workspaces))]
        return ws

    @property
    def sample_offset(self):
        """Position of this batch's first sample in the global batch: 0 in one process; a
        data-parallel rank's share start (refnet.distributed), which keeps the dropout masks of
        every sample equal to those of one process training on the whole batch."""
        return self._sample_offset

    @sample_offset.setter
    def sample_offset(self, value):
        self._sample_offset = check_positive_int("sample_offset", value, minimum=0)

    @property
    def step(self):
        """Training steps taken: forward_backward's count, which picks the dropout masks. A trainer
        resuming from a checkpoint sets it to the checkpoint's step."""
        return self._step

    @step.setter
    def step(self, value):
        self._step = check_positive_int("step", value, minimum=0)

    @classmethod
    def from_network_config(cls, record, device="cpu", seed=0):
        """The network a `network_config` record describes (its `layers` list is checked)."""
        check_network_config(record)
        settings = {key: record[key] for key in NETWORK_KEYS if key != "layers"}
        return cls(**settings, device=device, seed=seed)

    # ------------------------------------------------------------------ information
    def network_config(self):
        """What rebuilds this graph (AlexNet.from_network_config), with its layer names in order:
        the `network` record of a checkpoint."""
        return network_config(self.variant, self.num_classes, self.input_size, self.dropout, self.order, self.lrn)

    def param_count(self):
        """Number of parameters (the size of each flat buffer): 62,378,344 for the seed variant at
        227 with 1000 classes, 60,965,224 for the paper variant."""
        return self._size

    def summary(self):
        """The per-layer table (output shape, parameters, multiply-adds) with totals, as a string."""
        from .summary import format_summary

        return format_summary(self.layers, self.variant, self.input_size, self.order)

    # ------------------------------------------------------------------ state
    def _host_copies(self, flat):
        if self.device == "cpu":
            host = flat.copy()
        else:
            host = flat.copy_to_host()
        return {name: host[lo:hi].reshape(self.param_shapes[name]) for name, (lo, hi) in self._offsets.items()}

    def _load_flat(self, flat, arrays, what):
        expected = set(self._offsets)
        given = set(arrays)
        if given != expected:
            missing = sorted(expected - given, key=list(self._offsets).index)
            unexpected = sorted(given - expected)
            raise ValueError(f"{what}: names do not match the network: missing {missing}, unexpected {unexpected}")
        host = np.empty(self._size, np.float32)
        for name, (lo, hi) in self._offsets.items():
            value = arrays[name]
            if not isinstance(value, np.ndarray):
                raise ValueError(f"{what}[{name!r}]: expected a numpy array, got {type(value).__name__}")
            if value.dtype != np.float32:
                raise ValueError(f"{what}[{name!r}]: expected dtype float32, got {value.dtype}")
            if value.shape != self.param_shapes[name]:
                raise ValueError(f"{what}[{name!r}]: expected shape {self.param_shapes[name]}, got {value.shape}")
            host[lo:hi] = value.reshape(-1)
        if self.device == "cpu":
            flat[...] = host
        else:
            flat.copy_to_device(host)

    def state_dict(self):
        """{name: numpy float32 copy} of the parameters."""
        return self._host_copies(self.flat_params)

    def load_state_dict(self, arrays):
        """Copy parameters in; every name must be present with its exact shape and dtype float32."""
        self._load_flat(self.flat_params, arrays, "state_dict")

    def grad_dict(self):
        """{name: numpy float32 copy} of the gradients of the last forward_backward."""
        return self._host_copies(self.flat_grads)

    def momentum_dict(self):
        """{name: numpy float32 copy} of the SGD velocity (for checkpoints)."""
        return self._host_copies(self.flat_momentum)

    def load_momentum_dict(self, arrays):
        """Copy the SGD velocity in, checked like load_state_dict."""
        self._load_flat(self.flat_momentum, arrays, "momentum")

    # ------------------------------------------------------------------ compute
    def _check_batch(self, x):
        check_array("x", x, ndim=4)
        expected = self.layers[0].in_shape
        if tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"x: expected shape (N, {', '.join(map(str, expected))}) (NCHW images of input_size "
                f"{self.input_size}), got {tuple(x.shape)}"
            )
        n = int(x.shape[0])
        if n < 1:
            raise ValueError("x: expected a batch of at least one image, got 0")
        return n

    def _batch_on_device(self, x, ws):
        """The batch as an array of the net's backend: copied to the GPU when a host batch is given."""
        from .device import is_device_array

        if self.device == "cpu":
            if is_device_array(x):
                raise ValueError("x: expected a numpy array for a device='cpu' network, got a CUDA device array")
            return x
        if is_device_array(x):
            return x
        _upload(ws.batch, ws.host_batch, x, ws.uploads)
        return ws.batch

    def forward(self, x, train=False):
        """Logits (N, num_classes) of a float32 batch (N, 3, input_size, input_size).

        train=True drops units with the masks of the current `step`. The result is a fresh numpy
        array for a numpy batch; for a CUDA device batch it is the net's own device buffer, valid
        until the next call.
        """
        from .device import is_device_array

        n = self._check_batch(x)
        ws = self._workspace(n)
        self._forward(ws, self._batch_on_device(x, ws), train)
        logits = ws.acts[-1]
        if self.device == "cpu":
            return logits.copy()
        return logits if is_device_array(x) else logits.copy_to_host()

    def last_logits(self, n):
        """A numpy copy of the logits of the last forward pass (or forward_backward) over a batch
        of size n."""
        return self.last_activation(len(self.layers) - 1, n)

    def last_activation(self, layer_index, n):
        """A numpy copy of layer `layer_index`'s output (n, *out_shape) from the last forward pass
        (or forward_backward) over a batch of size n."""
        if n not in self._workspaces:
            raise ValueError(f"n: no forward pass over a batch of {n} is held (held: {sorted(self._workspaces)})")
        if not 0 <= layer_index < len(self.layers):
            raise ValueError(f"layer_index: expected 0..{len(self.layers) - 1}, got {layer_index}")
        out = self._workspaces[n].acts[layer_index]
        return out.copy() if self.device == "cpu" else out.copy_to_host()

    def _forward(self, ws, x, train):
        from . import ops

        for i, layer in enumerate(self.layers):
            src = x if i == 0 else ws.inputs[i]
            y = ws.acts[i]
            if layer.kind == "conv":
                w, b = self.params[f"{layer.name}.weight"], self.params[f"{layer.name}.bias"]
                ops.conv2d_forward(src, w, b, layer.stride, layer.pad, layer.groups, out=y)
            elif layer.kind == "linear":
                w, b = self.params[f"{layer.name}.weight"], self.params[f"{layer.name}.bias"]
                ops.linear_forward(src, w, b, out=y)
            elif layer.kind == "relu":
                ops.relu_forward(src, out=y)
            elif layer.kind == "maxpool":
                ops.maxpool2d_forward(src, layer.size, layer.stride, out=(y, ws.argmax[i]))
            elif layer.kind == "lrn":
                c = layer.lrn
                ops.lrn_forward(src, c.size, c.alpha, c.beta, c.k, out=(y, ws.scale[i]))
            elif layer.kind == "dropout":
                if train:
                    # Sample j of this batch is sample `sample_offset + j` of the global batch (a
                    # data-parallel rank's share), so its mask is the one a single process draws.
                    first_element = self.sample_offset * int(np.prod(layer.out_shape))
                    seed = seed_from_element(dropout_seed(self.seed, self.step, i), first_element)
                    ops.dropout_forward(src, layer.p, seed, train=True, out=(y, ws.mask[i]))
                else:
                    ops.dropout_forward(src, layer.p, 0, train=False, out=(y, None))
            else:
                raise AssertionError(f"unknown layer kind {layer.kind!r}")

    def _check_labels(self, labels, n):
        if not isinstance(labels, np.ndarray):
            raise ValueError(f"labels: expected a numpy int32 array, got {type(labels).__name__}")
        check_array("labels", labels, ndim=1, dtype=np.int32, shape=(n,))
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= self.num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(f"labels: expected values in [0, {self.num_classes - 1}], got {bad}")

    def forward_backward(self, x, labels):
        """One training-mode pass: the mean cross-entropy loss over the batch (a float), with every
        gradient in `grads` overwritten. Advances `step` by one (the next call draws new masks)."""
        from . import ops

        n = self._check_batch(x)
        self._check_labels(labels, n)
        ws = self._workspace(n)
        ws.ensure_gradients()
        x = self._batch_on_device(x, ws)
        if self.device == "cuda":
            _upload(ws.labels, ws.host_labels, labels, ws.uploads)
            labels = ws.labels

        self._forward(ws, x, train=True)
        loss, _ = ops.softmax_cross_entropy(ws.acts[-1], labels, out=ws.probs, row_loss=ws.row_loss)
        ops.softmax_cross_entropy_backward(ws.probs, labels, out=ws.d_out[-1])
        self._backward(ws, x)
        self.step += 1
        return float(loss)

    def _backward(self, ws, x):
        from . import ops

        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            src = x if i == 0 else ws.inputs[i]
            dy, dx = ws.d_out[i], ws.d_in[i]
            if layer.kind == "conv":
                w = self.params[f"{layer.name}.weight"]
                dw, db = self.grads[f"{layer.name}.weight"], self.grads[f"{layer.name}.bias"]
                ops.conv2d_backward(src, w, dy, layer.stride, layer.pad, layer.groups,
                                    need_dx=dx is not None, out=(dx, dw, db))  # fmt: skip
            elif layer.kind == "linear":
                w = self.params[f"{layer.name}.weight"]
                dw, db = self.grads[f"{layer.name}.weight"], self.grads[f"{layer.name}.bias"]
                ops.linear_backward(src, w, dy, need_dx=dx is not None, out=(dx, dw, db))
            elif layer.kind == "relu":
                ops.relu_backward(ws.acts[i], dy, out=dx)
            elif layer.kind == "maxpool":
                ops.maxpool2d_backward(dy, ws.argmax[i], tuple(src.shape), out=dx)
            elif layer.kind == "lrn":
                c = layer.lrn
                ops.lrn_backward(src, ws.acts[i], ws.scale[i], dy, c.size, c.alpha, c.beta, c.k, out=dx)
            elif layer.kind == "dropout":
                ops.dropout_backward(dy, ws.mask[i], out=dx)
            else:
                raise AssertionError(f"unknown layer kind {layer.kind!r}")
