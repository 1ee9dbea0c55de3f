"""Characterised amplifiers: the SKY130 cells' measured figures as macromodel parameters and as the
static power of every amplifier of a network (DESIGN §10.4).

A committed amplifier set (``analogdp/spice/amplifier_sets/NAME.json``, written by
``python -m sims.cells --amplifiers-json``) holds, per cell, the figures measured in ngspice at
one corner and temperature. This module maps them onto

- :class:`~analogdp.circuit.amplifiers.AmplifierParams` (A0, GBW, output swing, slew rate,
  offset σ) per cell: :func:`amplifier_params`;
- the static power of each amplifier kind of :meth:`NetworkCircuit.amplifier_inventory`, which
  replaces the assumed 1 µW per amplifier: :func:`static_power_w`, :func:`with_measured_static_power`.

Which cell realises which amplifier (the transistor-level netlist,
:mod:`analogdp.spice.transistor_netlist`):

==========================  =================================================================
inventory kind              cell and static power
==========================  =================================================================
row_drivers, column_drivers line holder (TIA) with its class-A output stage scaled to the line's
                            largest current: measured P(line holder) + 1.8 V·(m − 1)·4 µA
compartment_drivers         hidden: the clamped compartment cell; output layer: a line holder
forward_sense, backward_    one line holder each: the summing amplifier that forms a (b) from the
sense, row_signal_buffers,  TIA outputs, the dyad mean, the nudge (behavioural in the netlist;
nudge_sources               charged here as the amplifier a chip needs for it)
==========================  =================================================================
"""

from __future__ import annotations

import math
from dataclasses import fields, replace

import numpy as np

from ..circuit.amplifiers import AmplifierParams, StageAmplifierParams
from ..circuit.network import NetworkCircuit
from . import sky130
from .transistor_netlist import TransistorDesign

LINE_HOLDER_KINDS = ("row_drivers", "column_drivers", "feedback_line_drivers")
SUMMING_KINDS = ("forward_sense", "backward_sense", "row_signal_buffers", "nudge_sources")


def amplifier_params(cell: str, name: str = "sky130-tt", *, offset_seed: int = 0) -> AmplifierParams:
    """The single-pole macromodel of ``cell`` (``line_holder`` or ``compartment``) from set ``name``."""
    cells = sky130.load_characterised(name)["cells"]
    if cell not in cells:
        raise ValueError(f"cell must be one of {tuple(cells)}, got {cell!r}")
    f = cells[cell]
    return AmplifierParams(a0_db=float(f["a0_db"]), gbw_hz=float(f["gbw_hz"]),
                           rail_low_v=float(f["output_low_v"]), rail_high_v=float(f["output_high_v"]),
                           slew_v_per_s=float(f["slew_rate_v_per_s"]), offset_sigma_v=float(f["offset_sigma_v"]),
                           offset_seed=offset_seed)


def transfer_curve(name: str = "sky130-tt") -> tuple[np.ndarray, np.ndarray]:
    """The compartment's measured DC transfer curve: input u (in units of V_r) and output (V)."""
    curve = sky130.load_characterised(name)["transfer_curve_compartment"]
    return np.asarray(curve["u"], dtype=float), np.asarray(curve["v_v"], dtype=float)


def characterisation_v_r_v(name: str = "sky130-tt") -> float:
    """The V_r (clamp rail) the set was measured at (sets written before it was recorded: the
    characterisation's default, 0.2 V)."""
    return float(sky130.load_characterised(name).get("v_r_v", sky130.CHARACTERISATION_V_R_V))


def transfer_activation(name: str = "sky130-tt", v_r_v: float | None = None):
    """The compartment's measured transfer curve as an activation f(u) = V_out(u·V_r)/V_r, linearly
    interpolated between the measured points and held at the end values beyond them (both ends
    lie on the cell's output limits). ``v_r_v``, when given, must be the set's V_r: the curve is
    a measurement at that rail, not a shape that rescales."""
    u_table, v_table = transfer_curve(name)
    v_r_set = characterisation_v_r_v(name)
    if v_r_v is not None and not math.isclose(v_r_v, v_r_set, rel_tol=1e-9):
        raise ValueError(f"v_r_v {v_r_v!r} V differs from the V_r the set {name!r} was measured at ({v_r_set} V)")
    if u_table.size < 2 or np.any(np.diff(u_table) <= 0):
        raise ValueError(f"amplifier set {name!r}: the transfer curve's u must increase")
    f_table = v_table / v_r_set

    def activation(u: np.ndarray) -> np.ndarray:
        return np.interp(u, u_table, f_table)

    return activation


def line_holder_multipliers(circuit: NetworkCircuit) -> tuple[np.ndarray, np.ndarray]:
    """Output-stage multipliers of the row holders and of the column holders of ``circuit``."""
    from .transistor_netlist import line_holder_multiplier

    rows = [g for xbar in circuit.crossbars for g in xbar.row_conductance_s]
    columns = [] if circuit.scheme != "bidirectional" else [
        g for xbar in circuit.crossbars for g in (*xbar.g_pos_s.sum(axis=0), *xbar.g_neg_s.sum(axis=0))]
    return (np.array([line_holder_multiplier(float(g)) for g in rows], dtype=int),
            np.array([line_holder_multiplier(float(g)) for g in columns], dtype=int))


def static_power_by_kind_w(circuit: NetworkCircuit, name: str = "sky130-tt") -> dict[str, float]:
    """Static power (W) of each amplifier kind of ``circuit`` with the cells of set ``name``."""
    cells = sky130.load_characterised(name)["cells"]
    p_line = float(cells["line_holder"]["static_power_w"])
    p_compartment = float(cells["compartment"]["static_power_w"])
    s = sky130.LINE_HOLDER_SIZING
    p_stage = sky130.SUPPLY_V * s.bias_current_a * s.w_out_p_um / s.w_bias_out_um  # one more output stage
    row_m, column_m = line_holder_multipliers(circuit)
    m = circuit.compartments_per_neuron
    hidden = int(sum(circuit.layer_sizes[1:-1]))
    power = {}
    for kind, count in circuit.amplifier_inventory().items():
        if kind == "row_drivers":
            power[kind] = float(np.sum(p_line + (row_m - 1) * p_stage))
        elif kind == "column_drivers":
            power[kind] = float(np.sum(p_line + (column_m - 1) * p_stage))
        elif kind == "compartment_drivers":
            power[kind] = m * hidden * p_compartment + m * circuit.layer_sizes[-1] * p_line
        else:
            power[kind] = count * p_line
    return power


def static_power_w(circuit: NetworkCircuit, name: str = "sky130-tt") -> float:
    """Total static power (W) of every amplifier of ``circuit`` with the cells of set ``name``."""
    return float(sum(static_power_by_kind_w(circuit, name).values()))


def with_measured_static_power(circuit: NetworkCircuit, name: str = "sky130-tt") -> NetworkCircuit:
    """``circuit`` whose per-amplifier static power is the measured total / number of amplifiers, so
    the energy bookkeeping (count × P_amp × t) charges exactly the measured total."""
    p_mean = static_power_w(circuit, name) / circuit.n_amplifiers
    return replace(circuit, neuron=replace(circuit.neuron, p_amp_static_w=p_mean))


def characterised_amplifiers(circuit: NetworkCircuit, name: str = "sky130-tt", *,
                             design: TransistorDesign = TransistorDesign(),
                             measured_curve: bool = True) -> StageAmplifierParams:
    """The amplifiers of the transistor-level netlist of ``circuit`` (:mod:`.transistor_netlist`)
    as single-pole stages, per stage kind, from the figures of set ``name``:

    - sense stages: the line holder, a TIA whose R_f is chosen per line for the design's noise
      gain (``design.feedback_noise_gain``, 1.5) rather than 1 + G_Σ/G_u: its gain error and
      closed-loop pole are those of that noise gain. Its output swing bounds the TIA output, which
      the noise gain keeps within about ±V_r of the line (it is a line current, not the V_r·a the
      stage model outputs), so the sense stages have no rails;
    - hidden compartments: the clamped compartment cell as a follower (noise gain 1), its output
      limits the cell's measured swing (the clip); with ``measured_curve`` (hard sigmoid, at the
      V_r the set was measured at) its measured DC transfer curve is what the stage settles to;
    - output compartments: a line holder as a follower, with its swing.

    No input offsets: the netlist's transistors are nominal (no mismatch); the cells' systematic
    offset is in their measured figures and curve."""
    line = replace(amplifier_params("line_holder", name), offset_sigma_v=0.0)
    compartment = replace(amplifier_params("compartment", name), offset_sigma_v=0.0)
    if circuit.activation == "relu":  # the cell's output stage is then clamped at 0 and the supply, not at V_r
        compartment = replace(compartment, rail_high_v=sky130.SUPPLY_V / 2)
    curve_u = curve_v = None
    if (measured_curve and circuit.activation == "hardsigmoid"
            and math.isclose(circuit.neuron.v_read_v, characterisation_v_r_v(name), rel_tol=1e-9)):
        u_table, v_table = transfer_curve(name)
        curve_u, curve_v = tuple(u_table), tuple(v_table)
    fields_of_line = {f.name: getattr(line, f.name) for f in fields(AmplifierParams)}
    fields_of_line.update(rail_low_v=None, rail_high_v=None)
    return StageAmplifierParams(**fields_of_line, sense_noise_gain=design.feedback_noise_gain,
                                hidden_compartment=compartment, output_compartment=line,
                                hidden_transfer_u=curve_u, hidden_transfer_v=curve_v)


def characterised_circuit(circuit: NetworkCircuit, name: str = "sky130-tt", *,
                          design: TransistorDesign = TransistorDesign(), measured_curve: bool = True) -> NetworkCircuit:
    """``circuit`` with the characterised macromodel of its transistor-level netlist
    (:func:`characterised_amplifiers`) and the measured static power: the reference the
    transistor-level netlist is compared with."""
    return replace(with_measured_static_power(circuit, name),
                   amplifier=characterised_amplifiers(circuit, name, design=design, measured_curve=measured_curve))


def uniform_characterised_circuit(circuit: NetworkCircuit, name: str = "sky130-tt") -> NetworkCircuit:
    """``circuit`` with one characterised amplifier, the line holder's, for every stage (noise
    gains 1 + G_Σ/G_u, offsets drawn) and the measured static power: the coarse macromodel."""
    return replace(with_measured_static_power(circuit, name), amplifier=amplifier_params("line_holder", name))
