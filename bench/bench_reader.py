"""Images/s of refnet.data's reader (HDF5 read + crop/flip/colour noise/mean, prefetched) at crop 227.

    python -m bench.bench_reader [--images 512] [--batch 128] [--ten-crop-batch 16] [--epochs 3] [--json PATH]

Writes `--images` random 256x256 images as shards (tests/shard_writer.py, the format contract) in
a temporary folder, then times whole epochs of `ShardDataset.batches` for training (random
permutation, crops, flips, PCA colour noise) and evaluation (centre crop, 10-crop). The consumer
does nothing but count, so the figure is what the reader can feed. The peer, timed in the same run
on the same shards and batches, is the plain numpy/h5py version of the same work: one h5py read
per image (`images[i]`; a fancy-index read of a batch's sorted indices is ~300x slower still), then
numpy slicing, flipping and float32 arithmetic per image. The shards
were just written, so they sit in the page cache: this measures the reader's CPU cost, not a disk.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from tqdm import tqdm

IMAGE_SIZE, CROP = 256, 227


def write_shards(root, n_images, shard_size, seed=0):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
    from shard_writer import write_dataset

    rng = np.random.default_rng(seed)
    images = np.empty((n_images, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i in tqdm(range(n_images), desc="random images", unit="img", leave=False):
        images[i] = rng.integers(0, 256, size=images.shape[1:], dtype=np.uint8)
    labels = rng.integers(0, 1000, size=n_images).astype(np.int32)
    write_dataset(root, {"train": (images, labels)}, [f"n{i:08d}" for i in range(1000)], shard_size)


def numpy_train_batches(ds, batch_size, seed, epoch):
    """The peer: the same epoch's images and augmentation draws, done with h5py fancy reads and numpy."""
    import h5py

    from refnet.data.shards import COLOUR_NOISE_EIGVAL_SCALE, train_draws

    files = [h5py.File(path, "r") for path in ds.shard_paths]
    order = ds.epoch_order(train=True, seed=seed, epoch=epoch)
    mean, eigvec = ds.stats["mean_image"], ds.stats["eigvec"]
    eigval = ds.stats["eigval"] * COLOUR_NOISE_EIGVAL_SCALE
    room = ds.image_size - CROP + 1
    try:
        for number, start in enumerate(range(0, len(order), batch_size)):
            indices = order[start : start + batch_size]
            stored = np.empty((len(indices), ds.image_size, ds.image_size, 3), dtype=np.uint8)
            shards = np.searchsorted(ds.starts, indices, side="right") - 1
            for k in np.argsort(indices):  # increasing file offsets
                stored[k] = files[shards[k]]["images"][indices[k] - ds.starts[shards[k]]]
            top, left, flip, alpha = train_draws(seed, epoch, number, len(indices), room)
            x = np.empty((len(indices), 3, CROP, CROP), dtype=np.float32)
            for k in range(len(indices)):
                window = np.s_[top[k] : top[k] + CROP, left[k] : left[k] + CROP]
                pixels = stored[k][window].astype(np.float32) - mean[window]
                if flip[k]:
                    pixels = pixels[:, ::-1]
                x[k] = (pixels + eigvec @ (alpha[k] * eigval)).transpose(2, 0, 1)
            yield x, ds.labels[indices]
    finally:
        for f in files:
            f.close()


def check_same_batches(ds, batch_size):
    """The peer must compute what refnet computes before their speeds are compared."""
    ours = ds.batches(batch_size, train=True, crop=CROP, prefetch_depth=0)
    peer = numpy_train_batches(ds, batch_size, seed=0, epoch=0)
    for (x, labels), (x_peer, labels_peer) in zip(ours, peer):
        if not (np.array_equal(labels, labels_peer) and np.allclose(x, x_peer, rtol=0, atol=1e-3)):
            raise SystemExit("bench_reader: refnet's batches differ from the numpy peer's")


def images_per_second(make_batches, epochs):
    """Best epoch's images per wall second and per CPU second of this process (warm-up epoch excluded).

    On a machine shared with other work the wall figure drops with the load; the CPU figure (all
    threads' CPU time) does not, and times the number of cores bounds what an idle machine gives.
    """
    wall, cpu = [], []
    for epoch in range(epochs + 1):
        start, start_cpu, count = time.perf_counter(), time.process_time(), 0
        for _, labels in make_batches(epoch):
            count += len(labels)
        if epoch:
            wall.append(count / (time.perf_counter() - start))
            cpu.append(count / (time.process_time() - start_cpu))
    return max(wall), max(cpu)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--shard-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--ten-crop-batch", type=int, default=16, help="10 crops of 227: 6 MB per image")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    import numba

    from refnet.data import ShardDataset

    with tempfile.TemporaryDirectory() as root:
        os.environ.setdefault("REFNET_CACHE_DIR", os.path.join(root, "cache"))
        write_shards(root, args.images, args.shard_size)
        ds = ShardDataset(root, "train")
        b = args.batch
        check_same_batches(ds, b)
        cases = {
            "refnet train": lambda e: ds.batches(b, train=True, crop=CROP, epoch=e),
            "numpy train (peer)": lambda e: numpy_train_batches(ds, b, 0, e),
            "refnet eval centre": lambda e: ds.batches(b, train=False, crop=CROP),
            "refnet eval 10-crop": lambda e: ds.batches(args.ten_crop_batch, train=False, crop=CROP, ten_crop=True),
        }
        rates = {name: images_per_second(make, args.epochs) for name, make in tqdm(cases.items(), desc="cases", leave=False)}

    print(f"reader, {args.images} images of {IMAGE_SIZE}x{IMAGE_SIZE} in shards of {args.shard_size}, "
          f"batch {b}, crop {CROP}, {numba.get_num_threads()} threads")
    print(f"load average over the last minute: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    peer_wall, peer_cpu = rates["numpy train (peer)"]
    print(f"{'case':<22}{'images/s':>10}{'vs numpy':>10}{'images/cpu-s':>14}{'vs numpy':>10}")
    for name, (wall, cpu) in rates.items():
        print(f"{name:<22}{wall:>10.0f}{wall / peer_wall:>9.2f}x{cpu:>14.0f}{cpu / peer_cpu:>9.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            summary = {name: {"images_per_second": w, "images_per_cpu_second": c} for name, (w, c) in rates.items()}
            json.dump({"images": args.images, "batch": b, "crop": CROP, "cases": summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
