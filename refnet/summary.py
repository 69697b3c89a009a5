"""AlexNet's per-layer table: output shapes, parameters and multiply-adds, with totals.

The table comes from the layer specs alone: nothing is allocated and no kernel is compiled, so
`refnet summary` (refnet/commands/summary.py) and AlexNet.summary() answer at once.
"""


def _shape_text(shape):
    return "x".join(str(s) for s in shape)


def stage_text(layers):
    """Layers 1-2's order as written in the table, e.g. "conv -> relu -> lrn -> maxpool"."""
    kinds = [layer.kind for layer in layers]
    return " -> ".join(kinds[: kinds.index("conv", 1)])


def format_summary(layers, variant, input_size, order):
    """The table of `layers` (as built by refnet.model.build_layers) as one string."""
    rows = [("layer", "operation", "output (CxHxW)", "parameters", "multiply-adds")]
    for layer in layers:
        params = f"{layer.param_count:,}" if layer.has_params else "-"
        madds = f"{layer.multiply_adds:,}" if layer.has_params else "-"
        rows.append((layer.name, layer.describe(), _shape_text(layer.out_shape), params, madds))
    total_params = sum(layer.param_count for layer in layers)
    total_madds = sum(layer.multiply_adds for layer in layers)
    rows.append(("total", "", "", f"{total_params:,}", f"{total_madds:,}"))

    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    aligns = ("<", "<", "<", ">", ">")

    def line(row):
        return "  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(row, aligns, widths)).rstrip()

    rule = "-" * len(line(rows[0]))
    classes = layers[-1].out_shape[0]
    header = f"AlexNet, variant {variant}: input 3x{input_size}x{input_size}, {classes} classes"
    order_line = f"layer order {order}: layers 1-2 run {stage_text(layers)}"
    body = [header, order_line, line(rows[0]), rule, *(line(row) for row in rows[1:-1]), rule, line(rows[-1])]
    body.append(f"parameters: {total_params:,}")
    body.append(f"multiply-adds per image (forward): {total_madds:,}")
    return "\n".join(body)
