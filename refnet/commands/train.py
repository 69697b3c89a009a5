"""Train AlexNet on converted shards: `refnet train --data OUT --run RUN_DIR [--device cpu|cuda]`.

The defaults are the paper's recipe: batch 128, SGD with momentum 0.9 and weight decay 0.0005,
lr 0.01 divided by 10 when the validation error stops improving (at most 3 times; or at the
epochs given by --lr-steps), 90 epochs, random 227 crops with flips and PCA colour noise, mean
image subtracted, dropout 0.5, weights N(0, 0.01). The same command on an existing RUN_DIR
resumes it exactly where its latest checkpoint left off. See refnet/trainer.py for the loop.
"""

import sys


def _epoch_list(text):
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated epoch numbers like 30,60,80, got {text!r}") from None
    if any(s < 1 for s in steps):
        raise ValueError(f"epoch numbers must be >= 1, got {text!r}")
    return steps


def add_arguments(parser):
    import argparse

    def epochs_arg(text):
        try:
            return _epoch_list(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parser.add_argument("--data", required=True, metavar="OUT", help="a directory written by `refnet convert`")
    parser.add_argument("--run", required=True, metavar="RUN_DIR", help="where checkpoints, metrics.jsonl and config.json go")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--variant", default="seed", choices=("seed", "paper"),
                        help="seed: the seed's table (max-pool before LRN); paper: groups=2 in conv2/4/5 and LRN "
                             "before max-pool (section 3.5)")
    parser.add_argument("--order", default=None, choices=("pool-lrn", "lrn-pool"),
                        help="override the variant's max-pool/LRN order in layers 1-2 (e.g. to continue a "
                             "format-1 paper checkpoint, trained in the order pool-lrn)")
    parser.add_argument("--input-size", type=int, default=227, help="crop size fed to the network (default: 227)")
    parser.add_argument("--epochs", type=int, default=90, help="total epochs (default: 90)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per step (default: 128)")
    parser.add_argument("--lr", type=float, default=0.01, help="initial learning rate (default: 0.01)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay (default: 0.0005)")
    parser.add_argument("--dropout", type=float, default=0.5, help="dropout probability in fc6/fc7 (default: 0.5)")
    parser.add_argument("--init", default="paper", choices=("paper", "scaled"),
                        help="paper: weights N(0, 0.01), biases 0/1 (default); scaled: He-scaled weights, zero "
                             "biases, for short runs (see refnet/trainer.py scaled_init)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the init, data order, augmentation and dropout")
    parser.add_argument("--workers", type=int, default=0, help="threads for kernels and data (default: all cores)")
    parser.add_argument("--lr-steps", type=epochs_arg, default=[], metavar="E1,E2,...",
                        help="divide lr by 10 after these epochs instead of on a validation plateau")
    parser.add_argument("--plateau-patience", type=int, default=1,
                        help="epochs without val improvement before lr is divided by 10 (default: 1)")
    parser.add_argument("--max-lr-drops", type=int, default=3, help="at most this many lr divisions (default: 3)")
    parser.add_argument("--warmup-epochs", type=float, default=0.0, metavar="W",
                        help="raise lr linearly from lr/steps to lr over the first W epochs' steps (default: 0, "
                             "none, as the paper)")
    parser.add_argument("--save-every", type=int, default=0, metavar="N", help="also save RUN_DIR/latest.h5 every N steps")
    parser.add_argument("--keep", type=int, default=3, metavar="K",
                        help="keep the last K epoch checkpoints (default: 3; 0: none, latest.h5 only when the run ends)")
    parser.add_argument("--log-every", type=int, default=20, metavar="N", help="a metrics.jsonl line every N steps (default: 20)")
    parser.add_argument("--max-steps", type=int, default=0, help="stop (and save) after this many steps in total")
    parser.add_argument("--resume", action="store_true",
                        help="require RUN_DIR/latest.h5 and continue from it (the default whenever it exists)")
    parser.add_argument("--restart", action="store_true", help="ignore an existing RUN_DIR/latest.h5 and start afresh")
    parser.add_argument("--mpi-timeout", type=float, default=600.0, metavar="SECONDS",
                        help="under mpiexec: abort the whole job when a gradient allreduce or another collective "
                             "makes no progress for this long (a rank died or hangs; default: 600)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _check_settings(args):
    positive = {"--input-size": args.input_size, "--epochs": args.epochs, "--batch-size": args.batch_size,
                "--plateau-patience": args.plateau_patience}  # fmt: skip
    for flag, value in positive.items():
        if value < 1:
            raise ValueError(f"{flag}: expected an integer >= 1, got {value}")
    at_least_zero = {"--keep": args.keep, "--workers": args.workers, "--save-every": args.save_every,
                     "--log-every": args.log_every, "--max-steps": args.max_steps, "--max-lr-drops": args.max_lr_drops,
                     "--seed": args.seed}  # fmt: skip
    for flag, value in at_least_zero.items():
        if value < 0:
            raise ValueError(f"{flag}: expected an integer >= 0, got {value}")
    if not args.mpi_timeout > 0:
        raise ValueError(f"--mpi-timeout: expected a number of seconds > 0, got {args.mpi_timeout}")
    if not args.lr > 0:
        raise ValueError(f"--lr: expected a number > 0, got {args.lr}")
    if not 0 <= args.warmup_epochs <= args.epochs:
        raise ValueError(f"--warmup-epochs: expected a number in [0, --epochs], got {args.warmup_epochs}")
    if not 0 <= args.dropout < 1:
        raise ValueError(f"--dropout: expected a probability in [0, 1), got {args.dropout}")
    if args.device not in ("cpu", "cuda"):
        raise ValueError(f"--device: expected cpu or cuda, got {args.device!r}")
    if args.resume and args.restart:
        raise ValueError("--resume and --restart contradict each other")


def resume_hint(args):
    """The command that continues this run: the same one (an existing RUN_DIR resumes by itself)."""
    import shlex

    argv = sys.argv[1:]
    if argv[:1] == ["train"]:
        return "refnet " + " ".join(shlex.quote(a) for a in argv if a != "--restart")
    return f"refnet train --data {shlex.quote(args.data)} --run {shlex.quote(args.run)} (with the same options)"


def run(args) -> int:
    import signal

    from ..trainer import Interrupted, NonFiniteError, TrainConfig, Trainer, TrainError

    try:
        _check_settings(args)
    except ValueError as exc:
        print(f"refnet train: error: {exc}", file=sys.stderr)
        return 2
    cfg = TrainConfig(
        data=args.data, run_dir=args.run, device=args.device, variant=args.variant, order=args.order,
        input_size=args.input_size,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, dropout=args.dropout, init=args.init, seed=args.seed, workers=args.workers,
        lr_steps=args.lr_steps, plateau_patience=args.plateau_patience, max_lr_drops=args.max_lr_drops,
        warmup_epochs=args.warmup_epochs, save_every=args.save_every, keep=args.keep, log_every=args.log_every, max_steps=args.max_steps,
        mpi_timeout_s=args.mpi_timeout, progress=not args.quiet,
    )  # fmt: skip
    resume = True if args.resume else (False if args.restart else None)
    # Under mpiexec every rank ends the same way (they agree on when to stop, and the gradients they
    # check are the same allreduced ones): rank 0 alone says so. Start-up errors can be one rank's own.
    try:
        trainer = Trainer(cfg, resume=resume)
        result = trainer.run()
    except TrainError as exc:
        print(f"refnet train: error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteError as exc:
        latest = f"{args.run}/latest.h5"
        if trainer.world.is_root:
            print(f"refnet train: non-finite values: {exc}. Nothing non-finite was written; the last good checkpoint "
                  f"is {latest} (if one was saved). Try a lower --lr.", file=sys.stderr)  # fmt: skip
        return 1
    except Interrupted as exc:
        if trainer.world.is_root:
            print(f"refnet train: stopped by {signal.Signals(exc.signum).name} after step {trainer.net.step}; saved "
                  f"{trainer.latest_path}. Resume with: {resume_hint(args)}", file=sys.stderr)  # fmt: skip
        return 128 + exc.signum
    if trainer.world.is_root:
        print(f"refnet train: {result['stopped']} at step {result['step']} (epoch {result['epoch']}) in "
              f"{result['wall_seconds']:.1f} s; checkpoint {result['latest']}, metrics {args.run}/metrics.jsonl")
    return 0
