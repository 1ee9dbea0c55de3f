"""Device and periphery parameters, with units in their names and the sources of the defaults.

Every parameter is validated on construction: a negative, zero or non-finite value, or one
outside the physically meaningful range in its field metadata (``range``: far wider than any
real part, narrow enough to refuse typos such as 1e300), raises ``ValueError`` naming the
parameter, before any circuit is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields


def _check_positive(obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be a positive finite number, got {value!r}")


def _check_non_negative(obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be a non-negative finite number, got {value!r}")


def _option(help_text: str, check: str = "positive", **metadata):
    """Field metadata for the command lines: help text (units in it), the check of the value
    (``positive`` or ``non_negative``), optionally ``range`` (lowest, highest accepted), the
    option name and metavar."""
    return {"help": help_text, "check": check, **metadata}


def check_ranges(obj) -> None:
    """Every field of ``obj`` whose metadata has a ``range`` lies in it."""
    for f in fields(obj):
        bounds = f.metadata.get("range")
        value = getattr(obj, f.name)
        if bounds is None or value is None:
            continue
        low, high = bounds
        if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
            raise ValueError(f"{type(obj).__name__}.{f.name} must lie in [{low:g}, {high:g}], got {value!r}")


@dataclass(frozen=True)
class DeviceParams:
    """Resistive crossbar devices (one conductance per cross point; a signed weight uses a pair).

    Defaults: NeuroSim V1.4's RRAM, R_on = 100 kΩ and on/off ratio 17, i.e. G_max = 10 µS and
    G_min = 10 µS / 17 ≈ 0.588 µS (aihwkit's PCM preset, g_max 25 µS, is of the same order).

    Mapping (see :mod:`analogdp.circuit.mapping`): W = (G⁺ − G⁻)/G_u with
    G_u = (G_max − G_min)/w_max, so a weight of ±w_max uses the full swing of one device of the
    pair while the other sits at G_min.
    """

    g_min_s: float = field(default=10e-6 / 17.0, metadata=_option(
        "lowest device conductance, siemens (10 µS / on-off 17)", metavar="S", range=(1e-12, 1.0)))
    g_max_s: float = field(default=10e-6, metadata=_option(
        "highest device conductance, siemens", metavar="S", range=(1e-12, 1.0)))
    w_max: float = field(default=1.0, metadata=_option(
        "weight realised by the full conductance swing, dimensionless", metavar="W", range=(1e-6, 1e3)))

    def __post_init__(self):
        _check_positive(self, "g_min_s", "g_max_s", "w_max")
        check_ranges(self)
        if self.g_max_s <= self.g_min_s:
            raise ValueError(f"DeviceParams.g_max_s ({self.g_max_s}) must exceed g_min_s ({self.g_min_s})")

    @property
    def g_unit_s(self) -> float:
        """Conductance that represents a weight of 1."""
        return (self.g_max_s - self.g_min_s) / self.w_max


@dataclass(frozen=True)
class NeuronParams:
    """Neuron compartments and the periphery that drives the crossbar lines.

    - ``v_read_v``: voltage of activity 1 (V_r). 0.2 V sits in the 0.1–0.5 V read range of
      RRAM/PCM crossbars and keeps read disturb negligible.
    - ``r_m_ohm``, ``c_m_f``: compartment drive resistor and capacitance; 100 kΩ and 100 fF give
      τ = R_m C_m = 10 ns, a small on-chip RC (MIM capacitor of a few µm²).
    - ``p_amp_static_w``: static (bias) power of one amplifier or line driver, 1 µW: a CMOS OTA
      biased at about 1 µA from a 1 V supply. It is charged for every amplifier for the whole
      settle.
    """

    v_read_v: float = field(default=0.2, metadata=_option(
        "read voltage V_r of activity 1, volts", metavar="V", range=(1e-3, 10.0)))
    r_m_ohm: float = field(default=100e3, metadata=_option(
        "compartment drive resistor R_m, ohms", metavar="OHM", range=(1.0, 1e12)))
    c_m_f: float = field(default=100e-15, metadata=_option(
        "compartment capacitance C_m, farads (τ = R_m C_m = 10 ns with the defaults)", metavar="F",
        range=(1e-18, 1e-6)))
    p_amp_static_w: float = field(default=1e-6, metadata=_option(
        "static power of each amplifier / line driver, watts", "non_negative", option="--p-amp-w",
        metavar="W", range=(0.0, 1.0)))

    def __post_init__(self):
        _check_positive(self, "v_read_v", "r_m_ohm", "c_m_f")
        _check_non_negative(self, "p_amp_static_w")
        check_ranges(self)

    @property
    def tau_s(self) -> float:
        return self.r_m_ohm * self.c_m_f


@dataclass(frozen=True)
class ProgrammingParams:
    """Conductance programming by identical pulses (DESIGN §3.4).

    - ``delta_g_per_pulse_s``: conductance step of one pulse; the default splits the NeuroSim
      RRAM range (0.588–10 µS) into 64 levels (NeuroSim's default ``maxNumLevelLTP``).
    - ``e_pulse_j``: energy of one pulse; 2 V write voltage across a 10 µS device for 10 ns
      (NeuroSim's default write voltage and pulse width) gives 0.4 pJ.
    """

    delta_g_per_pulse_s: float = field(default=(10e-6 - 10e-6 / 17.0) / 64.0, metadata=_option(
        "conductance step of one programming pulse, siemens (default (G_max − G_min)/64 of the "
        "device range)", option="--delta-g-s", metavar="S", range=(1e-15, 1.0)))
    e_pulse_j: float = field(default=4e-13, metadata=_option(
        "energy of one programming pulse, joules (2 V, 10 µS, 10 ns)", "non_negative", metavar="J",
        range=(0.0, 1e-6)))

    def __post_init__(self):
        _check_positive(self, "delta_g_per_pulse_s")
        _check_non_negative(self, "e_pulse_j")
        check_ranges(self)


@dataclass(frozen=True)
class SampleHoldParams:
    """Storage of a settled state for equilibrium propagation's second phase (DESIGN §3.5).

    ``c_hold_f``: hold capacitor per stored value; writing a value v costs C_h v². 100 fF matches
    the compartment capacitance, enough to keep kT/C noise (≈0.2 mV) below the settling
    tolerance.
    """

    c_hold_f: float = field(default=100e-15, metadata=_option(
        "EP sample-and-hold capacitance per stored value, farads; writing v costs C_h v²",
        metavar="F", range=(1e-18, 1e-6)))

    def __post_init__(self):
        _check_positive(self, "c_hold_f")
        check_ranges(self)


def describe(params) -> dict:
    """Plain dict of a parameter dataclass (for JSON output and netlist headers)."""
    return {f.name: getattr(params, f.name) for f in fields(params)}
