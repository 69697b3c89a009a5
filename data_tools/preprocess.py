"""One image file -> the paper's uint8 (size, size, 3) RGB array, and why a file cannot be one.

`load_image` is THE preprocessing of refnet: `refnet convert` stores its output in the shards and
`refnet predict` calls it on the user's files, so a photo seen at prediction time goes through
exactly the pixel path the network was trained on. The steps, in order:

1. open with Pillow (the format is read from the content, not the extension: a PNG named
   `.JPEG` converts). Images over Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`)
   are refused before they are decoded.
2. JPEGs at least twice the target are decoded at 1/2, 1/4 or 1/8 scale with `draft()` (libjpeg's
   DCT scaling), never below `size` on the shorter side: same picture, a fraction of the work.
3. EXIF orientation applied (`ImageOps.exif_transpose`), so a photo shot sideways stands upright
   (an EXIF block too damaged to read leaves the image as stored).
4. converted to 8-bit RGB: CMYK, grayscale (L, 1), palette (P, PA) and RGBA/LA via Pillow's own
   conversion; an alpha channel is dropped (what torchvision's and Caffe's loaders do); 16-bit
   grayscale (I;16*, and I as 16-bit PNGs open) is scaled by 1/256, not clipped at 255; float
   images (F) are clipped to 0..255.
5. the shorter side rescaled to `size` (the longer to round(long * size / short)) with Pillow's
   LANCZOS filter, the one Pillow long called ANTIALIAS, then the centre `size x size` crop,
   offset (long' - size) // 2. Only the crop box is resampled (`resize(box=...)`), which gives the
   same pixels as resizing everything and cropping afterwards (to within rounding, +-2 of 255),
   minus the work on the discarded margins.

Failures are `SkipImage(category, detail)`; `refnet convert` records them as skipped files with the
reason "category: detail" instead of stopping.
"""

from __future__ import annotations

import os
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Lower-case extensions a source file must have to count as an image (case-insensitive match).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")

RESAMPLE = Image.Resampling.LANCZOS

# Modes Pillow turns into RGB correctly by itself ("I"/"I;16*"/"F" are handled by hand: Pillow
# would clip them at 255 instead of scaling).
_PILLOW_TO_RGB = {"RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "L", "LA", "La", "1", "P", "PA", "HSV"}


class SkipImage(Exception):
    """A source file that cannot become a training image; `category` groups them in summaries."""

    def __init__(self, category: str, detail: str = ""):
        super().__init__(f"{category}: {detail}" if detail else category)
        self.category = category
        self.detail = detail

    @property
    def reason(self) -> str:
        return str(self)


def is_image_name(name: str) -> bool:
    """True when `name` ends with one of IMAGE_EXTENSIONS, in any letter case."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def load_image(source, size: int = 256) -> np.ndarray:
    """Open `source` (a path or a binary file object) and return its centre crop, uint8 (size, size, 3).

    The shorter side is rescaled to `size` with an antialiasing filter, then the centre square is
    cut out; see the module docstring for every step. Raises `SkipImage` (never a Pillow error)
    when the file is not a usable image: "empty file", "not an image", "decompression bomb",
    "unreadable", "corrupt", "unsupported mode".
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    try:
        with warnings.catch_warnings():
            # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Corrupt metadata and palette transparency produce harmless warnings; keep them quiet.
            warnings.simplefilter("ignore", UserWarning)
            with Image.open(source) as img:
                img.draft(None, (size, size))  # no-op for non-JPEGs and small JPEGs
                img.load()
                rgb = _to_rgb(_upright(img))
                return _resize_centre_crop(rgb, size)
    except SkipImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SkipImage("decompression bomb", str(exc)) from None
    except PermissionError as exc:
        raise SkipImage("unreadable", exc.strerror or str(exc)) from None
    except UnidentifiedImageError:
        if _is_empty(source):
            raise SkipImage("empty file") from None
        raise SkipImage("not an image", "Pillow cannot identify the format") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError,
            struct.error, ZeroDivisionError, MemoryError) as exc:
        # Pillow's decoders signal a broken file with any of these.
        raise SkipImage("corrupt", f"{type(exc).__name__}: {exc}") from None


def _upright(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except (SyntaxError, ValueError, KeyError, TypeError, struct.error, OSError):
        return img  # unreadable EXIF: the pixels are fine, only the orientation is unknown


def _is_empty(source) -> bool:
    if isinstance(source, (str, os.PathLike)):
        try:
            return os.path.getsize(source) == 0
        except OSError:
            return False
    return False


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _PILLOW_TO_RGB:
        return img.convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        # 16-bit samples (PNG opens 16-bit grey as I;16 or I): keep the top 8 bits.
        values = np.asarray(img).astype(np.int64)
        grey = (np.clip(values, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        grey = np.clip(np.asarray(img), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise SkipImage("unsupported mode", f"{mode}: {exc}") from None


def resized_shape(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after the shorter side is rescaled to `size` (the longer one rounded)."""
    if width <= height:
        return size, max(size, int(round(height * size / width)))
    return max(size, int(round(width * size / height))), size


def _resize_centre_crop(img: Image.Image, size: int) -> np.ndarray:
    width, height = img.size
    new_w, new_h = resized_shape(width, height, size)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    # The crop box mapped back into source pixels: resampling just that box with the full-image
    # scale reproduces resize-then-crop (Pillow's filter still reads source pixels outside the box).
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    out = img.resize((size, size), RESAMPLE, box=box)
    array = np.asarray(out, dtype=np.uint8)
    assert array.shape == (size, size, 3), array.shape
    return np.ascontiguousarray(array)


def load_images(paths, size: int) -> list:
    """`load_image` over several files, for the converter's worker processes: each entry is the
    uint8 (size, size, 3) array or, for a file that cannot be converted, its skip reason (a str)."""
    results = []
    for path in paths:
        try:
            results.append(load_image(path, size))
        except SkipImage as exc:
            results.append(exc.reason)
    return results
