"""A tiny, test-only writer of the shard format (issue 3's contract), so reader tests and benches do
not depend on the converter in data_tools/.

Layout written under OUT:
  OUT/<split>-NNNNN.h5  images uint8 (n, S, S, 3), one image per chunk; labels int32 (n,);
                        paths utf-8 strings; attrs format_version, split, image_size
  OUT/stats.h5          mean_image float32 (S, S, 3); mean_rgb, std_rgb, eigval (3,); eigvec (3, 3)
                        (column i is the eigenvector of eigval[i]); all in 0-255 units
  OUT/manifest.json     format_version, image_size, classes, splits: {split: {count, shards, skipped}}
"""

import json
import os

import h5py
import numpy as np

from refnet.data.manifest import file_sha256

FORMAT_VERSION = 1


def write_shard(path, images, labels, split, paths=None, compression=None):
    n, size = images.shape[0], images.shape[1]
    if paths is None:
        paths = [f"img{i:06d}.png" for i in range(n)]
    with h5py.File(path, "w") as f:
        chunks = (1, size, size, 3) if n else None
        f.create_dataset("images", data=images, dtype=np.uint8, chunks=chunks, compression=compression)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.int32))
        f.create_dataset("paths", data=list(paths), dtype=h5py.string_dtype("utf-8"))
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["split"] = split
        f.attrs["image_size"] = size


def image_stats(images):
    """Mean image and the RGB pixel covariance's eigen-decomposition, in 0-255 units (float64 maths)."""
    pixels = images.reshape(-1, 3).astype(np.float64)
    covariance = np.cov(pixels, rowvar=False)
    eigval, eigvec = np.linalg.eigh(covariance)
    return {
        "mean_image": images.astype(np.float64).mean(axis=0).astype(np.float32),
        "mean_rgb": pixels.mean(axis=0).astype(np.float32),
        "std_rgb": pixels.std(axis=0).astype(np.float32),
        "eigval": eigval.astype(np.float32),
        "eigvec": eigvec.astype(np.float32),
    }


def write_stats(out_dir, stats):
    with h5py.File(os.path.join(out_dir, "stats.h5"), "w") as f:
        for name, value in stats.items():
            f.create_dataset(name, data=value)


def write_dataset(out_dir, splits, classes, shard_size, stats=None, compression=None):
    """Write `splits` = {split: (images uint8 (n,S,S,3), labels (n,))} as shards of `shard_size` images.

    The stats come from the "train" split unless `stats` is given. Returns the manifest dict.
    """
    os.makedirs(out_dir, exist_ok=True)
    image_size = next(iter(splits.values()))[0].shape[1]
    manifest = {"format_version": FORMAT_VERSION, "image_size": image_size, "classes": list(classes), "splits": {}}
    for split, (images, labels) in splits.items():
        shards = []
        for number, start in enumerate(range(0, len(images), shard_size)):
            name = f"{split}-{number:05d}.h5"
            path = os.path.join(out_dir, name)
            stop = min(start + shard_size, len(images))
            write_shard(path, images[start:stop], labels[start:stop], split, compression=compression)
            shards.append({"file": name, "count": stop - start, "sha256": file_sha256(path)})
        manifest["splits"][split] = {"count": len(images), "shards": shards, "skipped": []}
    write_stats(out_dir, stats if stats is not None else image_stats(splits["train"][0]))
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest

