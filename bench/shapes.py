"""AlexNet's layer shapes for one batch size: what every benchmark case runs at.

The shapes come from refnet.model's layer table (conv -> relu -> max-pool -> LRN in the first two
blocks), so they are the network's own for any input size it accepts; this module adds the batch,
the work each case does (FLOPs), and the three GEMMs of each FC layer. The paper variant differs
only in groups=2 for conv2, conv4 and conv5.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ConvShape:
    name: str
    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride: int
    pad: int
    groups: int = 1

    @property
    def p(self) -> int:
        return (self.h + 2 * self.pad - self.r) // self.stride + 1

    @property
    def q(self) -> int:
        return (self.w + 2 * self.pad - self.s) // self.stride + 1

    @property
    def x_shape(self):
        return (self.n, self.c, self.h, self.w)

    @property
    def w_shape(self):
        return (self.k, self.c // self.groups, self.r, self.s)

    @property
    def y_shape(self):
        return (self.n, self.k, self.p, self.q)

    @property
    def flops(self) -> int:
        """Floating-point operations of one pass (forward, backward-data or backward-filter alike)."""
        return 2 * self.n * self.k * self.p * self.q * (self.c // self.groups) * self.r * self.s

    def describe(self) -> str:
        g = f" g{self.groups}" if self.groups > 1 else ""
        return (f"{self.n}x{self.c}x{self.h}x{self.w} * {self.k}x{self.r}x{self.s}"
                f" s{self.stride} p{self.pad}{g}")


@dataclass(frozen=True)
class PoolShape:
    name: str
    n: int
    c: int
    h: int
    w: int
    size: int = 3
    stride: int = 2

    @property
    def x_shape(self):
        return (self.n, self.c, self.h, self.w)

    @property
    def y_shape(self):
        p = (self.h - self.size) // self.stride + 1
        q = (self.w - self.size) // self.stride + 1
        return (self.n, self.c, p, q)

    def describe(self) -> str:
        return f"{self.n}x{self.c}x{self.h}x{self.w} {self.size}/{self.stride}"


@dataclass(frozen=True)
class TensorShape:
    """An activation an elementwise or per-channel op runs over (ReLU, LRN, dropout, softmax)."""

    name: str
    shape: tuple

    @property
    def size(self) -> int:
        total = 1
        for d in self.shape:
            total *= d
        return total

    def describe(self) -> str:
        return "x".join(str(d) for d in self.shape)


@dataclass(frozen=True)
class GemmShape:
    """c (m, n) = op(a) @ op(b) with inner dimension k; op transposes when trans_a / trans_b."""

    name: str
    m: int
    n: int
    k: int
    trans_a: bool
    trans_b: bool

    @property
    def a_shape(self):
        return (self.k, self.m) if self.trans_a else (self.m, self.k)

    @property
    def b_shape(self):
        return (self.n, self.k) if self.trans_b else (self.k, self.n)

    @property
    def flops(self) -> int:
        return 2 * self.m * self.n * self.k

    def describe(self) -> str:
        """BLAS style: m x n x k, then N or T for each operand."""
        return f"{self.m}x{self.n}x{self.k} {'T' if self.trans_a else 'N'}{'T' if self.trans_b else 'N'}"


@dataclass(frozen=True)
class AlexNetShapes:
    batch: int
    input_size: int
    convs: tuple
    pools: tuple
    lrns: tuple
    relus: tuple
    dropouts: tuple
    fcs: tuple  # (name, in_features, out_features)
    logits: TensorShape

    def gemms(self):
        """The three GEMMs of every FC layer (y = x @ w.T, w of shape (out, in)):
        forward y = x @ w.T, backward-data dx = dy @ w, backward-filter dw = dy.T @ x."""
        n = self.batch
        out = []
        for name, fan_in, fan_out in self.fcs:
            out.append((f"{name} fwd", GemmShape(name, n, fan_out, fan_in, False, True)))
            out.append((f"{name} bwd-data", GemmShape(name, n, fan_in, fan_out, False, False)))
            out.append((f"{name} bwd-filter", GemmShape(name, fan_out, fan_in, n, True, False)))
        return out


def alexnet_shapes(batch: int, input_size: int = 227, variant: str = "seed", num_classes: int = 1000) -> AlexNetShapes:
    """Every layer's shape for a batch of `batch` images of `input_size` x `input_size` x 3, read
    from refnet.model's layer table (the one place the graph is defined)."""
    from refnet.model import build_layers

    n = batch
    convs, pools, lrns, relus, dropouts, fcs = [], [], [], [], [], []
    for layer in build_layers(variant, num_classes, input_size):
        if layer.kind == "conv":
            c, h, w = layer.in_shape
            convs.append(ConvShape(layer.name, n, c, h, w, layer.out_channels, layer.size, layer.size,
                                   layer.stride, layer.pad, layer.groups))
        elif layer.kind == "maxpool":
            c, h, w = layer.in_shape
            pools.append(PoolShape(layer.name, n, c, h, w, layer.size, layer.stride))
        elif layer.kind == "linear":
            fcs.append((layer.name, layer.in_shape[0], layer.out_channels))
        elif layer.kind in ("lrn", "relu", "dropout"):
            group = {"lrn": lrns, "relu": relus, "dropout": dropouts}[layer.kind]
            group.append(TensorShape(layer.name, (n,) + tuple(layer.in_shape)))
    return AlexNetShapes(n, input_size, tuple(convs), tuple(pools), tuple(lrns), tuple(relus), tuple(dropouts),
                         tuple(fcs), TensorShape("softmax", (n, num_classes)))


def parameter_count(shapes: AlexNetShapes) -> int:
    """Weights and biases of every conv and FC layer (62,378,344 for the seed variant at 227)."""
    total = sum(c.k * (c.c // c.groups) * c.r * c.s + c.k for c in shapes.convs)
    return total + sum(i * o + o for _, i, o in shapes.fcs)


def forward_flops_per_image(shapes: AlexNetShapes) -> int:
    """Conv and FC floating-point operations of one image's forward pass (2 per multiply-add)."""
    conv = sum(c.flops for c in shapes.convs) // shapes.batch
    return conv + sum(2 * i * o for _, i, o in shapes.fcs)
