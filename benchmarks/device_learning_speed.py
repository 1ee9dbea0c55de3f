"""Warm 784x256 learning runs through non-ideal devices against the ideal device, side by side.

Every configuration (preset × update scheme) is run once to warm up (numba caches, data, device
populations), then the configurations are timed in turns (``--repeats`` rounds, ideal and
presets interleaved so that machine load hits all alike); the median wall time and the median
CPU time of the process (``time.process_time``, less sensitive to other processes on a shared
machine) of ``run_experiment`` are reported per configuration with their ratios to the ideal
device's run of the same scheme. Target: at most 1.5x for a non-ideal preset. The load average
before and after is recorded. The last line is one JSON object.

    python benchmarks/device_learning_speed.py [--samples 20] [--repeats 3]
        [--update per-device,pulse-coincidence] [--presets rram-gong2018,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # time this checkout, not whichever analogdp is installed
from analogdp.circuit.presets import PRESETS  # noqa: E402
from analogdp.experiment import ExperimentConfig, load_examples, run_experiment  # noqa: E402

TARGET_RATIO = 1.5


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--update", default="per-device,pulse-coincidence",
                        help="update schemes, comma-separated")
    parser.add_argument("--presets", default=",".join(p for p in PRESETS if p != "ideal"))
    args = parser.parse_args(argv)
    schemes = [u for u in args.update.split(",") if u]
    base = ExperimentConfig(layers=(784, 256, 10), samples=args.samples)
    examples = load_examples(base)
    names = ["ideal"] + [p for p in args.presets.split(",") if p and p != "ideal"]
    configs = {(scheme, name): dataclasses.replace(base, device_model=name, update=scheme)
               for scheme in schemes for name in names}
    for config in configs.values():
        run_experiment(dataclasses.replace(config, samples=2), examples=_head(examples, 2))  # warm-up
    load_before = os.getloadavg()
    wall = {key: [] for key in configs}
    cpu = {key: [] for key in configs}
    unsettled = {key: 0 for key in configs}
    for _ in range(args.repeats):
        for key, config in configs.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            result = run_experiment(config, examples)
            cpu[key].append(time.process_time() - start_cpu)
            wall[key].append(time.perf_counter() - start_wall)
            unsettled[key] = int((~result.history.settled).sum())
    load_after = os.getloadavg()
    summary = {"size": "784x256", "samples": args.samples, "repeats": args.repeats, "target_ratio": TARGET_RATIO,
               "load_average_before": load_before, "load_average_after": load_after, "schemes": {}}
    for scheme in schemes:
        medians = {name: statistics.median(wall[scheme, name]) for name in names}
        cpu_medians = {name: statistics.median(cpu[scheme, name]) for name in names}
        ratios = {name: medians[name] / medians["ideal"] for name in names}
        cpu_ratios = {name: cpu_medians[name] / cpu_medians["ideal"] for name in names}
        for name in names:
            print(f"{scheme:18s} {name:20s} wall {medians[name]:6.2f} s ({ratios[name]:.2f}x ideal)  "
                  f"cpu {cpu_medians[name]:6.2f} s ({cpu_ratios[name]:.2f}x)  "
                  f"unsettled updates {unsettled[scheme, name]}")
        summary["schemes"][scheme] = {
            "wall_time_s": medians, "cpu_time_s": cpu_medians, "ratio_to_ideal": ratios,
            "cpu_ratio_to_ideal": cpu_ratios, "unsettled_updates": {n: unsettled[scheme, n] for n in names},
            "within_target": {name: ratio <= TARGET_RATIO for name, ratio in ratios.items()}}
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(json.dumps(summary))
    return summary


def _head(examples, n):
    return dataclasses.replace(examples, inputs=examples.inputs[:n], labels=examples.labels[:n],
                               targets=examples.targets[:n])


if __name__ == "__main__":
    main()
