"""Equilibrium propagation on the crossbar circuit: equilibria against the digital EP, the
energy bookkeeping of its phases, the update, and the learning-loop strategy."""

from __future__ import annotations

import numpy as np
import pytest

from analogdp.algorithms import EquilibriumPropagation
from analogdp.circuit import NetworkCircuit, NeuronParams, SampleHoldParams, dyad_neuron, ep_neuron
from analogdp.digital.ep import ep_weight_update
from analogdp.ep_circuit import contrastive_update, layer_states, reference_states, run_phases, sample_hold_energy_j
from analogdp.learning import CrossbarLearning
from analogdp.names import FREE_PHASE, MINUS_PHASE, PLUS_PHASE, PROGRAMMING_TERM, SAMPLE_HOLD_TERM
from analogdp.programming import ConductanceProgrammer
from analogdp.solver import ENERGY_TERMS

V_R = NeuronParams().v_read_v
SHAPES = [(6, 4, 3), (20, 12, 5), (64, 32, 10), (16, 12, 10, 8, 4), (784, 256, 10)]


def random_problem(sizes, seed=0, batch=2):
    """Fan-in scaled weights (the crossbar simulation's initialisation) and small biases."""
    rng = np.random.default_rng(seed)
    weights = [rng.uniform(-1, 1, (sizes[k + 1], sizes[k])) / np.sqrt(sizes[k])
               for k in range(len(sizes) - 1)]
    biases = [rng.normal(0, 0.2, n) for n in sizes[1:]]
    x = rng.random((batch, sizes[0]))
    y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], batch)]
    return weights, biases, x, y


def ep_circuit_for(sizes, loss="mse", beta=0.5, seed=0, batch=2):
    weights, biases, x, y = random_problem(sizes, seed, batch)
    circuit = NetworkCircuit.from_weights(weights, biases, neuron_kind=ep_neuron(), beta=beta, loss=loss)
    return circuit, x, y


@pytest.mark.parametrize("sizes", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_equilibria_are_the_digital_ep_fixed_points(sizes, loss):
    """Free, +β and −β equilibria within 1e-6 of V_r of the digital EP (DESIGN §3.5)."""
    circuit, x, y = ep_circuit_for(sizes, loss)
    phases = run_phases(circuit, x, y, centered=True)
    reference = reference_states(circuit, x, y, centered=True)
    assert set(phases.settles) == {FREE_PHASE, PLUS_PHASE, MINUS_PHASE}
    for phase, result in phases.settles.items():
        assert np.all(result.settled), phase
        settled = layer_states(circuit, x, result.v_final_v)
        for k in range(1, len(sizes)):
            np.testing.assert_allclose(settled[k], reference[phase][k], rtol=0, atol=1e-6,
                                       err_msg=f"{phase}, layer {k}")
    assert EquilibriumPropagation(centered=True).fixed_point_error_v(circuit, x, y, phases.settles) <= 1e-6 * V_R
    # the nudges must actually move the output, or the comparison proves little
    free_out = layer_states(circuit, x, phases.settles[FREE_PHASE].v_final_v)[-1]
    minus_out = layer_states(circuit, x, phases.settles[MINUS_PHASE].v_final_v)[-1]
    assert np.abs(minus_out - free_out).max() > 1e-3


def test_free_phase_ignores_the_targets_and_beta():
    circuit, x, y = ep_circuit_for((20, 12, 5))
    a = run_phases(circuit, x, y, centered=False)
    b = run_phases(circuit, x, 1.0 - y, centered=False, beta=0.3)
    np.testing.assert_array_equal(a.settles[FREE_PHASE].v_final_v, b.settles[FREE_PHASE].v_final_v)


def test_each_phase_conserves_energy():
    """Delivered by the sources = crossbar + neuron drive + capacitor change, phase by phase."""
    circuit, x, y = ep_circuit_for((20, 12, 8, 5), "ce")
    phases = run_phases(circuit, x, y, centered=True)
    for phase, result in phases.settles.items():
        e = result.energy_to_end
        np.testing.assert_allclose(e.delivered, e.crossbar + e.neuron + e.capacitor, rtol=1e-6,
                                   err_msg=phase)


def test_sample_hold_energy_is_writing_plus_holding():
    circuit, x, y = ep_circuit_for((20, 12, 5))
    hold = SampleHoldParams(c_hold_f=50e-15)
    for centered, held_phase, hold_phase in ((False, FREE_PHASE, PLUS_PHASE),
                                             (True, PLUS_PHASE, MINUS_PHASE)):
        phases = run_phases(circuit, x, y, centered=centered, sample_hold=hold)
        held = phases.settles[held_phase].v_final_v
        assert phases.held_phase == held_phase
        np.testing.assert_array_equal(phases.held_v, held)
        expected = (50e-15 * np.sum(held ** 2, axis=1)
                    + circuit.neuron.p_amp_static_w * circuit.n_neurons
                    * phases.settles[hold_phase].settling_time_s)
        np.testing.assert_allclose(phases.sample_hold_energy_j, expected, rtol=1e-12)
        np.testing.assert_allclose(
            sample_hold_energy_j(held, phases.settles[hold_phase].settling_time_s, circuit, hold),
            expected, rtol=1e-12)


@pytest.mark.parametrize("centered", [False, True])
def test_update_is_eps_contrast_of_held_and_nudged_states(centered):
    circuit, x, y = ep_circuit_for((20, 12, 8, 5), batch=1)
    phases = run_phases(circuit, x, y, centered=centered)
    delta_w, delta_b = contrastive_update(circuit, x, phases, circuit.beta)
    reference = reference_states(circuit, x, y, centered=centered)
    if centered:
        expected_w, expected_b = ep_weight_update(reference[MINUS_PHASE], reference[PLUS_PHASE],
                                                  2 * circuit.beta)
    else:
        expected_w, expected_b = ep_weight_update(reference[FREE_PHASE], reference[PLUS_PHASE],
                                                  circuit.beta)
    for got, want in zip(delta_w + delta_b, expected_w + expected_b):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        assert np.abs(want).max() > 1e-3


@pytest.mark.parametrize("centered", [False, True])
def test_learning_step_accounts_every_phase(centered):
    circuit, x, y = ep_circuit_for((20, 12, 5), batch=1)
    algorithm = EquilibriumPropagation(centered=centered, lr=0.05,
                                       programmer=ConductanceProgrammer(rounding="nearest"))
    step = algorithm.step(circuit, x, y)
    phases = run_phases(circuit, x, y, centered=centered)
    assert list(step.settles) == list(algorithm.phase_names())
    assert step.settling_time_s == pytest.approx(float(phases.settling_time_s[0]), rel=1e-12)
    assert step.settling_time_s == pytest.approx(
        sum(float(r.settling_time_s[0]) for r in step.settles.values()), rel=1e-12)
    assert list(step.energy_j) == list(ENERGY_TERMS) + [SAMPLE_HOLD_TERM, PROGRAMMING_TERM]
    for term in ENERGY_TERMS:
        assert step.energy_j[term] == pytest.approx(
            sum(r.energy.as_dict(0)[term] for r in step.settles.values()), rel=1e-12)
    assert step.energy_j[SAMPLE_HOLD_TERM] == pytest.approx(float(phases.sample_hold_energy_j[0]))
    # programming as DP programs: the same programmer on the same ΔW
    delta_w, delta_b = contrastive_update(circuit, x, phases, circuit.beta)
    _, report = ConductanceProgrammer(rounding="nearest").program(
        circuit, [0.05 * d for d in delta_w], [0.05 * d for d in delta_b])
    assert report.pulses > 0
    assert step.programming == report
    assert step.energy_j[PROGRAMMING_TERM] == report.energy_j
    np.testing.assert_array_equal(step.v_final_v, phases.last.v_final_v[0])
    assert step.settled
    assert step.fixed_point_error_v <= 1e-6 * V_R


def test_macs_count_every_phase_and_both_products():
    circuit, _, _ = ep_circuit_for((20, 12, 5))
    per_settle = circuit.macs_per_settle
    devices = 21 * 12 + 13 * 5
    assert EquilibriumPropagation().macs_per_update(circuit) == 2 * per_settle + 2 * devices
    assert EquilibriumPropagation(centered=True).macs_per_update(circuit) == 3 * per_settle + 2 * devices


@pytest.mark.parametrize("centered", [False, True])
def test_learning_loop_settles_every_phase_and_learns(centered):
    circuit, _, _ = ep_circuit_for((20, 12, 5), beta=0.5, batch=1)
    rng = np.random.default_rng(3)
    prototypes = rng.random((5, 20))
    labels = rng.integers(0, 5, 120)
    inputs = np.clip(prototypes[labels] + 0.05 * rng.normal(size=(120, 20)), 0, 1)
    targets = np.eye(5)[labels]
    learner = CrossbarLearning(circuit, EquilibriumPropagation(centered=centered, lr=0.1))
    history = learner.run(inputs, targets).history_
    assert history.settled.all()
    assert np.nanmax(history.fixed_point_error_v) <= 1e-6 * V_R
    assert history.loss_last() < 0.7 * history.loss_first()
    again = CrossbarLearning(circuit, EquilibriumPropagation(centered=centered, lr=0.1)).run(inputs, targets)
    np.testing.assert_array_equal(again.history_.energy_per_update_j, history.energy_per_update_j)


def test_rejects_dyad_circuits_and_bad_beta():
    weights, biases, x, y = random_problem((6, 4, 3))
    dyads = NetworkCircuit.from_weights(weights, biases, neuron_kind=dyad_neuron())
    with pytest.raises(ValueError, match="ep_neuron"):
        run_phases(dyads, x, y, centered=False)
    circuit = NetworkCircuit.from_weights(weights, biases, neuron_kind=ep_neuron(), beta=1.5)
    with pytest.raises(ValueError, match=r"beta in \(0, 1\)"):
        EquilibriumPropagation().step(circuit, x[:1], y[:1])
    with pytest.raises(ValueError, match="lr"):
        EquilibriumPropagation(lr=0.0)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_every_phase_agrees_with_ngspice(ngspice, loss):
    """Free, +β and −β settles of a small EP network within the SPICE tolerances (
    max |Δv| ≤ 1 mV, final ≤ 10 µV, settling times within 2 %, energies within 1 %)."""
    from analogdp.ep_circuit import cross_check_phases
    from analogdp.spice import TOLERANCES
    from analogdp.spice.examples import random_problem as spice_problem

    circuit, x, y = spice_problem((6, 4, 3), neuron_kind=ep_neuron(), loss=loss)
    checks = cross_check_phases(circuit, x, y, centered=True)
    assert list(checks) == [FREE_PHASE, PLUS_PHASE, MINUS_PHASE]
    for phase, check in checks.items():
        assert check.neuron_kind == "ep"
        assert check.failures(TOLERANCES) == [], phase
        # the window reaches equilibrium, so the settling time is the phase's own
        assert check.settling_time_s < 0.5 * check.t_stop_s
