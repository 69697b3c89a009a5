"""Compile the kernels one training run needs in background processes, so that Numba's on-disk
cache (every CPU kernel is `cache=True`) is warm when the run's first step comes.

    warmup = JitWarmup(input_size=67, num_classes=10, batch_size=32, image_size=76, log_path=LOG)
    ...                  # other work: drawing and converting images
    waited = warmup.join()

Numba compiles a function on its first call, one function at a time on one core, and writes the
result to its cache, which every later process loads instead of compiling. Two processes split the
work (`PARTS`): "forward" runs each convolution path's forward kernel first (the data gradients
run them too), then the data pipeline, the forward pass with its loss and the evaluation passes
on a tiny converted folder; "backward" runs the loss's gradient and every layer's backward pass
on a workspace of zeros (valid pooling indices) without a forward pass, then the finite check and
the SGD update, so both compile at once. Each kernel is compiled by one of them: the other reaches
it later and loads it from the cache. They run at niceness +10, below the run's own work. Each process reports on stdout (one JSON object per line) when it
starts compiling and, at its end, how many functions it compiled and in how many seconds; a warm
cache compiles nothing and both end in seconds. `python -m refnet.commands.jit_warmup PART ...` is one
process. Measurements: bench/results/demo.md.
"""

import json
import os
import subprocess
import sys
import threading
import time

PARTS = ("backward", "forward")  # the longer one first: its process starts first
BACKGROUND_NICENESS = 10


def _shape_args(input_size, num_classes, batch_size, image_size):
    return ["--input-size", str(input_size), "--classes", str(num_classes), "--batch-size", str(batch_size),
            "--image-size", str(image_size)]  # fmt: skip


class JitWarmup:
    """The warm-up processes of one demo run (started by the constructor)."""

    def __init__(self, *, input_size, num_classes, batch_size, image_size, log_path, on_compiling=None):
        self.started = time.perf_counter()
        self.on_compiling = on_compiling
        self.reports = {}
        self.compiling = threading.Event()
        self._stopped = False
        self._log = open(log_path, "w", encoding="utf-8")
        env = dict(os.environ, NUMBA_NUM_THREADS="1")  # compiling is serial; the kernels run on tiny batches
        args = _shape_args(input_size, num_classes, batch_size, image_size)
        self.procs, self._readers = {}, []
        for part in PARTS:
            proc = subprocess.Popen([sys.executable, "-m", "refnet.commands.jit_warmup", part, *args], env=env,
                                    stdout=subprocess.PIPE, stderr=self._log, text=True)  # fmt: skip
            self.procs[part] = proc
            reader = threading.Thread(target=self._read, args=(part, proc), daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read(self, part, proc):
        for line in proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("event") == "compiling" and not self.compiling.is_set():
                self.compiling.set()
                if self.on_compiling:
                    self.on_compiling()
            elif message.get("event") == "done":
                self.reports[part] = message

    def running(self):
        return any(proc.poll() is None for proc in self.procs.values())

    def join(self):
        """Wait for every part (again: no-op); return the seconds waited. A part that failed only costs its kernels
        compiling in the run itself, so its failure is reported, not raised."""
        t = time.perf_counter()
        for part, proc in self.procs.items():
            if proc.wait() != 0 and not self._stopped:
                print(f"refnet: the {part} compile warm-up failed (status {proc.returncode}; see {self._log.name}); "
                      "the kernels compile on the first step instead", file=sys.stderr)  # fmt: skip
        for reader in self._readers:
            reader.join()
        if not self._log.closed:
            self._log.close()
        return time.perf_counter() - t

    def stop(self):
        """End the parts still running (the demo stopped early); what they compiled stays cached."""
        self._stopped = True
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        self.join()

    def summary(self):
        """{part: {"compiled": functions, "compile_seconds": s, "compile_cpu_seconds": s, "cpu_seconds": s,
        "wall_seconds": s}} (compile_cpu_seconds: the compiling thread's CPU time)."""
        return {part: {k: v for k, v in report.items() if k != "event"} for part, report in self.reports.items()}


# ---------------------------------------------------------------- inside a warm-up process
def _say(**message):
    print(json.dumps(message), file=sys.__stdout__, flush=True)  # stdout itself is redirected around convert


def _listen_for_compiles():
    """Count compilations (numba's "numba:compile" event fires only for a cache miss) and say when the first starts."""
    from numba.core import event

    totals = {"compiled": 0, "compile_seconds": 0.0, "compile_cpu_seconds": 0.0}
    depth = []

    class Listener(event.Listener):
        def on_start(self, ev):
            if totals["compiled"] == 0 and not depth:
                _say(event="compiling")
            depth.append((time.perf_counter(), time.thread_time()))

        def on_end(self, ev):
            start, cpu_start = depth.pop()
            totals["compiled"] += 1
            if not depth:  # nested compilations (callees) are inside their caller's time
                totals["compile_seconds"] += time.perf_counter() - start
                totals["compile_cpu_seconds"] += time.thread_time() - cpu_start

    event.register("numba:compile", Listener())
    return totals


def _demo_net(input_size, num_classes):
    from ..model import AlexNet

    return AlexNet(num_classes=num_classes, input_size=input_size, dropout=0.0, device="cpu", seed=0)


def warm_backward(input_size, num_classes, batch_size):
    """The loss's gradient, every layer's backward pass, the finite check and the SGD update, on
    zeros: no forward pass."""
    import numpy as np

    from .. import ops

    net = _demo_net(input_size, num_classes)
    ws = net._workspace(batch_size)
    ws.ensure_gradients()
    for arrays in (ws.acts, ws.argmax.values(), ws.scale.values(), ws.mask.values(), [ws.probs]):
        for a in arrays:
            a[...] = 0
    for scale in ws.scale.values():
        scale[...] = 1  # LRN's scale is k + ... >= k > 0
    x = np.zeros((batch_size, *net.layers[0].in_shape), np.float32)
    ops.softmax_cross_entropy_backward(ws.probs, np.zeros(batch_size, np.int32), out=ws.d_out[-1])
    net._backward(ws, x)
    ops.all_finite(net.flat_grads)
    ops.sgd_momentum_update(net.flat_params, net.flat_grads, net.flat_momentum, 0.01, 0.9, 5e-4)


def warm_shared_convolution(net, batch_size):
    """The forward of `net`'s first convolution of each path (conv2d.conv_path), on zeros: the data
    gradient of a convolution runs its path's forward kernel, so the backward part needs these
    kernels too, and loads them from the cache when this part has compiled them first (each part
    compiled the small-output forward kernel itself before, about 7 s of CPU twice)."""
    import numpy as np

    from .. import ops
    from ..kernels.cpu.conv2d import conv_path

    seen = set()
    for layer in reversed(net.layers):  # the order the backward part reaches them
        if layer.kind != "conv":
            continue
        w, b = net.params[f"{layer.name}.weight"], net.params[f"{layer.name}.bias"]
        path = conv_path(w, layer.stride, (batch_size, *layer.out_shape))
        if path not in seen:
            seen.add(path)
            x = np.zeros((batch_size, *layer.in_shape), np.float32)
            ops.conv2d_forward(x, w, b, layer.stride, layer.pad, layer.groups)


def warm_forward(input_size, num_classes, batch_size, image_size):
    """The demo's data path and forward passes on a tiny folder: convert, training batches, a
    training-mode forward with its loss, the per-epoch validation and the final centre-crop and
    10-crop evaluations. The convolutions' forward kernels come first (`warm_shared_convolution`)."""
    import contextlib
    import tempfile

    from .. import ops
    from ..cli import main as refnet_main
    from ..evaluate import evaluate, softmax_rows
    from ..synth import CLASSES, write_image_folder
    from ..trainer import open_datasets

    net = _demo_net(input_size, num_classes)
    warm_shared_convolution(net, batch_size)
    with tempfile.TemporaryDirectory(prefix="refnet-warmup-") as tmp:
        images, data = os.path.join(tmp, "images"), os.path.join(tmp, "data")
        per_class = -(-batch_size // len(CLASSES))
        write_image_folder(images, per_class={"train": per_class, "val": 1}, seed=0)
        with contextlib.redirect_stdout(sys.stderr):
            status = refnet_main(["convert", data, "--train", os.path.join(images, "train"), "--val",
                                  os.path.join(images, "val"), "--size", str(image_size), "--workers", "1", "--quiet"])  # fmt: skip
        if status != 0:
            raise RuntimeError(f"refnet convert of the warm-up images failed with status {status}")
        train, val = open_datasets(data, progress=False)
        for x, labels in train.batches(batch_size, train=True, crop=input_size, seed=0, epoch=0, drop_last=True):
            logits = net.forward(x, train=True)
            ops.softmax_cross_entropy(logits, labels)
            softmax_rows(logits)
            break
        for eval_batch, ten_crop in ((batch_size, False), (100, False), (100, True)):
            evaluate(net, val, crop=input_size, batch_size=eval_batch, ten_crop=ten_crop)


def main(argv=None):
    import argparse
    import resource

    parser = argparse.ArgumentParser(prog="python -m refnet.commands.jit_warmup", description="one compile warm-up process")
    parser.add_argument("part", choices=PARTS)
    parser.add_argument("--input-size", type=int, required=True)
    parser.add_argument("--classes", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--niceness", type=int, default=BACKGROUND_NICENESS, help="added to the process's niceness")
    args = parser.parse_args(argv)
    # Below the demo's own work: the cores the images and convert steps leave idle do the
    # compiling, and what is left shows as the wait before training, not as a slower convert.
    os.nice(args.niceness)
    started = time.perf_counter()
    totals = _listen_for_compiles()
    if args.part == "backward":
        warm_backward(args.input_size, args.classes, args.batch_size)
    else:
        warm_forward(args.input_size, args.classes, args.batch_size, args.image_size)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _say(event="done", **totals, cpu_seconds=usage.ru_utime + usage.ru_stime, wall_seconds=time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
