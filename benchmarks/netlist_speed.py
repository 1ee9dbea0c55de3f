"""ngspice run time of the exported netlist against a minimal netlist of the same circuit.

    python benchmarks/netlist_speed.py                       # 64-32-10 and 256-128-10, 3 runs each
    python benchmarks/netlist_speed.py --sizes 784-256-10 --runs 1

The minimal netlist is written here, by hand, in the style of the DESIGN appendix: the same dyad
circuit (row drivers, column drivers and their 0-V current senses, the devices, forward and
backward sense, compartment amplifiers, R_m, C_m, mean buffers, the output nudge), the
appendix's options (``reltol=1e-6 abstol=1e-15 vntol=1e-9``), one ``.tran`` with ``uic``, and a
``.control`` block that only runs and writes the compartment voltages. It is the floor an
export can reach. Both netlists carry the same circuit and input: the minimal one is checked
against the export's waveforms before its time counts.

For each size the two netlists run alternately (minimal, export, minimal, export, ...; the
``ngspice -b``, one at a time), and the median wall and CPU times and their ratios are reported
(the CPU time of the ngspice process is the steadier figure on a shared machine); with
``--energy`` the export is also run with its opt-in energy bookkeeping. The last line of the
output is one JSON object with the figures (target: export / minimal ≤ 1.2).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from analogdp.circuit import NetworkCircuit
from analogdp.spice import SpiceOptions, write_netlist
from analogdp.spice.examples import random_problem
from analogdp.spice.netlist import compartment_nodes
from analogdp.spice.runner import ngspice_executable, read_wrdata, wrdata_files

TARGET_RATIO = 1.2


def _num(value: float) -> str:
    return repr(float(value))


def minimal_netlist(circuit: NetworkCircuit, x: np.ndarray, y: np.ndarray, *, t_stop_s: float,
                    t_step_s: float) -> tuple[str, list[str]]:
    """(netlist text, compartment node names in state order) of a dyad network in the
    bidirectional scheme with hard-sigmoid hidden layers and an MSE nudge taken at a_L."""
    kind = circuit.neuron_kind
    if (kind.compartments != 2 or circuit.scheme != "bidirectional" or circuit.activation != "hardsigmoid"
            or circuit.loss != "mse" or kind.nudge_at != "input"):
        raise ValueError("the minimal netlist covers dyad, bidirectional, hardsigmoid, MSE circuits only")
    alpha = kind.row_weights[0]
    c_plus, c_minus = kind.feedback_gains
    v_r = circuit.neuron.v_read_v
    scale = 1.0 / (circuit.device.g_unit_s * v_r)
    L = circuit.n_layers
    out = [f"minimal dyad network {'-'.join(map(str, circuit.layer_sizes))}"]
    for k, xbar in enumerate(circuit.crossbars):
        for i in range(xbar.n_rows):
            if i == xbar.n_inputs:
                value = _num(v_r)
            elif k == 0:
                value = _num(v_r * x[i])
            else:
                value = f"v(m{k}_{i})"
            out += [f"Br{k}_{i} rd{k}_{i} 0 V={value}", f"Vsr{k}_{i} rd{k}_{i} r{k}_{i} 0"]
        for j in range(xbar.n_columns):
            out += [f"Bc{k}p{j} cd{k}p{j} 0 V=v(vp{k + 1}_{j})-v(vm{k + 1}_{j})", f"Vsc{k}p{j} cd{k}p{j} c{k}p{j} 0",
                    f"Bc{k}n{j} cd{k}n{j} 0 V=v(vm{k + 1}_{j})-v(vp{k + 1}_{j})", f"Vsc{k}n{j} cd{k}n{j} c{k}n{j} 0"]
        for i in range(xbar.n_rows):
            for j in range(xbar.n_columns):
                out += [f"Rp{k}_{i}_{j} r{k}_{i} c{k}p{j} {_num(1.0 / xbar.g_pos_s[i, j])}",
                        f"Rn{k}_{i}_{j} r{k}_{i} c{k}n{j} {_num(1.0 / xbar.g_neg_s[i, j])}"]
    r_m, c_m = _num(circuit.neuron.r_m_ohm), _num(circuit.neuron.c_m_f)
    nodes = []
    for l in range(1, L + 1):
        xbar = circuit.crossbars[l - 1]
        for j in range(circuit.layer_sizes[l]):
            gp, gn = _num(xbar.g_pos_s[:, j].sum()), _num(xbar.g_neg_s[:, j].sum())
            k = l - 1
            out.append(f"Ba{l}_{j} a{l}_{j} 0 V=((v(c{k}p{j})*{gp}-i(Vsc{k}p{j}))-(v(c{k}n{j})*{gn}-i(Vsc{k}n{j})))"
                       f"*{_num(scale)}")
            if l < L:
                g_row = _num(circuit.crossbars[l].row_conductance_s[j])
                out.append(f"Bb{l}_{j} b{l}_{j} 0 V=(v(r{l}_{j})*{g_row}-i(Vsr{l}_{j}))*{_num(scale)}")
                out.append(f"Btp{l}_{j} tp{l}_{j} 0 V={_num(v_r)}*max(0,min(1,v(a{l}_{j})+{_num(c_plus)}*v(b{l}_{j})))")
                out.append(f"Btm{l}_{j} tm{l}_{j} 0 "
                           f"V={_num(v_r)}*max(0,min(1,v(a{l}_{j})+{_num(c_minus)}*v(b{l}_{j})))")
                out.append(f"Bm{l}_{j} m{l}_{j} 0 V={_num(alpha)}*v(vp{l}_{j})+{_num(1 - alpha)}*v(vm{l}_{j})")
            else:
                out.append(f"Bg{l}_{j} g{l}_{j} 0 V={_num(circuit.beta)}*(v(a{l}_{j})-{_num(y[j])})")
                out.append(f"Btp{l}_{j} tp{l}_{j} 0 V={_num(v_r)}*(v(a{l}_{j})-{_num(c_plus)}*v(g{l}_{j}))")
                out.append(f"Btm{l}_{j} tm{l}_{j} 0 V={_num(v_r)}*(v(a{l}_{j})-{_num(c_minus)}*v(g{l}_{j}))")
            for pole in ("p", "m"):
                out += [f"Rm{pole}{l}_{j} t{pole}{l}_{j} v{pole}{l}_{j} {r_m}",
                        f"C{pole}{l}_{j} v{pole}{l}_{j} 0 {c_m} IC=0"]
                nodes.append(f"v{pole}{l}_{j}")
    stop = _num(t_stop_s)
    t_max = min(t_step_s, 0.1 * circuit.neuron.tau_s)
    out += [".options reltol=1e-6 abstol=1e-15 vntol=1e-9",
            f".tran {_num(t_step_s)} {stop} 0 {_num(t_max)} uic",
            ".control", "set wr_singlescale", "set wr_vecnames", "set numdgt=15", "run",
            "wrdata minimal.tran.data " + " ".join(f"v({n})" for n in nodes), "quit", ".endc", ".end", ""]
    return "\n".join(out), nodes


def run_timed(text: str, timeout_s: float) -> tuple[float, float, int, dict[str, np.ndarray]]:
    """(wall s, CPU s of the ngspice process, time points, transient vectors) of one
    ``ngspice -b`` run. The CPU time (user + system, from the kernel's accounting of the child)
    is the steadier figure on a shared machine: other jobs stretch the wall time, not it."""
    with tempfile.TemporaryDirectory(prefix="analogdp-netlist-speed-") as tmp:
        (Path(tmp) / "circuit.cir").write_text(text)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run([ngspice_executable(), "-b", "circuit.cir"], cwd=tmp, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout_s)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"ngspice failed: {done.stderr[-2000:]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        data = read_wrdata(Path(tmp) / next(f for f in wrdata_files(text) if ".tran." in f))
        return wall, cpu, int(data.scale.size), data.vectors


def _final_voltages(vectors: dict[str, np.ndarray], nodes: list[str]) -> np.ndarray:
    return np.array([vectors[f"v({n})".lower()][-1] for n in nodes])


def measure(sizes: tuple[int, ...], runs: int, energy: bool, t_stop_s: float, timeout_s: float) -> dict:
    circuit, x, y = random_problem(sizes)
    minimal, minimal_nodes = minimal_netlist(circuit, x, y, t_stop_s=t_stop_s, t_step_s=1e-9)
    variants = {"minimal": minimal,
                "export": write_netlist(circuit, x, y, t_stop_s=t_stop_s, t_step_s=1e-9)}
    if energy:
        variants["export_energy"] = write_netlist(circuit, x, y, t_stop_s=t_stop_s, t_step_s=1e-9,
                                                  options=SpiceOptions(energy=True))
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    finals: dict[str, np.ndarray] = {}
    points: dict[str, int] = {}
    export_nodes = compartment_nodes(circuit)
    for repeat in range(runs):
        for name, text in variants.items():
            wall_s, cpu_s, n_points, vectors = run_timed(text, timeout_s)
            times[name].append(wall_s)
            cpu[name].append(cpu_s)
            points[name] = n_points
            finals[name] = _final_voltages(vectors, minimal_nodes if name == "minimal" else export_nodes)
            print(f"[{'-'.join(map(str, sizes))}] run {repeat + 1} {name}: wall {wall_s:.2f} s, CPU {cpu_s:.2f} s, "
                  f"{n_points} points", file=sys.stderr, flush=True)
    agreement_v = max(float(np.abs(finals[name] - finals["minimal"]).max()) for name in finals)
    medians = {name: statistics.median(t) for name, t in times.items()}
    cpu_medians = {name: statistics.median(t) for name, t in cpu.items()}
    row = {"layer_sizes": list(sizes), "n_devices": circuit.n_devices, "t_stop_s": t_stop_s,
           "runs": runs, "wall_times_s": times, "cpu_times_s": cpu, "median_s": medians,
           "median_cpu_s": cpu_medians, "time_points": points,
           "ratio_export_to_minimal": medians["export"] / medians["minimal"],
           "cpu_ratio_export_to_minimal": cpu_medians["export"] / cpu_medians["minimal"],
           "final_voltage_max_abs_dev_v": agreement_v}
    if energy:
        row["ratio_export_energy_to_minimal"] = medians["export_energy"] / medians["minimal"]
        row["cpu_ratio_export_energy_to_minimal"] = cpu_medians["export_energy"] / cpu_medians["minimal"]
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["64-32-10", "256-128-10"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--t-stop", type=float, default=200e-9)
    parser.add_argument("--energy", action="store_true", help="also time the export with energy bookkeeping")
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)
    rows = []
    for text in args.sizes:
        sizes = tuple(int(n) for n in text.split("-"))
        row = measure(sizes, args.runs, args.energy, args.t_stop, args.timeout)
        print(f"[{text}] median minimal {row['median_s']['minimal']:.2f} s, export {row['median_s']['export']:.2f} s, "
              f"ratio {row['ratio_export_to_minimal']:.3f} (CPU {row['median_cpu_s']['minimal']:.2f} s vs "
              f"{row['median_cpu_s']['export']:.2f} s, ratio {row['cpu_ratio_export_to_minimal']:.3f}); "
              f"final |dv| {row['final_voltage_max_abs_dev_v']:.2e} V",
              flush=True)
        rows.append(row)
    summary = {"benchmark": "netlist_speed", "machine": {"platform": platform.platform()},
               "target_ratio": TARGET_RATIO, "cases": rows,
               "ratios": {"-".join(map(str, r["layer_sizes"])): r["ratio_export_to_minimal"] for r in rows},
               "cpu_ratios": {"-".join(map(str, r["layer_sizes"])): r["cpu_ratio_export_to_minimal"] for r in rows},
               "target_met": all(r["ratio_export_to_minimal"] <= TARGET_RATIO for r in rows),
               "target_met_cpu": all(r["cpu_ratio_export_to_minimal"] <= TARGET_RATIO for r in rows)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
