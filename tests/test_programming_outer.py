"""One example's update programmed in place equals the dense programmer's, device for device."""

from __future__ import annotations

import numpy as np
import pytest

from analogdp.circuit import NetworkCircuit
from analogdp.circuit.params import ProgrammingParams
from analogdp.digital.dp import DyadStates, dp_weight_update
from analogdp.experiment import initial_weights
from analogdp.programming import ConductanceProgrammer, program_outer_in_place, row_serial_pulse_slots


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
@pytest.mark.parametrize("policy", ["reset-then-set", "set-only"])
def test_in_place_rank_one_programming_matches_the_dense_programmer(rounding, policy):
    layers = (20, 12, 10)
    weights, biases = initial_weights(layers, 3)
    circuit = NetworkCircuit.from_weights(weights, biases)
    rng = np.random.default_rng(4)
    # large steps so that bounds are reached and pulses dropped; zeros in both factors
    means = [np.where(rng.random(n) < 0.3, 0.0, rng.random(n)) for n in layers]
    deltas = [np.where(rng.random(n) < 0.3, 0.0, rng.standard_normal(n)) for n in layers]
    states = DyadStates([means[0][None]] + [(m + 0.5 * d)[None] for m, d in zip(means[1:], deltas[1:])],
                        [means[0][None]] + [(m - 0.5 * d)[None] for m, d in zip(means[1:], deltas[1:])], 0.5)
    beta, lr = 0.5, 3.0
    dw, db = dp_weight_update(states, beta)
    params = ProgrammingParams(delta_g_per_pulse_s=(circuit.device.g_max_s - circuit.device.g_min_s) / 16)
    dense = ConductanceProgrammer(params, rounding=rounding, policy=policy, seed=7)
    in_place = ConductanceProgrammer(params, rounding=rounding, policy=policy, seed=7)
    for repeat in range(3):
        programmed, report = dense.program(circuit, [lr * d for d in dw], [lr * d for d in db])
        totals = np.zeros(3, dtype=np.int64)
        slots = []
        g_pos = [x.g_pos_s.copy() for x in circuit.crossbars]
        g_neg = [x.g_neg_s.copy() for x in circuit.crossbars]
        w_phys = [(gp - gn) / circuit.device.g_unit_s for gp, gn in zip(g_pos, g_neg)]
        for k in range(circuit.n_layers):
            d = states.difference(k + 1)[0] / beta
            counts = program_outer_in_place(in_place, g_pos[k], g_neg[k], d, states.mean(k)[0], lr,
                                            circuit.device, w_phys[k])
            totals += counts[:3]
            slots.append(int(counts[3]))
        for k, xbar in enumerate(programmed.crossbars):
            assert np.array_equal(xbar.g_pos_s, g_pos[k]) and np.array_equal(xbar.g_neg_s, g_neg[k])
            assert np.array_equal(w_phys[k], (g_pos[k] - g_neg[k]) / circuit.device.g_unit_s)
        assert list(totals) == [report.pulses_set, report.pulses_reset, report.pulses_dropped]
        from_conductances = [row_serial_pulse_slots(a.g_pos_s, a.g_neg_s, b.g_pos_s, b.g_neg_s,
                                                    params.delta_g_per_pulse_s)
                             for a, b in zip(circuit.crossbars, programmed.crossbars)]
        assert slots == from_conductances and max(slots) > 0
        # the programmer's update time: crossbars at once, each row by row
        assert max(slots) * dense.coincidence.pulse_width_s == pytest.approx(report.update_time_s, rel=1e-12)
        assert report.pulses > 0
        circuit = programmed
