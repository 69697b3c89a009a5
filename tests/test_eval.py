"""`refnet eval`: centre-crop and 10-crop errors of a known tiny model against a hand computation."""

import json

import numpy as np
import pytest
import shard_writer

from refnet import checkpoint as ck
from refnet.cli import main
from refnet.data import ShardDataset
from refnet.evaluate import crop_probabilities, evaluate, most_confused_pairs
from refnet.model import AlexNet

SIZE, CROP, CLASSES, N_VAL = 70, 67, 3, 5


def known_net():
    """A seeded AlexNet with zero biases (so the logits follow the input, not the constant bias path)
    and fc8 scaled up, so that different crops get clearly different softmax outputs."""
    net = AlexNet(CLASSES, "seed", CROP, 0.5, "cpu", seed=3)
    params = net.state_dict()
    for name in params:
        if name.endswith(".bias"):
            params[name][...] = 0
    params["fc8.weight"] *= np.float32(3000.0)
    net.load_state_dict(params)
    return net


def random_dataset(root, n_classes, seed=7):
    """Random images with labels 0, 1, 2, 0, ... written as a train and a val split."""
    rng = np.random.default_rng(seed)
    splits = {split: (rng.integers(0, 256, size=(n, SIZE, SIZE, 3), dtype=np.uint8), np.arange(n, dtype=np.int32) % n_classes)
              for split, n in (("train", 4), ("val", N_VAL))}  # fmt: skip
    shard_writer.write_dataset(root, splits, [f"c{i}" for i in range(n_classes)], shard_size=3)
    return splits


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    return str(root), random_dataset(root, CLASSES), known_net()


def softmax64(logits):
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def hand_crops(image, mean_image, ten_crop, size=SIZE, crop=CROP):
    """The paper's crops by plain slicing: centre, or four corners + centre and their mirror images."""
    centred = (image.astype(np.float64) - mean_image).transpose(2, 0, 1)  # CHW
    far, mid = size - crop, (size - crop) // 2
    corners = [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)] if ten_crop else [(mid, mid)]
    crops = [centred[:, t : t + crop, l : l + crop] for t, l in corners]
    if ten_crop:
        crops += [c[:, :, ::-1] for c in crops]
    return np.ascontiguousarray(np.stack(crops), dtype=np.float32)


@pytest.mark.parametrize("ten_crop", [False, True])
def test_errors_equal_a_hand_computed_average_of_softmax_outputs(setup, ten_crop):
    root, splits, net = setup
    images, labels = splits["val"]
    mean_image = ShardDataset(root, "val").stats["mean_image"].astype(np.float64)
    hand = np.stack([softmax64(net.forward(hand_crops(img, mean_image, ten_crop))).mean(axis=0) for img in images])
    per_crop = softmax64(net.forward(hand_crops(images[0], mean_image, True)))
    assert per_crop.std(axis=0).max() > 0.05  # the crops really disagree, so averaging is tested

    dataset = ShardDataset(root, "val")
    x, batch_labels = next(iter(dataset.batches(N_VAL, train=False, crop=CROP, ten_crop=ten_crop)))
    np.testing.assert_array_equal(batch_labels, labels)
    np.testing.assert_allclose(crop_probabilities(net, x), hand, rtol=1e-4, atol=1e-6)

    result = evaluate(net, dataset, crop=CROP, batch_size=20, ten_crop=ten_crop)
    ranked = np.argsort(-hand, axis=1, kind="stable")
    assert result["images"] == N_VAL
    assert result["top1_error"] == pytest.approx(np.mean(ranked[:, 0] != labels))
    assert result["top5_error"] == 0.0  # 3 classes: always; test_top5.py tests the cut with 12 classes
    assert result["loss"] == pytest.approx(-np.mean(np.log(hand[np.arange(N_VAL), labels])), rel=1e-4)
    expected = np.zeros((CLASSES, CLASSES), np.int64)
    np.add.at(expected, (labels, ranked[:, 0]), 1)
    np.testing.assert_array_equal(result["confusion"], expected)


def test_most_confused_pairs_are_ordered_by_count():
    confusion = np.array([[5, 3, 0], [1, 4, 0], [0, 7, 2]])
    pairs = most_confused_pairs(confusion, ["a", "b", "c"], limit=5)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [("c", "b", 7), ("a", "b", 3), ("b", "a", 1)]
    assert pairs[0]["fraction"] == pytest.approx(7 / 9)


def save_known_checkpoint(path, net, root):
    dataset = ShardDataset(root, "train")
    config = {"variant": "seed", "num_classes": CLASSES, "input_size": CROP, "dropout": 0.5, "seed": 3,
              "image_size": SIZE}  # fmt: skip
    zeros = {name: np.zeros_like(value) for name, value in net.state_dict().items()}
    ck.save_checkpoint(path, ck.Checkpoint(params=net.state_dict(), momentum=zeros, step=0, epoch=0, batch_in_epoch=0,
                                           config=config, classes=dataset.classes,
                                           mean_image=dataset.stats["mean_image"]))  # fmt: skip


def test_eval_command_prints_and_writes_both_errors(setup, tmp_path, capsys):
    root, _, net = setup
    path = tmp_path / "known.h5"
    save_known_checkpoint(path, net, root)
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(path), "--data", root, "--ten-crop", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "val centre crop: top-1 error" in text and "val 10-crop: top-1 error" in text
    report = json.loads(out.read_text())
    assert set(report) == {"centre crop", "10-crop"} and report["10-crop"]["images"] == N_VAL


def test_eval_refuses_data_with_another_number_of_classes(setup, tmp_path, capsys):
    root, _, net = setup
    path = tmp_path / "known.h5"
    save_known_checkpoint(path, net, root)
    other = tmp_path / "other"
    random_dataset(other, CLASSES + 1)
    assert main(["eval", "--checkpoint", str(path), "--data", str(other)]) == 2
    assert "has 4 classes, the checkpoint was trained on 3" in capsys.readouterr().err


def test_eval_applies_the_checkpoints_preprocessing_without_stats(setup, tmp_path):
    """An imported-style checkpoint (BGR, Caffe's per-channel mean) evaluated on a dataset with no
    stats.h5 (a val split converted alone): the loss is the one of hand-made BGR crops."""
    import shutil

    root, splits, net = setup
    data = tmp_path / "val_only"
    shutil.copytree(root, data)
    (data / "stats.h5").unlink()
    zeros = {name: np.zeros_like(value) for name, value in net.state_dict().items()}
    config = {"variant": "seed", "num_classes": CLASSES, "input_size": CROP, "dropout": 0.5, "seed": 3}
    preprocessing = {"channels": "BGR", "pixel_max": 255.0, "mean": [104.0, 117.0, 123.0], "crop": CROP, "resize": SIZE}
    path = tmp_path / "bgr.h5"
    ck.save_checkpoint(path, ck.Checkpoint(params=net.state_dict(), momentum=zeros, step=0, epoch=0, batch_in_epoch=0,
                                           config=config, classes=[f"c{i}" for i in range(CLASSES)],
                                           preprocessing=preprocessing))  # fmt: skip
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(path), "--data", str(data), "--json", str(out)]) == 0
    images, labels = splits["val"]
    mid = (SIZE - CROP) // 2
    crops = images[:, mid : mid + CROP, mid : mid + CROP, ::-1].astype(np.float64) - [104.0, 117.0, 123.0]
    probs = softmax64(net.forward(np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)))
    loss = float(-np.log(probs[np.arange(len(labels)), labels]).mean())
    assert json.loads(out.read_text())["centre crop"]["loss"] == pytest.approx(loss, rel=1e-4)
