"""Back-propagation on the layered MLP: the accuracy and runtime baseline (DESIGN §2.3).

The gradient is of the batch-mean loss, L = (1/B) Σ_b ℓ(s_L,b, y_b), through the feed-forward
network a_k = W_{k-1} s_{k-1} + b_{k-1}, s_k = f(a_k) (hidden), s_L = a_L (linear output).
"""

from __future__ import annotations

import numpy as np

from .dp import forward_with_inputs
from .functional import activation_derivative, loss_gradient, loss_value


def _backprop(weights, biases, x, y, activation_name: str, loss: str, scale: float):
    """Products of ``scale`` times the gradient, plus the feed-forward activities.

    Scaling the output error once (instead of every gradient afterwards) lets the same pass
    return the gradient (scale 1/B) or the descent direction (scale −1/B) at no extra cost.
    """
    activities, inputs = forward_with_inputs(weights, biases, x, activation_name)
    n_layers = len(weights)
    delta = loss_gradient(loss, activities[n_layers], y)
    delta *= scale
    dws: list[np.ndarray] = [None] * n_layers  # type: ignore[list-item]
    dbs: list[np.ndarray] = [None] * n_layers  # type: ignore[list-item]
    for k in range(n_layers, 0, -1):
        dws[k - 1] = delta.T @ activities[k - 1]
        dbs[k - 1] = delta.sum(axis=0)
        if k > 1:
            delta = delta @ weights[k - 1]
            delta *= activation_derivative(activation_name, inputs[k - 1])
    return dws, dbs, activities


def bp_gradients(weights, biases, x, y, activation_name: str = "hardsigmoid", loss: str = "mse"
                 ) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """(∂L/∂W_k, ∂L/∂b_k, L) for the batch-mean loss L at (x, y); y one-hot or targets."""
    batch = np.shape(x)[0]
    dws, dbs, activities = _backprop(weights, biases, x, y, activation_name, loss, 1.0 / batch)
    mean_loss = float(np.mean(loss_value(loss, activities[-1], y)))
    return dws, dbs, mean_loss


def bp_update_direction(weights, biases, x, y, activation_name: str = "hardsigmoid",
                        loss: str = "mse") -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Descent direction (−∂L/∂W_k, −∂L/∂b_k) and the network's output for the batch.

    Same sign convention as ``dp_weight_update`` and ``ep_weight_update``: add lr × direction.
    """
    batch = np.shape(x)[0]
    dws, dbs, activities = _backprop(weights, biases, x, y, activation_name, loss, -1.0 / batch)
    return dws, dbs, activities[-1]
