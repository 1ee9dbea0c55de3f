"""Scikit-learn-like classifiers trained by dual propagation, equilibrium propagation or BP.

All three share one training loop (``MLPClassifierBase``): the same initialisation, data order,
batches and optimiser, so that the only difference between runs with equal seeds is the
learning rule, which each subclass supplies as ``update_direction(x, targets)`` returning a
descent direction (≈ −∇L) and the network's (free) output for the batch.

Typical use::

    clf = DPClassifier(hidden_sizes=(256,), beta=0.05, lr=1e-3, epochs=10)
    clf.fit(x_train, y_train, x_val, y_val)
    clf.score(x_test, y_test)

Timing: ``history_[i]["seconds"]`` is the wall time of epoch i's batch loop only (learning
steps); evaluation of the validation set is excluded so the figure compares learning rules.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .bp import bp_update_direction
from .dp import DPConfig, dp_sweeps, dp_weight_update, feedback_coefficients, feedforward
from .ep import EPConfig, ep_predict, ep_update_direction
from .functional import ACTIVATIONS, LOSSES, check_choice, loss_value
from .mlp import INITS, MLP, init_mlp, resolve_dtype
from .optim import OPTIMIZERS, make_optimizer


# A mean training loss this many times that of an all-zero output is divergence, not learning.
DIVERGED_LOSS_FACTOR = 1e4


class TrainingDiverged(RuntimeError):
    """Parameters or loss became non-finite: the learning rate or β is too large."""


class MLPClassifierBase:
    """Shared training loop; subclasses define ``update_direction`` and maybe ``_forward_output``.

    Parameters
    ----------
    hidden_sizes: widths of the hidden layers; input and output widths come from the data.
    activation: hidden activation, 'hardsigmoid' (the circuit's clip(u, 0, 1)) or 'relu'.
    loss: 'ce' (softmax cross-entropy) or 'mse' (½‖s − onehot‖²) on the linear output.
    optimizer: 'adam' or 'sgd' (with ``momentum``); ``lr`` is its learning rate.
    batch_size, epochs: the last batch of an epoch may be smaller.
    seed: seeds both the initialisation and the data order.
    init: 'glorot' or 'kaiming' (see ``analogdp.digital.mlp``); dtype 'float64' or 'float32'.
    """

    algorithm = "base"

    def __init__(self, hidden_sizes=(256,), activation: str = "hardsigmoid", loss: str = "ce",
                 optimizer: str = "adam", lr: float = 1e-3, momentum: float = 0.9,
                 batch_size: int = 100, epochs: int = 10, seed: int = 0, init: str = "glorot",
                 dtype="float64"):
        self.hidden_sizes = tuple(int(n) for n in hidden_sizes)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.loss = check_choice("loss", loss, LOSSES)
        self.optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)
        self.lr = float(lr)
        self.momentum = float(momentum)
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if int(epochs) != epochs or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        if any(n < 1 for n in self.hidden_sizes):
            raise ValueError(f"hidden sizes must be positive, got {hidden_sizes!r}")
        self.batch_size = int(batch_size)
        self.epochs = int(epochs)
        self.seed = int(seed)
        self.init = check_choice("init", init, INITS)
        self.dtype = resolve_dtype(dtype)

    # -- set-up --------------------------------------------------------------------------

    def initialize(self, n_features: int, classes) -> "MLPClassifierBase":
        """Create the network and optimiser for ``n_features`` inputs and the given classes."""
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = int(n_features)
        sizes = (self.n_features_in_,) + self.hidden_sizes + (len(self.classes_),)
        self.network_: MLP = init_mlp(sizes, self.activation, self.seed, self.init, self.dtype)
        self.optimizer_ = make_optimizer(self.optimizer, self.network_.parameters, self.lr,
                                         self.momentum)
        self.history_: list[dict] = []
        self._order_rng = np.random.default_rng([self.seed, 1])
        return self

    def _check_inputs(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ValueError(f"expected inputs of shape (n, {self.n_features_in_}), got {x.shape}")
        return x

    def _targets(self, y) -> np.ndarray:
        """One-hot targets in the model's dtype; every label must be a known class."""
        y = np.asarray(y)
        index = np.searchsorted(self.classes_, y)
        index = np.clip(index, 0, len(self.classes_) - 1)
        if not np.array_equal(self.classes_[index], y):
            raise ValueError("labels contain classes not seen when the model was initialised")
        targets = np.zeros((len(y), len(self.classes_)), dtype=self.dtype)
        targets[np.arange(len(y)), index] = 1.0
        return targets

    # -- learning ------------------------------------------------------------------------

    def update_direction(self, x: np.ndarray, targets: np.ndarray):
        """(ΔW list, Δb list, batch output) with ΔW ≈ −∂L/∂W; defined by each algorithm."""
        raise NotImplementedError

    def train_step(self, x_batch: np.ndarray, targets_batch: np.ndarray) -> np.ndarray:
        """One learning step on a batch (inputs in the model's dtype, one-hot targets);
        returns the batch's output before the step."""
        dws, dbs, output = self.update_direction(x_batch, targets_batch)
        self.optimizer_.step(dws + dbs)
        return output

    def train_epoch(self, x, y, progress: Callable[[int], None] | None = None) -> dict:
        """One pass over (x, y) in a seeded random order; returns the epoch's record.

        ``progress(n)`` is called after each batch with the batch size (e.g. tqdm.update).
        The record holds the running mean training loss and accuracy (from each batch's
        output before its update) and the loop's wall time in seconds.
        """
        x = self._check_inputs(x)
        targets = self._targets(y)
        labels = targets.argmax(axis=1)
        order = self._order_rng.permutation(len(x))
        loss_sum, correct = 0.0, 0
        started = time.perf_counter()
        for start in range(0, len(x), self.batch_size):
            batch = order[start:start + self.batch_size]
            output = self.train_step(x[batch], targets[batch])
            loss_sum += float(np.sum(loss_value(self.loss, output, targets[batch])))
            correct += int(np.count_nonzero(output.argmax(axis=1) == labels[batch]))
            if progress is not None:
                progress(len(batch))
        seconds = time.perf_counter() - started
        if not np.isfinite(loss_sum) or not all(np.all(np.isfinite(p)) for p in self.network_.parameters):
            raise TrainingDiverged(
                f"{self.algorithm}: training diverged in epoch {len(self.history_) + 1} "
                f"(non-finite loss or weights); lower the learning rate or beta")
        chance = float(np.mean(loss_value(self.loss, np.zeros_like(targets[:1]), targets[:1])))
        if loss_sum / len(x) > DIVERGED_LOSS_FACTOR * max(chance, 1.0):
            raise TrainingDiverged(
                f"{self.algorithm}: training diverged in epoch {len(self.history_) + 1} (mean loss "
                f"{loss_sum / len(x):.3g}, over {DIVERGED_LOSS_FACTOR:g} times that of a network "
                f"that outputs zeros); lower the learning rate or beta")
        record = {"epoch": len(self.history_) + 1, "seconds": seconds,
                  "train_loss_running": loss_sum / len(x),
                  "train_accuracy_running": correct / len(x)}
        self.history_.append(record)
        return record

    def fit(self, x, y, x_val=None, y_val=None,
            on_epoch_start: Callable[[int], Callable[[int], None] | None] | None = None,
            on_epoch_end: Callable[[dict], None] | None = None) -> "MLPClassifierBase":
        """Train for ``epochs`` epochs from a fresh initialisation.

        ``on_epoch_start(epoch)`` may return a per-batch progress callback; ``on_epoch_end``
        receives each epoch's record (with ``val_accuracy`` when validation data is given).
        """
        x = np.asarray(x, dtype=self.dtype)
        self.initialize(x.shape[1], np.unique(y))
        for epoch in range(1, self.epochs + 1):
            progress = on_epoch_start(epoch) if on_epoch_start else None
            record = self.train_epoch(x, y, progress)
            if x_val is not None and len(x_val):
                record["val_accuracy"] = self.score(x_val, y_val)
            if on_epoch_end:
                on_epoch_end(record)
        return self

    # -- inference -----------------------------------------------------------------------

    def _forward_output(self, x: np.ndarray) -> np.ndarray:
        """The network's output (logits) for a batch; feed-forward unless overridden."""
        net = self.network_
        return feedforward(net.weights, net.biases, x, self.activation)[-1]

    def decision_function(self, x, batch_size: int = 2000) -> np.ndarray:
        """Output-layer states (logits) for every row of x, computed in chunks."""
        x = self._check_inputs(x)
        chunks = [self._forward_output(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.classes_)), self.dtype)

    def predict(self, x) -> np.ndarray:
        return self.classes_[self.decision_function(x).argmax(axis=1)]

    def score(self, x, y) -> float:
        """Classification accuracy in [0, 1]."""
        return float(np.mean(self.predict(x) == np.asarray(y)))

    def mean_loss(self, x, y) -> float:
        return float(np.mean(loss_value(self.loss, self.decision_function(x), self._targets(y))))


class BPClassifier(MLPClassifierBase):
    """The MLP trained by plain back-propagation (the baseline)."""

    algorithm = "bp"

    def update_direction(self, x, targets):
        net = self.network_
        return bp_update_direction(net.weights, net.biases, x, targets, self.activation, self.loss)


class DPClassifier(MLPClassifierBase):
    """The MLP trained by dual propagation (DESIGN §2.1).

    Extra parameters: ``variant`` ('dp' or 'dpT'), ``alpha`` in [0, 1], ``beta`` > 0 (the
    output nudge strength; the update is divided by it), ``sweeps`` ≥ 1 (closed-form layerwise
    sweeps per example; one is exact for a single hidden layer). Inference is the feed-forward
    pass, which is DP's state at β → 0.
    """

    algorithm = "dp"

    def __init__(self, hidden_sizes=(256,), variant: str = "dp", alpha: float = 0.5,
                 beta: float = 0.05, sweeps: int = 1, **kwargs):
        super().__init__(hidden_sizes, **kwargs)
        feedback_coefficients(variant, alpha)
        if int(sweeps) != sweeps or sweeps < 1:
            raise ValueError(f"sweeps must be a positive integer, got {sweeps!r}")
        self.variant, self.alpha, self.beta, self.sweeps = variant, float(alpha), float(beta), int(sweeps)
        self.config = DPConfig(variant=variant, alpha=self.alpha, beta=self.beta,
                               activation=self.activation, loss=self.loss)

    def update_direction(self, x, targets):
        net = self.network_
        states = dp_sweeps(net.weights, net.biases, x, targets, self.config, self.sweeps)
        dws, dbs = dp_weight_update(states, self.beta)
        # The un-nudged output a_L = c⁻ s⁺_L + c⁺ s⁻_L (since s± = a ∓ c± g and c⁺ + c⁻ = 1).
        c_plus, c_minus = feedback_coefficients(self.variant, self.alpha)
        output = c_minus * states.s_plus[-1] + c_plus * states.s_minus[-1]
        return dws, dbs, output


class EPClassifier(MLPClassifierBase):
    """The MLP as a layered Hopfield network trained by equilibrium propagation (DESIGN §2.2).

    Extra parameters: ``beta`` in (0, 1), ``free_steps``, ``nudged_steps`` (even/odd
    relaxation steps), ``centered`` (±β nudged phases). Inference is a free phase of
    ``free_steps`` steps, so it differs from the feed-forward pass of DP/BP.
    """

    algorithm = "ep"

    def __init__(self, hidden_sizes=(256,), beta: float = 0.2, free_steps: int = 30,
                 nudged_steps: int = 10, centered: bool = True, **kwargs):
        super().__init__(hidden_sizes, **kwargs)
        self.config = EPConfig(activation=self.activation, loss=self.loss, beta=float(beta),
                               free_steps=int(free_steps), nudged_steps=int(nudged_steps),
                               centered=bool(centered))
        self.beta, self.free_steps = self.config.beta, self.config.free_steps
        self.nudged_steps, self.centered = self.config.nudged_steps, self.config.centered

    def update_direction(self, x, targets):
        net = self.network_
        return ep_update_direction(net.weights, net.biases, x, targets, self.config)

    def _forward_output(self, x):
        net = self.network_
        return ep_predict(net.weights, net.biases, x, self.config)


CLASSIFIERS = {"dp": DPClassifier, "ep": EPClassifier, "bp": BPClassifier}
