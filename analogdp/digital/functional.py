"""Activations and losses shared by every algorithm (digital and circuit).

Batched convention: a state has shape (batch, n); a weight matrix W_k maps layer k to k+1 and
has shape (n_{k+1}, n_k), so the bottom-up input is ``a = s @ W.T + b``.
"""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ("hardsigmoid", "relu")
LOSSES = ("mse", "ce")


def activation(name: str, u: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Hidden activation f. The hard sigmoid clip(u, 0, 1) is what the dyad circuit realises.

    ``out`` (may be ``u`` itself) receives the result, sparing an allocation in hot loops.
    """
    if name == "hardsigmoid":
        return np.clip(u, 0.0, 1.0, out=out)
    if name == "relu":
        return np.maximum(u, 0.0, out=out)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def activation_derivative(name: str, u: np.ndarray) -> np.ndarray:
    if name == "hardsigmoid":
        return ((u > 0.0) & (u < 1.0)).astype(u.dtype)
    if name == "relu":
        return (u > 0.0).astype(u.dtype)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def loss_value(name: str, s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-example loss: squared error 1/2||s-y||^2, or softmax cross-entropy with one-hot y."""
    if name == "mse":
        return 0.5 * np.sum((s - y) ** 2, axis=-1)
    if name == "ce":
        shifted = s - s.max(axis=-1, keepdims=True)
        log_z = np.log(np.exp(shifted).sum(axis=-1))
        return -np.sum(y * (shifted - log_z[..., None]), axis=-1)
    raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")


def loss_gradient(name: str, s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d loss / d s for each example (not averaged over the batch)."""
    if name == "mse":
        return s - y
    if name == "ce":
        return softmax(s) - y
    raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value
