"""Check the whole network's gradients: `refnet gradcheck [--variant seed|paper] [--samples 20]`.

refnet's float32 backward kernels (the gradients AlexNet.forward_backward writes, and conv1's
input gradient) against central differences of the same network's loss evaluated in float64 by
an oracle written for the checker (refnet/float64_net.py: vectorised numpy, BLAS included; it is
a test instrument and never refnet's compute path). Per tensor: --samples random entries and one
random direction; the worst relative error per tensor is printed; exit status 1 when it is above
the tolerance (refnet/gradcheck.py states why 1e-3). Entries whose perturbation crosses a ReLU
or max-pool kink are redrawn and counted in the table.

--device cuda runs the analytic side (the float32 kernels) on the GPU. Under Numba's CUDA
simulator the whole network would take hours: there, only the op-level checks at tiny shapes
(tests/cuda/) are feasible.
"""

import sys


def add_arguments(parser):
    parser.epilog = ("Analytic: refnet's float32 kernels. Numeric: central differences of the same loss in float64 "
                     "(refnet/float64_net.py, an oracle using numpy/BLAS, never refnet's compute path). Relative "
                     "error per entry and per random direction; tolerance 1e-3 (float32 rounding of a correct "
                     "backward measured 5e-5 at worst, a 1% error in any layer's backward gives 1e-2); exit status 1 "
                     "above it. Entries whose perturbation flips a ReLU or a max-pool winner are redrawn and "
                     "counted in the table. Under NUMBA_ENABLE_CUDASIM the whole network would take hours: only "
                     "the op-level checks of tests/cuda/ are feasible there.")  # fmt: skip
    parser.add_argument("--variant", choices=("seed", "paper"), default="seed",
                        help="seed: one group everywhere; paper: groups=2 in conv2, conv4, conv5 (default: seed)")  # fmt: skip
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the float32 kernels run (the float64 oracle always runs on the CPU); under "
                             "the CUDA simulator only op-level checks at tiny shapes are feasible (default: cpu)")  # fmt: skip
    parser.add_argument("--input-size", type=int, default=67, metavar="N",
                        help="input image side, at least 67 (default: 67, the smallest AlexNet takes)")  # fmt: skip
    parser.add_argument("--batch", type=int, default=2, metavar="N", help="images in the batch (default: 2)")
    parser.add_argument("--num-classes", type=int, default=10, metavar="N", help="fc8's outputs (default: 10)")
    parser.add_argument("--samples", type=int, default=20, metavar="N",
                        help="random entries checked per tensor, plus one random direction (default: 20)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="draws the weights, the batch and the entries (default: 0)")


def run(args) -> int:
    from ..gradcheck import GradientCheck, format_report
    from ..trainer import check_device
    from ._args import below_minimum

    problem = below_minimum((("--input-size", args.input_size, 67), ("--batch", args.batch, 1),
                             ("--num-classes", args.num_classes, 1), ("--samples", args.samples, 1),
                             ("--seed", args.seed, 0)))  # fmt: skip
    if problem:
        print(f"refnet gradcheck: error: {problem}", file=sys.stderr)
        return 2
    try:
        check_device(args.device)
        check = GradientCheck(variant=args.variant, input_size=args.input_size, batch=args.batch,
                              num_classes=args.num_classes, samples=args.samples, seed=args.seed,
                              device=args.device)  # fmt: skip
    except (ValueError, RuntimeError) as exc:
        print(f"refnet gradcheck: error: {exc}", file=sys.stderr)
        return 2
    print(f"AlexNet {args.variant}, input {args.input_size}, batch {args.batch}, {args.num_classes} classes, "
          f"dropout 0.5 (the float32 run's masks in the float64 loss), He-scaled weights, seed {args.seed}; "
          f"analytic: float32 kernels on {args.device}; numeric: float64 central differences", flush=True)  # fmt: skip
    report = check.run()
    print(format_report(report))
    return 0 if report.passed else 1
