"""SPICE netlists generated from the circuit description (DESIGN §3, Appendix).

Everything in a netlist comes from :class:`~analogdp.circuit.NetworkCircuit`: the conductances,
the neuron kind (row weights ρ, column weights γ, feedback gains κ, where the nudge is taken),
the device and neuron parameters, β, the loss, the activation and the crossbar scheme. The
netlist realises exactly the ODE of :func:`analogdp.solver.kernels.circuit_rhs` with ideal
behavioural sources, so ngspice and the numba solver can be compared point by point.

Naming scheme (k = crossbar 0..L-1 joining layer k to layer k+1; l = neuron layer 1..L;
i = row, j = column / neuron, c = compartment name from the neuron kind, e.g. p, m or s):

========================  =====================================================================
element / node            meaning
========================  =====================================================================
``Brow{k}_r{i}``          row driver of crossbar k, row i (the last row is the bias row when
                          the layer has a bias; it is held at V_r); output node ``x{k}_r{i}_drv``
``Vrow{k}_r{i}``          0-V source from the driver to the row line ``x{k}_r{i}``; its current is
                          what the driver supplies to the row
``Bcol{k}_c{j}p``/``n``   column drivers (bidirectional scheme): ±(column signal of neuron j)
``Vcol{k}_c{j}p``/``n``   0-V sense source into column line ``x{k}_c{j}p``/``n``; in the
                          dual-array scheme it ties the column to virtual ground instead
``Rp{k}_r{i}_c{j}``       device G⁺_ij between ``x{k}_r{i}`` and ``x{k}_c{j}p``
``Rn{k}_r{i}_c{j}``       device G⁻_ij between ``x{k}_r{i}`` and ``x{k}_c{j}n``
``Rwr{k}_r{i}_c{j}p|n``   with wire resistance (:class:`~analogdp.circuit.wires.WireParams`): the
                          segment of row line i that ends at the cell of column j⁺|⁻ (coming from
                          the row's terminal); the devices then sit on cell nodes
                          ``x{k}_r{i}_c{j}p|n`` (row line) and ``x{k}_c{j}p|n_r{i}`` (column line)
``Rwc{k}_c{j}p|n_r{i}``   the segment of column line j⁺|⁻ that ends at row i; ``…_t``: a line's
                          terminal resistor (node ``…_t``, or ``…_line`` for a line without
                          segment resistance)
``Bfb{k}_c{j}``           dual-array only: feedback line driver (column signal of neuron j),
                          sensed by ``Vfb{k}_c{j}`` into line ``f{k}_c{j}``
``Rfp{k}_r{i}_c{j}``      dual-array only: transposed copy of G⁺_ij, line ``f{k}_c{j}`` to the
                          virtual-ground sense line ``f{k}_r{i}p`` (``Vfs{k}_r{i}p``); ``Rfn`` for G⁻
``Ba{l}_n{j}``            forward sense: node ``a{l}_n{j}`` = a_j (activity units, 1 V ≙ 1)
``Bb{l}_n{j}``            backward sense (hidden layers): node ``b{l}_n{j}`` = b_j
``Bt{l}_n{j}_{c}``        compartment amplifier: node ``t{l}_n{j}_{c}`` = its target voltage
``Rm{l}_n{j}_{c}``        drive resistor R_m from ``t{l}_n{j}_{c}`` to the compartment node
``Cm{l}_n{j}_{c}``        compartment capacitor C_m on node ``s{l}_n{j}_{c}`` (the state voltage)
``Brs{l}_n{j}``           row-signal buffer (hidden layers, m > 1): node ``rs{l}_n{j}`` = Σ_c ρ_c v_c
``Bg{L}_n{j}``            output nudge source: node ``g{L}_n{j}`` = β ∂ℓ/∂z_j
========================  =====================================================================

Every ``B`` element is one amplifier or driver of :meth:`NetworkCircuit.amplifier_inventory`
(:data:`INVENTORY_PREFIXES` maps the prefixes to the inventory keys), so the static power
the solver charges is the static power of the elements in the netlist.

The ``.control`` block runs ``op`` (the DC operating point: the equilibrium the transient
settles to; left out by default above :data:`OP_MAX_DEVICES` devices plus wire cell nodes, see
:class:`SpiceOptions`) and the transient, then writes with ``wrdata``:

- ``{prefix}.op.data``: the compartment voltages at the operating point;
- ``{prefix}.tran.data``: time, every compartment voltage ``v(s…)`` and, with
  ``SpiceOptions(energy=True)`` (opt-in), three power vectors built from the source currents:
  ``p_crossbar_w`` = Σ over line drivers of v(line)·i(sense
  source) (all the power the crossbar dissipates), ``p_neuron_w`` = Σ (v_t − v_s)²/R_m (drive
  resistors) and ``p_amplifier_w`` = Σ v_t (v_t − v_s)/R_m (what the compartment amplifiers
  deliver);

and prints the final output-layer voltages (and with ``energy`` the energies, ``meas …
integ``). With
``SpiceOptions(write_currents=True)`` it also writes ``{prefix}.currents.data``: the current
of every 0-V sense source (what each line driver supplies, or each virtual ground sinks).

Numbers are written with every digit of a double (``repr``). ngspice-39 reads resistor and
capacitor values to full precision but numbers inside ``B`` expressions to about 11
significant digits; that is 1e-11 relative, far below anything the cross-check resolves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..circuit.amplifiers import (StageAmplifierParams, amplifier_stages, curve_target_scale, macromodel_subcircuit,
                                  stage_subcircuit)
from ..circuit.network import NetworkCircuit
from ..circuit.wires import tile_counts

# B-source name prefix -> key of NetworkCircuit.amplifier_inventory()
INVENTORY_PREFIXES = {
    "Brow": "row_drivers",
    "Bcol": "column_drivers",
    "Ba": "forward_sense",
    "Bb": "backward_sense",
    "Bt": "compartment_drivers",
    "Brs": "row_signal_buffers",
    "Bg": "nudge_sources",
    "Bfb": "feedback_line_drivers",
    "Bpa": "tile_partial_sense",
    "Bpb": "tile_partial_sense",
    "Xt": "compartment_drivers",  # a finite compartment amplifier is a macromodel instance
}
_B_NAME = re.compile(r"^(B(?:row|col|rs|fb|pa|pb|a|b|t|g)|Xt)\d", re.IGNORECASE)
# subcircuit names of the finite-amplifier macromodel and of its closed-loop stage
AMPLIFIER_SUBCKT, STAGE_SUBCKT = "adp_amp", "adp_stage"
# with amplifiers per stage kind (StageAmplifierParams): the suffix of each kind's subcircuits, in
# the order of AmplifierStages.amplifiers (sense, hidden compartment, output compartment)
STAGE_KIND_SUFFIXES = ("", "_hidden", "_output")


def stage_subcircuit_names(circuit) -> tuple[tuple[str, str], ...]:
    """(amplifier, stage) subcircuit names of each entry of ``amplifier_stages(circuit).amplifiers``:
    one pair for one amplifier model, one per stage kind with :class:`StageAmplifierParams`."""
    suffixes = STAGE_KIND_SUFFIXES if isinstance(circuit.amplifier, StageAmplifierParams) else ("",) * 3
    return tuple((AMPLIFIER_SUBCKT + s, STAGE_SUBCKT + s) for s in suffixes)


def amplifier_subcircuits(circuit) -> list[str]:
    """Netlist lines of the macromodel and closed-loop stage subcircuits of ``circuit``'s amplifiers."""
    stages = amplifier_stages(circuit)
    lines, written = [], set()
    for amplifier, (amp_name, stage_name) in zip(stages.amplifiers, stage_subcircuit_names(circuit)):
        if stage_name in written:
            continue
        written.add(stage_name)
        lines += (macromodel_subcircuit(amplifier, amp_name)
                  + stage_subcircuit(amplifier, stage_name, amp_name)).splitlines()
    return lines

POWER_VECTORS = ("p_crossbar_w", "p_neuron_w", "p_amplifier_w")
DEFAULT_DATA_PREFIX = "analogdp"
# above this many devices plus wire cell nodes (matrix_size_estimate) the DC operating point is
# left out by default
OP_MAX_DEVICES = 20_000


@dataclass(frozen=True)
class SpiceOptions:
    """Simulator settings written into every netlist.

    - ``reltol``, ``abstol_a``, ``vntol_v``: Newton convergence, tight enough for µA line
      currents (ngspice's default abstol of 1 pA would be 1e-6 of a line current);
    - ``chgtol_c``: charge tolerance of the truncation-error control; None keeps ngspice's
      default (1e-14 C). The time step is bounded by TMAX (below) anyway; a tiny chgtol (1e-22)
      made ngspice take 394 instead of 217 time points on 256-128-10 over 200 ns, 1.7× the run
      time; without it the cross-check cases deviate from the numba solver by at most 22–67 µV
      over the transient (7–67 µV with it; the bound is 1 mV), final values unchanged;
    - ``max_step_tau``: largest time step as a fraction of τ = R_m C_m (``.tran`` TMAX is the
      smaller of this and the print step); with τ/10 (1 ns by default, as in DESIGN §6) the
      trapezoidal waveforms stay within about 1e-4 of V_r of the exact ones, and within 1e-5
      with τ/50, at five times the run time.
    - ``include_op``: also compute the DC operating point (``op``) before the transient. It
      costs one more ordering of the sparse matrix: a few percent of the run on small networks,
      about 40 % of a 200 ns run at 256-128-10 and 80 s at 784-256-10, so by default (None) it
      is included up to :data:`OP_MAX_DEVICES` devices plus wire cell nodes
      (:func:`matrix_size_estimate`): ordering a resistive wire mesh is far dearer per device
      (115 s of CPU for the 128×64 layer with 1 Ω segments, 34,693 equations, against 2 s at
      64×32);
    - ``energy``: build the power vectors and print the energies (the ``let`` and ``meas``
      lines of the module docstring). Opt-in: every ``let`` looks vectors up by name, which
      cost as much as a third of the transient on 256-128-10; :func:`~analogdp.spice.cross_check`
      turns it on;
    - ``write_currents``: also write every sense-source current (a large file for big networks);
    - ``raw_file``: also ``write`` the transient's vectors to ``{prefix}.raw``, ngspice's raw
      format that waveform viewers (ngspice's own ``load``, gaw, Xschem) open;
    - ``interactive``: no ``.control`` block at all (no ``run``/``wrdata``/``quit``), for use at
      the ngspice prompt (``ngspice FILE``, then ``run`` and ``plot``); the header suggests the
      commands.

    Only the vectors the ``.control`` block uses are kept (``save``), which makes the lookups
    cheap and the run smaller.
    """

    reltol: float = 1e-6
    abstol_a: float = 1e-15
    vntol_v: float = 1e-9
    chgtol_c: float | None = None
    max_step_tau: float = 0.1
    include_op: bool | None = None
    energy: bool = False
    write_currents: bool = False
    raw_file: bool = True
    interactive: bool = False


def matrix_size_estimate(circuit: NetworkCircuit) -> int:
    """Devices plus the cell nodes resistive lines add: what the DC operating point's extra
    ordering of ngspice's sparse matrix grows with. A row (column) line with segment resistance
    puts one node at every cell it passes, so a wired crossbar of n devices adds up to 2n nodes
    (one on the row line, one on the column line per device)."""
    wires = circuit.wires
    per_device = 1 + (wires.r_row_segment_ohm > 0.0) + (wires.r_col_segment_ohm > 0.0)
    return circuit.n_devices * per_device


def includes_operating_point(circuit: NetworkCircuit, options: SpiceOptions) -> bool:
    if options.include_op is None:
        return matrix_size_estimate(circuit) <= OP_MAX_DEVICES
    return bool(options.include_op)


def spice_number(value: float) -> str:
    """Shortest text that reads back as exactly the same double (≥ 12 significant digits
    whenever the value needs them)."""
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"cannot write a non-finite value ({value!r}) into a netlist")
    return repr(value)


def _weighted_sum(terms: list[tuple[float, str]]) -> str:
    """'0.5*v(x)-0.5*v(y)' from [(0.5, 'v(x)'), (-0.5, 'v(y)')], skipping zero coefficients."""
    parts = []
    for coefficient, term in terms:
        if coefficient == 0.0:
            continue
        sign = "-" if coefficient < 0 else "+"
        magnitude = abs(coefficient)
        text = term if magnitude == 1.0 else f"{spice_number(magnitude)}*{term}"
        parts.append(f"{sign}{text}")
    if not parts:
        return "0"
    joined = "".join(parts)
    return joined.removeprefix("+")


class _Names:
    """The naming scheme of the module docstring, in one place."""

    def __init__(self, circuit: NetworkCircuit):
        self.compartments = [re.sub(r"[^a-z0-9]", "", c.lower()) or f"c{q}"
                             for q, c in enumerate(circuit.neuron_kind.compartment_names)]
        if len(set(self.compartments)) != len(self.compartments):
            raise ValueError(f"compartment names {circuit.neuron_kind.compartment_names} are not "
                             "distinct once reduced to SPICE node-name characters")

    # crossbar lines
    @staticmethod
    def row(k, i): return f"x{k}_r{i}"
    @staticmethod
    def column(k, j, pole): return f"x{k}_c{j}{pole}"
    # cell nodes of resistive lines: the row line of row i at the cell of column j+/-, and the
    # column line of column j+/- at row i
    @staticmethod
    def row_cell(k, i, j, pole): return f"x{k}_r{i}_c{j}{pole}"
    @staticmethod
    def column_cell(k, j, pole, i): return f"x{k}_c{j}{pole}_r{i}"

    def row_attachment(self, k, i, j, pole, mode):
        """Node where the device (i, j, pole) meets its row line."""
        return (self.row(k, i), f"{self.row(k, i)}_line", self.row_cell(k, i, j, pole))[mode]

    def column_attachment(self, k, j, pole, i, mode):
        return (self.column(k, j, pole), f"{self.column(k, j, pole)}_line", self.column_cell(k, j, pole, i))[mode]

    @staticmethod
    def feedback_line(k, j): return f"f{k}_c{j}"
    @staticmethod
    def feedback_sense(k, i, pole): return f"f{k}_r{i}{pole}"

    # neuron nodes
    @staticmethod
    def forward(l, j): return f"a{l}_n{j}"
    @staticmethod
    def backward(l, j): return f"b{l}_n{j}"
    @staticmethod
    def row_signal(l, j): return f"rs{l}_n{j}"
    @staticmethod
    def nudge(l, j): return f"g{l}_n{j}"

    def target(self, l, j, q): return f"t{l}_n{j}_{self.compartments[q]}"
    def state(self, l, j, q): return f"s{l}_n{j}_{self.compartments[q]}"
    def state_suffix(self, l, j, q): return f"{l}_n{j}_{self.compartments[q]}"


def compartment_nodes(circuit: NetworkCircuit) -> list[str]:
    """Node names of the compartment voltages, in the solver's state-vector order."""
    names = _Names(circuit)
    m = circuit.compartments_per_neuron
    return [names.state(l, j, q) for l in range(1, circuit.n_layers + 1)
            for j in range(circuit.layer_sizes[l]) for q in range(m)]


def count_amplifiers(netlist_text: str) -> dict[str, int]:
    """Number of B sources per amplifier-inventory key, read back from a netlist's text."""
    counts = {key: 0 for key in INVENTORY_PREFIXES.values()}
    for line in netlist_text.splitlines():
        match = _B_NAME.match(line)
        if match:
            prefix = next(p for p in INVENTORY_PREFIXES if p.lower() == match.group(1).lower())
            counts[INVENTORY_PREFIXES[prefix]] += 1
    return counts


class _Writer:
    """Builds the element lines of one netlist; one method per part of the circuit."""

    def __init__(self, circuit: NetworkCircuit, x: np.ndarray, y: np.ndarray | None):
        self.c = circuit
        self.x = x
        self.y = y
        self.names = _Names(circuit)
        self.lines: list[str] = []
        self.power_terms: list[str] = []  # v(line)*i(sense) products for p_crossbar_w
        self.sense_sources: list[str] = []  # every 0-V current sense, in netlist order
        self.v_r = circuit.neuron.v_read_v
        self.scale = 1.0 / (circuit.device.g_unit_s * self.v_r)  # A -> activity units
        self.kind = circuit.neuron_kind
        self.m = circuit.compartments_per_neuron
        # finite amplifiers: each dynamic stage is a macromodel instance (amplifier_stages order)
        self.stages = None if circuit.amplifier.ideal else amplifier_stages(circuit)
        self.stage_subckts = stage_subcircuit_names(circuit)
        sizes = circuit.layer_sizes
        self.forward_stage = np.concatenate([[0], np.cumsum(sizes[1:])])  # + j, per layer l-1
        self.backward_stage = int(sum(sizes[1:])) + np.concatenate([[0], np.cumsum(sizes[1:-1])])
        self.compartment_stage = int(sum(sizes[1:])) + int(sum(sizes[1:-1]))

    # -- helpers --------------------------------------------------------------------------
    def add(self, line: str) -> None:
        self.lines.append(line)

    def comment(self, text: str) -> None:
        self.lines.append(f"* {text}")

    def _compartment_sum(self, l: int, j: int, weights) -> str:
        return _weighted_sum([(float(w), f"v({self.names.state(l, j, q)})")
                              for q, w in enumerate(weights)])

    def row_signal_expression(self, l: int, j: int) -> str:
        """Voltage a row line of crossbar l carries for neuron j of layer l (1..L-1)."""
        if self.m > 1:
            return f"v({self.names.row_signal(l, j)})"
        return self._compartment_sum(l, j, self.kind.row_weights)

    def column_signal_expression(self, l: int, j: int) -> str:
        return self._compartment_sum(l, j, self.kind.column_weights)

    def driven_line(self, driver: str, sense: str, line_node: str, expression: str, note: str = "") -> None:
        """A driver holding ``line_node`` at ``expression`` through a 0-V current sense."""
        drive_node = f"{line_node}_drv"
        suffix = f"   ; {note}" if note else ""
        self.add(f"{driver} {drive_node} 0 V={expression}{suffix}")
        self.add(f"{sense} {drive_node} {line_node} 0")
        self.sense_sources.append(sense)
        self.power_terms.append(f"v({line_node})*i({sense})")

    # -- crossbars ------------------------------------------------------------------------
    def tiles(self, k: int) -> tuple[int, int]:
        xbar = self.c.crossbars[k]
        return tile_counts(xbar.n_rows, xbar.n_columns, self.c.wires)

    def crossbar(self, k: int) -> None:
        if self.tiles(k) != (1, 1):
            self.tiled_crossbar(k)
            return
        xbar = self.c.crossbars[k]
        n = self.names
        dual = self.c.scheme == "dual-array"
        self.comment(f"---- crossbar {k}: layer {k} ({xbar.n_inputs} rows"
                     f"{' + bias row' if xbar.has_bias_row else ''}) -> layer {k + 1} "
                     f"({xbar.n_columns} column pairs) ----")
        for i in range(xbar.n_rows):
            if i == xbar.n_inputs:
                expression, note = spice_number(self.v_r), "bias row, held at V_r"
            elif k == 0:
                expression, note = spice_number(self.v_r * self.x[i]), f"input x_{i} = {spice_number(self.x[i])}"
            else:
                expression, note = self.row_signal_expression(k, i), ""
            self.driven_line(f"Brow{k}_r{i}", f"Vrow{k}_r{i}", n.row(k, i), expression, note)
        for j in range(xbar.n_columns):
            for pole, sign in (("p", 1.0), ("n", -1.0)):
                line = n.column(k, j, pole)
                if dual:
                    self.add(f"Vcol{k}_c{j}{pole} {line} 0 0   ; virtual ground")
                    self.sense_sources.append(f"Vcol{k}_c{j}{pole}")
                else:
                    signal = self.column_signal_expression(k + 1, j)
                    expression = signal if sign > 0 else f"-({signal})"
                    self.driven_line(f"Bcol{k}_c{j}{pole}", f"Vcol{k}_c{j}{pole}", line, expression)
        if self.c.wires.ideal:
            for i in range(xbar.n_rows):
                for j in range(xbar.n_columns):
                    self.add(f"Rp{k}_r{i}_c{j} {n.row(k, i)} {n.column(k, j, 'p')} "
                             f"{spice_number(1.0 / xbar.g_pos_s[i, j])}")
                    self.add(f"Rn{k}_r{i}_c{j} {n.row(k, i)} {n.column(k, j, 'n')} "
                             f"{spice_number(1.0 / xbar.g_neg_s[i, j])}")
        else:
            self.wired_crossbar(k)
        if dual:
            self.feedback_array(k)

    def wired_crossbar(self, k: int) -> None:
        """Crossbar k with resistive lines (:class:`~analogdp.circuit.wires.WireParams`): the
        devices sit on cell nodes of the row and column lines, joined by segment resistors, and
        each line reaches its driver's node (``x{k}_r{i}``, ``x{k}_c{j}p|n``) through its
        terminal resistor and first segment. Physical column order along a row: 0p, 0n, 1p, ..."""
        xbar = self.c.crossbars[k]
        wires = self.c.wires
        n = self.names
        cells = [(j, pole) for j in range(xbar.n_columns) for pole in ("p", "n")]
        self.comment(f"wires: {spice_number(wires.r_row_segment_ohm)} ohm per row segment, "
                     f"{spice_number(wires.r_col_segment_ohm)} ohm per column segment, terminals "
                     f"{spice_number(wires.r_row_terminal_ohm)} / {spice_number(wires.r_col_terminal_ohm)} ohm; "
                     f"rows driven at the {wires.row_terminal_end}, columns at the {wires.col_terminal_end}")
        # row i: the cell nodes in order from the row's terminal
        for i in range(xbar.n_rows):
            order = cells if wires.row_terminal_end == "start" else cells[::-1]
            self._line(f"Rwr{k}_r{i}", n.row(k, i), [n.row_cell(k, i, j, pole) for j, pole in order],
                       [f"_c{j}{pole}" for j, pole in order], wires.r_row_segment_ohm, wires.r_row_terminal_ohm)
        for j, pole in cells:
            rows = list(range(xbar.n_rows)) if wires.col_terminal_end == "start" else list(range(xbar.n_rows))[::-1]
            self._line(f"Rwc{k}_c{j}{pole}", n.column(k, j, pole), [n.column_cell(k, j, pole, i) for i in rows],
                       [f"_r{i}" for i in rows], wires.r_col_segment_ohm, wires.r_col_terminal_ohm)
        row_mode, col_mode = wires.row_mode, wires.col_mode
        for i in range(xbar.n_rows):
            for j in range(xbar.n_columns):
                for pole, g in (("p", xbar.g_pos_s[i, j]), ("n", xbar.g_neg_s[i, j])):
                    row_node = n.row_attachment(k, i, j, pole, row_mode)
                    col_node = n.column_attachment(k, j, pole, i, col_mode)
                    self.add(f"R{pole}{k}_r{i}_c{j} {row_node} {col_node} {spice_number(1.0 / g)}")

    def _line(self, name: str, terminal: str, cell_nodes: list[str], cell_suffixes: list[str],
              r_segment_ohm: float, r_terminal_ohm: float) -> None:
        """Resistors of one line: ``{name}_t`` (terminal, when > 0) and ``{name}{suffix}`` (the
        segment that ends at that cell, coming from the terminal side). A line without segment
        resistance is one node, ``{terminal}_line``."""
        if r_segment_ohm == 0.0 and r_terminal_ohm == 0.0:
            return  # ideal line: the devices sit on the terminal node itself
        if r_segment_ohm == 0.0:
            self.add(f"{name}_t {terminal} {terminal}_line {spice_number(r_terminal_ohm)}")
            return
        previous = terminal
        if r_terminal_ohm > 0.0:
            self.add(f"{name}_t {terminal} {terminal}_t {spice_number(r_terminal_ohm)}")
            previous = f"{terminal}_t"
        for node, suffix in zip(cell_nodes, cell_suffixes):
            self.add(f"{name}{suffix} {previous} {node} {spice_number(r_segment_ohm)}")
            previous = node

    def tiled_crossbar(self, k: int) -> None:
        """Crossbar k split into physical arrays (``WireParams.max_rows`` × ``max_cols``). Tile
        (a, b) has its own row drivers ``Brow{k}_r{i}_t{b}`` (node ``x{k}_r{i}_t{b}``) and column
        drivers ``Bcol{k}_c{j}p|n_t{a}`` (node ``x{k}_c{j}p|n_t{a}``), each sensed by its ``V…``
        source; with several row tiles a column's partial forward signal is sensed per tile
        (``Bpa{k}_c{j}_t{a}``, node ``pa{k}_c{j}_t{a}``) and the forward sense sums them, and
        likewise the row partials of the backward signal (``Bpb{k}_r{i}_t{b}``)."""
        xbar = self.c.crossbars[k]
        wires = self.c.wires
        n_r, n_c = self.tiles(k)
        row_edges = [(a * wires.max_rows, min((a + 1) * wires.max_rows, xbar.n_rows)) if n_r > 1
                     else (0, xbar.n_rows) for a in range(n_r)]
        col_edges = [(b * wires.max_cols, min((b + 1) * wires.max_cols, xbar.n_columns)) if n_c > 1
                     else (0, xbar.n_columns) for b in range(n_c)]
        self.comment(f"---- crossbar {k}: layer {k} ({xbar.n_inputs} rows"
                     f"{' + bias row' if xbar.has_bias_row else ''}) -> layer {k + 1} "
                     f"({xbar.n_columns} column pairs), in {n_r} x {n_c} tiles of at most "
                     f"{wires.max_rows} rows x {wires.max_cols} column pairs ----")
        if not wires.ideal:
            self.comment(f"wires: {spice_number(wires.r_row_segment_ohm)} ohm per row segment, "
                         f"{spice_number(wires.r_col_segment_ohm)} ohm per column segment, terminals "
                         f"{spice_number(wires.r_row_terminal_ohm)} / {spice_number(wires.r_col_terminal_ohm)} ohm; "
                         f"rows driven at the {wires.row_terminal_end}, columns at the {wires.col_terminal_end}")
        for a, (r0, r1) in enumerate(row_edges):
            for b, (c0, c1) in enumerate(col_edges):
                self.comment(f"tile ({a}, {b}): rows {r0}..{r1 - 1}, column pairs {c0}..{c1 - 1}")
                self._tile(k, a, b, range(r0, r1), range(c0, c1))
        scale = spice_number(self.scale)
        if n_r > 1:
            for j in range(xbar.n_columns):
                for a, (r0, r1) in enumerate(row_edges):
                    g_pos = spice_number(xbar.g_pos_s[r0:r1, j].sum())
                    g_neg = spice_number(xbar.g_neg_s[r0:r1, j].sum())
                    self.add(f"Bpa{k}_c{j}_t{a} pa{k}_c{j}_t{a} 0 V=((v(x{k}_c{j}p_t{a})*{g_pos}-i(Vcol{k}_c{j}p_t{a}))"
                             f"-(v(x{k}_c{j}n_t{a})*{g_neg}-i(Vcol{k}_c{j}n_t{a})))*{scale}")
        if n_c > 1 and k > 0:
            for i in range(xbar.n_inputs):
                for b, (c0, c1) in enumerate(col_edges):
                    g_row = spice_number(xbar.g_pos_s[i, c0:c1].sum() + xbar.g_neg_s[i, c0:c1].sum())
                    self.add(f"Bpb{k}_r{i}_t{b} pb{k}_r{i}_t{b} 0 V=(v(x{k}_r{i}_t{b})*{g_row}"
                             f"-i(Vrow{k}_r{i}_t{b}))*{scale}")

    def _tile(self, k: int, a: int, b: int, rows: range, columns: range) -> None:
        """Drivers, lines and devices of tile (a, b) of crossbar k."""
        xbar = self.c.crossbars[k]
        wires = self.c.wires
        for i in rows:
            if i == xbar.n_inputs:
                expression, note = spice_number(self.v_r), "bias row, held at V_r"
            elif k == 0:
                expression, note = spice_number(self.v_r * self.x[i]), f"input x_{i} = {spice_number(self.x[i])}"
            else:
                expression, note = self.row_signal_expression(k, i), ""
            self.driven_line(f"Brow{k}_r{i}_t{b}", f"Vrow{k}_r{i}_t{b}", f"x{k}_r{i}_t{b}", expression, note)
        for j in columns:
            signal = self.column_signal_expression(k + 1, j)
            for pole, sign in (("p", 1.0), ("n", -1.0)):
                self.driven_line(f"Bcol{k}_c{j}{pole}_t{a}", f"Vcol{k}_c{j}{pole}_t{a}", f"x{k}_c{j}{pole}_t{a}",
                                 signal if sign > 0 else f"-({signal})")
        cells = [(j, pole) for j in columns for pole in ("p", "n")]
        if not wires.ideal:
            for i in rows:
                order = cells if wires.row_terminal_end == "start" else cells[::-1]
                self._line(f"Rwr{k}_r{i}_t{b}", f"x{k}_r{i}_t{b}", [f"x{k}_r{i}_c{j}{pole}" for j, pole in order],
                           [f"_c{j}{pole}" for j, pole in order], wires.r_row_segment_ohm, wires.r_row_terminal_ohm)
            for j, pole in cells:
                order = list(rows) if wires.col_terminal_end == "start" else list(rows)[::-1]
                self._line(f"Rwc{k}_c{j}{pole}_t{a}", f"x{k}_c{j}{pole}_t{a}", [f"x{k}_c{j}{pole}_r{i}" for i in order],
                           [f"_r{i}" for i in order], wires.r_col_segment_ohm, wires.r_col_terminal_ohm)
        row_mode, col_mode = wires.row_mode, wires.col_mode
        for i in rows:
            row_nodes = (f"x{k}_r{i}_t{b}", f"x{k}_r{i}_t{b}_line", None)
            for j in columns:
                for pole, g in (("p", xbar.g_pos_s[i, j]), ("n", xbar.g_neg_s[i, j])):
                    col_nodes = (f"x{k}_c{j}{pole}_t{a}", f"x{k}_c{j}{pole}_t{a}_line", f"x{k}_c{j}{pole}_r{i}")
                    row_node = row_nodes[row_mode] or f"x{k}_r{i}_c{j}{pole}"
                    self.add(f"R{pole}{k}_r{i}_c{j} {row_node} {col_nodes[col_mode]} {spice_number(1.0 / g)}")

    def feedback_array(self, k: int) -> None:
        """Dual-array scheme: a transposed copy of crossbar k carries Wᵀ d to virtual ground."""
        xbar = self.c.crossbars[k]
        n = self.names
        self.comment(f"---- feedback array of crossbar {k} (transposed copy) ----")
        for j in range(xbar.n_columns):
            self.driven_line(f"Bfb{k}_c{j}", f"Vfb{k}_c{j}", n.feedback_line(k, j),
                             self.column_signal_expression(k + 1, j))
        for i in range(xbar.n_rows):
            for pole in ("p", "n"):
                self.add(f"Vfs{k}_r{i}{pole} {n.feedback_sense(k, i, pole)} 0 0   ; virtual ground")
                self.sense_sources.append(f"Vfs{k}_r{i}{pole}")
        for i in range(xbar.n_rows):
            for j in range(xbar.n_columns):
                self.add(f"Rfp{k}_r{i}_c{j} {n.feedback_line(k, j)} {n.feedback_sense(k, i, 'p')} "
                         f"{spice_number(1.0 / xbar.g_pos_s[i, j])}")
                self.add(f"Rfn{k}_r{i}_c{j} {n.feedback_line(k, j)} {n.feedback_sense(k, i, 'n')} "
                         f"{spice_number(1.0 / xbar.g_neg_s[i, j])}")

    # -- neurons --------------------------------------------------------------------------
    def forward_sense(self, l: int, j: int) -> str:
        """a_j from the column currents of crossbar l-1 (self terms added back, DESIGN §3.2)."""
        k = l - 1
        xbar = self.c.crossbars[k]
        n_r, n_c = self.tiles(k)
        if n_r > 1:
            return "+".join(f"v(pa{k}_c{j}_t{a})" for a in range(n_r))
        if n_c > 1:  # one row tile: column j's lines are those of tile (0, ·)
            g_pos_total = spice_number(xbar.g_pos_s[:, j].sum())
            g_neg_total = spice_number(xbar.g_neg_s[:, j].sum())
            return (f"((v(x{k}_c{j}p_t0)*{g_pos_total}-i(Vcol{k}_c{j}p_t0))"
                    f"-(v(x{k}_c{j}n_t0)*{g_neg_total}-i(Vcol{k}_c{j}n_t0)))*{spice_number(self.scale)}")
        if self.c.scheme == "dual-array":
            current = f"i(Vcol{k}_c{j}p)-i(Vcol{k}_c{j}n)"
        else:
            g_pos_total = spice_number(xbar.g_pos_s[:, j].sum())
            g_neg_total = spice_number(xbar.g_neg_s[:, j].sum())
            col_p, col_n = self.names.column(k, j, "p"), self.names.column(k, j, "n")
            current = (f"(v({col_p})*{g_pos_total}-i(Vcol{k}_c{j}p))"
                       f"-(v({col_n})*{g_neg_total}-i(Vcol{k}_c{j}n))")
        return f"({current})*{spice_number(self.scale)}"

    def backward_sense(self, l: int, i: int) -> str:
        """b_i from the row current of crossbar l (or the feedback array's sense lines)."""
        xbar = self.c.crossbars[l]
        n_r, n_c = self.tiles(l)
        if n_c > 1:
            return "+".join(f"v(pb{l}_r{i}_t{b})" for b in range(n_c))
        if n_r > 1:
            return (f"(v(x{l}_r{i}_t0)*{spice_number(xbar.row_conductance_s[i])}-i(Vrow{l}_r{i}_t0))"
                    f"*{spice_number(self.scale)}")
        if self.c.scheme == "dual-array":
            current = f"i(Vfs{l}_r{i}p)-i(Vfs{l}_r{i}n)"
        else:
            current = (f"v({self.names.row(l, i)})*{spice_number(xbar.row_conductance_s[i])}"
                       f"-i(Vrow{l}_r{i})")
        return f"({current})*{spice_number(self.scale)}"

    def amplifier_input(self, l: int, j: int, q: int) -> str:
        """What compartment q's amplifier acts on: a + κ_q b (hidden), a − κ_q g (output)."""
        gain = float(self.kind.feedback_gains[q])
        a = f"v({self.names.forward(l, j)})"
        if l == self.c.n_layers:
            return _weighted_sum([(1.0, a), (-gain, f"v({self.names.nudge(l, j)})")])
        return _weighted_sum([(1.0, a), (gain, f"v({self.names.backward(l, j)})")])

    def target_expression(self, l: int, j: int, q: int) -> str:
        v_r = spice_number(self.v_r)
        u = self.amplifier_input(l, j, q)
        if l == self.c.n_layers:
            return f"{v_r}*({u})"
        if self.c.activation == "hardsigmoid":
            return f"{v_r}*max(0,min(1,{u}))"
        return f"{v_r}*max(0,{u})"

    def stage_target_expression(self, l: int, j: int, q: int, index: int) -> str:
        """The ideal target of compartment stage ``index``: V_r·f(u), or with a measured transfer
        curve of the hidden compartments (:class:`StageAmplifierParams`) curve(u)·(1 + N/A0), the
        target whose closed-loop DC output is the curve (as :mod:`analogdp.solver.amplified`)."""
        amp = self.c.amplifier
        if l == self.c.n_layers or not isinstance(amp, StageAmplifierParams) or amp.hidden_transfer_u is None:
            return self.target_expression(l, j, q)
        stage_amp = self.stages.amplifiers[int(self.stages.amplifier[index])]
        scale = curve_target_scale(float(self.stages.noise_gain[index]), stage_amp.a0)
        u_table, v_table = amp.hidden_transfer_u, amp.hidden_transfer_v
        points = ",".join(f"{spice_number(u)},{spice_number(v * scale)}" for u, v in zip(u_table, v_table))
        u = f"max({spice_number(u_table[0])},min({spice_number(u_table[-1])},{self.amplifier_input(l, j, q)}))"
        return f"pwl({u},{points})"

    def stage(self, name: str, ideal_node: str, out_node: str, index: int) -> None:
        """Finite amplifier stage ``index`` of :func:`amplifier_stages`: the macromodel in a loop
        of the stage's noise gain, from the ideal output at ``ideal_node`` to ``out_node``."""
        vos = spice_number(self.stages.offset_v[index])
        gain = spice_number(self.stages.noise_gain[index])
        subckt = self.stage_subckts[int(self.stages.amplifier[index])][1]
        self.add(f"{name} {ideal_node} {out_node} {subckt} vos={vos} ngain={gain}")

    def sense(self, kind: str, l: int, j: int, expression: str, index: int) -> None:
        """Forward (``kind`` a) or backward (b) sense of neuron j of layer l, in activity units at
        node {kind}{l}_n{j}; with finite amplifiers the stage works in volts (V_r·signal)."""
        node = f"{kind}{l}_n{j}"
        if self.stages is None:
            self.add(f"B{node} {node} 0 V={expression}")
            return
        v_r = spice_number(self.v_r)
        self.add(f"B{kind}i{l}_n{j} {kind}i{l}_n{j} 0 V={v_r}*{expression}   ; ideal sense output (V)")
        self.stage(f"X{kind}{l}_n{j}", f"{kind}i{l}_n{j}", f"{kind}o{l}_n{j}", index)
        self.add(f"B{node} {node} 0 V=v({kind}o{l}_n{j})/{v_r}")

    def layer(self, l: int, v0_layer: np.ndarray) -> None:
        """Layer l's neurons: their sense amplifiers, compartments and row-signal buffers."""
        n = self.names
        hidden = l < self.c.n_layers
        self.comment(f"---- layer {l}: {self.c.layer_sizes[l]} {'hidden' if hidden else 'output'} "
                     f"neurons, compartments {', '.join(n.compartments)} ----")
        for j in range(self.c.layer_sizes[l]):
            self.sense("a", l, j, self.forward_sense(l, j), int(self.forward_stage[l - 1]) + j)
            if hidden:
                self.sense("b", l, j, self.backward_sense(l, j), int(self.backward_stage[l - 1]) + j)
            for q in range(self.m):
                self.compartment(l, j, q, float(v0_layer[j, q]))
            if hidden and self.m > 1:
                self.add(f"Brs{l}_n{j} {n.row_signal(l, j)} 0 V={self._compartment_sum(l, j, self.kind.row_weights)}")

    def compartment(self, l: int, j: int, q: int, v0_v: float) -> None:
        """Compartment q of neuron j: its amplifier driving C_m (from ``v0_v``) through R_m."""
        n = self.names
        suffix = n.state_suffix(l, j, q)
        if self.stages is None:
            self.add(f"Bt{suffix} {n.target(l, j, q)} 0 V={self.target_expression(l, j, q)}")
        else:
            index = self.compartment_stage + self.c.compartment_offset(l) + j * self.m + q
            self.add(f"Bti{suffix} ti{suffix} 0 V={self.stage_target_expression(l, j, q, index)}   ; ideal target")
            self.stage(f"Xt{suffix}", f"ti{suffix}", n.target(l, j, q), index)
        self.add(f"Rm{suffix} {n.target(l, j, q)} {n.state(l, j, q)} {spice_number(self.c.neuron.r_m_ohm)}")
        self.add(f"Cm{suffix} {n.state(l, j, q)} 0 {spice_number(self.c.neuron.c_m_f)} IC={spice_number(v0_v)}")

    def nudge(self) -> None:
        """g = β ∇ℓ(z) with z the bottom-up input a_L ('input') or the output row signal / V_r."""
        L = self.c.n_layers
        n_out = self.c.layer_sizes[L]
        n = self.names
        self.comment(f"---- output nudge g = beta * dloss/dz ({self.c.loss}, z = "
                     f"{'a_L' if self.kind.nudge_at == 'input' else 'row signal / V_r'}) ----")
        if self.y is None:
            for j in range(n_out):
                self.add(f"Bg{L}_n{j} {n.nudge(L, j)} 0 V=0   ; no target given: nudge off")
            return
        if self.kind.nudge_at == "input":
            z = [f"v({n.forward(L, j)})" for j in range(n_out)]
        else:
            z = [f"({self._compartment_sum(L, j, self.kind.row_weights)})/{spice_number(self.v_r)}"
                 for j in range(n_out)]
        beta = spice_number(self.c.beta)
        if self.c.loss == "ce":
            partition = "+".join(f"exp({zj})" for zj in z)
            gradients = [f"exp({z[j]})/({partition})" for j in range(n_out)]
        else:
            gradients = [z[j] for j in range(n_out)]
        for j in range(n_out):
            self.add(f"Bg{L}_n{j} {n.nudge(L, j)} 0 V={beta}*({gradients[j]}-({spice_number(self.y[j])}))"
                     f"   ; target y_{j} = {spice_number(self.y[j])}")

    def power_lets(self) -> list[str]:
        """`let` commands that build the power vectors from the source currents."""
        lets = ["let p_crossbar_w = 0*time"]
        lets += [f"let p_crossbar_w = p_crossbar_w+{term}" for term in self.power_terms]
        lets += ["let p_neuron_w = 0*time", "let p_amplifier_w = 0*time"]
        g_m = spice_number(1.0 / self.c.neuron.r_m_ohm)
        n = self.names
        for l in range(1, self.c.n_layers + 1):
            for j in range(self.c.layer_sizes[l]):
                for q in range(self.m):
                    drop = f"(v({n.target(l, j, q)})-v({n.state(l, j, q)}))"
                    lets.append(f"let p_neuron_w = p_neuron_w+{drop}*{drop}*{g_m}")
                    lets.append(f"let p_amplifier_w = p_amplifier_w+v({n.target(l, j, q)})*{drop}*{g_m}")
        return lets


def _check_inputs(circuit: NetworkCircuit, x, y, v0, t_stop_s, t_step_s):
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (circuit.layer_sizes[0],):
        raise ValueError(f"x must be one example of shape ({circuit.layer_sizes[0]},), got {x.shape}")
    if y is not None:
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (circuit.layer_sizes[-1],):
            raise ValueError(f"y must have shape ({circuit.layer_sizes[-1]},) or be None, got {y.shape}")
    v0 = np.zeros(circuit.n_compartments) if v0 is None else np.asarray(v0, dtype=np.float64)
    if v0.shape != (circuit.n_compartments,):
        raise ValueError(f"v0 must have shape ({circuit.n_compartments},), got {v0.shape}")
    for name, value in (("x", x), ("y", y), ("v0", v0)):
        if value is not None and not np.all(np.isfinite(value)):
            raise ValueError(f"{name} must be finite")
    for name, value in (("t_stop_s", t_stop_s), ("t_step_s", t_step_s)):
        if not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive finite time, got {value!r}")
    if t_step_s > t_stop_s:
        raise ValueError(f"t_step_s ({t_step_s}) exceeds t_stop_s ({t_stop_s})")
    return x, y, v0


def _device_model_lines(description: dict | None) -> list[str]:
    """The device model as header comments, a few fields per line."""
    if not description:
        return []
    items = [f"{key}={value}" for key, value in description.items() if key != "model"]
    lines, line = [], f"* device model       {description.get('model', '?')}:"
    for item in items:
        if len(line) + len(item) + 1 > 110:
            lines.append(line)
            line = "*                   "
        line += " " + item
    return lines + [line]


def _check_supported(circuit: NetworkCircuit) -> None:
    """What the writer cannot yet realise is refused rather than silently left out."""
    wires = circuit.wires
    tiled = any(tile_counts(x.n_rows, x.n_columns, wires) != (1, 1) for x in circuit.crossbars)
    if (not wires.ideal or tiled) and circuit.scheme != "bidirectional":
        raise ValueError("wire resistance and tiling are written for the bidirectional scheme only")


def _header(circuit: NetworkCircuit, run_command: str, prefix: str, y, t_stop_s, t_max_s,
            options: SpiceOptions) -> list[str]:
    d = circuit.describe()
    dev, nrn = circuit.device, circuit.neuron
    kind = circuit.neuron_kind
    inventory = circuit.amplifier_inventory()
    if options.interactive:
        run_lines = [f"* Run:  {run_command.replace('ngspice -b ', 'ngspice ')}  (interactive: type run at the prompt)"]
    else:
        run_lines = [
            f"* Run:  {run_command}",
            f"*   writes {prefix}.tran.data (time, compartment voltages v(s...)"
            + (", powers p_*_w)" if options.energy else ")")
            + (f", {prefix}.op.data (DC operating point)" if includes_operating_point(circuit, options) else "")
            + (f", {prefix}.currents.data (sense-source currents)" if options.write_currents else "")
            + (f", {prefix}.raw (ngspice raw file for waveform viewers)" if options.raw_file else ""),
            "*   into the current directory and prints "
            + ("the energies over the window and " if options.energy else "") + "the final",
            "*   output-layer compartment voltages."]
    lines = [
        "* Generated by analogdp.spice.write_netlist from the circuit description; do not edit.",
        *run_lines,
        "*",
        f"* layer sizes        {'-'.join(map(str, circuit.layer_sizes))} (layer 0 = inputs)",
        f"* neuron kind        {kind.name}: compartments {', '.join(kind.compartment_names)}; "
        f"row weights rho = {tuple(kind.row_weights)}, column weights gamma = {tuple(kind.column_weights)}, "
        f"feedback gains kappa = {tuple(kind.feedback_gains)}, nudge at {kind.nudge_at}"
        + (f" (alpha = {spice_number(kind.row_weights[0])})" if kind.compartments == 2 else ""),
        f"* beta               {spice_number(circuit.beta)}" + ("" if y is not None else " (no target: nudge off)"),
        f"* loss, activation   {circuit.loss}, {circuit.activation}",
        f"* scheme             {circuit.scheme}",
        f"* V_r                {spice_number(nrn.v_read_v)} V",
        f"* G range            [{spice_number(dev.g_min_s)}, {spice_number(dev.g_max_s)}] S, w_max = "
        f"{spice_number(dev.w_max)}, G_u = {spice_number(dev.g_unit_s)} S (W = (G+ - G-)/G_u)",
        f"* R_m, C_m, tau      {spice_number(nrn.r_m_ohm)} ohm, {spice_number(nrn.c_m_f)} F, "
        f"{spice_number(nrn.tau_s)} s",
        f"* static power       {spice_number(nrn.p_amp_static_w)} W per amplifier, "
        f"{circuit.n_amplifiers} amplifiers (B sources): "
        + ", ".join(f"{key} {count}" for key, count in inventory.items()),
        f"* devices            {d['n_devices']}",
        f"* transient          0 .. {spice_number(t_stop_s)} s, largest step {spice_number(t_max_s)} s, "
        "from the capacitor ICs (uic)",
        "*",
        "* Equations: hidden compartment c: C_m dv/dt = (V_r*clip(a + kappa_c*b, 0, 1) - v)/R_m",
        "*   (relu: max(0, .)); output: C_m dv/dt = (V_r*(a - kappa_c*g) - v)/R_m; rows carry",
        "*   sum_c rho_c v_c, column pairs +-sum_c gamma_c v_c; a, b, g in activity units (1 V = 1).",
        "* Names: crossbar k joins layer k to k+1; neurons are layer l (1..L), index n, compartment.",
        "*   Brow{k}_r{i}/Vrow{k}_r{i}: row driver / 0-V current sense of row line x{k}_r{i}",
        "*   Bcol{k}_c{j}p|n/Vcol{k}_c{j}p|n: column drivers / senses of lines x{k}_c{j}p|n",
        "*   Rp{k}_r{i}_c{j}, Rn{k}_r{i}_c{j}: devices G+_ij, G-_ij (row i, column j)",
        "*   Bfb/Vfb/Vfs/Rfp/Rfn: dual-array feedback array (transposed copy) and its senses",
        "*   Ba{l}_n{j}, Bb{l}_n{j}: forward/backward sense (nodes a{l}_n{j}, b{l}_n{j})",
        "*   Bt/Rm/Cm{l}_n{j}_{c}: compartment amplifier (node t..), R_m, C_m (state node s{l}_n{j}_{c})",
        "*   Brs{l}_n{j}: row-signal buffer (node rs{l}_n{j}); Bg{L}_n{j}: output nudge (node g{L}_n{j})",
    ]
    if not circuit.amplifier.ideal:
        amp = circuit.amplifier
        a0 = "inf" if amp.a0_db is None else f"{spice_number(amp.a0_db)} dB"
        gbw = "inf" if amp.gbw_hz is None else f"{spice_number(amp.gbw_hz)} Hz"
        rails = ("none" if amp.rail_low_v is None
                 else f"{spice_number(amp.rail_low_v)}..{spice_number(amp.rail_high_v)} V")
        slew = "inf" if amp.slew_v_per_s is None else f"{spice_number(amp.slew_v_per_s)} V/s"
        lines += [
            f"* amplifiers         single pole: A0 = {a0}, GBW = {gbw}, rails {rails}, slew {slew}, offset sigma "
            f"{spice_number(amp.offset_sigma_v)} V (seed {amp.offset_seed})",
            f"*   {STAGE_SUBCKT}: the {AMPLIFIER_SUBCKT} macromodel in a loop of noise gain ngain (1 + line "
            "conductance/G_u for a sense stage, 1 for a compartment), unity ideal gain, input offset vos",
            "*   Xa/Xb{l}_n{j}: forward/backward sense stages (ideal output node ai/bi.., output ao/bo.., in V);",
            "*   Xt{l}_n{j}_{c}: compartment amplifier stages (ideal target node ti.., output t..)",
        ]
        if isinstance(amp, StageAmplifierParams):
            lines.append("*   per stage kind: the above is the sense stages' amplifier"
                         + ("" if amp.sense_noise_gain is None else
                            f" (noise gain fixed at {spice_number(amp.sense_noise_gain)})")
                         + f"; hidden compartments {STAGE_SUBCKT}_hidden, output compartments {STAGE_SUBCKT}_output"
                         + ("" if amp.hidden_transfer_u is None else
                            "; hidden targets follow the measured transfer curve (pwl)"))
    if not circuit.wires.ideal:
        w = circuit.wires
        lines += [
            f"* wires              row segment {spice_number(w.r_row_segment_ohm)} ohm, column segment "
            f"{spice_number(w.r_col_segment_ohm)} ohm, row terminal {spice_number(w.r_row_terminal_ohm)} ohm, "
            f"column terminal {spice_number(w.r_col_terminal_ohm)} ohm",
            "*   Rwr{k}_r{i}_c{j}p|n: segment of row line i ending at the cell of column j+|-, coming from the",
            "*   row's terminal; Rwc{k}_c{j}p|n_r{i}: segment of column line j+|- ending at row i; *_t: terminal",
            "*   resistors; cell nodes x{k}_r{i}_c{j}p|n (row line) and x{k}_c{j}p|n_r{i} (column line)",
        ]
    return lines


def _control(writer: _Writer, circuit: NetworkCircuit, prefix: str, t_stop_s: float,
             options: SpiceOptions) -> list[str]:
    states = [f"v({node})" for node in compartment_nodes(circuit)]
    L = circuit.n_layers
    outputs = [writer.names.state(L, j, q) for j in range(circuit.layer_sizes[L])
               for q in range(circuit.compartments_per_neuron)]
    stop = spice_number(t_stop_s)
    lets = writer.power_lets() if options.energy else []
    currents = [f"i({v})" for v in writer.sense_sources] if options.write_currents else []
    # keep only the vectors used below: every name lookup of a let or wrdata then searches a
    # short list instead of every node and branch of the circuit
    saved = list(dict.fromkeys(states + currents + re.findall(r"[vi]\([A-Za-z0-9_]+\)", " ".join(lets))))
    lines = [".control", "set wr_singlescale", "set wr_vecnames", "set numdgt=15", "save " + " ".join(saved)]
    if includes_operating_point(circuit, options):
        # an operating point has no scale of its own; without one, wrdata labels its first
        # column with the first vector's name
        lines += ["op", "compose operating_point values 0", "setscale operating_point",
                  f"wrdata {prefix}.op.data " + " ".join(states)]
    lines += ["run"]
    if options.raw_file:
        lines += [f"write {prefix}.raw"]
    lines += lets
    lines += [f"wrdata {prefix}.tran.data " + " ".join(states + (list(POWER_VECTORS) if options.energy else []))]
    if options.write_currents:
        lines += [f"wrdata {prefix}.currents.data " + " ".join(currents)]
    if options.energy:
        lines += [f"meas tran e_{name[2:-2]}_j integ {name} from=0 to={stop}" for name in POWER_VECTORS]
    # the last time point, not a `meas ... at=t_stop`: rounding can leave the last point a hair
    # before t_stop, and the measure then fails
    lines += [f"print v({node})[length(time)-1]" for node in outputs]
    lines += ["quit", ".endc"]
    return lines


def _interactive_hint(circuit: NetworkCircuit) -> list[str]:
    """Comment lines for the ngspice prompt, in place of the batch control block."""
    first = " ".join(f"v({node})" for node in compartment_nodes(circuit)[:4])
    return ["* For the ngspice prompt (ngspice FILE): run, then for example", f"*   plot {first}",
            "*   write NAME.raw   (waveforms for a viewer)"]


def write_netlist(circuit: NetworkCircuit, x, y=None, path: str | Path | None = None, *,
                  t_stop_s: float, t_step_s: float, v0=None, title: str | None = None,
                  options: SpiceOptions = SpiceOptions(), data_prefix: str | None = None,
                  run_command: str | None = None, device_model: dict | None = None) -> str:
    """The ngspice netlist of ``circuit`` driven by one input ``x`` ((n_0,), activities) and
    nudged towards ``y`` ((n_L,), or None for no nudge), from the compartment voltages ``v0``
    (V, default 0) over a ``t_stop_s`` transient printed every ``t_step_s``.

    Returns the text; also writes it to ``path`` when given. The ``wrdata`` files are named
    ``{data_prefix}.tran.data`` / ``.op.data`` (default prefix: the stem of ``path``, else
    ``analogdp``) and land in ngspice's working directory. ``run_command`` replaces the
    command the header suggests (default ``ngspice -b PATH``). ``device_model`` (a device
    model's ``describe()``) is recorded in the header: the conductances written are those the
    devices hold (and, with read noise, one read of them).
    """
    x, y, v0 = _check_inputs(circuit, x, y, v0, t_stop_s, t_step_s)
    _check_supported(circuit)
    if y is None:
        circuit = replace(circuit, beta=0.0)  # as the solver does: no target, no nudge
    prefix = data_prefix or (Path(path).stem if path is not None else DEFAULT_DATA_PREFIX)
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", prefix):
        raise ValueError(f"data prefix {prefix!r} must be a plain file name (letters, digits, _ . + -)")
    t_max_s = min(t_step_s, options.max_step_tau * circuit.neuron.tau_s)
    run_command = run_command or f"ngspice -b {path if path is not None else prefix + '.cir'}"
    title = title or (f"analogdp {'-'.join(map(str, circuit.layer_sizes))} {circuit.neuron_kind.name} "
                      f"{circuit.scheme}")

    writer = _Writer(circuit, x, y)
    if not circuit.amplifier.ideal:
        writer.lines += amplifier_subcircuits(circuit)
    for k in range(circuit.n_layers):
        writer.crossbar(k)
    v0_layers = v0.reshape(-1, circuit.compartments_per_neuron)
    for l in range(1, circuit.n_layers + 1):
        start = circuit.compartment_offset(l) // circuit.compartments_per_neuron
        writer.layer(l, v0_layers[start:start + circuit.layer_sizes[l]])
    writer.nudge()

    counted = count_amplifiers("\n".join(writer.lines))
    expected = circuit.amplifier_inventory()
    if {k: v for k, v in counted.items() if v or k in expected} != expected:
        raise AssertionError(f"netlist B sources {counted} differ from the amplifier inventory {expected}")

    simulator = [
        f".options reltol={spice_number(options.reltol)} abstol={spice_number(options.abstol_a)} "
        f"vntol={spice_number(options.vntol_v)}"
        + ("" if options.chgtol_c is None else f" chgtol={spice_number(options.chgtol_c)}"),
        f".tran {spice_number(t_step_s)} {spice_number(t_stop_s)} 0 {spice_number(t_max_s)} uic",
    ]
    text_lines = ([title.replace("\n", " ")]
                  + _header(circuit, run_command, prefix, y, t_stop_s, t_max_s, options)
                  + _device_model_lines(device_model)
                  + writer.lines + simulator
                  + (_interactive_hint(circuit) if options.interactive
                     else _control(writer, circuit, prefix, t_stop_s, options)) + [".end", ""])
    text = "\n".join(text_lines)
    if path is not None:
        from ..report import write_text  # written whole or not at all

        write_text(path, text)
    return text

