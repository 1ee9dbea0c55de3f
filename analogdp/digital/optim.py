"""Optimisers that step parameters along an update *direction*.

Every learning rule in the project (DP, EP, BP) produces a descent direction d ≈ −∇L (DP's
Hebbian δ s̄ᵀ/β, EP's contrast, BP's negative gradient), so the optimisers take d, not the
gradient, and apply the textbook rules to g = −d. Parameters are updated in place; the
optimiser state has the parameters' dtype, so float32 training stays float32.

The Adam step is one fused numba loop over each parameter array: written with numpy it takes a
dozen passes over memory and costs as much as a learning rule's whole backward pass, which
would hide the differences between DP, EP and BP that the benchmarks are there to show.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

OPTIMIZERS = ("sgd", "adam")


def _check_positive(name: str, value: float) -> float:
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


class SGD:
    """SGD with (heavy-ball) momentum: v ← μ v + d; θ ← θ + η v."""

    def __init__(self, params: list[np.ndarray], lr: float = 0.01, momentum: float = 0.9):
        self.params = params
        self.lr = _check_positive("lr", lr)
        if not (0.0 <= momentum < 1.0):
            raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.velocity = [np.zeros_like(p) for p in params] if momentum else None

    def step(self, directions: list[np.ndarray]) -> None:
        if self.velocity is None:
            for p, d in zip(self.params, directions):
                p += self.lr * d
            return
        for p, v, d in zip(self.params, self.velocity, directions):
            v *= self.momentum
            v += d
            p += self.lr * v


@njit(cache=True)
def _adam_kernel(param, first, second, direction, beta1, beta2, step_size, eps_hat):
    """In place on flat arrays: m ← β1 m + (1−β1) d, v ← β2 v + (1−β2) d², θ ← θ + a m/(√v + ε̂)."""
    for i in range(param.size):
        d = direction[i]
        m = beta1 * first[i] + (1.0 - beta1) * d
        v = beta2 * second[i] + (1.0 - beta2) * d * d
        first[i] = m
        second[i] = v
        param[i] += step_size * m / (math.sqrt(v) + eps_hat)


def _flat_views(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """1-D views that write through to ``arrays``, which must therefore be C-contiguous."""
    if not all(a.flags.c_contiguous and a.flags.writeable for a in arrays):
        raise ValueError("parameters must be writeable C-contiguous arrays to be updated in place")
    return [a.reshape(-1) for a in arrays]


class Adam:
    """Adam (Kingma & Ba 2015) on g = −d, with bias correction."""

    def __init__(self, params: list[np.ndarray], lr: float = 1e-3, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8):
        self.params = params
        self.lr = _check_positive("lr", lr)
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"Adam betas must lie in [0, 1), got {beta1!r}, {beta2!r}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), _check_positive("eps", eps)
        self.first_moment = [np.zeros_like(p) for p in params]
        self.second_moment = [np.zeros_like(p) for p in params]
        self._flat = list(zip(_flat_views(params), _flat_views(self.first_moment),
                              _flat_views(self.second_moment)))
        self.steps = 0

    def step(self, directions: list[np.ndarray]) -> None:
        self.steps += 1
        # The paper's efficient form: bias corrections folded into the step size and ε.
        # Python floats, so float32 parameters are not promoted to float64 temporaries.
        step_size = self.lr * (1.0 - self.beta2 ** self.steps) ** 0.5 / (1.0 - self.beta1 ** self.steps)
        eps_hat = self.eps * (1.0 - self.beta2 ** self.steps) ** 0.5
        for (p, m, v), d in zip(self._flat, directions):
            _adam_kernel(p, m, v, np.ascontiguousarray(d).reshape(-1), self.beta1, self.beta2,
                         step_size, eps_hat)


def make_optimizer(name: str, params: list[np.ndarray], lr: float, momentum: float = 0.9):
    """Build an optimiser by name ('sgd' uses ``momentum``)."""
    if name == "sgd":
        return SGD(params, lr=lr, momentum=momentum)
    if name == "adam":
        return Adam(params, lr=lr)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
