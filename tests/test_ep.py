"""Equilibrium propagation: relaxation, fixed points, and the update against the true gradient."""

import numpy as np
import pytest
from _problems import random_batch

from analogdp.digital.ep import (
    EPConfig,
    ep_energy,
    ep_free_fixed_point,
    ep_free_loss,
    ep_nudged_fixed_point,
    ep_relax,
    ep_update_direction,
    ep_weight_update,
    ep_zero_states,
)
from analogdp.digital.functional import activation, loss_value
from analogdp.digital.mlp import init_mlp


def random_problem(sizes, loss, seed, batch=5):
    """Weak couplings and mid-range biases: a unique equilibrium with many unclipped units."""
    rng = np.random.default_rng(seed)
    net = init_mlp(sizes, seed=seed)
    for w in net.weights:
        w *= 0.5
    for b in net.biases:
        b[:] = rng.uniform(0.3, 0.5, size=b.shape)
    x, y = random_batch(rng, sizes, loss, batch)
    return net, x, y


def flat(arrays):
    return np.concatenate([a.ravel() for a in arrays])


def free_loss_gradient(net, x, y, cfg, step=1e-6):
    """Central differences of the loss at the free equilibrium, for every weight and bias."""
    grads = []
    for p in net.weights + net.biases:
        g = np.zeros_like(p)
        for index in np.ndindex(p.shape):
            original = p[index]
            p[index] = original + step
            up = ep_free_loss(net.weights, net.biases, x, y, cfg)
            p[index] = original - step
            down = ep_free_loss(net.weights, net.biases, x, y, cfg)
            p[index] = original
            g[index] = (up - down) / (2 * step)
        grads.append(g)
    return flat(grads)


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("sizes", [(5, 4, 3), (5, 6, 4, 3)])
def test_ep_update_approaches_the_free_equilibrium_gradient(sizes, loss):
    net, x, y = random_problem(sizes, loss, seed=1)
    cfg = EPConfig(loss=loss)
    free = ep_free_fixed_point(net.weights, net.biases, x, cfg, tol=1e-14)
    hidden = np.concatenate([s.ravel() for s in free[1:-1]])
    assert np.mean((hidden > 0) & (hidden < 1)) > 0.4  # the kinks of the clip matter here
    gradient = free_loss_gradient(net, x, y, cfg)

    one_sided_errors, centered_errors = [], []
    for beta in (0.03, 0.01, 0.003):
        upper = ep_nudged_fixed_point(net.weights, net.biases, x, y, cfg, beta, free, tol=1e-14)
        lower = ep_nudged_fixed_point(net.weights, net.biases, x, y, cfg, -beta, free, tol=1e-14)
        one_sided = flat(sum(ep_weight_update(free, upper, beta), []))
        centered = flat(sum(ep_weight_update(lower, upper, 2 * beta), []))
        # Both are descent directions: they approach −∇L.
        one_sided_errors.append(np.linalg.norm(one_sided + gradient) / np.linalg.norm(gradient))
        centered_errors.append(np.linalg.norm(centered + gradient) / np.linalg.norm(gradient))

    assert one_sided_errors[0] > one_sided_errors[1] > one_sided_errors[2]
    assert centered_errors[0] > centered_errors[1] > centered_errors[2]
    assert all(c < o for c, o in zip(centered_errors, one_sided_errors))
    assert one_sided_errors[-1] < 1e-2 and centered_errors[-1] < 1e-4
    # One-sided EP is biased at first order in β, centered EP at second order.
    assert one_sided_errors[1] / one_sided_errors[2] > 2.5
    assert centered_errors[1] / centered_errors[2] > 6.0


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_fixed_points_satisfy_the_layer_equations(loss):
    net, x, y = random_problem((5, 6, 4, 3), loss, seed=2)
    cfg = EPConfig(loss=loss)
    w, b = net.weights, net.biases
    beta = 0.4
    free = ep_free_fixed_point(w, b, x, cfg, tol=1e-13)
    nudged = ep_nudged_fixed_point(w, b, x, y, cfg, beta, free, tol=1e-13)
    for states, nudge in ((free, 0.0), (nudged, beta)):
        for k in (1, 2):
            drive = states[k - 1] @ w[k - 1].T + b[k - 1] + states[k + 1] @ w[k]
            np.testing.assert_allclose(states[k], activation("hardsigmoid", drive), atol=1e-12)
        a_out = states[2] @ w[2].T + b[2]
        if nudge == 0.0:
            np.testing.assert_allclose(states[3], a_out, atol=1e-12)
        elif loss == "mse":
            np.testing.assert_allclose(states[3], (a_out + beta * y) / (1 + beta), atol=1e-12)
        else:
            shifted = states[3] - states[3].max(axis=1, keepdims=True)
            softmax = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
            np.testing.assert_allclose(states[3], a_out - beta * (softmax - y), atol=1e-12)
    # s^β minimises E + βC and s⁰ minimises E, so a positive nudge lowers the cost C.
    assert loss_value(loss, nudged[3], y).sum() < loss_value(loss, free[3], y).sum()


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("beta", [0.0, 0.5, -0.5])
def test_relaxation_steps_never_raise_the_energy(loss, beta):
    net, x, y = random_problem((6, 8, 7, 4), loss, seed=3)
    for w in net.weights:
        w *= 4.0  # strong coupling: a non-trivial descent
    cfg = EPConfig(loss=loss)
    states = ep_zero_states(net.weights, x)
    energies = [ep_energy(net.weights, net.biases, states, y, beta, loss)]
    for _ in range(30):
        states = ep_relax(net.weights, net.biases, x, y, cfg, beta, steps=1, start_states=states)
        energies.append(ep_energy(net.weights, net.biases, states, y, beta, loss))
    energies = np.array(energies)
    assert np.all(np.diff(energies, axis=0) <= 1e-12)
    assert np.all(energies[-1] < energies[1])


def test_free_relaxation_from_zero_starts_with_the_feedforward_pass():
    net, x, _ = random_problem((5, 4, 3), "mse", seed=4)
    states = ep_relax(net.weights, net.biases, x, None, EPConfig(), 0.0, steps=1)
    hidden = activation("hardsigmoid", x @ net.weights[0].T + net.biases[0])
    np.testing.assert_allclose(states[1], hidden)
    np.testing.assert_allclose(states[2], hidden @ net.weights[1].T + net.biases[1])


def test_unconverged_phases_raise():
    net, x, y = random_problem((5, 6, 4, 3), "mse", seed=5)
    cfg = EPConfig()
    with pytest.raises(RuntimeError, match="did not converge"):
        ep_free_fixed_point(net.weights, net.biases, x, cfg, tol=1e-14, max_iters=2)
    with pytest.raises(RuntimeError, match="did not converge"):
        ep_nudged_fixed_point(net.weights, net.biases, x, y, cfg, 0.5, None, tol=1e-14, max_iters=2)


def test_update_direction_with_long_phases_matches_the_fixed_point_contrast():
    net, x, y = random_problem((5, 6, 4, 3), "ce", seed=6)
    cfg = EPConfig(loss="ce", beta=0.1, free_steps=400, nudged_steps=400, centered=True,
                   output_iterations=8)
    dws, dbs, output = ep_update_direction(net.weights, net.biases, x, y, cfg)
    free = ep_free_fixed_point(net.weights, net.biases, x, cfg, tol=1e-14)
    upper = ep_nudged_fixed_point(net.weights, net.biases, x, y, cfg, 0.1, free, tol=1e-14)
    lower = ep_nudged_fixed_point(net.weights, net.biases, x, y, cfg, -0.1, free, tol=1e-14)
    expected = ep_weight_update(lower, upper, 0.2)
    np.testing.assert_allclose(flat(dws + dbs), flat(sum(expected, [])), atol=1e-10)
    np.testing.assert_allclose(output, free[-1], atol=1e-12)


def test_weight_update_shortcut_for_the_clamped_input():
    rng = np.random.default_rng(7)
    x = rng.random((4, 5))
    lower = [x, rng.random((4, 3)), rng.random((4, 2))]
    upper = [x, rng.random((4, 3)), rng.random((4, 2))]
    dws, dbs = ep_weight_update(lower, upper, 0.2)
    for k in range(2):
        expected = (upper[k + 1].T @ upper[k] - lower[k + 1].T @ lower[k]) / (0.2 * 4)
        np.testing.assert_allclose(dws[k], expected, atol=1e-14)
        np.testing.assert_allclose(dbs[k], (upper[k + 1] - lower[k + 1]).sum(0) / 0.8, atol=1e-14)


@pytest.mark.parametrize("bad", [dict(beta=1.0), dict(beta=0.0), dict(beta=float("nan")),
                                 dict(free_steps=0), dict(nudged_steps=1.5),
                                 dict(activation="tanh")])
def test_config_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        EPConfig(**bad)


def test_float32_relaxation_stays_float32():
    net = init_mlp((5, 4, 3), dtype="float32")
    x = np.random.default_rng(0).random((4, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    dws, dbs, output = ep_update_direction(net.weights, net.biases, x, y, EPConfig(loss="ce"))
    assert output.dtype == np.float32 and all(d.dtype == np.float32 for d in dws + dbs)
