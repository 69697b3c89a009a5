"""`refnet filters`: kernels set by hand are drawn at the expected grid cells with the expected colours."""

import numpy as np
import pytest
from PIL import Image

from refnet import checkpoint as ck
from refnet.cli import main
from refnet.commands.filters import GAP, LABEL_HEIGHT, kernel_grid, normalise
from refnet.model import AlexNet

SCALE = 2
TILE = 11 * SCALE
STEP = TILE + GAP


def hand_set_conv1(variant):
    """conv1 weights: kernel 0 red, kernel 1 a left-to-right ramp, kernel 17 green, kernel 48 blue, the rest small noise."""
    net = AlexNet(3, variant, 67, 0.5, "cpu", seed=1)
    params = net.state_dict()
    w = params["conv1.weight"]
    w[...] = np.random.default_rng(0).standard_normal(w.shape).astype(np.float32) * np.float32(0.01)
    for kernel, channel in ((0, 0), (17, 1), (48, 2)):
        w[kernel] = -1
        w[kernel, channel] = 1
    w[1] = np.arange(11, dtype=np.float32)[None, None, :]
    return params


def save(tmp_path, variant):
    params = hand_set_conv1(variant)
    config = {"variant": variant, "num_classes": 3, "input_size": 67, "dropout": 0.5, "seed": 1, "image_size": 70}
    zeros = {name: np.zeros_like(value) for name, value in params.items()}
    path = tmp_path / f"{variant}.h5"
    ck.save_checkpoint(path, ck.Checkpoint(params=params, momentum=zeros, step=0, epoch=0, batch_in_epoch=0,
                                           config=config, classes=["a", "b", "c"]))  # fmt: skip
    return path


def tile(picture, x, y):
    return picture[y : y + TILE, x : x + TILE]


def test_conv1_kernels_land_in_their_cells_with_their_colours(tmp_path, capsys):
    path = save(tmp_path, "seed")
    assert main(["filters", "--checkpoint", str(path), "--scale", str(SCALE)]) == 0
    png = tmp_path / "seed-conv1.png"  # the default: next to the checkpoint
    assert f"wrote {png}" in capsys.readouterr().out
    picture = np.asarray(Image.open(png).convert("RGB"))
    assert picture.shape == (GAP + 6 * STEP, GAP + 16 * STEP, 3)  # 96 kernels, 16 to a row
    assert (tile(picture, GAP, GAP) == [255, 0, 0]).all()  # kernel 0: red
    assert (tile(picture, GAP + 1 * STEP, GAP + STEP) == [0, 255, 0]).all()  # kernel 17: row 1, column 1
    assert (tile(picture, GAP + 0 * STEP, GAP + 3 * STEP) == [0, 0, 255]).all()  # kernel 48: row 3, column 0
    ramp = tile(picture, GAP + STEP, GAP)  # kernel 1: column s of the kernel is (s / 10) of white
    for s in range(11):
        assert (ramp[:, s * SCALE : (s + 1) * SCALE] == round(s / 10 * 255)).all()
    assert (picture[:, GAP + TILE] == 255).all()  # the gap column between the first two columns of tiles


def test_paper_variant_draws_two_labelled_towers(tmp_path):
    path = save(tmp_path, "paper")
    png = tmp_path / "towers.png"
    assert main(["filters", "--checkpoint", str(path), "--scale", str(SCALE), "--png", str(png)]) == 0
    picture = np.asarray(Image.open(png).convert("RGB"))
    block = LABEL_HEIGHT + 3 * STEP  # a label band, then 48 kernels in 3 rows of 16
    assert picture.shape == (GAP + 2 * block, GAP + 16 * STEP, 3)
    assert (tile(picture, GAP, GAP + LABEL_HEIGHT) == [255, 0, 0]).all()  # kernel 0 opens tower 1
    assert (tile(picture, GAP, GAP + block + LABEL_HEIGHT) == [0, 0, 255]).all()  # kernel 48 opens tower 2
    for top in (GAP, GAP + block):  # each label band holds dark text on white
        band = picture[top : top + LABEL_HEIGHT - 2]
        assert (band.min(axis=2) < 100).any() and (band == 255).mean() > 0.5


def test_shared_range_keeps_weak_kernels_grey():
    weights = np.stack([np.linspace(-1, 1, 27), np.linspace(-0.01, 0.01, 27)]).reshape(2, 3, 3, 3).astype(np.float32)
    own, shared = normalise(weights, False), normalise(weights, True)
    assert own[1].min() == 0 and own[1].max() == 255  # stretched to its own range
    assert 120 <= shared[1].min() and shared[1].max() <= 135  # next to the strong kernel it stays grey
    assert (normalise(np.ones((1, 3, 2, 2), np.float32), False) == 128).all()  # a constant kernel: mid-grey


def test_deeper_layers_draw_one_row_of_channel_slices_per_kernel():
    weights = np.zeros((4, 2, 3, 3), np.float32)
    weights[2, 1] = 1.0  # kernel 2's second channel white, the rest black
    image, cells, labels = kernel_grid(weights, "seed", scale=1)
    step = 3 + GAP
    assert image.shape == (GAP + 4 * step, GAP + 2 * step, 3) and labels == []
    assert cells[2] == (GAP, GAP + 2 * step)
    x, y = GAP + step, GAP + 2 * step
    assert (image[y : y + 3, x : x + 3] == 255).all()
    assert (image[y : y + 3, GAP : GAP + 3] == 0).all()


@pytest.mark.parametrize("argv, message", [
    (["--layer", "fc6"], "--layer: expected one of conv1, conv2, conv3, conv4, conv5, got 'fc6'"),
    (["--scale", "0"], "--scale must be at least 1, got 0"),
])  # fmt: skip
def test_argument_errors_are_one_line(tmp_path, capsys, argv, message):
    path = save(tmp_path, "seed")
    assert main(["filters", "--checkpoint", str(path), *argv]) == 2
    assert capsys.readouterr().err.strip() == f"refnet filters: error: {message}"


def test_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["filters", "--checkpoint", str(tmp_path / "none.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("refnet filters: error:") and "\n" not in err
