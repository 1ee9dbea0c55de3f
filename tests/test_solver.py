"""The numba relaxation solver against the digital DP fixed point, SciPy, and physics."""

from __future__ import annotations

import numpy as np
import pytest

from analogdp.circuit import DeviceParams, NetworkCircuit, NeuronParams, dyad_neuron
from analogdp.digital.dp import DPConfig, dp_fixed_point
from analogdp.solver import Bosh3, NotSettledError, SaveAt, SettleCriteria, StepController, settle, solve_ivp_reference
from analogdp.solver.solvers import REPORTED_PRECISION
from analogdp.solver.stability import coupling_norm, fastest_rate_per_tau, largest_singular_value

V_R = NeuronParams().v_read_v
SHAPES = [(6, 4, 3), (20, 12, 5), (64, 32, 10), (784, 256, 10), (16, 12, 10, 8, 4)]
VARIANTS = [("dp", 0.5), ("dpT", 0.0), ("dpT", 0.3), ("dpT", 1.0)]


def random_problem(sizes, seed=0, batch=2, bias=True):
    rng = np.random.default_rng(seed)
    weights = [rng.uniform(-1, 1, (sizes[k + 1], sizes[k])) * 1.5 / np.sqrt(sizes[k])
               for k in range(len(sizes) - 1)]
    biases = [rng.normal(0, 0.2, n) if bias else None for n in sizes[1:]]
    x = rng.random((batch, sizes[0]))
    y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], batch)]
    return weights, biases, x, y


def circuit_for(sizes, variant="dp", alpha=0.5, loss="mse", scheme="bidirectional", beta=0.5, seed=0,
                batch=2):
    weights, biases, x, y = random_problem(sizes, seed, batch)
    circuit = NetworkCircuit.from_weights(weights, biases, neuron_kind=dyad_neuron(variant, alpha),
                                          beta=beta, loss=loss, scheme=scheme)
    return circuit, x, y


@pytest.mark.parametrize("sizes", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("variant,alpha", VARIANTS)
@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("scheme", ["bidirectional", "dual-array"])
def test_settled_voltages_are_the_dp_fixed_point(sizes, variant, alpha, loss, scheme):
    circuit, x, y = circuit_for(sizes, variant, alpha, loss, scheme)
    result = settle(circuit, x, y)
    weights, biases = circuit.effective_weights()
    reference = dp_fixed_point(weights, biases, x, y,
                               DPConfig(variant=variant, alpha=alpha, beta=circuit.beta, loss=loss))
    settled = result.dyad_states(x)
    for k in range(1, len(sizes)):
        np.testing.assert_allclose(settled.s_plus[k], reference.s_plus[k], rtol=0, atol=1e-6)
        np.testing.assert_allclose(settled.s_minus[k], reference.s_minus[k], rtol=0, atol=1e-6)
    assert np.all(result.settled)
    # the nudge must actually have separated the compartments, or the test proves little
    assert np.abs(settled.difference(len(sizes) - 1)).max() > 1e-3


def test_trajectories_agree_with_solve_ivp():
    circuit, x, y = circuit_for((20, 12, 8, 5), "dpT", 0.3, "ce", beta=0.5)
    times = np.linspace(0.0, 250e-9, 101)
    numba = settle(circuit, x[:1], y[:1], saveat=SaveAt(ts_s=times), t_end_s=times[-1])
    scipy = solve_ivp_reference(circuit, x[0], y[0], t_stop_s=times[-1], t_eval_s=times, rtol=1e-9)
    assert scipy.success
    n_v = circuit.n_compartments
    deviation = np.abs(numba.saved_voltages_v[0] - scipy.y[:n_v].T)
    assert deviation.max() <= 1e-5 * V_R, deviation.max() / V_R
    # the transient is real: voltages move by a sizeable fraction of V_r over the window
    assert np.ptp(scipy.y[:n_v], axis=1).max() > 0.2 * V_R


def _explicit_crossbar_power(circuit, x, voltages):
    """Σ over every device of G·(ΔV)², written out from the DESIGN §3.2 line voltages."""
    v_r = circuit.neuron.v_read_v
    kind = circuit.neuron_kind
    m = circuit.compartments_per_neuron
    total = 0.0
    for k, xbar in enumerate(circuit.crossbars):
        if k == 0:
            rows = v_r * x
        else:
            start = circuit.compartment_offset(k)
            comp = voltages[start:start + circuit.layer_sizes[k] * m].reshape(-1, m)
            rows = comp @ np.asarray(kind.row_weights)
        if xbar.has_bias_row:
            rows = np.append(rows, v_r)
        start = circuit.compartment_offset(k + 1)
        comp = voltages[start:start + circuit.layer_sizes[k + 1] * m].reshape(-1, m)
        d = comp @ np.asarray(kind.column_weights)
        if circuit.scheme == "bidirectional":
            total += np.sum(xbar.g_pos_s * (rows[:, None] - d[None, :]) ** 2)
            total += np.sum(xbar.g_neg_s * (rows[:, None] + d[None, :]) ** 2)
        else:
            total += np.sum((xbar.g_pos_s + xbar.g_neg_s) * rows[:, None] ** 2)  # forward array
            total += np.sum((xbar.g_pos_s + xbar.g_neg_s) * d[None, :] ** 2)  # feedback array
    return total


@pytest.mark.parametrize("scheme", ["bidirectional", "dual-array"])
def test_energy_is_conserved_and_dissipation_is_physical(scheme):
    circuit, x, y = circuit_for((12, 8, 6, 4), "dpT", 0.3, "mse", scheme, beta=0.5, batch=3)
    v0 = np.random.default_rng(5).uniform(0, V_R, (3, circuit.n_compartments))  # not from reset
    result = settle(circuit, x, y, v0=v0)
    for energy in (result.energy, result.energy_to_end):
        balance = energy.crossbar + energy.neuron + energy.capacitor
        np.testing.assert_allclose(energy.delivered, balance, rtol=1e-6)
        assert np.all(energy.crossbar > 0) and np.all(energy.neuron > 0)
        assert np.all(energy.amplifier_static > 0)
    # stored energy can fall when starting from a charged state: the balance must still hold
    # and the capacitor term must match ½C(v_end² − v_start²) for the settle window
    c_m = circuit.neuron.c_m_f
    np.testing.assert_allclose(result.energy_to_end.capacitor,
                               0.5 * c_m * (np.sum(result.v_final_v ** 2, 1) - np.sum(v0 ** 2, 1)),
                               rtol=1e-12)
    # crossbar energy against an explicit per-device sum integrated along SciPy's trajectory
    t_end = float(result.t_final_s[0])
    times = np.linspace(0.0, t_end, 4001)
    ref = solve_ivp_reference(circuit, x[0], y[0], v0=v0[0], t_stop_s=t_end, t_eval_s=times)
    power = [_explicit_crossbar_power(circuit, x[0], ref.y[:circuit.n_compartments, i])
             for i in range(times.size)]
    from scipy.integrate import simpson
    np.testing.assert_allclose(result.energy_to_end.crossbar[0], simpson(power, x=times), rtol=1e-5)


@pytest.mark.parametrize("rtol", [1e-8, 1e-6])
def test_halving_tolerance_barely_moves_the_settling_time(rtol):
    circuit, x, y = circuit_for((64, 32, 10), "dp", 0.5, "ce", batch=4)
    base = StepController(rtol=rtol, atol_fraction=rtol / 100)
    half = StepController(rtol=rtol / 2, atol_fraction=rtol / 200)
    t1 = settle(circuit, x, y, controller=base).settling_time_s
    t2 = settle(circuit, x, y, controller=half).settling_time_s
    assert np.all(np.abs(t1 - t2) / t2 < 0.01), np.abs(t1 - t2) / t2


def test_settling_time_definition():
    circuit, x, y = circuit_for((20, 12, 5), batch=1)
    result = settle(circuit, x, y)
    times = np.linspace(0, float(result.t_final_s[0]), 2001)
    ref = solve_ivp_reference(circuit, x[0], y[0], t_stop_s=times[-1], t_eval_s=times)
    deviation = np.abs(ref.y[:circuit.n_compartments] - result.v_final_v[0][:, None]).max(axis=0)
    for t_settle, band in ((result.settling_time_s[0], 1e-3), (result.settling_time_1pct_s[0], 1e-2)):
        after = times > t_settle * 1.002
        before = (times < t_settle * 0.998) & (times > t_settle * 0.9)
        assert np.all(deviation[after] <= band * V_R * 1.0001)
        assert deviation[before].max() > band * V_R
    assert 0 < result.settling_time_1pct_s[0] < result.settling_time_s[0]


def test_warm_start_and_solver_swap():
    circuit, x, y = circuit_for((20, 12, 5), "dpT", 0.3, "ce")
    first = settle(circuit, x, y)
    again = settle(circuit, x, y, v0=first.v_final_v)
    np.testing.assert_allclose(again.v_final_v, first.v_final_v, atol=1e-8 * V_R)
    assert np.all(again.settling_time_s < 0.05 * first.settling_time_s)
    bosh = settle(circuit, x, y, solver=Bosh3())
    np.testing.assert_allclose(bosh.v_final_v, first.v_final_v, atol=1e-7 * V_R)
    assert np.all(bosh.n_steps > first.n_steps)  # lower order: more, cheaper steps


def test_subnormal_starting_voltages_start_at_zero_and_nothing_else_moves():
    circuit, x, y = circuit_for((20, 12, 5))
    start = settle(circuit, x, y).v_final_v
    start[:, ::3] = 1e-310  # what many warm-started settles towards a clipped 0 leave behind
    start[:, 1::7] = 3e-300  # small, but normal: kept
    zeroed = np.where(np.abs(start) < np.finfo(np.float64).tiny, 0.0, start)
    result = settle(circuit, x, y, v0=start)
    np.testing.assert_array_equal(result.v_initial_v, zeroed)
    assert np.all(result.v_initial_v[:, 1::7] == 3e-300)
    same = settle(circuit, x, y, v0=zeroed)
    np.testing.assert_array_equal(result.v_final_v, same.v_final_v)
    np.testing.assert_array_equal(result.energy.total, same.energy.total)


@pytest.mark.parametrize("effect", ["ideal", "wires", "amplifiers"])
def test_a_settled_circuit_is_freed_without_the_cycle_collector(effect):
    """What a settle caches on a circuit must not hold the circuit: a learning run makes a new
    circuit per update, and a cycle would leave each one to the cyclic collector (which counts
    objects, not megabytes)."""
    import gc
    import weakref
    from dataclasses import replace

    from analogdp.circuit.amplifiers import AmplifierParams
    from analogdp.circuit.wires import WireParams

    circuit, x, y = circuit_for((12, 8, 4))
    if effect == "wires":
        circuit = replace(circuit, wires=WireParams(r_row_segment_ohm=2.0, r_col_segment_ohm=2.0))
    elif effect == "amplifiers":
        circuit = replace(circuit, amplifier=AmplifierParams(a0_db=60.0, gbw_hz=100e6))
    gc.collect()
    gc.disable()
    try:
        settle(circuit, x, y)
        settle(circuit, x)  # the inference circuit is cached on it too
        held = weakref.ref(circuit)
        del circuit
        assert held() is None
    finally:
        gc.enable()


def test_inference_settle_has_no_error_signal():
    circuit, x, _ = circuit_for((20, 12, 5))
    result = settle(circuit, x, None)
    states = result.dyad_states(x)
    for k in (1, 2):
        np.testing.assert_allclose(states.s_plus[k], states.s_minus[k], atol=1e-9)


def test_unsettled_state_is_never_reported_as_settled():
    circuit, x, y = circuit_for((20, 12, 5))
    short = SettleCriteria(t_max_s=2e-9)
    with pytest.raises(NotSettledError, match="did not settle"):
        settle(circuit, x, y, criteria=short)
    result = settle(circuit, x, y, criteria=short, allow_unsettled=True)
    assert not np.any(result.settled)
    steps_limited = settle(circuit, x, y, criteria=SettleCriteria(max_steps=3), allow_unsettled=True)
    assert not np.any(steps_limited.settled)


@pytest.mark.parametrize("make, name", [
    (lambda: NeuronParams(r_m_ohm=0.0), "r_m_ohm"),
    (lambda: NeuronParams(c_m_f=-1e-15), "c_m_f"),
    (lambda: NeuronParams(v_read_v=float("nan")), "v_read_v"),
    (lambda: DeviceParams(g_min_s=-1e-6), "g_min_s"),
    (lambda: dyad_neuron("dpx", 0.5), "variant"),
    (lambda: dyad_neuron("dpT", 1.5), "alpha"),
    (lambda: dyad_neuron("dp", -0.1), "alpha"),
    (lambda: StepController(rtol=0.0), "rtol"),
])
def test_bad_parameters_name_themselves(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_non_finite_weights_and_inputs_are_rejected():
    weights, biases, x, y = random_problem((6, 4, 3))
    weights[1][0, 0] = np.nan
    with pytest.raises(ValueError, match="weight"):
        NetworkCircuit.from_weights(weights, biases)
    circuit, x, y = circuit_for((6, 4, 3))
    x[0, 1] = np.inf
    with pytest.raises(ValueError, match="x must be finite"):
        settle(circuit, x, y)
    x[0, 1] = 0.5
    with pytest.raises(ValueError, match="y must have shape"):
        settle(circuit, x, y[:, :2])


def test_coupling_estimate_bounds_the_free_layer_coupling():
    """The stable-step cap rests on ‖J‖: the estimate must not fall below it (nor overshoot much)."""
    circuit, _, _ = circuit_for((20, 12, 8, 5))
    weights, _ = circuit.effective_weights()
    coupling = np.zeros((25, 25))
    coupling[:12, 12:20] = weights[1].T
    coupling[12:20, 20:] = weights[2].T
    coupling += coupling.T
    exact = np.abs(np.linalg.eigvalsh(coupling)).max()
    assert exact <= coupling_norm(circuit) <= 2.2 * exact
    for shape in [(10, 256), (512, 512), (8, 10)]:
        matrix = np.random.default_rng(1).uniform(-1, 1, shape) / np.sqrt(shape[1])
        sigma = np.linalg.norm(matrix, 2)
        assert sigma <= largest_singular_value(matrix) <= 1.06 * sigma


def test_step_cap_follows_the_neuron_loops():
    """DP⊤ dyads (and DP at α = ½) have no loop through adjacent layers while both
    compartments are free, but one resting on a clip rail leaves its partner's loop ρ_c κ_c
    (0.3 × 0.7 for DP⊤ at α = 0.3). EP neurons loop with Σ ρκ = 1, and a nudge at the output
    state adds |β|."""
    from dataclasses import replace

    from analogdp.circuit import ep_neuron
    dp_circuit, _, _ = circuit_for((20, 12, 8, 5), "dpT", 0.3)
    assert fastest_rate_per_tau(dp_circuit) == pytest.approx(1.0 + 0.21 * coupling_norm(dp_circuit))
    ep_circuit = replace(dp_circuit, neuron_kind=ep_neuron(), beta=0.4)
    assert fastest_rate_per_tau(ep_circuit) == pytest.approx(1.0 + coupling_norm(ep_circuit) + 0.4)


def test_a_dense_saved_grid_does_not_cost_a_step_per_point():
    """200,040 saved points over 200 µs (the grid of a long SPICE comparison) are read from the
    solver's interpolant: the run stays far from the step limit and the saved points are real."""
    circuit, x, y = circuit_for((6, 4, 3), batch=1)
    times = np.linspace(0.0, 200e-6, 200_040)
    result = settle(circuit, x, y, saveat=SaveAt(ts_s=times), t_end_s=times[-1], allow_unsettled=True)
    assert not result.hit_step_limit[0]
    assert result.settled[0]
    assert result.n_steps[0] < 0.05 * times.size
    np.testing.assert_allclose(result.saved_voltages_v[0, -1], result.v_final_v[0], atol=1e-12)
    early = times <= 200e-9
    scipy = solve_ivp_reference(circuit, x[0], y[0], t_stop_s=200e-9, t_eval_s=times[early][::50], rtol=1e-9)
    deviation = np.abs(result.saved_voltages_v[0][early][::50] - scipy.y[:circuit.n_compartments].T)
    assert deviation.max() <= 1e-5 * V_R


def test_step_limit_is_reported_as_such():
    circuit, x, y = circuit_for((6, 4, 3), batch=1)
    result = settle(circuit, x, y, criteria=SettleCriteria(max_steps=3), allow_unsettled=True)
    assert result.hit_step_limit[0] and not result.settled[0]
    assert result.not_settled_reason(0).startswith("hit the step limit (3 steps)")
    with pytest.raises(NotSettledError, match="step limit"):
        settle(circuit, x, y, criteria=SettleCriteria(max_steps=3))


def test_a_compartment_resting_on_a_rail_settles():
    """A real update of a 2-1-10 DP circuit (input all zero, the hidden dyad's minus compartment
    clipped at 0 V, which leaves a slow mode of about 5 τ): the explicit solver used to wander
    at 2e-9 V_r around the fixed point until the 1000 τ limit. It must settle, to the
    closed-form fixed point, long before that."""
    weights = [np.array([[0.19369307573550387, -0.32557075163361393]]),
               np.array([[-0.9180529521276106], [-0.9669447289429419], [0.6265404784005448],
                         [0.8255111545554435], [0.21327155153435973], [0.45899312196799685],
                         [0.08724998293084574], [0.8701448475755365], [0.6317071082430643],
                         [-0.9945229996597037]])]
    biases = [np.array([0.015625]), np.array([0, 0, 0, 0, 0.015625, 0, 0, 0, 0, 0])]
    circuit = NetworkCircuit.from_weights(weights, biases, neuron_kind=dyad_neuron("dp", 0.5), beta=0.5)
    x = np.zeros((1, 2))
    y = np.eye(10)[[9]]
    v0 = np.array([[0.00643310461352123, 0.0, -0.00221472398355555, -0.00369120663925925,
                    -0.00233267120050051, -0.00388778533416753, 0.00151147515071568, 0.0025191252511928,
                    0.00199147483644543, 0.00331912472740905, 0.05051449922296929, -0.04914250103456096,
                    0.00110728152788322, 0.0018454692131387, 0.00021048309829398, 0.00035080516382331,
                    0.0020991497915525, 0.00349858298592083, 0.00152393920194482, 0.00253989866990803,
                    -0.00239920141255402, -0.00399866902092337]])
    result = settle(circuit, x, y, v0=v0, allow_unsettled=True)
    assert result.settled[0], result.not_settled_reason(0)
    assert result.t_final_s[0] < 200 * circuit.neuron.tau_s
    effective, eff_biases = circuit.effective_weights()
    reference = dp_fixed_point(effective, eff_biases, x, y, DPConfig(variant="dp", alpha=0.5, beta=0.5))
    states = result.dyad_states(x)
    for k in (1, 2):
        np.testing.assert_allclose(states.s_plus[k], reference.s_plus[k], rtol=0, atol=1e-8)
        np.testing.assert_allclose(states.s_minus[k], reference.s_minus[k], rtol=0, atol=1e-8)


def test_not_settled_reason_says_what_was_not_met():
    circuit, x, y = circuit_for((20, 12, 5), batch=1)
    result = settle(circuit, x, y, criteria=SettleCriteria(t_max_s=2e-9), allow_unsettled=True)
    reason = result.not_settled_reason(0)
    assert reason.startswith("hit the time limit (2e-09 s)")
    assert "equilibrium tolerance" in reason and "V from its amplifier's target" in reason
    assert settle(circuit, x, y).not_settled_reason(0) == ""


def test_reported_figures_meet_the_tolerance_policy():
    """Settling times and energies under the default policy agree with a far tighter run to
    its stated precision (DESIGN §4.1). A band exit that falls between the sample points of a
    long step once moved this network's settling time by 0.4 %."""
    circuit, x, y = circuit_for((64, 32, 10), "dp", 0.5, "mse", seed=1, batch=1)
    policy = settle(circuit, x, y)
    tight = settle(circuit, x, y, controller=StepController(rtol=1e-10, atol_fraction=1e-12))
    for name in ("settling_time_s", "settling_time_1pct_s"):
        np.testing.assert_allclose(getattr(policy, name), getattr(tight, name), rtol=REPORTED_PRECISION)
    for name in ("crossbar", "neuron", "amplifier_static", "capacitor"):
        np.testing.assert_allclose(getattr(policy.energy, name), getattr(tight.energy, name),
                                   rtol=REPORTED_PRECISION)
    assert StepController.for_precision(REPORTED_PRECISION) == StepController()
    assert StepController.for_precision(1e-6).rtol < StepController().rtol


def test_settling_time_does_not_depend_on_where_the_steps_fall():
    """The same trajectory integrated with different steps gives the same band exit: it is
    searched on the whole interpolant of a step, not at sample points (at rtol 1e-10 the
    samples once missed an exit on this network and moved its settling time by 0.4 %)."""
    circuit, x, y = circuit_for((64, 32, 10), "dp", 0.5, "mse", seed=1, batch=1)
    times = [settle(circuit, x, y, controller=StepController(rtol=rtol, atol_fraction=rtol / 100))
             .settling_time_s[0] for rtol in (1e-8, 1e-10, 1e-11)]
    np.testing.assert_allclose(times, times[-1], rtol=1e-6)


@pytest.mark.parametrize("sizes", [(64, 32, 32, 10), (64, 48, 32, 24, 10)], ids=lambda s: "x".join(map(str, s)))
def test_clip_kinks_cost_few_rejected_steps(sizes):
    """Deep networks cross many clip rails on the way to equilibrium; steps end at the
    predicted crossings instead of failing their error test there."""
    circuit, x, y = circuit_for(sizes, "dp", 0.5, "mse", seed=1, batch=2)
    result = settle(circuit, x, y)
    assert np.all(result.settled)
    assert np.all(result.n_kink_steps > 0)  # the networks do cross rails
    assert np.all(result.rejection_rate <= 0.05), result.rejection_rate


@pytest.mark.parametrize("tile", [None, 4])
def test_energy_is_conserved_with_resistive_wires(tile):
    """With wire resistance the line drivers' energy splits into devices and wires (a term of its
    own); the balance must hold as for ideal wires."""
    from dataclasses import replace

    from analogdp.circuit.wires import WireParams
    circuit, x, y = circuit_for((12, 8, 6, 4), "dpT", 0.3, "mse", beta=0.5, batch=2)
    circuit = replace(circuit, wires=WireParams(r_row_segment_ohm=5.0, r_col_segment_ohm=8.0,
                                                r_col_terminal_ohm=30.0, max_rows=tile, max_cols=tile))
    v0 = np.random.default_rng(5).uniform(0, V_R, (2, circuit.n_compartments))
    result = settle(circuit, x, y, v0=v0)
    for energy in (result.energy, result.energy_to_end):
        balance = energy.crossbar + energy.wire + energy.neuron + energy.capacitor
        np.testing.assert_allclose(energy.delivered, balance, rtol=1e-6)
        assert np.all(energy.wire > 0) and np.all(energy.crossbar > 0)
