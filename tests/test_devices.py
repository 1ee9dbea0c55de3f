"""Device response models, presets and update schemes (DESIGN §7): statistics against the
models' formulas, bounds, symmetry points, seeding, pulse coincidence and refresh."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analogdp.circuit.devices import (
    ConstantStepDevice,
    ExpStepDevice,
    IdealDevice,
    LinearStepDevice,
    NeuroSimDevice,
    PowStepDevice,
    apply_pulses,
    draw_crossbar_pair,
    draw_population,
    drift,
    mean_step_s,
    pin_stuck,
    read_conductances,
    response_curve,
    step_sigma_s,
    symmetry_point_s,
    write_noise_offsets_s,
)
from analogdp.circuit.params import DeviceParams, ProgrammingParams
from analogdp.circuit.presets import PRESETS, device_from_preset, parse_device_param
from analogdp.circuit.updates import (
    PulseCoincidenceParams,
    RefreshParams,
    pulse_coincidence,
    refresh,
)
from analogdp.programming import ConductanceProgrammer, pulses_to_reach

DEVICE = DeviceParams()
SPAN_S = DEVICE.g_max_s - DEVICE.g_min_s
STEP_S = SPAN_S / 200
NOISE = {"c2c": 0.3, "c2c_additive_s": 0.05 * STEP_S, "c2c_slope": 0.002}
D2D = {"step_d2d": 0.2, "up_down_d2d": 0.05, "g_min_d2d": 0.1, "g_max_d2d": 0.05}

# One model of each kind, with cycle-to-cycle noise and device-to-device variation.
NOISY_MODELS = {
    "ideal": IdealDevice(step_s=STEP_S, **NOISE, **D2D),
    "constant": ConstantStepDevice(step_s=STEP_S, up_down=0.2, **NOISE, **D2D),
    "linear": LinearStepDevice(step_s=STEP_S, gamma_up=0.8, gamma_down=1.0, **NOISE, **D2D),
    "exp": ExpStepDevice(step_s=STEP_S, a_u=-1.0, b_u=0.0, gamma_up=5.0, gamma_down=5.0,
                         a_up=-1.18, a_down=-0.08, **NOISE, **D2D),
    "neurosim": NeuroSimDevice(n_levels=200, **NOISE, **D2D),
    "pow": PowStepDevice(step_s=STEP_S, gamma_up=1.5, gamma_down=0.7, **NOISE, **D2D),
}
STATES_U = (0.2, 0.35, 0.5, 0.65, 0.8)
PER_STATE = 20_000  # × 5 states = 1e5 pulses per direction and model


@pytest.mark.parametrize("name", sorted(NOISY_MODELS))
@pytest.mark.parametrize("is_set", [True, False])
def test_step_mean_and_spread_match_the_formula(name, is_set):
    model = NOISY_MODELS[name]
    rng = np.random.default_rng(11)
    pop = draw_population(model, (PER_STATE,), DEVICE, seed=3)
    index = np.arange(PER_STATE)
    for u in STATES_U:
        g = pop.g_min_s + u * (pop.g_max_s - pop.g_min_s)
        out = apply_pulses(pop, g, index, np.ones(PER_STATE, dtype=np.int64), is_set, rng)
        step = (out.g_s - g) * (1 if is_set else -1)
        mean = mean_step_s(pop, g, index, is_set)
        sigma = step_sigma_s(pop, g, index, is_set)
        assert np.all(sigma > 0)
        z = (step - mean) / sigma  # standard normal if the model does what its formula says
        se_mean = 1 / math.sqrt(PER_STATE)
        se_std = 1 / math.sqrt(2 * PER_STATE)
        assert abs(z.mean()) < 4 * se_mean, (name, u, z.mean())
        assert abs(z.std() - 1) < 4 * se_std, (name, u, z.std())
        assert np.all(out.pulses_sent == 1)


def test_device_to_device_draws_have_the_stated_spread():
    n = 50_000
    for log_normal in (False, True):
        model = ConstantStepDevice(step_s=STEP_S, step_d2d=0.3, step_d2d_log_normal=log_normal,
                                   g_max_d2d=0.05)
        pop = draw_population(model, (n,), DEVICE, seed=5)
        scale = pop.scale_set
        assert abs(scale.mean() - 1) < 4 * 0.3 / math.sqrt(n)
        assert abs(scale.std() - 0.3) < 4 * 0.3 / math.sqrt(2 * n)
        assert np.all(scale > 0) if log_normal else True
        bounds = pop.g_max_s / DEVICE.g_max_s
        assert abs(bounds.mean() - 1) < 4 * 0.05 / math.sqrt(n)
        assert abs(bounds.std() - 0.05) < 4 * 0.05 / math.sqrt(2 * n)


@pytest.mark.parametrize("name", sorted(NOISY_MODELS))
def test_bounds_are_never_crossed(name):
    model = NOISY_MODELS[name]
    loud = type(model)(**{**{f: getattr(model, f) for f in model.__dataclass_fields__},
                          "c2c": 2.0, "c2c_additive_s": STEP_S})
    pop = draw_population(loud, (2000,), DEVICE, seed=1)
    rng = np.random.default_rng(2)
    index = np.arange(2000)
    g = pop.g_min_s.copy()
    for sweep in range(6):
        is_set = sweep % 2 == 0
        out = apply_pulses(pop, g, index, rng.integers(0, 400, 2000), is_set, rng)
        g = out.g_s
        assert np.all(g >= pop.g_min_s) and np.all(g <= pop.g_max_s)
        assert np.all(out.pulses_sent + out.pulses_dropped >= 0)


@pytest.mark.parametrize("model", [
    LinearStepDevice(step_s=STEP_S, up_down=0.1, gamma_up=0.8, gamma_down=1.0),
    ExpStepDevice(step_s=STEP_S, up_down=0.26, a_u=-1.0, b_u=0.0, gamma_up=5.0, gamma_down=5.0,
                  a_up=-1.18445, a_down=-0.081404),
    NeuroSimDevice(n_levels=200),
    PowStepDevice(step_s=STEP_S, gamma_up=1.5, gamma_down=0.7),
], ids=["linear", "exp", "neurosim", "pow"])
def test_alternating_pulses_settle_at_the_symmetry_point(model):
    pop = draw_population(model, (1,), DEVICE, seed=0)
    g_star = symmetry_point_s(pop, 0)
    assert DEVICE.g_min_s < g_star < DEVICE.g_max_s
    rng = np.random.default_rng(0)
    g = pop.g_min_s.copy()
    one = np.ones(1, dtype=np.int64)
    trace = []
    for k in range(4000):
        g = apply_pulses(pop, g, np.zeros(1, dtype=np.int64), one, k % 2 == 0, rng).g_s
        trace.append(g[0])
    settled = np.mean(trace[-200:])
    assert abs(settled - g_star) <= 0.02 * g_star, (settled, g_star)


def test_linear_step_symmetry_point_matches_the_closed_form():
    model = LinearStepDevice(step_s=STEP_S, up_down=0.1, gamma_up=0.8, gamma_down=1.0)
    pop = draw_population(model, (1,), DEVICE, seed=0)
    d_up, d_down = 1.1, 0.9  # Δ⁺, Δ⁻ in units of Δ
    u_star = (d_up - d_down + d_down * 1.0) / (d_up * 0.8 + d_down * 1.0)
    expected = DEVICE.g_min_s + u_star * SPAN_S
    assert symmetry_point_s(pop, 0) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name", [p for p in PRESETS if p not in ("ideal", "pcm-nandakumar2020")])
def test_noise_free_presets_settle_at_their_symmetry_point(name):
    model = device_from_preset(name, c2c=0.0, c2c_additive_s=0.0, c2c_slope=0.0, step_d2d=0.0,
                               up_down_d2d=0.0, g_min_d2d=0.0, g_max_d2d=0.0, stuck_fraction=0.0)
    pop = draw_population(model, (1,), DEVICE, seed=0)
    g_star = symmetry_point_s(pop, 0)
    g = np.array([DEVICE.g_min_s])
    rng = np.random.default_rng(0)
    one = np.ones(1, dtype=np.int64)
    n = int(20 * SPAN_S / pop.step_s) + 2000  # contraction per cycle ~ step/span
    trace = []
    for k in range(n):
        g = apply_pulses(pop, g, np.zeros(1, dtype=np.int64), one, k % 2 == 0, rng).g_s
        trace.append(g[0])
    assert abs(np.mean(trace[-200:]) - g_star) <= 0.02 * g_star


def test_same_seed_same_devices_and_pulses():
    model = device_from_preset("rram-hfo2")

    def run(seed):
        pos, neg = draw_crossbar_pair(model, (30, 20), DEVICE, seed=seed)
        rng = np.random.default_rng(seed)
        g = pin_stuck(pos, np.full((30, 20), DEVICE.g_min_s)).reshape(-1)
        out = apply_pulses(pos, g, np.arange(600), rng.integers(0, 5, 600), True, rng)
        return pos, neg, out

    a, b, c = run(7), run(7), run(8)
    for field in ("g_min_s", "g_max_s", "scale_set", "scale_reset", "stuck"):
        assert np.array_equal(getattr(a[0], field), getattr(b[0], field))
        assert np.array_equal(getattr(a[1], field), getattr(b[1], field))
        assert not np.array_equal(getattr(a[0], field), getattr(a[1], field)) or field == "stuck"
    assert np.array_equal(a[2].g_s, b[2].g_s) and np.array_equal(a[2].pulses_sent, b[2].pulses_sent)
    assert not np.array_equal(a[2].g_s, c[2].g_s)


def test_pulses_do_not_depend_on_how_the_kernel_blocks_them(monkeypatch):
    """Each device's pulses draw their own slice of the normals, so splitting a large request
    into blocks (bounded memory) or visiting devices in groups changes no conductance."""
    from analogdp.circuit import devices

    model = device_from_preset("rram-gong2018")
    pop = draw_population(model, (40, 30), DEVICE, seed=3)
    rng = np.random.default_rng(0)
    g = 0.5 * (pop.g_min_s + pop.g_max_s)
    n = rng.integers(0, 60, pop.size)
    up = rng.random(pop.size) < 0.5
    whole = apply_pulses(pop, g, np.arange(pop.size), n, up, np.random.default_rng(11))
    monkeypatch.setattr(devices, "MAX_NORMALS_PER_BLOCK", 97)
    assert len(devices._pulse_blocks(n)) > 10
    split = apply_pulses(pop, g, np.arange(pop.size), n, up, np.random.default_rng(11))
    assert np.array_equal(whole.g_s, split.g_s) and np.array_equal(whole.pulses_sent, split.pulses_sent)
    # The first device alone gets the same pulses as within the whole array.
    alone = apply_pulses(pop, g[:1], np.arange(1), n[:1], up[:1], np.random.default_rng(11))
    assert alone.g_s[0] == whole.g_s[0] and alone.pulses_sent[0] == whole.pulses_sent[0]
    assert whole.pulses_sent.sum() > 0.9 * n.sum()


def _program_like_today(pos, neg, g_pos, g_neg, delta_w, step, rng, programmer):
    """The ideal programmer's reset-then-set update written with the device API."""
    flat = delta_w.reshape(-1)
    nonzero = np.flatnonzero(flat)
    requested = programmer.pulse_counts(np.abs(flat[nonzero]) * (DEVICE.g_unit_s / step))
    where = nonzero[requested > 0]
    wanted = requested[requested > 0]
    up = flat[where] > 0
    gp, gn = g_pos.copy().reshape(-1), g_neg.copy().reshape(-1)
    raiser = np.where(up, gp[where], gn[where])
    partner = np.where(up, gn[where], gp[where])
    # The partner is RESET first: the device array each entry lives in decides its population.
    reset_pos = apply_pulses(pos, partner, where, np.where(~up, wanted, 0), False, rng)
    reset_neg = apply_pulses(neg, partner, where, np.where(up, wanted, 0), False, rng)
    partner_new = np.where(up, reset_neg.g_s, reset_pos.g_s)
    n_reset = np.where(up, reset_neg.pulses_sent, reset_pos.pulses_sent)
    set_pos = apply_pulses(pos, raiser, where, np.where(up, wanted - n_reset, 0), True, rng)
    set_neg = apply_pulses(neg, raiser, where, np.where(~up, wanted - n_reset, 0), True, rng)
    raiser_new = np.where(up, set_pos.g_s, set_neg.g_s)
    gp[where] = np.where(up, raiser_new, partner_new)
    gn[where] = np.where(up, partner_new, raiser_new)
    return gp.reshape(g_pos.shape), gn.reshape(g_neg.shape)


def _closed_form_programmer(g_pos, g_neg, delta_w, step, programmer):
    """The ideal programmer's arithmetic before devices were modelled (reset-then-set, closed
    form on the nominal bounds): the reference the device path must reproduce float for float."""
    flat = delta_w.reshape(-1)
    nonzero = np.flatnonzero(flat)
    requested = programmer.pulse_counts(np.abs(flat[nonzero]) * (DEVICE.g_unit_s / step))
    where = nonzero[requested > 0]
    wanted = requested[requested > 0]
    up = flat[where] > 0
    gp, gn = g_pos.copy().reshape(-1), g_neg.copy().reshape(-1)
    raiser = np.where(up, gp[where], gn[where])
    partner = np.where(up, gn[where], gp[where])
    n_reset = np.minimum(wanted, pulses_to_reach(partner - DEVICE.g_min_s, step))
    partner = np.maximum(partner - n_reset * step, DEVICE.g_min_s)
    n_set = np.minimum(wanted - n_reset, pulses_to_reach(DEVICE.g_max_s - raiser, step))
    raiser = np.minimum(raiser + n_set * step, DEVICE.g_max_s)
    gp[where] = np.where(up, raiser, partner)
    gn[where] = np.where(up, partner, raiser)
    return gp.reshape(g_pos.shape), gn.reshape(g_neg.shape)


def test_ideal_device_reproduces_the_programmer_float_for_float():
    rng = np.random.default_rng(4)
    shape = (65, 40)
    g_pos = DEVICE.g_min_s + rng.random(shape) * SPAN_S
    g_neg = DEVICE.g_min_s + rng.random(shape) * SPAN_S
    g_pos[0, :5] = DEVICE.g_max_s  # some devices at their bounds
    g_neg[1, :5] = DEVICE.g_min_s
    delta_w = rng.standard_normal(shape) * 0.05
    delta_w[rng.random(shape) < 0.3] = 0.0
    programming = ProgrammingParams()
    expected_pos, expected_neg = _closed_form_programmer(g_pos, g_neg, delta_w, programming.delta_g_per_pulse_s,
                                                         ConductanceProgrammer(programming, seed=9))
    # The programmer itself (which programs through the device model) and the device API by hand.
    through_model = ConductanceProgrammer(programming, seed=9).program_array(g_pos, g_neg, delta_w, DEVICE)
    assert np.array_equal(through_model[0], expected_pos) and np.array_equal(through_model[1], expected_neg)
    pos, neg = draw_crossbar_pair(device_from_preset("ideal"), shape, DEVICE, programming, seed=0)
    assert pos.ideal_fast_path
    mine = ConductanceProgrammer(programming, seed=9)
    got_pos, got_neg = _program_like_today(pos, neg, g_pos, g_neg, delta_w,
                                           programming.delta_g_per_pulse_s, rng, mine)
    assert np.array_equal(got_pos, expected_pos)
    assert np.array_equal(got_neg, expected_neg)


def test_stuck_devices_read_noise_write_noise_and_drift():
    n = 40_000
    model = ConstantStepDevice(step_s=STEP_S, stuck_fraction=0.1, stuck_high_fraction=0.3,
                               read_noise=0.05, write_noise=2.0, drift_nu=0.05)
    pop = draw_population(model, (n,), DEVICE, seed=2)
    stuck = pop.stuck != 0
    assert abs(stuck.mean() - 0.1) < 4 * math.sqrt(0.09 / n)
    assert abs((pop.stuck > 0).sum() / stuck.sum() - 0.3) < 4 * math.sqrt(0.21 / stuck.sum())
    g = pin_stuck(pop, np.full(n, 5e-6))
    assert np.all(g[pop.stuck > 0] == pop.g_max_s[pop.stuck > 0])
    rng = np.random.default_rng(0)
    out = apply_pulses(pop, g, np.arange(n), np.full(n, 3), True, rng)
    assert np.array_equal(out.g_s[stuck], g[stuck])  # stuck devices do not move
    assert np.all(out.g_s[~stuck] > g[~stuck])
    offsets = write_noise_offsets_s(pop, np.arange(n), rng)
    assert abs(offsets.std() / (2.0 * STEP_S) - 1) < 4 / math.sqrt(2 * n)
    seen = read_conductances(pop, np.full(n, 5e-6), rng)
    assert abs((seen / 5e-6 - 1).std() - 0.05) < 4 * 0.05 / math.sqrt(2 * n)
    # Drift: G0 (t/t0)^-nu, unchanged before t0.
    g0 = np.full(n, 8e-6)
    assert np.array_equal(drift(pop, g0, 1.0), g0)
    drifted = drift(pop, g0, 2000.0)
    free = ~stuck
    assert np.allclose(drifted[free], 8e-6 * 100.0 ** -0.05)
    ideal = draw_population(IdealDevice(), (5,), DEVICE)
    g_ideal = g0[:5]
    assert read_conductances(ideal, g_ideal, rng) is g_ideal


def test_response_curves_of_every_preset_stay_in_range():
    for name in PRESETS:
        curve = response_curve(device_from_preset(name), 60, 20, seed=1)
        g = curve["g_s"]
        assert np.all(g >= 0) and np.all(np.isfinite(g))
        mid = 60
        assert curve["g_mean_s"][mid] > curve["g_mean_s"][0]  # SET raises the mean
        if not device_from_preset(name).set_only:
            assert curve["g_mean_s"][-1] < curve["g_mean_s"][mid]  # RESET lowers it


def test_one_directional_device_refuses_reset_pulses():
    pop = draw_population(device_from_preset("pcm-nandakumar2020"), (4,), DEVICE)
    with pytest.raises(ValueError, match="is_set"):
        apply_pulses(pop, pop.g_min_s.copy(), np.arange(4), np.ones(4, dtype=np.int64), False,
                     np.random.default_rng(0))


# ------------------------------------------------------------------------------------------
# Pulse coincidence


def test_pulse_coincidence_mean_and_variance_match_the_binomial():
    rng = np.random.default_rng(1)
    x = np.array([0.9, 0.4, -0.2, 0.0, 0.7])
    delta = np.array([0.03, -0.05, 0.01])
    lr_over_beta, pulse_weight = 0.02 / 0.1, 0.004
    params = PulseCoincidenceParams(bl=31)
    draws = 20_000
    counts = np.empty((draws, 5, 3))
    for k in range(draws):
        counts[k] = pulse_coincidence(x, delta, lr_over_beta, pulse_weight, rng, params).counts
    out = pulse_coincidence(x, delta, lr_over_beta, pulse_weight, rng, params)
    assert out.clipped_fraction == 0
    dw = counts * pulse_weight
    wanted = lr_over_beta * np.outer(x, delta)
    se = dw.std(axis=0) / math.sqrt(draws)
    active = wanted != 0
    assert np.all(np.abs(dw.mean(axis=0) - wanted)[active] < 4 * se[active])
    assert np.all(dw[:, ~active] == 0)
    p = np.minimum(out.c_x * np.abs(x), 1)
    q = np.minimum(out.c_delta * np.abs(delta), 1)
    pq = np.outer(p, q)
    var_expected = 31 * pq * (1 - pq)
    centred = (np.abs(counts) - np.abs(counts).mean(axis=0)) ** 2
    var_se = centred.std(axis=0) / math.sqrt(draws)
    assert np.all(np.abs(centred.mean(axis=0) - var_expected)[active] < 4 * var_se[active] + 1e-12)
    assert out.update_time_s == pytest.approx(31 * 10e-9)
    assert out.line_energy_j > 0 and out.row_line_pulses > 0


def test_pulse_coincidence_with_long_trains_approaches_the_per_device_update():
    rng = np.random.default_rng(2)
    x = rng.random(6)
    delta = rng.standard_normal(4) * 0.05
    lr_over_beta, pulse_weight = 1.0, 0.0005  # large update: up to ~60 pulses, beyond BL = 31
    wanted = lr_over_beta * np.outer(x, delta)
    errors = {}
    for bl in (1, 31, 4096):
        draws = 400
        dw = np.mean([pulse_coincidence(x, delta, lr_over_beta, pulse_weight, rng,
                                        PulseCoincidenceParams(bl=bl)).counts * pulse_weight
                      for _ in range(draws)], axis=0)
        errors[bl] = np.abs(dw - wanted).sum() / np.abs(wanted).sum()
    assert errors[1] > errors[31] > errors[4096]
    assert pulse_coincidence(x, delta, lr_over_beta, pulse_weight, rng).clipped_fraction > 0
    assert pulse_coincidence(x, delta, lr_over_beta, pulse_weight, rng,
                             PulseCoincidenceParams(bl=4096)).clipped_fraction == 0
    assert errors[4096] < 0.05


def test_bit_length_below_one_is_refused():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="bl"):
            PulseCoincidenceParams(bl=bad)


# ------------------------------------------------------------------------------------------
# Refresh


def test_refresh_keeps_the_weight_and_frees_the_pair():
    model = device_from_preset("pcm-nandakumar2020", c2c=0.0, c2c_additive_s=0.0, c2c_slope=0.0,
                               step_d2d=0.0, up_down_d2d=0.0, g_max_d2d=0.0)
    pos, neg = draw_crossbar_pair(model, (10, 8), DEVICE, seed=0)
    rng = np.random.default_rng(0)
    g_pos = np.full((10, 8), 9.0e-6)
    g_neg = np.full((10, 8), 6.0e-6)
    g_pos[5:] = 3e-6  # below the thresholds: untouched
    out = refresh(pos, neg, g_pos, g_neg, rng, RefreshParams())
    assert out.pairs_refreshed == 40
    hit = np.zeros((10, 8), dtype=bool)
    hit[:5] = True
    assert np.array_equal(out.g_pos_s[~hit], g_pos[~hit]) and np.array_equal(out.g_neg_s[~hit], g_neg[~hit])
    assert np.all(out.g_neg_s[hit] == DEVICE.g_min_s)
    weight_before = g_pos[hit] - g_neg[hit]
    weight_after = out.g_pos_s[hit] - out.g_neg_s[hit]
    # The write-back lands within one step of the pulse train near the target.
    assert np.all(np.abs(weight_after - weight_before) < 0.1 * SPAN_S)
    assert np.all(out.g_pos_s[hit] < g_pos[hit])
    assert out.resets == 80 and out.pulses_set > 0 and out.energy_j > 0 and out.time_s > 0


# ------------------------------------------------------------------------------------------
# Bad input


def test_bad_device_input_names_the_parameter():
    with pytest.raises(ValueError, match="unknown device preset 'rram-x'"):
        device_from_preset("rram-x")
    with pytest.raises(ValueError, match="'c2c_typo'"):
        device_from_preset("rram-gong2018", c2c_typo=0.1)
    with pytest.raises(ValueError, match="c2c"):
        device_from_preset("rram-gong2018", c2c=float("nan"))
    with pytest.raises(ValueError, match="read_noise"):
        device_from_preset("ideal", read_noise=-0.1)
    with pytest.raises(ValueError, match="stuck_fraction"):
        device_from_preset("ideal", stuck_fraction=1.5)
    with pytest.raises(ValueError, match="c2c"):
        parse_device_param("c2c=inf")
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_device_param("c2c")
    assert parse_device_param("set_only=true") == ("set_only", True)
    assert parse_device_param("n_levels=16") == ("n_levels", 16)
    with pytest.raises(ValueError, match="n_levels"):
        device_from_preset("neurosim-rram", n_levels=0)
    with pytest.raises(ValueError, match="ltd_a_ratio"):
        device_from_preset("neurosim-rram", ltd_a_ratio=0.5)
