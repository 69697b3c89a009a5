"""Edge checks shared by the pooling ops (max and average): window, output size, input_shape."""

import numpy as np

from ._checks import check_positive_int


def pooled_shape(x_shape, size, stride, x_name="x"):
    """(N, C, P, Q) for a size x size window moved by stride, no padding; ValueError if P or Q < 1."""
    size = check_positive_int("size", size)
    stride = check_positive_int("stride", stride)
    N, C, H, W = x_shape
    if H < size or W < size:
        raise ValueError(
            f"size: expected a window no larger than the input plane, got size={size} for "
            f"{x_name} of height {H} and width {W} (output size (H - size)//stride + 1 would be < 1)"
        )
    return (N, C, (H - size) // stride + 1, (W - size) // stride + 1)


def check_input_shape(input_shape, dy_shape):
    """input_shape: 4 positive ints (N, C, H, W) with N and C those of dy. Returns it as a tuple."""
    is_int = lambda s: isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_))
    if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 4
            and all(is_int(s) and s >= 1 for s in input_shape)):
        raise ValueError(f"input_shape: expected 4 positive integers (N, C, H, W), got {input_shape!r}")
    shape = tuple(int(s) for s in input_shape)
    if shape[:2] != tuple(dy_shape[:2]):
        raise ValueError(
            f"input_shape: expected (N, C) = {tuple(dy_shape[:2])} to match dy, got {shape[:2]}"
        )
    return shape
