"""One Fashion-MNIST epoch of DP on 784-256-10 with ideal devices: the equilibrium engine (alone,
and with every 100th example also integrated by the ODE) against the ODE engine, side by side.

Each measurement runs in a child process of its own, so that its peak memory (max RSS) is its
own; they run one after another. The ODE engine is timed on a slice of the epoch (a full ODE
epoch takes many minutes); examples per second compare the engines. The last line is one JSON
object.

    python benchmarks/train_epoch_speed.py [--examples N] [--ode-examples 300]

Targets: an epoch with the equilibrium engine in ≤ 60 s (≤ 90 s with --ode-every 100) on 2
cores, peak memory ≤ 1 GB.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import multiprocessing
import resource
import sys
import time
from pathlib import Path

# Run from a checkout: the package next to this script, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(options: dict, queue) -> None:
    from analogdp.experiment import ExperimentConfig
    from analogdp.training import load_training_data, train_on_crossbar

    config = ExperimentConfig(layers=(784, 256, 10), dataset="fashion-mnist", epochs=1, **options)
    warm = dataclasses.replace(config, train_examples=20)
    train_on_crossbar(warm, load_training_data(warm))  # compile / load the numba caches
    gc.collect()  # the warm-up's copy of the dataset goes before the measured one is loaded
    data = load_training_data(config)
    started = time.perf_counter()
    result = train_on_crossbar(config, data)
    wall = time.perf_counter() - started
    record = result.epochs[0]
    queue.put({"examples": record["examples"], "wall_time_s": wall, "examples_per_s": record["examples"] / wall,
               "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "train_loss": record["train_loss"],
               "equilibrium_check_max_dev_v": record.get("equilibrium_check_max_dev_v"),
               "settles_integrated": record["settles_integrated"]})


def run(options: dict) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=measure, args=(options, queue))
    process.start()
    while True:
        try:
            return queue.get(timeout=1.0)
        except Exception:  # queue.Empty: still working, unless the child has died
            if not process.is_alive():
                raise SystemExit(f"the measurement {options} failed (exit status {process.exitcode})") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=None, help="examples of the epoch (default: all 54,000)")
    parser.add_argument("--ode-examples", type=int, default=300, help="examples timed with the ODE engine")
    args = parser.parse_args()
    limit = {} if args.examples is None else {"train_examples": args.examples}
    runs = {
        "equilibrium": run({"settle": "equilibrium", **limit}),
        "equilibrium_ode_every_100": run({"settle": "equilibrium", "ode_every": 100, **limit}),
        "ode": run({"settle": "ode", "train_examples": args.ode_examples}),
    }
    for name, figures in runs.items():
        print(f"{name:28s} {figures['examples']:6d} examples  {figures['wall_time_s']:8.1f} s  "
              f"{figures['examples_per_s']:8.0f} examples/s  peak {figures['peak_memory_mb']:6.0f} MB")
    epoch = 54_000 if args.examples is None else args.examples
    summary = {
        "epoch_examples": epoch,
        "equilibrium_epoch_s": runs["equilibrium"]["wall_time_s"],
        "equilibrium_ode_every_100_epoch_s": runs["equilibrium_ode_every_100"]["wall_time_s"],
        "ode_epoch_estimate_s": epoch / runs["ode"]["examples_per_s"],
        "equilibrium_examples_per_s": runs["equilibrium"]["examples_per_s"],
        "equilibrium_ode_every_100_examples_per_s": runs["equilibrium_ode_every_100"]["examples_per_s"],
        "ode_examples_per_s": runs["ode"]["examples_per_s"],
        "speedup_equilibrium_over_ode": runs["equilibrium"]["examples_per_s"] / runs["ode"]["examples_per_s"],
        "peak_memory_mb": max(r["peak_memory_mb"] for r in runs.values()),
        "equilibrium_check_max_dev_v": runs["equilibrium_ode_every_100"]["equilibrium_check_max_dev_v"],
        "runs": runs,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
