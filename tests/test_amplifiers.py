"""Finite-amplifier formulas (analogdp.circuit.amplifiers) against the macromodel in ngspice."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analogdp.circuit.amplifiers import (
    AmplifierParams,
    amplifier_time_constant_s,
    closed_loop_gain_error,
    macromodel_subcircuit,
)
from analogdp.spice import run_ngspice

R_IN, R_F, R_G = 100e3, 100e3, 50e3  # inverting stage; R_G adds input-node conductance (devices)
G_SIGMA = 1.0 / R_IN + 1.0 / R_G
STAGES = {  # name: (amplifier, offset V, input step V)
    "a": (AmplifierParams(a0_db=60.0, gbw_hz=10e6), 0.0, 0.1),
    "b": (AmplifierParams(a0_db=80.0, gbw_hz=100e6), 0.0, 0.1),
    "c": (AmplifierParams(a0_db=60.0, gbw_hz=10e6, offset_sigma_v=2e-3, offset_seed=4), None, 0.1),
    "s": (AmplifierParams(a0_db=80.0, gbw_hz=100e6, slew_v_per_s=2e6, rail_low_v=-0.15, rail_high_v=0.15), 0.0, 0.2),
}


def _netlist() -> str:
    lines = ["inverting stages with macromodel amplifiers"]
    for name, (amplifier, offset, step) in STAGES.items():
        vos = amplifier.draw_offsets_v(1)[0] if offset is None else offset
        lines.append(macromodel_subcircuit(amplifier, f"amp_{name}").rstrip())
        lines += [f"Vin_{name} in_{name} 0 DC {step} PWL(0 0 1e-12 {step})",
                  f"Rin_{name} in_{name} inn_{name} {R_IN}", f"Rg_{name} inn_{name} 0 {R_G}",
                  f"Rf_{name} inn_{name} out_{name} {R_F}",
                  f"X{name} 0 inn_{name} out_{name} amp_{name} vos={float(vos)!r}"]
    outs = " ".join(f"v(out_{name})" for name in STAGES)
    lines += [".options reltol=1e-7 abstol=1e-15 vntol=1e-10", ".tran 1e-10 1.5e-6 0 1e-10",
              ".control", "set wr_singlescale", "set wr_vecnames", "set numdgt=15",
              "op", f"wrdata amp.op.data {outs}", "run", f"wrdata amp.tran.data {outs}", "quit", ".endc", ".end"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def stages_in_ngspice():
    return run_ngspice(_netlist())


@pytest.mark.ngspice
@pytest.mark.parametrize("name", ["a", "b", "c"])
def test_dc_gain_error_matches_the_formula(stages_in_ngspice, name):
    amplifier, offset, step = STAGES[name]
    vos = amplifier.draw_offsets_v(1)[0] if offset is None else offset
    v_out = stages_in_ngspice.files["amp.op.data"].vectors[f"v(out_{name})"][0]
    noise_gain = 1.0 + R_F * G_SIGMA
    # ideal output: -R_f/R_in·V_in plus the offset amplified by the noise gain
    ideal = -R_F / R_IN * step + noise_gain * vos
    measured_epsilon = ideal / v_out - 1.0
    predicted = closed_loop_gain_error(amplifier, R_F, G_SIGMA)
    assert predicted == pytest.approx(noise_gain / amplifier.a0)
    assert measured_epsilon == pytest.approx(predicted, rel=0.01)
    if name == "c":
        assert abs(vos) > 1e-4  # the seeded offset is really there


@pytest.mark.ngspice
@pytest.mark.parametrize("name", ["a", "b"])
def test_step_response_time_constant_matches_the_formula(stages_in_ngspice, name):
    amplifier, _, _ = STAGES[name]
    run = stages_in_ngspice
    t = run.time_s
    v = run.vector(f"v(out_{name})")
    final = v[-1]
    remaining = (final - v) / final  # 1 at the step, decays as exp(-t/τ)
    k = int(np.flatnonzero(remaining < math.exp(-1.0))[0])
    # linear interpolation of the 1/e crossing (the step happens at 1 ps)
    t_cross = t[k - 1] + (remaining[k - 1] - math.exp(-1.0)) / (remaining[k - 1] - remaining[k]) * (t[k] - t[k - 1])
    tau_measured = t_cross - 1e-12
    tau = amplifier_time_constant_s(amplifier, R_F, G_SIGMA)
    assert tau_measured == pytest.approx(tau, rel=0.01)
    # the DESIGN approximation N/ω_t differs from the exact pole by the factor 1 + N/A0
    approx = amplifier_time_constant_s(amplifier, R_F, G_SIGMA, exact=False)
    assert approx / tau == pytest.approx(1.0 + (1.0 + R_F * G_SIGMA) / amplifier.a0)


@pytest.mark.ngspice
def test_slew_rate_and_rails_limit_the_output(stages_in_ngspice):
    amplifier, _, _ = STAGES["s"]
    run = stages_in_ngspice
    t, v = run.time_s, run.vector("v(out_s)")
    assert v.min() == pytest.approx(amplifier.rail_low_v, abs=1e-9)  # unclipped it would reach -0.2 V
    slope = np.abs(np.diff(v) / np.diff(t))
    assert slope.max() == pytest.approx(amplifier.slew_v_per_s, rel=0.01)


def test_parameters_are_validated():
    assert AmplifierParams().ideal and AmplifierParams().a0 == math.inf
    assert AmplifierParams(a0_db=60.0).a0 == pytest.approx(1000.0)
    for bad in (dict(a0_db=0.0), dict(gbw_hz=-1.0), dict(gbw_hz=float("nan")), dict(slew_v_per_s=0.0),
                dict(rail_low_v=0.1), dict(rail_low_v=0.2, rail_high_v=0.1), dict(offset_sigma_v=-1e-3)):
        with pytest.raises(ValueError, match="AmplifierParams"):
            AmplifierParams(**bad)
    with pytest.raises(ValueError, match="ideal"):
        macromodel_subcircuit(AmplifierParams())
    offsets = AmplifierParams(offset_sigma_v=3e-3, offset_seed=1).draw_offsets_v(2000)
    assert np.std(offsets) == pytest.approx(3e-3, rel=0.1)
    np.testing.assert_array_equal(offsets, AmplifierParams(offset_sigma_v=3e-3, offset_seed=1).draw_offsets_v(2000))
    assert amplifier_time_constant_s(AmplifierParams(a0_db=60.0), R_F, G_SIGMA) == 0.0
