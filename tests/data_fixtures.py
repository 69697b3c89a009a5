"""Synthetic image folders for the converter's tests (and anyone else who needs a small ImageNet-like
tree): smooth random pictures saved with Pillow, plus builders for every kind of awkward file.

    make_class_tree(root, {"cat": 3, "dog": 2}, size=(60, 44))  -> {relative path: class name}
    make_flat_folder(root, {"a.jpg": "cat", ...})               -> writes the images (labels: caller)
    write_bad_files(root)                                        -> {relative path: expected skip category or None}
"""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
from PIL import Image


def smooth_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A random RGB picture without pixel-level noise, so resampling comparisons are meaningful."""
    coarse = rng.integers(0, 256, size=(height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)


def save(image: Image.Image, path, **params) -> str:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    image.save(path, **params)
    return str(path)


def make_class_tree(root, counts: dict, size=(60, 44), seed=0, ext=".jpg") -> dict:
    """root/<class>/<class>_<i><ext> smooth images; returns {relative path: class}."""
    rng = np.random.default_rng(seed)
    made = {}
    for class_name, count in counts.items():
        os.makedirs(os.path.join(root, class_name), exist_ok=True)
        for i in range(count):
            rel = f"{class_name}/{class_name}_{i:03d}{ext}"
            width, height = size if i % 2 == 0 else size[::-1]
            save(smooth_image(rng, width, height), os.path.join(root, rel), quality=95)
            made[rel] = class_name
    return made


def make_flat_folder(root, names, size=(56, 48), seed=1) -> None:
    """root/<name> for each name (the format follows the extension)."""
    rng = np.random.default_rng(seed)
    for name in names:
        save(smooth_image(rng, *size), os.path.join(root, name), quality=95)


def jpeg_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **params)
    return buffer.getvalue()


def corrupt_huffman_tables(data: bytes) -> bytes:
    """A JPEG whose DHT segment is overwritten: Pillow opens it, decoding fails ("broken data stream")."""
    start = data.find(b"\xff\xc4")
    assert start > 0
    return data[:start + 5] + b"\xff" * 20 + data[start + 25:]


def bomb_png(width=12000, height=12000) -> bytes:
    """A valid 1-bit PNG over Pillow's decompression-bomb limit (MAX_IMAGE_PIXELS, ~89.5 M), a few kB on disk."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row * height, 9))
            + chunk(b"IEND", b""))


def write_bad_files(root, cls="odd", seed=2) -> dict:
    """One file per awkward case in root/<cls>/; returns {relative path: skip category, or None if it converts}."""
    rng = np.random.default_rng(seed)
    base = smooth_image(rng, 64, 48)
    d = os.path.join(root, cls)
    os.makedirs(d, exist_ok=True)
    good = jpeg_bytes(base, quality=95)
    files = {
        "truncated.jpg": (good[: len(good) // 2], "corrupt"),
        "corrupt.jpg": (corrupt_huffman_tables(good), "corrupt"),
        "empty.jpeg": (b"", "empty file"),
        "text.JPEG": (b"this is not a picture\n", "not an image"),
        "bomb.png": (bomb_png(), "decompression bomb"),
        "._resource_fork.jpg": (good, "hidden"),
    }
    expected = {}
    for name, (data, category) in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        expected[f"{cls}/{name}"] = category
    converts = {
        "png_named.JPEG": (base, {"format": "PNG"}),
        "cmyk.jpg": (base.convert("CMYK"), {"quality": 95}),
        "grey.jpg": (base.convert("L"), {"quality": 95}),
        "palette_transparent.png": (_palette_with_transparency(base), {}),
        "rgba.png": (_with_alpha(base), {}),
        "grey16.png": (_grey16(base), {}),
        "ünïcødé 猫.png": (base, {}),
        "upper.PNG": (base, {}),
    }
    for name, (image, params) in converts.items():
        save(image, os.path.join(d, name), **params)
        expected[f"{cls}/{name}"] = None
    with open(os.path.join(d, "notes.txt"), "w") as f:  # not an image extension: ignored, not counted
        f.write("ignored\n")
    return expected


def _palette_with_transparency(image: Image.Image) -> Image.Image:
    palette = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    palette.info["transparency"] = 0
    return palette


def _with_alpha(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    alpha = np.full(image.size[::-1], 255, np.uint8)
    alpha[:, : image.size[0] // 3] = 0
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


def _grey16(image: Image.Image) -> Image.Image:
    grey = np.asarray(image.convert("L")).astype(np.uint16) * 257  # full 16-bit range
    return Image.fromarray(grey)  # uint16 -> mode I;16


def exif_rotated_jpeg(path, image: Image.Image, orientation=6) -> str:
    """Save `image` stored sideways with an EXIF Orientation tag that puts it upright again."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    # Orientation 6 means "rotate 90 degrees clockwise to display": store it rotated the other way.
    stored = image.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else image
    return save(stored, path, exif=exif.tobytes(), quality=95)
