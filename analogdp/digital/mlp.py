"""The multilayer perceptron shared by DP, EP and BP: layer sizes, parameters and their init.

Conventions (as everywhere in the project): states are batch-first (batch, n); W_k maps layer k
to layer k+1 and has shape (n_{k+1}, n_k); the bottom-up input is ``a = s @ W.T + b``; hidden
layers apply the activation f, the output layer is linear.

Initialisation (seeded, reproducible):
- ``glorot`` (default): W ~ U(-r, r) with r = sqrt(6 / (n_in + n_out)) (Glorot & Bengio 2010).
  It keeps pre-activations of order one for the hard sigmoid, whose linear range is [0, 1].
- ``kaiming``: r = sqrt(6 / n_in) (He et al. 2015), the usual choice for ReLU.
Biases start at zero. The three algorithms start from identical parameters for equal seeds,
so their comparisons differ only in the learning rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .functional import ACTIVATIONS, check_choice

INITS = ("glorot", "kaiming")
DTYPES = {"float64": np.float64, "float32": np.float32}


def parse_layer_sizes(text: str) -> tuple[int, ...]:
    """Parse '784-256-10' into (784, 256, 10); at least input and output, all positive."""
    if not isinstance(text, str) or not re.fullmatch(r"\s*\d+(\s*-\s*\d+)+\s*", text):
        raise ValueError(
            f"layer sizes must look like 784-256-10 (at least two positive integers "
            f"joined by '-'), got {text!r}")
    sizes = tuple(int(part) for part in text.split("-"))
    if any(size <= 0 for size in sizes):
        raise ValueError(f"every layer size must be positive, got {text!r}")
    return sizes


def resolve_dtype(dtype) -> np.dtype:
    """Accept 'float32'/'float64' or a numpy float dtype; other types are refused."""
    if isinstance(dtype, str):
        check_choice("dtype", dtype, tuple(DTYPES))
        dtype = DTYPES[dtype]
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


@dataclass
class MLP:
    """Parameters of a layered network: ``weights[k]`` (n_{k+1}, n_k) and ``biases[k]`` (n_{k+1},)."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    activation: str = "hardsigmoid"

    def __post_init__(self):
        check_choice("activation", self.activation, ACTIVATIONS)
        if len(self.weights) != len(self.biases) or not self.weights:
            raise ValueError("an MLP needs one bias vector per weight matrix, and at least one layer")
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            if w.ndim != 2 or b.shape != (w.shape[0],):
                raise ValueError(f"layer {k}: weight {w.shape} and bias {b.shape} do not match")
            if k and w.shape[1] != self.weights[k - 1].shape[0]:
                raise ValueError(f"layer {k}: expects {w.shape[1]} inputs, "
                                 f"previous layer has {self.weights[k - 1].shape[0]} units")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.weights[0].shape[1],) + tuple(w.shape[0] for w in self.weights)

    @property
    def dtype(self) -> np.dtype:
        return self.weights[0].dtype

    @property
    def parameters(self) -> list[np.ndarray]:
        """Weights then biases, the order in which optimisers see them."""
        return self.weights + self.biases

    def copy(self) -> "MLP":
        return MLP([w.copy() for w in self.weights], [b.copy() for b in self.biases],
                   self.activation)


def init_mlp(layer_sizes, activation: str = "hardsigmoid", seed: int = 0,
             init: str = "glorot", dtype="float64") -> MLP:
    """A freshly initialised MLP (see the module docstring for the distributions)."""
    if isinstance(layer_sizes, str):
        layer_sizes = parse_layer_sizes(layer_sizes)
    layer_sizes = tuple(int(n) for n in layer_sizes)
    if len(layer_sizes) < 2 or any(n <= 0 for n in layer_sizes):
        raise ValueError(f"need at least an input and an output size, all positive; got {layer_sizes}")
    check_choice("init", init, INITS)
    dtype = resolve_dtype(dtype)
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        bound = np.sqrt(6.0 / (n_in + n_out)) if init == "glorot" else np.sqrt(6.0 / n_in)
        weights.append(rng.uniform(-bound, bound, size=(n_out, n_in)).astype(dtype))
        biases.append(np.zeros(n_out, dtype=dtype))
    return MLP(weights, biases, activation)
