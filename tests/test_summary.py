"""`refnet summary`: the per-layer table and the paper's parameter counts, without allocating the net."""

import re

import pytest

from refnet.cli import main


def run_summary(capsys, *args):
    code = main(["summary", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_row(out, layer):
    line = next(line for line in out.splitlines() if line.split()[:1] == [layer])
    return line


@pytest.mark.parametrize("variant, params", [("seed", "62,378,344"), ("paper", "60,965,224")])
def test_prints_the_papers_parameter_counts(capsys, variant, params):
    code, out, _ = run_summary(capsys, "--variant", variant)
    assert code == 0
    assert f"parameters: {params}" in out
    assert table_row(out, "total").split()[1] == params


def test_rows_show_output_shape_parameters_and_multiply_adds(capsys):
    code, out, _ = run_summary(capsys)
    assert code == 0
    # conv1: 96 filters 3x11x11 + 96 biases; 55x55 outputs of 363 multiply-adds each
    assert table_row(out, "conv1").split()[-3:] == ["96x55x55", "34,944", f"{96 * 363 * 55 * 55:,}"]
    assert table_row(out, "pool5").split()[-3:] == ["256x6x6", "-", "-"]
    assert table_row(out, "fc6").split()[-3:] == ["4096", f"{9216 * 4096 + 4096:,}", f"{9216 * 4096:,}"]
    assert table_row(out, "fc8").split()[-3:] == ["1000", "4,097,000", "4,096,000"]
    madds = int(re.search(r"multiply-adds per image \(forward\): ([\d,]+)", out).group(1).replace(",", ""))
    assert madds == 1_135_256_096


def test_paper_variant_groups_halve_the_grouped_layers(capsys):
    _, out, _ = run_summary(capsys, "--variant", "paper")
    assert "groups 2" in table_row(out, "conv2")
    assert table_row(out, "conv2").split()[-2] == f"{256 * 48 * 25 + 256:,}"
    assert "groups" not in table_row(out, "conv3")


def test_input_size_and_num_classes(capsys):
    code, out, _ = run_summary(capsys, "--input-size", "67", "--num-classes", "10")
    assert code == 0
    assert table_row(out, "pool5").split()[-3] == "256x1x1"
    assert table_row(out, "fc8").split()[-3:] == ["10", "40,970", "40,960"]


def test_too_small_input_size_is_a_clear_error(capsys):
    code, out, err = run_summary(capsys, "--input-size", "66")
    assert code == 2
    assert out == ""
    assert "input_size" in err and "pool5" in err and "67" in err


@pytest.mark.parametrize("variant, order, stage", [("seed", "pool-lrn", "conv -> relu -> maxpool -> lrn"),
                                                   ("paper", "lrn-pool", "conv -> relu -> lrn -> maxpool")])
def test_the_layer_order_is_shown(capsys, variant, order, stage):
    _, out, _ = run_summary(capsys, "--variant", variant)
    assert f"layer order {order}: layers 1-2 run {stage}" in out
    names = [line.split()[0] for line in out.splitlines()[4:9]]
    middle = ["pool1", "norm1"] if order == "pool-lrn" else ["norm1", "pool1"]
    assert names == ["conv1", "relu1", *middle, "conv2"]
    assert table_row(out, "norm1").split()[-3] == ("96x27x27" if order == "pool-lrn" else "96x55x55")
