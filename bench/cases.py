"""The benchmark cases: each refnet op at each AlexNet shape, its peer, and the check between them.

A Case says what it measures (name, shape, work: FLOPs or bytes or images) and how to build it;
`prepare(backend)` allocates the inputs and returns a Prepared with the refnet call, the peer
call (None without a peer) and `check()`, which runs both once and compares the outputs. Nothing
is allocated until a case is prepared, so one case's arrays are freed before the next one's.

Bytes of a memory-bound op count every array read and written once (float32: 4 bytes, masks
1 byte, argmax 4 bytes): the least traffic any implementation needs.
"""

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .peers import LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE, numpy_gemm, torch_alexnet, torch_training_step
from .shapes import AlexNetShapes, forward_flops_per_image, parameter_count

DROPOUT_P = 0.5


@dataclass
class Prepared:
    run: Callable[[int], object]
    peer: Optional[Callable[[int], object]]
    check: Callable[[], Optional[str]]  # None when refnet agrees with the peer, else what differs
    checked_against: str = "peer"


@dataclass
class Case:
    op: str            # conv, gemm, maxpool, lrn, relu, dropout, softmax, sgd, step
    name: str          # "conv1 fwd"
    shape: str
    prepare: Callable[[object], Prepared]
    flops: int = 0     # compute-bound cases
    nbytes: int = 0    # memory-bound cases
    images: int = 0    # whole-network cases


def compare(what, got, want, rtol=1e-3, atol_rel=1e-3) -> Optional[str]:
    """None when |got - want| <= atol_rel * max|want| + rtol * |want| everywhere, else a message."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return f"{what}: shape {got.shape}, peer {want.shape}"
    scale = float(np.abs(want).max()) if want.size else 0.0
    err = np.abs(got - want)
    bad = ~(err <= atol_rel * scale + rtol * np.abs(want))  # NaN counts as bad
    if bad.any():
        worst = float(np.nanmax(err)) if np.isfinite(err).any() else float("nan")
        return (f"{what}: {int(bad.sum())} of {got.size} elements differ, max |diff| {worst:.3g}"
                f" (peer max |value| {scale:.3g})")
    return None


def first_error(*messages) -> Optional[str]:
    return next((m for m in messages if m), None)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _uniform(rng, shape, scale=1.0):
    return (rng.random(shape, dtype=np.float32) * 2 - 1) * np.float32(scale)


def _rotated(backend, make, *hosts):
    """`copies` sets of the host arrays moved with `make`, as a list of tuples (one per copy)."""
    nbytes = sum(h.nbytes for h in hosts)
    return [tuple(make(h) for h in hosts) for _ in range(backend.copies(nbytes))]


def _ops():
    from refnet import ops

    return ops


def _forward_backward_cases(op, tensors, prepare, fwd_bytes_per_element, bwd_bytes_per_element):
    """A forward and a backward case per activation, for ops whose traffic scales with its size."""
    cases = []
    for t in tensors:
        cases.append(Case(op, f"{t.name} fwd", t.describe(), prepare(t, False), nbytes=fwd_bytes_per_element * t.size))
        cases.append(Case(op, f"{t.name} bwd", t.describe(), prepare(t, True), nbytes=bwd_bytes_per_element * t.size))
    return cases


# ---------------------------------------------------------------- convolution


def conv_cases(shapes: AlexNetShapes):
    cases = []
    for c in shapes.convs:
        cases.append(Case("conv", f"{c.name} fwd", c.describe(), _conv_prepare(c, "fwd"), flops=c.flops))
        cases.append(Case("conv", f"{c.name} bwd-filter", c.describe(), _conv_prepare(c, "filter"), flops=c.flops))
        cases.append(Case("conv", f"{c.name} bwd-data+filter", c.describe(), _conv_prepare(c, "data+filter"),
                          flops=2 * c.flops))
    return cases


def _conv_prepare(c, part):
    def prepare(be):
        ops, torch = _ops(), be.torch
        rng = _rng()
        fan_in = (c.c // c.groups) * c.r * c.s
        x = _uniform(rng, c.x_shape)
        w = _uniform(rng, c.w_shape, 1 / np.sqrt(fan_in))
        b = _uniform(rng, (c.k,), 0.1)
        dy = _uniform(rng, c.y_shape)
        sets = _rotated(be, be.array, x, w, dy)
        bias = be.array(b)
        need_dx = part == "data+filter"
        if part == "fwd":
            y = be.empty(c.y_shape)

            def run(i):
                xi, wi, _ = sets[i % len(sets)]
                return ops.conv2d_forward(xi, wi, bias, c.stride, c.pad, c.groups, out=y)
        else:
            dx = be.empty(c.x_shape) if need_dx else None
            dw, db = be.empty(c.w_shape), be.empty((c.k,))

            def run(i):
                xi, wi, dyi = sets[i % len(sets)]
                return ops.conv2d_backward(xi, wi, dyi, c.stride, c.pad, c.groups, need_dx=need_dx,
                                           out=(dx, dw, db))

        if torch is None:
            return Prepared(run, None, lambda: None, "nothing (no torch)")
        tsets = _rotated(be, be.tensor, x, w, dy)
        tbias = be.tensor(b)
        aten_conv_backward = torch.ops.aten.convolution_backward

        if part == "fwd":
            def peer(i):
                xt, wt, _ = tsets[i % len(tsets)]
                return torch.nn.functional.conv2d(xt, wt, tbias, c.stride, c.pad, 1, c.groups)
        else:
            def peer(i):
                xt, wt, dyt = tsets[i % len(tsets)]
                return aten_conv_backward(dyt, xt, wt, [c.k], [c.stride] * 2, [c.pad] * 2, [1, 1], False,
                                          [0, 0], c.groups, [need_dx, True, True])

        def check():
            run(0)
            got = peer(0)
            if part == "fwd":
                return compare("y", be.host(y), be.peer_host(got))
            return first_error(
                compare("dx", be.host(dx), be.peer_host(got[0])) if need_dx else None,
                compare("dw", be.host(dw), be.peer_host(got[1])),
                compare("db", be.host(db), be.peer_host(got[2])),
            )

        return Prepared(run, peer, check)

    return prepare


# ---------------------------------------------------------------- GEMM (the FC layers)


def gemm_cases(shapes: AlexNetShapes):
    return [Case("gemm", name, g.describe(), _gemm_prepare(g), flops=g.flops) for name, g in shapes.gemms()]


def _gemm_prepare(g):
    def prepare(be):
        ops = _ops()
        rng = _rng()
        a = _uniform(rng, g.a_shape)
        b = _uniform(rng, g.b_shape)
        sets = _rotated(be, be.array, a, b)
        c = be.empty((g.m, g.n))

        def run(i):
            ai, bi = sets[i % len(sets)]
            return ops.gemm(ai, bi, g.trans_a, g.trans_b, c=c)

        if be.name == "cpu":
            c_peer = np.empty((g.m, g.n), dtype=np.float32)

            def peer(i):
                return numpy_gemm(sets[i % len(sets)][0], sets[i % len(sets)][1], g.trans_a, g.trans_b, out=c_peer)
            to_host = np.asarray
        elif be.torch is not None:
            tsets = _rotated(be, be.tensor, a, b)

            def peer(i):
                at, bt = tsets[i % len(tsets)]
                return be.torch.matmul(at.T if g.trans_a else at, bt.T if g.trans_b else bt)
            to_host = be.peer_host
        else:
            return Prepared(run, None, lambda: None, "nothing (no torch)")

        def check():
            run(0)
            return compare("c", be.host(c), to_host(peer(0)))

        return Prepared(run, peer, check)

    return prepare


# ---------------------------------------------------------------- max-pool


def maxpool_cases(shapes: AlexNetShapes):
    cases = []
    for p in shapes.pools:
        n_in, n_out = int(np.prod(p.x_shape)), int(np.prod(p.y_shape))
        cases.append(Case("maxpool", f"{p.name} fwd", p.describe(), _maxpool_prepare(p, False),
                          nbytes=4 * n_in + 8 * n_out))
        cases.append(Case("maxpool", f"{p.name} bwd", p.describe(), _maxpool_prepare(p, True),
                          nbytes=8 * n_out + 4 * n_in))
    return cases


def _maxpool_prepare(p, backward):
    def prepare(be):
        ops, torch = _ops(), be.torch
        rng = _rng()
        x = _uniform(rng, p.x_shape)
        dy = _uniform(rng, p.y_shape)
        y_host, argmax_host = ops.maxpool2d_forward(x, p.size, p.stride)
        if not backward:
            sets = _rotated(be, be.array, x)
            y, argmax = be.empty(p.y_shape), be.empty(p.y_shape, np.int32)

            def run(i):
                return ops.maxpool2d_forward(sets[i % len(sets)][0], p.size, p.stride, out=(y, argmax))
        else:
            sets = _rotated(be, be.array, dy, argmax_host)
            dx = be.empty(p.x_shape)

            def run(i):
                dyi, ai = sets[i % len(sets)]
                return ops.maxpool2d_backward(dyi, ai, p.x_shape, out=dx)

        if torch is None:
            return Prepared(run, None, lambda: None, "nothing (no torch)")
        F = torch.nn.functional
        tsets = _rotated(be, be.tensor, x, dy, argmax_host.astype(np.int64))
        k, s = [p.size] * 2, [p.stride] * 2

        if not backward:
            def peer(i):
                return F.max_pool2d(tsets[i % len(tsets)][0], p.size, p.stride, return_indices=True)
        else:
            def peer(i):
                xt, dyt, it = tsets[i % len(tsets)]
                return torch.ops.aten.max_pool2d_with_indices_backward(dyt, xt, k, s, [0, 0], [1, 1], False, it)

        def check():
            run(0)
            got = peer(0)
            if not backward:
                want_y, want_idx = got
                mismatch = int((be.host(argmax) != be.peer_host(want_idx)).sum())
                return first_error(compare("y", be.host(y), be.peer_host(want_y)),
                                   f"argmax: {mismatch} positions differ" if mismatch else None)
            return compare("dx", be.host(dx), be.peer_host(got))

        return Prepared(run, peer, check)

    return prepare


# ---------------------------------------------------------------- LRN


def lrn_cases(shapes: AlexNetShapes):
    return _forward_backward_cases("lrn", shapes.lrns, _lrn_prepare, 3 * 4, 5 * 4)


def _lrn_prepare(t, backward):
    def prepare(be):
        ops, torch = _ops(), be.torch
        rng = _rng()
        # Post-ReLU, post-pool activations of a trained AlexNet are O(1..10): large enough that
        # the normaliser differs from k**beta, which is what the check should see.
        x = _uniform(rng, t.shape, 5.0)
        dy = _uniform(rng, t.shape)
        args = (LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K)
        if not backward:
            sets = _rotated(be, be.array, x)
            y, scale = be.empty(t.shape), be.empty(t.shape)

            def run(i):
                return ops.lrn_forward(sets[i % len(sets)][0], *args, out=(y, scale))
        else:
            y_host, scale_host = ops.lrn_forward(x, *args)
            sets = _rotated(be, be.array, x, y_host, scale_host, dy)
            dx = be.empty(t.shape)

            def run(i):
                return ops.lrn_backward(*sets[i % len(sets)], *args, out=dx)

        if torch is None:
            return Prepared(run, None, lambda: None, "nothing (no torch)")
        F = torch.nn.functional

        def torch_lrn(xt):
            # PyTorch divides alpha by the window size; the paper's alpha is not divided.
            return F.local_response_norm(xt, LRN_SIZE, alpha=LRN_ALPHA * LRN_SIZE, beta=LRN_BETA, k=LRN_K)

        if not backward:
            tsets = _rotated(be, be.tensor, x)

            def peer(i):
                return torch_lrn(tsets[i % len(tsets)][0])
        else:
            graphs = []
            for _ in range(be.copies(2 * x.nbytes)):
                xt = be.tensor(x).requires_grad_(True)
                graphs.append((xt, torch_lrn(xt), be.tensor(dy)))

            def peer(i):
                xt, yt, dyt = graphs[i % len(graphs)]
                return torch.autograd.grad(yt, xt, dyt, retain_graph=True)[0]

        def check():
            run(0)
            got = be.peer_host(peer(0))
            return compare("dx" if backward else "y", be.host(dx if backward else y), got)

        return Prepared(run, peer, check)

    return prepare


# ---------------------------------------------------------------- ReLU


def relu_cases(shapes: AlexNetShapes):
    return _forward_backward_cases("relu", shapes.relus, _relu_prepare, 2 * 4, 3 * 4)


def _relu_prepare(t, backward):
    def prepare(be):
        ops, torch = _ops(), be.torch
        rng = _rng()
        x = _uniform(rng, t.shape)
        y_host = np.maximum(x, 0)  # host-side setup only, not timed
        dy = _uniform(rng, t.shape)
        if not backward:
            sets = _rotated(be, be.array, x)
            y = be.empty(t.shape)

            def run(i):
                return ops.relu_forward(sets[i % len(sets)][0], out=y)
        else:
            sets = _rotated(be, be.array, y_host, dy)
            dx = be.empty(t.shape)

            def run(i):
                return ops.relu_backward(*sets[i % len(sets)], out=dx)

        if torch is None:
            return Prepared(run, None, _relu_numpy_check(be, run, y if not backward else dx, x, y_host, dy, backward),
                            "numpy (no torch)")
        if not backward:
            tsets = _rotated(be, be.tensor, x)

            def peer(i):
                return torch.relu(tsets[i % len(tsets)][0])
        else:
            tsets = _rotated(be, be.tensor, y_host, dy)

            def peer(i):
                yt, dyt = tsets[i % len(tsets)]
                return torch.ops.aten.threshold_backward(dyt, yt, 0.0)

        def check():
            run(0)
            return compare("dx" if backward else "y", be.host(dx if backward else y), be.peer_host(peer(0)), 0, 0)

        return Prepared(run, peer, check)

    return prepare


def _relu_numpy_check(be, run, out, x, y_host, dy, backward):
    def check():
        run(0)
        want = np.where(y_host > 0, dy, 0) if backward else y_host
        return compare("dx" if backward else "y", be.host(out), want, 0, 0)

    return check


# ---------------------------------------------------------------- dropout


def dropout_cases(shapes: AlexNetShapes):
    return _forward_backward_cases("dropout", shapes.dropouts, _dropout_prepare, 9, 9)


def _dropout_prepare(t, backward):
    def prepare(be):
        ops, torch = _ops(), be.torch
        rng = _rng()
        x = _uniform(rng, t.shape)
        dy = _uniform(rng, t.shape)
        _, mask_host = ops.dropout_forward(x, DROPOUT_P, 1234)
        if not backward:
            sets = _rotated(be, be.array, x)
            y, mask = be.empty(t.shape), be.empty(t.shape, np.uint8)

            def run(i):
                return ops.dropout_forward(sets[i % len(sets)][0], DROPOUT_P, 1234, out=(y, mask))
        else:
            sets = _rotated(be, be.array, dy, mask_host)
            dx = be.empty(t.shape)

            def run(i):
                return ops.dropout_backward(*sets[i % len(sets)], out=dx)

        def check_own_definition():
            # The masks of two libraries' RNGs never agree, so the forward is checked against its
            # own definition: y = x where the mask keeps, 0 where it drops, about p dropped.
            run(0)
            got_mask = be.host(mask)
            kept = float(got_mask.mean())
            five_sigma = 5 * np.sqrt(DROPOUT_P * (1 - DROPOUT_P) / got_mask.size)
            return first_error(compare("y", be.host(y), x * got_mask, 0, 0),
                               None if abs(kept - (1 - DROPOUT_P)) <= five_sigma
                               else f"mask keeps {kept:.4f} of units, expected {1 - DROPOUT_P} +- {five_sigma:.4f}")

        if torch is None:
            if backward:
                def check_numpy():
                    run(0)
                    return compare("dx", be.host(dx), dy * mask_host, 0, 0)
                return Prepared(run, None, check_numpy, "numpy (no torch)")
            return Prepared(run, None, check_own_definition, "its definition")
        F = torch.nn.functional
        if not backward:
            tsets = _rotated(be, be.tensor, x)

            def peer(i):
                return F.dropout(tsets[i % len(tsets)][0], DROPOUT_P, training=True)
            return Prepared(run, peer, check_own_definition, "its definition")

        tsets = _rotated(be, be.tensor, dy, mask_host.astype(bool))

        def peer(i):
            dyt, mt = tsets[i % len(tsets)]
            return torch.ops.aten.native_dropout_backward(dyt, mt, 1.0)  # the paper keeps units unscaled

        def check():
            run(0)
            return compare("dx", be.host(dx), be.peer_host(peer(0)), 0, 0)

        return Prepared(run, peer, check)

    return prepare


# ---------------------------------------------------------------- softmax cross-entropy


def softmax_cases(shapes: AlexNetShapes):
    t = shapes.logits
    return [Case("softmax", "softmax-xent fwd", t.describe(), _softmax_prepare(t, False), nbytes=2 * 4 * t.size),
            Case("softmax", "softmax-xent bwd", t.describe(), _softmax_prepare(t, True), nbytes=2 * 4 * t.size)]


def _softmax_prepare(t, backward):
    def prepare(be):
        ops, torch = _ops(), be.torch
        rng = _rng()
        n, classes = t.shape
        logits = _uniform(rng, t.shape, 5.0)
        labels = rng.integers(0, classes, n).astype(np.int32)
        loss_host, probs_host = ops.softmax_cross_entropy(logits, labels)
        if not backward:
            sets = _rotated(be, be.array, logits, labels)
            probs, row_loss = be.empty(t.shape), be.empty((n,))

            def run(i):
                return ops.softmax_cross_entropy(*sets[i % len(sets)], out=probs, row_loss=row_loss)
        else:
            sets = _rotated(be, be.array, probs_host, labels)
            dlogits = be.empty(t.shape)

            def run(i):
                return ops.softmax_cross_entropy_backward(*sets[i % len(sets)], out=dlogits)

        if torch is None:
            return Prepared(run, None, lambda: None, "nothing (no torch)")
        F = torch.nn.functional
        graphs = []
        for _ in range(be.copies(logits.nbytes)):
            lt = be.tensor(logits).requires_grad_(True)
            labels_t = be.tensor(labels.astype(np.int64))
            graphs.append((lt, labels_t, F.cross_entropy(lt, labels_t)))
        if not backward:
            def peer(i):
                lt, labels_t, _ = graphs[i % len(graphs)]
                with torch.no_grad():
                    return F.cross_entropy(lt, labels_t)
        else:
            def peer(i):
                lt, _, loss_t = graphs[i % len(graphs)]
                return torch.autograd.grad(loss_t, lt, retain_graph=True)[0]

        def check():
            result = run(0)
            if not backward:
                lt = graphs[0][0]
                want_probs = be.peer_host(torch.softmax(lt.detach(), dim=1))
                return first_error(compare("loss", np.float64(result[0]), float(peer(0))),
                                   compare("probs", be.host(probs), want_probs))
            return compare("dlogits", be.host(dlogits), be.peer_host(peer(0)))

        return Prepared(run, peer, check)

    return prepare


# ---------------------------------------------------------------- SGD over every parameter


def sgd_cases(shapes: AlexNetShapes):
    n = parameter_count(shapes)
    return [Case("sgd", "sgd momentum", f"{n:,} params", _sgd_prepare(n), nbytes=5 * 4 * n)]


def _sgd_prepare(n):
    lr, momentum, wd = 0.01, 0.9, 5e-4

    def prepare(be):
        ops, torch = _ops(), be.torch
        rng = _rng()
        w_host = _uniform(rng, (n,), 0.01)
        dw_host = _uniform(rng, (n,), 0.01)
        w, dw, v = be.array(w_host), be.array(dw_host), be.zeros_like(w_host)

        def run(i):
            ops.sgd_momentum_update(w, dw, v, lr, momentum, wd)

        if torch is None:
            return Prepared(run, None, lambda: None, "nothing (no torch)")
        wt = be.tensor(w_host)
        wt.grad = be.tensor(dw_host)
        optimizer = torch.optim.SGD([wt], lr=lr, momentum=momentum, weight_decay=wd)

        def peer(i):
            optimizer.step()

        def check():
            # Two steps from fresh copies on both sides: the second one tests the momentum rule.
            w1, dw1, v1 = be.array(w_host), be.array(dw_host), be.zeros_like(w_host)
            wt1 = be.tensor(w_host)
            wt1.grad = be.tensor(dw_host)
            opt1 = torch.optim.SGD([wt1], lr=lr, momentum=momentum, weight_decay=wd)
            for _ in range(2):
                ops.sgd_momentum_update(w1, dw1, v1, lr, momentum, wd)
                opt1.step()
            return compare("w after two steps", be.host(w1), be.peer_host(wt1), 1e-5, 1e-5)

        return Prepared(run, peer, check)

    return prepare


# ---------------------------------------------------------------- the whole network


def refnet_training_step(net, lr=0.01, momentum=0.9, weight_decay=5e-4):
    """step(x, labels) -> loss: net.forward_backward, then the paper's SGD, one call over the
    network's flat parameter, gradient and momentum buffers."""
    ops = _ops()

    def step(x, labels):
        loss = net.forward_backward(x, labels)
        ops.sgd_momentum_update(net.flat_params, net.flat_grads, net.flat_momentum, lr, momentum, weight_decay)
        return loss

    return step


def step_cases(shapes: AlexNetShapes):
    fwd = forward_flops_per_image(shapes) * shapes.batch
    desc = f"AlexNet seed {shapes.batch}x3x{shapes.input_size}x{shapes.input_size}"
    # A training step costs about three forward passes: forward, backward-data, backward-filter.
    return [Case("step", "train step", desc, _step_prepare(shapes, True), flops=3 * fwd, images=shapes.batch),
            Case("step", "forward", desc, _step_prepare(shapes, False), flops=fwd, images=shapes.batch)]


def _step_prepare(shapes, train):
    def prepare(be):
        import refnet

        torch = be.torch
        rng = _rng()
        size, n = shapes.input_size, shapes.batch
        x = rng.standard_normal((n, 3, size, size), dtype=np.float32)
        labels = rng.integers(0, 1000, n).astype(np.int32)
        net = refnet.AlexNet(variant="seed", input_size=size, device=be.name, seed=0)
        xd = be.array(x)  # on the GPU the batch is already resident, as it is for the peer
        if train:
            step = refnet_training_step(net)

            def run(i):
                return step(xd, labels)  # labels stay a host array: the network copies them in
        else:
            def run(i):
                return net.forward(xd, train=False)

        if torch is None:
            return Prepared(run, None, lambda: None, "nothing (no torch)")
        twin = torch_alexnet(torch, "seed", size).to(be.tensor(x).device)
        twin.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
        xt, labels_t = be.tensor(x), be.tensor(labels.astype(np.int64))
        if train:
            torch_step = torch_training_step(torch, twin)

            def peer(i):
                return torch_step(xt, labels_t)

            def check():
                return _check_gradients(be, size)

            return Prepared(run, peer, check, "the PyTorch twin in float64")
        else:
            twin.eval()

            def peer(i):
                with torch.no_grad():
                    return twin(xt)

            def check():
                return compare("logits", be.host(run(0)), be.peer_host(peer(0)))

        return Prepared(run, peer, check)

    return prepare


def _check_gradients(be, size, batch=2):
    """Loss and every parameter gradient of refnet against the PyTorch twin computed in float64,
    dropout off so both networks are deterministic and identical. float64, not the peer's own
    float32: on an AVX2 Zen 3 PyTorch CPU's float32 conv1-conv3 weight gradients at 227 px were 1-4%
    (of each tensor's largest value) off the float64 result, refnet's within 4e-6
    (bench/results/cpu-amd-epyc-zen3.md)."""
    import refnet

    torch = be.torch
    rng = _rng(1)
    x = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
    labels = rng.integers(0, 1000, batch).astype(np.int32)
    net = refnet.AlexNet(variant="seed", input_size=size, device=be.name, seed=1, dropout=0.0)
    loss = net.forward_backward(be.array(x), labels)
    twin = torch_alexnet(torch, "seed", size, dropout=0.0)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
    twin = twin.to(device=be.tensor(x).device, dtype=torch.float64)
    twin_loss = torch.nn.functional.cross_entropy(twin(be.tensor(x).to(torch.float64)),
                                                  be.tensor(labels.astype(np.int64)))
    twin_loss.backward()
    twin_grads = {k: be.peer_host(p.grad) for k, p in twin.named_parameters()}
    grads = net.grad_dict()
    return first_error(compare("loss", np.float64(loss), float(twin_loss.detach())),
                       *(compare(f"grad {k}", grads[k], twin_grads[k], 1e-3, 2e-3) for k in twin_grads))


BUILDERS = {
    "conv": conv_cases,
    "gemm": gemm_cases,
    "maxpool": maxpool_cases,
    "lrn": lrn_cases,
    "relu": relu_cases,
    "dropout": dropout_cases,
    "softmax": softmax_cases,
    "sgd": sgd_cases,
    "step": step_cases,
}
MEMORY_BOUND = ("maxpool", "lrn", "relu", "dropout", "softmax", "sgd")
