"""Programming cost per update: the ideal device vs every preset, side by side in one run.

One 784x256 crossbar pair (785 rows with the bias row, 256 column pairs) receives a DP-sized
update ΔW = lr·s̄δᵀ/β (lr 0.02, β 0.1, s̄ digit-like in [0, 1], δ ~ N(0, 0.01²)). Per preset
and per update this measures: stochastic rounding of the pulse counts (each preset's own step),
the pulses on the devices (``apply_pulses``), one read with read/write noise
(``read_conductances``, as a settle would see it), and the pulse-coincidence scheme (counts and
their application). The last line is one JSON object with milliseconds per update and ratios to
the ideal device.

    python benchmarks/device_speed.py [--updates 30]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from analogdp.circuit.devices import (
    apply_pulses,
    draw_crossbar_pair,
    pin_stuck,
    read_conductances,
    write_noise_offsets_s,
)
from analogdp.circuit.params import DeviceParams
from analogdp.circuit.presets import PRESETS, device_from_preset
from analogdp.circuit.updates import pulse_coincidence

ROWS, COLUMNS = 785, 256
LR, BETA = 0.02, 0.1


def per_device_update(pos, neg, g_pos, g_neg, offsets, delta_w, rng, device):
    """One update: pulse counts by stochastic rounding, SET pulses on the device that moves W
    the wanted way (works for one-directional devices too), fresh write noise, one noisy read."""
    flat = delta_w.reshape(-1)
    real = np.abs(flat) * (device.g_unit_s / pos.step_s)
    whole = np.floor(real)
    counts = (whole + (rng.random(real.shape) < real - whole)).astype(np.int64)
    where = np.flatnonzero(counts)
    up = flat[where] > 0
    for pop, g, off, sel in ((pos, g_pos, offsets[0], up), (neg, g_neg, offsets[1], ~up)):
        idx = where[sel]
        out = apply_pulses(pop, g[idx], idx, counts[idx], True, rng)
        g[idx] = out.g_s
        if pop.model.write_noise > 0:
            off[idx] = write_noise_offsets_s(pop, idx, rng)
    read_conductances(pos, g_pos, rng, offsets[0])
    read_conductances(neg, g_neg, rng, offsets[1])
    return int(counts.sum())


def coincidence_update(pos, neg, g_pos, g_neg, x, delta, rng, device):
    pulse_weight = pos.step_s / device.g_unit_s
    out = pulse_coincidence(x, delta, LR / BETA, pulse_weight, rng)
    flat = out.counts.reshape(-1)
    where = np.flatnonzero(flat)
    up = flat[where] > 0
    for pop, g, sel in ((pos, g_pos, up), (neg, g_neg, ~up)):
        idx = where[sel]
        g[idx] = apply_pulses(pop, g[idx], idx, np.abs(flat[idx]).astype(np.int64), True, rng).g_s
    return int(np.abs(flat).sum())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=30)
    args = parser.parse_args(argv)
    device = DeviceParams()
    data_rng = np.random.default_rng(0)
    xs = [np.where(data_rng.random(ROWS) < 0.5, data_rng.random(ROWS), 0.0) for _ in range(args.updates)]
    for x in xs:
        x[-1] = 1.0  # bias row
    deltas = [data_rng.standard_normal(COLUMNS) * 0.01 for _ in range(args.updates)]
    results = {}
    for name in PRESETS:
        model = device_from_preset(name, device)
        pos, neg = draw_crossbar_pair(model, (ROWS, COLUMNS), device, seed=1)
        rng = np.random.default_rng(2)
        g_pos = pin_stuck(pos, np.full(ROWS * COLUMNS, device.g_min_s))
        g_neg = pin_stuck(neg, np.full(ROWS * COLUMNS, device.g_min_s))
        offsets = (np.zeros(ROWS * COLUMNS), np.zeros(ROWS * COLUMNS))
        # Warm-up (numba compilation is cached on disk, but the first call loads it).
        per_device_update(pos, neg, g_pos.copy(), g_neg.copy(), offsets, LR / BETA * np.outer(xs[0], deltas[0]),
                          rng, device)
        coincidence_update(pos, neg, g_pos.copy(), g_neg.copy(), xs[0], deltas[0], rng, device)
        t0 = time.perf_counter()
        pulses = 0
        for x, d in zip(xs, deltas):
            pulses += per_device_update(pos, neg, g_pos, g_neg, offsets, LR / BETA * np.outer(x, d), rng, device)
        t_per_device = (time.perf_counter() - t0) / args.updates
        t0 = time.perf_counter()
        pulses_pc = 0
        for x, d in zip(xs, deltas):
            pulses_pc += coincidence_update(pos, neg, g_pos, g_neg, x, d, rng, device)
        t_coincidence = (time.perf_counter() - t0) / args.updates
        results[name] = {"per_device_ms": 1e3 * t_per_device, "pulse_coincidence_ms": 1e3 * t_coincidence,
                         "pulses_per_update": pulses / args.updates,
                         "pulses_per_update_coincidence": pulses_pc / args.updates}
        print(f"{name:20s} per-device {1e3 * t_per_device:7.2f} ms ({pulses / args.updates:9.0f} pulses)   "
              f"pulse-coincidence {1e3 * t_coincidence:7.2f} ms ({pulses_pc / args.updates:9.0f} pulses)")
    ideal = results["ideal"]
    summary = {"size": f"{ROWS - 1}x{COLUMNS}", "updates": args.updates, "presets": results,
               "ratio_per_device_vs_ideal": {k: v["per_device_ms"] / ideal["per_device_ms"]
                                             for k, v in results.items()},
               "ratio_coincidence_vs_ideal": {k: v["pulse_coincidence_ms"] / ideal["pulse_coincidence_ms"]
                                              for k, v in results.items()}}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
