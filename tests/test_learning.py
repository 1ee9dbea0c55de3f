"""Conductance programming and the one-example-at-a-time learning loop (analogdp.learning)."""

from __future__ import annotations

import numpy as np
import pytest

from analogdp.algorithms import DualPropagation, StepResult
from analogdp.circuit import DeviceParams, NetworkCircuit, ProgrammingParams, dyad_neuron
from analogdp.digital.dp import DPConfig, dp_fixed_point, dp_weight_update
from analogdp.learning import CrossbarLearning, prediction_loss
from analogdp.programming import ConductanceProgrammer

DEVICE = DeviceParams()
STEP_S = ProgrammingParams().delta_g_per_pulse_s
W_PER_PULSE = STEP_S / DEVICE.g_unit_s


def small_circuit(sizes=(6, 5, 3), seed=0, beta=0.5, variant="dp", alpha=0.5):
    rng = np.random.default_rng(seed)
    weights = [rng.uniform(-1, 1, (n_out, n_in)) / np.sqrt(n_in) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    biases = [rng.uniform(-0.1, 0.1, n_out) for n_out in sizes[1:]]
    return NetworkCircuit.from_weights(weights, biases, neuron_kind=dyad_neuron(variant, alpha), beta=beta)


def examples(n, sizes=(6, 5, 3), seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((n, sizes[0])), np.eye(sizes[-1])[rng.integers(0, sizes[-1], n)]


# ---- programming ---------------------------------------------------------------------------


def one_pair(g_pos_s, g_neg_s):
    return np.array([[g_pos_s]]), np.array([[g_neg_s]])


def test_reset_then_set_depresses_the_partner_before_potentiating():
    programmer = ConductanceProgrammer(rounding="nearest", policy="reset-then-set")
    g_pos, g_neg = one_pair(DEVICE.g_min_s, DEVICE.g_min_s + STEP_S)  # W = −1 pulse
    new_pos, new_neg, counts = programmer.program_array(g_pos, g_neg, np.array([[3 * W_PER_PULSE]]), DEVICE)
    assert counts.tolist() == [2, 1, 0]  # [SET, RESET, dropped]
    assert new_neg[0, 0] == pytest.approx(DEVICE.g_min_s)
    assert new_pos[0, 0] == pytest.approx(DEVICE.g_min_s + 2 * STEP_S)
    # mirrored for a decrease
    new_pos2, new_neg2, counts2 = programmer.program_array(new_pos, new_neg, np.array([[-3 * W_PER_PULSE]]), DEVICE)
    assert counts2.tolist() == [1, 2, 0]
    assert new_pos2[0, 0] == pytest.approx(DEVICE.g_min_s)
    assert new_neg2[0, 0] == pytest.approx(DEVICE.g_min_s + STEP_S)


def test_set_only_potentiates_the_device_of_the_sign():
    programmer = ConductanceProgrammer(rounding="nearest", policy="set-only")
    g_pos, g_neg = one_pair(DEVICE.g_min_s, DEVICE.g_min_s + STEP_S)
    new_pos, new_neg, counts = programmer.program_array(g_pos, g_neg, np.array([[2 * W_PER_PULSE]]), DEVICE)
    assert counts.tolist() == [2, 0, 0]
    assert new_pos[0, 0] == pytest.approx(DEVICE.g_min_s + 2 * STEP_S)
    assert new_neg[0, 0] == g_neg[0, 0]
    new_pos, new_neg, _ = programmer.program_array(new_pos, new_neg, np.array([[-1 * W_PER_PULSE]]), DEVICE)
    assert new_neg[0, 0] == pytest.approx(DEVICE.g_min_s + 2 * STEP_S)


def test_conductances_are_clipped_and_unsendable_pulses_dropped():
    programmer = ConductanceProgrammer(rounding="nearest")
    g_pos, g_neg = one_pair(DEVICE.g_max_s - 0.5 * STEP_S, DEVICE.g_min_s)
    new_pos, new_neg, counts = programmer.program_array(g_pos, g_neg, np.array([[4 * W_PER_PULSE]]), DEVICE)
    assert new_pos[0, 0] == DEVICE.g_max_s
    assert counts.tolist() == [1, 0, 3]  # one pulse reaches G_max, three cannot move the device


def test_nearest_rounding_drops_changes_below_half_a_pulse():
    programmer = ConductanceProgrammer(rounding="nearest")
    g_pos, g_neg = one_pair(DEVICE.g_min_s, DEVICE.g_min_s)
    _, _, counts = programmer.program_array(g_pos, g_neg, np.array([[0.4 * W_PER_PULSE]]), DEVICE)
    assert counts.sum() == 0


def test_stochastic_rounding_is_unbiased_and_seeded():
    pulses_real = np.full(20000, 0.3)
    first = ConductanceProgrammer(seed=7).pulse_counts(pulses_real)
    again = ConductanceProgrammer(seed=7).pulse_counts(pulses_real)
    assert np.array_equal(first, again)
    assert set(np.unique(first)) <= {0, 1}
    assert first.mean() == pytest.approx(0.3, abs=0.02)


def test_program_reports_energy_and_updates_bias_rows():
    circuit = small_circuit()
    programmer = ConductanceProgrammer(rounding="nearest")
    delta_w = [np.zeros((5, 6)), np.zeros((3, 5))]
    delta_b = [np.zeros(5), np.array([2 * W_PER_PULSE, 0.0, -W_PER_PULSE])]
    programmed, report = programmer.program(circuit, delta_w, delta_b)
    assert report.pulses == 3 and report.pulses_dropped == 0
    assert report.energy_j == pytest.approx(3 * programmer.params.e_pulse_j)
    before = circuit.effective_weights()[1][1]
    after = programmed.effective_weights()[1][1]
    np.testing.assert_allclose(after - before, [2 * W_PER_PULSE, 0.0, -W_PER_PULSE], atol=1e-12)
    np.testing.assert_array_equal(programmed.effective_weights()[0][0], circuit.effective_weights()[0][0])


def test_effective_weights_are_shared_read_only_and_follow_reprogramming():
    """The realised weights are kept with each crossbar: every reader gets the same read-only
    arrays (none can corrupt another's), and a reprogrammed circuit reads its own."""
    from analogdp.circuit.mapping import conductances_to_weights

    circuit = small_circuit()
    first, second = circuit.effective_weights(), circuit.effective_weights()
    assert first[0][0] is second[0][0]
    with pytest.raises(ValueError):
        first[0][0][0, 0] = 1.0
    for xbar, w, b in zip(circuit.crossbars, *first):
        w_ref, b_ref = conductances_to_weights(xbar.g_pos_s, xbar.g_neg_s, xbar.has_bias_row, circuit.device)
        np.testing.assert_array_equal(w, w_ref)
        np.testing.assert_array_equal(b, b_ref)
    programmed, _ = ConductanceProgrammer(rounding="nearest").program(
        circuit, [np.zeros((5, 6)), np.zeros((3, 5))], [np.zeros(5), np.array([W_PER_PULSE, 0.0, 0.0])])
    assert programmed.effective_weights()[1][1][0] == pytest.approx(first[1][1][0] + W_PER_PULSE, abs=1e-12)


# ---- one DP step ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant, alpha", [("dp", 0.5), ("dpT", 0.3)])
def test_dp_step_settles_to_the_closed_form_fixed_point(variant, alpha):
    circuit = small_circuit(variant=variant, alpha=alpha)
    x, y = examples(1)
    step = DualPropagation(variant=variant, alpha=alpha).step(circuit, x, y)
    assert step.settled
    assert step.fixed_point_error_v <= 1e-6 * circuit.neuron.v_read_v


def test_dp_step_programs_the_hebbian_update():
    """With a fine pulse grid the programmed change equals lr·δ s̄ᵀ/β of the DP fixed point."""
    circuit = small_circuit()
    x, y = examples(1)
    fine = ConductanceProgrammer(ProgrammingParams(delta_g_per_pulse_s=1e-6 * STEP_S), rounding="nearest")
    lr = 0.05
    step = DualPropagation(lr=lr, programmer=fine).step(circuit, x, y)
    weights, biases = circuit.effective_weights()
    states = dp_fixed_point(weights, biases, x, y, DPConfig(beta=circuit.beta))
    expected_w, expected_b = dp_weight_update(states, circuit.beta)
    new_weights, new_biases = step.circuit.effective_weights()
    grid = 1e-6 * W_PER_PULSE
    for k in range(2):
        np.testing.assert_allclose(new_weights[k] - weights[k], lr * expected_w[k], atol=grid)
        np.testing.assert_allclose(new_biases[k] - biases[k], lr * expected_b[k], atol=grid)
    assert set(step.energy_j) == {"crossbar", "neuron", "amplifier_static", "capacitor", "programming"}


# ---- the loop ------------------------------------------------------------------------------


class RecordingDP(DualPropagation):
    """DP that remembers the state each step started from (the loop's hand-over)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.starts = []

    def step(self, circuit, x, y, v0_v=None) -> StepResult:
        self.starts.append(None if v0_v is None else v0_v.copy())
        return super().step(circuit, x, y, v0_v)


def test_each_example_settles_from_the_previous_final_state():
    circuit = small_circuit()
    x, y = examples(4)
    algorithm = RecordingDP()
    learner = CrossbarLearning(circuit, algorithm).run(x, y)
    assert algorithm.starts[0] is None
    assert np.array_equal(algorithm.starts[1][0], learner.first_step_.v_final_v)
    assert learner.history_.loss[0] == pytest.approx(prediction_loss(circuit, x[:1], y[:1]))
    assert learner.history_.n_samples == 4


def test_runs_are_reproducible_and_the_median_breakdown_sums_to_the_median():
    circuit = small_circuit()
    x, y = examples(6)
    first = CrossbarLearning(circuit, DualPropagation(lr=0.05)).run(x, y).history_
    learner = CrossbarLearning(circuit, DualPropagation(lr=0.05))
    second = learner.run(x, y).history_
    for name, values in first.columns().items():
        np.testing.assert_array_equal(values, second.columns()[name], err_msg=name)
    parts = second.median_update_energy_j()
    assert sum(parts.values()) == pytest.approx(np.median(second.energy_per_update_j))
    assert second.fixed_point_error_v.max() <= 1e-6 * circuit.neuron.v_read_v


def test_loss_falls_while_learning_digits_through_the_conductances():
    from analogdp.data import load_dataset, one_hot

    digits = load_dataset("digits", seed=0)
    n = 150
    x, y = digits.x_train[:n], one_hot(digits.y_train[:n], 10)
    rng = np.random.default_rng(0)
    sizes = (64, 32, 10)
    weights = [rng.uniform(-1, 1, (o, i)) / np.sqrt(i) for i, o in zip(sizes[:-1], sizes[1:])]
    circuit = NetworkCircuit.from_weights(weights, [np.zeros(o) for o in sizes[1:]],
                                          neuron_kind=dyad_neuron(), beta=0.5)
    history = CrossbarLearning(circuit, DualPropagation(lr=0.02)).run(x, y).history_
    assert history.loss_last() < 0.75 * history.loss_first()
    assert history.settled.all()
    assert history.pulses.min() > 0


def test_the_loop_takes_any_algorithm_with_the_step_interface():
    """Any implementation of the algorithm protocol plugs in; here one whose step spends an
    extra energy term and does not learn."""
    circuit = small_circuit()
    x, y = examples(3)

    class Frozen(DualPropagation):
        name = "frozen"

        def step(self, c, x_one, y_one, v0_v=None):
            inner = super().step(c, x_one, y_one, v0_v)
            inner.energy_j["storage"] = 1e-15
            inner.circuit = c  # no learning
            return inner

    history = CrossbarLearning(circuit, Frozen()).run(x, y).history_
    assert list(history.energy_j)[-2:] == ["storage", "programming"]
    assert history.loss_first() == pytest.approx(np.mean(history.loss[:1]))


def test_circuit_and_algorithm_must_agree_on_the_neurons():
    circuit = small_circuit(variant="dp", alpha=0.5)
    with pytest.raises(ValueError, match="neurons"):
        CrossbarLearning(circuit, DualPropagation(variant="dpT", alpha=0.3))
