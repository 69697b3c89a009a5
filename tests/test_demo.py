"""`refnet demo` at tiny settings (4 training and 2 validation images per class, 1 epoch): the
report's keys and the meaning of its values, the curves picture, and --out's refusal to clear a
directory the demo did not write."""

import json
import os

import numba
import numpy as np
import pytest
from PIL import Image

from refnet import checkpoint as ck
from refnet.cli import main
from refnet.commands.demo import MARKER, _prepare
from refnet.synth import CLASSES

TRAIN_PER_CLASS, VAL_PER_CLASS = 4, 2


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    threads = numba.get_num_threads()
    try:
        status = main(["demo", "--out", str(out), "--epochs", "1", "--train-per-class", str(TRAIN_PER_CLASS),
                       "--val-per-class", str(VAL_PER_CLASS), "--workers", "1", "--quiet", "--compile-inline"])  # fmt: skip
    finally:
        numba.set_num_threads(threads)
    assert status == 0
    return out, json.loads((out / "report.json").read_text())


def test_report_counts_and_errors_mean_what_they_say(demo):
    out, report = demo
    # plus the 5 valid files in unusual encodings refnet/synth.py adds; its 3 broken files are skipped
    train_images = TRAIN_PER_CLASS * len(CLASSES) + 5
    assert report["classes"] == sorted(CLASSES)  # the converter orders the class folders by name
    assert report["train_images"] == train_images and report["val_images"] == VAL_PER_CLASS * len(CLASSES)
    assert report["epochs"] == 1 and report["steps"] == train_images // report["settings"]["batch_size"] >= 1
    for mode in ("val", "ten_crop"):
        top1, top5 = report[f"{mode}_top1_error"], report[f"{mode}_top5_error"]
        assert 0.0 <= top5 <= top1 <= 1.0
        # errors are counts of whole images
        assert round(top1 * report["val_images"]) == pytest.approx(top1 * report["val_images"])
    assert report["val_top1_accuracy"] == pytest.approx(1.0 - report["val_top1_error"])
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert len(manifest["splits"]["train"]["skipped"]) == 3
    assert 0 < report["train_seconds"] <= report["total_seconds"] and report["stage_seconds"]["convert"] > 0
    assert set(report["stage_seconds"]) >= {"images", "convert", "compile_wait", "train", "eval"}
    assert report["seed"] == 0 and report["compile_seconds"]["waited_for_background_seconds"] >= 0
    assert report["images_per_second"] > 0
    assert report["settings"]["epochs"] == 1 and report["settings"]["train_per_class"] == TRAIN_PER_CLASS


def test_outputs_exist_and_hold_what_they_name(demo):
    out, report = demo
    outputs = report["outputs"]
    for name in ("images", "data", "run"):
        assert os.path.isdir(outputs[name])
    assert (out / MARKER).exists()
    with Image.open(outputs["curves"]) as picture:
        assert picture.format == "PNG" and picture.size[0] > 100 and picture.size[1] > 100
        assert np.asarray(picture.convert("L")).std() > 0  # something is drawn on it
    latest = ck.load_checkpoint(outputs["checkpoint"])
    assert latest.step == report["steps"] and latest.classes == sorted(CLASSES)
    with open(outputs["metrics"], encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1]


def test_out_refuses_a_directory_without_the_marker(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "keep.txt").write_text("mine")
    assert main(["demo", "--out", str(tmp_path), "--epochs", "1", "--train-per-class", "2", "--val-per-class", "1"]) == 2
    assert "was not written by `refnet demo`" in capsys.readouterr().err
    assert (tmp_path / "images" / "keep.txt").read_text() == "mine"
    assert not (tmp_path / MARKER).exists()


def test_out_with_the_marker_clears_only_the_demos_parts(tmp_path):
    for part in ("images", "data", "run"):
        (tmp_path / part).mkdir()
        (tmp_path / part / "old").write_text("stale")
    (tmp_path / "report.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / MARKER).write_text("")
    _prepare(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([MARKER, "notes.txt"])
