"""Pixel statistics of the train split, written to OUT/stats.h5 for the reader's normalisation and
the paper's PCA colour noise (section 4.1).

All sums are exact int64 (uint8 values, products <= 255*255), so the result does not depend on
the order the images arrive in: a resumed conversion gives the same bits as an uninterrupted one.
From N images of S x S pixels (P = N*S*S pixels, x a pixel's RGB in 0..255):

    mean_image[y, x, c] = sum_n image_n[y, x, c] / N                  float32 (S, S, 3)
    mean_rgb[c]         = sum_pixels x_c / P                           float32 (3,)
    cov[c, d]           = sum_pixels x_c x_d / P - mean_rgb[c] mean_rgb[d]   (population covariance)
    std_rgb[c]          = sqrt(cov[c, c])                              float32 (3,)
    eigval, eigvec      = eigen-decomposition of cov, eigval descending,
                          eigvec[:, i] the unit eigenvector of eigval[i]      float32 (3,), (3, 3)

all in 0-255 units. Attributes `images` (N) and `pixels` (P) say what they were computed from.

Because the sums are exact, the sums of disjoint sets of images add up to the sums of their union:
each part of a split-up conversion (`refnet convert --part i/k`) saves its sums with `save_sums`,
and `--merge` adds them (`add_sums`) into the same bits a one-part conversion computes.
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit

STATS_KEYS = ("mean_image", "mean_rgb", "std_rgb", "eigval", "eigvec")
SUM_KEYS = ("pixel_sum", "channel_sum", "channel_products")  # PixelStats' int64 running sums


@njit(cache=True)
def accumulate_image(image, pixel_sum, channel_sum, channel_products):
    """Add one uint8 (S, S, 3) image into the int64 running sums (in place).

    pixel_sum (S, S, 3): per-position sums; channel_sum (3,): sums over all pixels;
    channel_products (3, 3): sums of x_c * x_d over all pixels (upper triangle; mirrored at the end).
    """
    height, width, _ = image.shape
    for y in range(height):
        for x in range(width):
            r = np.int64(image[y, x, 0])
            g = np.int64(image[y, x, 1])
            b = np.int64(image[y, x, 2])
            pixel_sum[y, x, 0] += r
            pixel_sum[y, x, 1] += g
            pixel_sum[y, x, 2] += b
            channel_sum[0] += r
            channel_sum[1] += g
            channel_sum[2] += b
            channel_products[0, 0] += r * r
            channel_products[0, 1] += r * g
            channel_products[0, 2] += r * b
            channel_products[1, 1] += g * g
            channel_products[1, 2] += g * b
            channel_products[2, 2] += b * b


class PixelStats:
    """Streaming accumulator: `add(image)` for each train image, then `result()`."""

    def __init__(self, size: int):
        self.size = size
        self.images = 0
        self.pixel_sum = np.zeros((size, size, 3), np.int64)
        self.channel_sum = np.zeros(3, np.int64)
        self.channel_products = np.zeros((3, 3), np.int64)

    def add(self, image: np.ndarray) -> None:
        if image.shape != (self.size, self.size, 3) or image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 {(self.size, self.size, 3)}, got {image.dtype} {image.shape}")
        accumulate_image(image, self.pixel_sum, self.channel_sum, self.channel_products)
        self.images += 1

    def add_sums(self, other: "PixelStats") -> None:
        """Add the sums of `other` (disjoint images of the same size) into these."""
        if other.size != self.size:
            raise ValueError(f"pixel sums of {other.size}x{other.size} images cannot be added to "
                             f"{self.size}x{self.size} ones")
        self.pixel_sum += other.pixel_sum
        self.channel_sum += other.channel_sum
        self.channel_products += other.channel_products
        self.images += other.images

    def save_sums(self, path: str) -> None:
        """Write the raw int64 sums to `path` (temporary file renamed when complete); see `load_sums`."""
        import h5py

        tmp = path + ".tmp"
        with h5py.File(tmp, "w") as f:
            for key in SUM_KEYS:
                f.create_dataset(key, data=getattr(self, key), track_times=False)
            f.attrs["images"] = np.int64(self.images)
        os.replace(tmp, path)

    @classmethod
    def load_sums(cls, path: str) -> "PixelStats":
        import h5py

        with h5py.File(path, "r") as f:
            stats = cls(f["pixel_sum"].shape[0])
            for key in SUM_KEYS:
                getattr(stats, key)[...] = f[key][()]
            stats.images = int(f.attrs["images"])
        return stats

    def result(self) -> dict:
        if self.images == 0:
            raise ValueError("no images: pixel statistics need at least one converted train image")
        pixels = self.images * self.size * self.size
        upper = self.channel_products.astype(np.float64)
        second_moment = np.triu(upper) + np.triu(upper, 1).T
        mean_rgb = self.channel_sum.astype(np.float64) / pixels
        cov = second_moment / pixels - mean_rgb[:, None] * mean_rgb[None, :]
        eigval, eigvec = np.linalg.eigh(cov)
        order = np.argsort(eigval)[::-1]
        eigval, eigvec = eigval[order], eigvec[:, order]
        # An eigenvector's sign is arbitrary; fix it (largest component positive) so files compare.
        signs = np.sign(eigvec[np.argmax(np.abs(eigvec), axis=0), np.arange(3)])
        eigvec = eigvec * np.where(signs == 0, 1.0, signs)[None, :]
        return {
            "mean_image": (self.pixel_sum.astype(np.float64) / self.images).astype(np.float32),
            "mean_rgb": mean_rgb.astype(np.float32),
            "std_rgb": np.sqrt(np.maximum(np.diag(cov), 0.0)).astype(np.float32),
            "eigval": np.maximum(eigval, 0.0).astype(np.float32),
            "eigvec": eigvec.astype(np.float32),
            "images": self.images,
            "pixels": pixels,
        }


def write_stats(path: str, stats: dict) -> None:
    """Write `PixelStats.result()` to `path` (through a temporary file, renamed when complete)."""
    import h5py

    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        for key in STATS_KEYS:
            f.create_dataset(key, data=stats[key], track_times=False)
        f.attrs["images"] = np.int64(stats["images"])
        f.attrs["pixels"] = np.int64(stats["pixels"])
    os.replace(tmp, path)


def read_stats(path: str) -> dict:
    """The arrays of an OUT/stats.h5 as a dict of numpy arrays (plus `images`, `pixels`)."""
    import h5py

    with h5py.File(path, "r") as f:
        stats = {key: f[key][()] for key in STATS_KEYS}
        stats["images"] = int(f.attrs["images"])
        stats["pixels"] = int(f.attrs["pixels"])
    return stats
