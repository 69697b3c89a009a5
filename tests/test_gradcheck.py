"""`refnet gradcheck`: passes on the kernels as they are, and catches a 1% error in any one layer's backward."""

import numpy as np
import pytest

import refnet.ops
from refnet.cli import main
from refnet.gradcheck import TOLERANCE, GradientCheck, relative_error

BREAK = np.float32(1.01)


@pytest.fixture(scope="module")
def check():
    """One small point (batch 1, 2 entries per tensor) whose float64 side serves every test."""
    check = GradientCheck(variant="seed", input_size=67, batch=1, num_classes=10, samples=2, seed=0)
    check.numeric_result = check.numeric()
    return check


def _names_up_to(check, layer_name, include_layer):
    """The input and the parameter names of the layers before `layer_name` (and its own with include_layer)."""
    names = ["input"]
    for layer in check.net.layers:
        if layer.name == layer_name and not include_layer:
            break
        names += list(layer.param_shapes)
        if layer.name == layer_name:
            break
    return set(names)


def _break(monkeypatch, op_name, output, when):
    """Scale output number `output` (None: the only output) of refnet.ops.<op_name> by 1.01 on calls where when(args)."""
    original = getattr(refnet.ops, op_name)

    def broken(*args, **kwargs):
        result = original(*args, **kwargs)
        target = result if output is None else result[output]
        if target is not None and when(args):  # None: a dx the caller did not ask for
            target *= BREAK
        return result

    monkeypatch.setattr(refnet.ops, op_name, broken)


def _failing(check):
    report = check.compare(check.analytic(), check.numeric_result)
    return report, {t.name for t in report.tensors if t.error > TOLERANCE}


def test_the_kernels_pass(check):
    report, failing = _failing(check)
    assert failing == set() and report.passed
    assert all(t.checked == 2 and not np.isnan(t.direction_error) for t in report.tensors)
    assert [t.name for t in report.tensors] == ["input", *check.params]
    assert report.worst < TOLERANCE / 10  # float32 against float64: 5e-5 at worst over 20 entries per tensor


def _weight_shape(check, name):
    return check.params[f"{name}.weight"].shape


def _out_shape(check, name):
    return next(layer.out_shape for layer in check.net.layers if layer.name == name)


def _in_shape(check, name):
    return next(layer.in_shape for layer in check.net.layers if layer.name == name)


# (op, output index, which layer's call, tensors expected to fail)
BREAKS = {
    "conv3 dw": ("conv2d_backward", 1, lambda c, a: a[1].shape == _weight_shape(c, "conv3"), lambda c: {"conv3.weight"}),
    "conv4 db": ("conv2d_backward", 2, lambda c, a: a[1].shape == _weight_shape(c, "conv4"), lambda c: {"conv4.bias"}),
    "conv2 dx": ("conv2d_backward", 0, lambda c, a: a[1].shape == _weight_shape(c, "conv2"),
                 lambda c: _names_up_to(c, "conv2", include_layer=False)),
    "conv1 dx": ("conv2d_backward", 0, lambda c, a: a[1].shape == _weight_shape(c, "conv1"), lambda c: {"input"}),
    "fc6 dx": ("linear_backward", 0, lambda c, a: a[1].shape == _weight_shape(c, "fc6"),
               lambda c: _names_up_to(c, "fc6", include_layer=False)),
    "fc7 db": ("linear_backward", 2, lambda c, a: a[1].shape == _weight_shape(c, "fc7"), lambda c: {"fc7.bias"}),
    "fc8 dw": ("linear_backward", 1, lambda c, a: a[1].shape == _weight_shape(c, "fc8"), lambda c: {"fc8.weight"}),
    "relu5": ("relu_backward", None, lambda c, a: a[0].shape[1:] == _out_shape(c, "relu5"),
              lambda c: _names_up_to(c, "conv5", include_layer=True)),
    "pool2": ("maxpool2d_backward", None, lambda c, a: tuple(a[2][1:]) == _in_shape(c, "pool2"),
              lambda c: _names_up_to(c, "conv2", include_layer=True)),
    "norm1": ("lrn_backward", None, lambda c, a: a[0].shape[1:] == _in_shape(c, "norm1"),
              lambda c: _names_up_to(c, "conv1", include_layer=True)),
    "drop7": ("dropout_backward", None, None, lambda c: _names_up_to(c, "fc7", include_layer=True)),
    "softmax": ("softmax_cross_entropy_backward", None, lambda c, a: True,
                lambda c: _names_up_to(c, "fc8", include_layer=True)),
}


@pytest.mark.parametrize("case", list(BREAKS))
def test_a_one_percent_error_in_one_backward_is_caught_where_it_acts(check, monkeypatch, case):
    op, output, when, expected = BREAKS[case]
    if case == "drop7":  # both dropout layers have 4096 features: break the first call (the backward's drop7) only
        calls = []
        when = lambda c, a: calls.append(1) or len(calls) == 1  # noqa: E731
    _break(monkeypatch, op, output, lambda args: when(check, args))
    report, failing = _failing(check)
    assert not report.passed
    assert failing == expected(check)


def test_relative_error_uses_the_floor_for_zero_gradients():
    assert relative_error(0.0, 0.0, 0.0) == 0.0
    assert relative_error(0.0, 1e-12, 1e-6) == pytest.approx(1e-6)
    assert relative_error(1.0, 1.01, 1e-6) == pytest.approx(0.01 / 1.01)


def test_kink_crossings_are_redrawn_and_counted(check):
    """A step so large that it moves pooling winners: those entries are redrawn and counted, not compared."""
    name, layer_index, values = check.tensors()[0]
    eps = 10 * float(np.abs(values).max())
    entries = range(0, values.size, values.size // 3)
    crossed = sum(check._entry_derivative(name, layer_index, values, flat, eps) is None for flat in entries)
    assert crossed > 0
    assert np.array_equal(values, check.twin.x)  # restored after every perturbation


def test_cli_fails_with_status_1_on_a_broken_backward(monkeypatch, capsys):
    _break(monkeypatch, "softmax_cross_entropy_backward", None, lambda args: True)
    status = main(["gradcheck", "--variant", "paper", "--batch", "1", "--samples", "1"])
    out = capsys.readouterr().out
    assert status == 1
    assert "FAIL: worst relative error" in out and "tolerance 1e-03" in out
    for name in ("input", "conv2.weight", "conv4.weight", "fc8.bias"):
        assert f"\n{name} " in out


@pytest.mark.parametrize("argv, message", [
    (["--samples", "0"], "--samples must be at least 1, got 0"),
    (["--input-size", "40"], "--input-size must be at least 67, got 40"),
    (["--batch", "0"], "--batch must be at least 1, got 0"),
])  # fmt: skip
def test_cli_argument_errors_are_one_line(argv, message, capsys):
    assert main(["gradcheck", *argv]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"refnet gradcheck: error: {message}"
