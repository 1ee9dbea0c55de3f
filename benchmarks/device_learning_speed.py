"""Warm 784x256 learning runs through non-ideal devices against the ideal device, side by side.

Every configuration is run once to warm up (numba caches, data), then the configurations are
timed in turns (``--repeats`` rounds, ideal and presets interleaved so that machine load hits
all alike); the median wall time of ``run_experiment`` per configuration is reported with its
ratio to the ideal device's. Target: at most 1.5x for a non-ideal preset. The last line is one
JSON object.

    python benchmarks/device_learning_speed.py [--samples 20] [--repeats 3] [--presets rram-gong2018,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

from analogdp.circuit.presets import PRESETS
from analogdp.experiment import ExperimentConfig, load_examples, run_experiment

TARGET_RATIO = 1.5


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--update", default="per-device")
    parser.add_argument("--presets", default=",".join(p for p in PRESETS if p != "ideal"))
    args = parser.parse_args(argv)
    base = ExperimentConfig(layers=(784, 256, 10), samples=args.samples, update=args.update)
    examples = load_examples(base)
    names = ["ideal"] + [p for p in args.presets.split(",") if p and p != "ideal"]
    configs = {name: dataclasses.replace(base, device_model=name) for name in names}
    for config in configs.values():
        run_experiment(dataclasses.replace(config, samples=2), examples=_head(examples, 2))  # warm-up
    times = {name: [] for name in names}
    for _ in range(args.repeats):
        for name, config in configs.items():
            start = time.perf_counter()
            run_experiment(config, examples)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratios = {name: medians[name] / medians["ideal"] for name in names}
    for name in names:
        print(f"{name:20s} {medians[name]:7.2f} s  ({ratios[name]:.2f}x ideal)")
    summary = {"size": "784x256", "samples": args.samples, "update": args.update, "repeats": args.repeats,
               "wall_time_s": medians, "ratio_to_ideal": ratios, "target_ratio": TARGET_RATIO,
               "within_target": {name: ratio <= TARGET_RATIO for name, ratio in ratios.items()}}
    print(json.dumps(summary))
    return summary


def _head(examples, n):
    return dataclasses.replace(examples, inputs=examples.inputs[:n], labels=examples.labels[:n],
                               targets=examples.targets[:n])


if __name__ == "__main__":
    main()
