"""Numba kernels of the analog MVM periphery (DAC and ADC with output noise and digital scaling).

All arrays are float32 and C-contiguous. Units: inputs and outputs of the crossbar are *normalised*:
an input at the DAC's full scale is 1, a weight at the core's w_max is 1, so one full-scale input on one
full-scale weight gives an output of 1.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["dac_quantize", "adc_epilogue", "crossbar", "fused_mvm", "verify_loop"]


@njit(cache=True, fastmath=False, nogil=True)  # nogil: the background worker converts other row blocks meanwhile
def dac_quantize(x, c0, nlev, fixed_range, normalise, xn, xs, xn2):  # pragma: no cover - compiled
    """Signed DAC: xn = round(x / s * nlev) / nlev, clipped to [-1, 1].

    Args:
        x: (B, >= c0 + n) inputs in user units, C-contiguous; columns c0 .. c0 + n are this core's rows
            (n = xn.shape[1]), read in place: a tiled array needs no copy per core.
        c0: first column of ``x`` that this core converts.
        nlev: levels per sign (2^(bits-1) - 1); 0 disables quantisation.
        fixed_range: > 0: fixed full scale s (inputs beyond are clipped); <= 0: s = max|x| per vector
            (aihwkit's ABS_MAX noise management).
        normalise: False: s = 1 and no clipping (used only when the DAC is off and no fixed range).
        xn: (B, n) output, normalised inputs.
        xs: (B,) output, the full scale s of each vector (user units).
        xn2: (B, n) output xn^2 (for the per-MVM read-noise variance), or a (0, 0) array to skip it.
    """
    bsz, n = xn.shape
    bits = np.empty(1, np.int32)
    bits_f = bits.view(np.float32)
    for b in range(bsz):
        row = x[b, c0 : c0 + n]
        out = xn[b]
        if not normalise:
            s = np.float32(1.0)
        elif fixed_range > 0.0:
            s = np.float32(fixed_range)
        else:
            # max|x| on the IEEE bit patterns (sign bit masked): an integer max-reduction vectorises
            # without fastmath and orders non-negative floats exactly like the floats themselves
            ib = row.view(np.int32)
            m = np.int32(0)
            for j in range(n):
                v = ib[j] & np.int32(0x7FFFFFFF)
                if v > m:
                    m = v
            bits[0] = m
            s = bits_f[0]
            if s == 0.0:
                s = np.float32(1.0)
        xs[b] = s
        if nlev > 0:
            fl = np.float32(nlev)
            k = fl / s
            ifl = np.float32(1.0) / fl
            if normalise and fixed_range > 0.0:
                for j in range(n):
                    v = np.rint(row[j] * k)
                    out[j] = min(max(v, -fl), fl) * ifl
            else:
                for j in range(n):
                    out[j] = np.rint(row[j] * k) * ifl
        elif normalise and fixed_range > 0.0:
            inv = np.float32(1.0) / s
            for j in range(n):
                out[j] = min(max(row[j] * inv, np.float32(-1.0)), np.float32(1.0))
        else:
            inv = np.float32(1.0) / s
            for j in range(n):
                out[j] = row[j] * inv
        if xn2.shape[0] > 0:
            sq = xn2[b]
            for j in range(n):
                sq[j] = out[j] * out[j]


@njit(cache=True, fastmath=False)
def adc_epilogue(  # pragma: no cover - compiled
    yn, noise, var, out_noise, nlev, adc_range, xs, colfactor, out, accumulate
):
    """Output noise, ADC and digital rescaling: out (+)= ADC(yn + sigma xi) * xs * colfactor.

    Args:
        yn: (B, m) normalised analog outputs.
        noise: (B, m) standard normal draws, or a (0, 0) array when there is no output noise.
        var: (B, m) per-MVM read-noise variance (normalised units^2) or a (0, 0) array.
        out_noise: additive output-noise std, normalised units.
        nlev: ADC levels per sign (2^(bits-1) - 1); 0 disables the ADC (no quantisation, no clipping).
        adc_range: ADC full scale (clip bound), normalised units.
        xs: (B,) DAC full scale of each input vector (user units).
        colfactor: (m,) per-column digital factor (w_max of the column's core times drift compensation).
        out: (B, m) result, user units.
        accumulate: add into ``out`` (digital sum of partial results of several cores) instead of writing.
    """
    bsz, m = yn.shape
    has_noise = noise.shape[0] > 0
    has_var = var.shape[0] > 0
    on2 = out_noise * out_noise
    step = np.float32(0.0)
    istep = np.float32(0.0)
    if nlev > 0:
        step = np.float32(adc_range / nlev)
        istep = np.float32(nlev / adc_range)
    bound = np.float32(adc_range)
    for b in range(bsz):
        s = xs[b]
        for c in range(m):
            v = yn[b, c]
            if has_noise:
                if has_var:
                    v += np.float32(np.sqrt(on2 + var[b, c])) * noise[b, c]
                else:
                    v += np.float32(out_noise) * noise[b, c]
            if nlev > 0:
                v = np.rint(v * istep) * step
                if v > bound:
                    v = bound
                elif v < -bound:
                    v = -bound
            r = v * s * colfactor[c]
            if accumulate:
                out[b, c] += r
            else:
                out[b, c] = r


@njit(cache=True, fastmath=False)
def crossbar(xn, mat, out):  # pragma: no cover - compiled
    """out = xn @ mat, accumulated row after row of ``mat`` in index order, rows whose input is 0 skipped
    (no pulse on that word line): the cost is proportional to the non-zero inputs (a spike vector has a few
    per step), and the float32 result does not depend on the BLAS build.

    Args:
        xn: (B, n) float32 inputs; mat: (n, m) float32; out: (B, m) float32, overwritten.
    """
    bsz, n = xn.shape
    m = mat.shape[1]
    for b in range(bsz):
        acc = out[b]
        acc[:] = 0.0
        for k in range(n):
            xk = xn[b, k]
            if xk != 0.0:
                row = mat[k]
                for j in range(m):
                    acc[j] += xk * row[j]


@njit(cache=True, fastmath=False)
def fused_mvm(  # pragma: no cover - compiled
    x, mat, var_mat, noise_buf, pos, dac_nlev, dac_range, normalise, out_noise, adc_nlev, adc_range, colfactor
):
    """One core's whole MVM in one compiled call (small batches, where call overhead dominates):
    DAC -> xn @ mat -> [xn^2 @ var_mat] -> noise from ``noise_buf[pos:]`` -> ADC -> digital scale. Sparse
    inputs (at most 1/4 of the DAC outputs non-zero, as spike vectors) go through ``crossbar`` (cost per
    non-zero input), dense ones through BLAS.

    Args:
        x: (B, n) float32 inputs.
        mat: (n, m) normalised conductance matrix; var_mat: (n, m) per-MVM read-noise variances or (0, 0).
        noise_buf: 1-D standard normal draws (B * m of them are used from ``pos`` on) or an empty array.
        Other arguments as in ``dac_quantize`` and ``adc_epilogue``.
    Returns:
        (B, m) float32 outputs in user units.
    """
    bsz = x.shape[0]
    m = mat.shape[1]
    xn = np.empty_like(x)
    xs = np.empty(bsz, np.float32)
    has_var = var_mat.shape[0] > 0
    xn2 = np.empty_like(x) if has_var else np.empty((0, 0), np.float32)
    dac_quantize(x, 0, dac_nlev, dac_range, normalise, xn, xs, xn2)
    nnz = 0
    for b in range(bsz):
        for k in range(x.shape[1]):
            if xn[b, k] != 0.0:
                nnz += 1
    if 4 * nnz <= xn.size:
        yn = np.empty((bsz, m), np.float32)
        crossbar(xn, mat, yn)
        var = np.empty((bsz, m) if has_var else (0, 0), np.float32)
        if has_var:
            crossbar(xn2, var_mat, var)
    else:
        yn = np.dot(xn, mat)
        var = np.dot(xn2, var_mat) if has_var else np.empty((0, 0), np.float32)
    empty = np.empty((0, 0), np.float32)
    noise = noise_buf[pos : pos + bsz * m].reshape((bsz, m)) if noise_buf.shape[0] > 0 else empty
    out = np.empty((bsz, m), np.float32)
    adc_epilogue(yn, noise, var, out_noise, adc_nlev, adc_range, xs, colfactor, out, False)
    return out


@njit(cache=True, fastmath=False)
def verify_loop(g_target, sigma, xi, tolerance, max_iterations, pulses, last):  # pragma: no cover - compiled
    """The pulse loop of iterative program-and-verify (``programming.program_and_verify``): every iteration
    sends one pulse to each unit not yet verified, in index order, landing at g_T + sigma * xi with the next
    standard-normal draw of ``xi``; a landing within ``tolerance`` of g_T verifies the unit.

    Args:
        g_target, sigma: (n,) float64 targets and per-pulse landing stds, µS.
        xi: 1-D float64 standard-normal draws, consumed in order.
        tolerance: verify band, µS; max_iterations: pulses at most per unit.
        pulses: (n,) int32 output, pulses per unit (zeroed here); last: (n,) float64 output, last landing, µS.
    Returns:
        (draws used, units not converged), or (-1, 0) when ``xi`` is too short (call again with more draws).
    """
    n = g_target.shape[0]
    active = np.arange(n)
    pulses[:] = 0
    na = n
    pos = 0
    for _ in range(max_iterations):
        if na == 0:
            break
        if pos + na > xi.shape[0]:
            return -1, 0
        k = 0
        for a in range(na):
            u = active[a]
            att = g_target[u] + sigma[u] * xi[pos + a]
            pulses[u] += 1
            last[u] = att
            if not abs(att - g_target[u]) <= tolerance:
                active[k] = u
                k += 1
        pos += na
        na = k
    return pos, na
