"""What a run leaves behind: tables for the terminal, and JSON, CSV, NPZ and plot files.

Every file is written to a temporary file in its destination's directory and renamed into
place, so an interrupted run leaves each output either absent or complete.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import signal
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from .experiment import ratio, sweep_layers
from .names import EP_ALGORITHMS, PHASES, UPDATE_ENERGY_TERMS
from .units import jsonable, si


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed to ``path`` when the block ends normally,
    removed otherwise."""
    path = Path(path)
    temporary = None
    # Ctrl-C and SIGTERM become exceptions between any two bytecodes: held back while the file
    # is created and named, so that the cleanup below always knows what to remove
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent or ".")
        temporary = Path(name)
        os.close(handle)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        yield temporary
        os.replace(temporary, path)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def write_text(path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_json(path, data: dict) -> None:
    """JSON with NaN and infinities as null (never a bare NaN)."""
    write_text(path, json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n")


def write_csv(path, columns: dict[str, np.ndarray], provenance: dict | None = None) -> None:
    """One column per entry, rows by index; integers and booleans as integers, floats as
    their shortest exact repr; Unix line endings. ``provenance`` goes first as '#' lines
    (``read_csv_rows`` and ``pandas.read_csv(comment='#')`` skip them)."""
    names = list(columns)
    n = len(next(iter(columns.values()))) if columns else 0
    with atomic_path(path) as temporary, temporary.open("w", newline="") as handle:
        for line in provenance_lines(provenance or {}):
            handle.write(line + "\n")
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(names)
        for i in range(n):
            writer.writerow([_csv_value(columns[name][i]) for name in names])


def stack_columns(tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Tables of columns one below the other; a column missing from a table is 0 there (an
    energy term an algorithm does not spend)."""
    names = list(dict.fromkeys(name for table in tables for name in table))
    return {name: np.concatenate([table[name] if name in table else np.zeros(len(next(iter(table.values()))))
                                  for table in tables]) for name in names}


def read_csv_rows(path) -> list[dict]:
    """The rows of a CSV written here, as dicts of strings ('#' lines skipped)."""
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


def _csv_value(value):
    if isinstance(value, (str, np.str_)):
        return str(value)
    if isinstance(value, (bool, np.bool_, np.integer, int)):
        return int(value)
    return repr(float(value))


def write_npz(path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as temporary, temporary.open("wb") as handle:
        np.savez(handle, **arrays)


def save_figure(fig, path) -> None:
    """A matplotlib figure to ``path`` (format from its suffix), atomically."""
    path = Path(path)
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=120, format=path.suffix.lstrip(".").lower())


# ------------------------------------------------------------------------------------------
# Provenance: what produced a file


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("analogdp")
    except PackageNotFoundError:
        return "unknown"


def git_commit() -> str | None:
    """The commit of the checkout the package runs from (with '-dirty' when it has changes),
    or None outside a checkout."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def provenance(command: str, started_at: str | None = None) -> dict:
    """Package version, git commit, the full command and its start time (ISO 8601, UTC)."""
    import datetime

    started_at = started_at or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"version": package_version(), "git_commit": git_commit(), "command": command,
            "started_at": started_at}


def provenance_lines(record: dict) -> list[str]:
    """The provenance as '# key: value' lines for the head of a CSV."""
    return [f"# {key}: {value}" for key, value in record.items()]


# ------------------------------------------------------------------------------------------
# Tables


def run_problems(summary: dict) -> list[str]:
    """What makes a finished run's figures untrustworthy, one sentence each: updates that did
    not settle (of every algorithm of a comparison), a SPICE check that failed."""
    problems = []
    runs = summary.get("compare") or {summary["algo"]: summary}
    unsettled = {algo: figures["not_settled"] for algo, figures in runs.items()
                 if isinstance(figures, dict) and figures.get("not_settled")}
    if unsettled:
        counts = ", ".join(f"{algo} {count} of {summary['samples']}" for algo, count in unsettled.items())
        problems.append(f"updates that did not settle within the time limit ({counts}): their settling "
                        f"times and energies are not equilibrium figures")
    for algo, figures in runs.items():
        if isinstance(figures, dict) and figures.get("inference_not_settled"):
            problems.append(f"{algo}: the inference settle (energy per inference) did not settle: "
                            f"{figures['inference_not_settled']}")
    spice = summary.get("spice")
    if spice is not None and not spice["passed"]:
        problems.append(f"SPICE check failed: {'; '.join(spice['failures'])}")
    return problems



def summary_table(summary: dict, data_description: str) -> str:
    """The summary of one run, one figure per line."""
    v_r = summary["params"]["circuit"]["neuron"]["v_read_v"]
    fp = summary["fixed_point_error_v"]
    fp_text = "n/a (no stable DP fixed point)" if fp is None or not math.isfinite(fp) else \
        f"{si(fp, 'V')}  ({fp / v_r:.2g} of V_r)"
    n = summary["samples"]
    rows = [
        ("network", f"{'x'.join(map(str, summary['layers']))}  (crossbar under study {summary['size']})"),
        ("algorithm", f"{summary['algo']} (β = {summary['beta']:g}, lr = {summary['lr']:g}, sample-and-hold "
                      f"C_h = {si(summary['params']['algorithm']['c_hold_f'], 'F')})"
         if summary["algo"] in EP_ALGORITHMS else
         f"{summary['algo']} (variant {summary['variant']}, α = {summary['alpha']:g}, "
         f"β = {summary['beta']:g}, lr = {summary['lr']:g})"),
        ("data", data_description),
        ("settling time (median, 0.1 % of V_r)", si(summary["settling_time_s"], "s")),
        *[(f"  {phase.replace('_', ' ')} phase (median)", si(value, "s"))
          for phase, value in summary.get("settling_time_per_phase_s", {}).items()],
        ("settling time (median, 1 % of V_r)", si(summary["settling_time_1pct_s"], "s")),
        ("energy per update (median)", si(summary["energy_per_update_j"], "J")),
    ]
    rows += [(f"  {term.replace('_', ' ')}", si(value, "J"))
             for term, value in summary["energy_breakdown_j"].items()]
    rows += [
        ("energy per inference (forward settle)", "did not settle" if summary.get("inference_not_settled")
         else si(summary["energy_per_inference_j"], "J")),
        ("MACs per update", f"{summary['macs_per_update']:,}"),
        ("energy per MAC", si(summary["energy_per_mac_j"], "J")),
        ("pulses per update (median)", f"{summary['pulses_per_update']:g}"),
        ("device model, update scheme", f"{summary['device_model']['model']}, {summary['update']}"),
        ("update time (median)", si(summary["update_time_s"], "s")),
        ("pulses per device pair", f"mean {summary['pulses_per_device']['mean_per_update']:.3g} per update, "
                                   f"max {summary['pulses_per_device']['max_per_update']}"),
        ("devices at G_min / G_max (end)", f"{summary['devices_at_bound_fraction']['g_min']:.3f} / "
                                           f"{summary['devices_at_bound_fraction']['g_max']:.3f}"),
        ("fixed-point error (max over run)", fp_text),
        (f"loss, first / last {summary['loss_window']} examples",
         f"{summary['loss_first']:.4f} -> {summary['loss_last']:.4f}"),
        ("not settled", f"{summary['not_settled']} of {n}"),
        ("wall time", f"{summary['wall_time_s']:.2f} s"),
    ]
    loaded = summary.get("loaded_weights")
    if loaded is not None:
        rows.append(("loaded weights", f"{loaded['path']}: {loaded['clipped']} of {loaded['parameters']} "
                                       f"beyond ±w_max = {loaded['w_max']:g} clipped"))
        if "test_accuracy_circuit" in loaded:
            rows.append(("  test accuracy, circuit / digital",
                         f"{100 * loaded['test_accuracy_circuit']:.2f} % / "
                         f"{100 * loaded['test_accuracy_digital']:.2f} % ({loaded['test_examples']} examples)"))
    spice = summary.get("spice")
    if spice is not None and spice.get("transistor_level"):
        rows += _transistor_rows(spice)
    elif spice is not None:
        rows += [("SPICE check (first example)", "passed" if spice["passed"] else
                  f"FAILED ({'; '.join(spice['failures'])})"),
                 ("  max / final |Δv| vs ngspice",
                  f"{si(spice['max_abs_dev_v'], 'V')} / {si(spice['final_abs_dev_v'], 'V')}"),
                 ("  ngspice wall time", "n/a" if spice["wall_time_s"] is None else f"{spice['wall_time_s']:.2f} s")]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def _transistor_rows(spice: dict) -> list[tuple[str, str]]:
    """Rows of a transistor-level SPICE section (analogdp.experiment.transistor_spice_check)."""
    rows = [(f"SPICE check, SKY130 {spice['corner']} transistors (first example)",
             f"vs {spice['primary_reference']} ODE: " + ("passed" if spice["passed"]
                                                         else f"FAILED ({'; '.join(spice['failures'])})"))]
    for reference, check in spice["references"].items():
        rows.append((f"  vs {reference} ODE",
                     f"settled |Δv| {100 * check['final_abs_dev_rel_v_r']:.2f} % of V_r, settling "
                     f"{si(check['settling_time_s'], 's')} / {si(check['settling_time_reference_s'], 's')}, "
                     f"energy {100 * check['energy_rel_dev']:.1f} % off, cos(v⁺ − v⁻) {check['dyad_cosine']:.4f}"))
    rows += [("  supply energy (transistors)", si(spice["supply_energy_j"], "J")),
             ("  ngspice wall time", f"{spice['wall_time_s']:.2f} s")]
    return rows


def comparison_table(comparison: dict) -> str:
    """Side-by-side table of the algorithms, with each one's ratio to the reference."""
    algos = comparison["algorithms"]
    reference = comparison["reference"]
    others = [a for a in algos if a != reference]
    terms = []
    for algo in algos:
        terms += [t for t in comparison[algo]["energy_breakdown_j"] if t not in terms]
    terms.sort(key=lambda term: term == "programming")  # programmed last, as it happens
    phases = {algo: comparison[algo]["settling_time_per_phase_s"] for algo in algos}

    def row(label, values, ratios):
        """``ratios``: None leaves the cell empty; NaN (nothing to compare with) shows n/a."""
        return [label] + values + ["" if r is None else "n/a" if not math.isfinite(r) else f"{r:.3g}"
                                   for r in ratios]

    def figure_row(label, key, unit):
        values = [comparison[a][key] for a in algos]
        return row(label, [si(v, unit) for v in values],
                   [ratio(comparison[a][key], comparison[reference][key]) for a in others])

    rows = [["", *algos, *(f"{a}/{reference}" for a in others)],
            figure_row("settling time per update (0.1 % of V_r)", "settling_time_s", "s")]
    for phase in dict.fromkeys(p for algo in algos for p in phases[algo]):
        rows.append(row(f"  {phase.replace('_', ' ')} phase",
                        [si(phases[a][phase], "s") if phase in phases[a] else "-" for a in algos],
                        [None for _ in others]))
    rows += [figure_row("settling time per update (1 % of V_r)", "settling_time_1pct_s", "s"),
             figure_row("energy per update", "energy_per_update_j", "J")]
    for term in terms:
        values = [comparison[a]["energy_breakdown_j"].get(term, 0.0) for a in algos]
        rows.append(row(f"  {term.replace('_', ' ')}", [si(v, "J") for v in values],
                        [ratio(v, values[0]) for v in values[1:]]))
    rows += [figure_row("energy per inference (free settle)", "energy_per_inference_j", "J"),
             figure_row("energy per MAC", "energy_per_mac_j", "J"),
             row("MACs per update", [f"{comparison[a]['macs_per_update']:,}" for a in algos],
                 [ratio(comparison[a]["macs_per_update"], comparison[reference]["macs_per_update"])
                  for a in others]),
             row("loss, first -> last 10 %", [f"{comparison[a]['loss_first']:.3f} -> {comparison[a]['loss_last']:.3f}"
                                             for a in algos], [None for _ in others]),
             row("not settled", [f"{comparison[a]['not_settled']} of {comparison['samples']}" for a in algos],
                 [None for _ in others])]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    title = (f"comparison on the same weights and examples (medians over {comparison['samples']} "
             f"updates; ratios to {reference})")
    lines = [title] + ["  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                                 for i, cell in enumerate(r)) for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Plot of one run


def _telling_neurons(final_v: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` neurons with the largest final |v⁺ − v⁻| (the error signal),
    then the most active: the first neurons of a hidden layer are often just off."""
    difference = np.abs(final_v[:, 0] - final_v[:, -1])
    return np.lexsort((-final_v.mean(axis=1), -difference))[:count]


def plot_run(result, summary: dict, path, *, title_prefix: str = "analogdp") -> None:
    """Settling waveforms of the first example (re-settled with saved time points) and the
    energy breakdown of the median update, written to ``path`` (.png, .pdf or .svg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .solver import SaveAt, settle

    circuit = result.initial_circuit
    examples = result.examples
    first = next(iter(result.first_step.settles.values()))
    horizon = max(1.5 * float(first.settling_time_s[0]), 5 * circuit.neuron.tau_s)
    times = np.linspace(0.0, horizon, 400)
    # The first settle as it ran (for EP its free phase: first.circuit carries β = 0).
    traced = settle(first.circuit, examples.inputs[:1], examples.targets[:1], saveat=SaveAt(ts_s=times),
                    allow_unsettled=True)
    voltages = traced.saved_voltages_v[0]
    n_layers = circuit.n_layers
    fig, axes = plt.subplots(1, n_layers + 2, figsize=(5 * (n_layers + 2), 4.2))
    for layer in range(1, n_layers + 1):
        ax = axes[layer - 1]
        per_neuron = traced.compartments(layer, voltages) * circuit.neuron.v_read_v  # (t, n, m)
        shown = min(per_neuron.shape[1], 8 if layer < n_layers else circuit.layer_sizes[-1])
        for j in _telling_neurons(per_neuron[-1], shown):
            line, = ax.plot(times * 1e9, per_neuron[:, j, 0] * 1e3, lw=1.2)
            ax.plot(times * 1e9, per_neuron[:, j, -1] * 1e3, lw=1.0, ls="--", color=line.get_color())
        ax.axvline(first.settling_time_s[0] * 1e9, color="k", lw=0.8, ls=":",
                   label=f"settled (0.1 % V_r): {si(float(first.settling_time_s[0]), 's')}")
        kind = "output" if layer == n_layers else "hidden"
        which = "all" if shown == per_neuron.shape[1] else f"{shown} of {per_neuron.shape[1]} (largest |v⁺−v⁻|)"
        styles = "v⁺ solid, v⁻ dashed" if circuit.compartments_per_neuron > 1 else "one compartment"
        ax.set_title(f"layer {layer} ({kind}): {styles}; {which}", fontsize=9)
        ax.set_xlabel("time (ns)")
        ax.set_ylabel("compartment voltage (mV)")
        ax.legend(fontsize=8, loc="best")
    programmer = result.algorithm.programmer
    plot_device_response(axes[-1], programmer.device_model, circuit.device, programmer.params)
    ax = axes[-2]
    terms = summary["energy_breakdown_j"]
    names, values = list(terms)[::-1], list(terms.values())[::-1]
    bars = ax.barh([n.replace("_", " ") for n in names], [v * 1e12 for v in values], color="tab:blue")
    ax.bar_label(bars, labels=[si(v, "J") for v in values], fontsize=8, padding=3)
    ax.margins(x=0.25)
    ax.axvline(0.0, color="k", lw=0.6)
    ax.set_xlabel("energy per update (pJ)")
    ax.set_title(f"median update: {si(summary['energy_per_update_j'], 'J')} "
                 f"({summary['algo']}, {summary['size']})", fontsize=9)
    settles = result.first_step.settles
    phase = "" if len(settles) == 1 else f" ({next(iter(settles))} phase)"
    fig.suptitle(f"{title_prefix}: {'x'.join(map(str, summary['layers']))}, first example settling "
                 f"from reset{phase}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def device_response_pulses(model, device, programming) -> int:
    """Pulses of a response curve: enough to cross the range at the nominal step, 1.25 times."""
    from .circuit.devices import NeuroSimDevice

    step = model.nominal_step_s(programming, device) if isinstance(model, NeuroSimDevice) else \
        model.nominal_step_s(programming)
    return int(min(max(math.ceil(1.25 * (device.g_max_s - device.g_min_s) / step), 10), 3000))


def plot_device_response(ax, model, device, programming=None, *, n_devices: int = 100, seed: int = 0,
                         label: str | None = None, color=None) -> None:
    """Conductance vs pulse number of ``model``: devices from G_min,d get SET pulses, then as many
    RESET pulses (SET only for one-directional devices); mean ± one standard deviation over
    ``n_devices`` devices."""
    from .circuit.devices import response_curve

    n = device_response_pulses(model, device, programming)
    curve = response_curve(model, n, n_devices=n_devices, seed=seed, device=device, programming=programming)
    mean_us, std_us = curve["g_mean_s"] * 1e6, curve["g_std_s"] * 1e6
    line, = ax.plot(curve["pulse"], mean_us, lw=1.2, color=color, label=label or model.model_name)
    ax.fill_between(curve["pulse"], mean_us - std_us, mean_us + std_us, alpha=0.25, color=line.get_color())
    ax.set_xlabel("pulse number (pulses)")
    ax.set_ylabel("conductance (µS)")
    direction = "SET only" if model.set_only else f"{n} SET, then {n} RESET"
    ax.set_title(f"device response ({model.model_name}): {direction}\nmean ± σ over {n_devices} devices",
                 fontsize=9)


# ------------------------------------------------------------------------------------------
# Size × depth sweeps of DP against EP (python -m sims.compare, notebooks/energy_per_update)

ALGORITHM_LABELS = {"dp": "DP (one settle)", "ep": "EP (free + nudged)",
                    "ep-centered": "centered EP (free, +β, −β)"}
ALGORITHM_COLOURS = {"dp": "tab:blue", "ep": "tab:orange", "ep-centered": "tab:red"}
DEPTH_MARKERS = {1: "o", 2: "s", 3: "^"}

def comparison_rows(size, depth: int, comparison: dict, wall_time_s: float) -> list[dict]:
    """The rows a size × depth sweep records for one configuration: one per algorithm, phase
    and energy columns blank where an algorithm has none."""
    reference = comparison[comparison["reference"]]
    rows = []
    for algo in comparison["algorithms"]:
        figures = comparison[algo]
        row = {"size": f"{size[0]}x{size[1]}", "rows": size[0], "columns": size[1],
               "hidden_layers": depth, "layers": "x".join(map(str, sweep_layers(size, depth))),
               "algo": algo, "samples": comparison["samples"],
               "settling_time_s": figures["settling_time_s"],
               "settling_time_1pct_s": figures["settling_time_1pct_s"]}
        for phase in PHASES:
            row[f"settling_time_{phase}_s"] = figures["settling_time_per_phase_s"].get(phase, "")
        row["energy_per_update_j"] = figures["energy_per_update_j"]
        for term in UPDATE_ENERGY_TERMS:
            row[f"energy_{term}_j"] = figures["energy_breakdown_j"].get(term, 0.0)
        row.update({
            "energy_per_inference_j": figures["energy_per_inference_j"],
            "energy_per_mac_j": figures["energy_per_mac_j"],
            "macs_per_update": figures["macs_per_update"],
            "energy_per_update_ratio_to_dp": ratio(figures["energy_per_update_j"], reference["energy_per_update_j"]),
            "settling_time_ratio_to_dp": ratio(figures["settling_time_s"], reference["settling_time_s"]),
            "fixed_point_error_v": figures["fixed_point_error_v"],
            "not_settled": figures["not_settled"],
            "loss_first": figures["loss_first"], "loss_last": figures["loss_last"],
            "configuration_wall_time_s": wall_time_s,
        })
        rows.append(row)
    return rows



def read_comparison_csv(path) -> list[dict]:
    """Rows of a sweep CSV (``python -m sims.compare``), numbers as numbers (blank cells: NaN)."""
    text_columns = {"size", "layers", "algo"}
    rows = read_csv_rows(path)
    if not rows or "energy_per_update_j" not in rows[0]:
        raise ValueError(f"{path}: not a CSV of a size × depth sweep (no energy_per_update_j column)")
    for row in rows:
        for key, value in row.items():
            if key not in text_columns:
                row[key] = math.nan if value == "" else float(value) if "." in value or "e" in value else int(value)
    return rows
