"""Finite amplifiers: open-loop gain, gain-bandwidth, output swing, slew rate and offset (DESIGN §8).

Every amplifier of the circuit (line drivers, sense amplifiers, compartment amplifiers, buffers) is
ideal by default. :class:`AmplifierParams` describes a real one by a single-pole model,

    A(s) = A0 / (1 + s/ω_p),   ω_t = 2π·GBW = A0·ω_p,

plus output rails, a slew-rate limit and an input offset drawn per amplifier (seeded).

In an inverting stage whose input node sees the total conductance G_Σ (devices and source
resistors, everything but the feedback R_f), the noise gain is N = 1 + R_f·G_Σ. Loop analysis
with the model above gives the closed-loop output as the ideal one times

    1 / (1 + N/A0) · 1 / (1 + s·τ_amp),   τ_amp = N / (ω_t·(1 + N/A0)),

so the DC gain error is ε = N/A0 (the output is ideal/(1 + ε)) and, for A0 ≫ N, τ_amp ≈ N/ω_t
(DESIGN §8). These are :func:`closed_loop_gain_error` and :func:`amplifier_time_constant_s`.

The SPICE side is :func:`macromodel_subcircuit`: a transconductance stage into an RC (the pole),
its current clipped to give the slew rate, and an output buffer clipped at the rails.

Which amplifiers have dynamics (:func:`amplifier_stages`, the one list the ODE and the netlist
both read): the forward sense amplifier of every neuron (a_j, a transimpedance stage on the column
pair of its crossbar), the backward sense amplifier of every hidden neuron (b_i, on its row line),
and the compartment amplifier of every compartment (a follower, noise gain 1, driving C_m through
R_m). Each is modelled in closed loop as a stage of unity ideal gain and noise gain N: its pole
node p obeys

    dp/dt = clip(ω_t·(T/N + v_os − out/N), ±SR) − (ω_t/A0)·p,   out = clip(p, rails),

where T is the stage's ideal output (V) and the offset v_os is added to the non-inverting input.
At DC out = (T + N·v_os)/(1 + N/A0): the gain error ε = N/A0 and the offset multiplied by the
noise gain; unclipped, the output approaches it with the time
constant N/(ω_t·(1 + N/A0)). The line drivers, row-signal buffers, nudge sources and tile partial
sense amplifiers stay ideal in the dynamics (their static power is counted): the sense and
compartment stages are the ones whose noise gain and load set the speed and the error.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields

import numpy as np

from .params import _option

MACROMODEL_R_POLE_OHM = 1e6  # internal pole resistor of the macromodel; only R·C matters


def _positive_or_none(name: str, value) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"AmplifierParams.{name} must be a positive finite number or None (ideal), got {value!r}")


@dataclass(frozen=True)
class AmplifierParams:
    """One amplifier model shared by the amplifiers of a circuit; None fields are ideal.

    - ``a0_db``: open-loop DC gain in dB (``a0`` is the linear value, inf when None). Low-power
      CMOS OTAs reach 60–120 dB; CrossSim's default amplifier gain is 100 dB.
    - ``gbw_hz``: gain-bandwidth product (unity-gain frequency) in Hz, 1 MHz–1 GHz for such OTAs.
    - ``rail_low_v``, ``rail_high_v``: output swing limits in V (both or neither).
    - ``slew_v_per_s``: largest rate of change of the output in V/s.
    - ``offset_sigma_v``: standard deviation of the input offset voltage, drawn once per amplifier
      from ``offset_seed`` (a few mV for small CMOS OTAs); 0 = no offset.
    """

    a0_db: float | None = field(default=None, metadata=_option(
        "open-loop DC gain of every amplifier, dB (low-power CMOS OTAs 60-120; CrossSim's default 100); "
        "default: infinite", option="--amp-a0-db", metavar="DB", range=(0.0, 400.0)))
    gbw_hz: float | None = field(default=None, metadata=_option(
        "gain-bandwidth product of every amplifier, Hz (1e6-1e9 for such OTAs); default: infinite",
        option="--amp-gbw-hz", metavar="HZ", range=(1.0, 1e15)))
    rail_low_v: float | None = field(default=None, metadata=_option(
        "lower output rail of every amplifier, V (give both rails or neither); default: none",
        check="finite", option="--amp-rail-low-v", metavar="V"))
    rail_high_v: float | None = field(default=None, metadata=_option(
        "upper output rail of every amplifier, V; default: none", check="finite", option="--amp-rail-high-v",
        metavar="V"))
    slew_v_per_s: float | None = field(default=None, metadata=_option(
        "slew-rate limit of every amplifier output, V/s; default: none", option="--amp-slew-v-per-s",
        metavar="V/S"))
    offset_sigma_v: float = field(default=0.0, metadata=_option(
        "standard deviation of the input offset drawn per amplifier, V (a few mV for small CMOS OTAs)",
        check="non_negative", option="--amp-offset-sigma-v", metavar="V", range=(0.0, 1.0)))
    offset_seed: int = field(default=0, metadata=_option(
        "seed of the amplifier offsets", check="non_negative_int", option="--amp-offset-seed", metavar="SEED"))

    def __post_init__(self):
        _positive_or_none("a0_db", self.a0_db)
        _positive_or_none("gbw_hz", self.gbw_hz)
        _positive_or_none("slew_v_per_s", self.slew_v_per_s)
        if (self.rail_low_v is None) != (self.rail_high_v is None):
            raise ValueError("AmplifierParams.rail_low_v and rail_high_v must both be given or both be None")
        if self.rail_low_v is not None:
            for name in ("rail_low_v", "rail_high_v"):
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"AmplifierParams.{name} must be a finite voltage, got {value!r}")
            if not self.rail_low_v < self.rail_high_v:
                raise ValueError(f"AmplifierParams.rail_low_v ({self.rail_low_v}) must be below "
                                 f"rail_high_v ({self.rail_high_v})")
        if (isinstance(self.offset_sigma_v, bool) or not isinstance(self.offset_sigma_v, (int, float))
                or not math.isfinite(self.offset_sigma_v) or self.offset_sigma_v < 0):
            raise ValueError(f"AmplifierParams.offset_sigma_v must be a non-negative finite voltage, "
                             f"got {self.offset_sigma_v!r}")
        if isinstance(self.offset_seed, bool) or not isinstance(self.offset_seed, (int, np.integer)):
            raise ValueError(f"AmplifierParams.offset_seed must be an integer, got {self.offset_seed!r}")

    @property
    def a0(self) -> float:
        """Open-loop DC gain (linear); inf for an ideal amplifier."""
        return math.inf if self.a0_db is None else 10.0 ** (self.a0_db / 20.0)

    @property
    def omega_t_rad_s(self) -> float:
        """Unity-gain angular frequency ω_t = 2π·GBW; inf when GBW is ideal."""
        return math.inf if self.gbw_hz is None else 2.0 * math.pi * self.gbw_hz

    @property
    def ideal(self) -> bool:
        return (self.a0_db is None and self.gbw_hz is None and self.rail_low_v is None
                and self.slew_v_per_s is None and self.offset_sigma_v == 0.0)

    def draw_offsets_v(self, n_amplifiers: int) -> np.ndarray:
        """Input offsets (V) of ``n_amplifiers`` amplifiers, N(0, σ²), fixed by ``offset_seed``."""
        if isinstance(n_amplifiers, bool) or not isinstance(n_amplifiers, (int, np.integer)) or n_amplifiers < 0:
            raise ValueError(f"n_amplifiers must be a non-negative integer, got {n_amplifiers!r}")
        if self.offset_sigma_v == 0.0:
            return np.zeros(n_amplifiers)
        return self.offset_sigma_v * np.random.default_rng(self.offset_seed).standard_normal(n_amplifiers)


def _check_stage(r_f_ohm: float, g_sigma_s: float) -> float:
    for name, value in (("r_f_ohm", r_f_ohm), ("g_sigma_s", g_sigma_s)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return 1.0 + r_f_ohm * g_sigma_s


def closed_loop_gain_error(amplifier: AmplifierParams, r_f_ohm: float, g_sigma_s: float) -> float:
    """ε = (1 + R_f·G_Σ)/A0 of an inverting stage: its DC output is the ideal one / (1 + ε)."""
    noise_gain = _check_stage(r_f_ohm, g_sigma_s)
    return noise_gain / amplifier.a0


def curve_target_scale(noise_gain, a0):
    """1 + N/A0: a stage of the single-pole model settles to its ideal target / (1 + N/A0), so a
    measured transfer curve is given to the stage as curve·(1 + N/A0) for the stage to settle onto
    the curve itself (floats or per-stage arrays)."""
    return 1.0 + noise_gain / a0


def amplifier_time_constant_s(amplifier: AmplifierParams, r_f_ohm: float, g_sigma_s: float, *,
                              exact: bool = True) -> float:
    """Time constant the amplifier adds to an inverting stage: N/(ω_t·(1 + N/A0)) with the noise
    gain N = 1 + R_f·G_Σ (``exact``, the single-pole model's closed-loop pole), or the DESIGN §8
    approximation N/ω_t. 0 for an ideal GBW."""
    noise_gain = _check_stage(r_f_ohm, g_sigma_s)
    if amplifier.gbw_hz is None:
        return 0.0
    tau = noise_gain / amplifier.omega_t_rad_s
    return tau / (1.0 + noise_gain / amplifier.a0) if exact else tau


def macromodel_subcircuit(amplifier: AmplifierParams, name: str = "adp_amp") -> str:
    """ngspice text of ``.subckt NAME inp inn out params: vos=0``: an amplifier with the open-loop
    response of ``amplifier`` and an input offset ``vos`` (V, added to ``inp``; give each
    instance its drawn offset, ``X… a b c NAME vos=…``).

    Structure: ``G`` = A0/R_p·(v(inp) − vos − v(inn)) into node ``pole`` loaded by R_p ∥ C_p with
    R_p·C_p = A0/ω_t (so the DC gain is A0 and the unity-gain frequency ω_t); with a slew rate,
    that current is clipped at ±SR·C_p (a behavioural current source), which bounds dv/dt of the
    pole node at SR; the output is a buffer of the pole node, clipped at the rails. Infinite A0
    with finite GBW leaves out R_p (an integrator of unity-gain frequency ω_t); finite A0 with
    infinite GBW is a plain gain stage. The rails clip the buffer only, so the pole node can wind
    up beyond them while the output is saturated (as in the simplest behavioural models).
    """
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise ValueError(f"subcircuit name {name!r} must start with a letter and hold only letters, digits and _")
    if amplifier.a0_db is None and amplifier.gbw_hz is None:
        raise ValueError("an amplifier with infinite A0 and GBW is ideal: the netlist uses a controlled source, "
                         "not a macromodel")
    num = _spice_number
    lines = [f".subckt {name} inp inn out params: vos=0",
             f"* single-pole amplifier: A0 = {'inf' if amplifier.a0_db is None else num(amplifier.a0)}, "
             f"GBW = {'inf' if amplifier.gbw_hz is None else num(amplifier.gbw_hz)} Hz"]
    lines.append("Voffset inp_os inp {vos}")  # v(inp_os) = v(inp) + vos
    if amplifier.gbw_hz is None:
        lines.append(f"Bgain pole 0 V={num(amplifier.a0)}*(v(inp_os)-v(inn))")
    else:
        r_p = MACROMODEL_R_POLE_OHM
        if amplifier.a0_db is None:
            c_p = 1.0 / (amplifier.omega_t_rad_s * r_p)  # integrator: gm/C_p = ω_t with gm = 1/R_p
            gm = 1.0 / r_p
        else:
            c_p = amplifier.a0 / (amplifier.omega_t_rad_s * r_p)
            gm = amplifier.a0 / r_p
            lines.append(f"Rpole pole 0 {num(r_p)}")
        if amplifier.slew_v_per_s is None:
            lines.append(f"Gstage 0 pole inp_os inn {num(gm)}")
        else:
            i_max = amplifier.slew_v_per_s * c_p
            lines.append(f"Bstage 0 pole I=max(-{num(i_max)},min({num(i_max)},{num(gm)}*(v(inp_os)-v(inn))))")
        lines.append(f"Cpole pole 0 {num(c_p)}")
    if amplifier.rail_low_v is None:
        lines.append("Bout out 0 V=v(pole)")
    else:
        lines.append(f"Bout out 0 V=max({num(amplifier.rail_low_v)},min({num(amplifier.rail_high_v)},v(pole)))")
    lines.append(f".ends {name}")
    return "\n".join(lines) + "\n"


# kinds of dynamic amplifier stage, in the order of their states
STAGE_FORWARD_SENSE, STAGE_BACKWARD_SENSE, STAGE_COMPARTMENT = range(3)
STAGE_KINDS = ("forward_sense", "backward_sense", "compartment")


def _transfer_table(name: str, values) -> tuple[float, ...] | None:
    if values is None:
        return None
    table = tuple(float(v) for v in values)
    if len(table) < 2 or not all(math.isfinite(v) for v in table):
        raise ValueError(f"StageAmplifierParams.{name} must hold at least two finite numbers")
    return table


@dataclass(frozen=True)
class StageAmplifierParams(AmplifierParams):
    """Amplifiers that differ by stage kind, as in a circuit built of different cells.

    The fields inherited from :class:`AmplifierParams` describe the sense amplifiers (forward and
    backward); the others override what differs:

    - ``sense_noise_gain``: a fixed noise gain N of every sense stage, for a transimpedance stage
      whose feedback resistor is chosen per line (R_f = (N − 1)/G_Σ) rather than the 1/G_u of the
      signal scaling (None: N = 1 + G_Σ/G_u, :func:`line_noise_gains`);
    - ``hidden_compartment``, ``output_compartment``: the amplifier of the compartment stages of
      hidden and of output neurons (None: the sense amplifier's);
    - ``hidden_transfer_u``, ``hidden_transfer_v``: a measured DC transfer curve of the hidden
      compartment stage, its output (V) against its input u (in units of V_r; increasing),
      interpolated linearly and held at the end values. It replaces V_r·f(u) and the stage's own
      gain error: the curve is what the stage settles to (its dynamics stay the pole of
      ``hidden_compartment``). Hard-sigmoid circuits only.
    """

    sense_noise_gain: float | None = None
    hidden_compartment: AmplifierParams | None = None
    output_compartment: AmplifierParams | None = None
    hidden_transfer_u: tuple[float, ...] | None = None
    hidden_transfer_v: tuple[float, ...] | None = None

    def __post_init__(self):
        super().__post_init__()
        n = self.sense_noise_gain
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n)
                              or n < 1.0):
            raise ValueError(f"StageAmplifierParams.sense_noise_gain must be a finite number >= 1 or None, got {n!r}")
        for name in ("hidden_compartment", "output_compartment"):
            value = getattr(self, name)
            nested = isinstance(value, StageAmplifierParams)
            if value is not None and (not isinstance(value, AmplifierParams) or nested):
                raise ValueError(f"StageAmplifierParams.{name} must be an AmplifierParams or None, got {value!r}")
        u = _transfer_table("hidden_transfer_u", self.hidden_transfer_u)
        v = _transfer_table("hidden_transfer_v", self.hidden_transfer_v)
        if (u is None) != (v is None):
            raise ValueError("StageAmplifierParams.hidden_transfer_u and hidden_transfer_v must both be given or "
                             "both be None")
        if u is not None:
            if len(u) != len(v):
                raise ValueError(f"StageAmplifierParams.hidden_transfer_u ({len(u)} points) and hidden_transfer_v "
                                 f"({len(v)}) must have the same length")
            if any(b <= a for a, b in zip(u, u[1:])):
                raise ValueError("StageAmplifierParams.hidden_transfer_u must increase")
        object.__setattr__(self, "hidden_transfer_u", u)
        object.__setattr__(self, "hidden_transfer_v", v)

    @property
    def sense(self) -> AmplifierParams:
        """The sense stages' amplifier (the inherited fields) as a plain :class:`AmplifierParams`."""
        return AmplifierParams(**{f.name: getattr(self, f.name) for f in fields(AmplifierParams)})

    @property
    def ideal(self) -> bool:
        return (self.sense.ideal and all(a is None or a.ideal for a in (self.hidden_compartment,
                                                                         self.output_compartment))
                and self.hidden_transfer_u is None)


def stage_amplifiers(amplifier: AmplifierParams) -> tuple[AmplifierParams, AmplifierParams, AmplifierParams]:
    """The amplifier of the sense, hidden-compartment and output-compartment stages."""
    if not isinstance(amplifier, StageAmplifierParams):
        return amplifier, amplifier, amplifier
    sense = amplifier.sense
    return sense, amplifier.hidden_compartment or sense, amplifier.output_compartment or sense


@dataclass(frozen=True)
class AmplifierStages:
    """The finite-amplifier stages of one circuit, in state order (forward sense of every neuron
    of layers 1..L, backward sense of every hidden neuron, then every compartment):
    ``kind`` (STAGE_*), ``noise_gain`` N (≥ 1), ``offset_v`` (input offset drawn per stage), and
    which amplifier each stage is: ``amplifier`` indexes ``amplifiers`` (sense, hidden compartment,
    output compartment; :func:`stage_amplifiers`)."""

    kind: np.ndarray
    noise_gain: np.ndarray
    offset_v: np.ndarray
    amplifier: np.ndarray | None = None
    amplifiers: tuple[AmplifierParams, ...] = ()

    @property
    def size(self) -> int:
        return int(self.kind.size)

    def per_stage(self, value) -> np.ndarray:
        """``value(amplifier)`` of every stage's amplifier, as a float array in stage order."""
        return np.array([value(a) for a in self.amplifiers], dtype=np.float64)[self.amplifier]


def line_noise_gains(g_line_s: np.ndarray, g_unit_s: float) -> np.ndarray:
    """Noise gain 1 + R_f·G_Σ of the transimpedance stages sensing lines of total conductance
    ``g_line_s``, with the feedback R_f = 1/G_u of the G_u·V_r signal scaling (DESIGN §3.2, §8)."""
    return 1.0 + np.asarray(g_line_s, dtype=np.float64) / g_unit_s


def _draw_stage_offsets_v(amplifier: AmplifierParams, sigma_v: np.ndarray) -> np.ndarray:
    """Offsets of stages whose amplifiers have input-offset σ ``sigma_v`` (per stage), one normal
    draw per stage in state order from the (sense) amplifier's ``offset_seed``: with one σ for
    every stage, the draws of :meth:`AmplifierParams.draw_offsets_v`."""
    if not np.any(sigma_v):
        return np.zeros(sigma_v.size)
    return sigma_v * np.random.default_rng(amplifier.offset_seed).standard_normal(sigma_v.size)


def amplifier_stages(circuit) -> AmplifierStages:
    """The dynamic amplifier stages of a :class:`~analogdp.circuit.network.NetworkCircuit`.

    A forward sense stage sees the column pair of its neuron (G_Σ = Σ_i G⁺_ij + G⁻_ij), a backward
    sense stage the row line of its neuron (G_Σ = Σ_j G⁺_ij + G⁻_ij). On a tiled crossbar each tile
    has its own sense stage on its part of the line; the stage with the largest G_Σ (the slowest,
    with the largest gain error) stands for the signal. A :class:`StageAmplifierParams` may fix the
    sense stages' noise gain and give the compartments their own amplifiers. Offsets are drawn in
    state order from ``amplifier.offset_seed``.
    """
    from .wires import _tile_edges  # the tiling rule lives with the wires

    amp = circuit.amplifier
    fixed_sense_gain = amp.sense_noise_gain if isinstance(amp, StageAmplifierParams) else None
    g_unit = circuit.device.g_unit_s
    kinds, gains = [], []
    for k, xbar in enumerate(circuit.crossbars):
        g = xbar.g_pos_s + xbar.g_neg_s
        row_bounds = _tile_edges(xbar.n_rows, circuit.wires.max_rows)
        col_sum = np.max([g[r0:r1].sum(axis=0) for r0, r1 in row_bounds], axis=0)
        kinds.append(np.full(xbar.n_columns, STAGE_FORWARD_SENSE))
        gains.append(line_noise_gains(col_sum, g_unit))
    for k, xbar in enumerate(circuit.crossbars[1:], start=1):
        g = xbar.g_pos_s + xbar.g_neg_s
        col_bounds = _tile_edges(xbar.n_columns, circuit.wires.max_cols)
        row_sum = np.max([g[:xbar.n_inputs, c0:c1].sum(axis=1) for c0, c1 in col_bounds], axis=0)
        kinds.append(np.full(xbar.n_inputs, STAGE_BACKWARD_SENSE))
        gains.append(line_noise_gains(row_sum, g_unit))
    if fixed_sense_gain is not None:
        gains = [np.full(g.size, float(fixed_sense_gain)) for g in gains]
    kinds.append(np.full(circuit.n_compartments, STAGE_COMPARTMENT))
    gains.append(np.ones(circuit.n_compartments))
    kind = np.concatenate(kinds).astype(np.int64)
    # which amplifier: 0 sense, 1 hidden compartment, 2 output compartment
    which = np.zeros(kind.size, dtype=np.int64)
    first_compartment = kind.size - circuit.n_compartments
    first_output = first_compartment + circuit.compartment_offset(circuit.n_layers)
    which[first_compartment:first_output] = 1
    which[first_output:] = 2
    amplifiers = stage_amplifiers(amp)
    sigma_v = np.array([a.offset_sigma_v for a in amplifiers])[which]
    return AmplifierStages(kind=kind, noise_gain=np.concatenate(gains), offset_v=_draw_stage_offsets_v(amp, sigma_v),
                           amplifier=which, amplifiers=amplifiers)


def stage_subcircuit(amplifier: AmplifierParams, name: str = "adp_stage", amplifier_name: str = "adp_amp") -> str:
    """ngspice text of ``.subckt NAME in out params: vos=0 ngain=1``: the amplifier
    :func:`macromodel_subcircuit` in a non-inverting loop of noise gain ``ngain`` and unity ideal
    gain (its input is v(in)/ngain, its feedback v(out)/ngain), the closed-loop stage of
    :func:`amplifier_stages`. Include :func:`macromodel_subcircuit` as well."""
    for label in (name, amplifier_name):
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", label):
            raise ValueError(f"subcircuit name {label!r} must start with a letter and hold only letters, digits and _")
    return (f".subckt {name} in out params: vos=0 ngain=1\n"
            "* closed-loop stage: ideal output v(in), noise gain ngain (DESIGN §8)\n"
            "Bscale inp 0 V=v(in)/{ngain}\n"
            "Bfeedback inn 0 V=v(out)/{ngain}\n"
            f"Xamp inp inn out {amplifier_name} vos={{vos}}\n"
            f".ends {name}\n")


def _spice_number(value: float) -> str:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot write a non-finite value ({value!r}) into a netlist")
    return repr(value)
