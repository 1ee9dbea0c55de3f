"""Dual propagation: the update is the BP gradient step as β → 0, and sweeps reach the fixed point."""

import numpy as np
import pytest
from _problems import random_batch

from analogdp.digital.bp import bp_gradients
from analogdp.digital.dp import (
    DPConfig,
    DyadStates,
    FixedPointNotFound,
    _update_layer,
    dp_fixed_point,
    dp_residual,
    dp_sweeps,
    dp_weight_update,
    feedforward,
)
from analogdp.digital.mlp import init_mlp

VARIANT_ALPHAS = [("dp", 0.5), ("dpT", 0.0), ("dpT", 0.3), ("dpT", 1.0)]
HIDDEN_LAYOUTS = {1: (7, 6, 4), 2: (7, 6, 5, 4), 3: (7, 6, 5, 6, 4)}


def random_problem(sizes, loss, seed, batch=8):
    """A random network whose hidden units mostly sit inside the hard sigmoid's linear range."""
    rng = np.random.default_rng(seed)
    net = init_mlp(sizes, seed=seed)
    for b in net.biases:
        b[:] = rng.uniform(0.2, 0.6, size=b.shape)
    x, y = random_batch(rng, sizes, loss, batch)
    return net, x, y


def cosine(a_list, b_list):
    a = np.concatenate([a.ravel() for a in a_list])
    b = np.concatenate([b.ravel() for b in b_list])
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("variant,alpha", VARIANT_ALPHAS)
@pytest.mark.parametrize("hidden_layers", [1, 2, 3])
def test_dp_update_aligns_with_bp_gradient_at_small_beta(hidden_layers, variant, alpha, loss):
    sizes = HIDDEN_LAYOUTS[hidden_layers]
    net, x, y = random_problem(sizes, loss, seed=10 * hidden_layers + int(10 * alpha))
    cfg = DPConfig(variant=variant, alpha=alpha, beta=1e-3, activation="hardsigmoid", loss=loss)
    grad_w, grad_b, _ = bp_gradients(net.weights, net.biases, x, y, "hardsigmoid", loss)
    descent = [-g for g in grad_w + grad_b]

    one_sweep = dp_sweeps(net.weights, net.biases, x, y, cfg, sweeps=1)
    fixed_point = dp_fixed_point(net.weights, net.biases, x, y, cfg, tol=1e-14)
    for states in (one_sweep, fixed_point):
        dws, dbs = dp_weight_update(states, cfg.beta)
        assert cosine(dws + dbs, descent) >= 0.999
        # Not only the direction: the scale is the gradient's too (update / β → −∇L).
        norm_ratio = np.linalg.norm(np.concatenate([d.ravel() for d in dws + dbs])) / \
            np.linalg.norm(np.concatenate([d.ravel() for d in descent]))
        assert norm_ratio == pytest.approx(1.0, abs=0.02)


def test_dp_update_departs_from_the_gradient_at_large_beta():
    """The β → 0 limit is a real limit: a strong nudge (through the clip) bends the update."""
    net, x, y = random_problem(HIDDEN_LAYOUTS[2], "mse", seed=4)
    y = 5 * y
    grad_w, grad_b, _ = bp_gradients(net.weights, net.biases, x, y, "hardsigmoid", "mse")
    descent = [-g for g in grad_w + grad_b]
    cosines = []
    for beta in (1e-3, 1.0):
        cfg = DPConfig(beta=beta, loss="mse")
        dws, dbs = dp_weight_update(dp_sweeps(net.weights, net.biases, x, y, cfg), beta)
        cosines.append(cosine(dws + dbs, descent))
    assert cosines[0] > 0.999 > cosines[1]


@pytest.mark.parametrize("variant,alpha", VARIANT_ALPHAS)
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_repeated_sweeps_satisfy_the_dp_equations(variant, alpha, loss):
    net, x, y = random_problem(HIDDEN_LAYOUTS[3], loss, seed=7)
    cfg = DPConfig(variant=variant, alpha=alpha, beta=0.5, loss=loss)
    first = dp_sweeps(net.weights, net.biases, x, y, cfg, sweeps=1)
    first_residual = dp_residual(net.weights, net.biases, x, y, cfg, first)
    if variant == "dpT" and alpha in (0.0, 1.0):
        # The mean is then the compartment that receives no feedback, s̄ = f(a): the means stay
        # those of the forward pass, so the single top-down sweep is already exact.
        assert first_residual <= 1e-12
    else:
        assert first_residual > 1e-6  # one sweep is not the fixed point: the test has teeth
    converged = dp_sweeps(net.weights, net.biases, x, y, cfg, sweeps=60)
    residual = dp_residual(net.weights, net.biases, x, y, cfg, converged)
    assert residual <= 1e-10


def test_residual_checks_every_table_entry():
    """dp_residual must notice a wrong compartment anywhere (it is what the circuit is held to)."""
    net, x, y = random_problem(HIDDEN_LAYOUTS[2], "mse", seed=2)
    cfg = DPConfig(beta=0.3)
    states = dp_fixed_point(net.weights, net.biases, x, y, cfg, tol=1e-13)
    assert dp_residual(net.weights, net.biases, x, y, cfg, states) <= 1e-13
    for k in range(1, 4):
        for compartment in ("s_plus", "s_minus"):
            broken = DyadStates(list(states.s_plus), list(states.s_minus), cfg.alpha)
            getattr(broken, compartment)[k] = getattr(states, compartment)[k] + 1e-6
            assert dp_residual(net.weights, net.biases, x, y, cfg, broken) > 1e-8


def reference_sweeps(weights, biases, x, y, cfg, sweeps):
    """dp_sweeps written the plain way (fresh copies, every a_k recomputed)."""
    ff = feedforward(weights, biases, x, cfg.activation)
    states = DyadStates([f.copy() for f in ff], [f.copy() for f in ff], cfg.alpha)
    n = len(weights)
    _update_layer(weights, biases, states, y, cfg, n)
    for sweep in range(sweeps):
        for k in range(n - 1, 0, -1):
            _update_layer(weights, biases, states, y, cfg, k)
        if sweep < sweeps - 1:
            for k in range(1, n + 1):
                _update_layer(weights, biases, states, y, cfg, k)
    return states


@pytest.mark.parametrize("sweeps", [1, 3])
@pytest.mark.parametrize("variant,alpha", [("dp", 0.5), ("dpT", 0.3)])
def test_cached_sweeps_equal_the_plain_computation(sweeps, variant, alpha):
    net, x, y = random_problem(HIDDEN_LAYOUTS[3], "ce", seed=5)
    cfg = DPConfig(variant=variant, alpha=alpha, beta=0.2, loss="ce")
    fast = dp_sweeps(net.weights, net.biases, x, y, cfg, sweeps)
    slow = reference_sweeps(net.weights, net.biases, x, y, cfg, sweeps)
    for k in range(len(net.weights) + 1):
        np.testing.assert_allclose(fast.s_plus[k], slow.s_plus[k], rtol=0, atol=1e-14)
        np.testing.assert_allclose(fast.s_minus[k], slow.s_minus[k], rtol=0, atol=1e-14)


def test_sweeps_leave_the_input_alone_and_keep_float32():
    net = init_mlp((5, 4, 3), dtype="float32")
    x = np.random.default_rng(0).random((4, 5)).astype(np.float32)
    x_before = x.copy()
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    states = dp_sweeps(net.weights, net.biases, x, y, DPConfig(loss="ce"), sweeps=2)
    assert all(s.dtype == np.float32 for s in states.s_plus + states.s_minus)
    assert all(d.dtype == np.float32 for d in sum(dp_weight_update(states, 0.1), []))
    with pytest.raises(ValueError):
        states.s_plus[0][0, 0] = 1.0  # the clamped input is a read-only view
    np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("bad", [dict(alpha=1.5), dict(beta=0.0), dict(beta=float("nan")),
                                 dict(variant="dpx"), dict(loss="l1")])
def test_config_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        DPConfig(**bad)


def test_sweeps_that_cycle_stop_at_the_stall_limit_and_converging_ones_do_not():
    """Large weights (hidden dyads straddling the rails) leave the sweeps cycling with an O(1)
    residual: the stall limit ends them after ~stall_sweeps sweeps, and they really do not
    converge within 3000 either. Converging sweeps give the same states with the limit on."""
    sizes = (7, 6, 4)
    net = init_mlp(sizes, seed=0)
    x, y = random_batch(np.random.default_rng(0), sizes, "mse", 1)
    cfg = DPConfig(beta=0.5)
    large = [4.0 * w for w in net.weights]
    with pytest.raises(FixedPointNotFound) as stalled:
        dp_fixed_point(large, net.biases, x, y, cfg, stall_sweeps=100)
    assert stalled.value.reason == "stalled"
    assert 100 <= stalled.value.sweeps < 200 and stalled.value.residual > 0.1
    with pytest.raises(FixedPointNotFound) as exhausted:
        dp_fixed_point(large, net.biases, x, y, cfg, max_sweeps=3000)
    assert exhausted.value.reason == "max_sweeps" and exhausted.value.residual > 0.1
    with pytest.raises(ValueError, match="stall_sweeps"):
        dp_fixed_point(net.weights, net.biases, x, y, cfg, stall_sweeps=0)

    plain = dp_fixed_point(net.weights, net.biases, x, y, cfg)
    limited = dp_fixed_point(net.weights, net.biases, x, y, cfg, stall_sweeps=100)
    for k in range(1, 3):
        np.testing.assert_array_equal(plain.s_plus[k], limited.s_plus[k])
        np.testing.assert_array_equal(plain.s_minus[k], limited.s_minus[k])


@pytest.mark.parametrize("variant,alpha", [("dp", 0.5), ("dpT", 0.3)])
def test_fixed_point_started_near_it_is_the_same_fixed_point(variant, alpha):
    """A start near the fixed point (a settled circuit's state) reaches the same fixed point as
    the sweeps from the feed-forward pass, and a start with the wrong depth is refused."""
    net, x, y = random_problem(HIDDEN_LAYOUTS[2], "mse", seed=11)
    cfg = DPConfig(variant=variant, alpha=alpha, beta=0.5)
    cold = dp_fixed_point(net.weights, net.biases, x, y, cfg)
    rng = np.random.default_rng(3)
    near = DyadStates([np.full_like(x, 7.0)] + [s + 1e-6 * rng.standard_normal(s.shape) for s in cold.s_plus[1:]],
                      [np.full_like(x, 7.0)] + [s + 1e-6 * rng.standard_normal(s.shape) for s in cold.s_minus[1:]],
                      alpha)
    warm = dp_fixed_point(net.weights, net.biases, x, y, cfg, start=near)
    assert warm.s_plus[0] is warm.s_minus[0] and np.array_equal(warm.s_plus[0], x)  # layer 0 is x, not the start's
    for k in range(1, cold.n_layers + 1):
        assert np.max(np.abs(warm.s_plus[k] - near.s_plus[k])) > 1e-8  # the sweeps moved it
        np.testing.assert_allclose(warm.s_plus[k], cold.s_plus[k], rtol=0, atol=1e-12)
        np.testing.assert_allclose(warm.s_minus[k], cold.s_minus[k], rtol=0, atol=1e-12)
    shallow = DyadStates(near.s_plus[:2], near.s_minus[:2], alpha)
    with pytest.raises(ValueError, match="layers"):
        dp_fixed_point(net.weights, net.biases, x, y, cfg, start=shallow)


def test_relaxed_sweeps_find_a_fixed_point_that_repels_the_plain_ones():
    """Large weights can give the DP equations a fixed point from which the plain sweeps drift
    away into a cycle (a mode with gain below −1): started 1e-9 off it, they stall; with
    ``relax_after`` the search restarts with half steps and returns to it, satisfying the
    equations to the tolerance. Where the plain sweeps converge, ``relax_after`` changes nothing."""
    rng = np.random.default_rng(3)
    sizes = (6, 8, 3)
    weights = [rng.normal(0, 2.5, (sizes[i + 1], sizes[i])) for i in range(2)]
    biases = [rng.normal(0, 0.5, sizes[i + 1]) for i in range(2)]
    x, y = rng.uniform(0, 1, (1, 6)), rng.uniform(0, 1, (1, 3))
    cfg = DPConfig(beta=0.5)
    fixed = dp_fixed_point(weights, biases, x, y, cfg, stall_sweeps=100, relax_after=10)
    assert dp_residual(weights, biases, x, y, cfg, fixed) <= 1e-13
    near = DyadStates([x] + [s + 1e-9 for s in fixed.s_plus[1:]], [x] + [s - 1e-9 for s in fixed.s_minus[1:]], 0.5)
    with pytest.raises(FixedPointNotFound) as plain:
        dp_fixed_point(weights, biases, x, y, cfg, stall_sweeps=100, start=near)
    assert plain.value.reason == "stalled" and plain.value.residual > 1e-6  # it left the fixed point
    relaxed = dp_fixed_point(weights, biases, x, y, cfg, stall_sweeps=100, start=near, relax_after=10)
    for k in (1, 2):
        np.testing.assert_allclose(relaxed.s_plus[k], fixed.s_plus[k], rtol=0, atol=1e-12)
        np.testing.assert_allclose(relaxed.s_minus[k], fixed.s_minus[k], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="relax_after"):
        dp_fixed_point(weights, biases, x, y, cfg, relax_after=0)

    net, x, y = random_problem(HIDDEN_LAYOUTS[2], "mse", seed=11)
    plain = dp_fixed_point(net.weights, net.biases, x, y, cfg)
    with_fallback = dp_fixed_point(net.weights, net.biases, x, y, cfg, relax_after=10)
    for k in range(1, plain.n_layers + 1):
        np.testing.assert_array_equal(plain.s_plus[k], with_fallback.s_plus[k])
        np.testing.assert_array_equal(plain.s_minus[k], with_fallback.s_minus[k])
