"""refnet.data: crops, flips, colour noise, mean subtraction, epoch coverage, determinism, errors.

Datasets are written by tests/shard_writer.py (the format contract, independent of data_tools) with
tiny images: S = 16 stored, crop 12.
"""

import json
import multiprocessing
import os
import threading

import h5py
import numpy as np
import pytest
from poison import assert_all_written, poisoned
from refs.augment import augment_crops as augment_crops_ref
from shard_writer import write_dataset, write_stats

from refnet.data import ShardDataset
from refnet.data import manifest as manifest_module
from refnet.data.augment import augment_crops, augment_crops_simple
from refnet.data.prefetch import prefetch

S, CROP = 16, 12


@pytest.fixture(autouse=True)
def private_checksum_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REFNET_CACHE_DIR", str(tmp_path / "cache"))


def quiet_stats(mean_image=None):
    """Stats with no colour noise (eigval 0) and the given mean image (default zero)."""
    return {
        "mean_image": np.zeros((S, S, 3), np.float32) if mean_image is None else mean_image.astype(np.float32),
        "mean_rgb": np.zeros(3, np.float32),
        "std_rgb": np.ones(3, np.float32),
        "eigval": np.zeros(3, np.float32),
        "eigvec": np.eye(3, dtype=np.float32),
    }


def write(root, images, labels, *, shard_size=7, stats=None, n_classes=None, compression=None):
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    write_dataset(root, {"train": (images, labels)}, [f"c{i}" for i in range(n_classes)], shard_size, stats, compression)
    return ShardDataset(root, "train")


def all_batches(ds, batch_size, **kw):
    return [(x.copy(), y.copy()) for x, y in ds.batches(batch_size, **kw)]


def window(image, top, left, flip, crop=CROP):
    """crop x crop window of an HWC image as CHW float64, mirrored left-right if `flip`."""
    w = image[top : top + crop, left : left + crop].astype(np.float64)
    return (w[:, ::-1] if flip else w).transpose(2, 0, 1)


def matching_windows(out, image):
    """Every (top, left, flip) whose window of `image` equals the CHW crop `out`."""
    room = image.shape[0] - out.shape[-1] + 1
    return [
        (t, l, f)
        for t in range(room)
        for l in range(room)
        for f in (0, 1)
        if np.array_equal(window(image, t, l, f, out.shape[-1]), out)
    ]


# ---- the kernel against its float64 reference ---------------------------------------------------


def test_kernel_matches_reference_and_is_deterministic(rng):
    b, k, size, crop = 5, 9, S, CROP
    images = rng.integers(0, 256, size=(b, size, size, 3), dtype=np.uint8)
    source = rng.integers(0, b, size=k).astype(np.int64)
    top = rng.integers(0, size - crop + 1, size=k).astype(np.int64)
    left = rng.integers(0, size - crop + 1, size=k).astype(np.int64)
    flip = rng.integers(0, 2, size=k).astype(np.uint8)
    alpha = rng.normal(0, 0.1, size=(k, 3)).astype(np.float32)
    mean_image = rng.uniform(0, 255, size=(size, size, 3)).astype(np.float32)
    eigval = np.array([900.0, 60.0, 7.0], np.float32)
    eigvec = np.linalg.qr(rng.normal(size=(3, 3)))[0].astype(np.float32)
    args = (images, source, top, left, flip, alpha, mean_image, eigval, eigvec)
    x = poisoned((k, 3, crop, crop))
    augment_crops(x, *args)
    assert_all_written(x, "x")
    np.testing.assert_allclose(x, augment_crops_ref(*args, crop), rtol=0, atol=1e-3)
    for kernel in (augment_crops, augment_crops_simple):  # run to run, and fast against simple: bit for bit
        again = poisoned((k, 3, crop, crop))
        kernel(again, *args)
        assert np.array_equal(x, again), kernel.__name__


# ---- train geometry, flips and mean subtraction -------------------------------------------------


def test_train_crops_are_windows_of_the_image_minus_mean_at_the_source_position(tmp_path, rng):
    n = 40
    images = rng.integers(0, 256, size=(n, S, S, 3), dtype=np.uint8)
    mean_image = rng.integers(0, 256, size=(S, S, 3)).astype(np.float32)  # integers: exact float32 maths
    ds = write(tmp_path, images, np.arange(n, dtype=np.int32), stats=quiet_stats(mean_image))
    seen = []
    for x, labels in ds.batches(16, train=True, crop=CROP, seed=3):
        assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape[1:] == (3, CROP, CROP)
        for out, label in zip(x, labels):
            # the mean mirrors with the image: out = flip(crop(image - mean))
            found = matching_windows(out, images[label].astype(np.float64) - mean_image)
            assert len(found) == 1, f"image {label}: {len(found)} matching windows"
            seen.append(found[0])
    tops, lefts, flips = np.array(seen).T
    assert set(tops) == set(lefts) == set(range(S - CROP + 1))  # 40 draws from 5 offsets: all seen
    assert 8 < flips.sum() < 32


def test_eval_centre_crop_minus_mean(tmp_path, rng):
    n, crop = 10, 11  # odd margin: the centre window starts at (16 - 11) // 2 = 2
    images = rng.integers(0, 256, size=(n, S, S, 3), dtype=np.uint8)
    mean_image = rng.uniform(0, 255, size=(S, S, 3)).astype(np.float32)
    ds = write(tmp_path, images, np.arange(n, dtype=np.int32), stats=quiet_stats(mean_image))
    (x, labels), = all_batches(ds, n, train=False, crop=crop)
    assert np.array_equal(labels, np.arange(n))  # natural order
    expected = (images[:, 2:13, 2:13].astype(np.float32) - mean_image[2:13, 2:13]).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(x, expected)


def test_ten_crop_geometry_and_order(tmp_path, rng):
    n = 3
    images = rng.integers(0, 256, size=(n, S, S, 3), dtype=np.uint8)
    mean_image = rng.integers(0, 256, size=(S, S, 3)).astype(np.float32)
    ds = write(tmp_path, images, np.arange(n, dtype=np.int32), stats=quiet_stats(mean_image))
    (x, labels), = all_batches(ds, 8, train=False, crop=CROP, ten_crop=True)
    assert x.shape == (n, 10, 3, CROP, CROP) and x.flags.c_contiguous
    far, centre = S - CROP, (S - CROP) // 2
    order = [(0, 0), (0, far), (far, 0), (far, far), (centre, centre)]  # TL, TR, BL, BR, centre
    for b in range(n):
        centred = images[b].astype(np.float64) - mean_image
        for view, (top, left) in enumerate(order):
            np.testing.assert_array_equal(x[b, view], window(centred, top, left, 0))
            np.testing.assert_array_equal(x[b, view + 5], window(centred, top, left, 1))


# ---- colour noise -------------------------------------------------------------------------------


def test_pca_colour_noise_statistics(tmp_path, rng):
    n, size = 3000, 4
    eigvec = np.linalg.qr(rng.normal(size=(3, 3)))[0].astype(np.float32)
    eigval = np.array([9000.0, 250.0, 60.0], np.float32)  # ImageNet-like, 0-255 units squared
    stats = dict(quiet_stats(), mean_image=np.zeros((size, size, 3), np.float32), eigval=eigval, eigvec=eigvec)
    values = rng.integers(0, 256, size=(n, 1, 1, 3), dtype=np.uint8)
    images = np.ascontiguousarray(np.broadcast_to(values, (n, size, size, 3)))  # flat colour per image
    write_dataset(tmp_path, {"train": (images, np.zeros(n, np.int32))}, ["c0"], 1000, stats)
    ds = ShardDataset(tmp_path, "train")
    shifts = []
    for x, _ in ds.batches(512, train=True, crop=2, seed=7):
        # one offset per image: the same RGB shift on every pixel of the crop
        assert np.allclose(x, x[:, :, :1, :1], atol=1e-4)
        shifts.append(x[:, :, 0, 0].astype(np.float64))
    order = ds.epoch_order(train=True, seed=7)
    shifts = np.concatenate(shifts) - values[order, 0, 0].astype(np.float64)
    # the paper's sum_e alpha_e lambda_e p_e on [0, 1] pixels, alpha ~ N(0, 0.1), in 0-255 units:
    # lambda_e = eigval_e / 255**2, shift = 255 * sum_e alpha_e lambda_e p_e
    lam = eigval.astype(np.float64) / 255**2
    expected_cov = 255**2 * eigvec.astype(np.float64) @ np.diag((0.1 * lam) ** 2) @ eigvec.T
    standard_error = np.sqrt(np.diag(expected_cov) / n)
    assert np.all(np.abs(shifts.mean(axis=0)) < 5 * standard_error)
    np.testing.assert_allclose(np.cov(shifts, rowvar=False), expected_cov, atol=0.1 * expected_cov.max())
    # along each eigenvector separately: alpha_e = coefficient / (255 lambda_e), N(0, 0.1), uncorrelated
    alphas = shifts @ eigvec.astype(np.float64) / (255 * lam)
    np.testing.assert_allclose(alphas.std(axis=0), 0.1, rtol=0.05)
    np.testing.assert_allclose(np.corrcoef(alphas, rowvar=False), np.eye(3), atol=0.1)
    assert 2.5 < np.sqrt(np.cov(shifts, rowvar=False).trace()) < 4.5  # grey levels: a change of illumination


# ---- epochs, order, labels ----------------------------------------------------------------------


def flat_dataset(root, n, shard_size=7):
    """Image i filled with colour value i and labelled n - 1 - i; quiet stats: x identifies its image."""
    values = np.arange(n, dtype=np.uint8)
    images = np.ascontiguousarray(np.broadcast_to(values[:, None, None, None], (n, S, S, 3)))
    labels = (n - 1 - np.arange(n)).astype(np.int32)
    return write(root, images, labels, shard_size=shard_size, stats=quiet_stats())


@pytest.mark.parametrize("train", [True, False])
def test_every_image_once_per_epoch_with_correct_labels(tmp_path, train):
    n = 50  # 8 shards of 7 (the last of 1), batches of 16: the last batch holds 2
    ds = flat_dataset(tmp_path, n)
    assert len(ds) == n and len(ds.shard_paths) == 8
    batches = all_batches(ds, 16, train=train, crop=CROP, seed=1, epoch=2)
    assert [len(y) for _, y in batches] == [16, 16, 16, 2]
    images = np.concatenate([x[:, 0, 0, 0] for x, _ in batches]).astype(np.int64)
    labels = np.concatenate([y for _, y in batches])
    assert all(y.dtype == np.int32 for _, y in batches)
    assert sorted(images) == list(range(n))
    np.testing.assert_array_equal(labels, n - 1 - images)  # labels follow their images through the shuffle
    if train:
        assert not np.array_equal(images, np.arange(n))
    else:
        np.testing.assert_array_equal(images, np.arange(n))


def test_batches_kept_by_the_consumer_are_never_overwritten(tmp_path):
    n = 50
    ds = flat_dataset(tmp_path, n)
    kept = list(ds.batches(4, train=False, crop=CROP))  # every batch held, nothing copied
    np.testing.assert_array_equal(np.concatenate([x[:, 0, 0, 0] for x, _ in kept]), np.arange(n))
    views = [x[:, 1] for x, _ in ds.batches(4, train=False, crop=CROP, ten_crop=True)]  # a view holds its batch
    np.testing.assert_array_equal(np.concatenate([v[:, 0, 0, 0] for v in views]), np.arange(n))


def test_batches_dropped_by_the_consumer_are_reused(tmp_path):
    ds = flat_dataset(tmp_path, 50)
    addresses, values = set(), []
    for x, _ in ds.batches(2, train=False, crop=CROP, prefetch_depth=2):
        addresses.add(x.__array_interface__["data"][0])
        values.extend(x[:, 0, 0, 0])
    assert len(addresses) <= 2 + 4  # 25 batches through at most prefetch_depth + 4 arrays
    np.testing.assert_array_equal(values, np.arange(50))


def test_drop_last(tmp_path):
    ds = flat_dataset(tmp_path, 50)
    batches = all_batches(ds, 16, train=True, crop=CROP, drop_last=True)
    assert [len(y) for _, y in batches] == [16, 16, 16]
    assert len(set(np.concatenate([y for _, y in batches]))) == 48


def test_same_seed_and_epoch_reproduce_other_epochs_differ(tmp_path, rng):
    images = rng.integers(0, 256, size=(30, S, S, 3), dtype=np.uint8)
    ds = write(tmp_path, images, rng.integers(0, 5, size=30).astype(np.int32), n_classes=5)
    first = all_batches(ds, 8, train=True, crop=CROP, seed=5, epoch=1)
    for depth in (0, 1):
        again = all_batches(ds, 8, train=True, crop=CROP, seed=5, epoch=1, prefetch_depth=depth)
        for (x1, y1), (x2, y2) in zip(first, again, strict=True):
            assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    # a batch depends only on (seed, epoch, its number): reading the epoch again from a fresh dataset
    fresh = all_batches(ShardDataset(tmp_path, "train"), 8, train=True, crop=CROP, seed=5, epoch=1)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, fresh, strict=True))
    for other in (dict(seed=5, epoch=2), dict(seed=6, epoch=1)):
        x_other = all_batches(ds, 8, train=True, crop=CROP, **other)[0][0]
        assert not np.array_equal(first[0][0], x_other)
    order1, order2 = ds.epoch_order(train=True, seed=5, epoch=1), ds.epoch_order(train=True, seed=5, epoch=2)
    assert sorted(order1) == sorted(order2) and not np.array_equal(order1, order2)


@pytest.mark.parametrize("compression", [None, "gzip"])  # raw chunk copies / h5py's filtered reads
def test_read_returns_stored_images_in_the_requested_order(tmp_path, rng, compression):
    images = rng.integers(0, 256, size=(20, S, S, 3), dtype=np.uint8)
    ds = write(tmp_path, images, np.zeros(20, np.int32), n_classes=1, compression=compression)
    picks = [13, 2, 19, 2, 0, 7, 8, 6]  # unsorted, repeated, across shards
    np.testing.assert_array_equal(ds.read(picks), images[picks])
    assert ds.read([]).shape == (0, S, S, 3)
    with pytest.raises(ValueError, match="indices"):
        ds.read([20])


def _read_in_child(ds, queue):
    queue.put(ds.read([1, 15]))


def test_reads_after_fork_use_their_own_file_handles(tmp_path, rng):
    images = rng.integers(0, 256, size=(20, S, S, 3), dtype=np.uint8)
    ds = write(tmp_path, images, np.zeros(20, np.int32), n_classes=1)
    ds.read([0, 19])  # the parent now holds open h5py files
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(ds, queue))
    child.start()
    got = queue.get(timeout=30)
    child.join(timeout=30)
    assert child.exitcode == 0
    np.testing.assert_array_equal(got, images[[1, 15]])
    np.testing.assert_array_equal(ds.read([1, 15]), images[[1, 15]])


# ---- prefetch -----------------------------------------------------------------------------------


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "refnet-prefetch"]


def test_prefetch_early_close_stops_the_thread(tmp_path):
    ds = flat_dataset(tmp_path, 50)
    batches = ds.batches(4, train=True, crop=CROP, prefetch_depth=2)
    next(batches)
    assert prefetch_threads()
    batches.close()
    assert not prefetch_threads()

    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]

    for item in prefetch(endless(), depth=3):
        if item == 5:
            break
    assert not prefetch_threads()
    assert len(produced) <= 6 + 3 + 1  # bounded: at most `depth` (+1 in hand) items ahead


def test_prefetch_reraises_producer_errors_in_order():
    def failing():
        yield 0
        yield 1
        raise RuntimeError("shard unreadable")

    got = []
    with pytest.raises(RuntimeError, match="shard unreadable"):
        for item in prefetch(failing()):
            got.append(item)
    assert got == [0, 1]
    assert not prefetch_threads()


def test_read_error_mid_epoch_reaches_the_consumer(tmp_path):
    ds = flat_dataset(tmp_path, 50)
    os.remove(ds.shard_paths[3])  # vanishes after the dataset was opened
    with pytest.raises(ValueError, match="train-00003.h5' cannot be opened"):
        all_batches(ds, 16, train=False, crop=CROP)
    assert not prefetch_threads()


# ---- checksums ----------------------------------------------------------------------------------


def test_checksum_mismatch_and_opt_out(tmp_path, rng):
    images = rng.integers(0, 256, size=(20, S, S, 3), dtype=np.uint8)
    write(tmp_path, images, np.zeros(20, np.int32), n_classes=1)
    shard = tmp_path / "train-00001.h5"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF  # one pixel of the last image
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum mismatch"):
        ShardDataset(tmp_path, "train")
    assert len(ShardDataset(tmp_path, "train", verify=False)) == 20


def test_checksums_are_hashed_once_per_file_version(tmp_path, rng, monkeypatch):
    images = rng.integers(0, 256, size=(20, S, S, 3), dtype=np.uint8)
    write(tmp_path, images, np.zeros(20, np.int32), n_classes=1)  # opens (and hashes) 3 shards
    hashed = []
    real_sha256 = manifest_module.file_sha256
    monkeypatch.setattr(manifest_module, "file_sha256", lambda path: hashed.append(path) or real_sha256(path))
    ShardDataset(tmp_path, "train")
    assert hashed == []
    shard = tmp_path / "train-00002.h5"
    os.utime(shard, ns=(0, 0))  # same bytes, new modification time: hashed again
    ShardDataset(tmp_path, "train")
    assert hashed == [str(shard)]


# ---- errors -------------------------------------------------------------------------------------


@pytest.fixture
def small(tmp_path, rng):
    images = rng.integers(0, 256, size=(20, S, S, 3), dtype=np.uint8)
    write(tmp_path, images, rng.integers(0, 3, size=20).astype(np.int32), n_classes=3)
    return tmp_path


def edit_manifest(root, edit):
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_missing_manifest_shard_or_stats(small):
    with pytest.raises(ValueError, match="no manifest.json"):
        ShardDataset(small / "elsewhere", "train")
    os.remove(small / "train-00001.h5")
    with pytest.raises(ValueError, match="train-00001.h5.*missing"):
        ShardDataset(small, "train")


def test_missing_stats(small):
    os.remove(small / "stats.h5")
    with pytest.raises(ValueError, match="no stats.h5"):
        ShardDataset(small, "train")


def test_unknown_split(small):
    with pytest.raises(ValueError, match=r"split: 'val' is not in .* splits \['train'\]"):
        ShardDataset(small, "val")


def test_unknown_format_version_in_manifest_or_shard(small):
    with h5py.File(small / "train-00002.h5", "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(ValueError, match="train-00002.h5: format_version 99 is unknown"):
        ShardDataset(small, "train", verify=False)
    edit_manifest(small, lambda m: m.update(format_version=2))
    with pytest.raises(ValueError, match="format_version 2 is unknown"):
        ShardDataset(small, "train")


def test_labels_out_of_range(small):
    edit_manifest(small, lambda m: m.update(classes=["only", "two"]))
    with pytest.raises(ValueError, match=r"label 2 .* out of range \[0, 2\)"):
        ShardDataset(small, "train")


def test_stats_of_the_wrong_shape(small):
    write_stats(small, dict(quiet_stats(), mean_image=np.zeros((8, 8, 3), np.float32)))
    with pytest.raises(ValueError, match=r"mean_image expected shape \(16, 16, 3\)"):
        ShardDataset(small, "train")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(batch_size=0), "batch_size: expected an integer >= 1, got 0"),
        (dict(batch_size=2.5), "batch_size"),
        (dict(crop=S + 1), "crop: expected at most the stored image size 16, got 17"),
        (dict(crop=0), "crop"),
        (dict(seed=-1), "seed"),
        (dict(epoch=-1), "epoch"),
        (dict(ten_crop=True, train=True), "ten_crop"),
        (dict(prefetch_depth=-1), "prefetch_depth"),
    ],
)
def test_bad_batch_arguments(small, kwargs, message):
    ds = ShardDataset(small, "train")
    args = dict(batch_size=4, train=False, crop=CROP)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ds.batches(args.pop("batch_size"), **args)


@pytest.mark.parametrize("train", [True, False])
def test_rank_parts_together_are_the_one_process_batches(tmp_path, train):
    """Data-parallel ranks each take a contiguous share of every batch, with the draws of the whole batch."""
    from refnet.data import ShardDataset

    root = _dataset_for_parts(tmp_path)
    ds = ShardDataset(root, "train")
    kwargs = dict(train=train, crop=12, seed=3, epoch=1, prefetch_depth=0)
    whole = [(x.copy(), y.copy()) for x, y in ds.batches(5, **kwargs)]
    parts = [[(x.copy(), y.copy()) for x, y in ds.batches(5, part=(rank, 2), **kwargs)] for rank in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(whole)
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *parts):
        assert len(y0) == len(y) - len(y) // 2
        np.testing.assert_array_equal(np.concatenate([x0, x1]), x)
        np.testing.assert_array_equal(np.concatenate([y0, y1]), y)


def test_bad_part_is_rejected(tmp_path):
    from refnet.data import ShardDataset

    ds = ShardDataset(_dataset_for_parts(tmp_path), "train")
    for bad in [(2, 2), (-1, 2), (0, 0), "x"]:
        with pytest.raises(ValueError, match="part: expected"):
            ds.batches(4, train=True, crop=12, part=bad)


def _dataset_for_parts(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(13, 16, 16, 3), dtype=np.uint8)
    labels = (np.arange(13) % 3).astype(np.int32)
    root = tmp_path / "parts"
    write_dataset(root, {"train": (images, labels)}, ["a", "b", "c"], shard_size=4)
    return root


def test_prefetch_runs_inline_where_the_threading_layer_forbids_concurrent_kernels(monkeypatch):
    from refnet.data import prefetch as prefetch_module

    monkeypatch.setattr(prefetch_module, "concurrent_kernels_are_safe", lambda: False)
    with pytest.warns(RuntimeWarning, match="workqueue"):
        assert list(prefetch_module.prefetch(iter(range(5)), 2)) == [0, 1, 2, 3, 4]


def test_first_batch_starts_mid_epoch_with_the_same_batches(tmp_path):
    from refnet.data import ShardDataset

    ds = ShardDataset(_dataset_for_parts(tmp_path), "train")
    kwargs = dict(train=True, crop=12, seed=2, epoch=3, prefetch_depth=0)
    whole = [(x.copy(), y.copy()) for x, y in ds.batches(4, **kwargs)]
    rest = [(x.copy(), y.copy()) for x, y in ds.batches(4, first_batch=2, **kwargs)]
    assert len(rest) == len(whole) - 2
    for (x, y), (xr, yr) in zip(whole[2:], rest):
        np.testing.assert_array_equal(xr, x)
        np.testing.assert_array_equal(yr, y)
    with pytest.raises(ValueError, match="first_batch"):
        ds.batches(4, first_batch=-1, **kwargs)


def test_batches_are_prefetched_beside_a_gpu_only():
    # on the CPU the batch's parallel kernel would share the cores with the network's kernels
    from refnet.data.prefetch import depth_for

    assert depth_for("cpu") == 0
    assert depth_for("cuda") >= 1
