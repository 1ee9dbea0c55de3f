"""Train an MLP digitally with dual propagation, equilibrium propagation or back-propagation.

    python -m sims.train --algo dp --dataset fashion-mnist --layers 784-256-10 --epochs 10 \\
        --json /tmp/dp.json

Shows a progress bar per epoch, prints a summary table, and optionally writes the figures as
JSON. Every argument is checked before any data is loaded or any training starts; bad input
ends the run with exit status 2 and a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from sims.cli import (EXIT_FAILED, EXIT_STATUS_HELP, OVERWRITE_POLICY, OneLineParser, UsageError,
                      add_version_option, check_outputs, command_line, finite_float, layer_sizes,
                      non_negative_int, positive_float, positive_int, print_error, require, run_command,
                      unit_interval_float)

PROG = "sims.train"
DEFAULT_BETA = {"dp": 0.05, "ep": 0.2}
DEFAULT_HIDDEN_WIDTH = 256


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows '(default: X)' for every option that has a default and does not describe it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default is None or action.default is argparse.SUPPRESS
                or action.default is False or "default" in text):
            return text
        return f"{text} (default: %(default)s)".lstrip()


def momentum_float(text: str) -> float:
    """SGD momentum, a number in [0, 1)."""
    return require(finite_float(text), text, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Train a multilayer perceptron with dual propagation (dp), equilibrium "
                    "propagation (ep) or back-propagation (bp) on digits, Fashion-MNIST or "
                    "MNIST, and report accuracies and seconds per epoch.",
        formatter_class=HelpFormatter,
        epilog=f"{EXIT_STATUS_HELP} {OVERWRITE_POLICY} Example: python -m sims.train --algo dp "
               "--dataset fashion-mnist --layers 784-256-10 --epochs 10 --json /tmp/dp.json")
    add_version_option(parser)
    algo = parser.add_argument_group("learning rule")
    algo.add_argument("--algo", choices=("dp", "ep", "bp"), default="dp",
                      help="dual propagation, equilibrium propagation or back-propagation")
    algo.add_argument("--variant", choices=("dp", "dpT"), default="dp",
                      help="DP variant: dp (2023) or dpT (adjoint, 2024; stable for any alpha)")
    algo.add_argument("--alpha", type=unit_interval_float, default=0.5,
                      help="DP dyad mean weight: mean = alpha*s+ + (1-alpha)*s-")
    algo.add_argument("--beta", type=positive_float, default=None,
                      help=f"nudge strength (default: {DEFAULT_BETA['dp']} for dp, "
                           f"{DEFAULT_BETA['ep']} for ep; EP needs beta < 1; unused by bp)")
    algo.add_argument("--sweeps", type=positive_int, default=1,
                      help="DP closed-form layerwise sweeps per batch")
    algo.add_argument("--free-steps", type=positive_int, default=30,
                      help="EP free-phase relaxation steps (even/odd layer updates)")
    algo.add_argument("--nudged-steps", type=positive_int, default=10,
                      help="EP steps of each nudged phase")
    algo.add_argument("--centered", action=argparse.BooleanOptionalAction, default=False,
                      help="centered EP: nudged phases at +beta and -beta, contrast / 2beta "
                           "(default: off, one-sided: free and +beta, contrast / beta)")

    model = parser.add_argument_group("network")
    model.add_argument("--layers", type=layer_sizes, default=None,
                       help="layer sizes input-hidden...-output, e.g. 784-256-10; the input "
                            "and output sizes must match the dataset (digits: 64 features, "
                            f"10 classes). Default: INPUT-{DEFAULT_HIDDEN_WIDTH}-CLASSES of "
                            "the dataset")
    model.add_argument("--activation", choices=("hardsigmoid", "relu"), default="hardsigmoid",
                       help="hidden activation (hardsigmoid = clip(u, 0, 1), the circuit's)")
    model.add_argument("--loss", choices=("mse", "ce"), default="ce",
                       help="squared error or softmax cross-entropy on the linear output")
    model.add_argument("--init", choices=("glorot", "kaiming"), default="glorot",
                       help="uniform weight initialisation (biases start at zero)")
    model.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                       help="floating-point precision of data, parameters and states")

    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=positive_int, default=10,
                          help="passes over the training set")
    training.add_argument("--batch-size", type=positive_int, default=100,
                          help="examples per learning step (the last batch may be smaller)")
    training.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate")
    training.add_argument("--optimizer", choices=("sgd", "adam"), default="adam",
                          help="SGD with momentum, or Adam")
    training.add_argument("--momentum", type=momentum_float, default=0.9,
                          help="SGD momentum (unused by adam)")
    training.add_argument("--seed", type=non_negative_int, default=0,
                          help="seeds the initialisation and the order of examples")

    data = parser.add_argument_group("data and output")
    data.add_argument("--dataset", choices=("digits", "fashion-mnist", "mnist"), default="digits",
                      help="digits is bundled with scikit-learn; fashion-mnist is read from "
                           "/usr/share/datasets/fashion-mnist unless --data-dir is given; "
                           "mnist needs --data-dir")
    data.add_argument("--data-dir", default=None,
                      help="directory with the four IDX files (train/t10k images/labels, raw "
                           "or .gz)")
    data.add_argument("--split-seed", type=non_negative_int, default=0,
                      help="seed of the validation split (10%% of the training set), kept "
                           "apart from --seed so that runs with different seeds see the "
                           "same training examples")
    data.add_argument("--json", metavar="PATH", default=None,
                      help="write the run's settings and figures to this JSON file")
    data.add_argument("--blas-threads", type=non_negative_int, default=1,
                      help="threads for BLAS matrix products (0: the library's default). "
                           "Batch-sized products gain little from more, and on a shared "
                           "machine extra BLAS threads spin against other jobs")
    data.add_argument("--save-weights", metavar="PATH.npz", default=None,
                      help="write the trained network (weight_k, bias_k per layer, and the run's "
                           "settings) for sims.crossbar --weights")
    data.add_argument("--force", action="store_true", help="replace existing output files")
    data.add_argument("--no-progress", action="store_true",
                      help="hide the per-epoch progress bars (stderr)")
    return parser


def check_arguments(parser: OneLineParser, args: argparse.Namespace) -> None:
    """Checks that need more than one argument, or the file system; all before any work."""
    args.layer_sizes = args.layers
    if args.beta is None:
        args.beta = DEFAULT_BETA.get(args.algo)
    if args.algo == "ep" and args.beta >= 1.0:
        parser.error(f"argument --beta: EP needs beta < 1 (the -beta output solve becomes "
                     f"unstable), got {args.beta}")
    if args.data_dir is not None and args.dataset == "digits":
        parser.error("argument --data-dir: digits is bundled with scikit-learn and reads no "
                     "directory; --data-dir applies to fashion-mnist and mnist")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        what = "is not a directory" if Path(args.data_dir).exists() else "does not exist"
        parser.error(f"argument --data-dir: {args.data_dir} {what}")
    if args.dataset == "mnist" and args.data_dir is None:
        parser.error("--dataset mnist needs --data-dir DIR with the four MNIST IDX files")
    try:
        check_outputs({"--json": args.json, "--save-weights": args.save_weights}, force=args.force,
                      suffixes={"--save-weights": (".npz",)})
    except UsageError as error:
        parser.error(str(error))


def make_classifier(args):
    from analogdp.digital.train import CLASSIFIERS

    common = dict(hidden_sizes=args.layer_sizes[1:-1], activation=args.activation,
                  loss=args.loss, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                  batch_size=args.batch_size, epochs=args.epochs, seed=args.seed,
                  init=args.init, dtype=args.dtype)
    if args.algo == "dp":
        return CLASSIFIERS["dp"](variant=args.variant, alpha=args.alpha, beta=args.beta,
                                 sweeps=args.sweeps, **common)
    if args.algo == "ep":
        return CLASSIFIERS["ep"](beta=args.beta, free_steps=args.free_steps,
                                 nudged_steps=args.nudged_steps, centered=args.centered, **common)
    return CLASSIFIERS["bp"](**common)


def rule_description(args) -> str:
    if args.algo == "dp":
        return (f"dp (variant {args.variant}, alpha {args.alpha:g}, beta {args.beta:g}, "
                f"{args.sweeps} sweep{'s' if args.sweeps > 1 else ''})")
    if args.algo == "ep":
        kind = "centered" if args.centered else "one-sided"
        return (f"ep ({kind}, beta {args.beta:g}, {args.free_steps} free + "
                f"{'2x' if args.centered else ''}{args.nudged_steps} nudged steps)")
    return "bp"


def summary_table(args, data, history, figures) -> str:
    rows = [
        ("learning rule", rule_description(args)),
        ("dataset", f"{data.name}: {len(data.y_train)} train / {len(data.y_val)} val / "
                    f"{len(data.y_test)} test"),
        ("network", f"{'-'.join(map(str, args.layer_sizes))}, {args.activation}, "
                    f"{args.loss} loss, {args.dtype}"),
        ("optimiser", f"{args.optimizer}, lr {args.lr:g}, batch {args.batch_size}, "
                      f"{args.epochs} epochs, seed {args.seed}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{PROG} summary"] + [f"  {name:<{width}}  {value}" for name, value in rows]
    lines.append("")
    lines.append(f"  {'epoch':>5}  {'seconds':>8}  {'train loss':>10}  {'train acc':>9}  {'val acc':>7}")
    for record in history:
        val = record.get("val_accuracy")
        lines.append(f"  {record['epoch']:>5}  {record['seconds']:>8.2f}  "
                     f"{record['train_loss_running']:>10.4f}  "
                     f"{record['train_accuracy_running']:>9.4f}  "
                     f"{'-' if val is None else format(val, '.4f'):>7}")
    lines.append("")
    lines.append(f"  {'accuracy':>9}  train {figures['train_accuracy']:.4f}   "
                 f"val {_fmt(figures['val_accuracy'])}   test {figures['test_accuracy']:.4f}")
    lines.append(f"  {'time':>9}  {figures['seconds_per_epoch']:.2f} s per epoch (median), "
                 f"{figures['total_seconds']:.1f} s in all")
    lines.append("  (train loss/acc per epoch: running means over the batches, each taken "
                 "before its update; val acc: after the epoch; accuracy line: final network)")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def run(args) -> dict:
    """Load data, train, evaluate; returns the JSON record (raises DataError, ValueError)."""
    import numpy as np
    from tqdm import tqdm

    from analogdp.data import load_dataset

    started = time.perf_counter()
    data = load_dataset(args.dataset, data_dir=args.data_dir, seed=args.split_seed,
                        dtype=np.dtype(args.dtype))
    if args.layer_sizes is None:
        args.layer_sizes = (data.n_features, DEFAULT_HIDDEN_WIDTH, data.n_classes)
    if args.layer_sizes[0] != data.n_features or args.layer_sizes[-1] != data.n_classes:
        raise ValueError(
            f"argument --layers: {'-'.join(map(str, args.layer_sizes))} does not fit "
            f"{data.name}, which has {data.n_features} input features and {data.n_classes} "
            f"classes (use {data.n_features}-...-{data.n_classes})")
    classifier = make_classifier(args)
    args.classifier = classifier
    bars = {}

    def on_epoch_start(epoch):
        bar = tqdm(total=len(data.y_train), desc=f"{args.algo} epoch {epoch}/{args.epochs}",
                   unit="ex", disable=args.no_progress, leave=True, file=sys.stderr,
                   dynamic_ncols=True, mininterval=0.5)
        bars["current"] = bar
        return bar.update

    def on_epoch_end(record):
        bar = bars.pop("current")
        postfix = {"loss": f"{record['train_loss_running']:.4f}"}
        if "val_accuracy" in record:
            postfix["val_acc"] = f"{record['val_accuracy']:.4f}"
        bar.set_postfix(postfix)
        bar.close()

    classifier.fit(data.x_train, data.y_train, data.x_val, data.y_val,
                   on_epoch_start=on_epoch_start, on_epoch_end=on_epoch_end)
    history = classifier.history_
    seconds = [record["seconds"] for record in history]
    figures = {
        "train_accuracy": classifier.score(data.x_train, data.y_train),
        "val_accuracy": classifier.score(data.x_val, data.y_val) if len(data.y_val) else None,
        "test_accuracy": classifier.score(data.x_test, data.y_test),
        "seconds_per_epoch": statistics.median(seconds),
        "total_seconds": time.perf_counter() - started,
    }
    print(summary_table(args, data, history, figures), flush=True)
    is_dp, is_ep = args.algo == "dp", args.algo == "ep"
    return {
        "algo": args.algo,
        "variant": args.variant if is_dp else None,
        "alpha": args.alpha if is_dp else None,
        "beta": args.beta if (is_dp or is_ep) else None,
        "sweeps": args.sweeps if is_dp else None,
        "centered": args.centered if is_ep else None,
        "free_steps": args.free_steps if is_ep else None,
        "nudged_steps": args.nudged_steps if is_ep else None,
        "dataset": data.name,
        "data_source": data.source,
        "n_train": int(len(data.y_train)), "n_val": int(len(data.y_val)),
        "n_test": int(len(data.y_test)),
        "layers": list(args.layer_sizes),
        "activation": args.activation, "loss": args.loss, "init": args.init,
        "dtype": args.dtype,
        "optimizer": args.optimizer, "lr": args.lr,
        "momentum": args.momentum if args.optimizer == "sgd" else None,
        "batch_size": args.batch_size, "epochs": args.epochs, "seed": args.seed,
        "split_seed": args.split_seed, "blas_threads": args.blas_threads,
        **figures,
        "seconds_each_epoch": seconds,
        "history": history,
        "command": " ".join([f"python -m {PROG}"] + list(args.argv)),
        "host": {"python": platform.python_version(), "machine": platform.machine(),
                 "cpus": os.cpu_count()},
    }


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    check_arguments(parser, args)
    return run_command(PROG, lambda: _run(parser, args))


def _run(parser, args) -> int:
    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    from analogdp.data import DataError
    from analogdp.digital.train import TrainingDiverged
    from analogdp.report import provenance, write_json, write_npz

    record_provenance = provenance(command_line(f"python -m {PROG}", args.argv))
    limit = (threadpool_limits(limits=args.blas_threads, user_api="blas") if args.blas_threads
             else nullcontext())
    try:
        with limit:
            record = run(args)
    except (DataError, ValueError) as error:
        parser.error(str(error))
    except TrainingDiverged as error:
        print_error(PROG, error)
        return EXIT_FAILED
    except MemoryError:
        print_error(PROG, f"not enough memory for layers {'-'.join(map(str, args.layer_sizes))} "
                          f"with batch size {args.batch_size}")
        return EXIT_FAILED
    if args.json is not None:
        record["provenance"] = record_provenance
        try:
            write_json(args.json, record)
        except OSError as error:
            print_error(PROG, f"cannot write --json {args.json}: {error.strerror or error}")
            return EXIT_FAILED
        print(f"wrote {args.json}")
    if args.save_weights is not None:
        write_npz(args.save_weights, weight_arrays(args.classifier, record))
        print(f"wrote {args.save_weights}")
    return 0


def weight_arrays(classifier, record: dict) -> dict:
    """The trained network as sims.crossbar --weights reads it (the names --dump uses)."""
    import numpy as np

    from analogdp.units import jsonable

    network = classifier.network_
    arrays = {"params_json": np.array(json.dumps(jsonable({k: v for k, v in record.items() if k != "history"})))}
    for k, (weight, bias) in enumerate(zip(network.weights, network.biases)):
        arrays[f"weight_{k}"] = np.asarray(weight, dtype=np.float64)
        arrays[f"bias_{k}"] = np.asarray(bias, dtype=np.float64)
    return arrays


if __name__ == "__main__":
    sys.exit(main())
