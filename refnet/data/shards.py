"""ShardDataset: a converted split's HDF5 shards read back as the paper's augmented batches.

Shard format (issue 3, written by `refnet convert`): OUT/<split>-NNNNN.h5 holds `images` uint8
(n, S, S, 3) with one image per chunk, `labels` int32 (n,), `paths` utf-8, and attributes
`format_version`, `split`, `image_size`; OUT/stats.h5 holds the train split's `mean_image` float32
(S, S, 3) and the RGB covariance's `eigval` (3,) / `eigvec` (3, 3) (column e pairs with eigval[e]),
in 0-255 units. Images are numbered 0..len-1 across the shards in manifest order.

Batches, x float32 C-contiguous NCHW in 0-255 units minus the mean image (no division):
  train=True   a random crop x crop window, a random horizontal flip (p = 0.5) and PCA colour noise
               (alpha ~ N(0, 0.1) per image and eigen-direction; every pixel gets
               255 * sum_e alpha_e * (eigval_e / 255**2) * eigvec[:, e], see below); mean image
               subtracted at the crop's source position before the flip (refnet/data/augment.py).
               Images in a new random order every epoch.
  train=False  the centre crop; with ten_crop=True x is (B, 10, 3, crop, crop) with the crops in the
               order top-left, top-right, bottom-left, bottom-right, centre, then the same five
               mirrored. Natural order, no randomness.
The paper's colour noise adds sum_e alpha_e lambda_e p_e with lambda_e, p_e the eigenvalues and
eigenvectors of the RGB covariance, without saying in which pixel units. The sum scales with the
square of the unit, so it matters: ImageNet's channels have standard deviations near 58 grey
levels and are strongly correlated, so the largest 0-255 eigenvalue is roughly 9,000 and the shift
would have a standard deviation near 900 grey levels. Read with pixels in [0, 1] (as, e.g.,
fb.resnet.torch's Lighting transform does) it is roughly 3.5 grey levels, a change of
illumination. That reading is used here: lambda_e = eigval_e / 255**2, and the shift converted
back to 0-255 units (COLOUR_NOISE_EIGVAL_SCALE).

Randomness (permutation, offsets, flips, alphas) is drawn on the host from numpy Generators seeded
by (seed, epoch) and (seed, epoch, batch number), so a batch depends on nothing else: not on
prefetching, threads or which batches were read before.

h5py file handles are opened lazily in the process that reads and reopened after a fork.
"""

import os

import h5py
import numpy as np

from ..distributed import share_bounds
from ..ops._checks import check_positive_int
from .augment import augment_crops
from .manifest import FORMAT_VERSION, load_manifest, load_stats, split_entry, verify_checksums
from .prefetch import prefetch
from .recycle import ArrayPool

PCA_NOISE_STD = 0.1  # the paper's standard deviation of the colour-noise coefficients alpha
# stats.h5 eigenvalues (0-255 units squared) -> the paper's formula on [0, 1] pixels, times 255 to
# give the shift in 0-255 units: 255 * eigval / 255**2 (see the module docstring)
COLOUR_NOISE_EIGVAL_SCALE = np.float32(1.0 / 255.0)
_PERMUTATION_STREAM, _BATCH_STREAM = 0, 1  # keep the permutation's and the batches' seeds apart


class ShardDataset:
    """One split of a converted dataset: `len(ds)` images, `ds.classes`, `ds.image_size`, `ds.stats`.

    verify=True checks every shard's sha256 against the manifest (once per shard file version, see
    refnet/data/manifest.py); False skips it. Structure (attributes, shapes, label range) is always
    checked when the dataset is opened. progress=False hides the hashing's progress bar.
    """

    def __init__(self, root, split, *, verify=True, progress=True, require_stats=True):
        self.root = os.fspath(root)
        self.split = split
        manifest = load_manifest(self.root)
        entry = split_entry(manifest, split, self.root)
        self.classes = list(manifest["classes"])
        self.image_size = int(manifest["image_size"])
        self.shard_paths = [os.path.join(self.root, shard["file"]) for shard in entry["shards"]]
        for path in self.shard_paths:
            if not os.path.isfile(path):
                raise ValueError(f"split {split!r}: shard {path!r} listed in the manifest is missing")
        if verify:
            verify_checksums(zip(self.shard_paths, (shard["sha256"] for shard in entry["shards"])), progress=progress)
        counts = [int(shard["count"]) for shard in entry["shards"]]
        if sum(counts) != int(entry.get("count", sum(counts))):
            raise ValueError(f"manifest: split {split!r} count {entry['count']} != sum of its shard counts {sum(counts)}")
        labels = [self._check_shard(path, count) for path, count in zip(self.shard_paths, counts)]
        self.labels = np.concatenate(labels) if labels else np.empty(0, np.int32)
        # shard s holds images starts[s] .. starts[s + 1] - 1
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # A split converted without a train split has no stats.h5: evaluation only, with the mean
        # image given to subtract_mean_image (a model's own preprocessing, refnet/preprocess.py).
        self.has_stats = require_stats or os.path.isfile(os.path.join(self.root, "stats.h5"))
        if self.has_stats:
            self.stats = load_stats(self.root, self.image_size)
        else:
            self.stats = {"mean_image": None, "eigval": np.zeros(3, np.float32), "eigvec": np.eye(3, dtype=np.float32)}
        self._noise_eigval = self.stats["eigval"] * COLOUR_NOISE_EIGVAL_SCALE
        self._files, self._pid = {}, os.getpid()

    def _check_shard(self, path, count):
        size = self.image_size
        with h5py.File(path, "r") as f:
            attrs = {key: _plain(f.attrs.get(key)) for key in ("format_version", "split", "image_size")}
            if attrs["format_version"] != FORMAT_VERSION:
                raise ValueError(f"{path}: format_version {attrs['format_version']!r} is unknown, this reader reads {FORMAT_VERSION}")
            if attrs["split"] != self.split or attrs["image_size"] != size:
                raise ValueError(f"{path}: attributes split={attrs['split']!r} image_size={attrs['image_size']!r}, manifest says {self.split!r} {size}")
            images, labels = f.get("images"), f.get("labels")
            if images is None or images.shape != (count, size, size, 3) or images.dtype != np.uint8:
                got = None if images is None else (images.shape, str(images.dtype))
                raise ValueError(f"{path}: images expected uint8 {(count, size, size, 3)}, got {got}")
            if labels is None or labels.shape != (count,):
                raise ValueError(f"{path}: labels expected shape {(count,)}, got {None if labels is None else labels.shape}")
            values = labels[()].astype(np.int32)
        bad = (values < 0) | (values >= len(self.classes))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{path}: label {values[first]} of image {first} is out of range [0, {len(self.classes)})")
        return values

    def subtract_mean_image(self, mean_image):
        """Centre the crops with `mean_image` (float32 (S, S, 3), 0-255 RGB units) instead of stats.h5's."""
        from ..ops._checks import check_array

        mean_image = np.ascontiguousarray(mean_image, dtype=np.float32)
        check_array("mean_image", mean_image, ndim=3, shape=(self.image_size, self.image_size, 3))
        self.stats = dict(self.stats, mean_image=mean_image)

    def __len__(self):
        return int(self.starts[-1])

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_files"] = {}  # h5py handles never cross a process boundary
        return state

    def _images(self, shard):
        """The shard's `images` dataset, opened in this process, and whether its chunks are raw pixels."""
        if self._pid != os.getpid():  # forked: the parent's handles belong to the parent
            self._files, self._pid = {}, os.getpid()
        opened = self._files.get(shard)
        if opened is None:
            try:
                f = h5py.File(self.shard_paths[shard], "r")
            except OSError as exc:
                raise ValueError(f"shard {self.shard_paths[shard]!r} cannot be opened any more: {exc}") from None
            images = f["images"]
            size = self.image_size
            raw = images.chunks == (1, size, size, 3) and images.id.get_create_plist().get_nfilters() == 0
            opened = self._files[shard] = (f, images, raw)
        return opened[1], opened[2]

    def close(self):
        """Close the h5py files this process opened (they reopen on the next read)."""
        for f, _, _ in self._files.values():
            f.close()
        self._files = {}

    # ---- reading -----------------------------------------------------------------------------

    def _read_sorted(self, out, indices):
        """Read images `indices` (sorted, increasing) into out[0..len-1].

        An uncompressed one-image chunk is the image's bytes: it is copied straight into `out`
        (read_direct_chunk, about 3x faster than a selection read); compressed shards are read
        through h5py's filters, one read per run of consecutive images.
        """
        if not len(indices):
            return
        shards = np.searchsorted(self.starts, indices, side="right") - 1
        pixels = out.reshape(len(out), -1)
        run_start = 0
        for k in range(1, len(indices) + 1):
            if k < len(indices) and shards[k] == shards[k - 1] and indices[k] == indices[k - 1] + 1:
                continue
            shard = int(shards[run_start])
            first = int(indices[run_start] - self.starts[shard])
            images, raw = self._images(shard)
            if raw:
                for row in range(run_start, k):
                    images.id.read_direct_chunk((first + row - run_start, 0, 0, 0), out=pixels[row])
            else:
                images.read_direct(out, np.s_[first : first + k - run_start], np.s_[run_start:k])
            run_start = k

    def read(self, indices):
        """Stored uint8 images (n, S, S, 3) for the given image numbers, in the given order."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise ValueError(f"indices: expected image numbers in [0, {len(self)}), got {indices.min()}..{indices.max()}")
        stored, row_of = self._load(indices)
        return stored[row_of]

    # ---- batches -----------------------------------------------------------------------------

    def epoch_order(self, *, train, seed=0, epoch=0):
        """The image numbers of one epoch in batch order: a fresh permutation per (seed, epoch) when training."""
        if not train:
            return np.arange(len(self), dtype=np.int64)
        return np.random.default_rng([seed, epoch, _PERMUTATION_STREAM]).permutation(len(self))

    def batches(self, batch_size, *, train, crop=227, seed=0, epoch=0, ten_crop=False, drop_last=False, prefetch_depth=2,
                part=(0, 1), first_batch=0):
        """Yield (x, labels) for one epoch; see the module docstring for what x holds.

        `first_batch` starts the epoch at that batch without reading the ones before it (a run
        resumed mid-epoch): batch b is a function of (seed, epoch, b) alone, so it is the same batch.

        `part=(rank, ranks)` yields only that rank's contiguous share of every batch (data-parallel
        training, refnet.distributed): the batches are planned, and their random draws made, for
        the whole `batch_size`, so the ranks' shares together are exactly the one-process batch.

        A background thread prepares up to `prefetch_depth` batches ahead (0: no thread, each batch
        is made when asked for). Its kernel runs with the GIL released, so it overlaps the consumer's
        nogil compute; with Numba's `workqueue` threading layer two threads must not launch parallel
        kernels at once (omp and tbb allow it), use prefetch_depth=0 there.

        The arrays of a batch the consumer has dropped (no reference or view left) are refilled
        for later batches; a batch that is kept stays as it was.
        """
        batch_size = check_positive_int("batch_size", batch_size)
        crop = check_positive_int("crop", crop)
        seed = check_positive_int("seed", seed, minimum=0)
        epoch = check_positive_int("epoch", epoch, minimum=0)
        prefetch_depth = check_positive_int("prefetch_depth", prefetch_depth, minimum=0)
        if crop > self.image_size:
            raise ValueError(f"crop: expected at most the stored image size {self.image_size}, got {crop}")
        if ten_crop and train:
            raise ValueError("ten_crop: only for evaluation (train=False)")
        if train and not self.has_stats:
            raise ValueError(f"train: {self.root!r} has no stats.h5 (no train split converted), evaluation only")
        if self.stats["mean_image"] is None:
            raise ValueError(f"{self.root!r} has no stats.h5: give the mean image with subtract_mean_image first")
        first_batch = check_positive_int("first_batch", first_batch, minimum=0)
        rank, ranks = _check_part(part)
        order = self.epoch_order(train=train, seed=seed, epoch=epoch)
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        starts = range(first_batch * batch_size, stop, batch_size)
        plan = ((start // batch_size, order[start : start + batch_size]) for start in starts)
        size, views = self.image_size, (10 if ten_crop else 1)
        local_rows = share_bounds(batch_size, 0, ranks)[1]  # the largest share of a full batch
        # a batch array is reused once the consumer has dropped it (see refnet/data/recycle.py):
        # the queue, the batch in hand and the generators' locals can each hold one
        pools = (
            ArrayPool((local_rows, size, size, 3), np.uint8, keep=2),
            ArrayPool((local_rows * views, 3, crop, crop), np.float32, keep=prefetch_depth + 4),
        )
        if train:
            batches = (
                self._train_batch(indices, crop, (seed, epoch, number), pools, share_bounds(len(indices), rank, ranks))
                for number, indices in plan
            )
        else:
            batches = (
                self._eval_batch(rank_indices, crop, ten_crop, pools)
                for _, indices in plan
                for rank_indices in [indices[slice(*share_bounds(len(indices), rank, ranks))]]
            )
        return prefetch(batches, prefetch_depth) if prefetch_depth else batches

    def _load(self, indices, stored=None):
        """Stored images in sorted order, and for each position of `indices` its row in them."""
        order = np.argsort(indices, kind="stable")
        if stored is None:
            stored = np.empty((len(indices), self.image_size, self.image_size, 3), dtype=np.uint8)
        self._read_sorted(stored, indices[order])
        row_of = np.empty(len(indices), dtype=np.int64)
        row_of[order] = np.arange(len(indices))
        return stored, row_of

    def _train_batch(self, indices, crop, draw_key, pools, share):
        draws = train_draws(*draw_key, len(indices), self.image_size - crop + 1)
        top, left, flip, alpha = (d[share[0] : share[1]] for d in draws)
        indices = indices[share[0] : share[1]]
        stored, row_of = self._load(indices, _take(pools[0], len(indices)))
        x = _take(pools[1], len(indices))
        self._run_kernel(x, stored, row_of, top, left, flip, alpha)
        return x, self.labels[indices]

    def _eval_batch(self, indices, crop, ten_crop, pools):
        stored, row_of = self._load(indices, _take(pools[0], len(indices)))
        n, views = len(indices), (10 if ten_crop else 1)
        top, left, flip = crop_windows(self.image_size, crop, ten_crop)
        x = _take(pools[1], n * views)
        self._run_kernel(
            x,
            stored,
            np.repeat(row_of, views),
            np.tile(top, n),
            np.tile(left, n),
            np.tile(flip, n),
            np.zeros((n * views, 3), dtype=np.float32),
        )
        if ten_crop:
            x = x.reshape(n, views, 3, crop, crop)
        return x, self.labels[indices]

    def _run_kernel(self, x, stored, source, top, left, flip, alpha):
        stats = self.stats
        augment_crops(x, stored, source, top, left, flip, alpha, stats["mean_image"], self._noise_eigval, stats["eigvec"])


def _check_part(part):
    try:
        rank, ranks = (int(v) for v in part)
    except (TypeError, ValueError):
        raise ValueError(f"part: expected (rank, ranks) with 0 <= rank < ranks, got {part!r}") from None
    if not 0 <= rank < ranks:
        raise ValueError(f"part: expected (rank, ranks) with 0 <= rank < ranks, got {part!r}")
    return rank, ranks


def train_draws(seed, epoch, number, n, room):
    """Training batch `number`'s random crop offsets (top, left in [0, room)), flips and colour alphas."""
    rng = np.random.default_rng([seed, epoch, _BATCH_STREAM, number])
    top = rng.integers(0, room, size=n, dtype=np.int64)
    left = rng.integers(0, room, size=n, dtype=np.int64)
    flip = rng.integers(0, 2, size=n, dtype=np.uint8)
    alpha = rng.normal(0.0, PCA_NOISE_STD, size=(n, 3)).astype(np.float32)
    return top, left, flip, alpha


def _take(pool, rows):
    """An array from `pool`, or a fresh one of `rows` rows for a short last batch."""
    if rows == pool.shape[0]:
        return pool.take()
    return np.empty((rows,) + pool.shape[1:], pool.dtype)


def _plain(value):
    """An HDF5 attribute as a plain Python value (numpy scalars and bytes read back from other writers)."""
    if isinstance(value, np.generic):
        value = value.item()
    return value.decode("utf-8") if isinstance(value, bytes) else value


def crop_windows(image_size, crop, ten_crop):
    """(top, left, flip) of the centre crop, or of the ten crops in their documented order."""
    far, centre = image_size - crop, (image_size - crop) // 2
    if not ten_crop:
        return np.array([centre], dtype=np.int64), np.array([centre], dtype=np.int64), np.zeros(1, dtype=np.uint8)
    top = np.array([0, 0, far, far, centre] * 2, dtype=np.int64)
    left = np.array([0, far, 0, far, centre] * 2, dtype=np.int64)
    flip = np.array([0] * 5 + [1] * 5, dtype=np.uint8)
    return top, left, flip
