"""Top-5 error and predict's top-5 list with 12 classes, where the top-1 and top-5 answers differ.

A fixed linear "network" gives each crop distinct logits, so the ranking of the classes is known by
hand (float64). Each validation label is then placed at a chosen rank of its own image's ranking:
rank 1 (top-1 right), ranks 3 and 5 (top-5 right, top-1 wrong; 5 is the last one inside the cut),
ranks 6, 9 and 12 (both wrong; 6 is the first one outside). So top-1 error is 5/6 and top-5 error
3/6, for the centre crop and for the 10-crop average (labels placed on that mode's own ranking).
"""

import numpy as np
import pytest
import shard_writer
from PIL import Image

from refnet.data import ShardDataset
from refnet.evaluate import evaluate
from refnet.commands.predict import predict_files
from test_eval import hand_crops, softmax64

CLASSES, SIZE, CROP = 12, 16, 11
LABEL_RANKS = (0, 2, 4, 5, 8, 11)  # 0-based rank of each validation image's label in its own ranking
TOP1_ERROR, TOP5_ERROR = 5 / 6, 3 / 6


class LinearNet:
    """logits = flatten(x) @ P: a stand-in for AlexNet whose every crop gets distinct logits."""

    input_size = CROP

    def __init__(self, seed=5):
        rng = np.random.default_rng(seed)
        features = 3 * CROP * CROP
        self.projection = rng.standard_normal((features, CLASSES)) * (1.0 / (60.0 * np.sqrt(features)))

    def forward(self, x, train=False):
        return (np.asarray(x, np.float64).reshape(x.shape[0], -1) @ self.projection).astype(np.float32)


def hand_probabilities(net, images, mean_image, ten_crop):
    return np.stack([softmax64(net.forward(hand_crops(img, mean_image, ten_crop, SIZE, CROP))).mean(axis=0)
                     for img in images])  # fmt: skip


def assert_ranking_is_clear(probs):
    """Neighbouring ranks differ by far more than float32 rounding, so the kernel's ranking is the hand one."""
    ordered = -np.sort(-probs, axis=1)
    assert ((ordered[:, :-1] - ordered[:, 1:]) / ordered[:, :-1]).min() > 1e-4


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(21)
    train = rng.integers(0, 256, size=(4, SIZE, SIZE, 3), dtype=np.uint8)
    val = rng.integers(0, 256, size=(len(LABEL_RANKS), SIZE, SIZE, 3), dtype=np.uint8)
    mean_image = shard_writer.image_stats(train)["mean_image"].astype(np.float64)
    net = LinearNet()
    roots = {}
    for ten_crop in (False, True):
        probs = hand_probabilities(net, val, mean_image, ten_crop)
        assert_ranking_is_clear(probs)
        ranked = np.argsort(-probs, axis=1, kind="stable")
        labels = ranked[np.arange(len(val)), LABEL_RANKS].astype(np.int32)
        root = tmp_path_factory.mktemp("top5")
        shard_writer.write_dataset(root, {"train": (train, np.arange(4, dtype=np.int32)), "val": (val, labels)},
                                   [f"c{i}" for i in range(CLASSES)], shard_size=4)  # fmt: skip
        roots[ten_crop] = (str(root), ranked, labels)
    return net, mean_image, roots


def test_the_two_modes_rank_differently(data):
    """The 10-crop average changes the top 5 of some image, so scoring it on centre ranks would fail."""
    _, _, roots = data
    assert any(set(a[:5]) != set(b[:5]) for a, b in zip(roots[False][1], roots[True][1]))


@pytest.mark.parametrize("ten_crop", [False, True], ids=["centre", "10-crop"])
def test_top5_error_counts_labels_up_to_the_fifth_class(data, ten_crop):
    net, _, roots = data
    root, _, labels = roots[ten_crop]
    result = evaluate(net, ShardDataset(root, "val"), crop=CROP, batch_size=20, ten_crop=ten_crop)
    assert result["images"] == len(labels)
    assert result["top1_error"] == pytest.approx(TOP1_ERROR)
    assert result["top5_error"] == pytest.approx(TOP5_ERROR)


def test_predict_lists_the_five_most_probable_classes_in_order(data, tmp_path):
    net, mean_image, _ = data
    rng = np.random.default_rng(4)
    paths = []
    for i, (w, h) in enumerate(((30, 20), (20, 26), (16, 16))):
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    from data_tools.preprocess import load_image

    classes = [f"c{i}" for i in range(CLASSES)]
    results = predict_files(net, paths, image_size=SIZE, mean_image=mean_image, classes=classes)
    for path, top, error in results:
        assert error is None
        probs = hand_probabilities(net, [load_image(path, SIZE)], mean_image, ten_crop=False)
        assert_ranking_is_clear(probs)
        order = np.argsort(-probs[0], kind="stable")[:5]
        assert [name for name, _ in top] == [classes[c] for c in order]
        np.testing.assert_allclose([p for _, p in top], probs[0, order], rtol=1e-4)
