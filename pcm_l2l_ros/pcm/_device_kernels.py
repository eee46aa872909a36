"""Numba kernels of the PCM device statistics (``pcm.device``) and of the per-weight device state.

The fitted formulas (programming noise sigma_prog, drift exponent moments, drift, accumulated 1/f read noise,
Q_s) are written once here as scalar functions; ``DeviceModel``'s array methods and the fused per-weight state
(``device_state``: drifted conductances, normalised weight, per-MVM read-noise variance) both call them, so an
array rebuilt in full and one updated weight by weight get the same numbers bit for bit. Units: conductances
µS, times s. Coefficients and sources: docs/device_model.md §2-§4.

``variant`` selects the fit family: ``PCM_LIKE`` (aihwkit PCMLikeNoiseModel), ``HERMES_1`` / ``HERMES_2``
(aihwkit HermesNoiseModel, one device or an MSF-programmed pair per polarity).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "PCM_LIKE",
    "HERMES_1",
    "HERMES_2",
    "sigma_prog_array",
    "programming_noise_array",
    "nu_moments_array",
    "nu_from_normals_array",
    "drift_factor_array",
    "read_noise_factor_array",
    "q_s_array",
    "device_state",
    "unit_targets_array",
    "sparse_targets",
    "commit_pulses",
]

PCM_LIKE, HERMES_1, HERMES_2 = 0, 1, 2
_ZERO_CLIP = 1e-7  # aihwkit's floor on r = |g| / g_max in the nu fits


# ---------------------------------------------------------------------------------------------- scalar formulas
@njit(cache=True)
def _clip(x, lo, hi):  # pragma: no cover - compiled
    return min(max(x, lo), hi)


@njit(cache=True)
def _sigma_prog(g, g_max, coeffs, scale):  # pragma: no cover - compiled
    """sigma_prog(g_T) = scale * sum_i c_i r^i, r = g_T / g_max (Horner), µS."""
    r = g / g_max
    s = 0.0
    for i in range(coeffs.shape[0] - 1, -1, -1):
        s = s * r + coeffs[i]
    return s * scale


@njit(cache=True)
def _nu_moments(g, g_max, variant):  # pragma: no cover - compiled
    """(mu_nu, sigma_nu) of the drift exponent (before folding) at target conductance g, µS."""
    r = max(abs(g) / g_max, _ZERO_CLIP)
    lr = math.log(r)
    if variant == PCM_LIKE:
        return _clip(-0.0155 * lr + 0.0244, 0.049, 0.1), _clip(-0.0125 * lr - 0.0059, 0.008, 0.045)
    mu = _clip(-0.0387 * lr - 0.0182, 0.072, 0.13) if r < 0.0945 else -0.0436 * r * r - 0.0126 * r + 0.0736
    if variant == HERMES_1:
        sd = _clip(-0.0120 * lr - 0.0023, 0.0124, 0.04) if r < 0.3039 else -0.0165 * r * r + 0.0116 * r + 0.0104
        return mu, sd
    sd = _clip(-0.0117 * lr - 0.0057, 0.0091, 0.04) if r < 0.3055 else -0.0118 * r * r + 0.0093 * r + 0.0073
    return mu, sd


@njit(cache=True)
def _drift_factor(age, nu, t0):  # pragma: no cover - compiled
    """((age + t0) / t0)^-nu for age > 0 s, else 1."""
    age = max(age, 0.0)
    if age > 0.0:
        return ((age + t0) / t0) ** (-nu)
    return 1.0


@njit(cache=True)
def _read_noise_factor(age, t0, t_read):  # pragma: no cover - compiled
    """sqrt(ln((age + t0 + t_read) / (2 t_read))), dimensionless."""
    t = max(age, 0.0) + t0
    return math.sqrt(math.log((t + t_read) / (2.0 * t_read)))


@njit(cache=True)
def _q_s(g, g_max, variant):  # pragma: no cover - compiled
    """Relative 1/f noise amplitude Q_s at conductance g, µS."""
    r = abs(g) / g_max
    if variant == PCM_LIKE:
        return min(0.0088 / max(r**0.65, 1e-3), 0.2)
    lr = math.log(max(r, 1e-30))
    if variant == HERMES_1:
        if r < 0.1591:
            return _clip(-0.0078 * lr + 0.0038, 0.0179, 0.04)
        return 0.0664 * r * r * r - 0.1352 * r * r + 0.0768 * r + 0.0088
    if r < 0.16:
        return _clip(-0.0117 * lr - 0.0069, 0.015, 0.04)
    return 0.0069 * r * r * r - 0.0280 * r * r + 0.0211 * r + 0.0123


# ------------------------------------------------------------------------------ array forms (DeviceModel methods)
@njit(cache=True)
def sigma_prog_array(g, g_max, coeffs, scale, out):  # pragma: no cover - compiled
    for i in range(g.shape[0]):
        out[i] = _sigma_prog(g[i], g_max, coeffs, scale)


@njit(cache=True)
def programming_noise_array(g, g_max, coeffs, scale, noise_scale, xi, out):  # pragma: no cover - compiled
    """g_prog = max(g_T + noise_scale * sigma_prog(g_T) * xi, 0), µS."""
    for i in range(g.shape[0]):
        out[i] = max(g[i] + noise_scale * _sigma_prog(g[i], g_max, coeffs, scale) * xi[i], 0.0)


@njit(cache=True)
def nu_moments_array(g, g_max, variant, mu, sd):  # pragma: no cover - compiled
    for i in range(g.shape[0]):
        mu[i], sd[i] = _nu_moments(g[i], g_max, variant)


@njit(cache=True)
def nu_from_normals_array(g, g_max, variant, xi, scale, out):  # pragma: no cover - compiled
    """Folded-normal drift exponent nu = |mu_nu + sigma_nu xi| * scale from standard-normal draws xi."""
    for i in range(g.shape[0]):
        mu, sd = _nu_moments(g[i], g_max, variant)
        out[i] = abs(mu + sd * xi[i]) * scale


@njit(cache=True)
def drift_factor_array(age, nu, t0, out):  # pragma: no cover - compiled
    for i in range(age.shape[0]):
        out[i] = _drift_factor(age[i], nu[i], t0)


@njit(cache=True)
def read_noise_factor_array(age, t0, t_read, out):  # pragma: no cover - compiled
    for i in range(age.shape[0]):
        out[i] = _read_noise_factor(age[i], t0, t_read)


@njit(cache=True)
def q_s_array(g, g_max, variant, out):  # pragma: no cover - compiled
    for i in range(g.shape[0]):
        out[i] = _q_s(g[i], g_max, variant)


# ----------------------------------------------------------------------------------------- per-weight state
@njit(cache=True)
def device_state(
    idx,
    g_prog,
    g_q,
    t_prog,
    nu,
    xi,
    factor,
    t_s,
    drift,
    frozen_scale,
    per_mvm_scale,
    pcm_read_noise,
    g_tot,
    g_max,
    t0,
    t_read,
    variant,
    g_out,
    wn_out,
    var_out,
):  # pragma: no cover
    """Drifted conductances, normalised weight and per-MVM read-noise variance of the weights ``idx``.

    Args:
        idx: (K,) int64 flat weight indices into n_in * n_out.
        g_prog, g_q, t_prog, nu: (2 * units, n_in * n_out) float64 per unit (rows: G+ units, then G- units):
            programmed conductance, conductance Q_s is evaluated at, programming time (s), drift exponent.
        xi: (2 * units, n_in * n_out) float32 frozen read-noise draws, used when ``frozen_scale`` != 0.
        factor: (n_in * n_out,) re-encoding factor, or empty (factor 1).
        t_s: the array clock, s. drift: apply drift. frozen_scale: frozen read-noise scale (0: none).
        per_mvm_scale: per-MVM read-noise scale (0: none). pcm_read_noise: extra variance pcm_read_noise^2 |Wn|.
        g_tot: full conductance of one side, µS. g_max, t0, t_read, variant: the unit's device model.
        g_out: (2 * units, K) drifted conductances out, or a (0, 0) array to skip them.
        wn_out: (K,) normalised weights out. var_out: (K,) variances out (normalised units), or empty to skip.
    """
    n_units2 = g_prog.shape[0]
    half = n_units2 // 2
    keep_g = g_out.shape[0] > 0
    want_var = var_out.shape[0] > 0
    has_factor = factor.shape[0] > 0
    for k in range(idx.shape[0]):
        w = idx[k]
        pos = 0.0
        neg = 0.0
        ssq = 0.0
        for u in range(n_units2):
            age = max(t_s - t_prog[u, w], 0.0)
            g = g_prog[u, w]
            g_d = g * _drift_factor(age, nu[u, w], t0) if drift else g
            sig = 0.0
            if frozen_scale != 0.0 or per_mvm_scale != 0.0:
                sig = _q_s(g_q[u, w], g_max, variant) * _read_noise_factor(age, t0, t_read)
            if frozen_scale != 0.0:
                g_d = max(g_d + abs(g_d) * (sig * frozen_scale) * xi[u, w], 0.0)
            if keep_g:
                g_out[u, k] = g_d
            if u < half:
                pos += g_d
            else:
                neg += g_d
            if per_mvm_scale != 0.0:
                sd = sig * per_mvm_scale * g_d
                ssq += sd * sd
        f = factor[w] if has_factor else 1.0
        wn = f * (pos - neg) / g_tot
        wn_out[k] = wn
        if want_var:
            v = f * f * ssq / (g_tot * g_tot)
            if pcm_read_noise > 0.0:
                v += pcm_read_noise * pcm_read_noise * abs(wn)
            var_out[k] = v


# --------------------------------------------------------------------------------------- mapping and writes
@njit(cache=True)
def _unit_targets(w, m, g_unit):  # pragma: no cover - compiled
    """(G+ unit target, G- unit target), µS, of weight w whose w_max is m: clip(+-w / m, 0, 1) * g_unit."""
    wn = w / m
    return min(max(wn, 0.0), 1.0) * g_unit, min(max(-wn, 0.0), 1.0) * g_unit


@njit(cache=True)
def unit_targets_array(w, wmax, g_unit, out):  # pragma: no cover - compiled
    """Target conductances out (2 * units, n) of the weights w (n,) with w_max ``wmax`` (n,), µS."""
    half = out.shape[0] // 2
    for k in range(w.shape[0]):
        gp, gm = _unit_targets(w[k], wmax[k], g_unit)
        for u in range(out.shape[0]):
            out[u, k] = gp if u < half else gm


@njit(cache=True)
def sparse_targets(
    widx, steps, w_target, wmax, q, g_target, g_unit, w_new, g_new, unit_idx, g_sel, touched
):  # pragma: no cover - compiled
    """New digital targets and unit target conductances of the weights a rounded update touches.

    Args:
        widx: (K,) int64 flat indices of the weights with a non-zero step (sorted).
        steps: (n_in * n_out,) float64 update in quanta; w_target, wmax: (n_in * n_out,) targets and w_max.
        q: (n_in * n_out,) quantum per weight, or a 1-element array (one quantum for all).
        g_target: (2 * units, n_in * n_out) current unit targets, µS. g_unit: g_max of one unit, µS.
        w_new: (K,) out, new targets clipped to +-w_max. g_new: (2 * units, K) out, their unit targets, µS.
        unit_idx: (2 * units * K,) int64 out: flat indices into (2 * units, n_in * n_out) of the units whose
            target changed, in C order of (unit row, weight), as ``np.nonzero`` of the change mask gives.
        g_sel: (2 * units * K,) out: the new targets of those units, µS, same order.
        touched: (K,) bool out: a unit of the weight changed (its devices are written).
    Returns:
        (weights whose target changed, units to program).
    """
    n_rows = g_target.shape[0]
    half = n_rows // 2
    nw = g_target.shape[1]
    one_q = q.shape[0] == 1
    changed = 0
    for k in range(widx.shape[0]):
        w = widx[k]
        qk = q[0] if one_q else q[w]
        m = wmax[w]
        old = w_target[w]
        new = min(max(old + steps[w] * qk, -m), m)
        w_new[k] = new
        if new != old:
            changed += 1
        gp, gm = _unit_targets(new, m, g_unit)
        for u in range(n_rows):
            g_new[u, k] = gp if u < half else gm
    touched[:] = False
    n = 0
    for u in range(n_rows):
        for k in range(widx.shape[0]):
            if g_new[u, k] != g_target[u, widx[k]]:
                unit_idx[n] = u * nw + widx[k]
                g_sel[n] = g_new[u, k]
                touched[k] = True
                n += 1
    return changed, n


@njit(cache=True)
def commit_pulses(
    write_counts, unit_idx, pulses, units, devices_per_polarity, nw, limit, refuse_beyond, n_over
):  # pragma: no cover - compiled
    """Add the write pulses of the units ``unit_idx`` (flat into (2 * units, nw)) to the per-device counters
    ``write_counts`` ((2 * devices_per_polarity * nw,) int64; every unit is devices_per_polarity / units
    physical devices, each receiving the unit's pulses).

    ``limit`` < 0: no endurance limit. ``n_over``: devices beyond the limit so far. With ``refuse_beyond`` the
    counters are left unchanged when any device would then be beyond the limit. Returns (devices written,
    pulses, devices beyond the limit after the write, applied)."""
    ppu = devices_per_polarity // units
    over = n_over
    written = 0
    total = 0
    for j in range(unit_idx.shape[0]):
        side_unit, k = divmod(unit_idx[j], nw)
        side, unit = divmod(side_unit, units)
        first = side * devices_per_polarity + unit * ppu
        p = np.int64(pulses[j])
        for d in range(ppu):
            if p != 0:
                written += 1
            total += p
            if limit >= 0:
                old = write_counts[(first + d) * nw + k]
                over += np.int64(old + p > limit) - np.int64(old > limit)
    if refuse_beyond and over != 0:
        return written, total, over, False
    for j in range(unit_idx.shape[0]):
        side_unit, k = divmod(unit_idx[j], nw)
        side, unit = divmod(side_unit, units)
        first = side * devices_per_polarity + unit * ppu
        for d in range(ppu):
            write_counts[(first + d) * nw + k] += pulses[j]
    return written, total, over, True
