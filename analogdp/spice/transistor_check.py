"""Transistor-level cross-check: the SKY130 network in ngspice against the numba ODE (DESIGN §10.5).

:func:`transistor_cross_check` writes the transistor-level netlist of a circuit
(:mod:`analogdp.spice.transistor_netlist`), runs it in ngspice, settles a reference circuit with
the numba solver over the same window and compares, on ngspice's time points:

- the settled compartment voltages (largest |Δv| at t_stop, relative to V_r);
- the settling times to 0.1 % of V_r (each simulator against its own final value);
- the energy per settle: crossbar + drive resistors + capacitor change, as :mod:`.compare`
  (static power is reported separately: the transistor side's is what its supplies deliver);
- the learning signal: the cosine between the dyad differences v⁺ − v⁻ of every neuron.

``reference`` chooses the ODE it is compared with:

- ``"ideal"``: the numba solver, ideal amplifiers (the reference circuit of DESIGN §3);
- ``"macromodel"``: the numba solver on :func:`analogdp.spice.characterised.characterised_circuit`:
  the transistor design's amplifiers per stage kind (line-holder TIAs at the design's noise gain,
  the compartment cell settling onto its measured transfer curve, line-holder output followers)
  and the measured static power; ``"macromodel-clip"`` the same with the cell's swing as the clip
  instead of the curve; ``"macromodel-uniform"`` the line holder's model for every stage. These
  need a solver that models finite amplifiers and are refused with a clear error otherwise;
- ``"transfer-curve"``: where the hard clip no longer holds, the hidden compartments follow the
  compartment cell's measured DC transfer curve (:func:`analogdp.spice.characterised.transfer_activation`,
  tabulated and interpolated) instead of clip(u, 0, 1); the other amplifiers stay ideal. The numba
  kernels know only the named activations, so this ODE is integrated by the SciPy reference
  (:mod:`analogdp.solver.reference`, same equations from the same circuit description).

The transistor run and the comparison are separate steps (:func:`run_transistor_level`,
:func:`compare_with_reference`): one ngspice run, the slow part, serves every reference, and a
:class:`TransistorRun` can be saved and compared again later (``TransistorRun.save``/``load``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scipy.integrate import trapezoid

from ..circuit.network import NetworkCircuit
from ..solver import SaveAt, settle
from .compare import settling_time_from_samples, spice_waveforms
from .netlist import SpiceOptions
from .runner import run_ngspice
from .transistor_netlist import TransistorDesign, write_transistor_netlist

REFERENCES = ("ideal", "macromodel", "transfer-curve", "macromodel-clip", "macromodel-uniform")
ENERGY_TERMS = ("crossbar", "neuron", "capacitor")
# The transistor network rings (its amplifier poles inside the DP loop) and comes to rest after
# 30-37 τ on 6-4-3 and 16-8-4; its windows are 40 τ, twice the ideal cross-check's 20 τ.
TRANSISTOR_WINDOW_TAU = 40.0
# ngspice seconds per transistor-level cell and τ of window, measured on an idle core (ngspice-39):
# 6-4-3 (40 cells) over 40 τ in 15.6 s.
NGSPICE_S_PER_CELL_TAU = 15.6 / (40 * 40)


def transistor_cells(circuit: NetworkCircuit) -> int:
    """Cells of the transistor-level netlist: a line holder per row (bias rows included) and per
    column of each ± pair, and one cell per compartment."""
    rows = sum(x.n_rows for x in circuit.crossbars)
    columns = sum(2 * x.n_columns for x in circuit.crossbars)
    return int(rows + columns + circuit.n_compartments)


def estimate_transistor_seconds(circuit: NetworkCircuit, t_stop_s: float) -> float:
    """Estimated ngspice time of a transistor-level run (linear in cells and window; ±50 %)."""
    return NGSPICE_S_PER_CELL_TAU * transistor_cells(circuit) * t_stop_s / circuit.neuron.tau_s


@dataclass(frozen=True)
class TransistorTolerances:
    """The acceptance bounds of DESIGN §10.5."""

    final_abs_dev_rel_v_r: float = 0.01
    settling_time_rel: float = 0.10
    energy_rel: float = 0.10
    dyad_cosine: float = 0.99


@dataclass
class TransistorCheck:
    """Outcome of :func:`transistor_cross_check` (SI units)."""

    layer_sizes: tuple[int, ...]
    neuron_kind: str
    reference: str
    corner: str
    t_stop_s: float
    n_time_points: int
    final_abs_dev_v: float
    final_abs_dev_rel_v_r: float
    settling_time_s: float
    settling_time_reference_s: float
    energy_j: float
    energy_reference_j: float
    dyad_cosine: float
    supply_energy_j: float
    static_energy_reference_j: float
    wall_time_s: float
    tolerances: TransistorTolerances = TransistorTolerances()

    @property
    def settling_time_rel_dev(self) -> float:
        return abs(self.settling_time_s - self.settling_time_reference_s) / self.settling_time_reference_s

    @property
    def energy_rel_dev(self) -> float:
        return abs(self.energy_j - self.energy_reference_j) / abs(self.energy_reference_j)

    @property
    def settled_in_window(self) -> bool:
        """Whether the transistor network came to rest in the first 90 % of the window (if not, its
        'settled' voltages are a snapshot and its settling time is the window's end)."""
        return self.settling_time_s <= 0.9 * self.t_stop_s

    def failures(self) -> list[str]:
        tol = self.tolerances
        problems = []
        if not self.final_abs_dev_rel_v_r <= tol.final_abs_dev_rel_v_r:
            problems.append(f"settled voltages differ by {100 * self.final_abs_dev_rel_v_r:.2f} % of V_r "
                            f"> {100 * tol.final_abs_dev_rel_v_r:.3g} %")
        if not self.settling_time_rel_dev <= tol.settling_time_rel:
            problems.append(f"settling times {self.settling_time_s * 1e9:.1f} ns vs "
                            f"{self.settling_time_reference_s * 1e9:.1f} ns differ by "
                            f"{100 * self.settling_time_rel_dev:.1f} % > {100 * tol.settling_time_rel:.3g} %")
        if not self.energy_rel_dev <= tol.energy_rel:
            problems.append(f"energies {self.energy_j:.4g} J vs {self.energy_reference_j:.4g} J differ by "
                            f"{100 * self.energy_rel_dev:.1f} % > {100 * tol.energy_rel:.3g} %")
        if not self.dyad_cosine >= tol.dyad_cosine:
            problems.append(f"dyad-difference cosine {self.dyad_cosine:.4f} < {tol.dyad_cosine}")
        return problems

    def passed(self) -> bool:
        return not self.failures()

    def as_dict(self) -> dict:
        data = asdict(self)
        data["layer_sizes"] = list(self.layer_sizes)
        data.update(settling_time_rel_dev=self.settling_time_rel_dev, energy_rel_dev=self.energy_rel_dev,
                    settled_in_window=self.settled_in_window, passed=self.passed(), failures=self.failures())
        return data


@dataclass
class TransistorRun:
    """What one transistor-level ngspice run leaves for the comparison (SI units): the compartment
    voltages on ngspice's time points (solver order), the energy terms, what the supplies delivered."""

    layer_sizes: tuple[int, ...]
    neuron_kind: str
    corner: str
    t_s: np.ndarray
    v_v: np.ndarray
    v0_v: np.ndarray
    energy_terms_j: dict[str, float]
    supply_energy_j: float
    wall_time_s: float

    def save(self, path: str | Path) -> None:
        """Write to ``path`` (.npz) through a temporary file renamed into place."""
        path = Path(path)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
        os.close(handle)
        try:
            np.savez(tmp, layer_sizes=np.array(self.layer_sizes), neuron_kind=self.neuron_kind, corner=self.corner,
                     t_s=self.t_s, v_v=self.v_v, v0_v=self.v0_v, supply_energy_j=self.supply_energy_j,
                     wall_time_s=self.wall_time_s, energy_names=np.array(list(self.energy_terms_j)),
                     energy_values_j=np.array(list(self.energy_terms_j.values())))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> TransistorRun:
        with np.load(path) as data:
            return cls(layer_sizes=tuple(int(n) for n in data["layer_sizes"]), neuron_kind=str(data["neuron_kind"]),
                       corner=str(data["corner"]), t_s=data["t_s"], v_v=data["v_v"], v0_v=data["v0_v"],
                       energy_terms_j={str(k): float(v) for k, v in zip(data["energy_names"],
                                                                       data["energy_values_j"])},
                       supply_energy_j=float(data["supply_energy_j"]), wall_time_s=float(data["wall_time_s"]))


def dyad_differences(circuit: NetworkCircuit, v: np.ndarray) -> np.ndarray:
    """v⁺ − v⁻ of every neuron (first two compartments) from compartment voltages in solver order."""
    if circuit.compartments_per_neuron != 2:
        raise ValueError("dyad differences need two-compartment neurons")
    pairs = np.asarray(v).reshape(-1, 2)
    return pairs[:, 0] - pairs[:, 1]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 0 else (1.0 if not a.any() and not b.any() else 0.0)


def reference_circuit(circuit: NetworkCircuit, reference: str, amplifier_set: str = "sky130-tt", *,
                      design: TransistorDesign = TransistorDesign()) -> NetworkCircuit:
    """The circuit the transistor level is compared with (module docstring)."""
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    if reference == "ideal":
        return circuit
    from .characterised import characterised_circuit, uniform_characterised_circuit, with_measured_static_power

    if reference == "transfer-curve":
        return with_measured_static_power(circuit, amplifier_set)
    if reference == "macromodel-uniform":
        return uniform_characterised_circuit(circuit, amplifier_set)
    return characterised_circuit(circuit, amplifier_set, design=design,
                                 measured_curve=reference == "macromodel")


def run_transistor_level(circuit: NetworkCircuit, x, y=None, *, design: TransistorDesign = TransistorDesign(),
                         t_stop_s: float = 400e-9, t_step_s: float = 1e-9, v0=None,
                         options: SpiceOptions = SpiceOptions(include_op=False), timeout_s: float | None = None,
                         netlist_path=None) -> TransistorRun:
    """Write the transistor-level netlist of ``circuit`` and run it in ngspice (``netlist_path``
    also keeps the netlist that was run)."""
    x = np.asarray(x, dtype=np.float64)
    v0_v = np.zeros(circuit.n_compartments) if v0 is None else np.asarray(v0, dtype=np.float64)
    options = replace(options, energy=True)
    netlist = write_transistor_netlist(circuit, x, y, netlist_path, t_stop_s=t_stop_s, t_step_s=t_step_s,
                                       v0=v0_v, design=design, options=options)
    run = run_ngspice(netlist, timeout_s=timeout_s)
    spice = spice_waveforms(circuit, run, v0_v)
    supply = next(f for name, f in run.files.items() if name.endswith(".supply.data"))
    return TransistorRun(layer_sizes=tuple(circuit.layer_sizes), neuron_kind=circuit.neuron_kind.name,
                         corner=design.corner, t_s=spice.t_s, v_v=spice.v_v, v0_v=v0_v,
                         energy_terms_j=dict(spice.energy_terms_j),
                         supply_energy_j=float(trapezoid(supply.vectors["p_supply_w"], supply.scale)),
                         wall_time_s=run.wall_time_s)


def reference_waveforms(circuit: NetworkCircuit, x, y, t_s: np.ndarray, v0_v: np.ndarray, *,
                        reference: str = "ideal", amplifier_set: str = "sky130-tt",
                        design: TransistorDesign = TransistorDesign()) -> tuple[np.ndarray, float, float]:
    """The reference ODE on the time points ``t_s``: compartment voltages (time × compartments),
    energy per settle (crossbar + R_m + capacitor, J) and static amplifier energy over the window (J)."""
    numba_circuit = reference_circuit(circuit, reference, amplifier_set, design=design)
    x = np.asarray(x, dtype=np.float64)
    static_j = numba_circuit.neuron.p_amp_static_w * numba_circuit.n_amplifiers * float(t_s[-1])
    if reference == "transfer-curve":
        return (*_transfer_curve_waveforms(numba_circuit, x, y, t_s, v0_v, amplifier_set), static_j)
    result = settle(numba_circuit, x[None, :], None if y is None else np.asarray(y)[None, :], v0=v0_v[None, :],
                    saveat=SaveAt(ts_s=t_s), t_end_s=float(t_s[-1]), allow_unsettled=True)
    terms = result.energy_to_end.as_dict(0)
    return result.saved_voltages_v[0], float(sum(terms[k] for k in ENERGY_TERMS)), static_j


def _transfer_curve_waveforms(circuit: NetworkCircuit, x, y, t_s, v0_v, amplifier_set: str):
    from ..solver.reference import solve_ivp_reference
    from .characterised import transfer_activation

    activation = transfer_activation(amplifier_set, circuit.neuron.v_read_v)
    solution = solve_ivp_reference(circuit, x, y, t_stop_s=float(t_s[-1]), t_eval_s=t_s, v0=v0_v, rtol=1e-8,
                                   atol_fraction=1e-9, hidden_activation=activation)
    if not solution.success:
        raise RuntimeError(f"the transfer-curve ODE failed: {solution.message}")
    n = circuit.n_compartments
    v = solution.y[:n].T
    r_m_j, crossbar_j = solution.y[n + 1, -1], solution.y[n + 2, -1]
    capacitor_j = 0.5 * circuit.neuron.c_m_f * float(np.sum(v[-1] ** 2) - np.sum(v0_v ** 2))
    return v, float(crossbar_j + r_m_j + capacitor_j)


def compare_with_reference(circuit: NetworkCircuit, x, y, run: TransistorRun, *, reference: str = "ideal",
                           amplifier_set: str = "sky130-tt", design: TransistorDesign = TransistorDesign(),
                           tolerances: TransistorTolerances = TransistorTolerances()) -> TransistorCheck:
    """Compare a transistor-level run of ``circuit`` (input ``x``, target ``y``) with ``reference``."""
    if tuple(circuit.layer_sizes) != tuple(run.layer_sizes) or circuit.neuron_kind.name != run.neuron_kind:
        raise ValueError(f"run of {run.layer_sizes} {run.neuron_kind} does not belong to circuit "
                         f"{tuple(circuit.layer_sizes)} {circuit.neuron_kind.name}")
    reference_v, reference_energy_j, static_j = reference_waveforms(
        circuit, x, y, run.t_s, run.v0_v, reference=reference, amplifier_set=amplifier_set, design=design)
    v_r = circuit.neuron.v_read_v
    final_dev = float(np.abs(run.v_v[-1] - reference_v[-1]).max())
    dyad = cosine(dyad_differences(circuit, run.v_v[-1]), dyad_differences(circuit, reference_v[-1]))
    return TransistorCheck(
        layer_sizes=tuple(circuit.layer_sizes), neuron_kind=circuit.neuron_kind.name, reference=reference,
        corner=run.corner, t_stop_s=float(run.t_s[-1]), n_time_points=int(run.t_s.size),
        final_abs_dev_v=final_dev, final_abs_dev_rel_v_r=final_dev / v_r,
        settling_time_s=settling_time_from_samples(run.t_s, run.v_v, 1e-3 * v_r),
        settling_time_reference_s=settling_time_from_samples(run.t_s, reference_v, 1e-3 * v_r),
        energy_j=sum(run.energy_terms_j[k] for k in ENERGY_TERMS), energy_reference_j=reference_energy_j,
        dyad_cosine=dyad, supply_energy_j=run.supply_energy_j, static_energy_reference_j=static_j,
        wall_time_s=run.wall_time_s, tolerances=tolerances)


def transistor_cross_check(circuit: NetworkCircuit, x, y=None, *, reference: str = "ideal",
                           amplifier_set: str = "sky130-tt", design: TransistorDesign = TransistorDesign(),
                           t_stop_s: float = 400e-9, t_step_s: float = 1e-9, v0=None,
                           options: SpiceOptions = SpiceOptions(include_op=False),
                           tolerances: TransistorTolerances = TransistorTolerances(),
                           timeout_s: float | None = None, netlist_path=None) -> TransistorCheck:
    """Run ``circuit`` at transistor level in ngspice and ``reference`` as an ODE; compare (module
    docstring). ``netlist_path`` also keeps the netlist that was run."""
    # refuse an unavailable reference before ngspice runs
    reference_circuit(circuit, reference, amplifier_set, design=design)
    run = run_transistor_level(circuit, x, y, design=design, t_stop_s=t_stop_s, t_step_s=t_step_s, v0=v0,
                               options=options, timeout_s=timeout_s, netlist_path=netlist_path)
    return compare_with_reference(circuit, x, y, run, reference=reference, amplifier_set=amplifier_set,
                                  design=design, tolerances=tolerances)
