"""StepController.kinks: stepping over clip kinks keeps what a settle reports.

Against an rtol 1e-10 settle that cuts at every costly kink, the opt-in "step-over" policy must
keep the settling times and every energy term within the default reported precision (1e-4) and
the settled state at the fixed point, with fewer evaluations on a deep network.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_solver import circuit_for

from analogdp.digital.dp import DPConfig, dp_fixed_point
from analogdp.solver import ENERGY_TERMS, StepController, settle


def reported(result) -> np.ndarray:
    return np.stack([result.settling_time_s, result.settling_time_1pct_s]
                    + [getattr(result.energy, k) for k in ENERGY_TERMS])


@pytest.mark.parametrize("seed", [2, 3])
def test_stepping_over_kinks_keeps_the_reported_figures(seed):
    alpha = 0.5
    circuit, x, y = circuit_for((40, 32, 32, 32, 6), "dp", alpha, "mse", seed=seed, batch=3)
    over = settle(circuit, x, y, controller=StepController(kinks="step-over"), threads=1)
    cut = settle(circuit, x, y, controller=StepController(kinks="cut"), threads=1)
    reference = settle(circuit, x, y, controller=StepController(rtol=1e-10, atol_fraction=1e-12, kinks="cut"),
                       threads=1)
    deviation = np.abs(reported(over) - reported(reference)) / np.abs(reported(reference))
    assert deviation.max() <= 1e-4, deviation.max()
    weights, biases = circuit.effective_weights()
    exact = dp_fixed_point(weights, biases, x, y, DPConfig(variant="dp", alpha=alpha, beta=circuit.beta))
    states = over.dyad_states(x)
    for k in range(1, len(weights) + 1):  # dyad states are in units of V_r
        assert np.abs(states.s_plus[k] - exact.s_plus[k]).max() <= 1e-9
        assert np.abs(states.s_minus[k] - exact.s_minus[k]).max() <= 1e-9
    assert over.n_evaluations.sum() < cut.n_evaluations.sum()
    assert over.rejection_rate.max() <= 0.05


def test_unknown_kink_policy_is_refused():
    with pytest.raises(ValueError, match="kinks"):
        StepController(kinks="ignore")
