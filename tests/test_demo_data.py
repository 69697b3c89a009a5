"""The demo's synthetic image folder: layout, variety, the awkward files, determinism."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from refnet import synth


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    written = synth.write_image_folder(root, per_class={"train": 3, "val": 2}, seed=5)
    return root, written


def test_layout_is_class_folders_per_split(folder):
    root, written = folder
    for split in ("train", "val"):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(synth.CLASSES)
    assert written["val"] == {"images": 2 * len(synth.CLASSES), "broken": 0}
    assert written["train"]["images"] == 3 * len(synth.CLASSES) + 5 and written["train"]["broken"] == 3
    files = [p for p in (root / "train").rglob("*") if p.is_file()]
    assert len(files) == written["train"]["images"] + written["train"]["broken"]


def test_images_vary_in_size_aspect_and_colour(folder):
    root, _ = folder
    sizes, means = set(), []
    for path in sorted((root / "val").rglob("*.JPEG")):
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            sizes.add(im.size)
            means.append(np.asarray(im, dtype=np.float64).mean(axis=(0, 1)))
    assert len(sizes) >= 15  # 20 images, nearly all of different shapes
    ratios = [w / h for w, h in sizes]
    assert min(ratios) < 0.9 and max(ratios) > 1.1
    assert np.std(means, axis=0).min() > 10  # backgrounds and objects of many colours


def test_awkward_and_broken_files_are_there(folder):
    root, _ = folder
    modes = {}
    for path in (root / "train").rglob("*"):
        if not path.is_file():
            continue
        try:
            with Image.open(path) as im:
                im.load()
                modes[path.name] = (im.format, im.mode)
        except Exception:
            modes[path.name] = None
    kinds = {value for value in modes.values()}
    assert ("JPEG", "L") in kinds and ("JPEG", "CMYK") in kinds and ("PNG", "RGB") in kinds
    assert any(name.endswith(".JPEG") and kind == ("PNG", "RGBA") for name, kind in modes.items())
    broken = sorted(name for name, kind in modes.items() if kind is None)
    assert len(broken) == 3 and any("truncated" in n for n in broken) and any("empty" in n for n in broken)


def test_same_seed_same_files(tmp_path):
    def digest(root):
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for root, seed in ((a, 1), (b, 1), (c, 2)):
        synth.write_image_folder(root, per_class={"val": 1}, seed=seed, awkward=False)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_unknown_class_is_an_error():
    with pytest.raises(ValueError, match="unknown"):
        synth.draw_sample("pentagon", np.random.default_rng(0))
