"""A network's input convention as data: what `refnet eval` and `refnet predict` do to pixels.

Every checkpoint records one (its `preprocessing` record, refnet/checkpoint.py):

    channels   "RGB" or "BGR": the order of the network's three input channels (Caffe's models: BGR)
    pixel_max  255.0 (pixels in 0-255) or 1.0 (pixels in 0-1) before the mean is subtracted
    mean       "image": the mean image of the data (the checkpoint's data/mean_image, else the
               dataset's stats.h5), 0-255 RGB units, subtracted at each crop's position: refnet's
               training convention; or three numbers in the network's channel order and in
               pixel_max units (Caffe's `--mean 104,117,123` with --bgr)
    crop       the side of the square crop the network sees (its input_size)
    resize     the stored side: shorter side rescaled to it, centre square (refnet convert --size)

So the network's input channel c, at a crop pixel p (RGB, 0-255), is

    x[c] = (p[src(c)] - M[src(c)]) * pixel_max / 255        src(c) = c (RGB) or 2 - c (BGR)

with M the mean image, or M[src(c)] = mean[c] * 255 / pixel_max for a per-channel mean. The reader
(refnet.data) subtracts an (S, S, 3) RGB mean image in its own kernel; `reader_mean_image` builds
the one that gives M, and `finish` applies the channel order and scale to its output.
"""

from dataclasses import dataclass

import numpy as np

CHANNEL_ORDERS = ("RGB", "BGR")
PIXEL_MAXIMA = (255.0, 1.0)


@dataclass(frozen=True)
class Preprocessing:
    crop: int
    resize: int = 256
    channels: str = "RGB"
    pixel_max: float = 255.0
    mean: str | tuple = "image"

    def __post_init__(self):
        from .ops._checks import check_positive_int

        check_positive_int("preprocessing crop", self.crop)
        check_positive_int("preprocessing resize", self.resize)
        if self.crop > self.resize:
            raise ValueError(f"preprocessing crop: expected at most resize {self.resize}, got {self.crop}")
        if self.channels not in CHANNEL_ORDERS:
            raise ValueError(f"preprocessing channels: expected RGB or BGR, got {self.channels!r}")
        if self.pixel_max not in PIXEL_MAXIMA:
            raise ValueError(f"preprocessing pixel_max: expected 255 or 1, got {self.pixel_max!r}")
        if self.mean != "image":
            values = tuple(float(v) for v in np.asarray(self.mean, dtype=np.float64).reshape(-1))
            if len(values) != 3 or not all(np.isfinite(values)):
                raise ValueError(f"preprocessing mean: expected 'image' or 3 finite numbers, got {self.mean!r}")
            object.__setattr__(self, "mean", values)
        object.__setattr__(self, "pixel_max", float(self.pixel_max))

    def to_dict(self):
        mean = self.mean if self.mean == "image" else list(self.mean)
        return {"crop": self.crop, "resize": self.resize, "channels": self.channels, "pixel_max": self.pixel_max,
                "mean": mean}  # fmt: skip

    @classmethod
    def from_dict(cls, d):
        keys = {"crop", "resize", "channels", "pixel_max", "mean"}
        if not isinstance(d, dict) or set(d) != keys:
            raise ValueError(f"preprocessing: expected a record with keys {', '.join(sorted(keys))}, got {d!r}")
        return cls(**d)

    def describe(self):
        mean = "the mean image" if self.mean == "image" else "mean " + ",".join(f"{v:g}" for v in self.mean)
        return (f"{self.channels}, pixels 0-{self.pixel_max:g}, minus {mean}; shorter side to {self.resize}, "
                f"centre crop {self.crop}")  # fmt: skip

    @property
    def is_identity_after_reader(self):
        return self.channels == "RGB" and self.pixel_max == 255.0

    def reader_mean_image(self, size, mean_image=None):
        """The (size, size, 3) float32 RGB 0-255 image the reader subtracts. `mean_image`: the
        data's mean image, needed (and only used) when mean == "image"."""
        if self.mean == "image":
            if mean_image is None:
                raise ValueError("mean_image: the preprocessing subtracts the mean image, none was given")
            mean_image = np.ascontiguousarray(mean_image, dtype=np.float32)
            if mean_image.shape != (size, size, 3):
                raise ValueError(f"mean_image: expected shape {(size, size, 3)}, got {mean_image.shape}")
            return mean_image
        rgb = np.asarray(self.mean, dtype=np.float64)
        if self.channels == "BGR":
            rgb = rgb[::-1]
        rgb = rgb * (255.0 / self.pixel_max)
        return np.ascontiguousarray(np.broadcast_to(rgb.astype(np.float32), (size, size, 3)))

    def finish(self, x):
        """The reader's output x (..., 3, H, W), RGB 0-255 minus the mean, in the network's channel
        order and pixel scale (x itself when nothing changes)."""
        if self.is_identity_after_reader:
            return x
        if self.channels == "BGR":
            x = x[..., ::-1, :, :]
        if self.pixel_max != 255.0:
            x = x * np.float32(self.pixel_max / 255.0)
        return np.ascontiguousarray(x, dtype=np.float32)


def parse_mean(text):
    """'104,117,123' -> (104.0, 117.0, 123.0); 'image' -> 'image' (for command-line options)."""
    if text == "image":
        return "image"
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ValueError(f"--mean: expected three comma-separated numbers (e.g. 104,117,123) or 'image', got {text!r}")
    return values
