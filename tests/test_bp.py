"""Back-propagation against finite differences, and the MLP / optimiser building blocks."""

import numpy as np
import pytest
from _problems import random_batch

from analogdp.digital.bp import bp_gradients, bp_update_direction
from analogdp.digital.dp import feedforward
from analogdp.digital.functional import loss_value
from analogdp.digital.mlp import MLP, init_mlp, parse_layer_sizes
from analogdp.digital.optim import SGD, Adam, make_optimizer


def random_problem(sizes, seed, batch=6, loss="mse"):
    rng = np.random.default_rng(seed)
    net = init_mlp(sizes, seed=seed)
    for b in net.biases:
        b[:] = rng.uniform(0.1, 0.5, size=b.shape)  # put hidden units in the linear range
    x, y = random_batch(rng, sizes, loss, batch)
    return net, x, y


def mean_loss(net, x, y, activation, loss):
    return float(np.mean(loss_value(loss, feedforward(net.weights, net.biases, x, activation)[-1], y)))


@pytest.mark.parametrize("activation", ["hardsigmoid", "relu"])
@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("sizes", [(5, 4, 3), (6, 5, 4, 3), (4, 6, 5, 4, 3)])
def test_bp_gradient_matches_central_differences(sizes, loss, activation):
    net, x, y = random_problem(sizes, seed=len(sizes), loss=loss)
    dws, dbs, value = bp_gradients(net.weights, net.biases, x, y, activation, loss)
    assert value == pytest.approx(mean_loss(net, x, y, activation, loss), rel=1e-12)
    step = 1e-6
    for params, grads in ((net.weights, dws), (net.biases, dbs)):
        for p, g in zip(params, grads):
            numeric = np.zeros_like(p)
            for index in np.ndindex(p.shape):
                original = p[index]
                p[index] = original + step
                up = mean_loss(net, x, y, activation, loss)
                p[index] = original - step
                down = mean_loss(net, x, y, activation, loss)
                p[index] = original
                numeric[index] = (up - down) / (2 * step)
            np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-8)


def test_bp_update_direction_is_the_negative_gradient():
    net, x, y = random_problem((5, 4, 3), seed=3, loss="ce")
    dws, dbs, _ = bp_gradients(net.weights, net.biases, x, y, "hardsigmoid", "ce")
    ups, upbs, output = bp_update_direction(net.weights, net.biases, x, y, "hardsigmoid", "ce")
    for g, d in zip(dws + dbs, ups + upbs):
        np.testing.assert_allclose(d, -g, rtol=1e-14, atol=0)
    np.testing.assert_allclose(output, feedforward(net.weights, net.biases, x)[-1])


def test_bp_keeps_float32():
    net = init_mlp((5, 4, 3), dtype="float32")
    x = np.random.default_rng(0).random((4, 5)).astype(np.float32)
    dws, dbs, output = bp_update_direction(net.weights, net.biases, x, np.eye(3, dtype=np.float32)[[0, 1, 2, 0]])
    assert all(d.dtype == np.float32 for d in dws + dbs) and output.dtype == np.float32


def test_init_is_seeded_glorot_uniform():
    a = init_mlp((784, 256, 10), seed=1)
    b = init_mlp((784, 256, 10), seed=1)
    c = init_mlp((784, 256, 10), seed=2)
    assert a.layer_sizes == (784, 256, 10)
    assert [w.shape for w in a.weights] == [(256, 784), (10, 256)]
    assert all(np.array_equal(p, q) for p, q in zip(a.parameters, b.parameters))
    assert not np.array_equal(a.weights[0], c.weights[0])
    bound = np.sqrt(6 / (784 + 256))
    assert np.abs(a.weights[0]).max() <= bound and np.abs(a.weights[0]).max() > 0.99 * bound
    assert all(not b.any() for b in a.biases)
    kaiming = init_mlp((784, 256, 10), init="kaiming")
    assert np.abs(kaiming.weights[0]).max() > bound * 1.1


@pytest.mark.parametrize("text", ["784", "784-", "a-10", "784--10", "784-0-10", "-784-10", ""])
def test_parse_layer_sizes_rejects_malformed(text):
    with pytest.raises(ValueError):
        parse_layer_sizes(text)


def test_parse_layer_sizes():
    assert parse_layer_sizes("784-256-10") == (784, 256, 10)


def test_mlp_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        MLP([np.zeros((3, 4)), np.zeros((2, 5))], [np.zeros(3), np.zeros(2)])


@pytest.mark.parametrize("name", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_optimizers_minimise_a_quadratic_in_place(name, dtype):
    target = np.array([[1.0, -2.0], [0.5, 3.0]], dtype=dtype)
    param = np.zeros((2, 2), dtype=dtype)
    opt = make_optimizer(name, [param], lr=0.05 if name == "adam" else 0.1)
    for _ in range(500):
        opt.step([target - param])  # descent direction of ½‖θ − target‖²
    assert param.dtype == dtype
    np.testing.assert_allclose(param, target, atol=1e-3)


def test_adam_first_step_moves_every_parameter_by_lr():
    param = np.zeros(3)
    Adam([param], lr=0.01).step([np.array([5.0, -1e-3, 2.0])])
    np.testing.assert_allclose(param, [0.01, -0.01, 0.01], rtol=1e-4)


def test_sgd_momentum_accumulates():
    param = np.zeros(1)
    opt = SGD([param], lr=1.0, momentum=0.5)
    opt.step([np.ones(1)])
    opt.step([np.ones(1)])
    assert param[0] == pytest.approx(1.0 + 1.5)


@pytest.mark.parametrize("bad", [dict(lr=0.0), dict(lr=float("nan")), dict(momentum=1.0)])
def test_sgd_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        SGD([np.zeros(1)], **bad)
