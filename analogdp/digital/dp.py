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

import math
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
        if self.s_plus[k] is self.s_minus[k]:
            # A clamped layer (the input) holds one array for both compartments; its mean is
            # that array, and skipping the arithmetic saves a pass over the widest layer.
            return self.s_plus[k]
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


def _update_layer(weights, biases, states: DyadStates, y, cfg: DPConfig, k: int,
                  bottom_up: np.ndarray | None = None,
                  coefficients: tuple[float, float] | None = None) -> None:
    """Set layer k's dyad from the table of DESIGN §2.1.

    ``bottom_up`` is a_k when the caller knows it is current (layer k-1 unchanged since it
    was computed); passing it saves the layer's forward matrix product. ``coefficients``
    are (c+, c-) when the caller has them already. The arithmetic is done in place on fresh
    arrays: this runs once per layer per example batch in training.
    """
    c_plus, c_minus = coefficients or feedback_coefficients(cfg.variant, cfg.alpha)
    a = _bottom_up(weights, biases, states, k) if bottom_up is None else bottom_up
    if k == states.n_layers:
        g = loss_gradient(cfg.loss, a, y)
        g *= cfg.beta
        states.s_plus[k] = a - c_plus * g
        states.s_minus[k] = a + c_minus * g
    else:
        fb = states.difference(k + 1) @ weights[k]
        s_plus = fb * c_plus
        s_plus += a
        s_minus = fb * -c_minus
        s_minus += a
        states.s_plus[k] = activation(cfg.activation, s_plus, out=s_plus)
        states.s_minus[k] = activation(cfg.activation, s_minus, out=s_minus)


def feedforward(weights, biases, x, activation_name: str = "hardsigmoid") -> list[np.ndarray]:
    """Plain forward pass; returns the activity of every layer (layer 0 = x, output linear)."""
    return forward_with_inputs(weights, biases, x, activation_name)[0]


def forward_with_inputs(weights, biases, x, activation_name: str = "hardsigmoid"
                        ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Forward pass returning (activities, bottom-up inputs a_k); inputs[0] is None.

    Back-propagation and the first DP sweep both need a_k again; keeping it avoids a second
    product with every weight matrix.
    """
    s = [np.asarray(x)]
    inputs: list[np.ndarray | None] = [None]
    for k, w in enumerate(weights):
        a = s[-1] @ w.T
        if biases is not None and biases[k] is not None:
            a += biases[k]
        inputs.append(a)
        s.append(a if k == len(weights) - 1 else activation(activation_name, a))
    return s, inputs


def dp_sweeps(weights, biases, x, y, cfg: DPConfig, sweeps: int = 1) -> DyadStates:
    """Closed-form layerwise DP inference.

    Sweep 1: feed-forward pass (s+ = s- = prediction), nudge the output, one top-down sweep.
    Each further sweep is a bottom-up pass followed by a top-down pass over the same equations.

    Cost: a top-down pass only changes layers above the one being set, so each layer's
    bottom-up input a_k is kept from the latest forward/bottom-up pass instead of being
    recomputed; one sweep then costs one forward product and one feedback product per layer,
    as back-propagation does. Layer 0 holds ``x`` itself (read-only view, one array for both
    compartments); every other entry is a fresh array.
    """
    if sweeps < 1:
        raise ValueError(f"sweeps must be >= 1, got {sweeps}")
    activities, inputs = forward_with_inputs(weights, biases, x, cfg.activation)
    clamped_input = activities[0].view()
    clamped_input.flags.writeable = False
    activities[0] = clamped_input
    # Entries are replaced, never written in place, so both compartments may start from the
    # same feed-forward arrays.
    states = DyadStates(list(activities), list(activities), cfg.alpha)
    n_layers = len(weights)
    coefficients = feedback_coefficients(cfg.variant, cfg.alpha)
    _update_layer(weights, biases, states, y, cfg, n_layers, inputs[n_layers], coefficients)
    for sweep in range(sweeps):
        for k in range(n_layers - 1, 0, -1):
            _update_layer(weights, biases, states, y, cfg, k, inputs[k], coefficients)
        if sweep == sweeps - 1:
            break
        for k in range(1, n_layers + 1):
            inputs[k] = _bottom_up(weights, biases, states, k)
            _update_layer(weights, biases, states, y, cfg, k, inputs[k], coefficients)
    return states


def dp_residual(weights, biases, x, y, cfg: DPConfig, states: DyadStates) -> float:
    """Largest violation of the DP fixed-point equations by ``states``."""
    return _residual(weights, biases, y, cfg, states, None, None)


def _residual(weights, biases, y, cfg: DPConfig, states: DyadStates, first_input, coefficients,
              first_layer: list | None = None) -> float:
    """``dp_residual`` with layer 1's bottom-up input (``first_input``, constant while the
    input is clamped) and (c+, c-) supplied when known. ``first_layer``, when given, receives
    layer 1 as the equations set it from ``states`` ([s+, s-]): the next sweep's first update."""
    worst = 0.0
    for k in range(1, states.n_layers + 1):
        probe = DyadStates(list(states.s_plus), list(states.s_minus), cfg.alpha)
        _update_layer(weights, biases, probe, y, cfg, k, first_input if k == 1 else None, coefficients)
        if k == 1 and first_layer is not None:
            first_layer[:] = [probe.s_plus[1], probe.s_minus[1]]
        worst = max(worst,
                    float(np.max(np.abs(probe.s_plus[k] - states.s_plus[k]))),
                    float(np.max(np.abs(probe.s_minus[k] - states.s_minus[k]))))
    return worst


class FixedPointNotFound(RuntimeError):
    """The DP sweeps did not reach the fixed point; ``reason`` says why, ``sweeps`` how many
    were run and ``residual`` where they stopped."""

    def __init__(self, message: str, *, reason: str, sweeps: int, residual: float):
        super().__init__(message)
        self.reason = reason
        self.sweeps = sweeps
        self.residual = residual


def dp_fixed_point(weights, biases, x, y, cfg: DPConfig, tol: float = 1e-13,
                   max_sweeps: int = 10_000, stall_sweeps: int | None = None,
                   start: DyadStates | None = None, relax_after: int | None = None) -> DyadStates:
    """Sweep until the DP equations hold to ``tol``; raise :class:`FixedPointNotFound` (a
    RuntimeError) if they do not within ``max_sweeps``.

    ``stall_sweeps`` (None: off) gives up earlier, once that many sweeps in a row have not
    brought the residual below half the smallest residual seen before them: a contracting
    iteration halves its residual well within such a window, while the sweeps on weights
    without a stable sweep fixed point settle into a cycle whose residual stays O(1) for ever
    (DESIGN §7.5). The sweeps themselves, and so the fixed point found, are the same either way.

    Layer 1's bottom-up input W₀x + b₀ is computed once: the input is clamped, so every sweep
    would recompute the same product (the widest of the network, usually). Each sweep's first
    update (layer 1) is taken from the residual check before it, which computed the same thing.

    ``start`` (layers 1…L; layer 0 is ``x`` whatever it holds) replaces the first sweep from the
    feed-forward pass: a state already near the fixed point, such as a settled circuit's, reaches
    ``tol`` in the few sweeps its own distance needs. Where several fixed points exist, the sweeps
    go to the one the start lies in the basin of.

    ``relax_after`` (None: off): once the plain sweeps have gone that many sweeps without halving
    their residual, start again from the same initial state with under-relaxed sweeps,
    s ← ½(s + sweep(s)), under the same stopping and stall rules. A fixed point can be a resting
    state of the circuit and still repel the plain sweeps (one of their modes flips sign with a
    gain above 1, the period-2 cycle of DESIGN §7.5); halving the step maps that gain λ < −1 to
    (1 + λ)/2, inside the unit circle for λ > −3, while the fixed points stay the same.
    """
    if stall_sweeps is not None and stall_sweeps < 1:
        raise ValueError(f"stall_sweeps must be >= 1 or None, got {stall_sweeps!r}")
    if relax_after is not None and relax_after < 1:
        raise ValueError(f"relax_after must be >= 1 or None, got {relax_after!r}")
    if start is None:
        states = dp_sweeps(weights, biases, x, y, cfg, sweeps=1)
    else:
        clamped = np.asarray(x, dtype=np.float64)
        if start.n_layers != len(weights):
            raise ValueError(f"start has {start.n_layers} layers, the weights {len(weights)}")
        states = DyadStates([clamped] + list(start.s_plus[1:]), [clamped] + list(start.s_minus[1:]), cfg.alpha)
    # The sweeps replace the entries of these lists, never write into their arrays: a copy of
    # the lists keeps the initial state for a relaxed restart.
    initial = DyadStates(list(states.s_plus), list(states.s_minus), cfg.alpha)
    first_input = _bottom_up(weights, biases, states, 1)
    try:
        return _sweep_to_fixed_point(weights, biases, y, cfg, states, first_input, tol, max_sweeps,
                                     stall_sweeps if relax_after is None else relax_after, relaxation=1.0)
    except FixedPointNotFound:
        if relax_after is None:
            raise
    return _sweep_to_fixed_point(weights, biases, y, cfg, initial, first_input, tol, max_sweeps, stall_sweeps,
                                 relaxation=0.5)


def _sweep_to_fixed_point(weights, biases, y, cfg: DPConfig, states: DyadStates, first_input, tol: float,
                          max_sweeps: int, stall_sweeps: int | None, relaxation: float) -> DyadStates:
    """The sweeps of :func:`dp_fixed_point` from ``states`` (modified), each moving the state by
    ``relaxation`` times the change a plain sweep would make."""
    n_layers = len(weights)
    coefficients = feedback_coefficients(cfg.variant, cfg.alpha)
    best = math.inf
    since_best = 0
    first_layer: list = []
    kind = "sweeps" if relaxation == 1.0 else f"sweeps relaxed by {relaxation:g}"
    for sweep in range(max_sweeps):
        residual = _residual(weights, biases, y, cfg, states, first_input, coefficients, first_layer)
        if residual <= tol:
            return states
        if residual <= 0.5 * best:
            best = residual
            since_best = 0
        else:
            since_best += 1
            if stall_sweeps is not None and since_best >= stall_sweeps:
                raise FixedPointNotFound(
                    f"DP {kind} stalled: residual {residual:.3g} not below half of {best:.3g} for {stall_sweeps} "
                    f"sweeps (after {sweep} sweeps); the sweeps have no stable fixed point for these weights "
                    f"(variant={cfg.variant}, alpha={cfg.alpha})",
                    reason="stalled", sweeps=sweep, residual=residual)
        before = None if relaxation == 1.0 else (list(states.s_plus), list(states.s_minus))
        # The bottom-up pass starts with layer 1 from the present states: the residual's probe
        # computed exactly that.
        states.s_plus[1], states.s_minus[1] = first_layer
        for k in range(2, n_layers + 1):
            _update_layer(weights, biases, states, y, cfg, k, None, coefficients)
        for k in range(n_layers - 1, 0, -1):
            _update_layer(weights, biases, states, y, cfg, k, first_input if k == 1 else None, coefficients)
        if before is not None:
            for k in range(1, n_layers + 1):
                states.s_plus[k] = before[0][k] + relaxation * (states.s_plus[k] - before[0][k])
                states.s_minus[k] = before[1][k] + relaxation * (states.s_minus[k] - before[1][k])
    residual = _residual(weights, biases, y, cfg, states, first_input, coefficients)
    raise FixedPointNotFound(
        f"DP {kind} did not converge to {tol:g} within {max_sweeps} sweeps "
        f"(residual {residual:.3g}); "
        f"the fixed point may be unstable for variant={cfg.variant}, alpha={cfg.alpha}",
        reason="max_sweeps", sweeps=max_sweeps, residual=residual)


def dp_weight_update(states: DyadStates, beta: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Hebbian update direction ΔW_{k-1} = δ_k s̄_{k-1}ᵀ / β (batch-averaged) and Δb = δ_k / β.

    As β → 0 this is the negative loss gradient; multiply by the learning rate to step.
    """
    batch = states.s_plus[0].shape[0]
    scale = 1.0 / (beta * batch)
    dws, dbs = [], []
    for k in range(1, states.n_layers + 1):
        # Scale the (batch, n_k) difference rather than the (n_k, n_{k-1}) product: fewer
        # multiplications for every layer wider than the batch.
        delta = states.difference(k)
        delta *= scale
        dws.append(delta.T @ states.mean(k - 1))
        dbs.append(delta.sum(axis=0))
    return dws, dbs
