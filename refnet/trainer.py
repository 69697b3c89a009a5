"""The training loop: the paper's SGD recipe over converted shards, with checkpoints that survive crashes.

One step: x, labels = the reader's next augmented batch; loss = net.forward_backward(x, labels);
stop if the loss or any gradient is not finite (before the update, so the parameters stay good);
then one SGD-with-momentum update over the flat parameter buffer:
    v = momentum * v - weight_decay * lr * w - lr * dw ;  w = w + v        (the paper, section 5)

Everything a step depends on is a function of counters, so a run restarted from a checkpoint
continues bit for bit (on the CPU):
    data order, crops, flips, colour noise   the reader's (seed, epoch, batch number)
    dropout masks                            (seed, net.step, layer)   (refnet.model.dropout_seed)
    parameters, momentum                     saved in the checkpoint
    learning rate                            the LearningRateSchedule's state, saved too

RUN_DIR holds config.json (settings and versions), metrics.jsonl (one JSON object per line:
"kind" "step" every `log_every` steps, "epoch" after each epoch), ckpt-<epoch>.h5 (the last
`keep`), latest.h5 (the newest state, also written every `save_every` steps and on SIGINT/SIGTERM).
With keep = 0 no epoch checkpoint is written and latest.h5 only when the run ends (a crash then
loses the run; the demo, whose epochs take seconds, saves the ~0.5 s per epoch that way).
"""

import json
import math
import os
import platform
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from . import checkpoint as ckpt_io
from .distributed import allreduce_mean_, allreduce_sum, broadcast_object, share_bounds
from .evaluate import ErrorCounter, evaluate

LR_DROP_FACTOR = 10.0
# A val error must fall by more than this to count as an improvement for the plateau schedule.
PLATEAU_MIN_IMPROVEMENT = 1e-4


class TrainError(Exception):
    """A problem with the user's settings or files, reported as one clear message (exit status 2)."""


class NonFiniteError(Exception):
    """The loss or a gradient stopped being finite; nothing was updated or written for that step."""


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the step in flight finished and the state was saved."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class TrainConfig:
    """Every setting of a run; the defaults are the paper's recipe (batch 128, lr 0.01, 90 epochs)."""

    data: str
    run_dir: str
    device: str = "cpu"
    variant: str = "seed"
    order: str | None = None  # max-pool / LRN order of layers 1-2; None: the variant's (refnet.model)
    input_size: int = 227
    epochs: int = 90
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dropout: float = 0.5
    init: str = "paper"  # "paper": N(0, 0.01) and biases 0/1 (the model's); "scaled": see scaled_init
    seed: int = 0
    workers: int = 0  # Numba threads for kernels and the reader; 0 = all cores
    lr_steps: list = field(default_factory=list)  # epochs (1-based boundaries) at which lr /= 10; empty = plateau
    plateau_patience: int = 1  # epochs without val improvement before lr /= 10
    max_lr_drops: int = 3
    warmup_epochs: float = 0.0  # lr rises linearly from lr/W to lr over the first W steps (W = these epochs); 0 = none, as the paper
    save_every: int = 0  # also save latest.h5 every N steps (0: only at epoch ends)
    keep: int = 3  # epoch checkpoints to keep; 0: none, latest.h5 only when the run ends
    log_every: int = 20  # a metrics.jsonl "step" record every N steps
    max_steps: int = 0  # stop (saving) after this many total steps; 0 = no limit
    eval_batch_size: int = 0  # crops per evaluation forward pass; 0 = batch_size
    mpi_timeout_s: float = 600.0  # with several ranks: a collective without progress this long aborts the job
    progress: bool = True


class LearningRateSchedule:
    """The paper's schedule: lr divided by 10 when the validation error stops improving, at most
    `max_drops` times; or, with `steps`, divided by 10 at each listed epoch boundary instead."""

    def __init__(self, base_lr, *, steps=(), patience=1, max_drops=3):
        self.base_lr = float(base_lr)
        self.steps = sorted(int(s) for s in steps)
        self.patience = int(patience)
        self.max_drops = int(max_drops)
        self.lr = self.base_lr
        self.drops = 0
        self.best_error = None
        self.epochs_without_improvement = 0

    def end_epoch(self, epochs_done, val_error):
        """Update after `epochs_done` epochs with that epoch's monitored error; True if lr dropped."""
        if self.steps:
            drops = sum(1 for s in self.steps if s <= epochs_done)
            changed = drops != self.drops
            self.drops = drops
            self.lr = self.base_lr / LR_DROP_FACTOR**drops
            return changed
        if val_error is None:
            return False
        if self.best_error is None or val_error < self.best_error - PLATEAU_MIN_IMPROVEMENT:
            self.best_error = val_error
            self.epochs_without_improvement = 0
            return False
        self.epochs_without_improvement += 1
        if self.epochs_without_improvement >= self.patience and self.drops < self.max_drops:
            self.drops += 1
            self.lr = self.base_lr / LR_DROP_FACTOR**self.drops
            self.epochs_without_improvement = 0
            return True
        return False

    def state_dict(self):
        return {
            "base_lr": self.base_lr, "steps": self.steps, "patience": self.patience, "max_drops": self.max_drops,
            "lr": self.lr, "drops": self.drops, "best_error": self.best_error,
            "epochs_without_improvement": self.epochs_without_improvement,
        }  # fmt: skip

    def load_state_dict(self, state):
        # The settings come from the current command line (a resumed run may be given new lr steps);
        # the progress comes from the checkpoint.
        self.drops = int(state["drops"])
        self.best_error = state["best_error"]
        self.epochs_without_improvement = int(state["epochs_without_improvement"])
        self.lr = float(state["lr"])


# ---------------------------------------------------------------------------------------- init

INITS = ("paper", "scaled")
_SCALED_INIT_STREAM = 1  # keeps this init's random numbers apart from the model's own


FC6_SCALE = 0.05


def scaled_init(net, input_std, seed):
    """Re-initialise `net` for short runs: weights N(0, 2 / fan_in) (He et al. 2015), every bias 0,
    conv1's weights further divided by the input's pixel standard deviation (inputs are in 0-255
    units), fc6's multiplied by FC6_SCALE, fc8's N(0, 0.01).

    Why, measured at input_size 67 on the demo's images:
    - the paper's N(0, 0.01) with biases of 1 leaves the input-dependent part of fc6's output at
      about 1% of its constant part, dropout noise swamps it, and the loss stays at
      ln(num_classes) for the hundreds of steps a demo has;
    - plain He scaling makes fc6/fc7 outputs O(1) over 4096 units, so one SGD step moves fc8's
      logits by about lr * 4096 * |a|^2 (> 10 at lr 0.003) and the loss explodes; fc6 at
      FC6_SCALE keeps the fc activations small and the same lr stable.
    """
    rng = np.random.default_rng([seed, _SCALED_INIT_STREAM])
    params = net.state_dict()
    for layer in net.layers:
        if not layer.has_params:
            continue
        weight = params[f"{layer.name}.weight"]
        std = math.sqrt(2.0 / int(np.prod(weight.shape[1:])))
        if layer.name == "conv1":
            std /= input_std
        elif layer.name == "fc6":
            std *= FC6_SCALE
        elif layer is net.layers[-1]:
            std = 0.01
        weight[...] = rng.standard_normal(weight.shape, dtype=np.float32) * np.float32(std)
        params[f"{layer.name}.bias"][...] = 0
    net.load_state_dict(params)


# ---------------------------------------------------------------------------------------- checks


def check_device(device):
    """ValueError unless `device` is 'cpu', or 'cuda' with a GPU present."""
    from .model import _check_device

    return _check_device(device)


def training_bytes(layers, param_count, batch_size):
    """Estimated memory of a training step: parameters, gradients, momentum, and per image every
    activation, pooling index, LRN scale, dropout mask, the two gradient ping-pong buffers and
    three input batches (the one in use and two prefetched)."""
    per_image = 0
    for layer in layers:
        size = int(np.prod(layer.out_shape))
        per_image += 4 * size
        per_image += {"maxpool": 4 * size, "lrn": 4 * size, "dropout": size}.get(layer.kind, 0)
    per_image += 2 * 4 * max(int(np.prod(layer.out_shape)) for layer in layers)
    per_image += 3 * 4 * int(np.prod(layers[0].in_shape))
    return 3 * 4 * param_count + batch_size * per_image


def available_bytes(device):
    """Free memory where the network will live: MemAvailable on the host, free memory on the GPU."""
    if device == "cuda":
        from numba import cuda

        free, _total = cuda.current_context().get_memory_info()
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(layers, param_count, batch_size, device):
    need = training_bytes(layers, param_count, batch_size)
    have = available_bytes(device)
    if need > have:
        per_image = (need - training_bytes(layers, param_count, 0)) / batch_size
        fits = int((have - training_bytes(layers, param_count, 0)) // per_image)
        raise TrainError(
            f"--batch-size {batch_size} needs about {need / 2**30:.1f} GiB on {device} "
            f"but only {have / 2**30:.1f} GiB is available; the largest batch that fits is about {max(fits, 0)}"
        )


def open_datasets(data_dir, progress=True):
    """(train, val or None) ShardDatasets, or a TrainError saying what is wrong with `data_dir`."""
    from .data import ShardDataset

    if not os.path.isdir(data_dir):
        raise TrainError(f"--data {data_dir}: no such directory (convert images first: refnet convert {data_dir} --train DIR)")
    try:
        train = ShardDataset(data_dir, "train", progress=progress)
    except ValueError as exc:
        raise TrainError(f"--data {data_dir} is not a usable converted dataset: {exc}") from None
    if len(train) == 0:
        raise TrainError(f"--data {data_dir}: the train split holds no images")
    try:
        val = ShardDataset(data_dir, "val", progress=progress)
    except ValueError as exc:
        if "is not in" not in str(exc):  # a val split that exists but is broken is an error
            raise TrainError(f"--data {data_dir}: the val split is not usable: {exc}") from None
        val = None
    if val is not None and val.classes != train.classes:
        raise TrainError(f"--data {data_dir}: the val split's classes differ from the train split's")
    return train, val


def library_versions():
    import h5py
    import numba
    import PIL

    from . import __version__

    return {
        "refnet": __version__, "python": platform.python_version(), "numpy": np.__version__,
        "numba": numba.__version__, "h5py": h5py.__version__, "pillow": PIL.__version__,
        "platform": platform.platform(), "numba_threads": numba.get_num_threads(),
    }  # fmt: skip


# ---------------------------------------------------------------------------------------- the run


class _StopRequest:
    """SIGINT/SIGTERM handler: remember the signal; the loop checks it between steps."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: signals stay with their owner
                pass
        return self

    def _handle(self, signum, _frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without saving
        self.signum = signum

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False


def _first_non_finite_grad(net):
    """Which gradient went bad (only after ops.all_finite said one did: it copies them all to the host)."""
    for name, grad in net.grad_dict().items():
        if not np.isfinite(grad).all():
            return name
    return None


class EpochTotals:
    """The running sums behind an epoch's train loss and top-1/top-5 error; saved in checkpoints so
    that an epoch interrupted and resumed reports the same numbers as an uninterrupted one."""

    def __init__(self, num_classes):
        self.errors = ErrorCounter(num_classes)
        self.loss_sum = 0.0

    def add(self, loss, probs, labels):
        self.errors.add(probs, labels)
        self.loss_sum += loss * len(labels)

    def result(self):
        result = self.errors.result()
        result["loss"] = self.loss_sum / max(self.errors.count, 1)
        return result

    def state_dict(self):
        e = self.errors
        return {"images": e.count, "top1_wrong": e.top1_wrong, "top5_wrong": e.top5_wrong, "loss_sum": self.loss_sum}

    def load_state_dict(self, state):
        self.errors.count = int(state.get("images", 0))
        self.errors.top1_wrong = int(state.get("top1_wrong", 0))
        self.errors.top5_wrong = int(state.get("top5_wrong", 0))
        self.loss_sum = float(state.get("loss_sum", 0.0))


class Trainer:
    """Owns one run: the network, the data, the schedule, RUN_DIR's files. `run()` trains to the end
    (or to an interruption) and returns a summary dict."""

    def __init__(self, cfg: TrainConfig, *, resume=None):
        from .distributed import init_world, local_batch_size

        # Data-parallel over MPI when started by mpiexec/srun (refnet.distributed): every rank runs
        # this same object; rank 0 alone writes RUN_DIR and prints.
        self.world = replace(init_world(), timeout_s=cfg.mpi_timeout_s)
        cfg = replace(cfg, progress=cfg.progress and self.world.is_root)
        self.cfg = cfg
        try:
            self.local_batch = local_batch_size(cfg.batch_size, self.world)
        except ValueError as exc:
            raise TrainError(f"--batch-size: {exc}") from None
        threads = cfg.workers or (self.world.threads_per_rank() if self.world.local_size > 1 else 0)
        if threads:
            import numba

            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            check_device(cfg.device)
        except ValueError as exc:
            raise TrainError(str(exc)) from None
        if cfg.device == "cuda" and self.world.size > 1:
            from numba import cuda

            cuda.select_device(self.world.local_rank % len(cuda.gpus))
        self.train_set, self.val_set = open_datasets(cfg.data, progress=cfg.progress)
        self.classes = self.train_set.classes
        if cfg.input_size > self.train_set.image_size:
            raise TrainError(
                f"--input-size {cfg.input_size} is larger than the stored images ({self.train_set.image_size} px); "
                f"convert with --size >= {cfg.input_size} or train with a smaller --input-size"
            )
        self.batches_per_epoch = len(self.train_set) // cfg.batch_size
        if self.batches_per_epoch == 0:
            raise TrainError(f"--batch-size {cfg.batch_size} is larger than the train split ({len(self.train_set)} images)")

        from .model import AlexNet, build_layers

        try:
            layers = build_layers(cfg.variant, len(self.classes), cfg.input_size, cfg.dropout, cfg.order)
        except ValueError as exc:
            raise TrainError(str(exc)) from None
        check_memory(layers, sum(l.param_count for l in layers), self.local_batch, cfg.device)
        self.net = AlexNet(len(self.classes), cfg.variant, cfg.input_size, cfg.dropout, cfg.device, cfg.seed, cfg.order)
        if cfg.init not in INITS:
            raise TrainError(f"--init: expected one of {', '.join(INITS)}, got {cfg.init!r}")
        if cfg.init == "scaled":
            scaled_init(self.net, float(np.mean(self.train_set.stats["std_rgb"])), cfg.seed)
        self.schedule = LearningRateSchedule(cfg.lr, steps=cfg.lr_steps, patience=cfg.plateau_patience,
                                             max_drops=cfg.max_lr_drops)  # fmt: skip
        self.epoch, self.batch_in_epoch, self.wall_offset = 0, 0, 0.0
        self.epoch_totals = EpochTotals(len(self.classes))
        self.latest_path = os.path.join(cfg.run_dir, ckpt_io.LATEST_NAME)
        self.metrics_path = os.path.join(cfg.run_dir, "metrics.jsonl")
        self.resumed_from = None

        # Rank 0 reads RUN_DIR and hands the checkpoint (or its error) to the others, so RUN_DIR
        # need not be on a filesystem every machine sees.
        found, problem = None, None
        if self.world.is_root:
            try:
                found = self._find_checkpoint(resume)
            except TrainError as exc:
                problem = str(exc)
        found, problem = broadcast_object((found, problem), self.world)
        if problem:
            raise TrainError(problem)
        if found is not None:
            self._restore(found)
        elif self.world.is_root and os.path.exists(self.metrics_path):
            os.unlink(self.metrics_path)  # a fresh run in a reused directory starts a fresh log
        if self.world.is_root:
            self._write_config()

    # ----------------------------------------------------------------------------- state

    def _find_checkpoint(self, resume):
        """The checkpoint to continue from (None for a fresh run); rank 0 only."""
        os.makedirs(self.cfg.run_dir, exist_ok=True)
        if resume is None:
            resume = os.path.isfile(self.latest_path)
        elif resume and not os.path.isfile(self.latest_path):
            raise TrainError(f"--resume: {self.latest_path} does not exist, nothing to resume")
        return ckpt_io.load_checkpoint(self.latest_path) if resume else None

    def config_dict(self):
        cfg = asdict(self.cfg)
        cfg.pop("progress")
        cfg["num_classes"] = len(self.classes)
        cfg["train_images"] = len(self.train_set)
        cfg["val_images"] = len(self.val_set) if self.val_set is not None else 0
        cfg["image_size"] = self.train_set.image_size
        return cfg

    def _write_config(self):
        payload = dict(self.config_dict(), versions=library_versions(), resumed_from_step=self.resumed_from)
        tmp = os.path.join(self.cfg.run_dir, ".config.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1, sort_keys=True)
        os.replace(tmp, os.path.join(self.cfg.run_dir, "config.json"))

    def _restore(self, ck):
        try:
            ckpt_io.check_compatible(ck, variant=self.cfg.variant, num_classes=len(self.classes),
                                     input_size=self.cfg.input_size, order=self.cfg.order,
                                     path=self.latest_path)  # fmt: skip
        except ckpt_io.CheckpointError as exc:
            raise TrainError(str(exc)) from None
        changed = [k for k in ("seed", "batch_size", "dropout", "init", "data")
                   if ck.config.get(k) != getattr(self.cfg, k)]  # fmt: skip
        if "data" in changed:
            changed.remove("data")  # the same shards may be moved; only their content matters
        if changed:
            raise TrainError(
                f"{self.latest_path} was written with different "
                + ", ".join(f"{k}={ck.config.get(k)!r}" for k in changed)
                + "; resuming with other values would not continue that run (use a new --run directory)"
            )
        self.net.load_state_dict(ck.params)
        self.net.load_momentum_dict(ck.momentum)
        self.net.step = ck.step
        self.schedule.load_state_dict(ck.schedule)
        self.epoch, self.batch_in_epoch, self.wall_offset = ck.epoch, ck.batch_in_epoch, ck.wall_seconds
        if self.world.is_root:  # the epoch's running sums so far; other ranks add from zero
            self.epoch_totals.load_state_dict(ck.epoch_totals)
            self._truncate_metrics(ck.step, ck.epoch)
        self.resumed_from = ck.step
        self._say(f"resuming {self.cfg.run_dir} from step {ck.step} (epoch {ck.epoch + 1}, batch {ck.batch_in_epoch})")

    def _truncate_metrics(self, step, epochs_done):
        """Drop the log records written after the checkpoint: the resumed run writes them again."""
        if not os.path.exists(self.metrics_path):
            return
        from .metrics import read_metrics

        kept = [r for r in read_metrics(self.cfg.run_dir)
                if r.get("step", 0) <= step and (r.get("kind") != "epoch" or r.get("epoch", 0) <= epochs_done)]  # fmt: skip
        tmp = self.metrics_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for record in kept:
                f.write(json.dumps(record) + "\n")
        os.replace(tmp, self.metrics_path)

    def _checkpoint(self, wall_seconds):
        return ckpt_io.Checkpoint(
            params=self.net.state_dict(),
            momentum=self.net.momentum_dict(),
            step=self.net.step,
            epoch=self.epoch,
            batch_in_epoch=self.batch_in_epoch,
            config=self.config_dict(),
            schedule=self.schedule.state_dict(),
            rng={"init_seed": self.cfg.seed, "data_seed": self.cfg.seed, "augment_seed": self.cfg.seed,
                 "dropout_seed": self.net.seed, "dropout_step": self.net.step,
                 "data_epoch": self.epoch, "data_batch": self.batch_in_epoch},  # fmt: skip
            epoch_totals=self.epoch_totals.state_dict(),
            classes=self.classes,
            mean_image=self.train_set.stats["mean_image"],
            wall_seconds=wall_seconds,
            network=self.net.network_config(),
        )

    def save_latest(self, wall_seconds):
        """latest.h5, written by rank 0 (every rank calls it: the epoch's sums are gathered first)."""
        self._gather_epoch_totals()
        if self.world.is_root:
            ckpt_io.save_checkpoint(self.latest_path, self._checkpoint(wall_seconds))

    def _gather_epoch_totals(self):
        """Sum the ranks' running epoch totals into rank 0's (the others restart from zero), so that
        checkpoints and epoch records hold the whole global batch's numbers."""
        if self.world.size == 1:
            return
        totals = self.epoch_totals
        totals.errors.sum_over_ranks(self.world)
        totals.loss_sum = float(allreduce_sum(np.array([totals.loss_sum]), self.world)[0])
        if not self.world.is_root:
            self.epoch_totals = EpochTotals(len(self.classes))

    def _save_epoch(self, wall_seconds):
        """ckpt-<epochs done>.h5 and latest.h5 (a hard link to it when the filesystem allows); rank 0.
        With keep = 0, latest.h5 alone, after the last epoch."""
        if not self.world.is_root:
            return
        if self.cfg.keep == 0:
            ends = self.epoch >= self.cfg.epochs or (self.cfg.max_steps and self.net.step >= self.cfg.max_steps)
            if ends:
                ckpt_io.save_checkpoint(self.latest_path, self._checkpoint(wall_seconds))
            return
        path = os.path.join(self.cfg.run_dir, ckpt_io.epoch_checkpoint_name(self.epoch))
        checkpoint = self._checkpoint(wall_seconds)
        ckpt_io.save_checkpoint(path, checkpoint)
        tmp = self.latest_path + ".link-tmp"
        try:
            if os.path.exists(tmp):
                os.unlink(tmp)
            os.link(path, tmp)
            os.replace(tmp, self.latest_path)
        except OSError:
            ckpt_io.save_checkpoint(self.latest_path, checkpoint)
        ckpt_io.prune_checkpoints(self.cfg.run_dir, self.cfg.keep)

    # ----------------------------------------------------------------------------- logging

    def _say(self, text):
        if self.cfg.progress:
            print(text, file=sys.stderr, flush=True)

    def _log(self, record):
        if not self.world.is_root:
            return
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    # ----------------------------------------------------------------------------- training

    def _train_batches(self):
        """This epoch's batches from `batch_in_epoch` on: the reader's batch b depends only on
        (seed, epoch, b), so skipping the first ones reproduces the rest exactly."""
        from .data.prefetch import depth_for as prefetch_depth_for

        return self.train_set.batches(self.cfg.batch_size, train=True, crop=self.cfg.input_size,
                                      seed=self.cfg.seed, epoch=self.epoch, drop_last=True,
                                      prefetch_depth=prefetch_depth_for(self.cfg.device),
                                      part=(self.world.rank, self.world.size), first_batch=self.batch_in_epoch)  # fmt: skip

    def _step(self, x, labels):
        """forward, backward, finite checks, SGD update. Returns the loss."""
        from . import ops

        world = self.world
        if world.size > 1:
            # this rank's share of the global batch: its place there keeps the dropout masks those
            # of one process, and its gradient counts by its share of the batch
            self.net.sample_offset = share_bounds(self.cfg.batch_size, world.rank, world.size)[0]
        loss = self.net.forward_backward(x, labels)
        if world.size > 1:
            share = len(labels) / self.cfg.batch_size
            allreduce_mean_(self.net.flat_grads, world, weight=share, staging=self._staging(),
                            what=f"the gradient allreduce of step {self.net.step}")
            loss = float(allreduce_sum(np.array([loss * share]), world)[0])
        if not math.isfinite(loss):
            raise NonFiniteError(f"the loss is {loss}")
        if not ops.all_finite(self.net.flat_grads):
            raise NonFiniteError(f"the gradient of {_first_non_finite_grad(self.net)} is not finite")
        ops.sgd_momentum_update(self.net.flat_params, self.net.flat_grads, self.net.flat_momentum,
                                self.current_lr(), self.cfg.momentum, self.cfg.weight_decay)  # fmt: skip
        return loss

    def current_lr(self):
        """The lr of the update that ends step net.step: the schedule's, scaled by net.step / W during a
        warmup of W steps. A function of the step count alone, so a resumed run repeats it exactly."""
        warmup_steps = round(self.cfg.warmup_epochs * self.batches_per_epoch)
        if self.net.step < warmup_steps:
            return self.schedule.lr * max(self.net.step, 1) / warmup_steps
        return self.schedule.lr

    def _staging(self):
        """The pinned host buffer a GPU gradient is reduced through (allocated on first use)."""
        if self.cfg.device != "cuda":
            return None
        if getattr(self, "_pinned_gradient", None) is None:
            from numba import cuda

            self._pinned_gradient = cuda.pinned_array(self.net.param_count(), np.float32)
        return self._pinned_gradient

    def _agree_to_stop(self, stop):
        """Whether any rank got SIGINT/SIGTERM: every rank must leave the loop at the same step, or
        the others would wait in the next allreduce. A rank told by its peers stops as for SIGTERM.
        The answer is the vote's alone: a signal that lands during the vote counts at the next vote,
        so the signalled rank cannot leave before the others."""
        requested = stop.signum is not None
        if self.world.size > 1:
            requested = bool(allreduce_sum(np.array([requested], np.int64), self.world)[0])
            if requested and stop.signum is None:
                stop.signum = signal.SIGTERM
        return requested

    def run(self):
        from tqdm import tqdm

        cfg = self.cfg
        start = time.perf_counter()

        def wall():
            return self.wall_offset + time.perf_counter() - start

        result = {"stopped": "finished"}
        with _StopRequest() as stop:
            while self.epoch < cfg.epochs:
                epoch_start, epoch_images = time.perf_counter(), 0
                stopping = False  # what the ranks agreed after the last step (see _agree_to_stop)
                window_start, window_images = time.perf_counter(), 0
                bar = tqdm(total=self.batches_per_epoch, initial=self.batch_in_epoch, unit="batch",
                           desc=f"epoch {self.epoch + 1}/{cfg.epochs}", disable=not cfg.progress,
                           dynamic_ncols=True, leave=True)  # fmt: skip
                try:
                    for x, labels in self._train_batches():
                        try:
                            loss = self._step(x, labels)
                        except NonFiniteError as exc:
                            raise NonFiniteError(
                                f"{exc} at step {self.net.step} (epoch {self.epoch + 1}, batch {self.batch_in_epoch + 1}); "
                                f"stopped before updating the parameters"
                            ) from None
                        self.batch_in_epoch += 1
                        n = cfg.batch_size  # the global batch, over every rank
                        epoch_images += n
                        window_images += n
                        self.epoch_totals.add(loss, _softmax_host(self.net.last_logits(len(labels))), labels)
                        elapsed = time.perf_counter() - window_start
                        images_per_second = window_images / max(elapsed, 1e-9)
                        bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{images_per_second:.1f}", lr=f"{self.current_lr():g}")
                        bar.update(1)
                        if cfg.log_every and self.net.step % cfg.log_every == 0:
                            so_far = self.epoch_totals.result()
                            self._log({
                                "kind": "step", "step": self.net.step,
                                "epoch": self.epoch + self.batch_in_epoch / self.batches_per_epoch,
                                "lr": self.current_lr(), "train_loss": loss,
                                # running top-1/top-5 error of this epoch's batches so far
                                "train_top1_error": so_far["top1_error"], "train_top5_error": so_far["top5_error"],
                                "images_per_second": images_per_second, "wall_seconds": wall(),
                            })  # fmt: skip
                            window_start, window_images = time.perf_counter(), 0
                        done_steps = cfg.max_steps and self.net.step >= cfg.max_steps
                        stopping = self._agree_to_stop(stop)
                        if stopping or done_steps:
                            break
                        mid_epoch = self.batch_in_epoch < self.batches_per_epoch  # the epoch end saves anyway
                        if cfg.save_every and self.net.step % cfg.save_every == 0 and mid_epoch:
                            self.save_latest(wall())
                finally:
                    bar.close()

                if self.batch_in_epoch < self.batches_per_epoch:  # left mid-epoch
                    self.save_latest(wall())
                    if stopping:
                        raise Interrupted(stop.signum)
                    result["stopped"] = "max_steps"
                    break

                train_seconds = time.perf_counter() - epoch_start
                record = self._end_epoch(epoch_images / train_seconds, wall)
                self._save_epoch(wall())
                self._say(_epoch_line(record))
                if self._agree_to_stop(stop):
                    if cfg.keep == 0:  # no epoch checkpoint was written
                        self.save_latest(wall())
                    raise Interrupted(stop.signum)
                if cfg.max_steps and self.net.step >= cfg.max_steps:
                    result["stopped"] = "max_steps"
                    break
        result.update(step=self.net.step, epoch=self.epoch, wall_seconds=wall(), latest=self.latest_path)
        return result

    def _end_epoch(self, images_per_second, wall):
        cfg = self.cfg
        self._gather_epoch_totals()
        train = self.epoch_totals.result()
        record = {
            "kind": "epoch", "step": self.net.step, "epoch": self.epoch + 1, "lr": self.schedule.lr,
            "train_loss": train["loss"], "train_top1_error": train["top1_error"], "train_top5_error": train["top5_error"],
            "images_per_second": images_per_second,
        }  # fmt: skip
        monitored = None
        if self.val_set is not None:
            val = evaluate(self.net, self.val_set, crop=cfg.input_size, batch_size=cfg.eval_batch_size or cfg.batch_size,
                           progress=cfg.progress, desc="val", world=self.world)  # fmt: skip
            record.update(val_loss=val["loss"], val_top1_error=val["top1_error"], val_top5_error=val["top5_error"])
            monitored = val["top1_error"]
        self.epoch += 1
        self.batch_in_epoch = 0
        self.epoch_totals = EpochTotals(len(self.classes))
        if self.schedule.end_epoch(self.epoch, monitored):
            self._say(f"learning rate divided by {LR_DROP_FACTOR:g}: now {self.schedule.lr:g}")
        record["next_lr"] = self.schedule.lr
        record["wall_seconds"] = wall()
        self._log(record)
        return record


def _softmax_host(logits):
    from .evaluate import softmax_rows

    return softmax_rows(logits)


def _epoch_line(record):
    text = f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, top-1 error {100 * record['train_top1_error']:.1f}%"
    if "val_top1_error" in record:
        text += f"; val top-1 error {100 * record['val_top1_error']:.1f}%, top-5 {100 * record['val_top5_error']:.1f}%"
    return text + f"; {record['images_per_second']:.1f} images/s"
