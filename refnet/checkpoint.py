"""Training checkpoints: one HDF5 file holds everything needed to continue a run bit for bit.

Layout of a checkpoint file (format_version 2):
    params/<name>     float32, shapes as AlexNet.params (conv1.weight ... fc8.bias)
    momentum/<name>   float32, the SGD velocity of each parameter (same names and shapes)
    data/mean_image   float32 (size, size, 3), the training set's mean image in 0-255 units, so that
                      `refnet predict` needs nothing but the checkpoint
    attributes on the root:
        format_version  int
        step            optimizer steps taken so far (also the net's dropout step counter)
        epoch           index of the epoch in progress (== epochs completed when batch_in_epoch is 0)
        batch_in_epoch  batches of that epoch already trained on
        wall_seconds    training wall time so far (resumed runs keep counting)
        config          JSON: every training setting, refnet and library versions
        schedule        JSON: learning-rate schedule state (lr, best val error, drops, ...)
        epoch_totals    JSON: running sums of the epoch in progress (images, loss, top-1/top-5 mistakes)
        rng             JSON: every seed the run depends on (init, data order, augmentation, dropout);
                        data order and augmentation are functions of (seed, epoch, batch index) and
                        the dropout masks of (seed, step), so seeds plus counters restore them exactly
        classes         JSON: class names in label order
        network         JSON: the graph (refnet.model.network_config): variant, layer order
                        ("pool-lrn" the seed's table, "lrn-pool" the paper's section 3.5), LRN
                        constants {size, alpha, beta, k} (alpha not divided by size), num_classes,
                        input_size, dropout, and the layer names in order, checked on load
        preprocessing   JSON: the input convention (refnet.preprocess): channel order, pixel
                        range, mean (image or per channel), crop and resize sides

Format 1 (before the layer order was recorded) had no `network` or `preprocessing`: both variants
ran the seed's order (max-pool, then LRN), `paper` with groups=2. Such a checkpoint loads as what
it was trained as: order "pool-lrn" with the paper's LRN constants, refnet's own preprocessing.

Writes are atomic: the file is written under a temporary name in the same directory, flushed,
fsync'ed and renamed over the target with os.replace, so a crash at any moment leaves either the
old or the new checkpoint, never a torn one. Non-finite parameters or momenta are refused.
"""

import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
LATEST_NAME = "latest.h5"
_EPOCH_FILE = re.compile(r"^ckpt-(\d+)\.h5$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, is of an unknown format or does not fit the network."""


@dataclass
class Checkpoint:
    params: dict
    momentum: dict
    step: int
    epoch: int
    batch_in_epoch: int
    config: dict
    schedule: dict = field(default_factory=dict)
    rng: dict = field(default_factory=dict)
    epoch_totals: dict = field(default_factory=dict)
    classes: list = field(default_factory=list)
    mean_image: np.ndarray | None = None
    wall_seconds: float = 0.0
    format_version: int = FORMAT_VERSION
    network: dict = field(default_factory=dict)  # empty: derived from config (see network_from_config)
    preprocessing: dict = field(default_factory=dict)  # empty: refnet's own (default_preprocessing)


def network_from_config(config, order=None):
    """The network record of a training config (variant, num_classes, input_size, dropout and,
    when present, order and lrn); `order` overrides the config's."""
    from .model import network_config

    return network_config(config["variant"], config["num_classes"], config["input_size"], config.get("dropout", 0.5),
                          order or config.get("order"), config.get("lrn"))  # fmt: skip


def default_preprocessing(config):
    """refnet's training convention: RGB 0-255 minus the mean image, centre crop input_size of
    the stored image_size."""
    from .preprocess import Preprocessing

    crop = int(config["input_size"])
    return Preprocessing(crop=crop, resize=int(config.get("image_size", max(256, crop)))).to_dict()


def _network_and_preprocessing(ckpt: Checkpoint):
    """The checkpoint's records, derived from its config where empty, validated."""
    from .model import check_network_config
    from .preprocess import Preprocessing

    network = ckpt.network or network_from_config(ckpt.config)
    preprocessing = ckpt.preprocessing or default_preprocessing(ckpt.config)
    check_network_config(network)
    Preprocessing.from_dict(preprocessing)
    return network, preprocessing


def epoch_checkpoint_name(epochs_done: int) -> str:
    return f"ckpt-{epochs_done:04d}.h5"


def _first_non_finite(arrays: dict, group: str):
    for name, arr in arrays.items():
        if not np.isfinite(arr).all():
            return f"{group}/{name}"
    return None


def save_checkpoint(path, ckpt: Checkpoint) -> None:
    """Write `ckpt` to `path` atomically (temp file + flush + fsync + os.replace)."""
    import h5py

    try:
        ckpt.network, ckpt.preprocessing = _network_and_preprocessing(ckpt)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"refusing to write checkpoint {path}: {exc}") from None
    for group, arrays in (("params", ckpt.params), ("momentum", ckpt.momentum)):
        bad = _first_non_finite(arrays, group)
        if bad is not None:
            raise CheckpointError(f"refusing to write checkpoint {path}: {bad} holds non-finite values")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp_path = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp_path, "w") as f:
            _write_contents(f, ckpt)
            f.flush()
        _fsync_path(tmp_path, os.O_RDWR)
        os.replace(tmp_path, path)
    except BaseException:
        # Whatever went wrong (including KeyboardInterrupt), the previous checkpoint at `path`
        # is untouched; only the partial temporary file goes.
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise
    _fsync_directory(directory)


def _write_contents(f, ckpt: Checkpoint) -> None:
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["step"] = int(ckpt.step)
    f.attrs["epoch"] = int(ckpt.epoch)
    f.attrs["batch_in_epoch"] = int(ckpt.batch_in_epoch)
    f.attrs["wall_seconds"] = float(ckpt.wall_seconds)
    f.attrs["config"] = json.dumps(ckpt.config, sort_keys=True)
    f.attrs["schedule"] = json.dumps(ckpt.schedule, sort_keys=True)
    f.attrs["rng"] = json.dumps(ckpt.rng, sort_keys=True)
    f.attrs["epoch_totals"] = json.dumps(ckpt.epoch_totals, sort_keys=True)
    f.attrs["classes"] = json.dumps(list(ckpt.classes))
    f.attrs["network"] = json.dumps(ckpt.network, sort_keys=True)
    f.attrs["preprocessing"] = json.dumps(ckpt.preprocessing, sort_keys=True)
    for group_name, arrays in (("params", ckpt.params), ("momentum", ckpt.momentum)):
        group = f.create_group(group_name)
        for name, arr in arrays.items():
            group.create_dataset(name, data=np.ascontiguousarray(arr, dtype=np.float32))
    if ckpt.mean_image is not None:
        f.create_group("data").create_dataset("mean_image", data=np.asarray(ckpt.mean_image, dtype=np.float32))


def _fsync_path(path: str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: str) -> None:
    # The rename itself is only durable once the directory entry reaches the disk; some
    # filesystems refuse fsync on a directory, which costs durability, not correctness.
    try:
        _fsync_path(directory, os.O_RDONLY)
    except OSError:
        pass


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by save_checkpoint; CheckpointError if it is missing or unreadable."""
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            version = int(f.attrs.get("format_version", -1))
            if version not in READABLE_VERSIONS:
                raise CheckpointError(
                    f"checkpoint {path}: format_version {version} is not supported (this refnet reads "
                    f"{', '.join(map(str, READABLE_VERSIONS))})"
                )
            mean_image = f["data/mean_image"][...] if "data/mean_image" in f else None
            ckpt = Checkpoint(
                params={name: ds[...] for name, ds in f["params"].items()},
                momentum={name: ds[...] for name, ds in f["momentum"].items()},
                step=int(f.attrs["step"]),
                epoch=int(f.attrs["epoch"]),
                batch_in_epoch=int(f.attrs["batch_in_epoch"]),
                wall_seconds=float(f.attrs["wall_seconds"]),
                config=json.loads(f.attrs["config"]),
                schedule=json.loads(f.attrs["schedule"]),
                rng=json.loads(f.attrs["rng"]),
                epoch_totals=json.loads(f.attrs.get("epoch_totals", "{}")),
                classes=json.loads(f.attrs["classes"]),
                mean_image=mean_image,
                format_version=version,
            )
            if version >= 2:
                ckpt.network = json.loads(f.attrs["network"])
                ckpt.preprocessing = json.loads(f.attrs["preprocessing"])
            else:  # trained before the paper's order existed: every variant pooled before LRN
                ckpt.network = network_from_config(ckpt.config, order="pool-lrn")
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from exc
    try:
        ckpt.network, ckpt.preprocessing = _network_and_preprocessing(ckpt)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from None
    return ckpt


def check_compatible(ckpt: Checkpoint, *, variant: str, num_classes: int, input_size: int, order=None,
                     path="checkpoint") -> None:
    """Refuse a checkpoint whose network differs from the one being built (order None: the
    variant's)."""
    from .model import PAPER_LRN, check_order

    for key, want in (("variant", variant), ("num_classes", num_classes), ("input_size", input_size)):
        got = ckpt.config.get(key)
        if got != want:
            raise CheckpointError(
                f"{path} was trained with {key}={got!r}, but this run uses {key}={want!r}; "
                f"use a new --run directory or matching options"
            )
    network = ckpt.network or network_from_config(ckpt.config)
    if network["lrn"] != PAPER_LRN.to_dict():
        raise CheckpointError(f"{path} has its own LRN constants {network['lrn']} (an imported model); refnet train "
                              f"runs the paper's {PAPER_LRN.to_dict()}")  # fmt: skip
    got, want = network["order"], check_order(variant, order)
    if got != want:
        why = (" (a format-1 checkpoint: before format 2 every variant pooled before LRN)"
               if ckpt.format_version == 1 else "")  # fmt: skip
        raise CheckpointError(
            f"{path} was trained with layer order {got!r}{why}, but this run uses {want!r}; "
            f"continue it with --order {got}, or use a new --run directory"
        )


def epoch_checkpoints(run_dir) -> list:
    """Paths of RUN_DIR/ckpt-<epoch>.h5, oldest first."""
    found = []
    for entry in os.listdir(run_dir):
        match = _EPOCH_FILE.match(entry)
        if match:
            found.append((int(match.group(1)), os.path.join(run_dir, entry)))
    return [path for _, path in sorted(found)]


def prune_checkpoints(run_dir, keep: int) -> list:
    """Delete all but the newest `keep` epoch checkpoints (latest.h5 is never touched); returns the removed."""
    if keep < 1:
        raise ValueError(f"keep: expected >= 1, got {keep}")
    old = epoch_checkpoints(run_dir)[:-keep]
    for path in old:
        os.unlink(path)
    return old
