"""Task families of the one-shot arm experiment: the Brownian family of the paper plus the shapes people teach a
robot (issue #14), all in joint space (base, shoulder) and realisable by the trainee.

Every target of every family (docs/conventions.md §2, §4):

* has the time base of the Brownian family: ``T`` = 249 samples, one every ``arm_time_per_step_s`` = 0.01 s
  of arm time (2.49 s); sample k is the position at t_k = (k + 1) · 0.01 s, and the arm is at home (0 rad) at
  t = 0 s, so ``q = 0.01 s · cumsum(omega)`` exactly (``tasks.integrate_angles``);
* starts at home and at rest (the trainee starts at rest at the home pose);
* stays within the task's joint limits (``tasks.joint_limits(kin)``, URDF convention: base ±125°, shoulder
  ±70°) with a margin (:data:`LIMIT_MARGIN`), and, except the Brownian family, within the URDF velocity
  limit of 1 rad/s per joint (:data:`VELOCITY_LIMIT_RAD_S` · :data:`VELOCITY_MARGIN`);
* is self-consistent: ``q = ∫ omega`` and ``xyz = FK(q)`` (a :class:`tasks.TrajectoryBatch`).

Families (:data:`FAMILIES`; sizes in rad, durations in s):

``brownian``
    the paper's family, :func:`tasks.sample_trajectories` unchanged (bit-identical draws): smoothed Brownian
    joint velocities, targets leaving the limits redrawn. Its velocities are not bounded by 1 rad/s (clip
    ±π rad/s), as in the paper.
``ellipse``
    one full loop of a circle or an ellipse through home: axis ratio U(0.3, 1) (a circle with probability
    1/4), orientation U(0, π), home at a uniform phase of the loop, either direction. Closed: it ends at home.
``lemniscate``
    one full loop of a figure-eight (Gerono lemniscate ``(sin φ, b sin φ cos φ)``, b ∈ U(0.6, 2)), orientation
    U(0, π), home at a uniform phase, either direction. Closed, and it crosses itself.
``polygon``
    one loop of a rounded polygon: a square (probability 1/3; else a triangle, rectangle of side ratio
    U(0.6, 1), pentagon or hexagon) whose corners are rounded over a fraction U(0.15, 0.5) of the mean side
    (circular smoothing of the outline), traced at constant speed along the outline between the start and
    stop ramps; orientation uniform, home at a uniform point of the outline, either direction. Closed.
``stroke``
    back-and-forth strokes along a straight line in joint space through home, direction uniform: one-sided
    (home → out → home, ``sin²``; 1, 1.5, 2, 2.5 or 3 strokes out and back, a half stroke ends at the far end)
    or two-sided (a wave ``sin(2π n σ)`` about home, n ∈ {1, 2}).
``point_to_point``
    one minimum-jerk move from home to a goal drawn uniformly in the reachable box (joint limits and the
    velocity limit for the move's duration; at least 0.1 rad away), then at rest at the goal. Each joint is
    monotone.
``arc``
    an open arc of an ellipse (axis ratio U(0.4, 1)) from home, spanning U(60°, 324°) of the ellipse's
    parameter, orientation U(0, π), either direction; it ends at rest away from home.

Timing of the shaped families: the motion starts after a rest of U(0, 0.25) s, lasts a duration D (closed
curves and arcs U(1.2 s, rest of the trial), strokes and point-to-point moves U(0.8 s, rest of the trial)) and
holds still afterwards. The path parameter follows a smooth time law: raised-cosine speed ramps over a fraction
U(0.15, 0.5) of D at both ends and constant speed between (:func:`time_law`), so the velocity is zero at the
start and at the end. Size: the shape is scaled about home to a fraction in [0.3, 1] of the largest scale that
keeps it inside the joint limits and below the velocity limit for its duration (:func:`fit_scale`), drawn as
sqrt(U(0.09, 1)) (density rising with size: median 0.72), so sizes
reach the reachable range as far as the 1 rad/s limit allows in 2.49 s, and speeds reach the velocity limit.

Seeds (docs/conventions.md §6): a generator takes an explicit ``numpy.random.Generator``. Training draws from
the stream of ``default_rng(seed)`` (train-snn ``--seed``). Held-out evaluation and validation sets of the
shaped families use :func:`family_rng`: a child stream ``SeedSequence(seed, spawn_key=(family id,))``, which no
training stream uses; the Brownian family keeps ``default_rng(seed)`` so that its published numbers (seed
20261129) stay comparable. :data:`RESERVED_EVAL_SEEDS` are refused as training seeds by ``train-snn``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from pcm_l2l_ros.snn import tasks
from pcm_l2l_ros.snn.params import DEFAULT_CONFIG, SNNConfig

#: the task families, in a fixed order (their index is the family id of :func:`family_rng`)
FAMILIES: tuple[str, ...] = ("brownian", "ellipse", "lemniscate", "polygon", "stroke", "point_to_point", "arc")
#: families whose targets end where they start (closed curves)
CLOSED_FAMILIES = ("ellipse", "lemniscate", "polygon")
#: URDF velocity limit of base and shoulder, rad/s (urdf/edscorbot.urdf)
VELOCITY_LIMIT_RAD_S = 1.0
#: fraction of the velocity limit the shaped families use at most
VELOCITY_MARGIN = 0.98
#: fraction of the joint limits the shaped families use at most
LIMIT_MARGIN = 0.95
#: held-out seed of eval-snn (the 270 Brownian trajectories of the README) and of the baselines' eta tuning
EVAL_SEED = 20261129
VAL_SEED = 777
#: seeds that train-snn refuses (its training, validation and export streams must not be evaluation streams)
RESERVED_EVAL_SEEDS = frozenset({EVAL_SEED, VAL_SEED, 555})  # 555: the selection set of the README
#: smallest size, as a fraction of the largest feasible scale
MIN_SIZE = 0.3
#: rest before the motion, s (uniform in [0, MAX_START_S])
MAX_START_S = 0.25


# ---------------------------------------------------------------------------------------------- seeds
def family_rng(family: str, seed: int) -> np.random.Generator:
    """The held-out (evaluation / validation) stream of ``family`` for an integer ``seed``.

    ``brownian``: ``default_rng(seed)`` (the existing convention, seed 20261129 = the README's test set);
    other families: the child stream ``SeedSequence(seed, spawn_key=(id,))`` with ``id`` the family's index in
    :data:`FAMILIES`, never used by a training run (training streams are ``default_rng(seed)``)."""
    check_family(family)
    if family == "brownian":
        return np.random.default_rng(seed)
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(FAMILIES.index(family),)))


def check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown task family {family!r}; one of {', '.join(FAMILIES)}")


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
    b = ratio[:, None]
    p = _rot(theta, np.cos(phi) - np.cos(phi0)[:, None], b * (np.sin(phi) - np.sin(phi0)[:, None]))
    info = [
        {
            "axis_ratio": float(ratio[i]),
            "orientation_rad": float(theta[i]),
            "phase_rad": float(phi0[i]),
            "direction": int(d[i]),
        }
        for i in range(n)
    ]
    return p, (t0, dur, r), info


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
    b = ratio[:, None]
    p = _rot(theta, np.cos(phi) - np.cos(phi0)[:, None], b * (np.sin(phi) - np.sin(phi0)[:, None]))
    info = [
        {
            "axis_ratio": float(ratio[i]),
            "span_rad": float(span[i]),
            "orientation_rad": float(theta[i]),
            "phase_rad": float(phi0[i]),
            "direction": int(d[i]),
        }
        for i in range(n)
    ]
    return p, (t0, dur, r), info


_SHAPES: dict[str, Callable] = {
    "ellipse": _ellipse,
    "lemniscate": _lemniscate,
    "polygon": _polygon,
    "stroke": _stroke,
    "arc": _arc,
}


def _point_to_point(n, rng, cfg, lim):
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


# ---------------------------------------------------------------------------------------------- sampling
def _batch(p: np.ndarray, kin, cfg: SNNConfig, family: str, info: list[dict]) -> tasks.TrajectoryBatch:
    dt = cfg.arm_time_per_step_s
    omega = np.diff(np.concatenate([np.zeros_like(p[:, :1]), p], axis=1), axis=1) / dt
    q = tasks.integrate_angles(omega, cfg)
    xyz = np.asarray(tasks.kin_xyz(kin, q), dtype=np.float64)
    fam = np.full(len(p), family, dtype=object)
    return tasks.TrajectoryBatch(
        omega=omega,
        q=q,
        xyz=xyz,
        hit_limit=np.zeros(len(p), bool),
        mode="resample",
        family=fam,
        info=np.array(info + [None], dtype=object)[:-1],
    )


def sample_family(
    family: str,
    n: int,
    rng: np.random.Generator | int | None,
    cfg: SNNConfig = DEFAULT_CONFIG,
    kin=None,
    *,
    mode: str = "resample",
) -> tasks.TrajectoryBatch:
    """n target trajectories of ``family`` (:data:`FAMILIES`) drawn from ``rng``.

    ``brownian`` is :func:`tasks.sample_trajectories` (``mode`` applies to it only; the same draws); the other
    families are generated as documented in this module. ``kin`` defaults to ``TaskKinematics.paper()`` as
    :func:`tasks.sample_trajectories` (pass the checkpoint's kinematics)."""
    check_family(family)
    rng = np.random.default_rng(rng)
    kin = kin if kin is not None else tasks.default_kinematics(paper=True)
    if family == "brownian":
        tr = tasks.sample_trajectories(n, rng, cfg, kin, mode=mode)
        tr.family = np.full(n, "brownian", dtype=object)
        tr.info = np.full(n, None, dtype=object)
        return tr
    lim = tasks.joint_limits(kin)
    if n == 0:
        z = np.zeros((0, cfg.T, 2))
        return _batch(z, kin, cfg, family, [])
    if family == "point_to_point":
        p, info = _point_to_point(n, rng, cfg, lim)
        return _batch(p, kin, cfg, family, info)
    p, (t0, dur, r), info = _SHAPES[family](n, rng, cfg)
    size = np.sqrt(rng.uniform(MIN_SIZE**2, 1.0, n))  # density rising with size: large shapes are common
    scale = size * fit_scale(p, lim, cfg)
    p = p * scale[:, None, None]
    for i, d in enumerate(info):
        d.update(
            {
                "scale": float(scale[i]),
                "size_fraction": float(size[i]),
                "start_s": float(t0[i]),
                "duration_s": float(dur[i]),
                "ramp_fraction": float(r[i]),
            }
        )
    return _batch(p, kin, cfg, family, info)


def concat(batches: list[tasks.TrajectoryBatch]) -> tasks.TrajectoryBatch:
    """One batch of several (arrays concatenated along the batch axis)."""

    def cat(name):
        vals = [getattr(b, name) for b in batches]
        if any(v is None for v in vals):
            return None
        return np.concatenate(vals)

    return tasks.TrajectoryBatch(
        omega=cat("omega"),
        q=cat("q"),
        xyz=cat("xyz"),
        hit_limit=cat("hit_limit"),
        mode=batches[0].mode,
        family=cat("family"),
        info=cat("info"),
    )


def parse_mixture(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """Mixing weights ``{family: weight}`` (normalised to sum 1; zero weights dropped) from ``"name:w,name:w"``,
    ``"all"`` (every family, equal weights), a bare ``"name"`` (weight 1) or a mapping; None = Brownian only."""
    if spec is None:
        return {"brownian": 1.0}
    if isinstance(spec, str):
        spec = spec.strip()
        if spec == "all":
            return {f: 1.0 / len(FAMILIES) for f in FAMILIES}
        items = {}
        for part in filter(None, (s.strip() for s in spec.split(","))):
            name, _, text = part.partition(":")
            name = name.strip()
            if name in items:
                raise ValueError(f"family {name!r} given twice in {spec!r}")
            try:
                items[name] = float(text) if text.strip() else 1.0
            except ValueError as e:
                raise ValueError(f"bad weight in {part!r} (expected name:weight)") from e
        spec = items
    out: dict[str, float] = {}
    for name, w in spec.items():
        check_family(name)
        if not (math.isfinite(w) and w >= 0):
            raise ValueError(f"weight of {name!r} must be finite and >= 0, got {w}")
        if w > 0:
            out[name] = float(w)
    total = sum(out.values())
    if total <= 0:
        raise ValueError(f"mixing weights {spec!r} sum to zero")
    return {f: out[f] / total for f in FAMILIES if f in out}


def sample_mixture(
    n: int,
    rng: np.random.Generator,
    weights: Mapping[str, float] | None,
    cfg: SNNConfig = DEFAULT_CONFIG,
    kin=None,
    *,
    mode: str = "resample",
) -> tasks.TrajectoryBatch:
    """n targets of a family mixture: the count of each family is multinomial(n, weights), then each family's
    generator draws from ``rng`` in the order of :data:`FAMILIES`. A single family draws exactly what
    :func:`sample_family` draws (for ``brownian``, :func:`tasks.sample_trajectories`): no extra random draw,
    so Brownian-only training is unchanged."""
    w = parse_mixture(weights)
    if len(w) == 1:
        return sample_family(next(iter(w)), n, rng, cfg, kin, mode=mode)
    names = list(w)
    counts = rng.multinomial(n, np.array([w[f] for f in names]))
    return concat(
        [sample_family(f, int(c), rng, cfg, kin, mode=mode) for f, c in zip(names, counts, strict=True) if c > 0]
    )


def sample_stratified(
    n: int,
    seed: int,
    weights: Mapping[str, float] | None,
    cfg: SNNConfig = DEFAULT_CONFIG,
    kin=None,
    *,
    mode: str = "resample",
) -> tasks.TrajectoryBatch:
    """A fixed held-out set over the families of ``weights``: n split evenly over them (every family counts the
    same, whatever its training weight), each drawn from :func:`family_rng` (family, seed). A single family is
    ``sample_family(f, n, family_rng(f, seed))``."""
    names = list(parse_mixture(weights))
    k = len(names)
    counts = [n // k + (1 if i < n % k else 0) for i in range(k)]
    return concat(
        [sample_family(f, c, family_rng(f, seed), cfg, kin, mode=mode) for f, c in zip(names, counts, strict=True)]
    )
