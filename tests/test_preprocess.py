"""refnet.preprocess: a checkpoint's input convention, applied through the reader's kernel, against
the formula x[c] = (p[src(c)] - M[src(c)]) * pixel_max / 255 written by hand."""

import numpy as np
import pytest

from refnet.commands.predict import network_inputs
from refnet.preprocess import Preprocessing, parse_mean

S, CROP = 12, 9


def by_hand(images, mean_rgb_image, channels, pixel_max):
    mid = (S - CROP) // 2
    window = (slice(None), slice(mid, mid + CROP), slice(mid, mid + CROP))
    x = images[window].astype(np.float64) - mean_rgb_image[window[1:]]
    x = x.transpose(0, 3, 1, 2)
    if channels == "BGR":
        x = x[:, ::-1]
    return x * pixel_max / 255.0


@pytest.mark.parametrize("channels", ["RGB", "BGR"])
@pytest.mark.parametrize("pixel_max", [255.0, 1.0])
@pytest.mark.parametrize("mean", ["image", (104.0, 117.0, 123.0)])
def test_network_inputs_follow_the_formula(channels, pixel_max, mean):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, S, S, 3), dtype=np.uint8)
    data_mean = rng.uniform(0, 255, (S, S, 3)).astype(np.float32)
    if mean != "image":
        mean = tuple(v * pixel_max / 255.0 for v in mean)  # in the network's pixel units
    pre = Preprocessing(crop=CROP, resize=S, channels=channels, pixel_max=pixel_max, mean=mean)
    x = network_inputs(images, pre.reader_mean_image(S, data_mean), CROP, pre)
    if mean == "image":
        mean_rgb = data_mean.astype(np.float64)
    else:  # given in the network's channel order and units: back to RGB 0-255
        in_order = np.array(mean) * 255.0 / pixel_max
        mean_rgb = np.broadcast_to(in_order[::-1] if channels == "BGR" else in_order, (S, S, 3))
    assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape == (3, 3, CROP, CROP)
    np.testing.assert_allclose(x, by_hand(images, mean_rgb, channels, pixel_max), rtol=1e-6, atol=1e-4 * pixel_max / 255)


def test_record_round_trip_and_refusals():
    pre = Preprocessing(crop=227, resize=256, channels="BGR", mean=(104, 117, 123))
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    assert pre.to_dict()["mean"] == [104.0, 117.0, 123.0]
    for bad, message in (
        (dict(channels="BRG"), "channels"),
        (dict(pixel_max=2.0), "pixel_max"),
        (dict(mean=(1, 2)), "mean"),
        (dict(crop=300), "crop: expected at most resize"),
    ):
        with pytest.raises(ValueError, match=message):
            Preprocessing(**{"crop": 227, "resize": 256, **bad})
    with pytest.raises(ValueError, match="expected a record with keys"):
        Preprocessing.from_dict({"crop": 227})
    with pytest.raises(ValueError, match="the mean image, none was given"):
        Preprocessing(crop=9, resize=12).reader_mean_image(12)
    assert parse_mean("104,117,123") == (104.0, 117.0, 123.0)
    with pytest.raises(ValueError, match="--mean"):
        parse_mean("104,117")
