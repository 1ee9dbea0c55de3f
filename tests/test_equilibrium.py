"""The equilibrium engine against the ODE settle: same settled state, every variant and loss."""

from __future__ import annotations

import numpy as np
import pytest

from analogdp.circuit import NetworkCircuit, dyad_neuron, ep_neuron
from analogdp.digital.dp import DPConfig
from analogdp.equilibrium import (EquilibriumNotConverged, EquilibriumSettler, dp_equilibrium,
                                  dp_equilibrium_physical, equilibrium_state,
                                  steady_state)
from analogdp.experiment import initial_weights
from analogdp.solver import settle

SHAPES = [(4, 3, 2), (16, 8, 10), (64, 32, 10), (8, 6, 5, 3), (30, 12, 12, 10)]
VARIANTS = [("dp", 0.5), ("dpT", 0.3)]
LOSSES = ["mse", "ce"]
AGREEMENT_FRACTION = 1e-6  # of V_r


def _circuit(layers, kind, loss, beta=0.5, seed=0):
    weights, biases = initial_weights(layers, seed)
    rng = np.random.default_rng(seed)
    biases = [0.1 * rng.standard_normal(b.shape) for b in biases]
    return NetworkCircuit.from_weights(weights, biases, neuron_kind=kind, beta=beta, loss=loss)


def _example(layers, seed=1, batch=2):
    rng = np.random.default_rng(seed)
    x = rng.random((batch, layers[0]))
    y = np.eye(layers[-1])[rng.integers(0, layers[-1], batch)]
    return x, y


@pytest.mark.parametrize("layers", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("variant,alpha", VARIANTS)
@pytest.mark.parametrize("loss", LOSSES)
def test_equilibrium_matches_the_ode_settle(layers, variant, alpha, loss):
    circuit = _circuit(layers, dyad_neuron(variant, alpha), loss)
    x, y = _example(layers)
    ode = settle(circuit, x, y).v_final_v
    tolerance = AGREEMENT_FRACTION * circuit.neuron.v_read_v
    for method in ("closed-form", "steady-state"):
        state = equilibrium_state(circuit, x, y, method=method)
        assert np.max(np.abs(state - ode)) < tolerance, method
    # from a non-reset start (as in training, where an example starts where the last one ended)
    v0 = settle(circuit, x[::-1], y[::-1]).v_final_v
    assert np.max(np.abs(equilibrium_state(circuit, x, y, v0, method="steady-state")
                         - settle(circuit, x, y, v0=v0).v_final_v)) < tolerance


@pytest.mark.parametrize("layers", SHAPES[:3], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("loss", LOSSES)
def test_equilibrium_matches_the_ode_for_every_ep_phase(layers, loss):
    circuit = _circuit(layers, ep_neuron(), loss, beta=0.3)
    x, y = _example(layers)
    tolerance = AGREEMENT_FRACTION * circuit.neuron.v_read_v
    free = settle(circuit, x, None).v_final_v
    assert np.max(np.abs(equilibrium_state(circuit, x, None) - free)) < tolerance
    for beta in (0.3, -0.3):
        from dataclasses import replace
        phase = replace(circuit, beta=beta)
        ode = settle(phase, x, y, v0=free).v_final_v
        for method in ("closed-form", "steady-state"):
            assert np.max(np.abs(equilibrium_state(phase, x, y, free, method=method) - ode)) < tolerance


def test_the_forward_settle_is_the_feedforward_pass():
    layers = (16, 8, 10)
    circuit = _circuit(layers, dyad_neuron(), "mse")
    x, _ = _example(layers, batch=5)
    ode = settle(circuit, x, None).v_final_v
    assert np.max(np.abs(equilibrium_state(circuit, x, None) - ode)) < 1e-6 * circuit.neuron.v_read_v


def test_an_unconverged_steady_state_raises():
    layers = (16, 8, 10)
    circuit = _circuit(layers, dyad_neuron(), "mse")
    x, y = _example(layers)
    with pytest.raises(EquilibriumNotConverged, match="did not converge"):
        steady_state(circuit, x, y, max_iterations=2)


def test_the_settler_samples_the_ode_and_keeps_the_equilibrium_state():
    layers = (16, 8, 10)
    circuit = _circuit(layers, dyad_neuron(), "mse")
    x, y = _example(layers, batch=1)
    settler = EquilibriumSettler()
    plain = settler(circuit, x, y)
    assert np.isnan(plain.settling_time_s[0]) and np.isnan(plain.energy.total[0])
    settler.check_with_ode = True
    sampled = settler(circuit, x, y)
    ode = settle(circuit, x, y)
    assert sampled.settling_time_s[0] == ode.settling_time_s[0] > 0
    assert np.array_equal(sampled.v_final_v, plain.v_final_v)
    assert len(settler.checks) == 1 and settler.checks[0].max_abs_dev_v < 1e-6 * circuit.neuron.v_read_v


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="method"):
        EquilibriumSettler("newton")


@pytest.mark.parametrize("layers", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("variant,alpha", VARIANTS)
@pytest.mark.parametrize("loss", LOSSES)
def test_the_compiled_sweeps_on_the_crossbar_arrays_match_the_digital_ones(layers, variant, alpha, loss):
    circuit = _circuit(layers, dyad_neuron(variant, alpha), loss)
    x, y = _example(layers, batch=1)
    config = DPConfig(variant=variant, alpha=alpha, beta=0.5, loss=loss)
    weights, biases = circuit.effective_weights()
    reference, output = dp_equilibrium(weights, biases, x, y, config)
    physical = tuple((x.g_pos_s - x.g_neg_s) / circuit.device.g_unit_s for x in circuit.crossbars)
    states, compiled_output = dp_equilibrium_physical(physical, True, x, y, config)
    assert np.allclose(compiled_output, output, rtol=0, atol=1e-12)
    for k in range(1, len(layers)):
        assert np.allclose(states.s_plus[k], reference.s_plus[k], rtol=0, atol=1e-12)
        assert np.allclose(states.s_minus[k], reference.s_minus[k], rtol=0, atol=1e-12)


@pytest.mark.parametrize("device_model,params", [
    ("ideal", ("read_noise=0.05", "write_noise=2")),
    ("rram-gong2018", ()), ("rram-hfo2", ()), ("pcm-nandakumar2020", ()), ("ecram-tang2018", ()),
    ("neurosim-rram", ()),
])
@pytest.mark.parametrize("algo", ["dp", "ep-centered"])
def test_equilibrium_matches_the_ode_on_the_conductances_the_devices_present(device_model, params, algo):
    """Device presets and read/write noise: the settle sees the conductances as read (one
    draw per settle); its equilibrium is still the fixed point of those conductances."""
    from analogdp.experiment import ExperimentConfig, build_algorithm, build_circuit

    config = ExperimentConfig(layers=(16, 8, 10), algo=algo, beta=0.4, device_model=device_model,
                              device_param=params, dataset="digits")
    algorithm = build_algorithm(config)
    circuit = build_circuit(config, algorithm)
    seen = algorithm.programmer.seen_circuit(circuit)
    x, y = _example((16, 8, 10))
    tolerance = AGREEMENT_FRACTION * circuit.neuron.v_read_v
    for method in ("closed-form", "steady-state"):
        assert np.max(np.abs(equilibrium_state(seen, x, y, method=method) - settle(seen, x, y).v_final_v)) < tolerance


def test_resistive_wires_send_the_circuit_to_the_steady_state_solve():
    from dataclasses import replace

    from analogdp.circuit.wires import WireParams
    from analogdp.equilibrium import is_ideal

    circuit = _circuit((8, 6, 5), dyad_neuron(), "mse")
    assert is_ideal(circuit)
    assert not is_ideal(replace(circuit, wires=WireParams(r_row_segment_ohm=3.0, r_col_segment_ohm=3.0)))


@pytest.mark.parametrize("measured_curve", [True, False])
def test_steady_state_with_per_stage_amplifiers_equals_the_ode(measured_curve):
    """Per-stage amplifiers (the characterised SKY130 macromodel: sense, hidden and output
    compartment stages each with their own A0, GBW, rails, the hidden ones on the measured
    transfer curve) at DC: the steady state equals the ODE's settled state within 1e-6·V_r."""
    from analogdp.spice.characterised import characterised_circuit
    from analogdp.spice.examples import random_problem

    base, x, y = random_problem((6, 4, 3), seed=1)
    circuit = characterised_circuit(base, measured_curve=measured_curve)
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    ode = settle(circuit, x, y)
    equilibrium = steady_state(circuit, x, y)
    assert np.max(np.abs(equilibrium - ode.v_final_v)) <= 1e-6 * circuit.neuron.v_read_v


def test_where_a_settle_has_two_stable_states_the_engine_and_the_ode_may_end_in_different_ones():
    """Centered EP on rram-hfo2 with w_max 1 (weights of four levels over ±1): the free phase of a
    digit from reset has two stable equilibria. The ODE ends in one, the engine's relaxation in the
    other; the engine's is no artefact: the ODE started there, even 1 mV away, stays there."""
    from dataclasses import replace

    from analogdp.circuit import DeviceParams
    from analogdp.experiment import ExperimentConfig, build_algorithm, build_circuit, load_examples

    config = ExperimentConfig(layers=(64, 32, 10), dataset="digits", algo="ep-centered", samples=2,
                              device_model="rram-hfo2", seed=3, device=DeviceParams(w_max=1.0))
    algorithm = build_algorithm(config)
    circuit = replace(algorithm.programmer.prepare(build_circuit(config, algorithm)), beta=0.0)
    x = load_examples(config).inputs[1:2]
    v_r = circuit.neuron.v_read_v
    engine = equilibrium_state(circuit, x)
    ode = settle(circuit, x)
    assert np.max(np.abs(engine - ode.v_final_v)) > 0.5 * v_r  # whole compartments apart
    nudged = engine + 1e-3 * np.random.default_rng(0).standard_normal(engine.shape)
    assert np.max(np.abs(settle(circuit, x, v0=nudged).v_final_v - engine)) < AGREEMENT_FRACTION * v_r
    # started from the circuit's own first 8 τ, the engine ends where the circuit does
    led = EquilibriumSettler(lead_in_tau=8.0)(circuit, x).v_final_v
    assert np.max(np.abs(led - ode.v_final_v)) < AGREEMENT_FRACTION * v_r


def test_a_lead_in_is_validated_and_leaves_the_dp_closed_form_alone():
    with pytest.raises(ValueError, match="lead_in_tau"):
        EquilibriumSettler(lead_in_tau=-1.0)
    with pytest.raises(ValueError, match="lead_in_tau"):
        EquilibriumSettler(lead_in_tau=float("nan"))
    circuit = _circuit((8, 6, 3), dyad_neuron("dp", 0.5), "mse")
    x, y = _example((8, 6, 3))
    dyads = EquilibriumSettler(lead_in_tau=8.0)
    assert not dyads.uses_start(circuit)  # the DP fixed point does not depend on the start
    assert np.array_equal(dyads(circuit, x, y).v_final_v, EquilibriumSettler()(circuit, x, y).v_final_v)
