"""Numba kernels: the circuit right-hand side and an explicit Runge–Kutta integrator.

These stay small and dumb on purpose: all validation, configuration and unit handling lives in
plain Python (:mod:`analogdp.solver.settle`), which packs the circuit into flat arrays.

State vector of one example: the compartment voltages (layer by layer, neuron by neuron,
compartment by compartment), then three energy accumulators integrated with the same steps:

    [v ..., E_neuron_sources, E_neuron_resistors, E_crossbar]

Each crossbar k ≥ 1 is packed as one row-major matrix W_k = (G⁺ − G⁻)/G_u (rows: the layer-k
neurons, then the bias row; columns: the layer-(k+1) neurons). One pass over its rows yields
both directions, a = Wᵀx and b = W d, with contiguous, vectorisable inner loops. The crossbar
power needs no per-device work: Σ G⁺(x−d)² + G⁻(x+d)² = Σ_i x_i² G_row,i + Σ_j d_j² G_col,j
− 2 Σ_j d_j (Wᵀx)_j G_u, all O(rows + columns) once the products are known.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# integer parameter slots (iparams)
(I_LAYERS, I_COMPARTMENTS, I_ACTIVATION, I_LOSS, I_NUDGE_AT_STATE, I_DUAL_ARRAY, I_N_VOLTAGES,
 I_N_HIDDEN_VOLTAGES) = range(8)
# float parameter slots (fparams)
F_V_READ, F_G_UNIT, F_TAU, F_R_M, F_BETA = range(5)
N_ACCUMULATORS = 3
ACTIVATION_CODES = {"hardsigmoid": 0, "relu": 1}
LOSS_CODES = {"mse": 0, "ce": 1}
# stats columns returned per example
(S_STATUS, S_T_FINAL, S_T_SETTLE, S_T_SETTLE_COARSE, S_STEPS, S_REJECTED, S_DISTANCE,
 S_EVALUATIONS, S_KINK_STEPS, S_STEP_CHANGE) = range(10)
N_STATS = 10
STATUS_SETTLED, STATUS_TIME_LIMIT, STATUS_STEP_LIMIT, STATUS_FAILED = 0, 1, 2, 3
# a step is cut at a clip crossing only when the crossing lies well inside it; nearer its ends
# the kink's share of the step is too small to matter
KINK_CUT_LOW, KINK_CUT_HIGH = 0.02, 0.98
# distance to equilibrium (in equilibrium tolerances) below which the final approach begins
FINAL_APPROACH = 1e3
# kink error model of _first_costly_crossing: coefficient, and the share of the error norm that
# kinks may take before a step is ended at one
KINK_ERROR = 0.1
KINK_BUDGET = 0.3
KINK_BUDGET_OVER = 3.0


@njit(cache=True, nogil=True, fastmath=True)
def _crossbar_products(w, x, d, a, b, n_in, n_cols):
    """a = Wᵀx over all rows (bias included), b = W d over the first ``n_in`` rows, W row-major:
    one pass over W, four rows at a time so that each a_j is loaded and stored once per four
    rows; the inner loops are unit-stride and compile to SIMD."""
    n_rows = w.shape[0]
    for j in range(n_cols):
        a[j] = 0.0
    i = 0
    while i + 4 <= n_rows:
        x0 = x[i]
        x1 = x[i + 1]
        x2 = x[i + 2]
        x3 = x[i + 3]
        back0 = 0.0
        back1 = 0.0
        back2 = 0.0
        back3 = 0.0
        for j in range(n_cols):
            w0 = w[i, j]
            w1 = w[i + 1, j]
            w2 = w[i + 2, j]
            w3 = w[i + 3, j]
            dj = d[j]
            a[j] += x0 * w0 + x1 * w1 + x2 * w2 + x3 * w3
            back0 += w0 * dj
            back1 += w1 * dj
            back2 += w2 * dj
            back3 += w3 * dj
        # only the bias row (the last) has no b entry
        if i + 3 < n_in:
            b[i] = back0
            b[i + 1] = back1
            b[i + 2] = back2
            b[i + 3] = back3
        else:
            for r in range(4):
                if i + r < n_in:
                    b[i + r] = (back0, back1, back2, back3)[r]
        i += 4
    while i < n_rows:
        xi = x[i]
        back = 0.0
        for j in range(n_cols):
            wij = w[i, j]
            a[j] += xi * wij
            back += wij * d[j]
        if i < n_in:
            b[i] = back
        i += 1


@njit(cache=True, nogil=True, fastmath=True)
def _crossbar_products_narrow(wt, x, d, a, b, n_in, n_cols):
    """The products of :func:`_crossbar_products` with W stored transposed (one row per
    column line): for a crossbar with few columns (an output layer) the loops then run along
    its many rows, two column lines at a time."""
    n_rows = wt.shape[1]
    for i in range(n_in):
        b[i] = 0.0
    j = 0
    while j < n_cols:
        pair = j + 1 < n_cols
        j1 = j + 1 if pair else j
        d0 = d[j]
        d1 = d[j1] if pair else 0.0
        acc0 = 0.0
        acc1 = 0.0
        for i in range(n_in):
            w0 = wt[j, i]
            w1 = wt[j1, i]
            xi = x[i]
            acc0 += w0 * xi
            acc1 += w1 * xi
            b[i] += w0 * d0 + w1 * d1
        for i in range(n_in, n_rows):  # the bias row
            acc0 += wt[j, i] * x[i]
            acc1 += wt[j1, i] * x[i]
        a[j] = acc0
        if pair:
            a[j1] = acc1
        j += 2


@njit(cache=True, nogil=True, inline="never")
def _largest_offset(u, state, start, stop, v_r, upper):
    """max over compartments ``start:stop`` of |v_r·clip(u) − v|, the distance still to settle.
    A pass of its own: numba's max is a compare-and-select that LLVM does not vectorise as a
    reduction, and inside the main loop it kept that loop scalar too."""
    u_part = u[start:stop]
    v_part = state[start:stop]
    largest = 0.0
    for q in range(stop - start):
        largest = max(largest, abs(v_r * min(max(u_part[q], 0.0), upper) - v_part[q]))
    return largest


@njit(cache=True, nogil=True, fastmath={"contract", "reassoc", "arcp"})
def circuit_rhs(state, dstate, u_out, iparams, fparams, sizes, v_off, n_off, w_off, has_bias,
                w_flat, w_narrow, row_total, col_total, row_w, col_w, gains, a0, rows_power0, target, work):
    """dstate = d(state)/dt; u_out receives the amplifier input of every hidden compartment
    (to locate clip crossings); returns max |V_target − v| (the distance still to settle)."""
    n_layers = iparams[I_LAYERS]
    m = iparams[I_COMPARTMENTS]
    n_v = iparams[I_N_VOLTAGES]
    dual = iparams[I_DUAL_ARRAY] == 1
    v_r = fparams[F_V_READ]
    inv_v_r = 1.0 / v_r
    n_neurons = n_off[n_layers + 1]
    # work: row signals (with a bias slot per layer), column signals, a, b, nudge
    rows = work[0:n_neurons + n_layers + 1]
    col_sig = work[n_neurons + n_layers + 1:2 * n_neurons + n_layers + 1]
    a_in = work[2 * n_neurons + n_layers + 1:3 * n_neurons + n_layers + 1]
    b_in = work[3 * n_neurons + n_layers + 1:4 * n_neurons + n_layers + 1]
    nudge = work[4 * n_neurons + n_layers + 1:]

    for layer in range(1, n_layers + 1):
        r0 = n_off[layer] + layer
        if m == 2:
            # the dyad, written out so that the loop vectorises
            row_0, row_1, col_0, col_1 = row_w[0] * inv_v_r, row_w[1] * inv_v_r, col_w[0] * inv_v_r, col_w[1] * inv_v_r
            n = sizes[layer]
            v_layer = state[v_off[layer]:v_off[layer] + 2 * n]
            rows_layer = rows[r0:r0 + n]
            cols_layer = col_sig[n_off[layer]:n_off[layer] + n]
            for j in range(n):
                first = v_layer[2 * j]
                second = v_layer[2 * j + 1]
                rows_layer[j] = row_0 * first + row_1 * second
                cols_layer[j] = col_0 * first + col_1 * second
        else:
            for j in range(sizes[layer]):
                base = v_off[layer] + j * m
                row = 0.0
                col = 0.0
                for c in range(m):
                    row += row_w[c] * state[base + c]
                    col += col_w[c] * state[base + c]
                rows[r0 + j] = row * inv_v_r
                col_sig[n_off[layer] + j] = col * inv_v_r
        rows[r0 + sizes[layer]] = 1.0
        b_in[n_off[layer]:n_off[layer] + sizes[layer]] = 0.0

    # crossbar power in units of V_r² (G in S): rows + columns − 2·cross (bidirectional)
    g_unit = fparams[F_G_UNIT]
    crossbar_power = 0.0
    for k in range(n_layers):
        n_cols = sizes[k + 1]
        cb = n_off[k + 1]
        a = a_in[cb:cb + n_cols]
        if k == 0:
            # inputs are constant during a settle: their products were computed once
            a[:] = a0[:n_cols]
            rows_power = rows_power0
        else:
            n_rows = sizes[k] + has_bias[k]
            r0 = n_off[k] + k
            x = rows[r0:r0 + n_rows]
            if w_narrow[k] == 1:
                wt = w_flat[w_off[k]:w_off[k] + n_rows * n_cols].reshape((n_cols, n_rows))
                _crossbar_products_narrow(wt, x, col_sig[cb:cb + n_cols], a, b_in[n_off[k]:n_off[k] + sizes[k]],
                                          sizes[k], n_cols)
            else:
                w = w_flat[w_off[k]:w_off[k] + n_rows * n_cols].reshape((n_rows, n_cols))
                _crossbar_products(w, x, col_sig[cb:cb + n_cols], a, b_in[n_off[k]:n_off[k] + sizes[k]],
                                   sizes[k], n_cols)
            rows_power = 0.0
            rt = n_off[k] + k  # row_total is packed like the row signals
            g_rows = row_total[rt:rt + n_rows]
            for i in range(n_rows):
                rows_power += x[i] * x[i] * g_rows[i]
        cols_power = 0.0
        cross = 0.0
        d_cols = col_sig[cb:cb + n_cols]
        g_cols = col_total[cb:cb + n_cols]
        for j in range(n_cols):
            d = d_cols[j]
            cols_power += d * d * g_cols[j]
            cross += d * a[j]
        if dual:
            # forward array: columns at virtual ground; feedback array: lines at d_j
            crossbar_power += rows_power + cols_power
        else:
            crossbar_power += rows_power + cols_power - 2.0 * cross * g_unit

    # output nudge g = β ∇ℓ(z)
    n_out = sizes[n_layers]
    ob = n_off[n_layers]
    zmax = -1e300
    for j in range(n_out):
        if iparams[I_NUDGE_AT_STATE] == 1:
            z = rows[ob + n_layers + j]
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

    inv_tau = 1.0 / fparams[F_TAU]
    inv_r_m = 1.0 / fparams[F_R_M]
    # upper clip rail of the activation (none for ReLU): min/max instead of branches, so that
    # the loops over compartments vectorise
    upper = np.inf if iparams[I_ACTIVATION] == 1 else 1.0
    source_power = 0.0
    resistor_power = 0.0
    distance = 0.0
    for layer in range(1, n_layers + 1):
        hidden = layer < n_layers
        n0 = n_off[layer]
        v0 = v_off[layer]
        if m == 2 and hidden:
            # a hidden layer of dyads, written out so that the loop vectorises
            gain_0 = gains[0]
            gain_1 = gains[1]
            # slices indexed from 0, so that LLVM sees non-negative, affine indices (an index
            # of unknown sign takes numba's wraparound select and turns loads into gathers)
            n = sizes[layer]
            a_layer = a_in[n0:n0 + n]
            b_layer = b_in[n0:n0 + n]
            u_layer = u_out[v0:v0 + 2 * n]
            v_layer = state[v0:v0 + 2 * n]
            f_layer = dstate[v0:v0 + 2 * n]
            for j in range(n):
                a = a_layer[j]
                b = b_layer[j]
                u_layer[2 * j] = a + gain_0 * b
                u_layer[2 * j + 1] = a + gain_1 * b
            # then one unit-stride pass over the layer's compartments without a running maximum
            # (which keeps LLVM from vectorising a loop); the distance has a pass of its own
            source_layer = 0.0
            resistor_layer = 0.0
            for q in range(2 * n):
                v_target = v_r * min(max(u_layer[q], 0.0), upper)
                diff = v_target - v_layer[q]
                f_layer[q] = diff * inv_tau
                source_layer += v_target * diff
                resistor_layer += diff * diff
            source_power += source_layer
            resistor_power += resistor_layer
            v_end = v0 + 2 * n
            distance = max(distance, _largest_offset(u_out, state, v0, v_end, v_r, upper))
            continue
        for c in range(m):
            gain = gains[c]
            for j in range(sizes[layer]):
                q = v0 + j * m + c
                if hidden:
                    u = a_in[n0 + j] + gain * b_in[n0 + j]
                    u_out[q] = u
                    v_target = v_r * min(max(u, 0.0), upper)
                else:
                    v_target = v_r * (a_in[n0 + j] - gain * nudge[j])
                diff = v_target - state[q]
                dstate[q] = diff * inv_tau
                source_power += v_target * diff
                resistor_power += diff * diff
                distance = max(distance, abs(diff))
    dstate[n_v] = source_power * inv_r_m
    dstate[n_v + 1] = resistor_power * inv_r_m
    dstate[n_v + 2] = crossbar_power * v_r * v_r
    return distance


@njit(cache=True, nogil=True)
def _interpolate(ts, ys, qs, step, theta, out):
    """Dense output of accepted step ``step`` at fraction ``theta``: the solver's own
    interpolant, y(t_i + θh) = y_i + h Σ_k q_ik θ^(k+1)."""
    h = ts[step + 1] - ts[step]
    n_dense = qs.shape[1]
    for q in range(out.shape[0]):
        acc = 0.0
        power = 1.0
        for k in range(n_dense):
            power *= theta
            acc += qs[step, k, q] * power
        out[q] = ys[step, q] + h * acc


@njit(cache=True, nogil=True)
def _offset(ys, qs, step, h, q, theta, y_final_q):
    """Interpolated voltage ``q`` minus its final value, at fraction ``theta`` of ``step``."""
    acc = 0.0
    power = 1.0
    for k in range(qs.shape[1]):
        power *= theta
        acc += qs[step, k, q] * power
    return ys[step, q] + h * acc - y_final_q


# grid on which a step's interpolant is searched for band exits before bisection: a quartic
# that leaves the band only between two grid points 1/32 apart leaves it by a negligible amount
BAND_GRID = 32


@njit(cache=True, nogil=True)
def _last_exit(ys, qs, step, h, q, y_final_q, threshold_v):
    """Latest fraction θ of ``step`` at which voltage ``q`` is outside the band, or −1.

    A cheap bound first (|p(θ) − v_f| ≤ |p(0) − v_f| + h Σ|q_k|), so that components that stay
    in the band — nearly all of them near the end of a settle — cost one pass over their
    coefficients; otherwise the interpolant is scanned from the end and the crossing bisected.
    """
    bound = abs(ys[step, q] - y_final_q)
    for k in range(qs.shape[1]):
        bound += h * abs(qs[step, k, q])
    if bound <= threshold_v:
        return -1.0
    last = -1
    for g in range(BAND_GRID, -1, -1):
        if abs(_offset(ys, qs, step, h, q, g / BAND_GRID, y_final_q)) > threshold_v:
            last = g
            break
    if last < 0:
        return -1.0
    if last == BAND_GRID:
        return 1.0
    lo = last / BAND_GRID
    hi = (last + 1) / BAND_GRID
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if abs(_offset(ys, qs, step, h, q, mid, y_final_q)) > threshold_v:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15:
            break
    return hi


@njit(cache=True, nogil=True)
def settling_time(ts, ys, qs, count, y_final, n_v, threshold_v, out_state):
    """Earliest t after which every voltage stays within ``threshold_v`` of its final value.

    Scans the accepted steps backwards for the last one on which any voltage's interpolant
    leaves the band (anywhere inside the step, not only at sample points: a settling time
    must not depend on where the steps happened to fall) and returns the latest exit on it;
    ``out_state`` receives the full state (voltages and energy accumulators) at that time.
    """
    for i in range(count - 2, -1, -1):
        h = ts[i + 1] - ts[i]
        latest = -1.0
        for q in range(n_v):
            theta = _last_exit(ys, qs, i, h, q, y_final[q], threshold_v)
            if theta > latest:
                latest = theta
        if latest >= 0.0:
            _interpolate(ts, ys, qs, i, latest, out_state)
            return ts[i] + latest * h
    for q in range(out_state.shape[0]):
        out_state[q] = ys[0, q]
    return ts[0]


@njit(cache=True, nogil=True)
def _branch(u, relu):
    if u < 0.0:
        return 0
    if u > 1.0 and not relu:
        return 2
    return 1


@njit(cache=True, nogil=True)
def _first_crossing(u_start, u_end, n_hidden, relu):
    """Fraction of the step at which the first hidden compartment's amplifier input crosses a
    clip rail (u taken linear across the step), ignoring crossings in the first
    ``KINK_CUT_LOW`` of the step (a kink that near the start costs little error, and is
    usually the one the previous step was ended at); 2.0 when there is none."""
    first = 2.0
    for q in range(n_hidden):
        u0 = u_start[q]
        u1 = u_end[q]
        if _branch(u0, relu) == _branch(u1, relu):
            continue
        for rail in (0.0, 1.0):
            theta = _crossing_fraction(u0, u1, rail, relu)
            if KINK_CUT_LOW < theta < first:
                first = theta
    return first


@njit(cache=True, nogil=True)
def _crossing_fraction(u0, u1, rail, relu):
    """Where, as a fraction of the step, u (linear from u0 to u1) crosses ``rail``; −1.0 when it
    does not (or when the rail is not a kink: ReLU has none at 1)."""
    if (rail == 1.0 and relu) or (u0 < rail) == (u1 < rail):
        return -1.0
    return (rail - u0) / (u1 - u0)


@njit(cache=True, nogil=True)
def _first_costly_crossing(u_start, u_end, n_hidden, relu, h_per_tau, v_r, rtol, atol_v, n_state):
    """:func:`_kink_cut` with the budget of the cutting policy, :data:`KINK_BUDGET`."""
    return _kink_cut(u_start, u_end, n_hidden, relu, h_per_tau, v_r, rtol, atol_v, n_state, KINK_BUDGET)


@njit(cache=True, nogil=True)
def _kink_cut(u_start, u_end, n_hidden, relu, h_per_tau, v_r, rtol, atol_v, n_state, budget):
    """Like :func:`_first_crossing`, but only kinks whose error would matter count.

    A compartment whose amplifier input crosses a rail at fraction θ of a step h changes the
    slope of its target by v_r |Δu| / h there; an explicit step across that kink makes a local
    error of about KINK_ERROR · v_r |Δu| (h/τ) θ(1 − θ) on the compartment. Kinks whose errors,
    taken together in the controller's RMS norm, stay below KINK_BUDGET are stepped over; else
    the step ends at the first kink that alone takes a noticeable share of the budget.
    """
    total = 0.0
    first = 2.0
    share = budget * budget * n_state / 16.0
    tolerance = atol_v + rtol * v_r
    for q in range(n_hidden):
        u0 = u_start[q]
        u1 = u_end[q]
        if _branch(u0, relu) == _branch(u1, relu):
            continue
        du = u1 - u0
        for rail in (0.0, 1.0):
            theta = _crossing_fraction(u0, u1, rail, relu)
            if theta < 0.0:
                continue
            ratio = KINK_ERROR * v_r * abs(du) * h_per_tau * theta * (1.0 - theta) / tolerance
            total += ratio * ratio
            if ratio * ratio > share and KINK_CUT_LOW < theta < first:
                first = theta
    if total <= budget * budget * n_state:
        return 2.0
    return first


@njit(cache=True, nogil=True, fastmath={"contract"})
def _combine(base, stages, weights, n_weights, h, out):
    """out = base + h Σ_j weights[j] K_j: one unit-stride pass per stage, so that the
    combinations vectorise (they cost as much as a small network's right-hand side)."""
    for q in range(out.shape[0]):
        out[q] = base[q]
    for j in range(n_weights):
        coefficient = h * weights[j]
        if coefficient == 0.0:
            continue
        stage = stages[j]
        for q in range(out.shape[0]):
            out[q] += coefficient * stage[q]


@njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
def _error_sum(y, y_new, err_vec, n_v, rtol, atol_v, v_error_cap):
    """(Σ (err_q / scale_q)², whether y_new is finite): voltages against rtol·|v| + atol (capped
    in the final approach), the energy accumulators relatively; branch-free loops that vectorise."""
    total = 0.0
    probe = 0.0  # stays 0 unless some component is inf or NaN
    for q in range(n_v):
        scale = min(rtol * max(abs(y[q]), abs(y_new[q])) + atol_v, v_error_cap)
        ratio = err_vec[q] / scale
        total += ratio * ratio
        probe += y_new[q] * 0.0
    for q in range(n_v, y.shape[0]):
        ratio = err_vec[q] / (rtol * max(abs(y[q]), abs(y_new[q])) + 1e-300)
        total += ratio * ratio
        probe += y_new[q] * 0.0
    return total, probe == 0.0


@njit(cache=True, nogil=True, fastmath={"contract"})
def _stage_sum(base, stages, weights, n_weights, h, out):
    """out = base + h Σ_j weights[j] K_j like :func:`_combine`, with up to seven stages fused
    into one pass over the state (the separate passes each load and store ``out`` again).
    The sum is associated in the same order as :func:`_combine`'s passes."""
    n = out.shape[0]
    c0 = h * weights[0]
    c1 = h * weights[1] if n_weights > 1 else 0.0
    c2 = h * weights[2] if n_weights > 2 else 0.0
    c3 = h * weights[3] if n_weights > 3 else 0.0
    c4 = h * weights[4] if n_weights > 4 else 0.0
    c5 = h * weights[5] if n_weights > 5 else 0.0
    c6 = h * weights[6] if n_weights > 6 else 0.0
    if n_weights == 1:
        k0 = stages[0]
        for q in range(n):
            out[q] = base[q] + c0 * k0[q]
    elif n_weights == 2:
        k0, k1 = stages[0], stages[1]
        for q in range(n):
            out[q] = base[q] + c0 * k0[q] + c1 * k1[q]
    elif n_weights == 3:
        k0, k1, k2 = stages[0], stages[1], stages[2]
        for q in range(n):
            out[q] = base[q] + c0 * k0[q] + c1 * k1[q] + c2 * k2[q]
    elif n_weights == 4:
        k0, k1, k2, k3 = stages[0], stages[1], stages[2], stages[3]
        for q in range(n):
            out[q] = base[q] + c0 * k0[q] + c1 * k1[q] + c2 * k2[q] + c3 * k3[q]
    elif n_weights == 5:
        k0, k1, k2, k3, k4 = stages[0], stages[1], stages[2], stages[3], stages[4]
        for q in range(n):
            out[q] = base[q] + c0 * k0[q] + c1 * k1[q] + c2 * k2[q] + c3 * k3[q] + c4 * k4[q]
    elif n_weights == 6:
        k0, k1, k2, k3, k4, k5 = stages[0], stages[1], stages[2], stages[3], stages[4], stages[5]
        for q in range(n):
            out[q] = base[q] + c0 * k0[q] + c1 * k1[q] + c2 * k2[q] + c3 * k3[q] + c4 * k4[q] + c5 * k5[q]
    elif n_weights == 7:
        k0, k1, k2, k3, k4, k5, k6 = stages[0], stages[1], stages[2], stages[3], stages[4], stages[5], stages[6]
        for q in range(n):
            out[q] = (base[q] + c0 * k0[q] + c1 * k1[q] + c2 * k2[q] + c3 * k3[q] + c4 * k4[q] + c5 * k5[q]
                      + c6 * k6[q])
    else:
        _combine(base, stages, weights, n_weights, h, out)


@njit(cache=True, nogil=True, fastmath=True)
def _largest_change(y, y_new, n_v):
    """max_q |y_new − y| over the voltages (a branch-free reduction that vectorises)."""
    largest = 0.0
    for q in range(n_v):
        largest = max(largest, abs(y_new[q] - y[q]))
    return largest


# The continuous extension in Hermite form (Hairer, Nørsett & Wanner, Solving ODEs I, §II.6, as in
# their DOPRI5 code): with Δ = y₁ − y₀, r₃ = h f₀ − Δ, r₄ = Δ − h f₁ − r₃,
#     p(θ) = y₀ + θ (Δ + (1 − θ)(r₃ + θ (r₄ + (1 − θ) r₅))),
# which matches y and f at both ends of the step; r₅ = h Σ_s K_s P_s4 is the θ⁴ coefficient of the
# tableau's interpolant (0 for a cubic one, which is then the cubic Hermite interpolant). It is the
# same polynomial as Σ_k q_k θ^(k+1), but a step only has to store f₁ (which FSAL computes anyway)
# and r₅: one stage combination per step instead of one per polynomial coefficient.
@njit(cache=True, nogil=True, inline="always")
def _hermite(y0, y1, f0, f1, r5, h, theta):
    delta = y1 - y0
    r3 = h * f0 - delta
    r4 = delta - h * f1 - r3
    return y0 + theta * (delta + (1.0 - theta) * (r3 + theta * (r4 + (1.0 - theta) * r5)))


@njit(cache=True, nogil=True)
def _interpolate_step(ts, ys, fs, rs, step, theta, out):
    """Dense output of accepted step ``step`` at fraction ``theta`` (whole state)."""
    h = ts[step + 1] - ts[step]
    for q in range(out.shape[0]):
        out[q] = _hermite(ys[step, q], ys[step + 1, q], fs[step, q], fs[step + 1, q], rs[step, q], h, theta)


@njit(cache=True, nogil=True)
def _last_exit_hermite(y0, y1, f0, f1, r5, h, y_final_q, threshold_v, floor):
    """Latest fraction θ > ``floor`` of a step at which the interpolant of one voltage is
    outside the band, or −1 (also when its latest exit is at or before ``floor``).

    With g(θ) = p(θ) − v_f = (1 − θ) g(0) + θ g(1) + θ(1 − θ)(r₃ + θ r₄ + θ(1 − θ) r₅), the bound
    |g| ≤ max(|g(0)|, |g(1)|) + (|r₃| + |r₄|)/4 + |r₅|/16 clears most voltages in one go; it is
    tight because r₃, r₄ and r₅ are only the step's departure from linear interpolation.
    Otherwise the interpolant is scanned from the end on a grid of ``BAND_GRID`` cells and the
    crossing bisected, as :func:`_last_exit`.
    """
    delta = y1 - y0
    r3 = h * f0 - delta
    r4 = delta - h * f1 - r3
    bound = max(abs(y0 - y_final_q), abs(y1 - y_final_q)) + 0.25 * (abs(r3) + abs(r4)) + 0.0625 * abs(r5)
    if bound <= threshold_v:
        return -1.0
    last = -1
    for g in range(BAND_GRID, -1, -1):
        if g < BAND_GRID and (g + 1) / BAND_GRID <= floor:
            return -1.0
        if abs(_hermite(y0, y1, f0, f1, r5, h, g / BAND_GRID) - y_final_q) > threshold_v:
            last = g
            break
    if last < 0:
        return -1.0
    if last == BAND_GRID:
        return 1.0
    lo = last / BAND_GRID
    hi = (last + 1) / BAND_GRID
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if abs(_hermite(y0, y1, f0, f1, r5, h, mid) - y_final_q) > threshold_v:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15:
            break
    return hi


@njit(cache=True, nogil=True)
def _settling_times(ts, ys, fs, rs, count, y_final, n_v, thresholds_v, out_at_settle, stats):
    """Settling time for every band of ``thresholds_v`` (into ``stats[S_T_SETTLE + r]``), as
    :func:`settling_time` but on the Hermite-form history: the earliest t after which every
    voltage's interpolant stays within the band, and the whole state then in
    ``out_at_settle[r]``. Bands are searched narrowest first, and a wider band's search starts
    at the step where the narrower one was last left: a voltage outside the wider band is
    outside the narrower one too, so no later step can hold a wider exit."""
    start = count - 2
    for r in np.argsort(thresholds_v):
        threshold_v = thresholds_v[r]
        found = -1
        for i in range(start, -1, -1):
            h = ts[i + 1] - ts[i]
            latest = -1.0
            for q in range(n_v):
                theta = _last_exit_hermite(ys[i, q], ys[i + 1, q], fs[i, q], fs[i + 1, q], rs[i, q], h,
                                           y_final[q], threshold_v, latest)
                if theta > latest:
                    latest = theta
            if latest >= 0.0:
                _interpolate_step(ts, ys, fs, rs, i, latest, out_at_settle[r])
                stats[S_T_SETTLE + r] = ts[i] + latest * h
                found = i
                break
        if found < 0:
            for q in range(out_at_settle.shape[1]):
                out_at_settle[r, q] = ys[0, q]
            stats[S_T_SETTLE + r] = ts[0]
        start = found


# rows of an integration's scratch array (integrate_one's ``scratch``)
(R_Y, R_Y_STAGE, R_ERROR, R_ZERO, R_U_START, R_U_END, R_U_STAGE, R_U_PREVIOUS, R_U_PREDICTED) = range(9)
N_SCRATCH = 9
# steps a history holds before it grows
HISTORY_STEPS = 64


@njit(cache=True, nogil=True)
def _grown(old, rows):
    """``old`` copied into a larger array of ``rows`` rows (a history that ran full)."""
    new = np.empty((rows,) + old.shape[1:])
    new[: old.shape[0]] = old
    return new


@njit(cache=True, nogil=True)
def integrate_one(y0, t_end, t_max, save_ts, rtol, atol_v, settle_tol_v, thresholds_v,
                  h0, h_max, max_steps, rk_a, rk_b, rk_e, rk_dense, err_exponent, step_over_kinks,
                  iparams, fparams, sizes, v_off, n_off, w_off, has_bias, w_flat, w_narrow,
                  row_total, col_total, row_w, col_w, gains, a0, rows_power0,
                  target, out_saved, out_final, out_at_settle, stats,
                  work, stages, scratch, dense_weights, ts, ys, fs, rs):
    """Adaptive explicit FSAL Runge–Kutta integration of one example until settled (or to
    ``t_end`` > 0). Every accepted step keeps its end state, the derivative there and the
    θ⁴ coefficient of the solver's interpolant (Hermite form, see :func:`_hermite`), from which
    saved points, settling times and the energy at the settling time are read. Clip crossings
    are predicted before each step and a step ends at the first one whose kink would cost
    error; an attempt that still fails with a crossing inside it is retried ending there. After
    a step cut at a crossing the step size the controller had reached is restored.

    ``work``, ``stages``, ``scratch`` (:data:`N_SCRATCH` rows) and the history ``ts``, ``ys``,
    ``fs``, ``rs`` are workspace that :func:`integrate_batch` reuses across examples; the
    history grows when a settle takes more steps, and the (possibly grown) history is returned.
    The tableau must be FSAL: its last stage input is the new state."""
    n_state = y0.shape[0]
    n_v = iparams[I_N_VOLTAGES]
    n_hidden = iparams[I_N_HIDDEN_VOLTAGES]
    relu = iparams[I_ACTIVATION] == 1
    n_stages = rk_b.shape[0]
    quartic = rk_dense.shape[1] >= 4
    last_stage = n_stages - 1
    y = scratch[R_Y]
    y_stage = scratch[R_Y_STAGE]  # a stage's input; after the last stage, the new state
    err_vec = scratch[R_ERROR]
    zero_state = scratch[R_ZERO]
    u_start = scratch[R_U_START]
    u_end = scratch[R_U_END]
    u_stage = scratch[R_U_STAGE]
    u_previous = scratch[R_U_PREVIOUS]  # amplifier inputs at the start of the last accepted step
    u_predicted = scratch[R_U_PREDICTED]
    for row in range(N_SCRATCH):
        for q in range(n_state):
            scratch[row, q] = 0.0
    h_previous = 0.0
    inv_tau = 1.0 / fparams[F_TAU]
    for q in range(n_state):
        y[q] = y0[q]
        ys[0, q] = y0[q]
    ts[0] = 0.0
    count = 1
    n_save = save_ts.shape[0]
    save_idx = 0
    while save_idx < n_save and save_ts[save_idx] <= 0.0:
        for q in range(n_state):
            out_saved[save_idx, q] = y[q]
        save_idx += 1
    t = 0.0
    h = h0
    h_resume = 0.0  # step size to resume with after a step cut at a clip crossing
    distance = np.inf  # unknown until the first evaluation
    last_change = np.inf  # largest voltage change over the last accepted step
    first_stage_ready = False
    final_approach = False
    status = STATUS_SETTLED
    steps = 0
    rejected = 0
    kink_steps = 0
    evaluations = 0
    stage_distance = np.inf
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
        if not final_approach and distance < FINAL_APPROACH * settle_tol_v:
            # the error cap of the final approach (below) tightens the tolerance at once:
            # shrink the step to match rather than let the next attempt fail
            final_approach = True
            tightening = 0.1 * settle_tol_v / atol_v
            if tightening < 1.0:
                h *= tightening ** err_exponent
        if h_previous > 0.0 and h_resume == 0.0:
            # Predict clip crossings by extrapolating each amplifier input at its rate over the
            # last step, and end the step at the first one: a kink inside a step costs a
            # rejected attempt, one at its end costs nothing.
            rate_scale = h / h_previous
            for q in range(n_hidden):
                u_predicted[q] = u_start[q] + (u_start[q] - u_previous[q]) * rate_scale
            crossing = _kink_cut(u_start, u_predicted, n_hidden, relu, h * inv_tau, fparams[F_V_READ], rtol,
                                 atol_v, n_state, KINK_BUDGET_OVER if step_over_kinks else KINK_BUDGET)
            if KINK_CUT_LOW < crossing < KINK_CUT_HIGH:
                kink_steps += 1
                h_resume = h
                h = h * crossing
        clipped = False
        if t + h >= horizon:
            h = horizon - t
            clipped = True
        for s in range(n_stages):
            if s == 0:
                if first_stage_ready:
                    continue
                for q in range(n_state):
                    y_stage[q] = y[q]
            else:
                _stage_sum(y, stages, rk_a[s], s, h, y_stage)
            u_buffer = u_start if s == 0 else (u_end if s == last_stage else u_stage)
            # the only call site of the right-hand side, to keep the compiled kernel small
            stage_distance = circuit_rhs(y_stage, stages[s], u_buffer, iparams, fparams, sizes, v_off,
                                         n_off, w_off, has_bias, w_flat, w_narrow, row_total, col_total,
                                         row_w, col_w, gains, a0, rows_power0, target, work)
            evaluations += 1
            if s == 0:
                first_stage_ready = True
                distance = stage_distance
        # In the final approach the local error allowed on a voltage must stay below the
        # equilibrium tolerance: otherwise the error a clip kink at the fixed point makes in
        # every step (a compartment resting on a rail) keeps the state wandering above it.
        v_error_cap = 0.1 * settle_tol_v if final_approach else np.inf
        # FSAL: the last stage's input y + h Σ b_j K_j is the new state (y_stage)
        _stage_sum(zero_state, stages, rk_e, n_stages, h, err_vec)
        if step_over_kinks and not final_approach:
            # a compartment whose amplifier input crossed a clip rail in this step: its local
            # error is the kink's (about KINK_ERROR·V_r|Δu|(h/τ)θ(1−θ), decaying with τ after
            # the step), left out of the norm rather than paid for with a step ending there
            for q in range(n_hidden):
                if _branch(u_start[q], relu) != _branch(u_end[q], relu):
                    err_vec[q] = 0.0
        err_sum, finite = _error_sum(y, y_stage, err_vec, n_v, rtol, atol_v, v_error_cap)
        if not finite:
            status = STATUS_FAILED
            break
        err_norm = np.sqrt(err_sum / n_state)
        if err_norm <= 1.0:
            if count + 1 >= ts.shape[0]:
                rows = 2 * ts.shape[0]
                ts = _grown(ts, rows)
                ys = _grown(ys, rows)
                fs = _grown(fs, rows)
                rs = _grown(rs, rows)
            step = count - 1
            if step == 0:
                for q in range(n_state):
                    fs[0, q] = stages[0, q]
            # the interpolant's θ⁴ coefficient (the rest follows from y and f at the ends)
            if quartic:
                _stage_sum(zero_state, stages, dense_weights, n_stages, h, rs[step])
            else:
                for q in range(n_state):
                    rs[step, q] = 0.0
            t_old = t
            t = horizon if clipped else t + h
            distance = stage_distance
            ts[count] = t
            last_change = _largest_change(y, y_stage, n_v)
            for q in range(n_state):
                y[q] = y_stage[q]
                stages[0, q] = stages[last_stage, q]  # first same as last
                ys[count, q] = y_stage[q]
                fs[count, q] = stages[last_stage, q]
            for q in range(n_hidden):
                u_previous[q] = u_start[q]
                u_start[q] = u_end[q]
            h_previous = t - t_old
            count += 1
            steps += 1
            while save_idx < n_save and save_ts[save_idx] <= t:
                _interpolate_step(ts, ys, fs, rs, step, (save_ts[save_idx] - t_old) / (t - t_old),
                                  out_saved[save_idx])
                save_idx += 1
            factor = 5.0 if err_norm == 0.0 else min(5.0, max(0.2, 0.9 * err_norm ** (-err_exponent)))
            h = h * factor
            if h_resume > h:
                h = h_resume
            h_resume = 0.0
        else:
            rejected += 1
            crossing = _first_crossing(u_start, u_end, n_hidden, relu)
            if KINK_CUT_LOW < crossing < KINK_CUT_HIGH:
                # the error is the kink's: end the step at the crossing, then carry on
                kink_steps += 1
                if h_resume < h:
                    h_resume = h
                h = h * crossing
            else:
                h = h * max(0.2, 0.9 * err_norm ** (-err_exponent))
        if h < 1e-9 * h0:
            status = STATUS_FAILED
            break

    for q in range(n_state):
        out_final[q] = y[q]
    if count == 1:  # no accepted step: the history is the start point alone
        for q in range(n_state):
            fs[0, q] = 0.0
    _settling_times(ts, ys, fs, rs, count, y, n_v, thresholds_v, out_at_settle, stats)
    stats[S_STATUS] = status
    stats[S_T_FINAL] = t
    stats[S_STEPS] = steps
    stats[S_REJECTED] = rejected
    stats[S_DISTANCE] = distance
    stats[S_EVALUATIONS] = evaluations
    stats[S_KINK_STEPS] = kink_steps
    stats[S_STEP_CHANGE] = last_change
    return ts, ys, fs, rs


@njit(cache=True, nogil=True)
def integrate_batch(examples, y0, t_end, t_max, save_ts, rtol, atol_v, settle_tol_v, thresholds_v,
                    h0, h_max, max_steps, rk_a, rk_b, rk_e, rk_dense, err_exponent, step_over_kinks,
                    iparams, fparams, sizes, v_off, n_off, w_off, has_bias, w_flat, w_narrow,
                    row_total, col_total, row_w, col_w, gains, a0, rows_power0,
                    target, out_saved, out_final, out_at_settle, stats):
    """:func:`integrate_one` for the rows ``examples`` of the batch arrays (y0, a0, rows_power0,
    target and the outputs), one after the other in one call: the workspace and the step
    history are allocated once and reused (a settle's history is ~20 state vectors per 6
    evaluations; fresh pages for it on every example cost as much as the settling-time search,
    and threads that allocate contend for the process's memory map)."""
    n_state = y0.shape[1]
    n_layers = iparams[I_LAYERS]
    n_neurons = n_off[n_layers + 1]
    n_stages = rk_b.shape[0]
    work = np.empty(4 * n_neurons + n_layers + 1 + sizes[n_layers])
    stages = np.empty((n_stages, n_state))
    scratch = np.empty((N_SCRATCH, n_state))
    dense_weights = np.zeros(n_stages)
    if rk_dense.shape[1] >= 4:
        for s in range(n_stages):
            dense_weights[s] = rk_dense[s, 3]
    ts = np.empty(HISTORY_STEPS)
    ys = np.empty((HISTORY_STEPS, n_state))
    fs = np.empty((HISTORY_STEPS, n_state))
    rs = np.empty((HISTORY_STEPS, n_state))
    for e in examples:
        ts, ys, fs, rs = integrate_one(y0[e], t_end, t_max, save_ts, rtol, atol_v, settle_tol_v, thresholds_v,
                                       h0, h_max, max_steps, rk_a, rk_b, rk_e, rk_dense, err_exponent, step_over_kinks,
                                       iparams, fparams, sizes, v_off, n_off, w_off, has_bias, w_flat, w_narrow,
                                       row_total, col_total, row_w, col_w, gains, a0[e], rows_power0[e],
                                       target[e], out_saved[e], out_final[e], out_at_settle[e], stats[e],
                                       work, stages, scratch, dense_weights, ts, ys, fs, rs)
