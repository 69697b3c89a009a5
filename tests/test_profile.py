"""`refnet profile`: every layer's forward and backward charged from one real step, a table and a chart."""

import numpy as np
import pytest
from PIL import Image

from refnet.cli import main
from refnet.commands.profile import LayerClock, medians
from refnet.model import build_layers

LAYERS = build_layers("seed", 10, 67, dropout=0.5)
NAMES = [layer.name for layer in LAYERS]


def table_rows(out):
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split() and line.split()[0] in NAMES + ["loss", "sgd"]}


def blue_pixels(png):
    picture = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return ((picture[..., 2] - picture[..., 0] > 80) & (picture[..., 2] > 120)).sum()


def test_profile_times_every_layer_and_draws_the_chart(tmp_path, capsys):
    png = tmp_path / "profile.png"
    argv = ["profile", "--batch", "1", "--input-size", "67", "--num-classes", "10", "--steps", "2", "--png", str(png)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert list(rows) == NAMES + ["loss", "sgd"]
    for name in NAMES + ["loss"]:
        forward, backward, total = (float(v) for v in rows[name][:3])
        assert forward > 0 and backward > 0 and total == pytest.approx(forward + backward, abs=2e-3)
    assert rows["sgd"][1] == "-"  # the update has no backward
    percents = [float(r[3]) for r in rows.values()]
    assert sum(percents) == pytest.approx(100, abs=0.1 * len(percents))
    assert "whole step (median, bench/timing.py)" in out
    width, height = Image.open(png).size
    assert (width, height) == (max(800, int(0.55 * len(rows) * 100)), 450)  # figsize x dpi 100
    assert blue_pixels(png) > 500  # refnet's bars are drawn


def test_profile_with_the_torch_peer_shows_both_sides(tmp_path, capsys):
    pytest.importorskip("torch")
    png = tmp_path / "peer.png"
    argv = ["profile", "--batch", "1", "--input-size", "67", "--num-classes", "10", "--steps", "1", "--peer", "torch",
            "--png", str(png)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "torch fwd ms" in out and "refnet / torch" in out
    rows = table_rows(out)
    assert list(rows) == NAMES + ["loss", "sgd"]
    assert all(float(rows[name][5]) > 0 for name in ("conv1", "fc7"))  # PyTorch's forward time of those layers
    picture = np.asarray(Image.open(png).convert("RGB")).astype(int)
    orange = (picture[..., 0] > 200) & (picture[..., 1] > 100) & (picture[..., 1] < 160) & (picture[..., 2] < 80)
    assert orange.sum() > 100 and blue_pixels(png) > 500


def test_the_clock_charges_calls_in_network_order_and_refuses_another_order():
    clock = LayerClock(LAYERS[:2], "cpu")  # conv1, relu1
    for name, seconds in [("conv2d_forward", 1.0), ("relu_forward", 2.0), ("softmax_cross_entropy", 3.0),
                          ("softmax_cross_entropy_backward", 4.0), ("relu_backward", 5.0), ("conv2d_backward", 6.0),
                          ("sgd_momentum_update", 7.0)]:  # fmt: skip
        clock.calls.append((name, seconds))
    clock.end_step()
    assert clock.steps[0] == {("forward", "conv1"): 1.0, ("forward", "relu1"): 2.0, ("forward", "loss"): 3.0,
                              ("backward", "loss"): 4.0, ("backward", "relu1"): 5.0, ("backward", "conv1"): 6.0,
                              ("forward", "sgd"): 7.0}  # fmt: skip
    assert medians(clock.steps * 3, skip=1)[("backward", "conv1")] == pytest.approx(6000.0)
    clock.calls = [("relu_forward", 1.0)]
    with pytest.raises(RuntimeError, match="not the network's"):
        clock.end_step()


@pytest.mark.parametrize("argv, message", [
    (["--batch", "0"], "--batch must be at least 1, got 0"),
    (["--input-size", "50"], "--input-size must be at least 67, got 50"),
    (["--steps", "0"], "--steps must be at least 1, got 0"),
])  # fmt: skip
def test_argument_errors_are_one_line(capsys, argv, message):
    assert main(["profile", *argv]) == 2
    assert capsys.readouterr().err.strip() == f"refnet profile: error: {message}"
