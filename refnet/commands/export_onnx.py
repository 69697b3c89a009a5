"""Export a checkpoint as an ONNX graph: `refnet export --checkpoint CKPT --onnx OUT.onnx [--opset N]`.

The graph computes the logits (no softmax) with standard operators only (Conv, Relu, LRN, MaxPool,
Flatten, Gemm, Dropout), so onnxruntime and other runtimes read it; refnet/onnx_io.py says how
LRN's alpha and the dropout convention are converted. The checkpoint's network, preprocessing and
class records travel as metadata, so `refnet import` of the file gives the checkpoint back.
"""

import os
import sys

DEFAULT_OPSET = 12  # the newest the model zoo's bvlcalexnet comes in


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="a refnet checkpoint")
    parser.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                        help=f"ONNX opset to write (default {DEFAULT_OPSET}, at least 9)")  # fmt: skip


def run(args) -> int:
    from ..checkpoint import CheckpointError, load_checkpoint
    from ..onnx_io import OnnxError, alexnet_to_onnx, opset_range

    tmp = f"{args.onnx}.tmp-{os.getpid()}"
    try:
        low, high = opset_range()
        if not low <= args.opset <= high:
            raise ValueError(f"--opset: expected {low} to {high}, got {args.opset}")
        ckpt = load_checkpoint(args.checkpoint)
        model = alexnet_to_onnx(ckpt.network, ckpt.params, opset=args.opset, preprocessing=ckpt.preprocessing,
                                classes=list(ckpt.classes) or None)  # fmt: skip
        with open(tmp, "wb") as f:
            f.write(model.SerializeToString())
        os.replace(tmp, args.onnx)
    except (CheckpointError, OnnxError, ValueError, OSError) as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        print(f"refnet export: error: {exc}", file=sys.stderr)
        return 2
    network = ckpt.network
    print(f"wrote {args.onnx}: opset {args.opset}, AlexNet variant {network['variant']}, order {network['order']}, "
          f"input (N, 3, {network['input_size']}, {network['input_size']}), output logits (N, {network['num_classes']})")
    return 0
