"""Equilibrium propagation, the baseline (DESIGN §2.2), in the form a bounded circuit realises.

Energy of the layered Hopfield network (layer 0 = x clamped, layers 1..L free):

    E(s) = Σ_{k≥1} ½‖s_k‖² − Σ_k s_{k+1}ᵀ W_k s_k − Σ_k b_kᵀ s_{k+1},

with hidden states confined to the activation's range (the hard sigmoid's box [0, 1]; [0, ∞)
for ReLU), on which ρ(s) = s, and a linear, unbounded output. Nudged phases minimise
E + β C with C = ℓ(s_L, y).

Minimising E over one layer with its neighbours fixed has a closed form, which is exactly the
steady state of a neuron circuit with bounded node voltages:

    hidden  s_k ← f(W_{k-1} s_{k-1} + b_{k-1} + W_kᵀ s_{k+1})        (f projects on the range)
    output  s_L = W_{L-1} s_{L-1} + b_{L-1} − β ∇ℓ(s_L)
            MSE: s_L = (a + β y)/(1 + β);  CE: iterate s ← a − β (softmax(s) − y).

Relaxation is block-coordinate descent on the energy with an even/odd schedule: one *step*
sets every odd layer (they do not interact with each other, so at once), then every even
layer. Each step can only lower the (β-augmented) energy. Phases start from zero states
(a reset circuit) unless given start states; the first step from zero reproduces the
feed-forward pass up the odd layers.

Sign conventions:
- β > 0 pulls the output towards the target (s_L = a − β∇ℓ); centered EP also uses −β.
- ``ep_weight_update`` returns a descent direction, ΔW_k ≈ −∂L/∂W_k with L the batch-mean
  loss at the free equilibrium, as ``dp_weight_update`` and ``bp_update_direction`` do:

      one-sided  ΔW_k = (s_{k+1}^β s_k^βᵀ − s_{k+1}^0 s_k^0ᵀ) / β
      centered   ΔW_k = (s_{k+1}^{+β} s_k^{+β}ᵀ − s_{k+1}^{−β} s_k^{−β}ᵀ) / (2β)
      biases     Δb_k = (s_{k+1}^{high} − s_{k+1}^{low}) / (β_high − β_low)

  averaged over the batch; add lr × ΔW to learn. One-sided EP is biased at O(β), centered
  at O(β²).

Stability: the output solve needs 1 − β > 0 for MSE with −β, and β/2 < 1 for the CE
fixed-point iteration (the softmax Jacobian has norm ≤ ½), so ``EPConfig`` asks for β < 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .functional import ACTIVATIONS, LOSSES, activation, check_choice, loss_gradient, loss_value


@dataclass(frozen=True)
class EPConfig:
    """EP settings: ``free_steps`` and ``nudged_steps`` count even/odd relaxation steps;
    ``centered`` uses ±β nudged phases (two of ``nudged_steps`` each); ``output_iterations``
    is the number of inner fixed-point iterations of the CE output solve per step."""

    activation: str = "hardsigmoid"
    loss: str = "mse"
    beta: float = 0.5
    free_steps: int = 30
    nudged_steps: int = 10
    centered: bool = True
    output_iterations: int = 4

    def __post_init__(self):
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("loss", self.loss, LOSSES)
        if not np.isfinite(self.beta) or not (0.0 < self.beta < 1.0):
            raise ValueError(f"EP beta must lie in (0, 1) so that both nudged output solves "
                             f"are stable, got {self.beta!r}")
        for name in ("free_steps", "nudged_steps", "output_iterations"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


def ep_zero_states(weights, x) -> list[np.ndarray]:
    """Reset states: layer 0 = x (clamped), every other layer zero."""
    x = np.asarray(x)
    return [x] + [np.zeros((x.shape[0], w.shape[0]), dtype=x.dtype) for w in weights]


def _input_drive(weights, biases, x) -> np.ndarray:
    """W_0 x + b_0: the clamped input's drive of layer 1, constant through every phase."""
    drive = np.asarray(x) @ weights[0].T
    drive += biases[0]
    return drive


def _output_state(bottom_up, y, loss: str, beta: float, previous, output_iterations: int):
    """Minimiser of ½‖s‖² − sᵀa + β ℓ(s, y): the nudged linear output."""
    if beta == 0.0:
        return bottom_up
    if loss == "mse":
        return (bottom_up + beta * y) / (1.0 + beta)
    state = previous
    for _ in range(output_iterations):
        state = bottom_up - beta * loss_gradient(loss, state, y)
    return state


def _relax(weights, biases, y, cfg: EPConfig, beta: float, states: list[np.ndarray],
           steps: int, drive: np.ndarray, tol: float | None = None) -> tuple[list[np.ndarray], int, float]:
    """Run up to ``steps`` even/odd steps; stop early once no state moves more than ``tol``.

    Returns (states, steps taken, largest state change in the last step).
    """
    n_layers = len(weights)
    states = list(states)
    change = np.inf
    odd_then_even = [k for k in range(1, n_layers + 1) if k % 2] + \
                    [k for k in range(1, n_layers + 1) if not k % 2]
    for step in range(1, steps + 1):
        change = 0.0
        for k in odd_then_even:
            bottom_up = drive if k == 1 else states[k - 1] @ weights[k - 1].T + biases[k - 1]
            if k == n_layers:
                new = _output_state(bottom_up, y, cfg.loss, beta, states[k], cfg.output_iterations)
            else:
                new = activation(cfg.activation, bottom_up + states[k + 1] @ weights[k])
            if tol is not None:
                change = max(change, float(np.max(np.abs(new - states[k]), initial=0.0)))
            states[k] = new
        if tol is not None and change <= tol:
            return states, step, change
    return states, steps, change


def ep_relax(weights, biases, x, y, cfg: EPConfig, beta: float, steps: int,
             start_states: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """``steps`` even/odd relaxation steps of E + βC from ``start_states`` (zeros if None).

    β = 0 is the free phase (``y`` may then be None). Returns the list of layer states.
    """
    if beta != 0.0 and y is None:
        raise ValueError("a nudged phase (beta != 0) needs targets y")
    states = ep_zero_states(weights, x) if start_states is None else start_states
    return _relax(weights, biases, y, cfg, beta, states, steps, _input_drive(weights, biases, x))[0]


def ep_free_fixed_point(weights, biases, x, cfg: EPConfig, tol: float = 1e-12,
                        max_iters: int = 100_000) -> list[np.ndarray]:
    """Free equilibrium s⁰ (β = 0) from zero states, to ``tol`` in every state.

    Raises RuntimeError when the states still move by more than ``tol`` after ``max_iters``
    even/odd steps (a strongly coupled or ReLU network may have no stable equilibrium).
    """
    drive = _input_drive(weights, biases, x)
    states, taken, change = _relax(weights, biases, None, cfg, 0.0, ep_zero_states(weights, x),
                                   max_iters, drive, tol)
    if change > tol:
        raise RuntimeError(f"EP free phase did not converge to {tol:g} within {max_iters} "
                           f"steps (last change {change:.3g})")
    return states


def ep_nudged_fixed_point(weights, biases, x, y, cfg: EPConfig, beta: float,
                          start_states: list[np.ndarray] | None = None, tol: float = 1e-12,
                          max_iters: int = 100_000) -> list[np.ndarray]:
    """Nudged equilibrium s^β of E + βC (β may be negative), relaxed from ``start_states``
    (normally the free equilibrium; zeros if None), to ``tol``; raises RuntimeError if not."""
    if y is None:
        raise ValueError("the nudged phase needs targets y")
    drive = _input_drive(weights, biases, x)
    start = ep_zero_states(weights, x) if start_states is None else start_states
    states, taken, change = _relax(weights, biases, y, cfg, beta, start, max_iters, drive, tol)
    if change > tol:
        raise RuntimeError(f"EP nudged phase (beta={beta:g}) did not converge to {tol:g} "
                           f"within {max_iters} steps (last change {change:.3g})")
    return states


def ep_weight_update(lower_states: list[np.ndarray], upper_states: list[np.ndarray],
                     beta_span: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Contrastive update (ρρᵀ(upper) − ρρᵀ(lower)) / beta_span, batch-averaged.

    One-sided: lower = free, upper = +β, span β. Centered: lower = −β, upper = +β, span 2β.
    The result is a descent direction (≈ −∇L); ρ(s) = s because states lie in f's range.
    """
    batch = lower_states[0].shape[0]
    scale = 1.0 / (beta_span * batch)
    dws, dbs = [], []
    for k in range(len(upper_states) - 1):
        post_change = upper_states[k + 1] - lower_states[k + 1]
        post_change *= scale
        if upper_states[k] is lower_states[k]:
            # Clamped presynaptic layer (the input): the contrast needs one product only.
            dws.append(post_change.T @ upper_states[k])
        else:
            dws.append(scale * (upper_states[k + 1].T @ upper_states[k])
                       - scale * (lower_states[k + 1].T @ lower_states[k]))
        dbs.append(post_change.sum(axis=0))
    return dws, dbs


def ep_update_direction(weights, biases, x, y, cfg: EPConfig
                        ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """One EP learning step's direction: free phase, nudged phase(s), contrast.

    Returns (ΔW, Δb, free output). The free phase runs ``cfg.free_steps`` from zero states;
    each nudged phase runs ``cfg.nudged_steps`` from the free states.
    """
    drive = _input_drive(weights, biases, x)
    free, _, _ = _relax(weights, biases, None, cfg, 0.0, ep_zero_states(weights, x),
                        cfg.free_steps, drive)
    upper, _, _ = _relax(weights, biases, y, cfg, cfg.beta, free, cfg.nudged_steps, drive)
    if cfg.centered:
        lower, _, _ = _relax(weights, biases, y, cfg, -cfg.beta, free, cfg.nudged_steps, drive)
        dws, dbs = ep_weight_update(lower, upper, 2.0 * cfg.beta)
    else:
        dws, dbs = ep_weight_update(free, upper, cfg.beta)
    return dws, dbs, free[-1]


def ep_predict(weights, biases, x, cfg: EPConfig) -> np.ndarray:
    """Network output at the end of a free phase of ``cfg.free_steps`` (EP's inference)."""
    drive = _input_drive(weights, biases, x)
    free, _, _ = _relax(weights, biases, None, cfg, 0.0, ep_zero_states(weights, x),
                        cfg.free_steps, drive)
    return free[-1]


def ep_energy(weights, biases, states: list[np.ndarray], y=None, beta: float = 0.0,
              loss: str = "mse") -> np.ndarray:
    """Per-example E(s) + β ℓ(s_L, y) (module docstring); relaxation steps never raise it."""
    energy = sum(0.5 * np.sum(s * s, axis=1) for s in states[1:])
    for k, (w, b) in enumerate(zip(weights, biases)):
        energy = energy - np.sum((states[k] @ w.T + b) * states[k + 1], axis=1)
    if beta:
        energy = energy + beta * loss_value(loss, states[-1], y)
    return energy


def ep_free_loss(weights, biases, x, y, cfg: EPConfig, tol: float = 1e-13,
                 max_iters: int = 100_000) -> float:
    """Batch-mean loss at the free equilibrium: the objective EP's update descends."""
    free = ep_free_fixed_point(weights, biases, x, cfg, tol=tol, max_iters=max_iters)
    return float(np.mean(loss_value(cfg.loss, free[-1], y)))
