"""The shaped task families (issue #14) of :mod:`pcm_l2l_ros.snn.families`: the curves people teach a robot, in
joint space (base, shoulder), before scaling.

Each generator of :data:`SHAPES` (``fn(n, rng, cfg)``) returns the unscaled positions p (n, T, 2) at the grid
times (home at t = 0), the timing (start, duration, ramp fraction; arrays (n,)) and one ``info`` dict per target;
:func:`point_to_point` (``fn(n, rng, cfg, lim)``) fits its move to the limits itself. The timing follows
:func:`time_law`; :func:`fit_scale` gives the largest scale that keeps a shape inside the joint limits and below
the velocity limit. The families, their parameters and the timing are documented in
:mod:`pcm_l2l_ros.snn.families`, which draws the size and builds the batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from pcm_l2l_ros.snn.params import DEFAULT_CONFIG, SNNConfig

#: URDF velocity limit of base and shoulder, rad/s (urdf/edscorbot.urdf)
VELOCITY_LIMIT_RAD_S = 1.0
#: fraction of the velocity limit the shaped families use at most
VELOCITY_MARGIN = 0.98
#: fraction of the joint limits the shaped families use at most
LIMIT_MARGIN = 0.95
#: smallest size, as a fraction of the largest feasible scale
MIN_SIZE = 0.3
#: rest before the motion, s (uniform in [0, MAX_START_S])
MAX_START_S = 0.25


# ---------------------------------------------------------------------------------------------- time law, scale
def grid_times(cfg: SNNConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Times t_k = (k + 1) · arm_time_per_step_s of the T target samples, s."""
    return cfg.arm_time_per_step_s * np.arange(1, cfg.T + 1)


def time_law(t: np.ndarray, t0: np.ndarray, duration: np.ndarray, ramp: np.ndarray) -> np.ndarray:
    """Path parameter σ(t) ∈ [0, 1] (n, len(t)): 0 before ``t0``, 1 after ``t0 + duration`` (s, arrays (n,)).

    Its speed dσ/dt rises from 0 as sin² over the first fraction ``ramp`` (≤ 0.5) of the duration, is constant
    in the middle and falls to 0 over the last fraction ``ramp``; ``ramp`` 0 = constant speed (linear σ).
    The peak speed is 1 / ((1 - ramp) · duration)."""
    t0, duration, r = (np.asarray(a, dtype=np.float64)[:, None] for a in (t0, duration, ramp))
    if np.any(r < 0) or np.any(r > 0.5) or np.any(duration <= 0):
        raise ValueError("ramp must be in [0, 0.5] and duration > 0")
    tau = np.clip((np.asarray(t, dtype=np.float64)[None, :] - t0) / duration, 0.0, 1.0)
    rs = np.maximum(r, 1e-12)

    def rise(x):  # ∫_0^x sin²(π s / (2 r)) ds for x ≤ r
        return x / 2.0 - rs / (2.0 * math.pi) * np.sin(math.pi * x / rs)

    g = np.where(tau < r, rise(tau), np.where(tau <= 1.0 - r, tau - r / 2.0, (1.0 - r) - rise(1.0 - tau)))
    return np.where(r > 0, g / (1.0 - r), tau)


def fit_scale(p: np.ndarray, lim: np.ndarray, cfg: SNNConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Largest factor s (n,) such that s · p (n, T, 2; positions at the grid times, home at t = 0) stays within
    ``LIMIT_MARGIN`` · ``lim`` (rad) and within ``VELOCITY_MARGIN`` · 1 rad/s per joint between samples."""
    dt = cfg.arm_time_per_step_s
    v = np.diff(np.concatenate([np.zeros_like(p[:, :1]), p], axis=1), axis=1) / dt
    s_vel = VELOCITY_MARGIN * VELOCITY_LIMIT_RAD_S / np.maximum(np.abs(v).max(axis=(1, 2)), 1e-12)
    hi = np.maximum(p.max(axis=1), 1e-12)  # (n, 2) largest positive excursion
    lo = np.maximum(-p.min(axis=1), 1e-12)  # largest negative excursion
    s_lim = np.minimum((LIMIT_MARGIN * lim[:, 1] / hi).min(axis=1), (LIMIT_MARGIN * -lim[:, 0] / lo).min(axis=1))
    return np.minimum(s_vel, s_lim)


def _rot(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rotate (x, y) (n, T) by theta (n,) rad -> (n, T, 2)."""
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    return np.stack([c * x - s * y, s * x + c * y], axis=-1)


def _timing(n: int, rng: np.random.Generator, cfg: SNNConfig, d_min: float, ramp: tuple[float, float]):
    total = cfg.T * cfg.arm_time_per_step_s
    t0 = rng.uniform(0.0, MAX_START_S, n)
    dur = rng.uniform(d_min, total - t0)
    r = rng.uniform(ramp[0], ramp[1], n)
    return t0, dur, r


def _direction(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(n) < 0.5, 1.0, -1.0)


# ---------------------------------------------------------------------------------------------- shapes
def _ellipse(n, rng, cfg):
    t0, dur, r = _timing(n, rng, cfg, 1.2, (0.15, 0.5))
    ratio = np.where(rng.random(n) < 0.25, 1.0, rng.uniform(0.3, 1.0, n))
    theta, phi0, d = rng.uniform(0, math.pi, n), rng.uniform(0, 2 * math.pi, n), _direction(n, rng)
    sig = time_law(grid_times(cfg), t0, dur, r)
    phi = phi0[:, None] + d[:, None] * 2 * math.pi * sig
    p, info = _elliptic(theta, phi0, phi, ratio, d)
    return p, (t0, dur, r), info


def _elliptic(theta, phi0, phi, ratio, d, span=None):
    """The points of an ellipse (axis ratio ``ratio``, orientation ``theta``) at the phases ``phi`` (n, T),
    relative to the start phase ``phi0`` -> (n, T, 2), and the info of ellipse (and arc, with ``span``)."""
    b = ratio[:, None]
    p = _rot(theta, np.cos(phi) - np.cos(phi0)[:, None], b * (np.sin(phi) - np.sin(phi0)[:, None]))
    info = [
        {
            "axis_ratio": float(ratio[i]),
            **({} if span is None else {"span_rad": float(span[i])}),
            "orientation_rad": float(theta[i]),
            "phase_rad": float(phi0[i]),
            "direction": int(d[i]),
        }
        for i in range(len(theta))
    ]
    return p, info


def _lemniscate(n, rng, cfg):
    t0, dur, r = _timing(n, rng, cfg, 1.2, (0.15, 0.5))
    b = rng.uniform(0.6, 2.0, n)
    theta, phi0, d = rng.uniform(0, math.pi, n), rng.uniform(0, 2 * math.pi, n), _direction(n, rng)
    sig = time_law(grid_times(cfg), t0, dur, r)
    phi = phi0[:, None] + d[:, None] * 2 * math.pi * sig

    def g(f):
        return np.sin(f), b[:, None] * np.sin(f) * np.cos(f)

    (x, y), (x0, y0) = g(phi), g(phi0[:, None])
    p = _rot(theta, x - x0, y - y0)
    # the crossing point (the lemniscate's centre) relative to home, rad (before scaling)
    cross = _rot(theta, -x0, -y0)[:, 0]
    info = [
        {
            "b": float(b[i]),
            "orientation_rad": float(theta[i]),
            "phase_rad": float(phi0[i]),
            "direction": int(d[i]),
            "crossing_unit": cross[i].tolist(),
        }
        for i in range(n)
    ]
    return p, (t0, dur, r), info


def rounded_polygon(vertices: np.ndarray, rounding: float, m: int = 2048) -> np.ndarray:
    """Closed outline (m, 2) of the polygon ``vertices`` (k, 2) with rounded corners, sampled uniformly in arc
    length (point 0 = vertex 0's neighbourhood). The outline is smoothed by a circular Hann window as wide as
    ``rounding`` times the mean side: sides stay straight except within half that width of a corner."""
    v = np.asarray(vertices, dtype=np.float64)
    closed = np.concatenate([v, v[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.linspace(0.0, cum[-1], m, endpoint=False)
    pts = np.stack([np.interp(s, cum, closed[:, j]) for j in range(2)], axis=1)
    width = max(3, int(round(rounding * seg.mean() / cum[-1] * m)))
    w = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(1, width + 1) / (width + 1))
    w /= w.sum()
    half = width // 2
    sm = np.zeros_like(pts)
    for i, wi in enumerate(w):  # circular correlation, centred
        sm += wi * np.roll(pts, half - i, axis=0)
    c2 = np.concatenate([sm, sm[:1]])
    cl = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(c2, axis=0), axis=1))])
    s2 = np.linspace(0.0, cl[-1], m, endpoint=False)
    return np.stack([np.interp(s2, cl, c2[:, j]) for j in range(2)], axis=1)


def _polygon(n, rng, cfg):
    t0, dur, r = _timing(n, rng, cfg, 1.2, (0.15, 0.5))
    kind = rng.choice(np.array(["square", "square", "triangle", "rectangle", "pentagon", "hexagon"]), n)
    ratio = rng.uniform(0.6, 1.0, n)
    rounding = rng.uniform(0.15, 0.5, n)
    theta, start, d = rng.uniform(0, 2 * math.pi, n), rng.random(n), _direction(n, rng)
    sig = time_law(grid_times(cfg), t0, dur, r)
    k_of = {"triangle": 3, "square": 4, "rectangle": 4, "pentagon": 5, "hexagon": 6}
    p = np.empty((n, cfg.T, 2))
    info = []
    for i in range(n):
        k = k_of[str(kind[i])]
        a = theta[i] + 2 * math.pi * np.arange(k) / k
        v = np.stack([np.cos(a), np.sin(a)], axis=1)
        if kind[i] == "rectangle":  # a square stretched along one side
            u = np.array([math.cos(theta[i] + math.pi / 4), math.sin(theta[i] + math.pi / 4)])
            v = v + (ratio[i] - 1.0) * np.outer(v @ u, u)
        outline = rounded_polygon(v, float(rounding[i]))
        m = len(outline)
        f = (start[i] + d[i] * sig[i]) % 1.0
        ring = np.concatenate([outline, outline[:1]])
        grid = np.arange(m + 1) / m
        pos = np.stack([np.interp(f, grid, ring[:, j]) for j in range(2)], axis=1)
        pos0 = np.array([np.interp(start[i], grid, ring[:, j]) for j in range(2)])
        p[i] = pos - pos0
        info.append(
            {
                "shape": str(kind[i]),
                "corners": k,
                "rounding": float(rounding[i]),
                "side_ratio": float(ratio[i]) if kind[i] == "rectangle" else 1.0,
                "orientation_rad": float(theta[i]),
                "start_fraction": float(start[i]),
                "direction": int(d[i]),
            }
        )
    return p, (t0, dur, r), info


def _stroke(n, rng, cfg):
    total = cfg.T * cfg.arm_time_per_step_s
    t0 = rng.uniform(0.0, MAX_START_S, n)
    dur = rng.uniform(0.8, total - t0)
    two_sided = rng.random(n) < 0.3
    strokes = np.where(two_sided, rng.choice([1.0, 2.0], n), rng.choice([1.0, 1.5, 2.0, 2.5, 3.0], n))
    r = np.where(two_sided, rng.uniform(0.15, 0.3, n), 0.0)  # sin² strokes are at rest at their turns already
    psi = rng.uniform(0, 2 * math.pi, n)
    sig = time_law(grid_times(cfg), t0, dur, r)
    ns = strokes[:, None]
    amp = np.where(two_sided[:, None], np.sin(2 * math.pi * ns * sig), np.sin(math.pi * ns * sig) ** 2)
    p = amp[..., None] * np.stack([np.cos(psi), np.sin(psi)], axis=-1)[:, None, :]
    info = [
        {"two_sided": bool(two_sided[i]), "strokes": float(strokes[i]), "direction_rad": float(psi[i])}
        for i in range(n)
    ]
    return p, (t0, dur, r), info


def _arc(n, rng, cfg):
    t0, dur, r = _timing(n, rng, cfg, 1.2, (0.15, 0.5))
    ratio = rng.uniform(0.4, 1.0, n)
    span = rng.uniform(math.pi / 3, 1.8 * math.pi, n)
    theta, phi0, d = rng.uniform(0, math.pi, n), rng.uniform(0, 2 * math.pi, n), _direction(n, rng)
    sig = time_law(grid_times(cfg), t0, dur, r)
    phi = phi0[:, None] + (d * span)[:, None] * sig
    p, info = _elliptic(theta, phi0, phi, ratio, d, span)
    return p, (t0, dur, r), info


SHAPES: dict[str, Callable] = {
    "ellipse": _ellipse,
    "lemniscate": _lemniscate,
    "polygon": _polygon,
    "stroke": _stroke,
    "arc": _arc,
}


def point_to_point(n, rng, cfg, lim):
    """Goals uniform in the reachable box; min-jerk profile q = g (10τ³ − 15τ⁴ + 6τ⁵), peak speed 1.875 |g| / D."""
    total = cfg.T * cfg.arm_time_per_step_s
    t0 = rng.uniform(0.0, MAX_START_S, n)
    dur = rng.uniform(0.8, total - t0)
    vmax = VELOCITY_MARGIN * VELOCITY_LIMIT_RAD_S * dur / 1.875  # largest |g_j| the speed allows
    lo = np.maximum(LIMIT_MARGIN * lim[:, 0][None, :], -vmax[:, None])
    hi = np.minimum(LIMIT_MARGIN * lim[:, 1][None, :], vmax[:, None])
    goal = np.empty((n, 2))
    todo = np.arange(n)
    while todo.size:  # at least 0.1 rad from home
        goal[todo] = rng.uniform(lo[todo], hi[todo])
        todo = todo[np.linalg.norm(goal[todo], axis=1) < 0.1]
    tau = np.clip((grid_times(cfg)[None, :] - t0[:, None]) / dur[:, None], 0.0, 1.0)
    s = tau**3 * (10.0 - 15.0 * tau + 6.0 * tau**2)
    p = s[..., None] * goal[:, None, :]
    # the finite-difference speed of the grid never exceeds the continuous peak; keep the margin exactly
    p *= np.minimum(1.0, fit_scale(p, lim, cfg))[:, None, None]
    info = [{"goal_rad": p[i, -1].tolist(), "start_s": float(t0[i]), "duration_s": float(dur[i])} for i in range(n)]
    return p, info
