"""Images/s of `refnet convert` against a plain Pillow loop over the same photos, and 2 workers against 1.

    python -m bench.bench_convert [--images 200] [--size 256] [--repeat 2] [--json PATH]

Writes `--images` photo-sized JPEGs (1000-1600 px on the long side, 4:3 either way, smooth random
scenes with sensor-like noise, quality 90) in a temporary folder, reads them all once so they sit in
the page cache, then times, best of `--repeat`:

  plain      the peer: Image.open -> convert("RGB") -> resize (shorter side to --size, LANCZOS, the
             converter's filter) -> centre crop -> numpy, one file after another
  load_image data_tools.preprocess.load_image on the same files (draft() decoding, crop-box resampling)
  convert-1  the whole `refnet convert` with --workers 1 (one process: decode, shard writing,
             pixel statistics, manifest)
  convert-2  the same with --workers 2

Targets (issue 3): convert-1 / plain >= 1.5 (per process), convert-2 / convert-1 >= 1.7.
Each variant is timed in rounds (best of `--repeat`) by wall clock and by CPU time (this process plus
its finished worker processes): on a shared machine the wall-clock figures, the 2-worker one above
all, measure the neighbours too, while CPU time per image still measures the code.
"""

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from PIL import Image
from tqdm import tqdm

TARGETS = {"convert-1 / plain": 1.5, "convert-2 / convert-1": 1.7}


def write_photos(folder, n, seed=0):
    """n JPEGs in folder/<class>/ (4 classes): smooth colour fields plus noise, like a camera's."""
    rng = np.random.default_rng(seed)
    for i in tqdm(range(n), desc="writing photos", unit="img", leave=False):
        long_side = int(rng.integers(1000, 1601))
        width, height = (long_side, long_side * 3 // 4) if i % 3 else (long_side * 3 // 4, long_side)
        coarse = rng.integers(0, 256, size=(height // 64 + 2, width // 64 + 2, 3), dtype=np.uint8)
        scene = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.int16)
        noisy = np.clip(scene + rng.normal(0, 6, size=scene.shape), 0, 255).astype(np.uint8)
        directory = os.path.join(folder, f"class{i % 4}")
        os.makedirs(directory, exist_ok=True)
        Image.fromarray(noisy).save(os.path.join(directory, f"photo_{i:04d}.jpg"), quality=90)


def list_files(folder):
    return sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names)


def plain_pillow(path, size):
    """The peer: what one writes without thinking about speed."""
    from data_tools.preprocess import resized_shape

    with Image.open(path) as img:
        img = img.convert("RGB")
        new_w, new_h = resized_shape(*img.size, size)
        img = img.resize((new_w, new_h), Image.Resampling.LANCZOS)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        return np.asarray(img.crop((left, top, left + size, top + size)))


def measure(work):
    """(wall seconds, CPU seconds of this process and of its finished children) of `work()`."""
    import resource

    def cpu_now():
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    wall, cpu = time.perf_counter(), cpu_now()
    work()
    return time.perf_counter() - wall, cpu_now() - cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    from data_tools.convert import convert
    from data_tools.preprocess import load_image

    root = tempfile.mkdtemp(prefix="bench_convert_")
    try:
        src = os.path.join(root, "src")
        write_photos(src, args.images)
        files = list_files(src)
        for path in files:  # into the page cache, so no run pays for the disk
            with open(path, "rb") as f:
                f.read()
        # Same pixels from both loops (the converter only decodes less and resamples less).
        difference = np.abs(load_image(files[0], args.size).astype(int) - plain_pillow(files[0], args.size)).mean()

        def run_convert(workers):
            out = os.path.join(root, f"out{workers}")
            shutil.rmtree(out, ignore_errors=True)
            with contextlib.redirect_stdout(io.StringIO()):  # its summary line, once per run
                convert(out, train=src, size=args.size, workers=workers, quiet=True)

        run_convert(1)  # compiles/loads the statistics kernel once, outside the timings
        variants = {
            "plain": lambda: [plain_pillow(p, args.size) for p in files],
            "load_image": lambda: [load_image(p, args.size) for p in files],
            "convert-1": lambda: run_convert(1),
            "convert-2": lambda: run_convert(2),
        }
        best_wall, best_cpu = dict.fromkeys(variants, float("inf")), dict.fromkeys(variants, float("inf"))
        for _ in range(args.repeat):  # rounds, so a burst of load elsewhere hits every variant alike
            for name, work in variants.items():
                wall, cpu = measure(work)
                best_wall[name], best_cpu[name] = min(best_wall[name], wall), min(best_cpu[name], cpu)
        rates = {name: len(files) / best_wall[name] for name in variants}
        cpu_ms = {name: 1e3 * best_cpu[name] / len(files) for name in variants}
    finally:
        shutil.rmtree(root, ignore_errors=True)

    pairs = [("load_image", "plain"), ("convert-1", "plain"), ("convert-2", "convert-1")]
    ratios = {f"{a} / {b}": rates[a] / rates[b] for a, b in pairs}
    cpu_ratios = {f"{a} / {b}": cpu_ms[b] / cpu_ms[a] for a, b in pairs[:2]}
    print(f"{len(files)} JPEGs of 1000-1600 px -> {args.size}x{args.size}, best of {args.repeat}; "
          f"mean |load_image - plain| = {difference:.2f} (0-255); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    print(f"  {'variant':<12} {'images/s':>9} {'CPU ms/image':>13}")
    for name in rates:
        print(f"  {name:<12} {rates[name]:9.1f} {cpu_ms[name]:13.2f}")
    print("  ratios (wall-clock images/s; per-process also as images per CPU second):")
    for name, ratio in ratios.items():
        target = TARGETS.get(name)
        verdict = "" if target is None else f"  target >= {target}: {'met' if ratio >= target else 'NOT met'}"
        cpu = f"  CPU {cpu_ratios[name]:5.2f}x" if name in cpu_ratios else ""
        print(f"  {name:<22} {ratio:5.2f}x{cpu}{verdict}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"images": len(files), "size": args.size, "images_per_s": rates, "cpu_ms_per_image": cpu_ms,
                       "ratios": ratios, "cpu_ratios": cpu_ratios, "mean_abs_difference": difference,
                       "load_average": os.getloadavg()[0], "cpu_count": os.cpu_count()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
