"""The `refnet` command: one entry point, one module per subcommand.

Each subcommand module defines `add_arguments(parser)` and `run(args) -> int`, and keeps heavy
imports (numba, h5py, torch) inside `run`, so that `refnet --help` answers at once.
"""

import argparse
import importlib
import sys

# name -> (module, one-line help)
SUBCOMMANDS = {
    "summary": ("refnet.commands.summary", "print AlexNet's per-layer table: output shapes, parameters, multiply-adds"),
    "convert": ("data_tools.convert", "convert an ImageNet-style image folder into HDF5 shards"),
    "inspect": ("data_tools.inspect", "describe (and verify) a converted dataset; contact sheet PNG"),
    "train": ("refnet.commands.train", "train AlexNet on converted shards with the paper's recipe"),
    "eval": ("refnet.commands.eval", "top-1/top-5 error of a checkpoint, centre crop and 10-crop"),
    "predict": ("refnet.commands.predict", "top-5 classes of image files with a checkpoint"),
    "import": ("refnet.commands.import_onnx", "read an ONNX AlexNet (e.g. the model zoo's bvlcalexnet) into a checkpoint"),
    "export": ("refnet.commands.export_onnx", "write a checkpoint as an ONNX graph"),
    "plot": ("refnet.commands.plot", "draw a run's loss and error curves to RUN_DIR/curves.png"),
    "demo": ("refnet.commands.demo", "end-to-end demo on generated sample images (what `make demo` runs)"),
    "filters": ("refnet.commands.filters", "draw a layer's kernels as a grid PNG (the paper's Figure 3 for conv1)"),
    "neighbors": ("refnet.commands.neighbors", "nearest training images of query images in a layer's features (paper Figure 4)"),
    "gradcheck": ("refnet.commands.gradcheck", "float32 analytic gradients of the whole network against float64 central differences"),
    "profile": ("refnet.commands.profile", "time every layer's forward and backward inside one training step (PNG chart)"),
    "bench": ("bench.cli", "benchmark every op and a training step against peer libraries"),
    "sass": ("refnet.commands.sass", "compile every CUDA kernel at AlexNet's shapes and read its machine code (no GPU)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refnet",
        description="refnet: a hand-written Numba reference implementation of AlexNet (Krizhevsky et al., 2012).",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"refnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip().splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
