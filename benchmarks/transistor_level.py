"""Transistor-level (SKY130) DP networks in ngspice against the ODE, over many random problems.

    nice python benchmarks/transistor_level.py                         # 6-4-3 and 16-8-4, dp and dpT, 20 each
    nice python benchmarks/transistor_level.py --problems 2 --networks 6x4x3 --jobs 1
    nice python benchmarks/transistor_level.py --runs-dir runs/         # keep the ngspice runs, compare again later

For every network (6-4-3, 16-8-4), variant (dp α = ½, dpT α = 0.3) and seed 0…N−1 of
``analogdp.spice.examples.random_problem``: write the transistor-level netlist (every line held by
a SKY130 line holder, every hidden compartment the clamped compartment cell), run it in stock
ngspice, and compare it (``analogdp.spice.transistor_check``) with each reference ODE:

- ``ideal``: the numba solver with ideal amplifiers;
- ``transfer-curve``: hidden compartments on the compartment cell's measured transfer curve;
- ``macromodel``: the numba solver with the characterised macromodel of the transistor design
  (sky130-tt), per stage kind: the sense stages the line holder at the TIA's noise gain, the
  hidden compartments the compartment cell settling onto its measured transfer curve, the output
  compartments a line holder as a follower (``analogdp.spice.characterised.characterised_amplifiers``);
- ``macromodel-clip``: the same without the transfer curve (the compartment cell's swing as the clip);
- ``macromodel-uniform``: one amplifier model, the line holder's, for every stage (noise gains
  1 + G_Σ/G_u, drawn offsets), the coarse macromodel.

Per problem: cosine of the dyad differences v⁺ − v⁻ (target ≥ 0.99), settled voltages (largest
|Δv| relative to V_r, target ≤ 1 %), 0.1 % settling times (target within 10 %), energy per settle
(crossbar + R_m + capacitor, target within 10 %). Per network, variant and reference: the worst
and median of each and how many problems meet each target.

ngspice runs are the cost (about 15 s each for 6-4-3, more for 16-8-4, on one core); ``--jobs``
runs that many at once. ``--runs-dir`` keeps each run (``TransistorRun`` .npz, keyed by network,
variant, seed and window) and reuses it, so a new reference is compared without rerunning ngspice.
The last line of the output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

NETWORKS = ((6, 4, 3), (16, 8, 4))
VARIANTS = (("dp", 0.5), ("dpT", 0.3))


def problem(layers, variant: str, alpha: float, seed: int):
    from analogdp.circuit import dyad_neuron
    from analogdp.spice.examples import random_problem

    return random_problem(layers, neuron_kind=dyad_neuron(variant, alpha), seed=seed)


def run_path(runs_dir: Path, layers, variant: str, alpha: float, seed: int, t_stop_s: float) -> Path:
    name = f"{'x'.join(map(str, layers))}_{variant}_a{alpha:g}_s{seed}_{t_stop_s * 1e9:.0f}ns.npz"
    return runs_dir / name


def transistor_run(task) -> tuple[str, float]:
    """One ngspice run (a worker's job), saved to its path; returns (path, seconds)."""
    layers, variant, alpha, seed, t_stop_s, path = task
    from analogdp.spice.transistor_check import run_transistor_level

    if Path(path).is_file():
        return path, 0.0
    circuit, x, y = problem(layers, variant, alpha, seed)
    started = time.perf_counter()
    run_transistor_level(circuit, x, y, t_stop_s=t_stop_s, timeout_s=1800).save(path)
    return path, time.perf_counter() - started


def _nice_worker():
    """Workers (and their ngspice) at niceness 10: the machine is shared (no more if already niced)."""
    try:
        os.nice(max(0, 10 - os.nice(0)))
    except OSError:
        pass


def summarise(rows: list[dict], tolerances) -> dict:
    def stats(key):
        values = np.array([row[key] for row in rows], dtype=float)
        return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}

    return {
        "problems": len(rows),
        "dyad_cosine": stats("dyad_cosine"),
        "final_abs_dev_rel_v_r": stats("final_abs_dev_rel_v_r"),
        "settling_time_s": stats("settling_time_s"),
        "settling_time_reference_s": stats("settling_time_reference_s"),
        "settling_time_ratio": stats("settling_time_ratio"),
        "energy_rel_dev": stats("energy_rel_dev"),
        "energy_signed_rel_dev": stats("energy_signed_rel_dev"),
        "settled_in_window": int(sum(row["settled_in_window"] for row in rows)),
        "met": {
            "dyad_cosine": int(sum(row["dyad_cosine"] >= tolerances.dyad_cosine for row in rows)),
            "final_abs_dev_rel_v_r": int(sum(row["final_abs_dev_rel_v_r"] <= tolerances.final_abs_dev_rel_v_r
                                             for row in rows)),
            "settling_time_rel": int(sum(row["settling_time_rel_dev"] <= tolerances.settling_time_rel
                                         for row in rows)),
            "energy_rel": int(sum(row["energy_rel_dev"] <= tolerances.energy_rel for row in rows)),
            "all": int(sum(row["passed"] for row in rows)),
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=20, help="random problems (seeds 0…N−1) per network")
    parser.add_argument("--networks", default="6x4x3,16x8x4", help="comma-separated layer sizes")
    parser.add_argument("--variants", default="dp:0.5,dpT:0.3", help="comma-separated variant:alpha")
    parser.add_argument("--t-stop", type=float, default=400e-9, help="transient window, s")
    parser.add_argument("--jobs", type=int, default=2, help="ngspice runs at once (each niced)")
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="keep and reuse the ngspice runs here (default: a temporary directory)")
    parser.add_argument("--references", default="ideal,transfer-curve,macromodel,macromodel-clip,macromodel-uniform",
                        help="comma-separated references (macromodel only when the solver models amplifiers)")
    args = parser.parse_args(argv)
    if args.problems < 1 or args.jobs < 1 or not args.t_stop > 0:
        parser.error("--problems and --jobs must be positive, --t-stop > 0")
    networks = [tuple(int(n) for n in text.split("x")) for text in args.networks.split(",")]
    variants = [(text.split(":")[0], float(text.split(":")[1])) for text in args.variants.split(",")]

    from analogdp.spice.transistor_check import (REFERENCES, TransistorRun, TransistorTolerances,
                                                 compare_with_reference)

    references = [r.strip() for r in args.references.split(",")]
    unknown = [r for r in references if r not in REFERENCES]
    if unknown:
        parser.error(f"--references: unknown {unknown}; choose from {REFERENCES}")
    tolerances = TransistorTolerances()

    temporary = None
    runs_dir = args.runs_dir
    if runs_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="transistor_runs_")
        runs_dir = Path(temporary.name)
    runs_dir.mkdir(parents=True, exist_ok=True)
    tasks = [(layers, variant, alpha, seed, args.t_stop, str(run_path(runs_dir, layers, variant, alpha, seed,
                                                                      args.t_stop)))
             for seed in range(args.problems) for layers in networks for variant, alpha in variants]
    # seed-major order: a run cut short leaves the same seeds done for every group (reuse with --runs-dir)
    started = time.perf_counter()
    ngspice_s = []
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=_nice_worker) as pool:
        for done, (path, seconds) in enumerate(pool.map(transistor_run, tasks), 1):
            if seconds > 0:
                ngspice_s.append(seconds)
            print(f"[{done}/{len(tasks)}] {Path(path).name} {seconds:.1f} s", file=sys.stderr, flush=True)
    ngspice_wall_s = time.perf_counter() - started

    groups = {}
    rows_all = []
    for layers, variant, alpha, seed, t_stop_s, path in tasks:
        circuit, x, y = problem(layers, variant, alpha, seed)
        run = TransistorRun.load(path)
        for reference in references:
            check = compare_with_reference(circuit, x, y, run, reference=reference, tolerances=tolerances)
            row = {key: value for key, value in check.as_dict().items() if key != "tolerances"}
            row.update(seed=seed, variant=variant, alpha=alpha,
                       settling_time_ratio=check.settling_time_s / check.settling_time_reference_s,
                       energy_signed_rel_dev=(check.energy_j - check.energy_reference_j) / check.energy_reference_j)
            rows_all.append(row)
            key = f"{'-'.join(map(str, layers))} {variant} a={alpha:g} vs {reference}"
            groups.setdefault(key, []).append(row)
    summary = {key: summarise(rows, tolerances) for key, rows in groups.items()}
    for key, s in summary.items():
        dv, ratio = s["final_abs_dev_rel_v_r"], s["settling_time_ratio"]
        print(f"{key:32s} cos min {s['dyad_cosine']['min']:.4f} | |dv|/V_r med {100 * dv['median']:.2f} "
              f"max {100 * dv['max']:.2f} % | t_s ratio med {ratio['median']:.2f} max {ratio['max']:.2f} | "
              f"energy max {100 * s['energy_rel_dev']['max']:.1f} % | met {s['met']} "
              f"settled {s['settled_in_window']}/{s['problems']}", file=sys.stderr)
    result = {
        "benchmark": "transistor_level",
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "load_average": list(os.getloadavg())},
        "t_stop_s": args.t_stop, "problems_per_network": args.problems, "jobs": args.jobs,
        "references": references,
        "tolerances": {"final_abs_dev_rel_v_r": tolerances.final_abs_dev_rel_v_r,
                       "settling_time_rel": tolerances.settling_time_rel, "energy_rel": tolerances.energy_rel,
                       "dyad_cosine": tolerances.dyad_cosine},
        "ngspice_runs": len(ngspice_s), "ngspice_run_s_median": float(np.median(ngspice_s)) if ngspice_s else None,
        "ngspice_wall_s": ngspice_wall_s,
        "summary": summary,
        "problems": rows_all,
    }
    if temporary is not None:
        temporary.cleanup()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
