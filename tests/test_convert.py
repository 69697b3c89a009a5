"""refnet convert: every awkward file ends up converted or skipped with its reason, the pixels match an
independent Pillow resize + centre crop, labels come from folders or label files, stats.h5 is right."""

import builtins
import csv
import os

import h5py
import numpy as np
import pytest
from PIL import Image, ImageOps

import data_fixtures as fx
from data_tools.convert import convert
from data_tools.labels import read_label_file
from data_tools.preprocess import SkipImage, load_image, resized_shape
from data_tools.shards import DatasetError, read_manifest, reason_category
from data_tools.stats import read_stats
from refnet.cli import main as refnet_main

SIZE = 32


def read_split(out, split):
    """All stored images, labels and paths of a split, in shard order."""
    manifest = read_manifest(out)
    images, labels, paths = [], [], []
    for shard in manifest["splits"][split]["shards"]:
        with h5py.File(os.path.join(out, shard["file"]), "r") as f:
            images.append(f["images"][()])
            labels.append(f["labels"][()])
            paths += [p.decode("utf-8") for p in f["paths"][()]]
    return np.concatenate(images), np.concatenate(labels), paths


def pillow_reference(path, size=SIZE):
    """The preprocessing written independently: full resize of the upright RGB image, then crop."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode == "I;16":
            img = Image.fromarray((np.asarray(img) >> 8).astype(np.uint8))
        img = img.convert("RGB")
        new_w, new_h = resized_shape(*img.size, size)
        resized = np.asarray(img.resize((new_w, new_h), Image.Resampling.LANCZOS))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top:top + size, left:left + size]


@pytest.fixture(scope="module")
def awkward(tmp_path_factory):
    """A train tree with good class folders plus one file of every awkward kind, converted once."""
    root = tmp_path_factory.mktemp("awkward")
    src, out = str(root / "src"), str(root / "out")
    good = fx.make_class_tree(src, {"cat": 3, "dog": 3})
    expected = fx.write_bad_files(src, cls="odd")
    os.makedirs(os.path.join(src, "empty_class"))
    fx.make_flat_folder(os.path.join(src, "dog", ".ipynb_checkpoints"), ["dog_000-checkpoint.jpg"])
    expected["dog/.ipynb_checkpoints/dog_000-checkpoint.jpg"] = "hidden"
    fx.make_flat_folder(src, ["stray.jpg"])
    expected["stray.jpg"] = "outside class folders"
    expected.update(dict.fromkeys(good))
    manifest = convert(out, train=src, size=SIZE, shard_size=4, workers=1, quiet=True)
    images, labels, paths = read_split(out, "train")
    return {"src": src, "out": out, "manifest": manifest, "expected": expected, "images": images,
            "labels": labels, "paths": paths}


AWKWARD_CASES = ["odd/truncated.jpg", "odd/corrupt.jpg", "odd/empty.jpeg", "odd/text.JPEG", "odd/bomb.png",
                 "odd/._resource_fork.jpg", "dog/.ipynb_checkpoints/dog_000-checkpoint.jpg", "stray.jpg",
                 "odd/png_named.JPEG", "odd/cmyk.jpg", "odd/grey.jpg", "odd/palette_transparent.png",
                 "odd/rgba.png", "odd/grey16.png", "odd/ünïcødé 猫.png", "odd/upper.PNG"]


@pytest.mark.parametrize("rel", AWKWARD_CASES)
def test_awkward_file_is_converted_or_skipped_with_reason(awkward, rel):
    category = awkward["expected"][rel]
    skipped = {s["path"]: s["reason"] for s in awkward["manifest"]["splits"]["train"]["skipped"]}
    if category is None:
        assert rel not in skipped, skipped.get(rel)
        assert awkward["paths"].count(rel) == 1
        stored = awkward["images"][awkward["paths"].index(rel)]
        reference = pillow_reference(os.path.join(awkward["src"], rel))
        assert np.abs(stored.astype(int) - reference).max() <= 3
    else:
        assert rel not in awkward["paths"]
        assert reason_category(skipped[rel]) == category, skipped[rel]


def test_every_image_file_counted_once(awkward):
    entry = awkward["manifest"]["splits"]["train"]
    assert len(awkward["paths"]) == len(set(awkward["paths"])) == entry["count"]
    assert sorted(awkward["paths"] + [s["path"] for s in entry["skipped"]]) == sorted(awkward["expected"])
    assert entry["count"] + len(entry["skipped"]) == len(awkward["expected"])  # notes.txt is not counted
    assert all(s["path"] != "odd/notes.txt" for s in entry["skipped"])


def test_class_list_is_sorted_folders_and_labels_follow(awkward):
    assert awkward["manifest"]["classes"] == ["cat", "dog", "empty_class", "odd"]  # empty class folder kept
    names = [awkward["manifest"]["classes"][label] for label in awkward["labels"]]
    assert names == [path.split("/")[0] for path in awkward["paths"]]


def test_round_trip_pixels_match_independent_resize_and_crop(awkward):
    for rel in [p for p in awkward["paths"] if p.startswith(("cat/", "dog/"))]:
        stored = awkward["images"][awkward["paths"].index(rel)]
        reference = pillow_reference(os.path.join(awkward["src"], rel))
        assert stored.shape == (SIZE, SIZE, 3) and stored.dtype == np.uint8
        assert np.abs(stored.astype(int) - reference).max() <= 3, rel


def test_sixteen_bit_grey_is_scaled_not_clipped(awkward):
    stored = awkward["images"][awkward["paths"].index("odd/grey16.png")].astype(int)
    eight_bit = awkward["images"][awkward["paths"].index("odd/grey.jpg")].astype(int)
    assert np.abs(stored - eight_bit).mean() < 3 and stored.max() < 255


def test_shard_format(awkward):
    shard = awkward["manifest"]["splits"]["train"]["shards"][0]
    with h5py.File(os.path.join(awkward["out"], shard["file"]), "r") as f:
        assert f["images"].dtype == np.uint8 and f["images"].chunks == (1, SIZE, SIZE, 3)
        assert f["images"].compression is None
        assert f["labels"].dtype == np.int32 and f["labels"].shape == (shard["count"],)
        assert h5py.check_string_dtype(f["paths"].dtype).encoding == "utf-8"
        assert (f.attrs["format_version"], f.attrs["split"], f.attrs["image_size"]) == (1, "train", SIZE)


def test_stats_match_numpy(awkward):
    stats = read_stats(os.path.join(awkward["out"], "stats.h5"))
    images = awkward["images"].astype(np.float64)
    pixels = images.reshape(-1, 3)
    cov = np.cov(pixels, rowvar=False, bias=True)
    eigval, eigvec = np.linalg.eigh(cov)
    np.testing.assert_allclose(stats["mean_image"], images.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats["mean_rgb"], pixels.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats["std_rgb"], pixels.std(axis=0), rtol=1e-5)
    np.testing.assert_allclose(stats["eigval"], eigval[::-1], rtol=1e-4)
    for i in range(3):  # same direction up to sign
        assert abs(float(np.sum(stats["eigvec"][:, i] * eigvec[:, 2 - i]))) == pytest.approx(1.0, abs=1e-4)
    assert stats["images"] == len(images) and stats["mean_image"].dtype == np.float32


def test_exif_rotation_applied(tmp_path):
    upright = np.zeros((48, 64, 3), np.uint8)
    upright[:24] = (255, 0, 0)  # top half red, bottom half blue
    upright[24:] = (0, 0, 255)
    path = fx.exif_rotated_jpeg(str(tmp_path / "c" / "rotated.jpg"), Image.fromarray(upright))
    assert Image.open(path).size == (48, 64)  # stored sideways
    image = load_image(path, SIZE)
    assert image[2, SIZE // 2, 0] > 200 and image[2, SIZE // 2, 2] < 60       # red on top
    assert image[-3, SIZE // 2, 2] > 200 and image[-3, SIZE // 2, 0] < 60     # blue at the bottom
    assert np.abs(image.astype(int) - pillow_reference(path)).max() <= 3


def test_unreadable_file_skipped(tmp_path, monkeypatch):
    src = str(tmp_path / "src")
    fx.make_class_tree(src, {"a": 2})
    locked = os.path.join(src, "a", "a_001.jpg")
    os.chmod(locked, 0)
    if os.access(locked, os.R_OK):  # root reads anything: make Pillow's open fail the way it would
        real_open = builtins.open

        def refusing_open(file, *args, **kwargs):
            if os.fspath(file) == locked if isinstance(file, (str, os.PathLike)) else False:
                raise PermissionError(13, "Permission denied", locked)
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", refusing_open)
    manifest = convert(str(tmp_path / "out"), train=src, size=SIZE, workers=1, quiet=True)
    os.chmod(locked, 0o644)
    assert manifest["splits"]["train"]["count"] == 1
    assert [(s["path"], reason_category(s["reason"])) for s in manifest["splits"]["train"]["skipped"]] == [
        ("a/a_001.jpg", "unreadable")]


def test_non_ascii_names_stored_exactly(awkward):
    assert "odd/ünïcødé 猫.png" in awkward["paths"]


def test_load_image_accepts_file_objects_and_checks_size(awkward):
    path = os.path.join(awkward["src"], "cat", "cat_000.jpg")
    with open(path, "rb") as f:
        np.testing.assert_array_equal(load_image(f, SIZE), load_image(path, SIZE))
    with pytest.raises(ValueError, match="size"):
        load_image(path, 0)
    with pytest.raises(SkipImage, match="empty file"):
        load_image(os.path.join(awkward["src"], "odd", "empty.jpeg"))


def test_large_jpeg_decoded_with_draft_stays_close(tmp_path):
    rng = np.random.default_rng(5)
    path = fx.save(fx.smooth_image(rng, 600, 400), str(tmp_path / "big.jpg"), quality=95)
    assert Image.open(path).draft(None, (SIZE, SIZE)) is not None  # the fast path is taken
    assert np.abs(load_image(path, SIZE).astype(int) - pillow_reference(path)).mean() < 4


# ---- label files and the val split ----

@pytest.fixture
def train_and_flat_val(tmp_path):
    src = str(tmp_path / "train")
    fx.make_class_tree(src, {"n01": 2, "n02": 2, "n03": 2})
    val = str(tmp_path / "val")
    truth = {f"ILSVRC2012_val_{i:08d}.JPEG": f"n0{1 + i % 3}" for i in range(1, 10)}
    fx.make_flat_folder(val, truth)
    return src, val, truth


def _val_labels_by_path(out, classes):
    _, labels, paths = read_split(out, "val")
    return {path: classes[label] for path, label in zip(paths, labels)}


def test_val_labels_from_csv_looked_up_by_name(tmp_path, train_and_flat_val):
    src, val, truth = train_and_flat_val
    rows = list(truth.items())
    np.random.default_rng(3).shuffle(rows)  # row order must not matter
    label_file = tmp_path / "val.csv"
    with open(label_file, "w", newline="") as f:
        csv.writer(f).writerows([("filename", "class")] + rows)
    manifest = convert(str(tmp_path / "out"), train=src, val=val, val_labels=str(label_file), size=SIZE, workers=1, quiet=True)
    assert manifest["classes"] == ["n01", "n02", "n03"]
    assert _val_labels_by_path(str(tmp_path / "out"), manifest["classes"]) == truth


def test_val_labels_from_kaggle_solution_file(tmp_path, train_and_flat_val):
    src, val, truth = train_and_flat_val
    rows = [(name[:-5], f"{wnid} 10 20 30 40 {wnid} 1 2 3 4") for name, wnid in truth.items()]
    np.random.default_rng(4).shuffle(rows)
    label_file = tmp_path / "LOC_val_solution.csv"
    with open(label_file, "w", newline="") as f:
        csv.writer(f).writerows([("ImageId", "PredictionString")] + rows)
    out = str(tmp_path / "out")
    convert(out, train=src, size=SIZE, workers=1, quiet=True)
    manifest = convert(out, val=val, val_labels=str(label_file), workers=1, quiet=True)  # --val alone: OUT's classes
    assert set(manifest["splits"]) == {"train", "val"} and manifest["image_size"] == SIZE
    assert _val_labels_by_path(out, manifest["classes"]) == truth


def test_val_in_class_folders(tmp_path, train_and_flat_val):
    src, _, _ = train_and_flat_val
    val = str(tmp_path / "val_folders")
    fx.make_class_tree(val, {"n03": 2, "n01": 1}, seed=9)
    manifest = convert(str(tmp_path / "out"), train=src, val=val, size=SIZE, workers=1, quiet=True)
    labels = _val_labels_by_path(str(tmp_path / "out"), manifest["classes"])
    assert labels == {p: p.split("/")[0] for p in labels} and len(labels) == 3


def test_val_alone_converts_with_a_class_file_in_the_models_order(tmp_path, train_and_flat_val, capsys):
    """--classes FILE (one wnid per line, first word: Caffe's synsets / synset_words): labels follow
    the file's order, not sorted folder names; val converts with no train split, flat with its
    label file or in class folders, and a dataset without stats.h5 opens for evaluation."""
    from refnet.data import ShardDataset

    _, val, truth = train_and_flat_val
    class_file = tmp_path / "synset_words.txt"
    class_file.write_text("n03 third\nn01 first\n\nn02 second\n")
    label_file = tmp_path / "val.csv"
    label_file.write_text("".join(f"{name},{wnid}\n" for name, wnid in truth.items()))
    flat = str(tmp_path / "flat")
    manifest = convert(flat, val=val, val_labels=str(label_file), classes=str(class_file), size=SIZE, workers=1,
                       quiet=True)  # fmt: skip
    assert manifest["classes"] == ["n03", "n01", "n02"] and set(manifest["splits"]) == {"val"}
    assert _val_labels_by_path(flat, manifest["classes"]) == truth
    folders = str(tmp_path / "val_folders")
    fx.make_class_tree(folders, {"n03": 2, "n01": 1}, seed=9)
    assert refnet_main(["convert", str(tmp_path / "out"), "--val", folders, "--classes", str(class_file), "--size",
                 str(SIZE), "--workers", "1", "--quiet"]) == 0  # fmt: skip
    labels = _val_labels_by_path(str(tmp_path / "out"), ["n03", "n01", "n02"])
    assert labels == {p: p.split("/")[0] for p in labels} and len(labels) == 3
    dataset = ShardDataset(flat, "val", require_stats=False)
    with pytest.raises(ValueError, match="subtract_mean_image first"):
        next(iter(dataset.batches(2, train=False, crop=SIZE)))
    dataset.subtract_mean_image(np.zeros((SIZE, SIZE, 3), np.float32))
    assert next(iter(dataset.batches(2, train=False, crop=SIZE)))[0].shape == (2, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match="no stats.h5"):
        dataset.batches(2, train=True, crop=SIZE)
    with pytest.raises(DatasetError, match="repeats n01"):
        class_file.write_text("n01\nn02\nn01\n")
        convert(str(tmp_path / "again"), val=folders, classes=str(class_file), workers=1, quiet=True)


def test_unknown_val_class_is_an_error(tmp_path, train_and_flat_val, capsys):
    src, val, truth = train_and_flat_val
    label_file = tmp_path / "val.csv"
    label_file.write_text("".join(f"{name},{'n99' if i == 0 else wnid}\n" for i, (name, wnid) in enumerate(truth.items())))
    rc = refnet_main(["convert", str(tmp_path / "out"), "--train", src, "--val", val, "--val-labels",
                      str(label_file), "--size", str(SIZE), "--workers", "1", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "'n99'" in err and "not one of the train split's 3 classes" in err and "Traceback" not in err
    fixed = tmp_path / "fixed.csv"
    fixed.write_text("".join(f"{name},{wnid}\n" for name, wnid in truth.items()))
    manifest = convert(str(tmp_path / "out"), train=src, val=val, val_labels=str(fixed), size=SIZE, workers=1, quiet=True)
    assert manifest["splits"]["val"]["count"] == len(truth)  # the failed run left nothing in the way


def test_unknown_val_class_folder_is_an_error(tmp_path, train_and_flat_val):
    src, _, _ = train_and_flat_val
    val = str(tmp_path / "val_folders")
    fx.make_class_tree(val, {"n07": 1})
    with pytest.raises(DatasetError, match="class folder 'n07' is not one of"):
        convert(str(tmp_path / "out"), train=src, val=val, size=SIZE, workers=1, quiet=True)


@pytest.mark.parametrize("text, message", [
    ("filename,class\na.jpg\n", "line 2: expected 'filename,class'"),
    ("a.jpg,n01\na.jpg,n02\n", "labelled both"),
    ("", "is empty"),
    ("ImageId,PredictionString\nx,\n", "line 2: expected 'ImageId,PredictionString'"),
])
def test_bad_label_file_is_an_error(tmp_path, text, message):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message):
        read_label_file(str(path))


def test_label_file_naming_no_image_is_an_error(tmp_path, train_and_flat_val):
    src, val, _ = train_and_flat_val
    label_file = tmp_path / "val.csv"
    label_file.write_text("other_1.jpg,n01\nother_2.jpg,n02\n")
    with pytest.raises(DatasetError, match="names none of the images"):
        convert(str(tmp_path / "out"), train=src, val=val, val_labels=str(label_file), size=SIZE, workers=1, quiet=True)


def test_image_missing_from_label_file_is_skipped(tmp_path, train_and_flat_val):
    src, val, truth = train_and_flat_val
    label_file = tmp_path / "val.csv"
    label_file.write_text("".join(f"{name},{wnid}\n" for name, wnid in list(truth.items())[1:]))
    manifest = convert(str(tmp_path / "out"), train=src, val=val, val_labels=str(label_file), size=SIZE, workers=1, quiet=True)
    assert manifest["splits"]["val"]["skipped"] == [{"path": next(iter(truth)), "reason": "no label"}]


@pytest.mark.parametrize("make_args, message", [
    (lambda t: ["--train", str(t / "missing")], "does not exist"),
    (lambda t: ["--train", str(t / "empty_dir")], "has no class folders"),
    (lambda t: ["--train", str(t / "no_images")], "contains no image files"),
    (lambda t: [], "nothing to convert"),
    (lambda t: ["--val", str(t / "empty_dir")], "--val alone needs OUT"),
    (lambda t: ["--train", str(t / "no_images"), "--val-labels", "x.csv"], "--val-labels needs --val"),
    (lambda t: ["--train", str(t / "no_images"), "--shard-size", "0"], "--shard-size must be at least 1"),
])
def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys, make_args, message):
    os.makedirs(tmp_path / "empty_dir")
    os.makedirs(tmp_path / "no_images" / "cls")
    (tmp_path / "no_images" / "cls" / "readme.txt").write_text("no pictures here")
    rc = refnet_main(["convert", str(tmp_path / "out")] + make_args(tmp_path) + ["--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


def test_flat_val_without_label_file_is_an_error(tmp_path, train_and_flat_val):
    src, val, _ = train_and_flat_val
    with pytest.raises(DatasetError, match="--val-labels"):
        convert(str(tmp_path / "out"), train=src, val=val, size=SIZE, workers=1, quiet=True)


def test_summary_line(tmp_path, capsys):
    src = str(tmp_path / "src")
    fx.make_class_tree(src, {"a": 3})
    (tmp_path / "src" / "a" / "bad.jpg").write_bytes(b"")
    convert(str(tmp_path / "out"), train=src, size=SIZE, workers=1, quiet=True)
    out = capsys.readouterr().out
    assert "train: 3 converted" in out and "1 skipped (empty file: 1)" in out and "images/s" in out and "MB written" in out


def test_non_utf8_name_and_fifo_are_skipped_with_reasons(tmp_path):
    src = str(tmp_path / "src")
    fx.make_class_tree(src, {"a": 1})
    with open(os.path.join(src, "a").encode() + b"/caf\xe9.jpg", "wb") as f:  # Latin-1 bytes in a name
        f.write(fx.jpeg_bytes(fx.smooth_image(np.random.default_rng(0), 40, 40)))
    os.mkfifo(os.path.join(src, "a", "pipe.jpg"))  # opening it would block forever
    manifest = convert(str(tmp_path / "out"), train=src, size=SIZE, workers=1, quiet=True)
    skipped = {s["path"]: s["reason"] for s in manifest["splits"]["train"]["skipped"]}
    assert skipped == {"a/caf\\udce9.jpg": "file name not UTF-8", "a/pipe.jpg": "not a regular file"}
    assert manifest["splits"]["train"]["count"] == 1


def test_reader_reads_the_converted_dataset(awkward, monkeypatch, tmp_path):
    from refnet.data import ShardDataset

    monkeypatch.setenv("REFNET_CACHE_DIR", str(tmp_path))  # the reader's checksum cache
    ds = ShardDataset(awkward["out"], "train")
    assert len(ds) == len(awkward["paths"]) and ds.classes == awkward["manifest"]["classes"]
    labels = np.concatenate([y for _, y in ds.batches(5, train=False, crop=SIZE - 4)])
    np.testing.assert_array_equal(labels, awkward["labels"])


def test_unreadable_exif_keeps_the_image_as_stored(awkward, monkeypatch):
    import data_tools.preprocess as preprocess

    path = os.path.join(awkward["src"], "cat", "cat_000.jpg")
    expected = load_image(path, SIZE)

    def broken_exif(image):
        raise SyntaxError("not a TIFF IFD")

    monkeypatch.setattr(preprocess.ImageOps, "exif_transpose", broken_exif)
    np.testing.assert_array_equal(load_image(path, SIZE), expected)
