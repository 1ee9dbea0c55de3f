"""Dual propagation, the digital reference (DESIGN §2.1).

Every neuron is a dyad with states s+ and s-. Mean s̄ = α s+ + (1-α) s-, difference
δ = s+ - s-. Hidden layers: s+ = f(a + c+ fb), s- = f(a - c- fb) with a = W s̄_prev + b and
fb = Wᵀ δ_next. Output layer (linear): s+ = a - c+ g, s- = a + c- g, where

    g = β ∇ℓ(a_L)

is the loss gradient evaluated at the output's bottom-up input a_L (the feed-forward
prediction in the first sweep). At α = ½ this equals ∇ℓ(s̄_L), as in the 2023 paper; for
α ≠ ½ evaluating it at a_L keeps the output nudge a function of the layer below only, which is
also what the circuit injects. (c+, c-) = (α, 1-α) for ``dp`` and (1-α, α) for ``dpT``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .functional import ACTIVATIONS, LOSSES, activation, check_choice, loss_gradient

VARIANTS = ("dp", "dpT")


def feedback_coefficients(variant: str, alpha: float) -> tuple[float, float]:
    """(c+, c-) of the dyad equations for a variant."""
    check_choice("variant", variant, VARIANTS)
    if not (0.0 <= alpha <= 1.0) or not np.isfinite(alpha):
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    if variant == "dp":
        return alpha, 1.0 - alpha
    return 1.0 - alpha, alpha


@dataclass
class DyadStates:
    """Per-layer dyad states; layer 0 is the clamped input (s+ = s- = x)."""

    s_plus: list[np.ndarray]
    s_minus: list[np.ndarray]
    alpha: float

    def mean(self, k: int) -> np.ndarray:
        return self.alpha * self.s_plus[k] + (1.0 - self.alpha) * self.s_minus[k]

    def difference(self, k: int) -> np.ndarray:
        return self.s_plus[k] - self.s_minus[k]

    @property
    def n_layers(self) -> int:
        return len(self.s_plus) - 1


@dataclass(frozen=True)
class DPConfig:
    variant: str = "dp"
    alpha: float = 0.5
    beta: float = 0.1
    activation: str = "hardsigmoid"
    loss: str = "mse"

    def __post_init__(self):
        feedback_coefficients(self.variant, self.alpha)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("loss", self.loss, LOSSES)
        if not np.isfinite(self.beta) or self.beta <= 0:
            raise ValueError(f"beta must be a positive finite number, got {self.beta!r}")


def _bottom_up(weights, biases, states: DyadStates, k: int) -> np.ndarray:
    a = states.mean(k - 1) @ weights[k - 1].T
    if biases is not None and biases[k - 1] is not None:
        a = a + biases[k - 1]
    return a


def _update_layer(weights, biases, states: DyadStates, y, cfg: DPConfig, k: int) -> None:
    c_plus, c_minus = feedback_coefficients(cfg.variant, cfg.alpha)
    a = _bottom_up(weights, biases, states, k)
    if k == states.n_layers:
        g = cfg.beta * loss_gradient(cfg.loss, a, y)
        states.s_plus[k] = a - c_plus * g
        states.s_minus[k] = a + c_minus * g
    else:
        fb = states.difference(k + 1) @ weights[k]
        states.s_plus[k] = activation(cfg.activation, a + c_plus * fb)
        states.s_minus[k] = activation(cfg.activation, a - c_minus * fb)


def feedforward(weights, biases, x, activation_name: str = "hardsigmoid") -> list[np.ndarray]:
    """Plain forward pass; returns the activity of every layer (layer 0 = x, output linear)."""
    s = [np.asarray(x)]
    for k, w in enumerate(weights):
        a = s[-1] @ w.T
        if biases is not None and biases[k] is not None:
            a = a + biases[k]
        s.append(a if k == len(weights) - 1 else activation(activation_name, a))
    return s


def dp_sweeps(weights, biases, x, y, cfg: DPConfig, sweeps: int = 1) -> DyadStates:
    """Closed-form layerwise DP inference.

    Sweep 1: feed-forward pass (s+ = s- = prediction), nudge the output, one top-down sweep.
    Each further sweep is a bottom-up pass followed by a top-down pass over the same equations.
    """
    if sweeps < 1:
        raise ValueError(f"sweeps must be >= 1, got {sweeps}")
    ff = feedforward(weights, biases, x, cfg.activation)
    states = DyadStates([f.copy() for f in ff], [f.copy() for f in ff], cfg.alpha)
    n_layers = len(weights)
    _update_layer(weights, biases, states, y, cfg, n_layers)
    for _ in range(sweeps):
        for k in range(n_layers - 1, 0, -1):
            _update_layer(weights, biases, states, y, cfg, k)
        if _ == sweeps - 1:
            break
        for k in range(1, n_layers + 1):
            _update_layer(weights, biases, states, y, cfg, k)
    return states


def dp_residual(weights, biases, x, y, cfg: DPConfig, states: DyadStates) -> float:
    """Largest violation of the DP fixed-point equations by ``states``."""
    worst = 0.0
    for k in range(1, states.n_layers + 1):
        probe = DyadStates(list(states.s_plus), list(states.s_minus), cfg.alpha)
        _update_layer(weights, biases, probe, y, cfg, k)
        worst = max(worst,
                    float(np.max(np.abs(probe.s_plus[k] - states.s_plus[k]))),
                    float(np.max(np.abs(probe.s_minus[k] - states.s_minus[k]))))
    return worst


def dp_fixed_point(weights, biases, x, y, cfg: DPConfig, tol: float = 1e-13,
                   max_sweeps: int = 10_000) -> DyadStates:
    """Sweep until the DP equations hold to ``tol``; raise if they do not converge."""
    states = dp_sweeps(weights, biases, x, y, cfg, sweeps=1)
    n_layers = len(weights)
    for sweep in range(max_sweeps):
        if dp_residual(weights, biases, x, y, cfg, states) <= tol:
            return states
        for k in range(1, n_layers + 1):
            _update_layer(weights, biases, states, y, cfg, k)
        for k in range(n_layers - 1, 0, -1):
            _update_layer(weights, biases, states, y, cfg, k)
    raise RuntimeError(
        f"DP sweeps did not converge to {tol:g} within {max_sweeps} sweeps "
        f"(residual {dp_residual(weights, biases, x, y, cfg, states):.3g}); "
        f"the fixed point may be unstable for variant={cfg.variant}, alpha={cfg.alpha}")


def dp_weight_update(states: DyadStates, beta: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Hebbian update direction ΔW_{k-1} = δ_k s̄_{k-1}ᵀ / β (batch-averaged) and Δb = δ_k / β.

    As β → 0 this is the negative loss gradient; multiply by the learning rate to step.
    """
    batch = states.s_plus[0].shape[0]
    dws, dbs = [], []
    for k in range(1, states.n_layers + 1):
        delta = states.difference(k)
        dws.append(delta.T @ states.mean(k - 1) / (beta * batch))
        dbs.append(delta.sum(axis=0) / (beta * batch))
    return dws, dbs
