"""Learning through device models: the programmer, the experiment configuration and the command
lines with non-ideal devices, read noise per settle, pulse coincidence, refresh and drift."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from analogdp import experiment
from analogdp.algorithms import DualPropagation, EquilibriumPropagation, dp_rank_one_terms, ep_rank_one_terms
from analogdp.circuit import NetworkCircuit, dyad_neuron, ep_neuron
from analogdp.circuit.devices import ConstantStepDevice, ExpStepDevice, IdealDevice
from analogdp.circuit.presets import device_from_preset
from analogdp.digital.dp import dp_weight_update
from analogdp.ep_circuit import contrastive_update, run_phases
from analogdp.experiment import ExperimentConfig, run_experiment
from analogdp.programming import ConductanceProgrammer
from analogdp.solver import settle
from sims import crossbar

SMALL = ExperimentConfig(layers=(16, 8, 10), dataset="random", samples=4)
SMALL_CLI = ["--size", "16x8", "--dataset", "random", "--samples", "4", "--no-progress"]


def small_problem(neuron_kind, seed=0):
    rng = np.random.default_rng(seed)
    weights = [rng.uniform(-0.3, 0.3, (8, 16)), rng.uniform(-0.3, 0.3, (10, 8))]
    circuit = NetworkCircuit.from_weights(weights, [np.zeros(8), np.zeros(10)], neuron_kind=neuron_kind, beta=0.5)
    x = rng.random((1, 16))
    y = np.eye(10)[[3]]
    return circuit, x, y


# ---- configuration -------------------------------------------------------------------------


def test_config_with_devices_round_trips_through_json():
    for config in (
        dataclasses.replace(SMALL, device_model="rram-gong2018", device_param=("read_noise=0.02", "c2c=1.5"),
                            update="pulse-coincidence", time_per_update_s=1.0),
        dataclasses.replace(SMALL, device_model=ExpStepDevice(step_s=1e-8, read_noise=0.01), update="refresh"),
    ):
        again = ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict())))
        assert again == config
        assert again.device_response == config.device_response
    config = dataclasses.replace(SMALL, device_model="rram-gong2018", device_param={"read_noise": 0.02})
    assert config.device_response.read_noise == 0.02 and config.device_response.c2c == 5.0
    assert ExperimentConfig.from_options(layers=(16, 8, 10), bl=63).coincidence.bl == 63


@pytest.mark.parametrize("change, message", [
    (dict(device_model="memristor"), "device_model"),
    (dict(device_param=("colour=3",)), "colour"),
    (dict(device_param=("read_noise=nan",)), "read_noise"),
    (dict(device_param=("read_noise=-0.1",)), "read_noise"),
    (dict(device_param=("read_noise",)), "NAME=VALUE"),
    (dict(update="sometimes"), "update"),
    (dict(time_per_update_s=-1.0), "time_per_update_s"),
])
def test_config_refuses_bad_device_input(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SMALL, **change)


BAD_DEVICE_INPUTS = [
    (["--device", "memristor"], "--device"),
    (["--device-param", "colour=3"], "colour"),
    (["--device-param", "read_noise=nan"], "read_noise"),
    (["--device-param", "read_noise=inf"], "read_noise"),
    (["--device-param", "c2c=-1"], "c2c"),
    (["--device", "rram-hfo2", "--device-param", "write_noise=-0.5"], "write_noise"),
    (["--device-param", "stuck_fraction=2"], "stuck_fraction"),
    (["--bl", "0"], "--bl"),
    (["--bl", "-3"], "--bl"),
    (["--update", "often"], "--update"),
    (["--time-per-update-s", "0"], "--time-per-update-s"),
]


@pytest.mark.parametrize("argv, name", BAD_DEVICE_INPUTS, ids=lambda a: " ".join(a) if isinstance(a, list) else a)
def test_bad_device_input_exits_2_with_one_line_naming_it(run_cli, argv, name, monkeypatch):
    monkeypatch.setattr(experiment, "load_examples", lambda *a, **k: pytest.fail("read data despite bad input"))
    status, out, err = run_cli(crossbar.main, SMALL_CLI + argv)
    assert status == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m sims.crossbar: error:"), err
    assert name in lines[0]


def test_spice_check_refuses_a_bad_device_parameter(run_cli):
    from sims import spice_check

    status, _, err = run_cli(spice_check.main, ["--layers", "4x3x2", "--device-param", "read_noise=-1"])
    assert status == 2 and len(err.strip().splitlines()) == 1 and "read_noise" in err


# ---- the programmer ------------------------------------------------------------------------


def test_ideal_device_is_the_default_and_reads_are_the_circuit_itself():
    circuit, _, _ = small_problem(dyad_neuron())
    programmer = ConductanceProgrammer()
    assert isinstance(programmer.device_model, IdealDevice)
    assert programmer.seen_circuit(circuit) is circuit
    prepared = programmer.prepare(circuit)
    for a, b in zip(prepared.crossbars, circuit.crossbars):
        assert np.array_equal(a.g_pos_s, b.g_pos_s) and np.array_equal(a.g_neg_s, b.g_neg_s)


def test_read_noise_is_drawn_anew_for_every_settle():
    circuit, x, y = small_problem(dyad_neuron())
    programmer = ConductanceProgrammer(device_model=ConstantStepDevice(read_noise=0.05))
    first, second = programmer.seen_circuit(circuit), programmer.seen_circuit(circuit)
    g = circuit.crossbars[0].g_pos_s
    relative = first.crossbars[0].g_pos_s / g - 1
    assert 0.03 < relative.std() < 0.07
    assert not np.array_equal(first.crossbars[0].g_pos_s, second.crossbars[0].g_pos_s)
    # A DP step settles on a read of the conductances (not the stored ones) and programs the stored ones.
    algorithm = DualPropagation(beta=0.5, programmer=programmer)
    step = algorithm.step(circuit, x, y)
    seen = step.settles["single"].circuit
    assert not np.array_equal(seen.crossbars[0].g_pos_s, circuit.crossbars[0].g_pos_s)
    untouched = step.circuit.crossbars[0].g_pos_s == circuit.crossbars[0].g_pos_s
    assert untouched.mean() > 0.5  # the stored conductances of unprogrammed devices keep their value


def test_rank_one_terms_are_the_dp_and_ep_updates():
    circuit, x, y = small_problem(dyad_neuron())
    states = settle(circuit, x, y).dyad_states(x)
    dense_w, dense_b = dp_weight_update(states, circuit.beta)
    for k, terms in enumerate(dp_rank_one_terms(circuit, states)):
        physical = sum(t.sign * np.outer(t.rows, t.columns) for t in terms) / circuit.beta
        np.testing.assert_allclose(physical[:-1].T, dense_w[k], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(physical[-1], dense_b[k], rtol=1e-12, atol=1e-15)
    for centered in (False, True):
        ep_circuit, x, y = small_problem(ep_neuron())
        ep_circuit = dataclasses.replace(ep_circuit, beta=0.3)
        phases = run_phases(ep_circuit, x, y, centered=centered)
        dense_w, dense_b = contrastive_update(ep_circuit, x, phases, ep_circuit.beta)
        span = (2 if centered else 1) * ep_circuit.beta
        for k, terms in enumerate(ep_rank_one_terms(ep_circuit, x, phases)):
            assert len(terms) == (1 if k == 0 else 2)
            physical = sum(t.sign * np.outer(t.rows, t.columns) for t in terms) / span
            np.testing.assert_allclose(physical[:-1].T, dense_w[k], rtol=1e-9, atol=1e-13)
            np.testing.assert_allclose(physical[-1], dense_b[k], rtol=1e-9, atol=1e-13)


def test_pulse_coincidence_programs_the_dp_update_on_average():
    """Ideal devices mid-range: the mean programmed ΔW over many coincidence updates equals the
    DP update lr·δ s̄ᵀ/β within 4 standard errors."""
    circuit, x, y = small_problem(dyad_neuron())
    # Both devices of every pair raised by the same amount: the same weights, away from the bounds.
    lift = 0.5 * (circuit.device.g_max_s - circuit.device.g_min_s)
    circuit = circuit.with_conductances([c.g_pos_s + lift for c in circuit.crossbars],
                                        [c.g_neg_s + lift for c in circuit.crossbars])
    states = settle(circuit, x, y).dyad_states(x)
    lr = 0.2  # row and column probabilities stay below 1 (no clipping, which would fall short)
    programmer = ConductanceProgrammer(update="pulse-coincidence", seed=5)
    dense_w, _ = dp_weight_update(states, circuit.beta)
    draws = []
    for _ in range(600):
        programmed, report = programmer.program(circuit, [lr * d for d in dense_w], [np.zeros(8), np.zeros(10)],
                                                lambda: dp_rank_one_terms(circuit, states), lr / circuit.beta)
        before, _ = circuit.effective_weights()
        after, _ = programmed.effective_weights()
        draws.append(np.concatenate([(a - b).ravel() for a, b in zip(after, before)]))
        assert report.update_time_s == pytest.approx(31 * 10e-9)
        assert report.line_energy_j > 0 and report.energy_terms == ("line_drivers", "programming")
    draws = np.array(draws)
    expected = np.concatenate([lr * d.ravel() for d in dense_w])
    error = np.abs(draws.mean(axis=0) - expected)
    standard_error = draws.std(axis=0) / np.sqrt(len(draws)) + 1e-12
    assert np.all(error <= 4 * standard_error + 1e-9)
    assert np.abs(expected).max() > 10 * standard_error.max()  # the test can see a wrong mean


def test_stuck_devices_are_stuck_from_the_start_and_stay():
    config = dataclasses.replace(SMALL, device_model="rram-hfo2", samples=6)
    result = run_experiment(config)
    programmer = result.algorithm.programmer
    for k, (first, last) in enumerate(zip(result.initial_circuit.crossbars, result.final_circuit.crossbars)):
        pos, _ = programmer.populations(k, first.g_pos_s.shape, result.initial_circuit.device)
        stuck = pos.stuck.reshape(first.g_pos_s.shape) != 0
        assert stuck.any()
        assert np.array_equal(first.g_pos_s[stuck], last.g_pos_s[stuck])
        assert np.array_equal(first.g_pos_s[stuck], pos.stuck_values_s().reshape(stuck.shape)[stuck])


def test_same_seed_same_noisy_run_and_another_seed_differs():
    config = dataclasses.replace(SMALL, device_model="rram-gong2018", device_param=("read_noise=0.02",))
    a, b = run_experiment(config), run_experiment(config)
    np.testing.assert_array_equal(a.history.loss, b.history.loss)
    np.testing.assert_array_equal(a.history.energy_per_update_j, b.history.energy_per_update_j)
    c = run_experiment(dataclasses.replace(config, seed=1))
    assert not np.array_equal(a.history.energy_per_update_j, c.history.energy_per_update_j)


def test_one_directional_devices_are_refreshed_with_energy_and_time():
    model = device_from_preset("pcm-nandakumar2020")
    # Start every pair high so that the first update refreshes them.
    circuit, x, y = small_problem(dyad_neuron())
    high = 0.9 * circuit.device.g_max_s
    circuit = circuit.with_conductances([np.full_like(c.g_pos_s, high) for c in circuit.crossbars],
                                        [np.full_like(c.g_neg_s, high * 0.99) for c in circuit.crossbars])
    programmer = ConductanceProgrammer(device_model=model)
    assert programmer.effective_policy == "set-only" and programmer.refreshing
    step = DualPropagation(beta=0.5, lr=0.05, programmer=programmer).step(circuit, x, y)
    report = step.programming
    assert report.pulses_reset == 0
    assert report.pairs_refreshed > 0.9 * sum(c.g_pos_s.size for c in circuit.crossbars)
    assert report.refresh_energy_j > 0 and report.refresh_time_s > 0
    assert report.update_time_s >= report.refresh_time_s
    assert step.energy_j["refresh"] == report.refresh_energy_j
    after = step.circuit.crossbars[0]
    assert np.median(np.minimum(after.g_pos_s, after.g_neg_s)) < 0.2 * circuit.device.g_max_s


def test_drift_lowers_pcm_conductances_between_updates():
    base = dataclasses.replace(SMALL, device_model="pcm-nandakumar2020", samples=30, lr=1e-6)
    still = run_experiment(base)
    drifting = run_experiment(dataclasses.replace(base, time_per_update_s=100.0))
    g_still = still.final_circuit.crossbars[0].g_pos_s
    g_drift = drifting.final_circuit.crossbars[0].g_pos_s
    above = g_still > 2 * base.device.g_min_s
    ratio = g_drift[above] / g_still[above]
    # 29 updates of 100 s: t/t0 = 145 for the initial devices, (145)^-0.05 ≈ 0.78 (ν spread ignored).
    assert 0.7 < np.median(ratio) < 0.85


def test_summary_records_the_device_model_and_the_update(tmp_path, run_cli):
    path = tmp_path / "run.json"
    status, _, _ = run_cli(crossbar.main, SMALL_CLI + ["--device", "ecram-tang2018", "--update", "pulse-coincidence",
                                                       "--bl", "15", "--json", str(path)])
    assert status == 0
    summary = json.loads(path.read_text())
    assert summary["device_model"]["model"] == "linear-step" and summary["update"] == "pulse-coincidence"
    assert summary["update_time_s"] == pytest.approx(15 * 10e-9)
    assert set(summary["energy_breakdown_j"]) >= {"line_drivers", "programming"}
    assert summary["params"]["algorithm"]["programming"]["device_model"] == summary["device_model"]
    assert 0 <= summary["devices_at_bound_fraction"]["g_min"] <= 1
    assert summary["pulses_per_device"]["pairs"] == 17 * 8 + 9 * 10
    assert summary["pulses_per_device"]["max_per_update"] >= 1


def test_ep_learns_through_devices_with_pulse_coincidence():
    config = dataclasses.replace(SMALL, algo="ep", beta=0.3, device_model="ecram-tang2018",
                                 update="pulse-coincidence")
    result = run_experiment(config)
    # Two crossbars: the input one takes one train, the other two (the contrast's two products).
    assert np.all(result.history.update_time_s == pytest.approx(2 * 31 * 10e-9))
    assert result.history.pulses.sum() > 0


def test_netlist_header_records_the_device_model(tmp_path, run_cli):
    path = tmp_path / "net.cir"
    status, _, _ = run_cli(crossbar.main, SMALL_CLI + ["--device", "neurosim-rram", "--export-netlist", str(path)])
    assert status == 0
    header = path.read_text().split("\n", 60)
    assert any(line.startswith("* device model       neurosim-exp:") for line in header)
    assert any("n_levels=32" in line for line in header)


def test_equilibrium_propagation_sees_fresh_reads_in_every_phase():
    circuit, x, y = small_problem(ep_neuron())
    circuit = dataclasses.replace(circuit, beta=0.3)
    programmer = ConductanceProgrammer(device_model=ConstantStepDevice(read_noise=0.05))
    step = EquilibriumPropagation(beta=0.3, programmer=programmer).step(circuit, x, y)
    free, nudged = step.settles["free"].circuit, step.settles["nudged_plus_beta"].circuit
    assert not np.array_equal(free.crossbars[0].g_pos_s, nudged.crossbars[0].g_pos_s)


def test_half_clipped_dyads_under_strong_weights_settle():
    """rram-hfo2's stuck devices at G_max make strong weights; dyads with one compartment on a
    clip rail then loop (rate up to −1.93/τ), and a 2.5 τ step left every update hovering 3 nV
    from equilibrium until the 1000 τ limit. The step cap now follows that loop."""
    from analogdp.experiment import ExperimentConfig, run_experiment

    config = ExperimentConfig(layers=(784, 256, 10), device_model="rram-hfo2", samples=2, dataset="random")
    history = run_experiment(config).history
    assert history.settled.all()
