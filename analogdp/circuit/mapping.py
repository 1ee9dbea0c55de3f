"""Signed weights to differential conductance pairs and back.

A weight matrix W_k (shape n_{k+1} × n_k) lives on crossbar k in physical orientation: rows are
the n_k inputs (plus one bias row held at V_r when the layer has a bias), columns are the
n_{k+1} outputs, each realised by a pair of devices (G⁺, G⁻). Both devices rest at G_min and
one of them carries the weight:

    G⁺ = G_min + G_u·max(W, 0),   G⁻ = G_min + G_u·max(−W, 0),   clipped to [G_min, G_max],

so that W = (G⁺ − G⁻)/G_u exactly for |W| ≤ w_max. Larger weights are clipped; the weights the
hardware realises are always read back from the conductances.
"""

from __future__ import annotations

import numpy as np

from .params import DeviceParams


def weights_to_conductances(weight: np.ndarray, bias: np.ndarray | None,
                            device: DeviceParams) -> tuple[np.ndarray, np.ndarray]:
    """Conductance pair arrays of shape (rows, columns) for W (n_out × n_in) and optional bias."""
    weight = np.asarray(weight, dtype=np.float64)
    physical = weight.T
    if bias is not None:
        physical = np.vstack([physical, np.asarray(bias, dtype=np.float64)[None, :]])
    if not np.all(np.isfinite(physical)):
        raise ValueError("weights must be finite (found NaN or inf in a weight or bias)")
    g_pos = device.g_min_s + device.g_unit_s * np.maximum(physical, 0.0)
    g_neg = device.g_min_s + device.g_unit_s * np.maximum(-physical, 0.0)
    return (np.clip(g_pos, device.g_min_s, device.g_max_s),
            np.clip(g_neg, device.g_min_s, device.g_max_s))


def conductances_to_weights(g_pos_s: np.ndarray, g_neg_s: np.ndarray, has_bias_row: bool,
                            device: DeviceParams) -> tuple[np.ndarray, np.ndarray | None]:
    """The (W, b) a conductance pair array realises; inverse of :func:`weights_to_conductances`."""
    physical = (g_pos_s - g_neg_s) / device.g_unit_s
    if has_bias_row:
        return physical[:-1].T.copy(), physical[-1].copy()
    return physical.T.copy(), None
