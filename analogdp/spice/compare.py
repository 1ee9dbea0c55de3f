"""Cross-check: the same circuit and input in ngspice and in the numba solver.

Both simulate the window [0, t_stop] from the same initial voltages. The comparison is made on
ngspice's own time points (the numba solver saves its state exactly there, so nothing is
interpolated); ngspice-39 does not report the t = 0 point of a ``uic`` transient, so the known
initial state is put in front.

Figures (DESIGN §4 definitions, each simulator against its own final value):

- ``max_abs_dev_v``: max over time points and compartments of |v_ngspice − v_numba|;
- ``final_abs_dev_v``: the same at t_stop;
- ``settling_time_s`` / ``settling_time_numba_s``: earliest t after which every compartment
  stays within 0.1 % V_r of its value at t_stop (ngspice: linear interpolation between its
  points; numba: its own dense output), also at 1 %;
- ``energy_j`` / ``energy_numba_j``: the energy the circuit takes over the whole window =
  crossbar dissipation + drive-resistor dissipation + change of capacitor energy (the numba
  solver's ``energy_to_end`` crossbar + neuron + capacitor). From ngspice: ∫ p_crossbar_w dt
  (Σ over line drivers of v(line)·i(sense)) + ∫ p_neuron_w dt (Σ (v_t − v_s)²/R_m) + ½ C_m Σ
  (v(t_stop)² − v(0)²), trapezoidal on ngspice's points. Static amplifier power is left out:
  it is count × P_amp × t in both by construction (the netlist has exactly the inventory's B
  sources), so it would only dilute the comparison; it is reported separately.
- wall times: ngspice's load-and-run time; the numba solver's warm ``settle`` over the same
  window (fixed ``t_end_s``, no saved points; the best of a few repeats after a warm-up call).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy.integrate import trapezoid

from ..circuit.network import NetworkCircuit
from ..names import WIRE_TERM
from ..solver import SaveAt, SettleCriteria, settle
from .netlist import SpiceOptions, compartment_nodes, write_netlist
from .runner import SpiceRun, run_ngspice


@dataclass(frozen=True)
class Tolerances:
    """Agreement the cross-check requires (V_r = 0.2 V)."""

    max_abs_dev_v: float = 1e-3
    final_abs_dev_v: float = 10e-6
    settling_time_rel: float = 0.02
    energy_rel: float = 0.01


TOLERANCES = Tolerances()


@dataclass
class CrossCheck:
    """Outcome of :func:`cross_check`; SI units, JSON-ready through :meth:`as_dict`."""

    layer_sizes: tuple[int, ...]
    neuron_kind: str
    scheme: str
    t_stop_s: float
    n_time_points: int
    max_abs_dev_v: float
    final_abs_dev_v: float
    settling_time_s: float
    settling_time_numba_s: float
    settling_time_1pct_s: float
    settling_time_1pct_numba_s: float
    energy_j: float
    energy_numba_j: float
    energy_terms_j: dict[str, float]
    energy_terms_numba_j: dict[str, float]
    energy_conservation_residual_j: float
    amplifier_static_energy_j: float
    wall_time_s: float
    wall_time_numba_s: float
    ngspice_version: str
    runner: str
    operating_point_abs_dev_v: float | None = None
    tolerances: Tolerances = field(default_factory=Tolerances)
    # why the numba side stopped short of t_stop_s ('' when it covered the window); its
    # unreached points are then not compared, and the check fails for that reason alone
    numba_incomplete: str = ""

    @property
    def settling_time_rel_dev(self) -> float:
        return _relative(self.settling_time_s, self.settling_time_numba_s)

    @property
    def energy_rel_dev(self) -> float:
        return _relative(self.energy_j, self.energy_numba_j)

    @property
    def wall_time_ratio(self) -> float:
        """ngspice wall time / numba wall time."""
        return self.wall_time_s / self.wall_time_numba_s

    def failures(self, tolerances: Tolerances | None = None) -> list[str]:
        """What is outside ``tolerances`` (default: the ones this check was made with)."""
        tol = tolerances or self.tolerances
        if self.numba_incomplete:
            return [f"numba {self.numba_incomplete}; the waveforms were not compared (a solver limit, "
                    "not a disagreement of the physics)"]
        problems = []
        if not self.max_abs_dev_v <= tol.max_abs_dev_v:
            problems.append(f"max |dv| {self.max_abs_dev_v:.3g} V > {tol.max_abs_dev_v:.3g} V")
        if not self.final_abs_dev_v <= tol.final_abs_dev_v:
            problems.append(f"final |dv| {self.final_abs_dev_v:.3g} V > {tol.final_abs_dev_v:.3g} V")
        if not self.settling_time_rel_dev <= tol.settling_time_rel:
            problems.append(f"settling times {self.settling_time_s:.4g} s vs {self.settling_time_numba_s:.4g} s "
                            f"differ by {100 * self.settling_time_rel_dev:.3g} % > {100 * tol.settling_time_rel:.3g} %")
        if not self.energy_rel_dev <= tol.energy_rel:
            problems.append(f"energies {self.energy_j:.5g} J vs {self.energy_numba_j:.5g} J differ by "
                            f"{100 * self.energy_rel_dev:.3g} % > {100 * tol.energy_rel:.3g} %")
        return problems

    def passed(self, tolerances: Tolerances | None = None) -> bool:
        return not self.failures(tolerances)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["layer_sizes"] = list(self.layer_sizes)
        data["tolerances"] = asdict(self.tolerances)
        data.update(settling_time_rel_dev=self.settling_time_rel_dev, energy_rel_dev=self.energy_rel_dev,
                    wall_time_ratio=self.wall_time_ratio, passed=self.passed(), failures=self.failures())
        return data


def _relative(value: float, reference: float) -> float:
    if reference == 0.0:
        return 0.0 if value == 0.0 else float("inf")
    return abs(value - reference) / abs(reference)


def settling_time_from_samples(t_s: np.ndarray, v: np.ndarray, band_v: float) -> float:
    """Earliest t after which every column of ``v`` (time × compartments) stays within
    ``band_v`` of its last value; the crossing is interpolated linearly between samples."""
    deviation = np.abs(v - v[-1])
    outside = np.flatnonzero(deviation.max(axis=1) > band_v)
    if outside.size == 0:
        return float(t_s[0])
    i = outside[-1]
    if i == len(t_s) - 1:
        return float(t_s[-1])
    # every compartment outside the band at t_i crosses into it before t_{i+1}; the last one decides
    d0, d1 = deviation[i], deviation[i + 1]
    leaving = d0 > band_v
    fraction = (d0[leaving] - band_v) / (d0[leaving] - d1[leaving])
    return float(t_s[i] + fraction.max() * (t_s[i + 1] - t_s[i]))


@dataclass
class SpiceWaveforms:
    """The compartment voltages and energies of an ngspice run of a written netlist."""

    t_s: np.ndarray
    v_v: np.ndarray  # time × compartments, solver order
    energy_terms_j: dict[str, float]
    operating_point_v: np.ndarray | None


def spice_waveforms(circuit: NetworkCircuit, run: SpiceRun, v0_v: np.ndarray) -> SpiceWaveforms:
    """Compartment voltages (t = 0 put in front when ngspice omits it) and the energy terms."""
    nodes = compartment_nodes(circuit)
    t = run.time_s
    v = np.column_stack([run.vector(f"v({node})") for node in nodes])
    powers = {name: run.vector(name) for name in ("p_crossbar_w", "p_neuron_w", "p_amplifier_w")}
    if t[0] > 0.0:
        t = np.concatenate([[0.0], t])
        v = np.vstack([v0_v[None, :], v])
        # the power right after t = 0 is the first reported value, to first order in t_0 / τ
        powers = {name: np.concatenate([p[:1], p]) for name, p in powers.items()}
    integral = {name: float(trapezoid(p, t)) for name, p in powers.items()}
    capacitor = 0.5 * circuit.neuron.c_m_f * float(np.sum(v[-1] ** 2) - np.sum(v0_v ** 2))
    terms = {"crossbar": integral["p_crossbar_w"], "neuron": integral["p_neuron_w"],
             "capacitor": capacitor,
             "delivered": integral["p_crossbar_w"] + integral["p_amplifier_w"]}
    op = next((f for name, f in run.files.items() if name.endswith(".op.data")), None)
    op_v = None if op is None else np.array([op.vectors[f"v({node})"][0] for node in nodes])
    return SpiceWaveforms(t, v, terms, op_v)


def time_numba_settle(circuit: NetworkCircuit, x, y, v0, t_stop_s: float, *, repeats: int = 5,
                      budget_s: float = 2.0) -> float:
    """Best wall time of a warm numba settle over [0, t_stop_s] (one warm-up call first)."""
    args = dict(v0=None if v0 is None else np.asarray(v0)[None, :], t_end_s=t_stop_s, allow_unsettled=True)
    y_batch = None if y is None else np.asarray(y)[None, :]
    x_batch = np.asarray(x)[None, :]
    settle(circuit, x_batch, y_batch, **args)
    best = np.inf
    spent = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        settle(circuit, x_batch, y_batch, **args)
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        spent += elapsed
        if spent > budget_s:
            break
    return float(best)


def cross_check(circuit: NetworkCircuit, x, y=None, *, t_stop_s: float = 200e-9, t_step_s: float = 1e-9,
                runner: str = "subprocess", v0=None, options: SpiceOptions = SpiceOptions(),
                tolerances: Tolerances = TOLERANCES, time_numba: bool = True,
                criteria: SettleCriteria = SettleCriteria(), timeout_s: float | None = None) -> CrossCheck:
    """Simulate ``circuit`` with input ``x`` ((n_0,)) and target ``y`` ((n_L,) or None) in
    ngspice (``runner``) and in the numba solver over [0, t_stop_s]; compare (module docstring).
    ``timeout_s`` ends an ngspice run that takes longer (NgspiceError), subprocess runner only."""
    x = np.asarray(x, dtype=np.float64)
    v0_v = np.zeros(circuit.n_compartments) if v0 is None else np.asarray(v0, dtype=np.float64)
    options = replace(options, energy=True)  # the energy comparison needs the power vectors
    netlist = write_netlist(circuit, x, y, t_stop_s=t_stop_s, t_step_s=t_step_s, v0=v0_v, options=options)
    run = run_ngspice(netlist, runner=runner, timeout_s=timeout_s)
    spice = spice_waveforms(circuit, run, v0_v)

    result = settle(circuit, x[None, :], None if y is None else np.asarray(y)[None, :], v0=v0_v[None, :],
                    saveat=SaveAt(ts_s=spice.t_s), t_end_s=float(spice.t_s[-1]), allow_unsettled=True,
                    criteria=criteria)
    incomplete = result.not_settled_reason(0) if result.t_final_s[0] < spice.t_s[-1] else ""
    numba_v = result.saved_voltages_v[0]
    reached = spice.t_s <= result.t_final_s[0]
    deviation = np.abs(spice.v_v - numba_v)
    deviation[~reached] = np.nan
    v_r = circuit.neuron.v_read_v
    numba_terms = result.energy_to_end.as_dict(0)
    numba_terms["delivered"] = float(result.energy_to_end.delivered[0])
    comparable = ("crossbar", "neuron", "capacitor")
    return CrossCheck(
        layer_sizes=tuple(circuit.layer_sizes), neuron_kind=circuit.neuron_kind.name, scheme=circuit.scheme,
        t_stop_s=float(spice.t_s[-1]), n_time_points=int(spice.t_s.size),
        max_abs_dev_v=float(deviation.max()), final_abs_dev_v=float(deviation[-1].max()),
        settling_time_s=settling_time_from_samples(spice.t_s, spice.v_v, 1e-3 * v_r),
        settling_time_numba_s=float(result.settling_time_s[0]),
        settling_time_1pct_s=settling_time_from_samples(spice.t_s, spice.v_v, 1e-2 * v_r),
        settling_time_1pct_numba_s=float(result.settling_time_1pct_s[0]),
        energy_j=sum(spice.energy_terms_j[k] for k in comparable),
        # ngspice's crossbar power is what the line drivers deliver: devices and wires together
        energy_numba_j=sum(numba_terms[k] for k in comparable) + numba_terms.get(WIRE_TERM, 0.0),
        energy_terms_j=spice.energy_terms_j, energy_terms_numba_j=numba_terms,
        energy_conservation_residual_j=spice.energy_terms_j["delivered"]
        - sum(spice.energy_terms_j[k] for k in comparable),
        amplifier_static_energy_j=circuit.neuron.p_amp_static_w * circuit.n_amplifiers * float(spice.t_s[-1]),
        wall_time_s=run.wall_time_s,
        wall_time_numba_s=time_numba_settle(circuit, x, y, v0_v, float(spice.t_s[-1])) if time_numba else float("nan"),
        ngspice_version=run.ngspice_version, runner=run.runner,
        operating_point_abs_dev_v=None if spice.operating_point_v is None
        else float(np.abs(spice.operating_point_v - numba_v[-1]).max()),
        tolerances=tolerances, numba_incomplete=incomplete,
    )
