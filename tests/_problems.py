"""Random inputs and targets shared by the digital-algorithm tests."""

import numpy as np


def random_batch(rng: np.random.Generator, sizes, loss: str, batch: int):
    """Inputs in [0, 1] and targets: real-valued for squared error, one-hot for cross-entropy."""
    x = rng.uniform(0.0, 1.0, size=(batch, sizes[0]))
    if loss == "mse":
        y = rng.normal(size=(batch, sizes[-1]))
    else:
        y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], size=batch)]
    return x, y
