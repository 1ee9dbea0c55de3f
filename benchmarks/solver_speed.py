"""Solver speed over network size and depth, against an rtol 1e-10 reference in the same run.

For each network (random weights and biases, ``random_problem(sizes, seed=1)`` of the solver
tests, DP α = ½, squared error, β = 0.5), one thread per settle, warm:
  settle_ms            median (and min) wall time of a batch-1 settle with the default tolerance
                       policy, over timing rounds that interleave the networks; settle_cpu_ms its
                       CPU time (what it costs when other work shares the cores)
  evaluations, steps, rejected, rejection_rate
  worst_rel_dev        largest relative deviation from the reference of the settling times (0.1 %
                       and 1 %) and of every energy term (target ≤ 1e-4)
  fixed_point_dev_vr   settled state against the closed-form DP fixed point, in V_r (≤ 1e-9)
Then batch 100 at 784-256-10 with two threads (examples/s, wall and per two cores of CPU time) and,
in the same rounds, with one thread (how far two threads scale). Last line: one JSON object.
The reference (rtol 1e-10) ends steps at clip crossings and controls every compartment's error
(StepController kinks="cut"), whatever policy the timed settles use.
Run: python benchmarks/solver_speed.py [--repeats N] [--networks 784-256-10,...] [--precision P]
     [--kinks auto|cut|step-over]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout, and the solver tests' problems
from test_solver import circuit_for  # noqa: E402

from analogdp.digital.dp import DPConfig, dp_fixed_point  # noqa: E402
from analogdp.solver import ENERGY_TERMS, StepController, settle  # noqa: E402

NETWORKS = ("64-32-10", "784-256-10", "2048-1024-10", "784-256-256-10", "784-256-256-256-10",
            "1024-512-256-10")
TARGET_MS = {"784-256-10": 2.0, "784-256-256-10": 20.0, "784-256-256-256-10": 30.0, "2048-1024-10": 25.0}


def wall(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def wall_and_cpu(fn):
    """(wall s, CPU s of the whole process) of one call. On a loaded machine the CPU time is
    what the call would take with its cores to itself (cache sharing aside)."""
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall_start, time.process_time() - cpu_start


def reported(result):
    figures = {"settling_time_s": float(result.settling_time_s[0]),
               "settling_time_1pct_s": float(result.settling_time_1pct_s[0])}
    figures.update({f"energy_{k}_j": float(getattr(result.energy, k)[0]) for k in ENERGY_TERMS})
    return figures


def accuracy(name, controller):
    """Counts and deviations of one network's settle against the rtol 1e-10 reference."""
    sizes = tuple(int(n) for n in name.split("-"))
    circuit, x, y = circuit_for(sizes, "dp", 0.5, "mse", seed=1, batch=1)
    fast = settle(circuit, x, y, controller=controller, threads=1)
    ref = settle(circuit, x, y, controller=StepController(rtol=1e-10, atol_fraction=1e-12, kinks="cut"), threads=1)
    a, b = reported(fast), reported(ref)
    deviations = {k: abs(a[k] - b[k]) / abs(b[k]) for k in a}
    weights, biases = circuit.effective_weights()
    exact = dp_fixed_point(weights, biases, x, y, DPConfig(variant="dp", alpha=0.5, beta=circuit.beta))
    states = fast.dyad_states(x)
    fixed = max(max(float(np.abs(states.s_plus[k] - exact.s_plus[k]).max()),
                    float(np.abs(states.s_minus[k] - exact.s_minus[k]).max())) for k in range(1, len(sizes)))
    worst = max(deviations, key=deviations.get)
    return (circuit, x, y), {
        "network": name, "target_ms": TARGET_MS.get(name),
        "evaluations": int(fast.n_evaluations[0]), "steps": int(fast.n_steps[0]),
        "rejected": int(fast.n_rejected[0]), "rejection_rate": round(float(fast.rejection_rate[0]), 4),
        "kink_steps": int(fast.n_kink_steps[0]), "reference_evaluations": int(ref.n_evaluations[0]),
        "worst_rel_dev": float(deviations[worst]), "worst_key": worst,
        "fixed_point_dev_vr": fixed, "settled": bool(fast.settled[0])}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="timing rounds over all networks (default 7)")
    parser.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated layer sizes")
    parser.add_argument("--precision", type=float, default=None,
                        help="reported relative precision (default: the policy's)")
    parser.add_argument("--kinks", default="auto", choices=("auto", "cut", "step-over"),
                        help="StepController.kinks of the timed settles (default auto, the library's; "
                             "the reference always cuts)")
    args = parser.parse_args()
    controller = (StepController(kinks=args.kinks) if args.precision is None
                  else StepController.for_precision(args.precision, kinks=args.kinks))
    load_before = os.getloadavg()[0]
    problems, rows = {}, []
    with threadpool_limits(1):
        warm_circuit, wx, wy = circuit_for((6, 4, 3), batch=1)
        settle(warm_circuit, wx, wy)  # compile / load the kernel cache
        for name in args.networks.split(","):
            problems[name], row = accuracy(name, controller)
            rows.append(row)
        batch_circuit, bx, by = circuit_for((784, 256, 10), "dp", 0.5, "mse", seed=1, batch=100)
        threads = min(2, os.cpu_count() or 1)
        settle(batch_circuit, bx, by, controller=controller, threads=threads)
        # timing rounds interleave the networks, so that a change of machine load hits all alike
        times = {name: [] for name in problems}
        cpu_times = {name: [] for name in problems}
        batch_times, batch_cpu = [], []
        single_times, single_cpu = [], []
        for _ in range(args.repeats):
            for name, (circuit, x, y) in problems.items():
                seconds, cpu = wall_and_cpu(lambda: settle(circuit, x, y, controller=controller, threads=1))
                times[name].append(seconds)
                cpu_times[name].append(cpu)
            seconds, cpu = wall_and_cpu(lambda: settle(batch_circuit, bx, by, controller=controller, threads=threads))
            batch_times.append(seconds)
            batch_cpu.append(cpu)
            seconds, cpu = wall_and_cpu(lambda: settle(batch_circuit, bx, by, controller=controller, threads=1))
            single_times.append(seconds)
            single_cpu.append(cpu)
    for row in rows:
        row["settle_ms"] = round(statistics.median(times[row["network"]]) * 1e3, 3)
        row["settle_ms_min"] = round(min(times[row["network"]]) * 1e3, 3)
        row["settle_cpu_ms"] = round(statistics.median(cpu_times[row["network"]]) * 1e3, 3)
        print(f"{row['network']:>20}  {row['settle_ms']:8.2f} ms (min {row['settle_ms_min']:7.2f}, "
              f"CPU {row['settle_cpu_ms']:7.2f}, target "
              f"{row['target_ms']})  {row['evaluations']:5d} evals  {row['steps']:4d} steps  {row['rejected']:3d} "
              f"rejected ({100 * row['rejection_rate']:.1f} %)  worst rel dev {row['worst_rel_dev']:.2e} "
              f"({row['worst_key']})  fixed point {row['fixed_point_dev_vr']:.1e} V_r", flush=True)
    rate = 100 / statistics.median(batch_times)
    best_rate = 100 / min(batch_times)
    cpu_rate = 100 / (statistics.median(batch_cpu) / threads)  # per `threads` cores of CPU time
    single_rate = 100 / statistics.median(single_times)
    single_cpu_rate = 100 / statistics.median(single_cpu)
    load_after = os.getloadavg()[0]
    print(f"batch 100 at 784-256-10, {threads} threads: {rate:.0f} examples/s (best {best_rate:.0f}; "
          f"{cpu_rate:.0f} per {threads} cores of CPU time; target ≥ 1000)")
    print(f"batch 100 at 784-256-10, 1 thread: {single_rate:.0f} examples/s, {single_cpu_rate:.0f} per core of CPU "
          f"time (CPU time per example: {1e3 / single_cpu_rate:.3f} ms with 1 thread, "
          f"{1e3 * threads / cpu_rate:.3f} ms with {threads})")
    print(f"load average (1 min) before / after: {load_before:.2f} / {load_after:.2f}")
    print(json.dumps({"rtol": controller.rtol, "atol_fraction": controller.atol_fraction, "kinks": controller.kinks,
                      "table": rows,
                      "batch100_examples_per_second": round(rate, 1),
                      "batch100_examples_per_second_best": round(best_rate, 1),
                      "batch100_examples_per_cpu_time": round(cpu_rate, 1), "batch100_threads": threads,
                      "batch100_one_thread_examples_per_second": round(single_rate, 1),
                      "batch100_one_thread_examples_per_cpu_second": round(single_cpu_rate, 1),
                      "load_average_before": load_before, "load_average_after": load_after}))


if __name__ == "__main__":
    main()
