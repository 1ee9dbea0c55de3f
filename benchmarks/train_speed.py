"""Seconds per training epoch of dual propagation against back-propagation, side by side.

Setup (the acceptance setup of the project): Fashion-MNIST, 784-256-10, hard sigmoid,
softmax cross-entropy, Adam, batch 100, DP with variant dp, α = ½, one sweep.

Fairness on a noisy shared machine: the two learners run in lock step, batch by batch, on
the same batch order (DP's step on batch i, then BP's, then DP's on batch i+1, ...; the order
of the pair alternates every batch), and only each learner's own step (gather + update
direction + optimiser) is timed. A burst of background load therefore hits both. An epoch's
figure is the sum of its step times; the report gives the median over epochs. BLAS is limited
to ``--blas-threads`` (default 1), because multi-threaded BLAS on two busy cores measures
thread contention more than arithmetic.

The last line printed is one JSON object with the figures.

    python benchmarks/train_speed.py [--epochs 3] [--dtype float64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analogdp.data import DataError, load_dataset  # noqa: E402
from analogdp.digital.train import BPClassifier, DPClassifier  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="DP vs BP seconds per epoch, measured in lock step in one run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per learner")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=256, help="hidden layer width")
    parser.add_argument("--beta", type=float, default=0.05, help="DP nudge strength")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads (0 leaves the library default)")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.hidden < 1 or args.blas_threads < 0:
        parser.error("--epochs, --batch-size and --hidden must be positive, --blas-threads >= 0")
    return args


def lockstep_epoch(learners: dict, x: np.ndarray, targets: np.ndarray, order: np.ndarray,
                   batch_size: int, first_index: int) -> dict[str, float]:
    """One epoch of every learner on the same batches; returns seconds spent by each."""
    names = list(learners)
    spent = dict.fromkeys(names, 0.0)
    for batch_number, start in enumerate(range(0, len(order), batch_size)):
        batch = order[start:start + batch_size]
        # Alternate who goes first so neither always runs on a cache the other warmed.
        turn = names if (batch_number + first_index) % 2 == 0 else names[::-1]
        for name in turn:
            started = time.perf_counter()
            learners[name].train_step(x[batch], targets[batch])
            spent[name] += time.perf_counter() - started
    return spent


def main(argv=None) -> int:
    args = parse_args(argv)
    limiter = None
    if args.blas_threads:
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(limits=args.blas_threads, user_api="blas")
    try:
        data = load_dataset("fashion-mnist", data_dir=args.data_dir, seed=args.seed,
                            dtype=np.dtype(args.dtype))
    except DataError as error:
        print(f"train_speed: error: {error}", file=sys.stderr)
        return 2
    common = dict(hidden_sizes=(args.hidden,), activation="hardsigmoid", loss="ce",
                  optimizer="adam", lr=1e-3, batch_size=args.batch_size, seed=args.seed,
                  dtype=args.dtype)
    learners = {
        "dp": DPClassifier(variant="dp", alpha=0.5, beta=args.beta, sweeps=1, **common),
        "bp": BPClassifier(**common),
    }
    classes = np.arange(data.n_classes)
    for learner in learners.values():
        learner.initialize(data.x_train.shape[1], classes)
    targets = learners["bp"]._targets(data.y_train)
    rng = np.random.default_rng(args.seed)

    # Warm-up (numba compilation of the optimiser, BLAS buffers, page faults), not timed.
    warm = rng.permutation(len(data.x_train))[:20 * args.batch_size]
    lockstep_epoch(learners, data.x_train, targets, warm, args.batch_size, 0)

    per_epoch = {name: [] for name in learners}
    for epoch in range(args.epochs):
        order = rng.permutation(len(data.x_train))
        spent = lockstep_epoch(learners, data.x_train, targets, order, args.batch_size, epoch)
        for name, seconds in spent.items():
            per_epoch[name].append(seconds)
        print(f"epoch {epoch + 1}: dp {spent['dp']:.3f} s, bp {spent['bp']:.3f} s, "
              f"ratio {spent['dp'] / spent['bp']:.3f}", flush=True)

    accuracy = {name: learner.score(data.x_test, data.y_test) for name, learner in learners.items()}
    dp_seconds = statistics.median(per_epoch["dp"])
    bp_seconds = statistics.median(per_epoch["bp"])
    if limiter is not None:
        limiter.restore_original_limits()
    print(json.dumps({
        "benchmark": "train_speed",
        "dataset": "fashion-mnist", "layers": f"784-{args.hidden}-10",
        "activation": "hardsigmoid", "loss": "ce", "optimizer": "adam",
        "batch_size": args.batch_size, "dtype": args.dtype, "blas_threads": args.blas_threads,
        "epochs": args.epochs, "dp_beta": args.beta,
        "dp_seconds_per_epoch": round(dp_seconds, 4),
        "bp_seconds_per_epoch": round(bp_seconds, 4),
        "ratio_dp_over_bp": round(dp_seconds / bp_seconds, 4),
        "dp_seconds_each_epoch": [round(s, 4) for s in per_epoch["dp"]],
        "bp_seconds_each_epoch": [round(s, 4) for s in per_epoch["bp"]],
        "dp_test_accuracy": round(accuracy["dp"], 4),
        "bp_test_accuracy": round(accuracy["bp"], 4),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
