"""The largest step an explicit solver can take on a given circuit without going unstable.

Linearised, every compartment obeys τ dv/dt = −(I − J)v + …, where J holds the couplings
through the crossbars. Its modes sit near −(1 ± ‖J‖)/τ, and an explicit method is stable only
while h·(fastest rate) stays inside its interval on the negative real axis. Above it, only the
error controller keeps the step in check, and the state hovers about equilibrium at the level
of the tolerance instead of settling.

How much of ‖J‖ reaches the modes depends on the neuron: a loop through two adjacent layers
goes up through the row signal (weights ρ) and comes back through the feedback gains κ, so it
carries Σ_c ρ_c κ_c over the compartments that are free to move. For a DP⊤ dyad, and a DP dyad
at α = ½, the sum over both compartments is zero: with both inside the clip range every mode
stays at −1/τ. But a compartment resting on a hard-sigmoid rail drops out of the sum, and the
loop of its partner alone remains (ρ_c κ_c = ¼ for a DP dyad at α = ½): a layer of strong
weights with some dyads half-clipped (devices stuck at G_max, for instance) spreads the modes
to −(1 ± ¼‖J‖)/τ, measured down to −1.93/τ. The bound therefore takes the largest loop over
every set of free compartments. For an EP neuron it is 1 (modes spread over −(1 ± ‖J‖)/τ), and a
nudge taken at the output state adds at most |β| (the loss Hessian has norm ≤ 1 for both
losses).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from ..circuit.network import NetworkCircuit


def largest_singular_value(matrix: np.ndarray, iterations: int = 30, margin: float = 1.05) -> float:
    """σ_max by power iteration on MᵀM from a fixed start (deterministic), raised by
    ``margin`` since the iteration approaches it from below; a full SVD of a 512×512 array
    costs more than a whole settle."""
    vector = np.full(matrix.shape[1], 1.0 / np.sqrt(matrix.shape[1]))
    vector[::2] *= -1.0  # a fixed start with little bias towards any one direction
    sigma = 0.0
    for _ in range(iterations):
        image = matrix @ vector
        sigma = float(np.linalg.norm(image))
        if sigma == 0.0:
            return 0.0
        vector = matrix.T @ image
        vector /= np.linalg.norm(vector)
    return margin * sigma


def coupling_norm(circuit: NetworkCircuit) -> float:
    """An upper estimate of ‖J‖ between the free (non-input) layers.

    J couples adjacent free layers through W_k and W_kᵀ (crossbar 0 feeds from the clamped
    input and adds nothing); it is block tridiagonal, so ‖J‖ ≤ max_l (σ(W_{l−1}) + σ(W_l)).
    """
    weights, _ = circuit.effective_weights()
    norms = [0.0] + [largest_singular_value(w) for w in weights[1:]] + [0.0]
    return max(norms[k - 1] + norms[k] for k in range(1, len(norms)))


def fastest_rate_per_tau(circuit: NetworkCircuit) -> float:
    """Estimated rate of the circuit's fastest mode, in units of 1/τ (see the module docstring)."""
    kind = circuit.neuron_kind
    loops = np.multiply(kind.row_weights, kind.feedback_gains)
    free_sets = (subset for size in range(1, len(loops) + 1) for subset in combinations(loops, size))
    loop_gain = max(abs(float(sum(subset))) for subset in free_sets)
    rate = 1.0
    if loop_gain > 1e-12:
        rate += loop_gain * coupling_norm(circuit)
    if kind.nudge_at == "state":
        rate += abs(circuit.beta)
    return rate


def max_stable_step_tau(circuit: NetworkCircuit, real_stability: float) -> float:
    """Largest step (in τ) inside a solver's real stability interval for this circuit."""
    return real_stability / fastest_rate_per_tau(circuit)
