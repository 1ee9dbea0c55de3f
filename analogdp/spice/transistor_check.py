"""Transistor-level cross-check: the SKY130 network in ngspice against the numba ODE (DESIGN §10.5).

:func:`transistor_cross_check` writes the transistor-level netlist of a circuit
(:mod:`analogdp.spice.transistor_netlist`), runs it in ngspice, settles a reference circuit with
the numba solver over the same window and compares, on ngspice's time points:

- the settled compartment voltages (largest |Δv| at t_stop, relative to V_r);
- the settling times to 0.1 % of V_r (each simulator against its own final value);
- the energy per settle: crossbar + drive resistors + capacitor change, as :mod:`.compare`
  (static power is reported separately: the transistor side's is what its supplies deliver);
- the learning signal: the cosine between the dyad differences v⁺ − v⁻ of every neuron.

``reference`` chooses the numba circuit: ``"ideal"`` (ideal amplifiers, the reference circuit of
DESIGN §3) or ``"macromodel"`` (:func:`analogdp.spice.characterised.characterised_circuit`: the
characterised amplifier parameters and measured static power). The second needs a solver that
models finite amplifiers; until it does, it is refused with a clear error rather than silently
run with ideal ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.integrate import trapezoid

from ..circuit.network import NetworkCircuit
from ..solver import SaveAt, settle
from .compare import settling_time_from_samples, spice_waveforms
from .netlist import SpiceOptions
from .runner import run_ngspice
from .transistor_netlist import TransistorDesign, write_transistor_netlist

REFERENCES = ("ideal", "macromodel")


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
                    passed=self.passed(), failures=self.failures())
        return data


def dyad_differences(circuit: NetworkCircuit, v: np.ndarray) -> np.ndarray:
    """v⁺ − v⁻ of every neuron (first two compartments) from compartment voltages in solver order."""
    if circuit.compartments_per_neuron != 2:
        raise ValueError("dyad differences need two-compartment neurons")
    pairs = np.asarray(v).reshape(-1, 2)
    return pairs[:, 0] - pairs[:, 1]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 0 else (1.0 if not a.any() and not b.any() else 0.0)


def reference_circuit(circuit: NetworkCircuit, reference: str, amplifier_set: str = "sky130-tt") -> NetworkCircuit:
    """The numba circuit the transistor level is compared with (module docstring)."""
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    if reference == "ideal":
        return circuit
    from .characterised import characterised_circuit

    characterised = characterised_circuit(circuit, amplifier_set)
    if not solver_models_amplifiers():
        raise ValueError("reference 'macromodel' needs a numba solver that models finite amplifiers "
                         "(NetworkCircuit.amplifier); this one treats every amplifier as ideal")
    return characterised


def solver_models_amplifiers() -> bool:
    """Whether the numba solver responds to NetworkCircuit.amplifier: a one-neuron circuit with a
    10 dB amplifier must settle elsewhere than with an ideal one."""
    from ..circuit.amplifiers import AmplifierParams

    ideal = NetworkCircuit.from_weights([np.array([[1.0]])], [np.array([0.0])])
    finite = replace(ideal, amplifier=AmplifierParams(a0_db=10.0, gbw_hz=1e9))
    x = np.array([[0.5]])
    try:
        v_ideal = settle(ideal, x, None, t_end_s=100e-9, allow_unsettled=True).v_final_v
        v_finite = settle(finite, x, None, t_end_s=100e-9, allow_unsettled=True).v_final_v
    except ValueError:
        return False
    return not np.allclose(v_ideal, v_finite, rtol=0, atol=1e-6)


def transistor_cross_check(circuit: NetworkCircuit, x, y=None, *, reference: str = "ideal",
                           amplifier_set: str = "sky130-tt", design: TransistorDesign = TransistorDesign(),
                           t_stop_s: float = 400e-9, t_step_s: float = 1e-9, v0=None,
                           options: SpiceOptions = SpiceOptions(include_op=False),
                           tolerances: TransistorTolerances = TransistorTolerances(),
                           timeout_s: float | None = None, netlist_path=None) -> TransistorCheck:
    """Run ``circuit`` at transistor level in ngspice and ``reference`` in the numba solver;
    compare (module docstring). ``netlist_path`` also keeps the netlist that was run."""
    numba_circuit = reference_circuit(circuit, reference, amplifier_set)
    x = np.asarray(x, dtype=np.float64)
    v0_v = np.zeros(circuit.n_compartments) if v0 is None else np.asarray(v0, dtype=np.float64)
    options = replace(options, energy=True)
    netlist = write_transistor_netlist(circuit, x, y, netlist_path, t_stop_s=t_stop_s, t_step_s=t_step_s,
                                       v0=v0_v, design=design, options=options)
    run = run_ngspice(netlist, timeout_s=timeout_s)
    spice = spice_waveforms(circuit, run, v0_v)
    supply = next(f for name, f in run.files.items() if name.endswith(".supply.data"))
    supply_energy_j = float(trapezoid(supply.vectors["p_supply_w"], supply.scale))

    result = settle(numba_circuit, x[None, :], None if y is None else np.asarray(y)[None, :], v0=v0_v[None, :],
                    saveat=SaveAt(ts_s=spice.t_s), t_end_s=float(spice.t_s[-1]), allow_unsettled=True)
    numba_v = result.saved_voltages_v[0]
    v_r = circuit.neuron.v_read_v
    terms = result.energy_to_end.as_dict(0)
    final_dev = float(np.abs(spice.v_v[-1] - numba_v[-1]).max())
    dyad = cosine(dyad_differences(circuit, spice.v_v[-1]), dyad_differences(circuit, numba_v[-1]))
    return TransistorCheck(
        layer_sizes=tuple(circuit.layer_sizes), neuron_kind=circuit.neuron_kind.name, reference=reference,
        corner=design.corner, t_stop_s=float(spice.t_s[-1]), n_time_points=int(spice.t_s.size),
        final_abs_dev_v=final_dev, final_abs_dev_rel_v_r=final_dev / v_r,
        settling_time_s=settling_time_from_samples(spice.t_s, spice.v_v, 1e-3 * v_r),
        settling_time_reference_s=settling_time_from_samples(spice.t_s, numba_v, 1e-3 * v_r),
        energy_j=sum(spice.energy_terms_j[k] for k in ("crossbar", "neuron", "capacitor")),
        energy_reference_j=sum(terms[k] for k in ("crossbar", "neuron", "capacitor")),
        dyad_cosine=dyad, supply_energy_j=supply_energy_j,
        static_energy_reference_j=numba_circuit.neuron.p_amp_static_w * numba_circuit.n_amplifiers
        * float(spice.t_s[-1]),
        wall_time_s=run.wall_time_s, tolerances=tolerances)
