"""Procedurally drawn sample photos: a small ImageNet-style folder that `refnet demo` trains on.

Ten classes of shapes and textures, each drawn with a random size, colour, position, rotation,
aspect ratio and background (a colour gradient, pixel noise and a few clutter strokes), so that a
network has to learn the shape, not a colour or a position. Every image is a function of
(seed, split, class, index): the same call writes the same files.

`write_image_folder` also plants the awkward files real folders contain, so the converter's
handling shows: grayscale and CMYK JPEGs, PNGs, and broken files (truncated JPEG, zero bytes,
text named .JPEG) that the converter must skip with a reason.
"""

import math
import os

import numpy as np

CLASSES = ("disc", "ring", "box", "triangle", "star", "cross", "crescent", "stripes", "checker", "dots")


def _colour(rng, light: bool):
    """A saturated random colour, light or dark, so the object always stands out from the background."""
    import colorsys

    hue = rng.random()
    value = rng.uniform(0.75, 1.0) if light else rng.uniform(0.15, 0.45)
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.4, 1.0), value)
    return (int(r * 255), int(g * 255), int(b * 255))


def _background(rng, width, height, light: bool):
    """A linear gradient between two random colours plus Gaussian pixel noise, as uint8 (H, W, 3)."""
    c0 = np.array(_colour(rng, light), dtype=np.float32)
    c1 = np.array(_colour(rng, light), dtype=np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xs * math.cos(angle) + ys * math.sin(angle)) / max(width, height)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0 + (c1 - c0) * t[..., None]
    img += rng.normal(0, rng.uniform(2, 8), size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _rotated(points, cx, cy, angle):
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]


def _ellipse_points(rx, ry, n=48):
    return [(rx * math.cos(2 * math.pi * k / n), ry * math.sin(2 * math.pi * k / n)) for k in range(n)]


def _draw_shape(draw, name, rng, cx, cy, rx, ry, angle):
    """Draw `name` into an "L" mask: 255 inside the shape, 0 in its holes."""
    fill, hole = 255, 0
    if name == "disc":
        draw.polygon(_rotated(_ellipse_points(rx, ry), cx, cy, angle), fill=fill)
    elif name == "ring":
        draw.polygon(_rotated(_ellipse_points(rx, ry), cx, cy, angle), fill=fill)
        inner = rng.uniform(0.45, 0.7)
        draw.polygon(_rotated(_ellipse_points(rx * inner, ry * inner), cx, cy, angle), fill=hole)
    elif name == "box":
        pts = [(-rx, -ry), (rx, -ry), (rx, ry), (-rx, ry)]
        draw.polygon(_rotated(pts, cx, cy, angle), fill=fill)
    elif name == "triangle":
        pts = [(0, -ry), (rx, ry * 0.8), (-rx, ry * 0.8)]
        draw.polygon(_rotated(pts, cx, cy, angle), fill=fill)
    elif name == "star":
        inner = rng.uniform(0.35, 0.5)
        pts = []
        for k in range(10):
            r = 1.0 if k % 2 == 0 else inner
            a = math.pi * k / 5 - math.pi / 2
            pts.append((rx * r * math.cos(a), ry * r * math.sin(a)))
        draw.polygon(_rotated(pts, cx, cy, angle), fill=fill)
    elif name == "cross":
        t = rng.uniform(0.22, 0.35)
        for pts in ([(-rx, -ry * t), (rx, -ry * t), (rx, ry * t), (-rx, ry * t)],
                    [(-rx * t, -ry), (rx * t, -ry), (rx * t, ry), (-rx * t, ry)]):
            draw.polygon(_rotated(pts, cx, cy, angle), fill=fill)
    elif name == "crescent":
        draw.polygon(_rotated(_ellipse_points(rx, ry), cx, cy, angle), fill=fill)
        shift = rng.uniform(0.35, 0.55)
        bite = [(x + rx * shift, y) for x, y in _ellipse_points(rx * 0.9, ry * 0.9)]
        draw.polygon(_rotated(bite, cx, cy, angle), fill=hole)
    else:
        raise ValueError(f"unknown shape {name!r}")


def _draw_texture(draw, name, rng, box, fill):
    x0, y0, x1, y1 = box
    # Periods of 14-24 px survive the demo's downscaling to 76 px and 67 px crops; finer ones
    # blur stripes and checkers into each other (demo val error with 6-14 px > 10-18 px > 14-24 px,
    # see refnet/commands/demo.py).
    if name == "stripes":
        period = rng.uniform(14, 24)
        width = period * rng.uniform(0.35, 0.6)
        angle = rng.uniform(0, math.pi)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        reach = math.hypot(x1 - x0, y1 - y0)
        offset = -reach
        while offset < reach:
            pts = [(offset, -reach), (offset + width, -reach), (offset + width, reach), (offset, reach)]
            draw.polygon(_rotated(pts, cx, cy, angle), fill=fill)
            offset += period
    elif name == "checker":
        cell = rng.uniform(14, 24)
        angle = rng.uniform(0, math.pi / 2)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        n = int(math.hypot(x1 - x0, y1 - y0) / cell) + 2
        for i in range(-n, n):
            for j in range(-n, n):
                if (i + j) % 2 == 0:
                    pts = [(i * cell, j * cell), ((i + 1) * cell, j * cell), ((i + 1) * cell, (j + 1) * cell),
                           (i * cell, (j + 1) * cell)]
                    draw.polygon(_rotated(pts, cx, cy, angle), fill=fill)
    elif name == "dots":
        spacing = rng.uniform(12, 20)
        radius = spacing * rng.uniform(0.2, 0.32)
        jitter = spacing * 0.15
        y = y0 + rng.uniform(0, spacing)
        while y < y1:
            x = x0 + rng.uniform(0, spacing)
            while x < x1:
                px, py = x + rng.uniform(-jitter, jitter), y + rng.uniform(-jitter, jitter)
                draw.ellipse((px - radius, py - radius, px + radius, py + radius), fill=fill)
                x += spacing
            y += spacing
    else:
        raise ValueError(f"unknown texture {name!r}")


TEXTURES = ("stripes", "checker", "dots")


def draw_sample(class_name: str, rng: np.random.Generator):
    """One RGB PIL image of `class_name`, 72-140 px on a side with a random aspect ratio."""
    from PIL import Image, ImageDraw

    side = rng.uniform(80, 128)
    aspect = math.exp(rng.uniform(math.log(0.75), math.log(1.33)))
    width, height = int(side * math.sqrt(aspect)), int(side / math.sqrt(aspect))
    light_object = bool(rng.random() < 0.5)
    image = Image.fromarray(_background(rng, width, height, light=not light_object))
    draw = ImageDraw.Draw(image)
    # Clutter strokes in both tones, so edges alone do not give the class away.
    for _ in range(int(rng.integers(0, 3))):
        pts = [(rng.uniform(0, width), rng.uniform(0, height)) for _ in range(2)]
        draw.line(pts, fill=_colour(rng, bool(rng.random() < 0.5)), width=int(rng.integers(1, 3)))
    short = min(width, height)
    mask = Image.new("L", (width, height), 0)
    if class_name in TEXTURES:
        # A textured patch covering 55-90% of each side, at a random place.
        pw, ph = width * rng.uniform(0.55, 0.9), height * rng.uniform(0.55, 0.9)
        x0, y0 = rng.uniform(0, width - pw), rng.uniform(0, height - ph)
        texture = Image.new("L", (width, height), 0)
        _draw_texture(ImageDraw.Draw(texture), class_name, rng, (x0, y0, x0 + pw, y0 + ph), 255)
        ImageDraw.Draw(mask).rectangle((x0, y0, x0 + pw, y0 + ph), fill=255)
        mask = Image.fromarray(np.minimum(np.asarray(texture), np.asarray(mask)))
    else:
        radius = short * rng.uniform(0.26, 0.42)
        stretch = math.exp(rng.uniform(math.log(0.7), math.log(1.4)))
        rx, ry = radius * math.sqrt(stretch), radius / math.sqrt(stretch)
        reach = max(rx, ry)
        cx = rng.uniform(min(reach, width / 2), max(width - reach, width / 2))
        cy = rng.uniform(min(reach, height / 2), max(height - reach, height / 2))
        _draw_shape(ImageDraw.Draw(mask), class_name, rng, cx, cy, rx, ry, rng.uniform(0, 2 * math.pi))
    image.paste(Image.new("RGB", (width, height), _colour(rng, light_object)), (0, 0), mask)
    return image


def _sample_rng(seed: int, split: str, class_index: int, index: int) -> np.random.Generator:
    split_code = {"train": 0, "val": 1}.get(split, 2)
    return np.random.default_rng([seed, split_code, class_index, index])


def write_image_folder(root, *, per_class: dict, seed: int = 0, classes=CLASSES, awkward: bool = True) -> dict:
    """Write ROOT/<split>/<class>/<name>.JPEG for each split in `per_class` ({"train": 120, "val": 30}).

    With `awkward`, the train split also gets, spread over the classes: 2 grayscale JPEGs, 2 PNGs
    (one with a .JPEG name), 1 CMYK JPEG, and 3 broken files (truncated JPEG, zero bytes, a text
    file named .JPEG) that a converter must skip. Returns {split: {"images": n, "broken": n}}.
    """
    written = {}
    for split, count in per_class.items():
        n_images = n_broken = 0
        for class_index, class_name in enumerate(classes):
            folder = os.path.join(root, split, class_name)
            os.makedirs(folder, exist_ok=True)
            for index in range(count):
                image = draw_sample(class_name, _sample_rng(seed, split, class_index, index))
                image.save(os.path.join(folder, f"{class_name}_{index:05d}.JPEG"), quality=int(90))
                n_images += 1
        if awkward and split == "train":
            n_images += _write_awkward_files(os.path.join(root, split), classes, seed)
            n_broken += _write_broken_files(os.path.join(root, split), classes)
        written[split] = {"images": n_images, "broken": n_broken}
    return written


def _write_awkward_files(split_root, classes, seed) -> int:
    """Valid images in unusual encodings: the converter must turn each into an RGB sample."""
    cases = [
        ("gray_0.JPEG", "L", "JPEG"),
        ("gray_1.JPEG", "L", "JPEG"),
        ("cmyk_0.JPEG", "CMYK", "JPEG"),
        ("png_0.png", "RGB", "PNG"),
        ("png_named_jpeg_0.JPEG", "RGBA", "PNG"),
    ]
    for k, (name, mode, fmt) in enumerate(cases):
        class_index = k % len(classes)
        class_name = classes[class_index]
        image = draw_sample(class_name, _sample_rng(seed, "awkward", class_index, k)).convert(mode)
        image.save(os.path.join(split_root, class_name, f"{class_name}_{name}"), format=fmt)
    return len(cases)


def _write_broken_files(split_root, classes) -> int:
    """Files with an image name that hold no decodable image: the converter skips them with a reason."""
    import io

    source = io.BytesIO()
    draw_sample(classes[0], np.random.default_rng(0)).save(source, format="JPEG")
    truncated = source.getvalue()[: len(source.getvalue()) // 3]
    files = {
        f"{classes[1]}/{classes[1]}_truncated.JPEG": truncated,
        f"{classes[2]}/{classes[2]}_empty.JPEG": b"",
        f"{classes[3]}/{classes[3]}_not_an_image.JPEG": b"this is a text file, not a JPEG\n",
    }
    for relative, payload in files.items():
        with open(os.path.join(split_root, relative), "wb") as f:
            f.write(payload)
    return len(files)
