"""Numba kernels: the circuit right-hand side and an explicit Runge–Kutta integrator.

These stay small and dumb on purpose: all validation, configuration and unit handling lives in
plain Python (:mod:`analogdp.solver.settle`), which packs the circuit into flat arrays.

State vector of one example: the compartment voltages (layer by layer, neuron by neuron,
compartment by compartment), then three energy accumulators integrated with the same steps:

    [v ..., E_neuron_sources, E_neuron_resistors, E_crossbar]
"""

from __future__ import annotations

import numpy as np
from numba import njit

# integer parameter slots (iparams)
I_LAYERS, I_COMPARTMENTS, I_ACTIVATION, I_LOSS, I_NUDGE_AT_STATE, I_DUAL_ARRAY, I_N_VOLTAGES = range(7)
# float parameter slots (fparams)
F_V_READ, F_G_UNIT, F_TAU, F_R_M, F_BETA = range(5)
N_ACCUMULATORS = 3
ACTIVATION_CODES = {"hardsigmoid": 0, "relu": 1}
LOSS_CODES = {"mse": 0, "ce": 1}
# stats columns returned per example
(S_STATUS, S_T_FINAL, S_T_SETTLE, S_T_SETTLE_COARSE, S_STEPS, S_REJECTED, S_DISTANCE,
 S_EVALUATIONS) = range(8)
N_STATS = 8
STATUS_SETTLED, STATUS_TIME_LIMIT, STATUS_STEP_LIMIT, STATUS_FAILED = 0, 1, 2, 3


@njit(cache=True, nogil=True)
def circuit_rhs(state, dstate, iparams, fparams, sizes, v_off, n_off, g_off, r_off,
                has_bias, g_pos, g_neg, row_total, col_total, row_w, col_w, gains,
                fwd0_pos, fwd0_neg, rows_power0, target, work):
    """dstate = d(state)/dt; returns max |V_target − v| (the distance still to settle)."""
    n_layers = iparams[I_LAYERS]
    m = iparams[I_COMPARTMENTS]
    n_v = iparams[I_N_VOLTAGES]
    dual = iparams[I_DUAL_ARRAY] == 1
    v_r = fparams[F_V_READ]
    scale = 1.0 / (fparams[F_G_UNIT] * v_r)
    n_neurons = n_off[n_layers + 1]
    col_sig = work[0:n_neurons]
    a_in = work[n_neurons:2 * n_neurons]
    b_in = work[2 * n_neurons:3 * n_neurons]
    rest = work[3 * n_neurons:]

    for layer in range(1, n_layers + 1):
        for j in range(sizes[layer]):
            base = v_off[layer] + j * m
            acc = 0.0
            for c in range(m):
                acc += col_w[c] * state[base + c]
            col_sig[n_off[layer] + j] = acc

    crossbar_power = 0.0
    for k in range(n_layers):
        n_in = sizes[k]
        n_cols = sizes[k + 1]
        cb = n_off[k + 1]
        fwd_pos = rest[0:n_cols]
        fwd_neg = rest[n_cols:2 * n_cols]
        if k == 0:
            # inputs are constant during a settle: their products were computed once
            for j in range(n_cols):
                fwd_pos[j] = fwd0_pos[j]
                fwd_neg[j] = fwd0_neg[j]
            rows_power = rows_power0
        else:
            for j in range(n_cols):
                fwd_pos[j] = 0.0
                fwd_neg[j] = 0.0
            rows_power = 0.0
            for i in range(n_in + has_bias[k]):
                if i < n_in:
                    base = v_off[k] + i * m
                    x = 0.0
                    for c in range(m):
                        x += row_w[c] * state[base + c]
                else:
                    x = v_r
                rows_power += x * x * row_total[r_off[k] + i]
                gbase = g_off[k] + i * n_cols
                back = 0.0
                for j in range(n_cols):
                    gp = g_pos[gbase + j]
                    gn = g_neg[gbase + j]
                    fwd_pos[j] += gp * x
                    fwd_neg[j] += gn * x
                    back += (gp - gn) * col_sig[cb + j]
                if i < n_in:
                    b_in[n_off[k] + i] = back * scale
        cols_power = 0.0
        cross = 0.0
        for j in range(n_cols):
            d = col_sig[cb + j]
            a_in[cb + j] = (fwd_pos[j] - fwd_neg[j]) * scale
            cols_power += d * d * col_total[cb + j]
            cross += d * (fwd_pos[j] - fwd_neg[j])
        if dual:
            # forward array: columns at virtual ground; feedback array: lines at d_j
            crossbar_power += rows_power + cols_power
        else:
            crossbar_power += rows_power + cols_power - 2.0 * cross

    # output nudge g = β ∇ℓ(z)
    n_out = sizes[n_layers]
    ob = n_off[n_layers]
    nudge = rest[0:n_out]
    zmax = -1e300
    for j in range(n_out):
        if iparams[I_NUDGE_AT_STATE] == 1:
            base = v_off[n_layers] + j * m
            z = 0.0
            for c in range(m):
                z += row_w[c] * state[base + c]
            z /= v_r
        else:
            z = a_in[ob + j]
        nudge[j] = z
        if z > zmax:
            zmax = z
    if iparams[I_LOSS] == 1:
        total = 0.0
        for j in range(n_out):
            nudge[j] = np.exp(nudge[j] - zmax)
            total += nudge[j]
        for j in range(n_out):
            nudge[j] = nudge[j] / total
    for j in range(n_out):
        nudge[j] = fparams[F_BETA] * (nudge[j] - target[j])

    tau = fparams[F_TAU]
    r_m = fparams[F_R_M]
    relu = iparams[I_ACTIVATION] == 1
    source_power = 0.0
    resistor_power = 0.0
    distance = 0.0
    for layer in range(1, n_layers + 1):
        for j in range(sizes[layer]):
            neuron = n_off[layer] + j
            base = v_off[layer] + j * m
            for c in range(m):
                if layer < n_layers:
                    u = a_in[neuron] + gains[c] * b_in[neuron]
                    if u < 0.0:
                        u = 0.0
                    elif u > 1.0 and not relu:
                        u = 1.0
                    v_target = v_r * u
                else:
                    v_target = v_r * (a_in[neuron] - gains[c] * nudge[j])
                diff = v_target - state[base + c]
                dstate[base + c] = diff / tau
                source_power += v_target * diff / r_m
                resistor_power += diff * diff / r_m
                if abs(diff) > distance:
                    distance = abs(diff)
    dstate[n_v] = source_power
    dstate[n_v + 1] = resistor_power
    dstate[n_v + 2] = crossbar_power
    return distance


@njit(cache=True, nogil=True)
def settling_time(ts, ys, fs, count, n_v, threshold_v, out_state):
    """Earliest t after which every voltage stays within ``threshold_v`` of its final value.

    Scans the accepted steps backwards for the last one outside the band, then bisects the
    cubic Hermite interpolant on that step for the crossing; ``out_state`` receives the full
    state (voltages and energy accumulators) at that time.
    """
    # explicit loops instead of array expressions throughout: each array expression or slice
    # assignment costs numba a separately compiled helper, and compile time is start-up time
    y_final = ys[count - 1]
    last_out = -1
    for i in range(count - 1, -1, -1):
        for q in range(n_v):
            if abs(ys[i, q] - y_final[q]) > threshold_v:
                last_out = i
                break
        if last_out >= 0:
            break
    if last_out < 0:
        for q in range(out_state.shape[0]):
            out_state[q] = ys[0, q]
        return ts[0]
    t0 = ts[last_out]
    h = ts[last_out + 1] - t0
    y0, f0, y1, f1 = ys[last_out], fs[last_out], ys[last_out + 1], fs[last_out + 1]
    lo, hi = 0.0, 1.0
    for it in range(61):
        s = hi if it == 60 else 0.5 * (lo + hi)
        h00 = (1 + 2 * s) * (1 - s) ** 2
        h10 = s * (1 - s) ** 2
        h01 = s * s * (3 - 2 * s)
        h11 = s * s * (s - 1)
        outside = False
        for q in range(out_state.shape[0]):
            out_state[q] = h00 * y0[q] + h10 * h * f0[q] + h01 * y1[q] + h11 * h * f1[q]
            if q < n_v and abs(out_state[q] - y_final[q]) > threshold_v:
                outside = True
        if it < 60:
            if outside:
                lo = s
            else:
                hi = s
    return t0 + hi * h


@njit(cache=True, nogil=True)
def integrate_one(y0, t_end, t_max, save_ts, rtol, atol_v, settle_tol_v, thresholds_v,
                  h0, h_max, max_steps, rk_a, rk_b, rk_e, err_exponent,
                  iparams, fparams, sizes, v_off, n_off, g_off, r_off, has_bias, g_pos, g_neg,
                  row_total, col_total, row_w, col_w, gains, fwd0_pos, fwd0_neg, rows_power0,
                  target, out_saved, out_final, out_at_settle, stats):
    """Adaptive explicit FSAL Runge–Kutta integration of one example until settled (or to
    ``t_end`` > 0). Every accepted step is kept (time, state, derivative) so that settling
    times and the energy at the settling time come from a cubic Hermite interpolant."""
    n_state = y0.shape[0]
    n_v = iparams[I_N_VOLTAGES]
    n_stages = rk_b.shape[0]
    n_neurons = n_off[iparams[I_LAYERS] + 1]
    widest = 0
    for k in range(sizes.shape[0]):
        widest = max(widest, sizes[k])
    work = np.empty(3 * n_neurons + 2 * (widest + 1))
    stages = np.empty((n_stages, n_state))
    y = np.empty(n_state)
    for q in range(n_state):
        y[q] = y0[q]
    y_new = np.empty(n_state)
    y_tmp = np.empty(n_state)
    cap = 64
    ts = np.empty(cap)
    ys = np.empty((cap, n_state))
    fs = np.empty((cap, n_state))
    ts[0] = 0.0
    for q in range(n_state):
        ys[0, q] = y[q]
    count = 1
    n_save = save_ts.shape[0]
    save_idx = 0
    while save_idx < n_save and save_ts[save_idx] <= 0.0:
        for q in range(n_state):
            out_saved[save_idx, q] = y[q]
        save_idx += 1
    t = 0.0
    h = h0
    distance = np.inf  # unknown until the first evaluation
    first_stage_ready = False
    status = STATUS_SETTLED
    steps = 0
    rejected = 0
    evaluations = 0
    fixed_window = t_end > 0.0
    horizon = t_end if fixed_window else t_max
    while True:
        if fixed_window:
            if t >= t_end:
                status = STATUS_SETTLED if distance <= settle_tol_v else STATUS_TIME_LIMIT
                break
        elif distance <= settle_tol_v and save_idx == n_save:
            status = STATUS_SETTLED
            break
        if t >= t_max:
            status = STATUS_TIME_LIMIT
            break
        if steps >= max_steps:
            status = STATUS_STEP_LIMIT
            break
        if h > h_max:
            h = h_max
        stop_at = horizon
        if save_idx < n_save and save_ts[save_idx] < stop_at:
            stop_at = save_ts[save_idx]
        clipped = False
        if t + h >= stop_at:
            h = stop_at - t
            clipped = True
        for s in range(n_stages):
            if s == 0:
                if first_stage_ready:
                    continue
                for q in range(n_state):
                    y_tmp[q] = y[q]
            else:
                for q in range(n_state):
                    acc = 0.0
                    for j in range(s):
                        acc += rk_a[s, j] * stages[j, q]
                    y_tmp[q] = y[q] + h * acc
            # the only call site of the right-hand side, to keep the compiled kernel small
            stage_distance = circuit_rhs(y_tmp, stages[s], iparams, fparams, sizes, v_off, n_off,
                                         g_off, r_off, has_bias, g_pos, g_neg, row_total, col_total,
                                         row_w, col_w, gains, fwd0_pos, fwd0_neg, rows_power0,
                                         target, work)
            evaluations += 1
            if s == 0:
                first_stage_ready = True
                distance = stage_distance
                if count == 1:
                    for q in range(n_state):
                        fs[0, q] = stages[0, q]
        err_sum = 0.0
        finite = True
        for q in range(n_state):
            acc = 0.0
            err = 0.0
            for j in range(n_stages):
                acc += rk_b[j] * stages[j, q]
                err += rk_e[j] * stages[j, q]
            y_new[q] = y[q] + h * acc
            if not np.isfinite(y_new[q]):
                finite = False
            scale = rtol * max(abs(y[q]), abs(y_new[q]))
            scale += atol_v if q < n_v else 1e-300
            ratio = h * err / scale
            err_sum += ratio * ratio
        if not finite:
            status = STATUS_FAILED
            break
        err_norm = np.sqrt(err_sum / n_state)
        if err_norm <= 1.0:
            t = stop_at if clipped else t + h
            distance = stage_distance
            if count == ts.shape[0]:
                ts_old, ys_old, fs_old = ts, ys, fs
                ts = np.empty(2 * count)
                ys = np.empty((2 * count, n_state))
                fs = np.empty((2 * count, n_state))
                for i in range(count):
                    ts[i] = ts_old[i]
                    for q in range(n_state):
                        ys[i, q] = ys_old[i, q]
                        fs[i, q] = fs_old[i, q]
            ts[count] = t
            for q in range(n_state):
                y[q] = y_new[q]
                stages[0, q] = stages[n_stages - 1, q]  # first same as last
                ys[count, q] = y[q]
                fs[count, q] = stages[0, q]
            count += 1
            steps += 1
            while save_idx < n_save and save_ts[save_idx] <= t:
                for q in range(n_state):
                    out_saved[save_idx, q] = y[q]
                save_idx += 1
            factor = 5.0 if err_norm == 0.0 else min(5.0, max(0.2, 0.9 * err_norm ** (-err_exponent)))
        else:
            rejected += 1
            factor = max(0.2, 0.9 * err_norm ** (-err_exponent))
        h = h * factor
        if h < 1e-9 * h0:
            status = STATUS_FAILED
            break

    for q in range(n_state):
        out_final[q] = y[q]
    for r in range(thresholds_v.shape[0]):
        stats[S_T_SETTLE + r] = settling_time(ts, ys, fs, count, n_v, thresholds_v[r], out_at_settle[r])
    stats[S_STATUS] = status
    stats[S_T_FINAL] = t
    stats[S_STEPS] = steps
    stats[S_REJECTED] = rejected
    stats[S_DISTANCE] = distance
    stats[S_EVALUATIONS] = evaluations
