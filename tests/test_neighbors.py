"""`refnet neighbors`: duplicates are found as nearest neighbours, and the contact sheet shows them where expected."""

import numpy as np
import pytest
import shard_writer
from PIL import Image
from test_eval import CLASSES, SIZE, known_net, save_known_checkpoint

from refnet.cli import main
from refnet.commands.neighbors import (CAPTION_HEIGHT, CELL_BORDER, MISMATCH_FRAME, QUERY_FRAME, TopK,
                                       nearest_neighbours)  # fmt: skip

DUPLICATES = {6: 1, 7: 3}  # train images 6 and 7 (class 0) are copies of images 1 and 3 (classes 1 and 0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("neighbors")
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(8, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 0], np.int32)
    for copy, original in DUPLICATES.items():
        images[copy] = images[original]
    val = rng.integers(0, 256, size=(3, SIZE, SIZE, 3), dtype=np.uint8)
    splits = {"train": (images, labels), "val": (val, np.arange(3, dtype=np.int32))}
    shard_writer.write_dataset(root / "data", splits, [f"c{i}" for i in range(CLASSES)], shard_size=3)
    save_known_checkpoint(root / "known.h5", known_net(), str(root / "data"))
    return root, images, labels


def test_every_duplicate_is_its_copys_nearest_neighbour_and_drawn_beside_it(setup, capsys):
    root, images, labels = setup
    png = root / "sheet.png"
    argv = ["neighbors", "--checkpoint", str(root / "known.h5"), "--data", str(root / "data"), "--split", "train",
            "--queries", "0", "--k", "2", "--rows", "8", "--batch-size", "3", "--png", str(png)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = {line.split(":")[0]: line.split(": ")[1].split(", ") for line in out.splitlines() if line.startswith("train #")}
    for copy, original in DUPLICATES.items():  # both ways round, at distance ~0 (a query never finds itself)
        mark = "" if labels[copy] == labels[original] else " (x)"
        for query, found in ((copy, original), (original, copy)):
            nearest, second = lines[f"train #{query} c{labels[query]}"]
            assert nearest.startswith(f"c{labels[found]}{mark} ")
            assert float(nearest.split()[-1]) < 1e-2 * float(second.split()[-1])  # float32 rounding, not quite 0
    assert "nearest neighbour (fc7, Euclidean) of the query's class: " in out

    sheet = np.asarray(Image.open(png).convert("RGB"))
    cell_w, cell_h = SIZE + 2 * CELL_BORDER, SIZE + 2 * CELL_BORDER + CAPTION_HEIGHT
    assert sheet.shape == (8 * cell_h, 3 * cell_w, 3)  # 8 queries, each with itself first and 2 neighbours

    def cell(row, column):
        x, y = column * cell_w + CELL_BORDER, row * cell_h + CELL_BORDER
        return sheet[y : y + SIZE, x : x + SIZE], tuple(sheet[y - 1, x - 1])

    query, frame = cell(6, 0)
    assert (query == images[6]).all() and frame == QUERY_FRAME
    neighbour, frame = cell(6, 1)  # image 6 (class 0) finds image 1 (class 1): a mismatch, framed red
    assert (neighbour == images[1]).all() and frame == MISMATCH_FRAME
    neighbour, frame = cell(3, 1)  # image 3 (class 0) finds image 7 (class 0): a match
    assert (neighbour == images[7]).all() and frame != MISMATCH_FRAME
    caption = sheet[6 * cell_h + SIZE + 2 * CELL_BORDER :][:CAPTION_HEIGHT, cell_w : 2 * cell_w]
    assert (caption.min(axis=2) < 100).any()  # the class name is written under the image


def test_batched_search_equals_one_exhaustive_sort():
    rng = np.random.default_rng(2)
    queries = rng.standard_normal((5, 16)).astype(np.float32)
    train = rng.standard_normal((23, 16)).astype(np.float32)
    distance, index = nearest_neighbours(queries, (train[i : i + 4] for i in range(0, 23, 4)), k=3)
    exact = ((queries[:, None, :].astype(np.float64) - train[None].astype(np.float64)) ** 2).sum(axis=2)
    assert (index == np.argsort(exact, axis=1, kind="stable")[:, :3]).all()
    assert np.allclose(distance, np.sort(exact, axis=1)[:, :3], rtol=1e-4, atol=1e-4)


def test_top_k_keeps_the_lower_image_number_on_ties():
    best = TopK(1, 2)
    best.add(np.array([[1.0, 0.5]]), 0)
    best.add(np.array([[0.5, 2.0]]), 2)
    distance, index = best.result()
    assert index.tolist() == [[1, 2]] and distance.tolist() == [[0.5, 0.5]]


@pytest.mark.parametrize("argv, message", [
    (["--k", "0"], "--k must be at least 1, got 0"),
    (["--layer", "fc9"], "--layer: expected one of conv1,"),
    (["--k", "9"], "--k 9: the train split holds only 8 images"),
])  # fmt: skip
def test_argument_errors_are_one_line(setup, capsys, argv, message):
    root, _, _ = setup
    assert main(["neighbors", "--checkpoint", str(root / "known.h5"), "--data", str(root / "data"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"refnet neighbors: error: {message}") and "\n" not in err
