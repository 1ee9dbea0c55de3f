"""Finite amplifiers in the circuit (DESIGN §8.2): the ODE against ngspice running the macromodel
netlist, the limits of the model, the DC gain error, the energy balance and the equilibrium engine."""

from dataclasses import replace

import numpy as np
import pytest

from analogdp.circuit.amplifiers import (STAGE_COMPARTMENT, STAGE_FORWARD_SENSE, AmplifierParams, StageAmplifierParams,
                                         amplifier_stages, closed_loop_gain_error)
from analogdp.circuit.wires import WireParams
from analogdp.equilibrium import steady_state
from analogdp.solver import settle
from analogdp.spice.compare import cross_check
from analogdp.spice.examples import random_problem
from sims import crossbar

A0_DB = 60.0
OFFSETS = dict(offset_sigma_v=1e-3, offset_seed=7)


def _with(circuit, **amplifier):
    return replace(circuit, amplifier=AmplifierParams(**amplifier))


@pytest.mark.parametrize("sizes, gbw_hz, t_stop_s", [
    ((6, 4, 3), 100e6, 400e-9),
    ((6, 4, 3), 10e6, 3e-6),
    ((64, 32, 10), 100e6, 2e-6),
])
def test_the_solver_matches_ngspice_running_the_macromodel_netlist(ngspice, sizes, gbw_hz, t_stop_s):
    circuit, x, y = random_problem(sizes, seed=1)
    finite = _with(circuit, a0_db=A0_DB, gbw_hz=gbw_hz, **OFFSETS)
    check = cross_check(finite, x, y, t_stop_s=t_stop_s, t_step_s=t_stop_s / 400, time_numba=False)
    assert check.passed(), check.failures()
    # the amplifiers matter at this GBW: the settle is slower than the ideal circuit's
    ideal = settle(circuit, x[None], y[None])
    assert check.settling_time_numba_s > 1.1 * ideal.settling_time_s[0]


def test_infinite_gain_and_bandwidth_give_the_ideal_circuit():
    circuit, x, y = random_problem((6, 4, 3), seed=2)
    ideal = settle(circuit, x[None], y[None])
    v_r = circuit.neuron.v_read_v
    # A0 → ∞ (GBW infinite): the gain error N/A0 vanishes
    huge_gain = settle(_with(circuit, a0_db=200.0), x[None], y[None])
    assert np.abs(huge_gain.v_final_v - ideal.v_final_v).max() < 1e-9 * v_r
    # GBW → ∞ (A0 infinite): the same equilibrium, and a settling time that approaches the ideal
    # one as 1/GBW
    excess = []
    for gbw_hz in (1e8, 1e9):
        fast = settle(_with(circuit, gbw_hz=gbw_hz), x[None], y[None])
        assert np.abs(fast.v_final_v - ideal.v_final_v).max() < 1e-9 * v_r
        excess.append(fast.settling_time_s[0] - ideal.settling_time_s[0])
    assert excess[0] > 0 and 4.0 < excess[0] / excess[1] < 25.0


def test_the_fixed_point_shifts_by_the_closed_loop_gain_error():
    """A layer of output dyads without nudge: v = V_r·a·/((1 + ε_sense)(1 + ε_compartment)) with
    ε = (1 + R_f G_Σ)/A0, R_f = 1/G_u and G_Σ the column pair's conductance (DESIGN §8)."""
    circuit, x, _ = random_problem((16, 8), seed=3, nudge=False)
    ideal = settle(circuit, x[None]).v_final_v[0]
    amplifier = AmplifierParams(a0_db=A0_DB)
    finite = settle(replace(circuit, amplifier=amplifier), x[None]).v_final_v[0]
    xbar = circuit.crossbars[0]
    g_sigma = xbar.g_pos_s.sum(axis=0) + xbar.g_neg_s.sum(axis=0)
    r_f = 1.0 / circuit.device.g_unit_s
    eps_sense = np.array([closed_loop_gain_error(amplifier, r_f, float(g)) for g in g_sigma])
    eps_compartment = closed_loop_gain_error(amplifier, 0.0, 0.0)
    predicted = ideal - ideal / np.repeat((1 + eps_sense) * (1 + eps_compartment), 2)
    measured = ideal - finite
    assert np.abs(measured).max() > 1e-4 * circuit.neuron.v_read_v  # a shift worth checking
    np.testing.assert_allclose(measured, predicted, rtol=0.01, atol=1e-12)
    stages = amplifier_stages(circuit)
    assert np.all(stages.noise_gain[stages.kind == STAGE_COMPARTMENT] == 1.0)
    np.testing.assert_allclose(stages.noise_gain[stages.kind == STAGE_FORWARD_SENSE], 1 + r_f * g_sigma)


@pytest.mark.parametrize("amplifier", [
    dict(a0_db=A0_DB, gbw_hz=30e6, **OFFSETS),
    dict(a0_db=A0_DB, gbw_hz=100e6, rail_low_v=-0.05, rail_high_v=0.15, slew_v_per_s=2e7),
])
def test_energy_balances_and_the_equilibrium_engine_agrees(amplifier):
    circuit, x, y = random_problem((12, 6, 4), seed=4)
    finite = _with(circuit, **amplifier)
    result = settle(finite, x[None], y[None])
    energy = result.energy_to_end
    balance = energy.crossbar + energy.neuron + energy.capacitor
    np.testing.assert_allclose(energy.delivered, balance, rtol=1e-6)
    equilibrium = steady_state(finite, x[None], y[None])
    assert np.abs(equilibrium - result.v_final_v).max() < 1e-6 * circuit.neuron.v_read_v
    ideal = settle(circuit, x[None], y[None])
    assert np.abs(result.v_final_v - ideal.v_final_v).max() > 1e-4 * circuit.neuron.v_read_v


def test_rails_and_slew_rate_shape_the_transient():
    circuit, x, y = random_problem((6, 4, 3), seed=5)
    free = settle(_with(circuit, gbw_hz=100e6), x[None], y[None])
    slewed = settle(_with(circuit, gbw_hz=100e6, slew_v_per_s=2e6), x[None], y[None])
    # a 2 V/µs output cannot move V_r/2 in less than 50 ns
    assert slewed.settling_time_s[0] > free.settling_time_s[0] + 30e-9
    np.testing.assert_allclose(slewed.v_final_v, free.v_final_v, atol=1e-9)
    railed = settle(_with(circuit, rail_low_v=-1.0, rail_high_v=0.05), x[None], y[None])
    assert railed.v_final_v.max() <= 0.05 + 1e-9


@pytest.mark.parametrize("bad, message", [
    (dict(gbw_hz=0.0), "gbw_hz"), (dict(gbw_hz=-1e6), "gbw_hz"), (dict(a0_db=float("nan")), "a0_db"),
    (dict(offset_sigma_v=-1e-3), "offset_sigma_v"), (dict(rail_low_v=0.1), "rail_high_v"),
])
def test_bad_amplifier_parameters_are_refused_by_name(bad, message):
    with pytest.raises(ValueError, match=message):
        AmplifierParams(**bad)


def test_the_command_line_takes_the_amplifier_and_reports_its_limits(run_cli, tmp_path):
    out = tmp_path / "run.json"
    code, _, _ = run_cli(crossbar.main, ["--size", "16x8", "--samples", "2", "--amp-a0-db", "60",
                                         "--amp-gbw-hz", "1e8", "--amp-offset-sigma-v", "1e-3", "--json", str(out),
                                         "--no-progress"])
    assert code == 0
    import json

    summary = json.loads(out.read_text())
    limits = summary["amplifier_limits"]
    assert set(limits) == {"forward_sense", "backward_sense", "compartment"}
    assert limits["compartment"]["time_constant_max_s"] == pytest.approx(1 / (2 * np.pi * 1e8) / 1.001, rel=1e-6)
    assert summary["params"]["circuit"]["amplifier"]["gbw_hz"] == 1e8
    for option, value in (("--amp-gbw-hz", "0"), ("--amp-gbw-hz", "-5"), ("--amp-a0-db", "nan"),
                          ("--amp-offset-sigma-v", "-1")):
        code, _, err = run_cli(crossbar.main, ["--size", "16x8", "--samples", "2", option, value])
        assert code == 2 and option in err and len(err.strip().splitlines()) == 1


def test_amplifiers_and_resistive_wires_together(ngspice):
    circuit, x, y = random_problem((16, 8, 4), seed=1)
    both = replace(circuit, wires=WireParams(r_row_segment_ohm=10.0, r_col_segment_ohm=10.0),
                   amplifier=AmplifierParams(a0_db=A0_DB, gbw_hz=100e6, **OFFSETS))
    result = settle(both, x[None], y[None])
    energy = result.energy_to_end
    np.testing.assert_allclose(energy.delivered, energy.crossbar + energy.neuron + energy.capacitor + energy.wire,
                               rtol=1e-6)
    assert result.ir_drop[0]["forward_max_rel"][0] > 1e-3
    assert np.abs(steady_state(both, x[None], y[None]) - result.v_final_v).max() < 1e-6 * circuit.neuron.v_read_v
    check = cross_check(both, x, y, t_stop_s=1e-6, t_step_s=2.5e-9, time_numba=False)
    assert check.passed(), check.failures()


def test_one_amplifier_per_stage_kind_without_overrides_changes_nothing():
    circuit, x, y = random_problem((6, 4, 3), seed=2)
    base = dict(a0_db=A0_DB, gbw_hz=30e6, rail_low_v=-0.5, rail_high_v=0.5, **OFFSETS)
    plain = settle(_with(circuit, **base), x[None], y[None])
    staged = settle(replace(circuit, amplifier=StageAmplifierParams(**base)), x[None], y[None])
    np.testing.assert_array_equal(staged.v_final_v, plain.v_final_v)
    assert staged.settling_time_s[0] == plain.settling_time_s[0]


def test_stage_kinds_take_their_own_amplifier_noise_gain_and_transfer_curve():
    circuit, x, y = random_problem((6, 4, 3), seed=2)
    sense = AmplifierParams(a0_db=A0_DB, gbw_hz=30e6)
    hidden = AmplifierParams(a0_db=30.0, gbw_hz=12e6, rail_low_v=0.006, rail_high_v=0.2)
    output = AmplifierParams(a0_db=40.0, gbw_hz=20e6)
    u_table = (-1.0, 0.0, 0.5, 1.0, 2.0)
    v_table = (0.006, 0.012, 0.1, 0.195, 0.2)  # a rounded clip, in V at V_r = 0.2 V
    amplifier = StageAmplifierParams(**{f: getattr(sense, f) for f in ("a0_db", "gbw_hz")}, sense_noise_gain=1.5,
                                     hidden_compartment=hidden, output_compartment=output,
                                     hidden_transfer_u=u_table, hidden_transfer_v=v_table)
    staged = replace(circuit, amplifier=amplifier)
    stages = amplifier_stages(staged)
    assert np.all(stages.noise_gain[stages.kind != STAGE_COMPARTMENT] == 1.5)
    n_hidden_c = circuit.compartment_offset(circuit.n_layers)
    compartments = np.flatnonzero(stages.kind == STAGE_COMPARTMENT)
    assert [stages.amplifiers[i] for i in stages.amplifier[compartments[[0, n_hidden_c]]]] == [hidden, output]
    result = settle(staged, x[None], y[None])
    tau = result.amplifier_time_constants_s
    assert tau[compartments[0]] == pytest.approx(1 / (2 * np.pi * 12e6 * (1 + 10 ** (-30 / 20))), rel=1e-12)
    assert tau[0] == pytest.approx(1.5 / (2 * np.pi * 30e6 * (1 + 1.5 * 10 ** (-A0_DB / 20))), rel=1e-12)
    # the hidden compartments settle onto the curve of their amplifier input a + κ b (the sense outputs)
    out = result.amplifier_outputs_v[0]
    n_neurons = sum(circuit.layer_sizes[1:])
    n_hidden = sum(circuit.layer_sizes[1:-1])
    a = out[:n_hidden] / 0.2
    b = out[n_neurons:n_neurons + n_hidden] / 0.2
    u = (a[:, None] + np.asarray(circuit.neuron_kind.feedback_gains)[None, :] * b[:, None]).ravel()
    np.testing.assert_allclose(result.v_final_v[0, :n_hidden_c], np.interp(u, u_table, v_table), rtol=0, atol=2e-6)
    with pytest.raises(ValueError, match="hidden_transfer_u"):
        StageAmplifierParams(hidden_transfer_u=(0.0, 1.0))
    with pytest.raises(ValueError, match="increase"):
        StageAmplifierParams(hidden_transfer_u=(1.0, 0.0), hidden_transfer_v=(0.0, 0.2))
    with pytest.raises(ValueError, match="sense_noise_gain"):
        StageAmplifierParams(sense_noise_gain=0.5)
    with pytest.raises(ValueError, match="hard sigmoid"):
        settle(replace(staged, activation="relu"), x[None], y[None])
