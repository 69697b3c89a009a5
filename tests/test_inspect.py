"""refnet inspect: the summary, --verify catching damaged shards, and the --show contact sheet."""

import os
import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

import data_fixtures as fx
from data_tools.convert import convert
from refnet.cli import main as refnet_main

SIZE = 32


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect")
    src, val = str(root / "src"), str(root / "val")
    fx.make_class_tree(src, {"cat": 4, "dog": 3})
    (root / "src" / "dog" / "empty.jpg").write_bytes(b"")
    (root / "src" / "dog" / "text.png").write_text("no")
    fx.make_class_tree(val, {"dog": 2}, seed=3)
    out = str(root / "out")
    convert(out, train=src, val=val, size=SIZE, shard_size=3, workers=1, quiet=True)
    return out


def copy_of(converted, tmp_path):
    out = str(tmp_path / "copy")
    shutil.copytree(converted, out)
    return out


def test_summary(converted, capsys):
    assert refnet_main(["inspect", converted]) == 0
    text = capsys.readouterr().out
    assert "images 32x32x3 uint8" in text and "classes: 2 (cat, dog)" in text
    assert "train: 7 images in 3 shards" in text and "2 skipped (empty file: 1, not an image: 1)" in text
    assert "val: 2 images in 1 shards" in text and "0 skipped (none)" in text


def test_verify_passes_on_a_clean_dataset(converted, capsys):
    assert refnet_main(["inspect", converted, "--verify"]) == 0
    assert "verify: 4 shards, OK" in capsys.readouterr().out


def test_verify_detects_a_corrupted_shard(converted, tmp_path, capsys):
    out = copy_of(converted, tmp_path)
    with h5py.File(os.path.join(out, "train-00001.h5"), "r+") as f:
        f["images"][0, 0, 0, 0] ^= 0xFF  # same size, same structure, one pixel changed
    assert refnet_main(["inspect", out, "--verify"]) == 1
    text = capsys.readouterr().out
    assert "PROBLEM train-00001.h5: sha256 differs" in text and "1 problem(s)" in text


def test_verify_detects_wrong_shapes_and_missing_shards(converted, tmp_path, capsys):
    out = copy_of(converted, tmp_path)
    with h5py.File(os.path.join(out, "val-00000.h5"), "r+") as f:
        del f["labels"]
        f["labels"] = np.zeros(5, np.int32)
    os.remove(os.path.join(out, "train-00002.h5"))
    assert refnet_main(["inspect", out, "--verify"]) == 1
    text = capsys.readouterr().out
    assert "val-00000.h5: labels shape (5,), expected (2,)" in text and "train-00002.h5: missing" in text


def times_shown(sheet, image):
    """How many times `image` appears in `sheet`, at any whole-number magnification 1-4."""
    found = 0
    for scale in range(1, 5):
        big = image.repeat(scale, axis=0).repeat(scale, axis=1)
        h, w = big.shape[:2]
        for y, x in np.argwhere((sheet == big[0, 0]).all(axis=-1)):
            if y + h <= sheet.shape[0] and x + w <= sheet.shape[1] and (sheet[y : y + h, x : x + w] == big).all():
                found += 1
    return found


@pytest.mark.parametrize("show", [5, 50])
def test_contact_sheet_holds_each_shown_image_once(converted, tmp_path, capsys, show):
    from refnet.data import ShardDataset

    path = str(tmp_path / "sheet.png")
    assert refnet_main(["inspect", converted, "--show", str(show), "--out", path]) == 0
    assert f"contact sheet: {path}" in capsys.readouterr().out
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        sheet = np.asarray(picture.convert("RGB"))
    dataset = ShardDataset(converted, "train")
    counts = [times_shown(sheet, image) for image in dataset.read(np.arange(len(dataset)))]
    assert sorted(counts, reverse=True) == [1] * min(show, len(dataset)) + [0] * max(0, len(dataset) - show)


def test_not_a_dataset_is_a_clear_error(tmp_path, capsys):
    assert refnet_main(["inspect", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no manifest.json" in err and "Traceback" not in err
