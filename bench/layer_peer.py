"""PyTorch's training step cut at refnet's layer boundaries, for `refnet profile --peer torch`.

Each layer of refnet's list (conv, relu, maxpool, lrn, linear, dropout) runs as its own small
autograd graph on a detached input, so its forward and its backward can be timed apart: the
forward walks the layers in order, then the loss, then the backward walks them in reverse, each
layer's input gradient feeding the layer before; then PyTorch's momentum SGD. The parameters are
the twin network's (bench/peers.py torch_alexnet), so the arithmetic is the whole-model step's.
"""

import time

from .peers import LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE, torch_alexnet


def torch_layer_step(torch, layers, variant, input_size, num_classes, dropout, device="cpu"):
    """step(x, labels, record) -> loss; record(part, layer name, seconds) is called for every
    layer's "forward" and "backward", the "loss" (forward and backward) and the "sgd" update."""
    F = torch.nn.functional
    model = torch_alexnet(torch, variant, input_size, num_classes, dropout).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()

    def function(layer):
        if layer.kind in ("conv", "linear"):
            module = getattr(model, layer.name)
            return (lambda x: module(torch.flatten(x, 1))) if layer.kind == "linear" else module
        if layer.kind == "relu":
            return F.relu
        if layer.kind == "maxpool":
            return lambda x: F.max_pool2d(x, layer.size, layer.stride)
        if layer.kind == "lrn":
            return lambda x: F.local_response_norm(x, LRN_SIZE, alpha=LRN_ALPHA * LRN_SIZE, beta=LRN_BETA, k=LRN_K)
        if layer.kind == "dropout":
            return lambda x: F.dropout(x, layer.p, training=True)
        raise AssertionError(f"unknown layer kind {layer.kind!r}")

    functions = [function(layer) for layer in layers]
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def timed(record, part, name, fn):
        synchronize()
        t0 = time.perf_counter()
        result = fn()
        synchronize()
        record(part, name, time.perf_counter() - t0)
        return result

    def step(x, labels, record):
        optimizer.zero_grad(set_to_none=False)
        inputs, outputs = [], []
        a = x
        for i, (layer, fn) in enumerate(zip(layers, functions)):
            a = a.detach().requires_grad_(i > 0)  # refnet computes no gradient for the images either
            inputs.append(a)
            a = timed(record, "forward", layer.name, lambda: fn(inputs[-1]))
            outputs.append(a)
        logits = outputs[-1].detach().requires_grad_(True)
        loss = timed(record, "forward", "loss", lambda: F.cross_entropy(logits, labels))
        timed(record, "backward", "loss", loss.backward)
        grad = logits.grad
        for i in reversed(range(len(layers))):
            timed(record, "backward", layers[i].name, lambda: outputs[i].backward(grad))
            grad = inputs[i].grad
        timed(record, "forward", "sgd", optimizer.step)
        return loss

    return step
