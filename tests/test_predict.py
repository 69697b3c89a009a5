"""`refnet predict`: image files through the converter's load_image and the reader's centre crop."""

import json

import numpy as np
import pytest
import shard_writer
from PIL import Image

from data_tools.preprocess import load_image
from refnet.cli import main
from refnet.commands.predict import network_inputs, predict_files
from test_eval import CLASSES, CROP, SIZE, known_net, random_dataset, save_known_checkpoint, softmax64


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    random_dataset(root / "data", CLASSES)
    net = known_net()
    save_known_checkpoint(root / "known.h5", net, str(root / "data"))
    rng = np.random.default_rng(11)
    files = []
    for name, (w, h), mode in (("wide.jpg", (120, 90), "RGB"), ("tall.png", (80, 140), "RGB"), ("gray.png", (100, 100), "L")):
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(root / name)
        files.append(str(root / name))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    return root, net, files


def test_predictions_equal_the_converter_then_centre_crop_by_hand(setup):
    root, net, files = setup
    from refnet.checkpoint import load_checkpoint

    ckpt = load_checkpoint(root / "known.h5")
    results = predict_files(net, files, image_size=SIZE, mean_image=ckpt.mean_image, classes=ckpt.classes)
    mid = (SIZE - CROP) // 2
    for path, top, error in results:
        assert error is None
        image = load_image(path, SIZE).astype(np.float64) - ckpt.mean_image
        crop = np.ascontiguousarray(image[mid : mid + CROP, mid : mid + CROP].transpose(2, 0, 1)[None], dtype=np.float32)
        probs = softmax64(net.forward(crop))[0]
        order = np.argsort(-probs, kind="stable")
        assert [name for name, _ in top] == [ckpt.classes[c] for c in order]
        np.testing.assert_allclose([p for _, p in top], probs[order], rtol=1e-4, atol=1e-6)
        assert sum(p for _, p in top) == pytest.approx(1.0, abs=1e-5)  # 3 classes: all of them listed


def test_network_inputs_are_the_readers_eval_batches(setup, tmp_path):
    """The same stored pixels give the same network input through predict and through the reader."""
    from refnet.data import ShardDataset

    root, _, _ = setup
    dataset = ShardDataset(str(root / "data"), "val")
    x, _ = next(iter(dataset.batches(len(dataset), train=False, crop=CROP)))
    stored = dataset.read(np.arange(len(dataset)))
    np.testing.assert_array_equal(network_inputs(stored, dataset.stats["mean_image"], CROP), x)


def test_predict_command_prints_top_classes_and_reports_broken_files(setup, capsys):
    root, _, files = setup
    assert main(["predict", "--checkpoint", str(root / "known.h5"), "--json", *files]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["path"] for line in lines] == files
    assert all(len(line["top"]) == CLASSES for line in lines)
    assert main(["predict", "--checkpoint", str(root / "known.h5"), files[0], str(root / "broken.jpg")]) == 1
    captured = capsys.readouterr()
    assert "1. c" in captured.out and "broken.jpg: cannot read" in captured.err
    assert main(["predict", "--checkpoint", str(root / "missing.h5"), files[0]]) == 2


def test_predict_applies_the_checkpoints_preprocessing(setup, tmp_path, capsys):
    """A checkpoint with Caffe's convention (BGR, per-channel mean) and no mean image: predict runs
    the crops through it."""
    from refnet import checkpoint as ck

    root, net, files = setup
    zeros = {name: np.zeros_like(value) for name, value in net.state_dict().items()}
    config = {"variant": "seed", "num_classes": CLASSES, "input_size": CROP, "dropout": 0.5, "seed": 3}
    preprocessing = {"channels": "BGR", "pixel_max": 255.0, "mean": [104.0, 117.0, 123.0], "crop": CROP, "resize": SIZE}
    path = tmp_path / "bgr.h5"
    ck.save_checkpoint(path, ck.Checkpoint(params=net.state_dict(), momentum=zeros, step=0, epoch=0, batch_in_epoch=0,
                                           config=config, classes=["a", "b", "c"], preprocessing=preprocessing))  # fmt: skip
    assert main(["predict", "--checkpoint", str(path), "--json", files[0]]) == 0
    top = json.loads(capsys.readouterr().out)["top"]
    mid = (SIZE - CROP) // 2
    image = load_image(files[0], SIZE)[mid : mid + CROP, mid : mid + CROP, ::-1].astype(np.float64) - [104.0, 117.0, 123.0]
    probs = softmax64(net.forward(np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)))[0]
    assert [t["class"] for t in top] == [["a", "b", "c"][c] for c in np.argsort(-probs, kind="stable")]
    np.testing.assert_allclose(sorted(t["probability"] for t in top), sorted(probs), rtol=1e-4, atol=1e-6)
